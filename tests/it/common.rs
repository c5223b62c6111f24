//! Shared fixtures for eic's end-to-end tests: the stand-in, a real sshd, an isolated HOME,
//! and the real `eic` binary run against them.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use eic_standin::{Sshd, StandIn};
use tokio::process::Command;

pub use eic_standin::{TYPICAL_ENDPOINT_ID as ENDPOINT, TYPICAL_INSTANCE_ID as INSTANCE};

/// The private IP of the typical world's instance.
pub const PRIVATE_IP: &str = "10.0.0.5";

/// The stand-in, an sshd behind it, and a throw-away HOME with a client key.
pub struct Lab {
    pub standin: StandIn,
    pub sshd: Sshd,
    pub home: tempfile::TempDir,
}

impl Lab {
    /// The typical world: one running instance (port 22 relayed to the sshd) and its endpoint.
    pub async fn start() -> Lab {
        let (standin, sshd) = StandIn::with_sshd().await.expect(
            "the stand-in and sshd start (end-to-end tests need /usr/sbin/sshd: apt-get install -y openssh-server)",
        );
        Lab::with(standin, sshd)
    }

    pub fn with(standin: StandIn, sshd: Sshd) -> Lab {
        // Not in /tmp: eic's push cache and shared connections live under HOME only when no
        // one else may write to any directory above it.
        let home =
            tempfile::Builder::new().prefix("eic-home").tempdir_in(env!("CARGO_TARGET_TMPDIR"));
        let home = home.unwrap();
        std::fs::create_dir(home.path().join(".ssh")).unwrap();
        std::fs::write(
            home.path().join(".ssh/known_hosts"),
            // `*`: whatever HostKeyAlias eic sets (the instance id), it is this sshd.
            format!("* {}\n", sshd.host_public_key()),
        )
        .unwrap();
        Lab { standin, sshd, home }
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.home.path().join(".ssh/known_hosts")
    }

    /// `eic ARGS` with the stand-in's environment and nothing of the real user's AWS setup.
    pub fn eic(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(eic_bin());
        cmd.args(args);
        self.isolate(&mut cmd);
        cmd
    }

    /// Clears the AWS environment, points it at the stand-in, and sets the test HOME.
    pub fn isolate(&self, cmd: &mut Command) {
        for (key, _) in std::env::vars() {
            if key.starts_with("AWS_") || key.to_ascii_lowercase().ends_with("_proxy") {
                cmd.env_remove(&key);
            }
        }
        cmd.envs(self.standin.env());
        cmd.env("HOME", self.home.path());
        cmd.env_remove("XDG_RUNTIME_DIR");
        cmd.kill_on_drop(true);
    }

    /// `eic ssh --instance-id INSTANCE --os-user <sshd user> EIC_ARGS -- REMOTE`, with
    /// `runtime` as its XDG_RUNTIME_DIR and an `ssh` first on PATH that reads the isolating
    /// options from a file ([`Lab::ssh_options`]'s), so that none comes after `--`: options
    /// there decide whether the connection is shared.
    pub fn eic_ssh(&self, runtime: &Path, eic_args: &[&str], remote: &[&str]) -> Command {
        let mut args = vec!["ssh", "--instance-id", INSTANCE, "--os-user", self.sshd.user()];
        args.extend_from_slice(eic_args);
        args.push("--");
        args.extend_from_slice(remote);
        let mut cmd = self.eic(&args);
        cmd.env("XDG_RUNTIME_DIR", runtime).env("PATH", self.wrapped_path());
        cmd
    }

    /// PATH with the isolating `ssh` wrapper ([`Lab::eic_ssh`]'s) first.
    pub fn wrapped_path(&self) -> std::ffi::OsString {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let dirs = std::iter::once(self.ssh_wrapper_dir()).chain(std::env::split_paths(&path));
        std::env::join_paths(dirs).unwrap()
    }

