//! Command-line definitions (clap derive), and [`Cli::into_plan`]: the raw arguments checked
//! (all before any network call) and turned into a typed [`Plan`] that no later code re-checks.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

use crate::aws::Settings;
use crate::error::usage;
use crate::keys::KeySource;
use crate::resolve::{GivenEndpoint, InstanceRef, Selection, TunnelTo, Via};
use crate::target::{ChosenEndpoint, DnsName, TunnelTarget};

pub(crate) const SSH_EXAMPLES: &str = "\
Examples:
  Log in to an instance (public IP if it has one, else through its endpoint):
    eic ssh --instance-id i-0123456789abcdef0

  Log in as another user, always through the endpoint:
    eic ssh --instance-id i-0123456789abcdef0 --os-user ubuntu \\
      --connection-type eice

  Run one command (extra ssh options and the remote command follow `--`):
    eic ssh --instance-id i-0123456789abcdef0 -- -t sudo journalctl -f
    eic ssh --instance-id i-0123456789abcdef0 -- uptime

  Use a given endpoint and a 10-minute tunnel limit:
    eic ssh --instance-id i-0123456789abcdef0 \\
      --eice-options endpointId=eice-0123456789abcdef0,maxTunnelDuration=600

  Forward local port 8080 to port 80 on the instance:
    eic ssh --instance-id i-0123456789abcdef0 \\
      --local-forwarding 8080:localhost:80

  Show the ssh command eic would run, without pushing a key:
    eic ssh --instance-id i-0123456789abcdef0 --dry-run";

pub(crate) const EXEC_EXAMPLES: &str = "\
Examples:
  Uptime on every running web server, 10 at a time, each line labelled:
    eic exec --tag role=web -- uptime

  Two instances by id and one by Name, as JSON for jq:
    eic exec --instance-id i-0123456789abcdef0 --instance-id i-0fedcba9876543210 \\
      --name db-1 --output json -- df -h / | jq -r '.[] | [.instance_id, .exit_status] | @tsv'

  The exit status is the largest of the instances' (254 for one eic could not reach).";

pub(crate) const SERIAL_EXAMPLES: &str = "\
Examples:
  The console of an instance whose network or sshd is broken (log in with a
  user that has a password; type ~. at the start of a line to leave):
    eic serial-console --instance-id i-0123456789abcdef0

  Once per account and region, serial console access must be turned on:
    aws ec2 enable-serial-console-access --region us-east-1

  What would run, and the host key check, without pushing a key:
    eic serial-console --instance-id i-0123456789abcdef0 --dry-run";

pub(crate) const TUNNEL_EXAMPLES: &str = "\
Examples:
  As an ssh ProxyCommand (stdin/stdout are the tunnel):
    ssh -o ProxyCommand='eic open-tunnel --instance-id %h' \\
      ec2-user@i-0123456789abcdef0

  Listen on a local port (RDP to a Windows instance on localhost:3389):
    eic open-tunnel --instance-id i-0123456789abcdef0 \\
      --remote-port 3389 --local-port 3389

  No API call at all when the endpoint and the address are given:
    eic open-tunnel --instance-connect-endpoint-id eice-0123456789abcdef0 \\
      --instance-connect-endpoint-dns-name \\
      eice-0123456789abcdef0.1a2b3c4d.ec2-instance-connect-endpoint.us-east-1.amazonaws.com \\
      --private-ip-address 10.0.0.5";

/// Connect to EC2 instances in private subnets through EC2 Instance Connect Endpoints.
#[derive(Debug, Parser)]
#[command(name = "eic", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

const GLOBAL: &str = "Global options";

/// Options shared by every subcommand (the AWS CLI's global options).
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct Global {
    /// AWS region to use (default: AWS_REGION, then the profile's region).
    #[arg(long, global = true, value_name = "REGION", value_parser = parse_region, help_heading = GLOBAL)]
    pub(crate) region: Option<String>,
    /// Named profile from ~/.aws/config and ~/.aws/credentials (default: AWS_PROFILE).
    #[arg(long, global = true, value_name = "NAME", help_heading = GLOBAL)]
    pub(crate) profile: Option<String>,
    /// Override the EC2 and EC2 Instance Connect API endpoint (like AWS_ENDPOINT_URL).
    #[arg(long, global = true, value_name = "URL", help_heading = GLOBAL)]
    pub(crate) endpoint_url: Option<String>,
    /// CA certificates (PEM) to trust for the APIs and the tunnel (default: AWS_CA_BUNDLE, then
    /// the profile's ca_bundle, then the system's).
    #[arg(long, global = true, value_name = "PATH", help_heading = GLOBAL)]
    pub(crate) ca_bundle: Option<PathBuf>,
    /// Print debug logs to stderr (secrets, tokens and signatures are redacted).
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub(crate) debug: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Connect to an instance with ssh, using a one-time key pushed with EC2 Instance Connect.
    #[command(after_help = SSH_EXAMPLES, allow_negative_numbers = true)]
    Ssh(SshArgs),
    /// Run one command on many instances at once (by id, Name or tags), within the endpoints'
    /// quota, each output line labelled with its instance.
    #[command(after_help = EXEC_EXAMPLES, allow_negative_numbers = true)]
    Exec(ExecArgs),
    /// List the instances (running ones unless --all) and how eic would reach each.
    List(ListArgs),
    /// Open an RDP session to a Windows instance: a local listener tunnelled to its port 3389,
    /// and this platform's RDP client pointed at it.
    Rdp(RdpArgs),
    /// Connect to an instance's serial console (EC2 Serial Console), for an instance that its
    /// network or sshd no longer lets in: a one-time key pushed, then ssh to the region's
    /// serial console endpoint, its host key checked against AWS's published fingerprint.
    #[command(
        after_help = SERIAL_EXAMPLES,
        mut_arg("instance_id", |a| a.help("The instance whose serial console to connect to (i-...)"))
    )]
    SerialConsole(SerialConsoleArgs),
    /// Open a WebSocket tunnel to a port of an instance through an EC2 Instance Connect Endpoint.
    #[command(after_help = TUNNEL_EXAMPLES, allow_negative_numbers = true)]
    OpenTunnel(TunnelArgs),
    /// ProxyCommand for ssh_config: push eic's key for USER, then tunnel stdin/stdout to HOST.
    #[command(
        after_help = "In ~/.ssh/config (see `eic ssh-config`):\n    ProxyCommand eic proxy -- '%h' %p '%r'",
        allow_negative_numbers = true
    )]
    Proxy(ProxyArgs),
    /// Print (or --install) an ~/.ssh/config block so ssh, scp, sftp and rsync reach instances.
    SshConfig(SshConfigArgs),
    /// Print a shell completion script.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) of eic, or of one COMMAND: `eic man ssh > eic-ssh.1`.
    Man {
        /// The subcommand whose page to print (eic-COMMAND(1)).
        #[arg(value_name = "COMMAND", value_parser = MAN_PAGES)]
        command: Option<String>,
    },
}

#[derive(Debug, Clone, Args)]
pub(crate) struct ProxyArgs {
    /// An instance id (i-...), a Name tag, or NAME.eic.
    #[arg(value_name = "HOST", value_parser = parse_host)]
    pub(crate) host: String,
    /// The port on the instance (ssh's %p).
    #[arg(value_name = "PORT", value_parser = parse_port)]
    pub(crate) port: u16,
    /// The user to push the key for (ssh's %r).
    #[arg(value_name = "USER", value_parser = parse_os_user)]
    pub(crate) os_user: String,
    /// The private key whose public half is pushed (default ~/.ssh/eic_ed25519, made on first use).
    #[arg(long, value_name = "PATH")]
    pub(crate) key_file: Option<PathBuf>,
    /// Give up on an endpoint that has not accepted the tunnel after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) connect_timeout: u16,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct SshConfigArgs {
    /// Write the block to ~/.ssh/eic_config and include it from the top of ~/.ssh/config.
    #[arg(long)]
    pub(crate) install: bool,
    /// Install even where your own config already sets User, ProxyCommand or ProxyJump for
    /// instance ids or NAME.eic (eic's block, read first, would override them).
    #[arg(long, requires = "install")]
    pub(crate) force: bool,
}

