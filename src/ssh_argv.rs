//! The ssh command line: eic's options, the ProxyCommand that re-runs eic, the user's own
//! arguments, and the destination.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::target::TunnelTarget;

/// The `eic open-tunnel --presigned-url-file` that `eic ssh` gives ssh as its ProxyCommand
/// (not `eic proxy`, ssh_config's): everything resolved and the URL presigned, so it makes no
/// API call and holds no credentials.
#[derive(Debug, Clone)]
pub struct TunnelCommand {
    /// This very binary (`std::env::current_exe()`).
    pub exe: PathBuf,
    pub target: TunnelTarget,
    /// The private file that holds the presigned URL.
    pub url_file: PathBuf,
    pub ca_bundle: Option<PathBuf>,
    pub debug: bool,
    /// For a shared connection, which outlives the command that started it: the child lets go
    /// of that command's stderr once the tunnel is open.
    pub detach_stderr: bool,
}

impl TunnelCommand {
    /// The `ProxyCommand` value (see [`proxy_command_line`]). Nothing secret goes here: argv is
    /// visible to every user in `ps`; the URL is in a file only this user can read.
    pub fn command(&self) -> String {
        let path = |p: &Path| p.display().to_string();
        let target = &self.target;
        let mut words = vec![path(&self.exe), "open-tunnel".into()];
        if let Some(bundle) = &self.ca_bundle {
            words.extend(["--ca-bundle".into(), path(bundle)]);
        }
        words.extend([
            "--instance-connect-endpoint-id".into(),
            target.endpoint_id.clone(),
            "--instance-connect-endpoint-dns-name".into(),
            target.dns_name.as_str().into(),
            "--private-ip-address".into(),
            target.private_ip.to_string(),
            "--remote-port".into(),
            target.remote_port.to_string(),
        ]);
        if let Some(secs) = target.max_tunnel_duration {
            words.extend(["--max-tunnel-duration".into(), secs.to_string()]);
        }
        words.extend(["--presigned-url-file".into(), path(&self.url_file)]);
        if self.detach_stderr {
            words.push("--detach-stderr".into());
        }
        if self.debug {
            words.push("--debug".into());
        }
        proxy_command_line(&words)
    }
}

/// Everything `eic ssh` passes to ssh.
#[derive(Debug, Clone)]
pub struct SshCommand {
    pub ssh: PathBuf,
    pub key: PathBuf,
    pub user: String,
    pub address: IpAddr,
    pub port: u16,
    pub instance_id: String,
    /// `None` for a direct connection.
    pub proxy: Option<TunnelCommand>,
    pub local_forwarding: Vec<String>,
    pub debug: bool,
    /// The arguments after `--`: ssh options, then a remote command.
    pub extra: Vec<String>,
    /// Shares this connection as a master for later sessions, when `Some`.
    pub master: Option<Master>,
}

/// A connection shared by OpenSSH's multiplexing: its socket (keyed by instance, never by the
/// private IP, which other VPCs reuse), kept for `persist` seconds after its last session.
#[derive(Debug, Clone)]
pub struct Master {
    pub socket: PathBuf,
    pub persist: u32,
}

impl SshCommand {
    /// ssh's arguments: eic's options, the user's options, `user@address`, the remote command.
    pub fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(proxy) = &self.proxy {
            args.extend(["-o".into(), format!("ProxyCommand={}", proxy.command())]);
        }
        identity(&mut args, &self.key);
        args.extend([
            "-o".into(),
            format!("HostKeyAlias={}", self.instance_id),
            "-o".into(),
            "ServerAliveInterval=5".into(),
            // A system-wide `ServerAliveCountMax 0` would drop every idle session (aws-cli#8802).
            "-o".into(),
            "ServerAliveCountMax=3".into(),
        ]);
        // Sharing is eic's own (the user's ControlPath would be keyed by the private IP, which
        // other VPCs reuse: it could lead to another instance), or none.
        let sharing: Vec<String> = match &self.master {
            Some(master) => vec![
                "-o".into(),
                "ControlMaster=auto".into(),
                "-o".into(),
                format!("ControlPath={}", config_path(&master.socket.display().to_string())),
                "-o".into(),
                format!("ControlPersist={}", master.persist),
            ],
            None => ["-o", "ControlMaster=no", "-o", "ControlPath=none"].map(String::from).into(),
        };
        args.extend(sharing);
        // The one-time key stays out of the user's agent.
        args.extend(["-o".into(), "AddKeysToAgent=no".into()]);
        let destination = format!("{}@{}", self.user, self.address);
        session(
            &mut args,
            self.port,
            &self.local_forwarding,
            self.debug,
            &self.extra,
            &destination,
        );
        args
    }

    /// ssh and its arguments, for `--dry-run --output json`.
    pub fn argv(&self) -> Vec<String> {
        argv(&self.ssh, self.args())
    }

    /// The command line as a shell would take it, for `--dry-run`.
    pub fn display(&self) -> String {
        shown(self.argv())
    }
}

fn argv(ssh: &Path, args: Vec<String>) -> Vec<String> {
    std::iter::once(ssh.display().to_string()).chain(args).collect()
}

/// A command line as a shell would take it.
fn shown(argv: Vec<String>) -> String {
    argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
}

/// `key` as ssh's only identity.
fn identity(args: &mut Vec<String>, key: &Path) {
    let key = key.display().to_string();
    if key.contains('%') {
        // ssh expands `%` tokens in identity file names, but looks for an `-i` file before
        // expanding them: as IdentityFile, with `%` doubled, the file is found.
        args.extend(["-o".into(), format!("IdentityFile={}", config_path(&key))]);
    } else {
        args.extend(["-i".into(), key]);
    }
    args.extend(["-o".into(), "IdentitiesOnly=yes".into()]);
}

/// Everything `eic serial-console` passes to ssh: the console's endpoint, with no ProxyCommand.
#[derive(Debug, Clone)]
pub struct SerialCommand {
    pub ssh: PathBuf,
    pub key: PathBuf,
    /// `INSTANCE.portN`: the service's user name for the instance's serial port N.
    pub user: String,
    pub host: String,
    pub port: u16,
    /// The name the host key is known by: the region's endpoint.
    pub alias: String,
    /// The one key ssh may accept; none leaves the host key to ssh's own policy.
    pub pinned: Option<PinnedKey>,
    pub debug: bool,
}