    /// A directory with an `ssh` that runs the real one with an ssh_config of the isolating
    /// options (as `-F`: a later `-F` still wins, as eic's `-F none` for `ssh -O`).
    fn ssh_wrapper_dir(&self) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.home.path().join("bin");
        let wrapper = dir.join("ssh");
        if !wrapper.exists() {
            std::fs::create_dir_all(&dir).unwrap();
            let config = self.home.path().join("ssh_config");
            let options = format!(
                "UserKnownHostsFile {}\nStrictHostKeyChecking yes\nBatchMode yes\nLogLevel ERROR\n",
                self.known_hosts().display()
            );
            std::fs::write(&config, options).unwrap();
            let real = ["/usr/bin/ssh", "/bin/ssh", "/usr/local/bin/ssh"]
                .into_iter()
                .find(|p| Path::new(p).exists())
                .expect("OpenSSH's ssh");
            let script = format!("#!/bin/sh\nexec {real} -F '{}' \"$@\"\n", config.display());
            let staged = dir.join(".ssh.tmp");
            std::fs::write(&staged, script).unwrap();
            std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::rename(&staged, &wrapper).unwrap();
        }
        dir
    }

    /// A fresh client key, authorized on the sshd for an hour (as if pushed long ago).
    pub fn authorized_key(&self) -> PathBuf {
        let key = self.home.path().join(format!("id_{}", rand_suffix()));
        self.sshd
            .authorize_new_key(&key, Duration::from_secs(3600))
            .expect("ssh-keygen makes a key and the sshd accepts it");
        key
    }

    /// ssh options that keep the client away from the real ~/.ssh and never prompt.
    pub fn ssh_options(&self) -> Vec<String> {
        [
            "-F".to_string(),
            "/dev/null".to_string(),
            "-o".to_string(),
            format!("UserKnownHostsFile={}", self.known_hosts().display()),
            "-o".to_string(),
            "StrictHostKeyChecking=yes".to_string(),
            "-o".to_string(),
            "BatchMode=yes".to_string(),
            "-o".to_string(),
            "LogLevel=ERROR".to_string(),
        ]
        .to_vec()
    }

    /// `ssh` through `eic open-tunnel` as ProxyCommand, with `key`, to the sshd's user.
    pub fn ssh_via_proxy(&self, proxy_args: &str, key: &Path, remote: &[&str]) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(self.ssh_options());
        cmd.arg("-o").arg(format!("ProxyCommand={} open-tunnel {proxy_args}", eic_bin().display()));
        // The sshd's host key is in known_hosts under its 127.0.0.1 address.
        cmd.arg("-o").arg(format!("HostKeyAlias=[127.0.0.1]:{}", self.sshd.port()));
        cmd.arg("-i").arg(key);
        cmd.arg("-o").arg("IdentitiesOnly=yes");
        cmd.arg(format!("{}@{INSTANCE}", self.sshd.user()));
        cmd.args(remote);
        self.isolate(&mut cmd);
        cmd
    }
}

/// A directory as `XDG_RUNTIME_DIR` is (the XDG spec: owned by the user, mode 0700), which eic
/// uses for its one-time keys and push cache only when it is so.
/// It is made in cargo's target directory, not /tmp: eic shares connections only from a
/// directory that no one else may write to, up to the root.
pub fn runtime_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let private = std::fs::Permissions::from_mode(0o700);
    let mut builder = tempfile::Builder::new();
    builder.prefix("eic-xdg").permissions(private);
    builder.tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

/// The pid of `parent`'s child whose command name is `name`.
#[cfg(target_os = "linux")]
pub fn child_named(parent: u32, name: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
        let (comm, rest) = stat.split_once(") ")?;
        let comm = comm.split_once(" (")?.1;
        let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
        (comm == name && ppid == parent).then(|| entry.file_name().to_str()?.parse().ok())?
    })
}