/// What `eic ssh --dry-run` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    Text,
    Json,
}

/// How `eic ssh` reaches the instance, as the AWS CLI defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub(crate) enum ConnectionType {
    /// Public IPv4 directly, else private IPv4 through the endpoint, else IPv6 directly.
    #[default]
    Auto,
    /// Directly: public IPv4, else IPv6, else private IPv4.
    Direct,
    /// Through an EC2 Instance Connect Endpoint: private IPv4, else IPv6.
    Eice,
}

/// How `eic ssh` and `eic exec` log in: the key, the user, the port and the route.
#[derive(Debug, Clone, Args)]
pub(crate) struct LoginArgs {
    /// Log in with this private key, already authorized on the instance, instead of a one-time
    /// key; nothing is pushed (see --push-key).
    #[arg(long, value_name = "PATH")]
    pub(crate) private_key_file: Option<PathBuf>,
    /// Push the public half of --private-key-file (from the key itself, or PATH.pub) before
    /// logging in, as is done with the one-time key.
    #[arg(long, requires = "private_key_file")]
    pub(crate) push_key: bool,
    /// User name to log in as (the key is pushed for this user).
    #[arg(long, value_name = "USER", default_value = "ec2-user", value_parser = parse_os_user)]
    pub(crate) os_user: String,
    /// SSH port on the instance.
    #[arg(long, value_name = "PORT", default_value_t = 22, value_parser = parse_port)]
    pub(crate) ssh_port: u16,
    /// How to reach the instance.
    #[arg(long, value_enum, value_name = "TYPE", default_value_t = ConnectionType::Auto)]
    pub(crate) connection_type: ConnectionType,
    /// Endpoint settings: endpointId=eice-...,dnsName=...,maxTunnelDuration=N, or the same as JSON;
    /// either may be read from file://PATH.
    #[arg(long, value_name = "OPTIONS", value_parser = parse_eice_options)]
    pub(crate) eice_options: Option<EiceOptions>,
}

impl LoginArgs {
    /// The route asked for, with `--instance-ip` where the command has it.
    fn via(&self, instance_ip: Option<IpAddr>) -> anyhow::Result<Via> {
        route_asked(self.connection_type, self.eice_options.clone(), instance_ip)
    }

    fn key(&self) -> anyhow::Result<KeySource> {
        Ok(match (self.private_key_file.clone(), self.push_key) {
            (Some(path), true) => KeySource::Pushed(path),
            (Some(path), false) => KeySource::Own(path),
            (None, false) => KeySource::OneTime,
            (None, true) => return Err(usage("--push-key needs --private-key-file")),
        })
    }
}

/// The route asked for: the connection type, `--eice-options` and `--instance-ip` together.
fn route_asked(
    connection_type: ConnectionType,
    eice_options: Option<EiceOptions>,
    instance_ip: Option<IpAddr>,
) -> anyhow::Result<Via> {
    Ok(match (connection_type, eice_options, instance_ip) {
            (ConnectionType::Direct, Some(_), _) => return Err(usage(
                "--eice-options cannot be used with --connection-type direct: use --connection-type eice (or auto)",
            )),
            (ConnectionType::Auto, _, Some(_)) => {
                return Err(usage(
                    "--instance-ip needs an explicit --connection-type direct or eice",
                ))
            }
            (ConnectionType::Direct, None, ip) => Via::Direct { ip },
            (ConnectionType::Auto, None, None) => Via::Auto,
            // Any --eice-options means the endpoint, as in the AWS CLI.
            (ConnectionType::Eice | ConnectionType::Auto, eice, ip) => {
                let eice = eice.unwrap_or_default();
                let dns_name = eice.dns_name;
                Via::Eice {
                    ip,
                    endpoint: eice.endpoint_id.map(|id| GivenEndpoint { id, dns_name }),
                    max_tunnel_duration: eice.max_tunnel_duration,
                }
            }
        })
}

/// `--reconnect` keeps forwardings: there must be one, and nothing a session could not
/// survive being started again (a remote command, a terminal, ssh going to the background).
fn forwarding_only(local_forwarding: &[String], ssh_args: &[String]) -> anyhow::Result<()> {
    use crate::ssh_argv::{option_letters, split_ssh_args};
    let (options, command) = split_ssh_args(ssh_args);
    let letters = option_letters(options);
    if !command.is_empty() {
        return Err(usage("--reconnect keeps forwardings only: no remote command after `--`"));
    }
    if let Some((letter, _)) = letters.iter().find(|(l, _)| matches!(l, 't' | 'f')) {
        return Err(usage(format!(
            "--reconnect cannot be used with -{letter}: it keeps forwardings only (-N)"
        )));
    }
    // The same as -f, -t or a command, spelt as ssh_config keywords.
    let keyword = |value: &str| value.trim_start().trim_start_matches('"').to_ascii_lowercase();
    let session_options = ["forkafterauthentication", "sessiontype", "requesttty", "remotecommand"];
    let mut spelt = letters.iter().filter_map(|(l, v)| v.filter(|_| *l == 'o')).map(keyword);
    if let Some(option) = spelt.find(|o| session_options.iter().any(|k| o.starts_with(k))) {
        return Err(usage(format!(
            "--reconnect cannot be used with -o {option}: it keeps forwardings only (-N)"
        )));
    }
    let forwards = letters.iter().any(|(l, _)| matches!(l, 'L' | 'R' | 'D'));
    if local_forwarding.is_empty() && !forwards {
        return Err(usage(
            "--reconnect needs a forwarding: --local-forwarding, or -L, -R or -D after `--`",
        ));
    }
    Ok(())
}

/// The options after `--`: ssh's, then the remote command. One that would silently undo eic's
/// (`-l`, `-p`, `-o User`) is a usage error.
fn checked_ssh_args(ssh_args: &[String]) -> anyhow::Result<()> {
    if let Some((option, instead)) = crate::ssh_argv::overriding_option(ssh_args) {
        return Err(usage(format!(
            "{option} after `--` would be ignored or would not match the pushed key: use {instead}"
        )));
    }
    Ok(())
}

#[derive(Debug, Clone, Args)]
pub(crate) struct SshArgs {
    #[command(flatten)]
    pub(crate) target: TargetArgs,
    /// Connect to this IP address instead of the one found for the connection type.
    #[arg(long, value_name = "IP")]
    pub(crate) instance_ip: Option<IpAddr>,
    #[command(flatten)]
    pub(crate) login: LoginArgs,
    /// Forward a local port, in ssh's -L form: [bind_address:]port:host:hostport; repeatable
    /// (every one is forwarded; the AWS CLI keeps only the last: aws/aws-cli#9101).
    #[arg(long, value_name = "SPEC", value_parser = parse_forwarding)]
    pub(crate) local_forwarding: Vec<String>,
    /// Print the ssh command line that would run and exit, without pushing a key.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Share the connection, kept this many seconds after its last session: later `eic ssh`
    /// to the same instance, user and port run over it, with no lookup, no key pushed and no
    /// new tunnel (it holds one of the endpoint's 20 tunnels meanwhile). 0 turns sharing off.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub(crate) persist: u32,
    /// Do not share the connection (--persist 0).
    #[arg(long, conflicts_with = "persist")]
    pub(crate) no_reuse: bool,
    /// End the shared connection to the instance (for this --os-user and --ssh-port).
    #[arg(long, conflicts_with_all = ["dry_run", "no_reuse"])]
    pub(crate) stop: bool,
    /// Keep forwardings up: a forwarding-only session (-N implied) that eic starts again, with
    /// a new key and tunnel, whenever its connection drops (the endpoint ends every tunnel
    /// after at most an hour).
    #[arg(long, conflicts_with_all = ["stop", "dry_run"])]
    pub(crate) reconnect: bool,
    /// What --dry-run prints: the ssh command line (text), or the resolved plan as JSON
    /// (instance, address, route, endpoint, ssh's argv), for scripts.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = Output::Text, requires = "dry_run")]
    pub(crate) output: Output,
    /// Extra ssh arguments and a remote command, after `--`, passed to ssh verbatim.
    #[arg(last = true, value_name = "SSH_ARGS", allow_hyphen_values = true)]
    pub(crate) ssh_args: Vec<String>,
}

