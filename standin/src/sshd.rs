//! A real OpenSSH server on 127.0.0.1 whose AuthorizedKeysFile the stand-in writes.

use anyhow::{bail, Context as _};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Where sshd must be.
pub const SSHD: &str = "/usr/sbin/sshd";
/// How long sshd may take to listen.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `sshd -D -e` on 127.0.0.1 with its own host key. Killed on drop.
pub struct Sshd {
    child: Child,
    addr: SocketAddr,
    keys_dir: PathBuf,
    host_public_key: String,
    user: String,
    log: PathBuf,
    dir: tempfile::TempDir,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The name of the user this process runs as.
pub fn current_user() -> String {
    Command::new("id")
        .arg("-un")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "root".into())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

impl Sshd {
    /// Start sshd (three attempts, in case the free port it picked gets taken meanwhile).
    pub fn start() -> anyhow::Result<Sshd> {
        if !Path::new(SSHD).exists() {
            bail!(
                "sshd not found at {SSHD}: install it with `apt-get install -y openssh-server` \
                 (Debian/Ubuntu) — end-to-end tests need a real OpenSSH server"
            );
        }
        if is_root() {
            std::fs::create_dir_all("/run/sshd").context("creating /run/sshd")?;
            std::fs::set_permissions("/run/sshd", std::fs::Permissions::from_mode(0o755))?;
        }
        let mut last = None;
        for _ in 0..3 {
            match Self::try_start() {
                Ok(s) => return Ok(s),
                Err(e) if format!("{e:#}").contains("Address already in use") => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("three attempts"))
    }

    fn try_start() -> anyhow::Result<Sshd> {
        let dir = tempfile::Builder::new().prefix("eic-sshd").tempdir()?;
        // sshd reads AuthorizedKeysFile as the logging-in user: keep the path traversable.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let keys_dir = dir.path().join("authorized_keys");
        std::fs::create_dir(&keys_dir)?;
        std::fs::set_permissions(&keys_dir, std::fs::Permissions::from_mode(0o755))?;
        let host_key = dir.path().join("host_ed25519");
        let host_public_key = keygen(&host_key, "eic-standin-host")?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress ::1\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}/%u\n\
                 StrictModes no\nPermitRootLogin prohibit-password\nPubkeyAuthentication yes\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                 PidFile none\nSubsystem sftp internal-sftp\nAllowTcpForwarding yes\n\
                 LogLevel VERBOSE\nMaxStartups 100:30:200\nMaxSessions 100\nPrintMotd no\n\
                 UseDNS no\n",
                host_key.display(),
                keys_dir.display()
            ),
        )?;
        let log = dir.path().join("sshd.log");
        let mut child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {SSHD}"))?;

        // Copy stderr to the log and report readiness ("Server listening on ...") or exit.
        let stderr = child.stderr.take().expect("piped");
        let mut file = std::fs::File::create(&log)?;
        let (tx, rx) = mpsc::channel::<bool>();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(file, "{line}");
                // ::1 is bound first, so this line means both addresses were tried.
                if line.contains("Server listening on 127.0.0.1") {
                    let _ = tx.send(true);
                }
            }
            let _ = tx.send(false);
        });
        let ready = rx.recv_timeout(READY_TIMEOUT);
        let mut sshd =
            Sshd { child, addr, keys_dir, host_public_key, user: current_user(), log, dir };
        match ready {
            Ok(true) => Ok(sshd),
            Ok(false) => {
                let _ = sshd.child.wait();
                bail!("sshd exited at start-up:\n{}", sshd.log_text())
            }
            Err(_) => {
                let _ = sshd.child.kill();
                bail!("sshd did not listen within {READY_TIMEOUT:?}:\n{}", sshd.log_text())
            }
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// Makes a new client key pair at `key` (and `key.pub`) and authorizes it for
    /// [`Sshd::user`] for `valid_for`, as if it had been pushed with SendSSHPublicKey.
    pub fn authorize_new_key(&self, key: &Path, valid_for: Duration) -> anyhow::Result<()> {
        let public = keygen(key, "eic-standin-client")?;
        crate::connect::install_key(
            self.authorized_keys_dir(),
            self.user(),
            &public,
            std::time::SystemTime::now() + valid_for,
        )?;
        Ok(())
    }

    /// The AuthorizedKeysFile directory (`<dir>/%u`); give it to [`crate::World::authorized_keys_dir`].
    pub fn authorized_keys_dir(&self) -> &Path {
        &self.keys_dir
    }
    /// The host key, `ssh-ed25519 AAAA... eic-standin-host`.
    pub fn host_public_key(&self) -> &str {
        &self.host_public_key
    }
    /// A known_hosts line for this server (`[127.0.0.1]:PORT ssh-ed25519 AAAA...`).
    pub fn known_hosts_line(&self) -> String {
        format!("[127.0.0.1]:{} {}", self.port(), self.host_public_key)
    }
    /// The user sshd can log in: the one running the tests.
    pub fn user(&self) -> &str {
        &self.user
    }
    /// sshd's stderr (LogLevel VERBOSE) is copied here.
    pub fn log_path(&self) -> &Path {
        &self.log
    }
    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    /// A scratch directory owned by the fixture (removed on drop).
    pub fn scratch_dir(&self) -> &Path {
        self.dir.path()
    }
    /// `ssh` options for a batch login to this server with `identity`, trusting only its host key
    /// through `known_hosts` (written by this call). Append `user@127.0.0.1` and a command.
    pub fn ssh_client_args(
        &self,
        known_hosts: &Path,
        identity: &Path,
    ) -> std::io::Result<Vec<String>> {
        std::fs::write(known_hosts, format!("{}\n", self.known_hosts_line()))?;
        Ok([
            "-F",
            "/dev/null",
            "-p",
            &self.port().to_string(),
            "-i",
            &identity.display().to_string(),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "IdentityAgent=none",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            &format!("UserKnownHostsFile={}", known_hosts.display()),
            "-o",
            "LogLevel=ERROR",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect())
    }
}

/// Makes an Ed25519 key pair without a passphrase at `path` (and `path.pub`); returns the public
/// key line.
fn keygen(path: &Path, comment: &str) -> anyhow::Result<String> {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .context("running ssh-keygen")?;
    if !out.status.success() {
        bail!("ssh-keygen failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(std::fs::read_to_string(path.with_extension("pub"))?.trim().to_string())
}
