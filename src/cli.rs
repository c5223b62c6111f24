//! Command-line definitions (clap derive) and the validation that needs no network.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

use crate::error::usage;

const SSH_EXAMPLES: &str = "\
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

const TUNNEL_EXAMPLES: &str = "\
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
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

const GLOBAL: &str = "Global options";

/// Options shared by every subcommand (the AWS CLI's global options).
#[derive(Debug, Clone, Default, Args)]
pub struct Global {
    /// AWS region to use (default: AWS_REGION, then the profile's region).
    #[arg(long, global = true, value_name = "REGION", value_parser = parse_region, help_heading = GLOBAL)]
    pub region: Option<String>,

    /// Named profile from ~/.aws/config and ~/.aws/credentials (default: AWS_PROFILE).
    #[arg(long, global = true, value_name = "NAME", help_heading = GLOBAL)]
    pub profile: Option<String>,

    /// Override the EC2 and EC2 Instance Connect API endpoint (like AWS_ENDPOINT_URL).
    #[arg(long, global = true, value_name = "URL", help_heading = GLOBAL)]
    pub endpoint_url: Option<String>,

    /// CA certificates (PEM) to trust for the APIs and the tunnel (default: AWS_CA_BUNDLE, then
    /// the profile's ca_bundle, then the system's).
    #[arg(long, global = true, value_name = "PATH", help_heading = GLOBAL)]
    pub ca_bundle: Option<PathBuf>,

    /// Print debug logs to stderr (secrets, tokens and signatures are redacted).
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub debug: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Connect to an instance with ssh, using a one-time key pushed with EC2 Instance Connect.
    #[command(after_help = SSH_EXAMPLES)]
    Ssh(SshArgs),
    /// Open a WebSocket tunnel to a port of an instance through an EC2 Instance Connect Endpoint.
    #[command(after_help = TUNNEL_EXAMPLES)]
    OpenTunnel(TunnelArgs),
    /// ProxyCommand for ssh_config: push eic's key for USER, then tunnel stdin/stdout to HOST.
    #[command(
        after_help = "In ~/.ssh/config (see `eic ssh-config`):\n    ProxyCommand eic proxy '%h' %p '%r'"
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
pub struct ProxyArgs {
    /// An instance id (i-...), a Name tag, or NAME.eic.
    #[arg(value_name = "HOST", value_parser = parse_host)]
    pub host: String,
    /// The port on the instance (ssh's %p).
    #[arg(value_name = "PORT", value_parser = parse_port)]
    pub port: u16,
    /// The user to push the key for (ssh's %r).
    #[arg(value_name = "USER", value_parser = parse_os_user)]
    pub user: String,
    /// The private key whose public half is pushed (default ~/.ssh/eic_ed25519, made on first use).
    #[arg(long, value_name = "PATH")]
    pub key_file: Option<PathBuf>,
    /// Give up on an endpoint that has not accepted the tunnel after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u16).range(1..))]
    pub connect_timeout: u16,
}

#[derive(Debug, Clone, Args)]
pub struct SshConfigArgs {
    /// Write the block to ~/.ssh/eic_config and include it from the top of ~/.ssh/config.
    #[arg(long)]
    pub install: bool,
}

/// How `eic ssh` reaches the instance, as the AWS CLI defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ConnectionType {
    /// Public IPv4 directly, else private IPv4 through the endpoint, else IPv6 directly.
    #[default]
    Auto,
    /// Directly: public IPv4, else IPv6, else private IPv4.
    Direct,
    /// Through an EC2 Instance Connect Endpoint: private IPv4, else IPv6.
    Eice,
}

#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["instance_id", "name"])))]
pub struct SshArgs {
    /// The instance to connect to (i-...).
    #[arg(long, value_name = "ID", value_parser = parse_instance_id)]
    pub instance_id: Option<String>,

    /// The running instance whose Name tag is NAME (instead of --instance-id).
    #[arg(long, value_name = "NAME", conflicts_with = "instance_id", value_parser = parse_name)]
    pub name: Option<String>,

    /// Connect to this IP address instead of the one found for the connection type.
    #[arg(long, value_name = "IP")]
    pub instance_ip: Option<IpAddr>,

    /// Log in with this private key, already authorized on the instance, instead of a one-time
    /// key; nothing is pushed (see --push-key).
    #[arg(long, value_name = "PATH")]
    pub private_key_file: Option<PathBuf>,