/// Which instances `eic exec` and `eic list` take: the union of these, each instance once.
#[derive(Debug, Clone, Args)]
pub(crate) struct FleetArgs {
    /// An instance (i-...); repeatable.
    #[arg(long = "instance-id", value_name = "ID", value_parser = parse_instance_id)]
    pub(crate) instance_ids: Vec<String>,
    /// Every running instance whose Name tag is NAME, exactly; repeatable.
    #[arg(long = "name", value_name = "NAME", value_parser = parse_name)]
    pub(crate) names: Vec<String>,
    /// The running instances that carry this tag; repeatable: an instance must carry them all.
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
    pub(crate) tags: Vec<(String, String)>,
}

impl FleetArgs {
    fn selection(self) -> Selection {
        Selection { ids: self.instance_ids, names: self.names, tags: self.tags }
    }
}

#[derive(Debug, Clone, Args)]
pub(crate) struct ExecArgs {
    #[command(flatten)]
    pub(crate) fleet: FleetArgs,
    #[command(flatten)]
    pub(crate) login: LoginArgs,
    /// At most this many instances at once (and never more tunnels per endpoint than it
    /// allows, 20).
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) parallel: u16,
    /// Each line of output labelled with its instance as it arrives (text), or one JSON array
    /// when all are done.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = Output::Text)]
    pub(crate) output: Output,
    /// ssh options, then the command to run, after `--`.
    #[arg(last = true, value_name = "COMMAND", allow_hyphen_values = true, required = true)]
    pub(crate) ssh_args: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    pub(crate) fleet: FleetArgs,
    /// Every instance, not only the running ones.
    #[arg(long)]
    pub(crate) all: bool,
    /// How eic would reach each instance.
    #[arg(long, value_enum, value_name = "TYPE", default_value_t = ConnectionType::Auto)]
    pub(crate) connection_type: ConnectionType,
    /// A table (text), or a JSON array (docs/fleets.md lists its keys).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = Output::Text)]
    pub(crate) output: Output,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct RdpArgs {
    #[command(flatten)]
    pub(crate) target: TargetArgs,
    /// How to reach the instance.
    #[arg(long, value_enum, value_name = "TYPE", default_value_t = ConnectionType::Auto)]
    pub(crate) connection_type: ConnectionType,
    /// Endpoint settings: endpointId=eice-...,dnsName=...,maxTunnelDuration=N, or the same as JSON.
    #[arg(long, value_name = "OPTIONS", value_parser = parse_eice_options)]
    pub(crate) eice_options: Option<EiceOptions>,
    /// Listen on this port of 127.0.0.1 (default: a free one).
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16))]
    pub(crate) local_port: Option<u16>,
    /// Print the address to point an RDP client at, and keep the listener until Ctrl-C.
    #[arg(long)]
    pub(crate) no_launch: bool,
    /// Give up on an endpoint that has not accepted a tunnel after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) connect_timeout: u16,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct SerialConsoleArgs {
    #[command(flatten)]
    pub(crate) target: TargetArgs,
    /// The instance's serial port (the service has one: 0).
    #[arg(long, value_name = "PORT", default_value_t = 0, value_parser = parse_serial_port)]
    pub(crate) serial_port: u16,
    /// Push the public half of this private key (from the key itself, or PATH.pub) instead of
    /// a one-time key's.
    #[arg(long, value_name = "PATH")]
    pub(crate) private_key_file: Option<PathBuf>,
    /// Print the ssh command line that would run and exit, without pushing a key (the host
    /// key is still read and checked).
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// What --dry-run prints: the ssh command line (text), or the plan as JSON.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = Output::Text, requires = "dry_run")]
    pub(crate) output: Output,
}

/// The instance, for `ssh` and `open-tunnel`.
#[derive(Debug, Clone, Args)]
pub(crate) struct TargetArgs {
    /// The instance to connect to (i-...); its address and endpoint are looked up.
    #[arg(long, value_name = "ID", value_parser = parse_instance_id)]
    pub(crate) instance_id: Option<String>,
    /// The running instance whose Name tag is NAME (instead of --instance-id).
    #[arg(long, value_name = "NAME", conflicts_with = "instance_id", value_parser = parse_name)]
    pub(crate) name: Option<String>,
}

impl TargetArgs {
    /// `--instance-id`, else `--name`, else (on a terminal) the picker.
    fn instance(self, terminal: bool) -> Option<InstanceRef> {
        let named = self.instance_id.map(InstanceRef::Id).or(self.name.map(InstanceRef::Name));
        named.or(terminal.then_some(InstanceRef::Pick))
    }

    /// The instance, which this command needs.
    fn required(self, terminal: bool) -> anyhow::Result<InstanceRef> {
        self.instance(terminal).ok_or_else(|| {
            usage("specify --instance-id or --name (or, on a terminal, pick one from a list)")
        })
    }
}

#[derive(Debug, Clone, Args)]
pub(crate) struct TunnelArgs {
    #[command(flatten)]
    pub(crate) target: TargetArgs,
    /// Use this endpoint instead of looking one up.
    #[arg(long, value_name = "ID", value_parser = parse_endpoint_id)]
    pub(crate) instance_connect_endpoint_id: Option<String>,
    /// The endpoint's DNS name; with the endpoint id and private IP, no API call is made.
    #[arg(long, value_name = "DNS", value_parser = parse_dns_name)]
    pub(crate) instance_connect_endpoint_dns_name: Option<DnsName>,
    /// Private IP address of the target (requires --instance-connect-endpoint-id).
    #[arg(long, value_name = "IP")]
    pub(crate) private_ip_address: Option<IpAddr>,
    /// Port on the instance (the service allows 22 and 3389).
    #[arg(long, value_name = "PORT", default_value_t = 22, value_parser = parse_port)]
    pub(crate) remote_port: u16,
    /// Listen on this local port instead of using stdin/stdout (0 picks a free port).
    #[arg(long, value_name = "PORT", value_parser = parse_local_port)]
    pub(crate) local_port: Option<u16>,
    /// Address to listen on with --local-port (--local-ip in the AWS CLI).
    #[arg(
        long,
        visible_alias = "local-ip",
        value_name = "ADDR",
        default_value = "127.0.0.1",
        value_parser = parse_bind,
        requires = "local_port"
    )]
    pub(crate) bind: IpAddr,
    /// Maximum duration of each tunnel, in seconds (1-3600).
    #[arg(long, value_name = "SECONDS", value_parser = parse_max_tunnel_duration)]
    pub(crate) max_tunnel_duration: Option<u32>,
    /// Maximum number of tunnels open at once in listener mode.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) max_websocket_connections: u16,
    /// Give up on an endpoint that has not accepted the tunnel after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) connect_timeout: u16,
    /// The URL, presigned by `eic ssh` and read once from this private file (eic ssh's own
    /// ProxyCommand: its child holds no credentials).
    #[arg(long, value_name = "PATH", hide = true)]
    pub(crate) presigned_url_file: Option<PathBuf>,
    /// Once the tunnel is open, stderr goes to /dev/null (a shared connection outlives the
    /// command that started it: it must not hold that command's stderr).
    #[arg(long, hide = true, requires = "presigned_url_file")]
    pub(crate) detach_stderr: bool,
}

/// `--eice-options`, in the AWS CLI's shorthand or JSON form, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EiceOptions {
    pub endpoint_id: Option<String>,
    pub dns_name: Option<DnsName>,
    pub max_tunnel_duration: Option<u32>,
}

/// `--eice-options` as written, before its values are checked.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EiceOptionsText {
    endpoint_id: Option<String>,
    dns_name: Option<String>,
    max_tunnel_duration: Option<u32>,
}