/// The host key checked against the published fingerprint, as ssh is told to trust it alone.
#[derive(Debug, Clone)]
pub struct PinnedKey {
    /// A known_hosts file holding that key only.
    pub file: PathBuf,
    /// `HostKeyAlgorithms` for that key's type.
    pub algorithms: String,
    /// The OpenSSH client's version (`ssh -V`): which options it has, how it reads the file name.
    pub openssh: Option<(u32, u32)>,
}

impl SerialCommand {
    pub fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        identity(&mut args, &self.key);
        let mut option = |o: String| args.extend(["-o".into(), o]);
        option(format!("HostKeyAlias={}", self.alias));
        if let Some(PinnedKey { file, algorithms, openssh }) = &self.pinned {
            // That file only, that key only: no other file, command, DNS record, type or prompt
            // can let another in. ssh takes the first value of each option: the command line's.
            let file = file.display().to_string();
            // `%` tokens are expanded in UserKnownHostsFile from OpenSSH 8.4, never in
            // GlobalKnownHostsFile.
            let expands = openssh.is_some_and(|v| v >= (8, 4));
            let user_file = if expands { config_path(&file) } else { config_quote(&file) };
            option(format!("UserKnownHostsFile={user_file}"));
            option(format!("GlobalKnownHostsFile={}", config_quote(&file)));
            if openssh.is_some_and(|v| v >= (8, 5)) {
                option("KnownHostsCommand=none".into());
            }
            option("VerifyHostKeyDNS=no".into());
            option("StrictHostKeyChecking=yes".into());
            option(format!("HostKeyAlgorithms={algorithms}"));
            option("CheckHostIP=no".into());
            option("UpdateHostKeys=no".into());
        }
        for fixed in ["ControlMaster=no", "ControlPath=none", "AddKeysToAgent=no"] {
            option(fixed.into());
        }
        let destination = format!("{}@{}", self.user, self.host);
        session(&mut args, self.port, &[], self.debug, &[], &destination);
        args
    }

    /// ssh and its arguments, for `--dry-run --output json`.
    pub fn argv(&self) -> Vec<String> {
        argv(&self.ssh, self.args())
    }

    /// The command line as a shell would take it, for `--dry-run`.
    pub fn display(&self) -> String {
        shown(self.argv())
    }
}

/// What ssh runs when it cannot use the master after all (it ended a moment ago, or refused one
/// more session): a ProxyCommand that fails, so that ssh never connects some other way.
const GONE: &str = "sh -c 'echo \"eic: the shared connection could not take the session (it did not run): run it again\" >&2; exit 1'";

/// ssh's arguments for a session over the live master on `socket`: no key, and a ProxyCommand
/// that fails (see [`GONE`]).
pub fn over_master(
    socket: &Path,
    user: &str,
    instance_id: &str,
    port: u16,
    local_forwarding: &[String],
    debug: bool,
    extra: &[String],
) -> Vec<String> {
    let mut args: Vec<String> = [
        "-o".into(),
        format!("ControlPath={}", config_path(&socket.display().to_string())),
        "-o".into(),
        "ControlMaster=no".into(),
        "-o".into(),
        format!("ProxyCommand={GONE}"),
        "-o".into(),
        format!("HostKeyAlias={instance_id}"),
    ]
    .into();
    session(&mut args, port, local_forwarding, debug, extra, &format!("{user}@{instance_id}"));
    args
}

/// The end of every ssh command line: the port, a forwarding, `-v`, the user's options, then
/// `--`, the destination and the remote command.
fn session(
    args: &mut Vec<String>,
    port: u16,
    local_forwarding: &[String],
    debug: bool,
    extra: &[String],
    destination: &str,
) {
    args.extend(["-p".into(), port.to_string()]);
    for spec in local_forwarding {
        args.extend(["-L".into(), spec.clone()]);
    }
    if debug {
        args.push("-v".into());
    }
    let (options, command) = split_ssh_args(extra);
    args.extend(options.iter().cloned());
    // ssh reads options after the destination too: `--` keeps a command like `-x` one.
    args.push("--".into());
    args.push(destination.to_string());
    args.extend(command.iter().cloned());
}

/// The ssh program, with no AWS credential in its environment: ssh passes its environment to
/// SendEnv (so to the remote sshd), prints it with `-v`, and gives it to every command it
/// starts (ProxyCommand, LocalCommand, KnownHostsCommand, Match exec).
pub fn command(ssh: &Path) -> std::process::Command {
    let mut command = std::process::Command::new(ssh);
    for name in CREDENTIAL_VARIABLES {
        command.env_remove(name);
    }
    command
}

/// The environment variables that hold AWS secrets.
const CREDENTIAL_VARIABLES: [&str; 5] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
];

/// Whether the user's options after `--` keep this call off a shared connection: true unless
/// every option is one a session over a master really honours (`LETTERS`, `KEYWORDS`).
/// Over a master, ssh drops the rest silently (`-i`, `-J`, `-o StrictHostKeyChecking=no`), and
/// a master that this call starts would keep them (forwardings, agent, display, log).
pub fn unshareable(extra: &[String]) -> bool {
    let (options, _) = split_ssh_args(extra);
    !option_letters(options).into_iter().all(|(letter, value)| shares(letter, value))
}

/// Whether one option may ride a master; unknown ones may not.
fn shares(letter: char, value: Option<&str>) -> bool {
    match LETTERS.iter().find(|(l, _)| *l == letter).map(|(_, sharing)| *sharing) {
        Some(Shared) => true,
        Some(ByKeyword) => value.is_some_and(|option| {
            let (keyword, value) = config_option(option);
            match KEYWORDS.iter().find(|(k, _)| k.eq_ignore_ascii_case(keyword)) {
                Some((_, Shared)) => true,
                Some((_, SharedIf(values))) => values.iter().any(|v| v.eq_ignore_ascii_case(value)),
                _ => false,
            }
        }),
        _ => false,
    }
}

/// Whether an ssh option may ride a shared connection (OpenSSH's mux.c).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sharing {
    /// The mux client carries it into its session (`mux_client_request_session`), or it only
    /// concerns the ssh process it is given to.
    Shared,
    /// It belongs to the connection (ignored over a master; kept by a master this call starts).
    Unshared,
    /// Shared with one of these values (case-insensitive), else unshared.
    SharedIf(&'static [&'static str]),
    /// `-o`: decided by its keyword in [`KEYWORDS`].
    ByKeyword,
}
use Sharing::{ByKeyword, Shared, SharedIf, Unshared};