pub fn eic_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_eic"))
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Runs `cmd` to completion within `limit`, with stdin closed; panics on a hang.
pub async fn run(cmd: &mut Command, limit: Duration) -> std::process::Output {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    tokio::time::timeout(limit, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{cmd:?} did not finish within {limit:?}"))
        .expect("the command starts")
}

/// Sends the signal `name` (`INT`, `TERM`, `KILL`, `STOP`, ...) to process `pid`, as kill(1).
pub fn signal(pid: u32, name: &str) {
    let mut kill = std::process::Command::new("kill");
    kill.args([&format!("-{name}"), &pid.to_string()]);
    assert!(kill.status().expect("kill runs").success(), "kill -{name} {pid}");
}

/// A fresh Ed25519 key pair made by ssh-keygen in `dir`: the private key's path and the
/// public key's line.
pub fn keypair(dir: &Path) -> (PathBuf, String) {
    let key = dir.join("id_ed25519");
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "eic-test", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, public.trim().to_string())
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// SHA-256 of some bytes, as lowercase hex. Computed by aws-lc (rustls's provider, optimised C
/// even in debug builds): the load tests hash gigabytes.
pub fn sha256(bytes: &[u8]) -> String {
    let suite = rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256;
    let hash = suite.tls13().expect("a TLS 1.3 suite").common.hash_provider;
    hex::encode(hash.hash(bytes).as_ref())
}

pub use eic_standin::payload;

// ---- `eic open-tunnel` helpers: custom worlds, a listener-mode child, a CONNECT proxy ----

/// How long a helper waits for a child's stderr line before failing the test.
pub const LINE_LIMIT: Duration = Duration::from_secs(20);

impl Lab {
    /// Like [`Lab::start`], with the typical world (plus the sshd on port 22) changed by `edit`
    /// before the stand-in starts.
    pub async fn start_with(edit: impl FnOnce(eic_standin::World) -> eic_standin::World) -> Lab {
        let sshd = tokio::task::spawn_blocking(Sshd::start).await.unwrap().expect(
            "sshd starts (end-to-end tests need /usr/sbin/sshd: apt-get install -y openssh-server)",
        );
        let world = eic_standin::World::typical(sshd.addr())
            .authorized_keys_dir(sshd.authorized_keys_dir());
        let standin = StandIn::start(edit(world)).await.expect("the stand-in starts");
        Lab::with(standin, sshd)
    }

    /// The typical world with port 3389 of its instance relayed to a fresh TCP echo server, and
    /// `faults` set. The echo server lives as long as the test's runtime.
    pub async fn start_echo(faults: eic_standin::Faults) -> Lab {
        let (echo, _task) = eic_standin::tcp_echo().await.expect("the echo server starts");
        Lab::start_with(|mut world| {
            let instance = world.instance_mut(INSTANCE).expect("the typical instance");
            instance.targets.insert(3389, echo);
            world.faults(faults)
        })
        .await
    }

    /// `eic open-tunnel ARGS` in stdio mode, with stdin, stdout and stderr piped (not started).
    pub fn stdio_tunnel(&self, args: &[&str]) -> Command {
        let mut cmd = self.eic(&["open-tunnel"]);
        cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd
    }
}

/// Reads a child's stderr line by line in the background.
pub struct StderrLines {
    rx: tokio::sync::mpsc::UnboundedReceiver<String>,
    /// Every line received so far, in order.
    pub seen: Vec<String>,
}

impl StderrLines {
    pub fn new(stderr: tokio::process::ChildStderr) -> StderrLines {
        use tokio::io::AsyncBufReadExt;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        StderrLines { rx, seen: Vec::new() }
    }

    /// Reads on to the next line for which `want` holds and returns it (lines read on the way
    /// stay in `seen`); panics at EOF or after [`LINE_LIMIT`].
    pub async fn wait_for(&mut self, what: &str, want: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + LINE_LIMIT;
        loop {
            let line = match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(line)) => line,
                Ok(None) => panic!("stderr ended before {what}; stderr so far:\n{}", self.text()),
                Err(_) => panic!(
                    "no {what} on stderr within {LINE_LIMIT:?}; stderr so far:\n{}",
                    self.text()
                ),
            };
            self.seen.push(line.clone());
            if want(&line) {
                return line;
            }
        }
    }

    /// Collects the remaining lines until EOF (the child has exited), within [`LINE_LIMIT`].
    pub async fn rest(&mut self) -> String {
        let rx = &mut self.rx;
        let seen = &mut self.seen;
        tokio::time::timeout(LINE_LIMIT, async {
            while let Some(line) = rx.recv().await {
                seen.push(line);
            }
        })
        .await
        .expect("stderr ends once the child has exited");
        self.text()
    }

    pub fn text(&self) -> String {
        self.seen.join("\n")
    }

    /// How many lines seen so far contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.seen.iter().filter(|l| l.contains(needle)).count()
    }
}