/// A command line, checked: what to run, with what AWS settings.
#[derive(Debug)]
pub(crate) struct Invocation {
    pub(crate) settings: Settings,
    pub(crate) debug: bool,
    pub(crate) plan: Plan,
}

/// What to run, with every option checked and combined.
#[derive(Debug)]
pub(crate) enum Plan {
    Ssh(SshPlan),
    Rdp(RdpPlan),
    SerialConsole(SerialConsolePlan),
    Exec(ExecPlan),
    List(ListPlan),
    /// `open-tunnel` without `--local-port`: stdin and stdout are the tunnel.
    OpenTunnel(TunnelPlan),
    /// `open-tunnel --local-port`.
    Listen(ListenPlan),
    /// `open-tunnel --presigned-url-file`, as `eic ssh` runs it.
    Presigned(PresignedPlan),
    Proxy(ProxyPlan),
    SshConfig {
        install: bool,
        force: bool,
    },
    Completions(clap_complete::Shell),
    Man(Option<String>),
}

#[derive(Debug)]
pub(crate) struct SshPlan {
    pub(crate) instance: InstanceRef,
    pub(crate) key: KeySource,
    pub(crate) os_user: String,
    pub(crate) port: u16,
    pub(crate) via: Via,
    pub(crate) local_forwarding: Vec<String>,
    pub(crate) dry_run: bool,
    pub(crate) output: Output,
    /// Share the connection, for this many seconds after its last session.
    pub(crate) persist: Option<u32>,
    /// End the shared connection instead.
    pub(crate) stop: bool,
    /// Start the forwarding-only session again whenever its connection drops.
    pub(crate) reconnect: bool,
    pub(crate) debug: bool,
    /// After `--`: ssh options, then a remote command.
    pub(crate) ssh_args: Vec<String>,
}

#[derive(Debug)]
pub(crate) struct ExecPlan {
    pub(crate) selection: Selection,
    pub(crate) key: KeySource,
    pub(crate) os_user: String,
    pub(crate) port: u16,
    pub(crate) via: Via,
    pub(crate) parallel: usize,
    pub(crate) output: Output,
    pub(crate) debug: bool,
    /// After `--`: ssh options, then the command.
    pub(crate) ssh_args: Vec<String>,
}

#[derive(Debug)]
pub(crate) struct RdpPlan {
    pub(crate) instance: InstanceRef,
    pub(crate) via: Via,
    pub(crate) local_port: u16,
    pub(crate) launch: bool,
    pub(crate) connect_timeout: Duration,
}

#[derive(Debug)]
pub(crate) struct SerialConsolePlan {
    pub(crate) instance: InstanceRef,
    pub(crate) serial_port: u16,
    /// A one-time key, or the user's own (pushed).
    pub(crate) key: KeySource,
    pub(crate) dry_run: bool,
    pub(crate) output: Output,
    pub(crate) debug: bool,
}

#[derive(Debug)]
pub(crate) struct ListPlan {
    pub(crate) selection: Selection,
    pub(crate) any_state: bool,
    pub(crate) via: Via,
    pub(crate) output: Output,
}

#[derive(Debug)]
pub(crate) struct TunnelPlan {
    pub(crate) to: TunnelTo,
    pub(crate) remote_port: u16,
    pub(crate) max_tunnel_duration: Option<u32>,
    pub(crate) connect_timeout: Duration,
}

#[derive(Debug)]
pub(crate) struct PresignedPlan {
    pub(crate) target: TunnelTarget,
    pub(crate) url_file: PathBuf,
    pub(crate) connect_timeout: Duration,
    pub(crate) detach_stderr: bool,
}

#[derive(Debug)]
pub(crate) struct ListenPlan {
    pub(crate) tunnel: TunnelPlan,
    pub(crate) bind: SocketAddr,
    pub(crate) max_connections: usize,
}

#[derive(Debug)]
pub(crate) struct ProxyPlan {
    pub(crate) instance: InstanceRef,
    pub(crate) port: u16,
    pub(crate) os_user: String,
    pub(crate) key_file: Option<PathBuf>,
    pub(crate) connect_timeout: Duration,
}

impl Cli {
    /// Checks what needs more than one option at a time and builds the plan.
    pub(crate) fn into_plan(self, stdin_is_terminal: bool) -> anyhow::Result<Invocation> {
        let plan = match self.command {
            Command::Ssh(args) => Plan::Ssh(args.into_plan(self.global.debug, stdin_is_terminal)?),
            Command::OpenTunnel(args) => args.into_plan(stdin_is_terminal)?,
            Command::Proxy(args) => Plan::Proxy(ProxyPlan {
                instance: InstanceRef::from_host(&args.host),
                port: args.port,
                os_user: args.os_user,
                key_file: args.key_file,
                connect_timeout: Duration::from_secs(args.connect_timeout.into()),
            }),
            Command::SshConfig(args) => {
                Plan::SshConfig { install: args.install, force: args.force }
            }
            Command::Completions { shell } => Plan::Completions(shell),
            Command::Man { command } => Plan::Man(command),
            Command::Exec(args) => Plan::Exec(args.into_plan(self.global.debug)?),
            Command::Rdp(args) => Plan::Rdp(RdpPlan {
                instance: args.target.required(stdin_is_terminal)?,
                via: route_asked(args.connection_type, args.eice_options, None)?,
                local_port: args.local_port.unwrap_or(0),
                launch: !args.no_launch,
                connect_timeout: Duration::from_secs(args.connect_timeout.into()),
            }),
            Command::SerialConsole(args) => Plan::SerialConsole(SerialConsolePlan {
                instance: args.target.required(stdin_is_terminal)?,
                serial_port: args.serial_port,
                key: args.private_key_file.map_or(KeySource::OneTime, KeySource::Pushed),
                dry_run: args.dry_run,
                output: args.output,
                debug: self.global.debug,
            }),
            Command::List(args) => Plan::List(ListPlan {
                selection: args.fleet.selection(),
                any_state: args.all,
                via: route_asked(args.connection_type, None, None)?,
                output: args.output,
            }),
        };
        let global = self.global;
        Ok(Invocation {
            settings: Settings {
                region: global.region,
                profile: global.profile,
                endpoint_url: global.endpoint_url,
                ca_bundle: global.ca_bundle,
            },
            debug: global.debug,
            plan,
        })
    }
}

impl ExecArgs {
    fn into_plan(self, debug: bool) -> anyhow::Result<ExecPlan> {
        let selection = self.fleet.selection();
        if selection.is_empty() {
            return Err(usage(
                "name the instances: --instance-id, --name or --tag (each repeatable)",
            ));
        }
        checked_ssh_args(&self.ssh_args)?;
        if crate::ssh_argv::split_ssh_args(&self.ssh_args).1.is_empty() {
            return Err(usage("eic exec needs a command after `--` (ssh options may come first)"));
        }
        Ok(ExecPlan {
            selection,
            key: self.login.key()?,
            via: self.login.via(None)?,
            os_user: self.login.os_user,
            port: self.login.ssh_port,
            parallel: self.parallel.into(),
            output: self.output,
            debug,
            ssh_args: self.ssh_args,
        })
    }
}

impl SshArgs {
    fn into_plan(self, debug: bool, terminal: bool) -> anyhow::Result<SshPlan> {
        let via = self.login.via(self.instance_ip)?;
        checked_ssh_args(&self.ssh_args)?;
        if self.reconnect {
            forwarding_only(&self.local_forwarding, &self.ssh_args)?;
        }
        let key = self.login.key()?;
        let unshareable =
            !self.local_forwarding.is_empty() || crate::ssh_argv::unshareable(&self.ssh_args);
        Ok(SshPlan {
            instance: self.target.required(terminal)?,
            key,
            os_user: self.login.os_user,
            port: self.login.ssh_port,
            via,
            local_forwarding: self.local_forwarding,
            dry_run: self.dry_run,
            output: self.output,
            // Not on Windows (its OpenSSH shares no connection), nor with --debug: a shared
            // connection's log would outlive the command.
            // Nor with forwardings or the user's own sharing (ssh_argv::unshareable).
            persist: Some(self.persist)
                .filter(|p| *p > 0 && !self.no_reuse && !debug && !unshareable && cfg!(unix)),
            stop: self.stop,
            reconnect: self.reconnect,
            debug,
            ssh_args: self.ssh_args,
        })
    }
}