/// Every option letter of ssh's getopt (ssh.c, `main`). A mux client's session request
/// (`mux_client_request_session`) carries only: the tty flag, X11 and agent forwarding off or
/// on, subsystem or not, the escape char, TERM, the command, SendEnv/SetEnv strings, and stdin,
/// stdout and stderr. The master answers with its own options (`mux_session_confirm`): it
/// forwards its own agent and display, and only if it was itself started with them.
const LETTERS: &[(char, Sharing)] = &[
    // Ignored now, or connection options in older ssh.
    ('1', Unshared),
    ('2', Unshared),
    // The connection's: address family, compression, GSSAPI, binding, crypto, key, route, config
    // (`-P` picks `Match tagged`), user and port.
    ('4', Unshared),
    ('6', Unshared),
    ('C', Unshared),
    ('K', Unshared),
    ('k', Unshared),
    ('B', Unshared),
    ('b', Unshared),
    ('c', Unshared),
    ('m', Unshared),
    ('i', Unshared),
    ('I', Unshared),
    ('J', Unshared),
    ('F', Unshared),
    ('P', Unshared),
    ('l', Unshared),
    ('p', Unshared),
    // No session: print and exit, or (`-Z`) dump keys only when muxclient() failed.
    ('G', Unshared),
    ('V', Unshared),
    ('Q', Unshared),
    ('Z', Unshared),
    // The master's agent and display (mux_session_confirm).
    ('A', Unshared),
    ('X', Unshared),
    ('Y', Unshared),
    // Forwardings, tunnels, no session or the background: they would live on in the master.
    ('L', Unshared),
    ('R', Unshared),
    ('D', Unshared),
    ('g', Unshared),
    ('w', Unshared),
    ('W', Unshared),
    ('N', Unshared),
    ('f', Unshared),
    // The user's own sharing.
    ('M', Unshared),
    ('S', Unshared),
    ('O', Unshared),
    // A master started with -v keeps the caller's stderr (control_persist_detach keeps it when
    // debug_flag is set); with -E it keeps writing to the file.
    ('v', Unshared),
    ('E', Unshared),
    // In the session request: tty flag, stdin from /dev/null (done in the client), subsystem,
    // escape char, agent and X11 forwarding off.
    ('t', Shared),
    ('T', Shared),
    ('n', Shared),
    ('s', Shared),
    ('e', Shared),
    ('a', Shared),
    ('x', Shared),
    // Only how and where this process logs.
    ('q', Shared),
    ('y', Shared),
    ('o', ByKeyword),
];

/// The log levels a session over a master may take. LogLevel is not in the session request:
/// it only sets what the mux client itself prints (its errors, "Shared connection to ...
/// closed."). A master that this call starts logs at this level too, but once detached its
/// stderr is /dev/null unless -v (control_persist_detach): INFO and VERBOSE are fine. DEBUG*
/// is never shared: it is asked for to see a connection being made, and none is.
const SHARED_LOG_LEVELS: &[&str] = &["QUIET", "FATAL", "ERROR", "INFO", "VERBOSE"];

