//! Shared connections: OpenSSH's connection sharing (ControlMaster) for `eic ssh`. A master is
//! bound to everything that authorised and routed it: region, identity, endpoint URLs, CA
//! bundle, FIPS and dual-stack settings, instance, user, port and the route asked for (never
//! the private IP, which other VPCs reuse). A later call with the same binding runs over it: no
//! API call, no key pushed, no tunnel opened. Its socket, lock and start record live in eic's
//! private directory; `ControlPersist` keeps it after its last session.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::aws::Configured;
use crate::keys::KeySource;
use crate::private;
use crate::resolve::Via;
use crate::ssh_argv::{self, config_path};

/// How long an endpoint keeps a tunnel open when `maxTunnelDuration` does not say.
const ENDPOINT_TUNNEL_LIMIT: Duration = Duration::from_secs(3600);

/// A master in its tunnel's last minute is not given new sessions: they would be cut.
const LAST_MINUTE: Duration = Duration::from_secs(60);

/// What a shared connection is bound to: a later call shares it only when all of it is the
/// same.
pub struct Binding<'a> {
    pub config: &'a Configured,
    pub instance_id: &'a str,
    pub user: &'a str,
    pub port: u16,
    /// The route as asked for: connection type, endpoint, address, `maxTunnelDuration`.
    pub via: &'a Via,
    /// The key asked for: a session over a master opened with another key would pass for a
    /// login with this one.
    pub key: &'a KeySource,
}

impl Binding<'_> {
    fn key(&self) -> String {
        let c = self.config;
        let ca_bundle = c.ca_bundle.as_ref().map(|b| b.path.display().to_string());
        [
            c.region.as_str(),
            &c.identity,
            &c.endpoint_urls,
            &ca_bundle.unwrap_or_default(),
            &format!("fips={} dual_stack={}", c.fips, c.dual_stack),
            self.instance_id,
            self.user,
            &self.port.to_string(),
            &format!("{:?}", self.via),
            &format!("{:?}", self.key),
        ]
        .join("\0")
    }

    /// How long the master's tunnel may live.
    fn lifetime(&self) -> Duration {
        let secs = self.via.max_tunnel_duration();
        secs.map_or(ENDPOINT_TUNNEL_LIMIT, |secs| Duration::from_secs(secs.into()))
    }
}

/// Where the shared connection for one binding lives.
#[derive(Debug)]
pub struct Shared {
    pub socket: PathBuf,
    pub instance_id: String,
    lifetime: Duration,
}

impl Shared {
    /// The place for `binding`'s master: a name of its hash in eic's private directory. `None`
    /// (with one warning) when that directory is not private, and when the socket's path would
    /// be too long (at most about 100 bytes, and ssh adds 17 while it binds).
    pub fn find(binding: &Binding) -> Option<Shared> {
        let dir = match private::private_dir() {
            Ok(dir) => dir,
            Err(e) => {
                crate::say::warn(format_args!("not sharing the connection: {e:#}"));
                return None;
            }
        };
        let digest = Sha256::digest(binding.key());
        let socket = dir.join(format!("ssh-{}", data_encoding::HEXLOWER.encode(&digest[..8])));
        if socket.as_os_str().len() + 17 >= 100 {
            tracing::debug!("not sharing: the socket's path would be too long");
            return None;
        }
        let instance_id = binding.instance_id.to_string();
        Some(Shared { socket, instance_id, lifetime: binding.lifetime() })
    }

    /// What sharing means for this call: `--stop` ends the master; a dry run shows the master
    /// it would start; otherwise the place is claimed ([`Shared::claim`]).
    pub async fn decide(self, ssh: &Path, stop: bool, dry_run: bool) -> anyhow::Result<Claim> {
        if stop {
            let ended = control(ssh, &self.socket, "exit");
            return Ok(Claim::Stopped { instance_id: self.instance_id, ended });
        }
        if dry_run {
            return Ok(Claim::Shown(self.socket));
        }
        self.claim(ssh).await
    }

    /// Decides, holding the lock that keeps two eic from starting the same master: a live
    /// master takes the session, unless its tunnel is in its last minute; else this call
    /// starts one (a dead master's socket is removed first).
    async fn claim(self, ssh: &Path) -> anyhow::Result<Claim> {
        let lock = self.lock().await?;
        let record = self.socket.with_extension("started");
        if control(ssh, &self.socket, "check") {
            let ends = std::fs::read_to_string(&record).ok().and_then(|r| ends_at(&r));
            let now = SystemTime::now();
            return Ok(match ends {
                Some(ends) if now + LAST_MINUTE < ends => {
                    Claim::Over { socket: self.socket, instance_id: self.instance_id }
                }
                // In its last minute (or of unknown age): this call runs alone.
                _ => Claim::Alone,
            });
        }
        // A master killed outright (SIGKILL, OOM, a reboot) leaves its socket: ssh would take
        // that for a master, so it goes. It is in eic's private directory.
        if self.socket.exists() {
            std::fs::remove_file(&self.socket)?;
        }
        // The start is recorded before the master connects: a little early, never late.
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
        let until = now + self.lifetime;
        private::write_file(&record, until.as_secs().to_string().as_bytes(), 0o600, true)?;
        Ok(Claim::Start(Starting { socket: self.socket, lock }))
    }

    /// The lock, waited for while another eic starts this master (said after a second).
    async fn lock(&self) -> anyhow::Result<File> {
        let path = self.socket.with_extension("lock");
        let lock = private::lock_file(&path);
        tokio::pin!(lock);
        tokio::select! {
            lock = &mut lock => return lock,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        crate::say::note(format_args!(
            "waiting for another eic ssh to open the shared connection to {}",
            self.instance_id
        ));
        lock.await
    }
}

/// When a master's tunnel ends, from its start record.
fn ends_at(record: &str) -> Option<SystemTime> {
    let secs = record.trim().parse().ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// What one `eic ssh` does with its shared connection.
#[derive(Debug)]
pub enum Claim {
    /// `--stop`: the master was ended, or there was none.
    Stopped { instance_id: String, ended: bool },
    /// A dry run: the master's socket it would start.
    Shown(PathBuf),
    /// Runs its session over the live master on `socket`.
    Over { socket: PathBuf, instance_id: String },
    /// Starts the master.
    Start(Starting),
    /// Runs unshared: the master's tunnel is about to end.
    Alone,
}

/// A master being started: the lock is held until it answers.
#[derive(Debug)]
pub struct Starting {
    pub socket: PathBuf,
    lock: File,
}

impl Starting {
    /// Returns once the new master answers (`ssh -O check`), then lets other eic in. Until
    /// then ssh may still need the key and the URL.
    pub async fn up(self, ssh: &Path) {
        loop {
            let (ssh, socket) = (ssh.to_path_buf(), self.socket.clone());
            let check = tokio::task::spawn_blocking(move || {
                socket.exists() && control(&ssh, &socket, "check")
            });
            if check.await.unwrap_or(false) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(self.lock);
    }
}

fn control(ssh: &Path, socket: &Path, command: &str) -> bool {
    let path = format!("ControlPath={}", config_path(&socket.display().to_string()));
    let mut ssh = ssh_argv::command(ssh);
    ssh.args(["-F", "none", "-O", command, "-o", &path, "eic-master"]);
    let status = ssh.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status();
    status.is_ok_and(|s| s.success())
}