impl TunnelArgs {
    fn into_plan(self, stdin_is_terminal: bool) -> anyhow::Result<Plan> {
        let dns_name = self.instance_connect_endpoint_dns_name;
        let connect_timeout = Duration::from_secs(self.connect_timeout.into());
        if let Some(url_file) = self.presigned_url_file {
            let given = (self.instance_connect_endpoint_id, dns_name, self.private_ip_address);
            let ((Some(endpoint_id), Some(dns_name), Some(private_ip)), None) =
                (given, self.local_port)
            else {
                return Err(usage("--presigned-url-file needs --instance-connect-endpoint-id, --instance-connect-endpoint-dns-name and --private-ip-address, without --local-port"));
            };
            let remote_port = self.remote_port;
            let max_tunnel_duration = self.max_tunnel_duration;
            let endpoint = ChosenEndpoint { id: endpoint_id, dns_name };
            let target = TunnelTarget::new(endpoint, private_ip, remote_port, max_tunnel_duration);
            let detach_stderr = self.detach_stderr;
            let plan = PresignedPlan { target, url_file, connect_timeout, detach_stderr };
            return Ok(Plan::Presigned(plan));
        }
        let to = match (
            self.private_ip_address,
            self.target.instance(stdin_is_terminal),
            self.instance_connect_endpoint_id,
        ) {
            (None, None, _) => return Err(usage(
                "specify --instance-id (or --name), or --private-ip-address with --instance-connect-endpoint-id",
            )),
            (_, _, None) if dns_name.is_some() => {
                return Err(usage(
                    "--instance-connect-endpoint-dns-name needs --instance-connect-endpoint-id",
                ))
            }
            (Some(_), _, None) => {
                return Err(usage(
                    "--private-ip-address needs --instance-connect-endpoint-id",
                ))
            }
            // Given the address, the instance is not looked up, as in the AWS CLI.
            (Some(ip), _, Some(id)) => TunnelTo::Address {
                ip,
                endpoint: GivenEndpoint { id, dns_name },
            },
            (None, Some(instance), id) => TunnelTo::Instance {
                instance,
                endpoint: id.map(|id| GivenEndpoint { id, dns_name }),
            },
        };
        let tunnel = TunnelPlan {
            to,
            remote_port: self.remote_port,
            max_tunnel_duration: self.max_tunnel_duration,
            connect_timeout,
        };
        match self.local_port {
            Some(port) => Ok(Plan::Listen(ListenPlan {
                tunnel,
                bind: SocketAddr::new(self.bind, port),
                max_connections: self.max_websocket_connections.into(),
            })),
            None if stdin_is_terminal => Err(usage(
                "--local-port is required when stdin is a terminal (without it, stdin/stdout carry the tunnel, as for an ssh ProxyCommand)",
            )),
            None => Ok(Plan::OpenTunnel(tunnel)),
        }
    }
}

pub fn parse_instance_id(value: &str) -> Result<String, String> {
    let shape = "expected `i-` and 8 or 17 lowercase hex digits, like i-0123456789abcdef0";
    accept(crate::aws::is_instance_id(value), value, shape)
}

pub fn parse_endpoint_id(value: &str) -> Result<String, String> {
    let shape = "expected `eice-` and 17 lowercase hex digits, like eice-0123456789abcdef0";
    accept(crate::aws::is_endpoint_id(value), value, shape)
}

/// A Name tag value: printable, no control characters.
pub fn parse_name(value: &str) -> Result<String, String> {
    if value.is_empty() || value.len() > 256 || value.chars().any(char::is_control) {
        return Err("expected a Name tag value (1 to 256 characters, no control characters)".into());
    }
    Ok(value.to_string())
}

/// ssh's %h for `eic proxy`: an instance id, or a Name tag (optionally as NAME.eic).
pub fn parse_host(value: &str) -> Result<String, String> {
    let plain = !value.is_empty()
        && !value.starts_with('-')
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    accept(
        plain,
        value,
        "expected an instance id (i-...) or a Name tag of letters, digits, '.', '_' and '-'",
    )
}

/// A DNS name of letters, digits, `.` and `-`, with an optional `:port`.
pub fn parse_dns_name(value: &str) -> Result<DnsName, String> {
    value.parse()
}

pub fn parse_port(value: &str) -> Result<u16, String> {
    match value.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err("expected a port number from 1 to 65535".to_string()),
    }
}

/// A listening address: an IP, or `localhost` (127.0.0.1, the AWS CLI's default).
fn parse_bind(value: &str) -> Result<IpAddr, String> {
    if value.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::from([127, 0, 0, 1]));
    }
    value
        .parse()
        .map_err(|_| "expected an IP address or localhost, like 127.0.0.1 or ::1".to_string())
}

fn parse_local_port(value: &str) -> Result<u16, String> {
    value
        .parse::<u16>()
        .map_err(|_| "expected a port number from 0 (any free port) to 65535".to_string())
}

/// The API model fixes SerialPort at 0 (min 0, max 0).
fn parse_serial_port(value: &str) -> Result<u16, String> {
    match value {
        "0" => Ok(0),
        _ => Err("the serial console has one port: 0".into()),
    }
}

pub fn parse_max_tunnel_duration(value: &str) -> Result<u32, String> {
    match value.parse::<u32>() {
        Ok(secs) if (1..=3600).contains(&secs) => Ok(secs),
        _ => Err("expected a whole number of seconds from 1 to 3600".to_string()),
    }
}

fn parse_region(value: &str) -> Result<String, String> {
    let ok = !value.is_empty()
        && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    accept(ok, value, "expected a region name like us-east-1")
}

/// An OS user as SendSSHPublicKey takes it: `^[A-Za-z_][A-Za-z0-9@._-]{0,30}[A-Za-z0-9$_-]?$`
/// (`admin@corp`, `svc$` included). Never an option, a shell word or a token for ssh.
pub fn parse_os_user(value: &str) -> Result<String, String> {
    let ok = value.as_bytes().split_first().is_some_and(|(first, rest)| {
        // The optional last character must be the pattern's own when it is `$` or the 32nd.
        let (middle, last) = match rest.split_last() {
            Some((last, middle)) if *last == b'$' || rest.len() == 31 => (middle, Some(last)),
            _ => (rest, None),
        };
        (first.is_ascii_alphabetic() || *first == b'_')
            && middle.len() <= 30
            && middle.iter().all(|b| b.is_ascii_alphanumeric() || b"@._-".contains(b))
            && last.is_none_or(|b| b.is_ascii_alphanumeric() || b"$_-".contains(b))
    });
    accept(
        ok,
        value,
        "expected a user name of letters, digits, '.', '_', '-' and '@', starting with a letter or '_', at most 32 (a trailing '$' is allowed)",
    )
}

/// ssh's `-L` argument: `[bind_address:]port:host:hostport` (or a socket path form).
/// `--tag KEY=VALUE`: a tag key (1 to 128 characters) and its value (up to 256), no control
/// characters.
pub fn parse_tag(value: &str) -> Result<(String, String), String> {
    let expected = "expected KEY=VALUE (a tag key of 1 to 128 characters, a value of up to 256)";
    let (key, val) = value.split_once('=').ok_or(expected)?;
    let ok = !key.is_empty()
        && key.chars().count() <= 128
        && val.chars().count() <= 256
        && !value.chars().any(char::is_control);
    if !ok {
        return Err(expected.to_string());
    }
    Ok((key.to_string(), val.to_string()))
}

fn parse_forwarding(value: &str) -> Result<String, String> {
    let ok = value.contains(':')
        && !value.starts_with('-')
        && !value.chars().any(|c| c.is_whitespace() || c.is_control());
    accept(
        ok,
        value,
        "expected ssh's -L form [bind_address:]port:host:hostport, like 8080:localhost:80",
    )
}