/// `eic open-tunnel ARGS --local-port 0` running, with the address it reported.
pub struct TunnelListener {
    pub child: tokio::process::Child,
    pub addr: std::net::SocketAddr,
    pub stderr: StderrLines,
}

impl TunnelListener {
    /// Starts the listener and waits for its `eic: listening on ADDR, ...` line.
    pub async fn start(lab: &Lab, args: &[&str]) -> TunnelListener {
        let mut cmd = lab.eic(&["open-tunnel", "--local-port", "0"]);
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("eic starts");
        let mut stderr = StderrLines::new(child.stderr.take().unwrap());
        let line = stderr
            .wait_for("the `listening on` line", |l| l.starts_with("eic: listening on "))
            .await;
        let addr = line["eic: listening on ".len()..]
            .split(',')
            .next()
            .unwrap()
            .parse()
            .unwrap_or_else(|e| panic!("no address in `{line}`: {e}"));
        TunnelListener { child, addr, stderr }
    }

    pub async fn connect(&self) -> tokio::net::TcpStream {
        let tcp = tokio::time::timeout(LINE_LIMIT, tokio::net::TcpStream::connect(self.addr))
            .await
            .expect("the listener accepts in time")
            .expect("the listener accepts");
        tcp.set_nodelay(true).unwrap();
        tcp
    }

    /// Sends SIGINT, as Ctrl-C would.
    pub fn interrupt(&self) {
        signal(self.child.id().expect("the listener is running"), "INT");
    }

    /// Waits for the exit, at most `limit`.
    pub async fn exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the listener did not exit within {limit:?}; stderr:\n{}",
                    self.stderr.text()
                )
            })
            .unwrap()
    }
}

/// Sends `data` on `tcp` while reading as many bytes back, and returns what came back. The
/// write side stays open: a half-close ends the tunnel, and the stand-in drops what is left.
pub async fn echo_back(tcp: &mut tokio::net::TcpStream, data: &[u8]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut read, mut write) = tcp.split();
    let send = async {
        write.write_all(data).await.expect("writing to the tunnel");
    };
    let receive = async {
        let mut back = vec![0u8; data.len()];
        read.read_exact(&mut back).await.expect("reading the echo back");
        back
    };
    let ((), back) = tokio::join!(send, receive);
    back
}

/// A tiny HTTP CONNECT proxy on 127.0.0.1:0 that counts CONNECTs, keeps each request's
/// `Proxy-Authorization` header, then pipes bytes. Stops when dropped.
pub struct ConnectProxy {
    pub addr: std::net::SocketAddr,
    connects: std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ConnectProxy {
    pub async fn start() -> ConnectProxy {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connects = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = connects.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let record = record.clone();
                tokio::spawn(async move {
                    let mut client = tokio::io::BufReader::new(client);
                    let mut request = String::new();
                    client.read_line(&mut request).await?;
                    let mut auth = None;
                    loop {
                        let mut line = String::new();
                        if client.read_line(&mut line).await? == 0 || line.trim().is_empty() {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':') {
                            if name.eq_ignore_ascii_case("proxy-authorization") {
                                auth = Some(value.trim().to_string());
                            }
                        }
                    }
                    let mut parts = request.split_whitespace();
                    let (Some("CONNECT"), Some(target)) = (parts.next(), parts.next()) else {
                        client
                            .get_mut()
                            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
                            .await?;
                        return Ok::<_, std::io::Error>(());
                    };
                    record.lock().unwrap().push(auth);
                    let mut upstream = tokio::net::TcpStream::connect(target).await?;
                    client
                        .get_mut()
                        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .await?;
                    // The client waits for the 200 before it sends, so nothing is buffered.
                    let mut client = client.into_inner();
                    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
                    Ok(())
                });
            }
        });
        ConnectProxy { addr, connects, task }
    }

    /// How many CONNECT requests arrived.
    pub fn count(&self) -> usize {
        self.connects.lock().unwrap().len()
    }

    /// The `Proxy-Authorization` header of each CONNECT, in order.
    pub fn authorizations(&self) -> Vec<Option<String>> {
        self.connects.lock().unwrap().clone()
    }
}
