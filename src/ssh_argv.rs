//! The ssh command line: eic's options, the ProxyCommand that re-runs eic, the user's own
//! arguments, and the destination.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::presign::TunnelTarget;

/// The tunnel the ProxyCommand child opens: everything resolved and the URL presigned, so it
/// makes no API call and holds no credentials.
#[derive(Debug, Clone)]
pub struct ProxyCommand {
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

impl ProxyCommand {
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
    pub proxy: Option<ProxyCommand>,
    pub local_forwarding: Option<String>,
    pub verbose: bool,
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
        let key = self.key.display().to_string();
        if key.contains('%') {
            // ssh expands `%` tokens in identity file names, but looks for an `-i` file before
            // expanding them: as IdentityFile, with `%` doubled, the file is found.
            args.extend(["-o".into(), format!("IdentityFile={}", config_path(&key))]);
        } else {
            args.extend(["-i".into(), key]);
        }
        args.extend([
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            format!("HostKeyAlias={}", self.instance_id),
            "-o".into(),
            "ServerAliveInterval=5".into(),
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
            self.local_forwarding.as_deref(),
            self.verbose,
            &self.extra,
            &destination,
        );
        args
    }

    /// The command line as a shell would take it, for `--dry-run`.
    pub fn display(&self) -> String {
        std::iter::once(self.ssh.display().to_string())
            .chain(self.args())
            .map(|a| quote(&a))
            .collect::<Vec<_>>()
            .join(" ")
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
    local_forwarding: Option<&str>,
    verbose: bool,
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
    session(&mut args, port, local_forwarding, verbose, extra, &format!("{user}@{instance_id}"));
    args
}

/// The end of every ssh command line: the port, a forwarding, `-v`, the user's options, then
/// `--`, the destination and the remote command.
fn session(
    args: &mut Vec<String>,
    port: u16,
    local_forwarding: Option<&str>,
    verbose: bool,
    extra: &[String],
    destination: &str,
) {
    args.extend(["-p".into(), port.to_string()]);
    if let Some(spec) = local_forwarding {
        args.extend(["-L".into(), spec.to_string()]);
    }
    if verbose {
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

/// Whether the user's options after `--` make a shared connection the wrong thing: forwardings
/// (`-L`, `-R`, `-D`) and `-N`, `-f`, `-W` would live on in a background master, and `-S`,
/// `-M`, `-O` or `-o Control...` are the user's own sharing.
pub fn unshareable(extra: &[String]) -> bool {
    let (options, _) = split_ssh_args(extra);
    option_letters(options).into_iter().any(|(letter, value)| match (letter, value) {
        ('L' | 'R' | 'D' | 'N' | 'f' | 'W' | 'S' | 'M' | 'O', _) => true,
        ('o', Some(option)) => option.trim_start().to_ascii_lowercase().starts_with("control"),
        _ => false,
    })
}

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
fn option_letters(options: &[String]) -> Vec<(char, Option<&str>)> {
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
            // ssh skips leading blanks and takes a quoted keyword: `-o ' "User"=root'`.
            let key: String = option
                .trim_start()
                .trim_start_matches('"')
                .chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect();
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

/// A file name as ssh_config (and `-o`) takes it where ssh expands `%` tokens (`IdentityFile`):
/// `%` doubled, then quoted.
pub fn config_path(path: &str) -> String {
    config_quote(&path.replace('%', "%%"))
}

/// Quotes a value for ssh_config (and `-o`): double quotes around one with whitespace.
pub fn config_quote(value: &str) -> String {
    if value.contains(char::is_whitespace) {
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

/// The ssh client: on `PATH`, else (Windows) the one Windows installs.
pub fn find_ssh() -> Option<PathBuf> {
    let name = if cfg!(windows) { "ssh.exe" } else { "ssh" };
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path).map(|dir| dir.join(name)).find(|c| is_executable(c))
    });
    let inbox = || {
        let root = std::env::var_os("SystemRoot").filter(|_| cfg!(windows))?;
        Some(PathBuf::from(root).join(r"System32\OpenSSH\ssh.exe")).filter(|c| is_executable(c))
    };
    on_path.or_else(inbox)
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
            instance_id: "i-0123".into(),
            proxy: proxy.then(|| ProxyCommand {
                exe: "/opt/my tools/100%/eic".into(),
                target: TunnelTarget {
                    endpoint_id: "eice-1".into(),
                    dns_name: "eice-1.example.com".parse().unwrap(),
                    private_ip: "10.0.0.5".parse().unwrap(),
                    remote_port: 22,
                    max_tunnel_duration: Some(600),
                },
                url_file: "/run/user/1000/eic-abc/tunnel-url".into(),
                ca_bundle: None,
                debug: false,
                detach_stderr: false,
            }),
            local_forwarding: Some("8080:localhost:80".into()),
            verbose: true,
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
        let proxy = format!("ProxyCommand={exe} open-tunnel --instance-connect-endpoint-id eice-1 --instance-connect-endpoint-dns-name eice-1.example.com --private-ip-address 10.0.0.5 --remote-port 22 --max-tunnel-duration 600 --presigned-url-file /run/user/1000/eic-abc/tunnel-url");
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
                "HostKeyAlias=i-0123",
                "-o",
                "ServerAliveInterval=5",
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