/// `value` when `ok`, else the expected form as the error.
fn accept(ok: bool, value: &str, expected: &str) -> Result<String, String> {
    if ok {
        Ok(value.to_string())
    } else {
        Err(expected.to_string())
    }
}

/// `--eice-options` as `endpointId=eice-...,dnsName=...,maxTunnelDuration=N` or as JSON.
pub fn parse_eice_options(value: &str) -> Result<EiceOptions, String> {
    // `file://PATH`, as every AWS CLI parameter takes it.
    let read;
    let value = match value.strip_prefix("file://") {
        Some(path) => {
            // `file://~/options.json`: no shell expands a `~` there; the AWS CLI does.
            let path = match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
                (Some(rest), Some(home)) => std::path::Path::new(&home).join(rest),
                _ => std::path::PathBuf::from(path),
            };
            read = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            read.trim()
        }
        None => value,
    };
    let options = if value.trim_start().starts_with('{') {
        serde_json::from_str::<EiceOptionsText>(value).map_err(|e| {
            format!("invalid JSON ({e}); keys are endpointId, dnsName and maxTunnelDuration")
        })?
    } else {
        let mut options = EiceOptionsText::default();
        for pair in value.split(',').filter(|p| !p.is_empty()) {
            let (key, val) =
                pair.split_once('=').ok_or_else(|| format!("expected key=value, got `{pair}`"))?;
            match key.trim() {
                "endpointId" => options.endpoint_id = Some(val.to_string()),
                "dnsName" => options.dns_name = Some(val.to_string()),
                "maxTunnelDuration" => {
                    options.max_tunnel_duration = Some(
                        parse_max_tunnel_duration(val)
                            .map_err(|e| format!("maxTunnelDuration: {e}"))?,
                    )
                }
                other => {
                    return Err(format!(
                        "unknown key `{other}`; keys are endpointId, dnsName and maxTunnelDuration"
                    ))
                }
            }
        }
        options
    };
    if let Some(id) = &options.endpoint_id {
        parse_endpoint_id(id).map_err(|e| format!("endpointId: {e}"))?;
    }
    if options.dns_name.is_some() && options.endpoint_id.is_none() {
        return Err("dnsName needs endpointId".to_string());
    }
    let dns_name = options.dns_name.as_deref().map(parse_dns_name).transpose();
    let dns_name = dns_name.map_err(|e| format!("dnsName: {e}"))?;
    if let Some(secs) = options.max_tunnel_duration {
        parse_max_tunnel_duration(&secs.to_string())
            .map_err(|e| format!("maxTunnelDuration: {e}"))?;
    }
    let EiceOptionsText { endpoint_id, max_tunnel_duration, .. } = options;
    Ok(EiceOptions { endpoint_id, dns_name, max_tunnel_duration })
}