/// Every ssh_config keyword (readconf.c, `keywords[]`) as `-o` takes it (case-insensitive).
const KEYWORDS: &[(&str, Sharing)] = &[
    // Ignored, deprecated or unsupported now; connection options in older ssh.
    ("Protocol", Unshared),
    ("Cipher", Unshared),
    ("FallBackToRsh", Unshared),
    ("GlobalKnownHostsFile2", Unshared),
    ("RhostsAuthentication", Unshared),
    ("UserKnownHostsFile2", Unshared),
    ("UseRoaming", Unshared),
    ("UseRsh", Unshared),
    ("UsePrivilegedPort", Unshared),
    ("AFSTokenPassing", Unshared),
    ("KerberosAuthentication", Unshared),
    ("KerberosTGTPassing", Unshared),
    ("RSAAuthentication", Unshared),
    ("RhostsRSAAuthentication", Unshared),
    ("CompressionLevel", Unshared),
    // Authentication and keys: done once, by the master.
    ("GSSAPIAuthentication", Unshared),
    ("GSSAPIDelegateCredentials", Unshared),
    ("PKCS11Provider", Unshared),
    ("SmartcardDevice", Unshared),
    ("PasswordAuthentication", Unshared),
    ("KbdInteractiveAuthentication", Unshared),
    ("KbdInteractiveDevices", Unshared),
    ("ChallengeResponseAuthentication", Unshared),
    ("SkeyAuthentication", Unshared),
    ("TISAuthentication", Unshared),
    ("PubkeyAuthentication", Unshared),
    ("DSAAuthentication", Unshared),
    ("HostbasedAuthentication", Unshared),
    ("IdentityFile", Unshared),
    ("IdentityFile2", Unshared),
    ("IdentitiesOnly", Unshared),
    ("CertificateFile", Unshared),
    ("AddKeysToAgent", Unshared),
    ("IdentityAgent", Unshared),
    ("PreferredAuthentications", Unshared),
    ("NumberOfPasswordPrompts", Unshared),
    ("BatchMode", Unshared),
    ("EnableSSHKeysign", Unshared),
    ("SecurityKeyProvider", Unshared),
    ("PubkeyAcceptedAlgorithms", Unshared),
    ("PubkeyAcceptedKeyTypes", Unshared),
    ("HostbasedAcceptedAlgorithms", Unshared),
    ("HostbasedKeyTypes", Unshared),
    ("RequiredRSASize", Unshared),
    // Host keys: checked once, by the master.
    ("HostKeyAlias", Unshared),
    ("GlobalKnownHostsFile", Unshared),
    ("UserKnownHostsFile", Unshared),
    ("CheckHostIP", Unshared),
    ("StrictHostKeyChecking", Unshared),
    ("VerifyHostKeyDNS", Unshared),
    ("NoHostAuthenticationForLocalhost", Unshared),
    ("HashKnownHosts", Unshared),
    ("RevokedHostKeys", Unshared),
    ("FingerprintHash", Unshared),
    ("UpdateHostKeys", Unshared),
    ("KnownHostsCommand", Unshared),
    ("VisualHostKey", Unshared),
    ("HostKeyAlgorithms", Unshared),
    ("CASignatureAlgorithms", Unshared),
    // Where and how to connect; config selection (Host, Match, Include are refused on the
    // command line; Tag picks `Match tagged`; IgnoreUnknown changes what ssh accepts).
    ("Hostname", Unshared),
    ("Port", Unshared),
    ("User", Unshared),
    ("ProxyCommand", Unshared),
    ("ProxyJump", Unshared),
    ("ProxyUseFdpass", Unshared),
    ("BindAddress", Unshared),
    ("BindInterface", Unshared),
    ("AddressFamily", Unshared),
    ("ConnectionAttempts", Unshared),
    ("ConnectTimeout", Unshared),
    ("CanonicalDomains", Unshared),
    ("CanonicalizeFallbackLocal", Unshared),
    ("CanonicalizeHostname", Unshared),
    ("CanonicalizeMaxDots", Unshared),
    ("CanonicalizePermittedCNAMEs", Unshared),
    ("RefuseConnection", Unshared),
    ("Host", Unshared),
    ("Match", Unshared),
    ("Include", Unshared),
    ("Tag", Unshared),
    ("IgnoreUnknown", Unshared),
    // The transport: the master's.
    ("Ciphers", Unshared),
    ("MACs", Unshared),
    ("KexAlgorithms", Unshared),
    ("Compression", Unshared),
    ("RekeyLimit", Unshared),
    ("TCPKeepAlive", Unshared),
    ("KeepAlive", Unshared),
    ("ServerAliveInterval", Unshared),
    ("ServerAliveCountMax", Unshared),
    ("IPQoS", Unshared),
    ("ChannelTimeout", Unshared),
    ("ObscureKeystrokeTiming", Unshared),
    ("VersionAddendum", Unshared),
    ("WarnWeakCrypto", Unshared),
    // The master runs LocalCommand, and its escape filter reads its own
    // EnableEscapeCommandline.
    ("LocalCommand", Unshared),
    ("PermitLocalCommand", Unshared),
    ("EnableEscapeCommandline", Unshared),
    // Forwardings, tunnels, no session, the background: they would live on in the master.
    ("LocalForward", Unshared),
    ("RemoteForward", Unshared),
    ("DynamicForward", Unshared),
    ("GatewayPorts", Unshared),
    ("ExitOnForwardFailure", Unshared),
    ("ClearAllForwardings", Unshared),
    ("PermitRemoteOpen", Unshared),
    ("StreamLocalBindMask", Unshared),
    ("StreamLocalBindUnlink", Unshared),
    ("Tunnel", Unshared),
    ("TunnelDevice", Unshared),
    ("ForkAfterAuthentication", Unshared),
    ("SessionType", SharedIf(&["default", "subsystem"])),
    // The master's agent and display (mux_session_confirm); off is in the request.
    ("ForwardAgent", SharedIf(&["no", "false"])),
    ("ForwardX11", SharedIf(&["no", "false"])),
    ("ForwardX11Trusted", Unshared),
    ("ForwardX11Timeout", Unshared),
    ("XAuthLocation", Unshared),
    // The master drops the request's variables its own SendEnv does not match and adds its
    // own SetEnv to every session (mux_master_process_new_session, client_session2_setup).
    ("SendEnv", Unshared),
    ("SetEnv", Unshared),
    // The user's own sharing.
    ("ControlMaster", Unshared),
    ("ControlPath", Unshared),
    ("ControlPersist", Unshared),
    // Debug output is for a connection being made.
    ("LogVerbose", Unshared),
    // In the session request (or done by the mux client itself).
    ("RequestTTY", Shared),
    ("StdinNull", Shared),
    ("EscapeChar", Shared),
    ("RemoteCommand", Shared),
    ("LogLevel", SharedIf(SHARED_LOG_LEVELS)),
    ("SyslogFacility", Shared),
];

/// ssh's options that take a value (from ssh(1)'s getopt string).
const WITH_VALUE: &[u8] = b"BbcDEeFIiJLlmOoPpQRSWw";

/// A cluster of ssh options without its `-` (`tt`, `vp2222`) as ssh's getopt reads it: the
/// flags, then the first value-taking letter and the rest of the cluster as its value (empty:
/// the value is the next argument).
fn cluster(letters: &str) -> (&str, Option<(char, &str)>) {
    let takes_value = |(_, c): &(usize, char)| c.is_ascii() && WITH_VALUE.contains(&(*c as u8));
    match letters.char_indices().find(takes_value) {
        Some((pos, letter)) => (&letters[..pos], Some((letter, &letters[pos + 1..]))),
        None => (letters, None),
    }
}

/// Splits the arguments after `--` into ssh options and the remote command, the way ssh's own
/// option parser reads them: options until the first word that is not one (or `--`).
pub fn split_ssh_args(args: &[String]) -> (&[String], &[String]) {
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        if arg == "--" {
            return (&args[..i], &args[i + 1..]);
        }
        if !arg.starts_with('-') || arg == "-" {
            break;
        }
        // A value-taking letter that ends its cluster takes the next argument.
        let consumes_next = matches!(cluster(&arg[1..]), (_, Some((_, ""))));
        i += if consumes_next { 2 } else { 1 };
    }
    let i = i.min(args.len());
    (&args[..i], &args[i..])
}

/// The user's ssh options, as (letter, value) pairs: `-vp 2222` is `v` then `p` with `2222`.
pub(crate) fn option_letters(options: &[String]) -> Vec<(char, Option<&str>)> {
    let mut letters = Vec::new();
    let mut args = options.iter();
    while let Some(arg) = args.next() {
        let (flags, with_value) = cluster(arg.strip_prefix('-').unwrap_or_default());
        letters.extend(flags.chars().map(|flag| (flag, None)));
        if let Some((letter, rest)) = with_value {
            let value = match rest {
                "" => args.next().map(String::as_str),
                rest => Some(rest),
            };
            letters.push((letter, value));
        }
    }
    letters
}

/// An option after `--` that would silently undo one of eic's: ssh takes the user from `-l`
/// over `user@`, so the login would not use the user the key was pushed for, and eic's `-p`
/// comes first, so a later port is ignored. Returns the option and eic's own to use instead.
pub fn overriding_option(extra: &[String]) -> Option<(String, &'static str)> {
    let (options, _) = split_ssh_args(extra);
    option_letters(options).into_iter().find_map(|(letter, value)| match (letter, value) {
        ('l', _) => Some(("-l".to_string(), "--os-user")),
        ('p', _) => Some(("-p".to_string(), "--ssh-port")),
        ('o', Some(option)) => {
            let (key, _) = config_option(option);
            let instead = match key.to_ascii_lowercase().as_str() {
                "user" => "--os-user",
                "port" => "--ssh-port",
                _ => return None,
            };
            Some((format!("-o {key}"), instead))
        }
        _ => None,
    })
}