    /// Push the public half of --private-key-file (from the key itself, or PATH.pub) before
    /// logging in, as is done with the one-time key.
    #[arg(long, requires = "private_key_file")]
    pub push_key: bool,

    /// User name to log in as (the key is pushed for this user).
    #[arg(long, value_name = "USER", default_value = "ec2-user", value_parser = parse_os_user)]
    pub os_user: String,

    /// SSH port on the instance.
    #[arg(long, value_name = "PORT", default_value_t = 22, value_parser = parse_port)]
    pub ssh_port: u16,

    /// Forward a local port, in ssh's -L form: [bind_address:]port:host:hostport.
    #[arg(long, value_name = "SPEC", value_parser = parse_forwarding)]
    pub local_forwarding: Option<String>,

    /// How to reach the instance.
    #[arg(long, value_enum, value_name = "TYPE", default_value_t = ConnectionType::Auto)]
    pub connection_type: ConnectionType,

    /// Endpoint settings: endpointId=eice-...,dnsName=...,maxTunnelDuration=N, or the same as JSON;
    /// either may be read from file://PATH.
    #[arg(long, value_name = "OPTIONS", value_parser = parse_eice_options)]
    pub eice_options: Option<EiceOptions>,

    /// Print the ssh command line that would run and exit, without pushing a key.
    #[arg(long)]
    pub dry_run: bool,

    /// Extra ssh arguments and a remote command, after `--`, passed to ssh verbatim.
    #[arg(last = true, value_name = "SSH_ARGS", allow_hyphen_values = true)]
    pub ssh_args: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct TunnelArgs {
    /// The instance to connect to (i-...); its address and endpoint are looked up.
    #[arg(long, value_name = "ID", value_parser = parse_instance_id)]
    pub instance_id: Option<String>,

    /// The running instance whose Name tag is NAME (instead of --instance-id).
    #[arg(long, value_name = "NAME", conflicts_with = "instance_id", value_parser = parse_name)]
    pub name: Option<String>,

    /// Use this endpoint instead of looking one up.
    #[arg(long, value_name = "ID", value_parser = parse_endpoint_id)]
    pub instance_connect_endpoint_id: Option<String>,

    /// The endpoint's DNS name; with the endpoint id and private IP, no API call is made.
    #[arg(long, value_name = "DNS", value_parser = parse_dns_name)]
    pub instance_connect_endpoint_dns_name: Option<String>,

    /// Private IP address of the target (requires --instance-connect-endpoint-id).
    #[arg(long, value_name = "IP")]
    pub private_ip_address: Option<IpAddr>,

    /// Port on the instance (the service allows 22 and 3389).
    #[arg(long, value_name = "PORT", default_value_t = 22, value_parser = parse_port)]
    pub remote_port: u16,

    /// Listen on this local port instead of using stdin/stdout (0 picks a free port).
    #[arg(long, value_name = "PORT", value_parser = parse_local_port)]
    pub local_port: Option<u16>,

    /// Address to listen on with --local-port (--local-ip in the AWS CLI).
    #[arg(
        long,
        visible_alias = "local-ip",
        value_name = "ADDR",
        default_value = "127.0.0.1",
        value_parser = parse_bind,
        requires = "local_port"
    )]
    pub bind: IpAddr,

    /// Maximum duration of each tunnel, in seconds (1-3600).
    #[arg(long, value_name = "SECONDS", value_parser = parse_max_tunnel_duration)]
    pub max_tunnel_duration: Option<u32>,

    /// Maximum number of tunnels open at once in listener mode.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_websocket_connections: u16,

    /// Give up on an endpoint that has not accepted the tunnel after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u16).range(1..))]
    pub connect_timeout: u16,
}

/// `--eice-options`, in the AWS CLI's shorthand or JSON form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EiceOptions {
    pub endpoint_id: Option<String>,
    pub dns_name: Option<String>,
    pub max_tunnel_duration: Option<u32>,
}

impl Cli {
    /// Checks that need more than one option at a time; all before any network call.
    pub fn validate(&self, stdin_is_terminal: bool) -> anyhow::Result<()> {
        match &self.command {
            Command::Ssh(args) => args.validate(),
            Command::OpenTunnel(args) => args.validate(stdin_is_terminal),
            _ => Ok(()),
        }
    }
}