/// The subcommands with a page of their own (`eic-ssh(1)`), as the main page lists them.
pub(crate) const MAN_PAGES: [&str; 10] = [
    "ssh",
    "exec",
    "list",
    "rdp",
    "serial-console",
    "open-tunnel",
    "proxy",
    "ssh-config",
    "completions",
    "man",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("eic").chain(args.iter().copied()))
    }

    fn ssh(args: &[&str]) -> SshArgs {
        let cli = parse(&[&["ssh"], args].concat()).expect("parses");
        match cli.command {
            Command::Ssh(a) => a,
            other => panic!("not ssh: {other:?}"),
        }
    }

    #[test]
    fn ssh_defaults() {
        let a = ssh(&["--instance-id", "i-0abcdef1"]);
        assert_eq!(a.target.instance_id.as_deref(), Some("i-0abcdef1"));
        assert_eq!(a.login.os_user, "ec2-user");
        assert_eq!(a.login.ssh_port, 22);
        assert_eq!(a.login.connection_type, ConnectionType::Auto);
        assert!(a.ssh_args.is_empty());
    }

    #[test]
    fn passthrough_after_double_dash_is_verbatim() {
        let a = ssh(&[
            "--instance-id",
            "i-0abcdef1",
            "--",
            "-t",
            "-o",
            "LogLevel=ERROR",
            "sudo",
            "journalctl",
            "--instance-id",
            "-f",
        ]);
        assert_eq!(
            a.ssh_args,
            ["-t", "-o", "LogLevel=ERROR", "sudo", "journalctl", "--instance-id", "-f"]
        );
    }

    #[test]
    fn global_options_anywhere() {
        let cli = parse(&[
            "ssh",
            "--instance-id",
            "i-0123456789abcdef0",
            "--region",
            "eu-west-1",
            "--debug",
        ])
        .unwrap();
        assert_eq!(cli.global.region.as_deref(), Some("eu-west-1"));
        assert!(cli.global.debug);
        let cli = parse(&["--profile", "p", "open-tunnel", "--instance-id", "i-0123456789abcdef0"])
            .unwrap();
        assert_eq!(cli.global.profile.as_deref(), Some("p"));
    }

    #[test]
    fn eice_options_shorthand_and_json() {
        let want = EiceOptions {
            endpoint_id: Some("eice-0123456789abcdef0".into()),
            dns_name: Some(
                "eice-0123456789abcdef0.abc.ec2-instance-connect-endpoint.us-east-1.amazonaws.com"
                    .parse()
                    .unwrap(),
            ),
            max_tunnel_duration: Some(600),
        };
        let short = "endpointId=eice-0123456789abcdef0,dnsName=eice-0123456789abcdef0.abc.ec2-instance-connect-endpoint.us-east-1.amazonaws.com,maxTunnelDuration=600";
        assert_eq!(parse_eice_options(short).unwrap(), want);
        let json = r#"{"endpointId": "eice-0123456789abcdef0", "dnsName": "eice-0123456789abcdef0.abc.ec2-instance-connect-endpoint.us-east-1.amazonaws.com", "maxTunnelDuration": 600}"#;
        assert_eq!(parse_eice_options(json).unwrap(), want);
        assert_eq!(
            parse_eice_options("endpointId=eice-0123456789abcdef0").unwrap(),
            EiceOptions {
                endpoint_id: Some("eice-0123456789abcdef0".into()),
                ..Default::default()
            }
        );
        assert_eq!(
            parse_eice_options(r#"{"maxTunnelDuration": 1}"#).unwrap(),
            EiceOptions { max_tunnel_duration: Some(1), ..Default::default() }
        );
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [("options.json", format!("{json}\n")), ("options.txt", short.into())] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            let from_file = parse_eice_options(&format!("file://{}", path.display()));
            assert_eq!(from_file.unwrap(), want, "{name}");
        }
        let missing = parse_eice_options("file:///nonexistent/options.json").unwrap_err();
        assert!(missing.contains("cannot read /nonexistent/options.json"), "{missing}");
    }

    #[test]
    fn eice_options_rejections() {
        for (input, needle) in [
            ("endpointId=eice-0123456789abcdef0,color=blue", "unknown key `color`"),
            (r#"{"endpointId": "eice-0123456789abcdef0", "color": "blue"}"#, "invalid JSON"),
            ("dnsName=x.example.com", "dnsName needs endpointId"),
            (r#"{"dnsName": "x.example.com"}"#, "dnsName needs endpointId"),
            ("endpointId=aeice-1", "endpointId: expected `eice-`"),
            ("endpointId=eice-0123456789abcdef0,maxTunnelDuration=0", "maxTunnelDuration"),
            ("endpointId=eice-0123456789abcdef0,maxTunnelDuration=3601", "maxTunnelDuration"),
            (r#"{"maxTunnelDuration": 3601}"#, "maxTunnelDuration"),
            (r#"{"maxTunnelDuration": "ten"}"#, "invalid JSON"),
            ("endpointId", "expected key=value"),
            ("endpointId=eice-0123456789abcdef0,dnsName=a_b.com", "dnsName: expected a DNS name"),
        ] {
            let err = parse_eice_options(input).unwrap_err();
            assert!(err.contains(needle), "{input}: {err}");
        }
    }

    #[test]
    fn field_validators() {
        for good in ["i-0123456789abcdef0", "i-0abcdef1"] {
            assert!(parse_instance_id(good).is_ok(), "{good}");
        }
        let short = ["i-1", "i-0123456789", "i-0123456789abcdef01", "i-0123456789ABCDEF0"];
        for bad in ["a-123", "i-12+3:4;5", "i-", "i-abc def", ""].into_iter().chain(short) {
            assert!(parse_instance_id(bad).is_err(), "{bad}");
        }
        assert!(parse_endpoint_id("eice-0123456789abcdef0").is_ok());
        for bad in
            ["aeice-1", "eice-12;3", "eice-", "eice-0123456789abcdef", "eice-0123456789abcdefg"]
        {
            assert!(parse_endpoint_id(bad).is_err(), "{bad}");
        }
        for good in ["a.b-c.example.com", "localhost:8443", "127.0.0.1:1", "EICE.Example.COM"] {
            assert!(parse_dns_name(good).is_ok(), "{good}");
        }
        for bad in
            ["a_b.com", "a b", "x.com:0", "x.com:65536", "x.com:", ":443", "x.com/p", "x.com:22:1"]
        {
            assert!(parse_dns_name(bad).is_err(), "{bad}");
        }
        for bad in ["0", "65536", "-1", "ssh", "22.5"] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
        for bad in ["0", "3601", "1.5", "x", "-5"] {
            assert!(parse_max_tunnel_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_max_tunnel_duration("3600"), Ok(3600));
        // SendSSHPublicKey's pattern, ^[A-Za-z_][A-Za-z0-9@._-]{0,30}[A-Za-z0-9$_-]?$
        for user in ["ubuntu", "ec2-user", "_svc", "admin@corp.example", "host$", "a", "x.y-z_1"] {
            assert!(parse_os_user(user).is_ok(), "{user}");
        }
        let too_long = "a".repeat(33);
        for user in [
            "-oProxyCommand=x",
            "",
            "1abc",
            "@corp",
            "$",
            "a$b",
            "a b",
            "a'b",
            "a;b",
            "a%h",
            too_long.as_str(),
        ] {
            assert!(parse_os_user(user).is_err(), "{user}");
        }
        assert!(parse_os_user(&"a".repeat(32)).is_ok());
        assert!(parse_os_user(&format!("{}.", "a".repeat(30))).is_ok());
        assert!(parse_os_user(&format!("{}.", "a".repeat(31))).is_err());
        assert!(parse_forwarding("8080:localhost:80").is_ok());
        assert!(parse_forwarding("-oProxyCommand=x").is_err());
    }

    #[test]
    fn cross_field_rules() {
        let cases: &[(&[&str], Option<&str>)] = &[
            (
                &[
                    "ssh",
                    "--instance-id",
                    "i-0123456789abcdef0",
                    "--connection-type",
                    "direct",
                    "--eice-options",
                    "endpointId=eice-0123456789abcdef0",
                ],
                Some("--eice-options cannot be used"),
            ),
            (
                &["ssh", "--instance-id", "i-0123456789abcdef0", "--instance-ip", "10.0.0.1"],
                Some("--instance-ip needs"),
            ),
            (
                &[
                    "ssh",
                    "--instance-id",
                    "i-0123456789abcdef0",
                    "--instance-ip",
                    "10.0.0.1",
                    "--connection-type",
                    "eice",
                ],
                None,
            ),
            (&["open-tunnel", "--remote-port", "22"], Some("specify --instance-id")),
            (
                &["open-tunnel", "--private-ip-address", "10.0.0.1"],
                Some("--private-ip-address needs"),
            ),
            (
                &[
                    "open-tunnel",
                    "--instance-id",
                    "i-0123456789abcdef0",
                    "--instance-connect-endpoint-dns-name",
                    "a.b",
                ],
                Some("--instance-connect-endpoint-dns-name needs"),
            ),
            (&["open-tunnel", "--instance-id", "i-0123456789abcdef0"], None),
        ];
        for (args, want) in cases {
            let cli = parse(args).unwrap();
            let got = cli.into_plan(false).err().map(|e| e.to_string());
            match (want, got) {
                (None, None) => {}
                (Some(w), Some(g)) => assert!(g.contains(w), "{args:?}: {g}"),
                (w, g) => panic!("{args:?}: want {w:?}, got {g:?}"),
            }
        }
        let cli = parse(&["open-tunnel", "--instance-id", "i-0123456789abcdef0"]).unwrap();
        let err = cli.into_plan(true).unwrap_err().to_string();
        assert!(err.contains("--local-port is required"), "{err}");
        let cli =
            parse(&["open-tunnel", "--instance-id", "i-0123456789abcdef0", "--local-port", "0"])
                .unwrap();
        assert!(cli.into_plan(true).is_ok());
    }

    #[test]
    fn plans_say_what_runs() {
        let plan = |args: &[&str]| parse(args).unwrap().into_plan(false).unwrap().plan;
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let endpoint = |dns: Option<&str>| GivenEndpoint {
            id: "eice-0123456789abcdef0".into(),
            dns_name: dns.map(|d| d.parse().unwrap()),
        };
        let via = |args: &[&str]| match plan(
            &[&["ssh", "--instance-id", "i-0123456789abcdef0"], args].concat(),
        ) {
            Plan::Ssh(ssh) => ssh.via,
            other => panic!("not ssh: {other:?}"),
        };
        let eice =
            |ip, endpoint, max_tunnel_duration| Via::Eice { ip, endpoint, max_tunnel_duration };
        for (args, want) in [
            (&[][..], Via::Auto),
            (&["--connection-type", "direct"], Via::Direct { ip: None }),
            (
                &["--connection-type", "direct", "--instance-ip", "1.2.3.4"],
                Via::Direct { ip: ip("1.2.3.4") },
            ),
            (&["--connection-type", "eice"], eice(None, None, None)),
            // Any --eice-options means the endpoint, as in the AWS CLI.
            (
                &["--eice-options", "endpointId=eice-0123456789abcdef0,maxTunnelDuration=60"],
                eice(None, Some(endpoint(None)), Some(60)),
            ),
            (
                &[
                    "--connection-type",
                    "eice",
                    "--instance-ip",
                    "10.0.0.9",
                    "--eice-options",
                    "endpointId=eice-0123456789abcdef0,dnsName=E.example.com",
                ],
                eice(ip("10.0.0.9"), Some(endpoint(Some("e.example.com"))), None),
            ),
        ] {
            assert_eq!(via(args), want, "{args:?}");
        }
        let tunnel = |args: &[&str]| match plan(&[&["open-tunnel"], args].concat()) {
            Plan::OpenTunnel(t) => t.to,
            other => panic!("not a stdio tunnel: {other:?}"),
        };
        let id = || InstanceRef::Id("i-0123456789abcdef0".into());
        for (args, want) in [
            (
                &["--instance-id", "i-0123456789abcdef0"][..],
                TunnelTo::Instance { instance: id(), endpoint: None },
            ),
            (
                &["--name", "web", "--instance-connect-endpoint-id", "eice-0123456789abcdef0"],
                TunnelTo::Instance {
                    instance: InstanceRef::Name("web".into()),
                    endpoint: Some(endpoint(None)),
                },
            ),
            (
                &[
                    "--instance-id",
                    "i-0123456789abcdef0",
                    "--instance-connect-endpoint-id",
                    "eice-0123456789abcdef0",
                    "--private-ip-address",
                    "10.0.0.5",
                    "--instance-connect-endpoint-dns-name",
                    "e.example.com",
                ],
                TunnelTo::Address {
                    ip: "10.0.0.5".parse().unwrap(),
                    endpoint: endpoint(Some("e.example.com")),
                },
            ),
        ] {
            assert_eq!(tunnel(args), want, "{args:?}");
        }
        match plan(&["proxy", "web-1.eic", "22", "ubuntu"]) {
            Plan::Proxy(p) => assert_eq!(p.instance, InstanceRef::Name("web-1".into())),
            other => panic!("not proxy: {other:?}"),
        }
    }

    #[test]
    fn exec_takes_a_union_of_selectors_and_needs_a_command() {
        let plan = |args: &[&str]| {
            let args = [&["exec"], args].concat();
            parse(&args).map_err(|e| e.to_string())?.into_plan(false).map_err(|e| e.to_string())
        };
        let Ok(Invocation { plan: Plan::Exec(exec), .. }) = plan(&[
            "--instance-id",
            "i-0123456789abcdef0",
            "--name",
            "web-1",
            "--tag",
            "role=web",
            "--tag",
            "env=prod=blue",
            "--parallel",
            "40",
            "--",
            "-t",
            "uptime",
        ]) else {
            panic!("an exec plan")
        };
        let want = Selection {
            ids: vec!["i-0123456789abcdef0".into()],
            names: vec!["web-1".into()],
            tags: vec![("role".into(), "web".into()), ("env".into(), "prod=blue".into())],
        };
        assert_eq!((exec.selection, exec.parallel), (want, 40));
        assert_eq!(exec.ssh_args, ["-t", "uptime"]);
        // (arguments, what the error says)
        for (args, says) in [
            (&["--", "uptime"][..], "name the instances"),
            (&["--tag", "role=web", "--", "-t"], "needs a command"),
            (&["--tag", "role=web", "--", "-l", "root", "id"], "--os-user"),
            (&["--tag", "novalue", "--", "true"], "KEY=VALUE"),
            (&["--tag", "=x", "--", "true"], "KEY=VALUE"),
            (&["--name", "a", "--parallel", "0", "--", "true"], "--parallel"),
            (&["--name", "a"], "COMMAND"),
        ] {
            let err = plan(args).err().unwrap_or_default();
            assert!(err.contains(says), "{args:?}: {err}");
        }
    }

    #[test]
    fn reconnect_keeps_forwardings_only() {
        let plan = |args: &[&str]| {
            let args =
                [&["ssh", "--instance-id", "i-0123456789abcdef0", "--reconnect"], args].concat();
            parse(&args).map_err(|e| e.to_string())?.into_plan(false).map_err(|e| e.to_string())
        };
        for ok in [
            &["--local-forwarding", "5432:db:5432"][..],
            &["--", "-L", "8080:localhost:80"],
            &["--", "-D1080", "-o", "ServerAliveInterval=10"],
            &["--", "-N", "-R", "9000:localhost:9000"],
        ] {
            let Ok(Invocation { plan: Plan::Ssh(ssh), .. }) = plan(ok) else {
                panic!("{ok:?}: {:?}", plan(ok).err())
            };
            assert!(ssh.reconnect && ssh.persist.is_none(), "{ok:?}");
        }
        for (args, says) in [
            (&[][..], "needs a forwarding"),
            (&["--", "-o", "LogLevel=ERROR"], "needs a forwarding"),
            (&["--local-forwarding", "1:a:1", "--", "uptime"], "no remote command"),
            (&["--local-forwarding", "1:a:1", "--", "-t"], "-t"),
            (&["--", "-fL", "1:a:1"], "-f"),
            (
                &["--", "-L", "1:a:1", "-o", "ForkAfterAuthentication=yes"],
                "forkafterauthentication",
            ),
            (&["--stop"], "cannot be used with"),
        ] {
            let err = plan(args).err().unwrap_or_default();
            assert!(err.contains(says), "{args:?}: {err}");
        }
    }

    #[test]
    fn push_key_needs_a_key_file() {
        assert!(parse(&["ssh", "--instance-id", "i-0123456789abcdef0", "--push-key"]).is_err());
        let a = ssh(&["--instance-id", "i-0123456789abcdef0", "--private-key-file", "k.pem"]);
        assert!(!a.login.push_key);
        let a =
            ssh(&["--instance-id", "i-0123456789abcdef0", "--private-key-file", "k", "--push-key"]);
        assert!(a.login.push_key);
    }

    #[test]
    fn bind_needs_local_port() {
        assert!(parse(&["open-tunnel", "--instance-id", "i-0123456789abcdef0", "--bind", "::1"])
            .is_err());
        let cli = parse(&[
            "open-tunnel",
            "--instance-id",
            "i-0123456789abcdef0",
            "--bind",
            "::1",
            "--local-port",
            "0",
        ])
        .unwrap();
        match cli.command {
            Command::OpenTunnel(t) => assert_eq!(t.bind, "::1".parse::<IpAddr>().unwrap()),
            other => panic!("not open-tunnel: {other:?}"),
        }
        // The AWS CLI's name for it, and its default value.
        let listen = |flag: &str, value: &str| {
            let args = ["open-tunnel", "--instance-id", "i-0123456789abcdef0", "--local-port", "0"];
            parse(&[&args[..], &[flag, value]].concat())
        };
        for (flag, value, bound) in [
            ("--local-ip", "localhost", "127.0.0.1"),
            ("--local-ip", "0.0.0.0", "0.0.0.0"),
            ("--bind", "LOCALHOST", "127.0.0.1"),
        ] {
            match listen(flag, value).unwrap().command {
                Command::OpenTunnel(t) => assert_eq!(t.bind, bound.parse::<IpAddr>().unwrap()),
                other => panic!("not open-tunnel: {other:?}"),
            }
        }
        assert!(listen("--bind", "lo").is_err());
    }

    #[test]
    fn serial_console_plans() {
        let plan = |args: &[&str], terminal| -> Result<SerialConsolePlan, String> {
            let args = [&["serial-console"][..], args].concat();
            let cli = parse(&args).map_err(|e| e.to_string())?;
            match cli.into_plan(terminal).map_err(|e| e.to_string())?.plan {
                Plan::SerialConsole(plan) => Ok(plan),
                other => panic!("not serial-console: {other:?}"),
            }
        };
        let parse = |args: &[&str]| plan(args, false);
        let p = parse(&["--instance-id", "i-0123456789abcdef0"]).unwrap();
        assert_eq!(p.instance, InstanceRef::Id("i-0123456789abcdef0".into()));
        assert_eq!((p.serial_port, p.dry_run, p.output), (0, false, Output::Text));
        assert!(matches!(p.key, KeySource::OneTime));
        let p = parse(&["--name", "web", "--private-key-file", "k", "--serial-port", "0"]).unwrap();
        assert_eq!((p.instance, p.serial_port), (InstanceRef::Name("web".into()), 0));
        assert!(matches!(p.key, KeySource::Pushed(path) if path == std::path::Path::new("k")));
        let p = parse(&["--instance-id", "i-0123456789abcdef0", "--dry-run", "--output", "json"]);
        assert_eq!(p.unwrap().output, Output::Json);
        assert_eq!(plan(&[], true).unwrap().instance, InstanceRef::Pick);
        for (args, error) in [
            (&[][..], "specify --instance-id or --name"),
            (&["--instance-id", "i-0123456789abcdef0", "--output", "json"], "--dry-run"),
            (&["--instance-id", "i-0123456789abcdef0", "--serial-port", "1"], "one port: 0"),
            (&["--instance-id", "i-0123456789abcdef0", "--serial-port", "-1"], "-1"),
            (&["--instance-id", "web"], "i-"),
            (&["--instance-id", "i-0123456789abcdef0", "--name", "web"], "cannot be used with"),
        ] {
            let e = parse(args).unwrap_err();
            assert!(e.contains(error), "{args:?}: {e}");
        }
    }

    #[test]
    fn clap_definitions_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn examples_keep_their_lines_in_help() {
        use clap::CommandFactory;
        let pages = [
            ("ssh", SSH_EXAMPLES),
            ("open-tunnel", TUNNEL_EXAMPLES),
            ("serial-console", SERIAL_EXAMPLES),
        ];
        for (name, examples) in pages {
            let help = Cli::command()
                .find_subcommand_mut(name)
                .expect("subcommand")
                .render_long_help()
                .to_string();
            let lines: Vec<&str> = help.lines().map(str::trim_end).collect();
            for line in examples.lines() {
                // Copied into a shell, a line that clap wrapped would be two commands.
                assert!(lines.contains(&line), "{name}: wrapped: {line:?}\n{help}");
                assert!(line.len() <= 100, "{name}: too long for --help: {line:?}");
            }
        }
    }
}