/// An `-o` option's keyword and value, as ssh's strdelim() splits them: blanks skipped, the
/// keyword maybe quoted (`-o ' "User"=root'`), then blanks and one `=`. A value in quotes
/// loses them; one of several words stays whole (and so matches no single value).
fn config_option(option: &str) -> (&str, &str) {
    const BLANKS: &[char] = &[' ', '\t', '\r', '\n'];
    let line = option.trim_start_matches(BLANKS);
    let (keyword, rest) = match line.strip_prefix('"') {
        Some(quoted) => quoted.split_once('"').unwrap_or((quoted, "")),
        None => line.split_at(
            line.find(|c| BLANKS.contains(&c) || "=\"".contains(c)).unwrap_or(line.len()),
        ),
    };
    let rest = rest.trim_start_matches(BLANKS);
    let value = rest.strip_prefix('=').unwrap_or(rest).trim_matches(BLANKS);
    let unquoted = value.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
    (keyword, unquoted.unwrap_or(value))
}

/// A file name as ssh_config (and `-o`) takes it where ssh expands `%` tokens (`IdentityFile`):
/// `%` doubled, then quoted.
pub fn config_path(path: &str) -> String {
    config_quote(&path.replace('%', "%%"))
}

/// Quotes a value for ssh_config (and `-o`): double quotes around one with whitespace or `=`
/// (either would split it).
pub fn config_quote(value: &str) -> String {
    if value.contains(|c: char| c.is_whitespace() || c == '=') {
        format!("\"{value}\"")
    } else {
        value.to_string()
    }
}

/// A ProxyCommand from its words (the program first), `%` doubled against ssh's tokens. ssh
/// runs it with `$SHELL -c`: every word is quoted for a POSIX shell. Win32-OpenSSH runs it with
/// no shell, as the program's command line, which Windows programs split by the MSVC rules: the
/// program's path is always in double quotes (OpenSSH 7.7 takes an unquoted one as relative to
/// ssh.exe's directory), the other words are quoted by those rules.
pub fn proxy_command_line(words: &[String]) -> String {
    let quoted = words.iter().enumerate().map(|(i, w)| match (cfg!(windows), i) {
        (true, 0) => format!("\"{w}\""),
        _ => quote(w),
    });
    quoted.map(|w| w.replace('%', "%%")).collect::<Vec<_>>().join(" ")
}

/// An ssh `%` token (`%h`, `%r`) as a ProxyCommand word, quoted for what runs the ProxyCommand
/// (see [`proxy_command_line`]): ssh expands it to text that may hold anything.
pub fn quote_token(token: &str) -> String {
    if cfg!(windows) {
        format!("\"{token}\"")
    } else {
        format!("'{token}'")
    }
}

/// Quotes a word for the command line it goes on: a POSIX shell's, or Windows' MSVC rules.
pub fn quote(word: &str) -> String {
    if cfg!(windows) {
        msvc_quote(word)
    } else {
        shell_quote(word)
    }
}