impl SshArgs {
    fn validate(&self) -> anyhow::Result<()> {
        if self.eice_options.is_some() && self.connection_type == ConnectionType::Direct {
            return Err(usage(
                "--eice-options cannot be used with --connection-type direct: use --connection-type eice (or auto)",
            ));
        }
        if self.instance_ip.is_some() && self.connection_type == ConnectionType::Auto {
            return Err(usage(
                "--instance-ip needs an explicit --connection-type direct or eice",
            ));
        }
        if let Some((option, instead)) = crate::ssh_command::overriding_option(&self.ssh_args) {
            return Err(usage(format!(
                "{option} after `--` would be ignored or would not match the pushed key: use {instead}"
            )));
        }
        Ok(())
    }
}

impl TunnelArgs {
    fn validate(&self, stdin_is_terminal: bool) -> anyhow::Result<()> {
        if self.instance_id.is_none() && self.name.is_none() && self.private_ip_address.is_none() {
            return Err(usage(
                "specify --instance-id (or --name), or --private-ip-address with --instance-connect-endpoint-id",
            ));
        }
        if self.instance_connect_endpoint_id.is_none() {
            if self.instance_connect_endpoint_dns_name.is_some() {
                return Err(usage(
                    "--instance-connect-endpoint-dns-name needs --instance-connect-endpoint-id",
                ));
            }
            if self.private_ip_address.is_some() {
                return Err(usage(
                    "--private-ip-address needs --instance-connect-endpoint-id",
                ));
            }
        }
        if self.local_port.is_none() && stdin_is_terminal {
            return Err(usage(
                "--local-port is required when stdin is a terminal (without it, stdin/stdout carry the tunnel, as for an ssh ProxyCommand)",
            ));
        }
        Ok(())
    }
}

fn parse_id(value: &str, prefix: &str, example: &str) -> Result<String, String> {
    let rest = value.strip_prefix(prefix).unwrap_or("");
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(format!(
            "expected `{prefix}` followed by letters and digits, like {example}"
        ));
    }
    Ok(value.to_string())
}

pub fn parse_instance_id(value: &str) -> Result<String, String> {
    parse_id(value, "i-", "i-0123456789abcdef0")
}

pub fn parse_endpoint_id(value: &str) -> Result<String, String> {
    parse_id(value, "eice-", "eice-0123456789abcdef0")
}

/// A Name tag value: printable, no control characters.
pub fn parse_name(value: &str) -> Result<String, String> {
    if value.is_empty() || value.len() > 256 || value.chars().any(char::is_control) {
        return Err(
            "expected a Name tag value (1 to 256 characters, no control characters)".into(),
        );
    }
    Ok(value.to_string())
}

/// ssh's %h for `eic proxy`: an instance id, or a Name tag (optionally as NAME.eic).
pub fn parse_host(value: &str) -> Result<String, String> {
    let plain = !value.is_empty()
        && !value.starts_with('-')
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    accept(
        plain,
        value,
        "expected an instance id (i-...) or a Name tag of letters, digits, '.', '_' and '-'",
    )
}

/// A DNS name of letters, digits, `.` and `-`, with an optional `:port`.
pub fn parse_dns_name(value: &str) -> Result<String, String> {
    const EXPECTED: &str =
        "expected a DNS name of letters, digits, '.' and '-', with an optional :port";
    let (host, port) = match value.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (value, None),
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    if !host_ok {
        return Err(EXPECTED.to_string());
    }
    if let Some(port) = port {
        parse_port(port).map_err(|_| EXPECTED.to_string())?;
    }
    Ok(value.to_ascii_lowercase())
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

pub fn parse_max_tunnel_duration(value: &str) -> Result<u32, String> {
    match value.parse::<u32>() {
        Ok(secs) if (1..=3600).contains(&secs) => Ok(secs),
        _ => Err("expected a whole number of seconds from 1 to 3600".to_string()),
    }
}

fn parse_region(value: &str) -> Result<String, String> {
    let ok = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
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
            && middle
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"@._-".contains(b))
            && last.is_none_or(|b| b.is_ascii_alphanumeric() || b"$_-".contains(b))
    });
    accept(
        ok,
        value,
        "expected a user name of letters, digits, '.', '_', '-' and '@', starting with a letter or '_', at most 32 (a trailing '$' is allowed)",
    )
}