/// Quotes a word for a POSIX shell; plain words stay as they are.
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Quotes a word as Windows programs split their command line (double quotes; backslashes
/// doubled before a quote). A `'` is quoted too: OpenSSH checks a ProxyCommand's quotes.
pub fn msvc_quote(word: &str) -> String {
    if !word.is_empty() && !word.contains([' ', '\t', '"', '\'']) {
        return word.to_string();
    }
    let (mut out, mut backslashes) = (String::from("\""), 0);
    for c in word.chars() {
        match c {
            '\\' => backslashes += 1,
            '"' => {
                out.push_str(&"\\".repeat(2 * backslashes + 1));
                out.push('"');
                backslashes = 0;
            }
            c => {
                out.push_str(&"\\".repeat(backslashes));
                out.push(c);
                backslashes = 0;
            }
        }
    }
    out.push_str(&"\\".repeat(2 * backslashes));
    out.push('"');
    out
}

/// The OpenSSH client's version as `ssh -V` prints it (`OpenSSH_9.6p1 ...`,
/// `OpenSSH_for_Windows_8.1p1 ...`): major and minor; `None` for another client.
pub async fn openssh_version(ssh: &Path) -> Option<(u32, u32)> {
    let mut command = tokio::process::Command::new(ssh);
    command.arg("-V").stdin(std::process::Stdio::null()).kill_on_drop(true);
    let output = command.output().await.ok()?;
    let text = String::from_utf8_lossy(&output.stderr).into_owned();
    parse_openssh_version(&text)
        .or_else(|| parse_openssh_version(&String::from_utf8_lossy(&output.stdout)))
}

fn parse_openssh_version(text: &str) -> Option<(u32, u32)> {
    let rest = text.split("OpenSSH_").nth(1)?;
    let rest = rest.strip_prefix("for_Windows_").unwrap_or(rest);
    let (major, rest) = rest.split_once('.')?;
    let minor: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The ssh client, or the configuration error (253) that says how to install it.
pub fn require_ssh() -> anyhow::Result<PathBuf> {
    find_ssh().ok_or_else(|| {
        crate::error::config(
            "ssh not found on PATH: install the OpenSSH client (e.g. `apt-get install openssh-client`)",
        )
    })
}

/// The ssh client: on `PATH`, else (Windows) the one Windows installs.
pub fn find_ssh() -> Option<PathBuf> {
    let on_path = on_path(if cfg!(windows) { "ssh.exe" } else { "ssh" });
    let inbox = || {
        let root = std::env::var_os("SystemRoot").filter(|_| cfg!(windows))?;
        Some(PathBuf::from(root).join(r"System32\OpenSSH\ssh.exe")).filter(|c| is_executable(c))
    };
    on_path.or_else(inbox)
}

/// The program `name` in the first directory of `PATH` that has it.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|c| is_executable(c))
}

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(windows)]
    path.is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_serial_console_trusts_one_key_from_one_file_in_every_openssh() {
        let serial = |file: &str, openssh| SerialCommand {
            ssh: "ssh".into(),
            key: "/k/id".into(),
            user: "i-0123456789abcdef0.port0".into(),
            host: "serial-console.ec2-instance-connect.us-east-1.aws".into(),
            port: 22,
            alias: "serial-console.ec2-instance-connect.us-east-1.aws".into(),
            pinned: Some(PinnedKey {
                file: file.into(),
                algorithms: "ssh-ed25519".into(),
                openssh,
            }),
            debug: false,
        };
        let options = |c: &SerialCommand| -> Vec<String> {
            let args = c.args();
            args.windows(2).filter(|w| w[0] == "-o").map(|w| w[1].clone()).collect()
        };
        let new = options(&serial("/run/a%b c=d/known_hosts", Some((9, 6))));
        for want in [
            "HostKeyAlias=serial-console.ec2-instance-connect.us-east-1.aws",
            // Tokens are expanded in the user file from 8.4, never in the global one.
            "UserKnownHostsFile=\"/run/a%%b c=d/known_hosts\"",
            "GlobalKnownHostsFile=\"/run/a%b c=d/known_hosts\"",
            "KnownHostsCommand=none",
            "VerifyHostKeyDNS=no",
            "StrictHostKeyChecking=yes",
            "HostKeyAlgorithms=ssh-ed25519",
            "CheckHostIP=no",
            "UpdateHostKeys=no",
            "ControlPath=none",
        ] {
            assert!(new.iter().any(|o| o == want), "{want}: {new:?}");
        }
        // 8.1 (Windows'): no token expansion, and no KnownHostsCommand to turn off.
        let old = options(&serial("/run/a%b/known_hosts", Some((8, 1))));
        assert!(old.contains(&"UserKnownHostsFile=/run/a%b/known_hosts".to_string()), "{old:?}");
        assert!(!old.iter().any(|o| o.starts_with("KnownHostsCommand")), "{old:?}");
        let args = serial("/f", None).args();
        assert_eq!(
            &args[args.len() - 4..],
            [
                "-p",
                "22",
                "--",
                "i-0123456789abcdef0.port0@serial-console.ec2-instance-connect.us-east-1.aws"
            ]
        );
        assert!(!args.iter().any(|a| a.starts_with("ProxyCommand")));
        // Unpinned: ssh's own policy, under the alias.
        let own = SerialCommand { pinned: None, ..serial("/f", Some((9, 6))) };
        let own = options(&own);
        assert!(
            !own.iter().any(|o| o.contains("KnownHosts") || o.starts_with("Strict")),
            "{own:?}"
        );
    }

    #[test]
    fn reads_the_openssh_version() {
        for (text, want) in [
            ("OpenSSH_9.6p1 Ubuntu-3ubuntu13.5, OpenSSL 3.0.13 30 Jan 2024", Some((9, 6))),
            ("OpenSSH_for_Windows_8.1p1, LibreSSL 3.0.2", Some((8, 1))),
            ("OpenSSH_10.0p2 Debian-5, OpenSSL 3.5.1", Some((10, 0))),
            ("OpenSSH_8.4", Some((8, 4))),
            ("PuTTY Release 0.81", None),
            ("", None),
        ] {
            assert_eq!(parse_openssh_version(text), want, "{text}");
        }
    }

    #[test]
    fn splits_options_from_the_remote_command() {
        let cases: &[(&[&str], usize)] = &[
            (&["-t", "sudo", "journalctl", "-f"], 1),
            (&["uptime"], 0),
            (&["-o", "LogLevel=ERROR", "-tt", "ls", "-l"], 3),
            (&["-oLogLevel=ERROR", "-v", "--", "-weird-command"], 2),
            (&["-vp", "2222", "true"], 2),
            (&["-p2222", "true"], 1),
            (&["-L", "8080:localhost:80", "-N"], 3),
            (&[], 0),
        ];
        for (args, n_options) in cases {
            let args = strings(args);
            let (options, command) = split_ssh_args(&args);
            assert_eq!(options.len(), *n_options, "{args:?}");
            let rest = args.len()
                - n_options
                - usize::from(args.get(*n_options).is_some_and(|a| a == "--"));
            assert_eq!(command.len(), rest, "{args:?}");
        }
    }

    fn command(proxy: bool, extra: &[&str]) -> SshCommand {
        SshCommand {
            ssh: "/usr/bin/ssh".into(),
            key: "/run/user/1000/eic-abc/id_ed25519".into(),
            user: "ec2-user".into(),
            address: "10.0.0.5".parse().unwrap(),
            port: 22,
            instance_id: "i-0123456789abcdef0".into(),
            proxy: proxy.then(|| TunnelCommand {
                exe: "/opt/my tools/100%/eic".into(),
                target: TunnelTarget {
                    endpoint_id: "eice-0123456789abcdef0".into(),
                    dns_name: "eice-0123456789abcdef0.example.com".parse().unwrap(),
                    private_ip: "10.0.0.5".parse().unwrap(),
                    remote_port: 22,
                    max_tunnel_duration: Some(600),
                },
                url_file: "/run/user/1000/eic-abc/tunnel-url".into(),
                ca_bundle: None,
                debug: false,
                detach_stderr: false,
            }),
            local_forwarding: vec!["8080:localhost:80".into()],
            debug: true,
            extra: strings(extra),
            master: None,
        }
    }

    #[test]
    fn builds_the_documented_order() {
        let args = command(true, &["-t", "sudo", "journalctl", "-f"]).args();
        // A POSIX shell runs the ProxyCommand; Win32-OpenSSH, none (see proxy_command_line).
        let exe =
            if cfg!(windows) { "\"/opt/my tools/100%%/eic\"" } else { "'/opt/my tools/100%%/eic'" };
        let proxy = format!("ProxyCommand={exe} open-tunnel --instance-connect-endpoint-id eice-0123456789abcdef0 --instance-connect-endpoint-dns-name eice-0123456789abcdef0.example.com --private-ip-address 10.0.0.5 --remote-port 22 --max-tunnel-duration 600 --presigned-url-file /run/user/1000/eic-abc/tunnel-url");
        assert_eq!(
            args,
            [
                "-o",
                proxy.as_str(),
                "-i",
                "/run/user/1000/eic-abc/id_ed25519",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "HostKeyAlias=i-0123456789abcdef0",
                "-o",
                "ServerAliveInterval=5",
                "-o",
                "ServerAliveCountMax=3",
                "-o",
                "ControlMaster=no",
                "-o",
                "ControlPath=none",
                "-o",
                "AddKeysToAgent=no",
                "-p",
                "22",
                "-L",
                "8080:localhost:80",
                "-v",
                "-t",
                "--",
                "ec2-user@10.0.0.5",
                "sudo",
                "journalctl",
                "-f",
            ]
        );
        let direct = command(false, &[]).args();
        assert!(!direct.iter().any(|a| a.starts_with("ProxyCommand")));
        assert_eq!(direct.last().unwrap(), "ec2-user@10.0.0.5");
    }

    #[test]
    fn a_percent_in_the_key_path_is_not_a_token() {
        // ssh looks for an -i file before expanding its tokens: IdentityFile, % doubled.
        let mut cmd = command(false, &[]);
        cmd.key = "/tmp/100% done/id_ed25519".into();
        let args = cmd.args();
        assert!(
            args.windows(2).any(|w| w == ["-o", "IdentityFile=\"/tmp/100%% done/id_ed25519\""]),
            "{args:?}"
        );
        assert!(!args.iter().any(|a| a == "-i"));
    }

    #[test]
    fn options_that_would_undo_eics_are_found() {
        type Case<'a> = (&'a [&'a str], Option<(&'a str, &'a str)>);
        let cases: &[Case] = &[
            (&["-l", "root", "true"], Some(("-l", "--os-user"))),
            (&["-lroot"], Some(("-l", "--os-user"))),
            (&["-tl", "root"], Some(("-l", "--os-user"))),
            (&["-p", "2222"], Some(("-p", "--ssh-port"))),
            (&["-vp2222", "true"], Some(("-p", "--ssh-port"))),
            (&["-o", "User=root"], Some(("-o User", "--os-user"))),
            (&["-oport 2222"], Some(("-o port", "--ssh-port"))),
            (&["-o", " User=root"], Some(("-o User", "--os-user"))),
            (&["-o", "\"User\"=root"], Some(("-o User", "--os-user"))),
            (&["-o", "UserKnownHostsFile=/dev/null"], None),
            (&["-o", "LogLevel=ERROR", "-t", "ls", "-l"], None),
            (&["-L", "8080:localhost:80", "-N"], None),
            (&["uptime", "-p"], None),
            (&["--", "-l"], None),
            (&["-i", "-lookalike"], None),
        ];
        for (args, expected) in cases {
            let found = overriding_option(&strings(args));
            let found = found.as_ref().map(|(o, i)| (o.as_str(), *i));
            assert_eq!(found, *expected, "{args:?}");
        }
    }

    /// OpenSSH's option letters: the getopt string in ssh.c's main(), openssh-portable commit
    /// 0ef0f5a839831c213f24e3f2ae434765c607fb50.
    const OPENSSH_GETOPT: &str =
        concat!("1246ACGKMNTVXYZafgknqstvxy", "B:D:E:F:I:J:L:O:P:Q:R:S:W:b:c:e:i:l:m:o:p:w:");

    /// Every name in readconf.c's keywords[] (deprecated, unsupported, aliases too), same
    /// commit.
    const OPENSSH_KEYWORDS: [&str; 128] = [
        "protocol",
        "cipher",
        "fallbacktorsh",
        "globalknownhostsfile2",
        "rhostsauthentication",
        "userknownhostsfile2",
        "useroaming",
        "usersh",
        "useprivilegedport",
        "afstokenpassing",
        "kerberosauthentication",
        "kerberostgtpassing",
        "rsaauthentication",
        "rhostsrsaauthentication",
        "compressionlevel",
        "gssapiauthentication",
        "gssapidelegatecredentials",
        "pkcs11provider",
        "smartcarddevice",
        "forwardagent",
        "forwardx11",
        "forwardx11trusted",
        "forwardx11timeout",
        "exitonforwardfailure",
        "xauthlocation",
        "gatewayports",
        "passwordauthentication",
        "kbdinteractiveauthentication",
        "kbdinteractivedevices",
        "challengeresponseauthentication",
        "skeyauthentication",
        "tisauthentication",
        "pubkeyauthentication",
        "dsaauthentication",
        "hostbasedauthentication",
        "identityfile",
        "identityfile2",
        "identitiesonly",
        "certificatefile",
        "addkeystoagent",
        "identityagent",
        "hostname",
        "hostkeyalias",
        "proxycommand",
        "port",
        "ciphers",
        "macs",
        "remoteforward",
        "localforward",
        "permitremoteopen",
        "user",
        "host",
        "match",
        "tag",
        "escapechar",
        "globalknownhostsfile",
        "userknownhostsfile",
        "connectionattempts",
        "batchmode",
        "checkhostip",
        "stricthostkeychecking",
        "compression",
        "tcpkeepalive",
        "keepalive",
        "numberofpasswordprompts",
        "syslogfacility",
        "loglevel",
        "logverbose",
        "dynamicforward",
        "preferredauthentications",
        "hostkeyalgorithms",
        "casignaturealgorithms",
        "bindaddress",
        "bindinterface",
        "clearallforwardings",
        "enablesshkeysign",
        "verifyhostkeydns",
        "nohostauthenticationforlocalhost",
        "rekeylimit",
        "connecttimeout",
        "addressfamily",
        "serveraliveinterval",
        "serveralivecountmax",
        "sendenv",
        "setenv",
        "controlpath",
        "controlmaster",
        "controlpersist",
        "hashknownhosts",
        "include",
        "tunnel",
        "tunneldevice",
        "localcommand",
        "permitlocalcommand",
        "remotecommand",
        "visualhostkey",
        "kexalgorithms",
        "ipqos",
        "requesttty",
        "sessiontype",
        "stdinnull",
        "forkafterauthentication",
        "proxyusefdpass",
        "canonicaldomains",
        "canonicalizefallbacklocal",
        "canonicalizehostname",
        "canonicalizemaxdots",
        "canonicalizepermittedcnames",
        "streamlocalbindmask",
        "streamlocalbindunlink",
        "revokedhostkeys",
        "fingerprinthash",
        "updatehostkeys",
        "hostbasedacceptedalgorithms",
        "hostbasedkeytypes",
        "pubkeyacceptedalgorithms",
        "pubkeyacceptedkeytypes",
        "ignoreunknown",
        "proxyjump",
        "securitykeyprovider",
        "knownhostscommand",
        "requiredrsasize",
        "enableescapecommandline",
        "obscurekeystroketiming",
        "channeltimeout",
        "versionaddendum",
        "refuseconnection",
        "warnweakcrypto",
    ];

    #[test]
    fn every_openssh_option_is_classified() {
        let letters: Vec<char> = OPENSSH_GETOPT.chars().filter(|c| *c != ':').collect();
        for letter in &letters {
            assert!(LETTERS.iter().any(|(l, _)| l == letter), "-{letter} is not in LETTERS");
        }
        for (letter, sharing) in LETTERS {
            assert!(letters.contains(letter), "-{letter} is not an OpenSSH option");
            assert!(!matches!(sharing, SharedIf(_)), "-{letter}: a letter shares or not");
        }
        assert_eq!(LETTERS.len(), letters.len(), "a letter twice in LETTERS");
        let mut with_value: Vec<u8> =
            OPENSSH_GETOPT.as_bytes().windows(2).filter(|w| w[1] == b':').map(|w| w[0]).collect();
        let mut ours = WITH_VALUE.to_vec();
        with_value.sort_unstable();
        ours.sort_unstable();
        assert_eq!(String::from_utf8(ours).unwrap(), String::from_utf8(with_value).unwrap());

        for keyword in OPENSSH_KEYWORDS {
            let found = KEYWORDS.iter().filter(|(k, _)| k.eq_ignore_ascii_case(keyword)).count();
            assert_eq!(found, 1, "{keyword} is in KEYWORDS {found} times");
        }
        for (keyword, sharing) in KEYWORDS {
            let known = OPENSSH_KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(keyword));
            assert!(known, "{keyword} is not an OpenSSH keyword");
            assert_ne!(*sharing, ByKeyword, "{keyword}");
        }
        assert_eq!(KEYWORDS.len(), OPENSSH_KEYWORDS.len());
    }

    #[test]
    fn only_options_a_session_over_a_master_honours_share() {
        let shared: &[&[&str]] = &[
            &[],
            &["-t"],
            &["-T"],
            &["-q"],
            &["-n"],
            &["-tt"],
            &["-s", "sftp"],
            &["-e", "none"],
            &["-ax"],
            &["-o", "RequestTTY=yes"],
            &["-o", "RequestTTY force"],
            &["-oLogLevel=ERROR"],
            &["-o", "LogLevel=quiet"],
            &["-o", " loglevel = \"Verbose\" "],
            &["-o", "\"LogLevel\" FATAL"],
            &["-o", "EscapeChar=~"],
            &["-o", "SessionType=subsystem"],
            &["-o", "ForwardAgent=no"],
            &["-o", "StdinNull=yes"],
            &["-qtn", "-o", "LogLevel=INFO", "sudo", "journalctl", "-f"],
            // A remote command after the options never matters.
            &["uptime", "-v"],
            &["-t", "ssh", "-A", "-L", "1:h:2", "other"],
            &["-t", "--", "-L"],
        ];
        for args in shared {
            assert!(!unshareable(&strings(args)), "{args:?} should share");
        }
        let unshared: &[&[&str]] = &[
            &["-o", "LogLevel=DEBUG3"],
            &["-o", "LogLevel=debug"],
            &["-o", "LogLevel=ERROR extra"],
            &["-v"],
            &["-vvv"],
            &["-tv"],
            &["-E", "log"],
            &["-Elog"],
            &["-y", "-E", "log"],
            &["-A"],
            &["-X"],
            &["-Y"],
            &["-w", "0"],
            &["-o", "LocalForward 8080 localhost:80"],
            &["-o", "RemoteForward=8080 localhost:80"],
            &["-o", "DynamicForward=1080"],
            &["-o", "SessionType=none"],
            &["-o", "ForkAfterAuthentication=yes"],
            &["-o", "StrictHostKeyChecking=no"],
            &["-o", "stricthostkeychecking no"],
            &["-i", "key"],
            &["-J", "jump"],
            &["-F", "cfg"],
            &["-o", "Tunnel=yes"],
            &["-o", "GatewayPorts=yes"],
            &["-o", "ForwardAgent=yes"],
            &["-o", "ForwardX11=yes"],
            &["-o", "ForwardX11Trusted=yes"],
            &["-o", "SendEnv=FOO"],
            &["-o", "SetEnv=A=b"],
            &["-L", "8080:localhost:80", "-N"],
            &["-R", "9000:localhost:9000"],
            &["-D", "1080"],
            &["-N"],
            &["-f", "true"],
            &["-W", "host:22"],
            &["-g"],
            &["-S", "/tmp/sock"],
            &["-M"],
            &["-O", "check"],
            &["-o", "ControlPath=none"],
            &["-C"],
            &["-4"],
            &["-c", "aes128-ctr"],
            // Unknown, or not a keyword ssh knows: not shared.
            &["-j"],
            &["-o", "GSSAPIKeyExchange=yes"],
            &["-o", "LogLevel-x=ERROR"],
            &["-o"],
            &["-t", "-o", "LogLevel=ERROR", "-A", "uptime"],
        ];
        for args in unshared {
            assert!(unshareable(&strings(args)), "{args:?} should not share");
        }
    }

    #[test]
    fn reads_o_options_as_ssh_does() {
        for (option, keyword, value) in [
            ("LogLevel=ERROR", "LogLevel", "ERROR"),
            ("LogLevel ERROR", "LogLevel", "ERROR"),
            ("  LogLevel = ERROR  ", "LogLevel", "ERROR"),
            ("\t\"User\" root", "User", "root"),
            ("LogLevel=\"ERROR\"", "LogLevel", "ERROR"),
            ("SetEnv=A=b", "SetEnv", "A=b"),
            ("LocalForward 8080 localhost:80", "LocalForward", "8080 localhost:80"),
            ("Port", "Port", ""),
        ] {
            assert_eq!(config_option(option), (keyword, value), "{option:?}");
        }
    }

    #[test]
    fn quotes_for_windows_programs() {
        for (word, quoted) in [
            ("plain", "plain"),
            (r"C:\Program Files\eic\eic.exe", r#""C:\Program Files\eic\eic.exe""#),
            (r"C:\my dir\", r#""C:\my dir\\""#),
            (r#"a"b"#, r#""a\"b""#),
            (r#"a\"b"#, r#""a\\\"b""#),
            ("O'Neil", r#""O'Neil""#),
            ("", r#""""#),
            (r"C:\no\space", r"C:\no\space"),
        ] {
            assert_eq!(msvc_quote(word), quoted, "{word}");
        }
    }

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(shell_quote("plain-word_1.2"), "plain-word_1.2");
        assert_eq!(shell_quote("two words"), "'two words'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$(rm -rf ~)"), "'$(rm -rf ~)'");
    }
}