/// ssh's `-L` argument: `[bind_address:]port:host:hostport` (or a socket path form).
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
        serde_json::from_str::<EiceOptions>(value).map_err(|e| {
            format!("invalid JSON ({e}); keys are endpointId, dnsName and maxTunnelDuration")
        })?
    } else {
        let mut options = EiceOptions::default();
        for pair in value.split(',').filter(|p| !p.is_empty()) {
            let (key, val) = pair
                .split_once('=')
                .ok_or_else(|| format!("expected key=value, got `{pair}`"))?;
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
    if let Some(dns) = &options.dns_name {
        if options.endpoint_id.is_none() {
            return Err("dnsName needs endpointId".to_string());
        }
        parse_dns_name(dns).map_err(|e| format!("dnsName: {e}"))?;
    }
    if let Some(secs) = options.max_tunnel_duration {
        parse_max_tunnel_duration(&secs.to_string())
            .map_err(|e| format!("maxTunnelDuration: {e}"))?;
    }
    Ok(EiceOptions {
        dns_name: options.dns_name.map(|d| d.to_ascii_lowercase()),
        ..options
    })
}

/// The subcommands with a page of their own (`eic-ssh(1)`), as the main page lists them.
const MAN_PAGES: [&str; 6] = [
    "ssh",
    "open-tunnel",
    "proxy",
    "ssh-config",
    "completions",
    "man",
];

/// The man page (roff) of eic, or of one of its subcommands. The examples keep their lines, as
/// in `--help`: clap_mangen would fill them into one paragraph.
pub fn man_page(subcommand: Option<&str>) -> std::io::Result<Vec<u8>> {
    let mut eic = <Cli as clap::CommandFactory>::command().disable_help_subcommand(true);
    eic.build();
    let command = match subcommand {
        Some(name) => eic
            .find_subcommand(name)
            .cloned()
            .ok_or_else(|| std::io::Error::other(format!("no man page for {name}")))?,
        None => eic,
    };
    let man = clap_mangen::Man::new(command.clone());
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    if command.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut page)?;
    }
    if command.has_subcommands() {
        man.render_subcommands_section(&mut page)?;
    }
    if let Some(text) = command.get_after_help() {
        let text = text.to_string();
        let text = text.strip_prefix("Examples:\n").unwrap_or(&text);
        page.extend_from_slice(b".SH EXAMPLES\n.nf\n");
        for line in text.lines() {
            // Backslashes and minus signs as roff wants them; a leading dot is not a request.
            let line = line.replace('\\', "\\e").replace('-', "\\-");
            if line.starts_with(['.', '\'']) {
                page.extend_from_slice(b"\\&");
            }
            page.extend_from_slice(line.as_bytes());
            page.push(b'\n');
        }
        page.extend_from_slice(b".fi\n");
    }
    if command.get_version().is_some() {
        man.render_version_section(&mut page)?;
    }
    Ok(page)
}

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
        let a = ssh(&["--instance-id", "i-0abc"]);
        assert_eq!(a.instance_id.as_deref(), Some("i-0abc"));
        assert_eq!(a.os_user, "ec2-user");
        assert_eq!(a.ssh_port, 22);
        assert_eq!(a.connection_type, ConnectionType::Auto);
        assert!(a.ssh_args.is_empty());
    }

    #[test]
    fn passthrough_after_double_dash_is_verbatim() {
        let a = ssh(&[
            "--instance-id",
            "i-0abc",
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
            [
                "-t",
                "-o",
                "LogLevel=ERROR",
                "sudo",
                "journalctl",
                "--instance-id",
                "-f"
            ]
        );
    }

    #[test]
    fn global_options_anywhere() {
        let cli = parse(&[
            "ssh",
            "--instance-id",
            "i-1",
            "--region",
            "eu-west-1",
            "--debug",
        ])
        .unwrap();
        assert_eq!(cli.global.region.as_deref(), Some("eu-west-1"));
        assert!(cli.global.debug);
        let cli = parse(&["--profile", "p", "open-tunnel", "--instance-id", "i-1"]).unwrap();
        assert_eq!(cli.global.profile.as_deref(), Some("p"));
    }

    #[test]
    fn eice_options_shorthand_and_json() {
        let want = EiceOptions {
            endpoint_id: Some("eice-0123".into()),
            dns_name: Some(
                "eice-0123.abc.ec2-instance-connect-endpoint.us-east-1.amazonaws.com".into(),
            ),
            max_tunnel_duration: Some(600),
        };
        let short = "endpointId=eice-0123,dnsName=eice-0123.abc.ec2-instance-connect-endpoint.us-east-1.amazonaws.com,maxTunnelDuration=600";
        assert_eq!(parse_eice_options(short).unwrap(), want);
        let json = r#"{"endpointId": "eice-0123", "dnsName": "eice-0123.abc.ec2-instance-connect-endpoint.us-east-1.amazonaws.com", "maxTunnelDuration": 600}"#;
        assert_eq!(parse_eice_options(json).unwrap(), want);
        assert_eq!(
            parse_eice_options("endpointId=eice-1").unwrap(),
            EiceOptions {
                endpoint_id: Some("eice-1".into()),
                ..Default::default()
            }
        );
        assert_eq!(
            parse_eice_options(r#"{"maxTunnelDuration": 1}"#).unwrap(),
            EiceOptions {
                max_tunnel_duration: Some(1),
                ..Default::default()
            }
        );
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [
            ("options.json", format!("{json}\n")),
            ("options.txt", short.into()),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            let from_file = parse_eice_options(&format!("file://{}", path.display()));
            assert_eq!(from_file.unwrap(), want, "{name}");
        }
        let missing = parse_eice_options("file:///nonexistent/options.json").unwrap_err();
        assert!(
            missing.contains("cannot read /nonexistent/options.json"),
            "{missing}"
        );
    }

    #[test]
    fn eice_options_rejections() {
        for (input, needle) in [
            ("endpointId=eice-1,color=blue", "unknown key `color`"),
            (
                r#"{"endpointId": "eice-1", "color": "blue"}"#,
                "invalid JSON",
            ),
            ("dnsName=x.example.com", "dnsName needs endpointId"),
            (
                r#"{"dnsName": "x.example.com"}"#,
                "dnsName needs endpointId",
            ),
            ("endpointId=aeice-1", "endpointId: expected `eice-`"),
            ("endpointId=eice-1,maxTunnelDuration=0", "maxTunnelDuration"),
            (
                "endpointId=eice-1,maxTunnelDuration=3601",
                "maxTunnelDuration",
            ),
            (r#"{"maxTunnelDuration": 3601}"#, "maxTunnelDuration"),
            (r#"{"maxTunnelDuration": "ten"}"#, "invalid JSON"),
            ("endpointId", "expected key=value"),
            (
                "endpointId=eice-1,dnsName=a_b.com",
                "dnsName: expected a DNS name",
            ),
        ] {
            let err = parse_eice_options(input).unwrap_err();
            assert!(err.contains(needle), "{input}: {err}");
        }
    }

    #[test]
    fn field_validators() {
        assert!(parse_instance_id("i-0123456789abcdef0").is_ok());
        for bad in ["a-123", "i-12+3:4;5", "i-", "i-abc def", ""] {
            assert!(parse_instance_id(bad).is_err(), "{bad}");
        }
        assert!(parse_endpoint_id("eice-0123456789abcdef0").is_ok());
        for bad in ["aeice-1", "eice-12;3", "eice-"] {
            assert!(parse_endpoint_id(bad).is_err(), "{bad}");
        }
        for good in [
            "a.b-c.example.com",
            "localhost:8443",
            "127.0.0.1:1",
            "EICE.Example.COM",
        ] {
            assert!(parse_dns_name(good).is_ok(), "{good}");
        }
        for bad in [
            "a_b.com",
            "a b",
            "x.com:0",
            "x.com:65536",
            "x.com:",
            ":443",
            "x.com/p",
            "x.com:22:1",
        ] {
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
        for user in [
            "ubuntu",
            "ec2-user",
            "_svc",
            "admin@corp.example",
            "host$",
            "a",
            "x.y-z_1",
        ] {
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
                    "i-1",
                    "--connection-type",
                    "direct",
                    "--eice-options",
                    "endpointId=eice-1",
                ],
                Some("--eice-options cannot be used"),
            ),
            (
                &["ssh", "--instance-id", "i-1", "--instance-ip", "10.0.0.1"],
                Some("--instance-ip needs"),
            ),
            (
                &[
                    "ssh",
                    "--instance-id",
                    "i-1",
                    "--instance-ip",
                    "10.0.0.1",
                    "--connection-type",
                    "eice",
                ],
                None,
            ),
            (
                &["open-tunnel", "--remote-port", "22"],
                Some("specify --instance-id"),
            ),
            (
                &["open-tunnel", "--private-ip-address", "10.0.0.1"],
                Some("--private-ip-address needs"),
            ),
            (
                &[
                    "open-tunnel",
                    "--instance-id",
                    "i-1",
                    "--instance-connect-endpoint-dns-name",
                    "a.b",
                ],
                Some("--instance-connect-endpoint-dns-name needs"),
            ),
            (&["open-tunnel", "--instance-id", "i-1"], None),
        ];
        for (args, want) in cases {
            let cli = parse(args).unwrap();
            let got = cli.validate(false).err().map(|e| e.to_string());
            match (want, got) {
                (None, None) => {}
                (Some(w), Some(g)) => assert!(g.contains(w), "{args:?}: {g}"),
                (w, g) => panic!("{args:?}: want {w:?}, got {g:?}"),
            }
        }
        let cli = parse(&["open-tunnel", "--instance-id", "i-1"]).unwrap();
        let err = cli.validate(true).unwrap_err().to_string();
        assert!(err.contains("--local-port is required"), "{err}");
        let cli = parse(&["open-tunnel", "--instance-id", "i-1", "--local-port", "0"]).unwrap();
        assert!(cli.validate(true).is_ok());
    }

    #[test]
    fn push_key_needs_a_key_file() {
        assert!(parse(&["ssh", "--instance-id", "i-1", "--push-key"]).is_err());
        let a = ssh(&["--instance-id", "i-1", "--private-key-file", "k.pem"]);
        assert!(!a.push_key);
        let a = ssh(&[
            "--instance-id",
            "i-1",
            "--private-key-file",
            "k",
            "--push-key",
        ]);
        assert!(a.push_key);
    }

    #[test]
    fn bind_needs_local_port() {
        assert!(parse(&["open-tunnel", "--instance-id", "i-1", "--bind", "::1"]).is_err());
        let cli = parse(&[
            "open-tunnel",
            "--instance-id",
            "i-1",
            "--bind",
            "::1",
            "--local-port",
            "0",
        ])
        .unwrap();
        match cli.command {
            Command::OpenTunnel(t) => assert_eq!(t.bind, "::1".parse::<IpAddr>().unwrap()),
            _ => unreachable!(),
        }
        // The AWS CLI's name for it, and its default value.
        let listen = |flag: &str, value: &str| {
            let args = ["open-tunnel", "--instance-id", "i-1", "--local-port", "0"];
            parse(&[&args[..], &[flag, value]].concat())
        };
        for (flag, value, bound) in [
            ("--local-ip", "localhost", "127.0.0.1"),
            ("--local-ip", "0.0.0.0", "0.0.0.0"),
            ("--bind", "LOCALHOST", "127.0.0.1"),
        ] {
            match listen(flag, value).unwrap().command {
                Command::OpenTunnel(t) => assert_eq!(t.bind, bound.parse::<IpAddr>().unwrap()),
                _ => unreachable!(),
            }
        }
        assert!(listen("--bind", "lo").is_err());
    }

    #[test]
    fn clap_definitions_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn examples_keep_their_lines_in_help() {
        use clap::CommandFactory;
        for (name, examples) in [("ssh", SSH_EXAMPLES), ("open-tunnel", TUNNEL_EXAMPLES)] {
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

    #[test]
    fn every_subcommand_has_a_man_page() {
        use clap::CommandFactory;
        let names: Vec<String> = Cli::command()
            .get_subcommands()
            .map(|c| c.get_name().to_owned())
            .collect();
        assert_eq!(names, MAN_PAGES);
        for name in MAN_PAGES {
            let page = String::from_utf8(man_page(Some(name)).unwrap()).unwrap();
            assert!(page.contains(&format!(".TH eic-{name} 1")), "{page}");
            assert!(!page.contains("EXTRA"), "{page}");
        }
        let main = String::from_utf8(man_page(None).unwrap()).unwrap();
        assert!(
            main.contains(".TH eic 1") && main.contains("eic\\-ssh(1)"),
            "{main}"
        );
        assert!(!main.contains("eic\\-help(1)"), "{main}");
    }

    #[test]
    fn man_examples_are_not_filled() {
        let page = String::from_utf8(man_page(Some("open-tunnel")).unwrap()).unwrap();
        let examples = page.split(".SH EXAMPLES\n.nf\n").nth(1).expect("examples");
        let (examples, _) = examples.split_once(".fi\n").expect("end of examples");
        assert_eq!(
            examples.lines().count(),
            TUNNEL_EXAMPLES.lines().count() - 1
        );
        assert!(examples.contains(
            "    eic open\\-tunnel \\-\\-instance\\-connect\\-endpoint\\-id eice\\-0123456789abcdef0 \\e\n"
        ));
    }
}
