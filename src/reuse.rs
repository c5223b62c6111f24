//! OpenSSH's connection sharing for `eic ssh`: one master connection per region, instance,
//! user and port (never per private IP, which other VPCs reuse), its socket in eic's private
//! directory, kept by `ControlPersist` after its last session. While it lives, `eic ssh` runs
//! ssh over it: no API call, no key pushed, no tunnel opened.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::keys;
use crate::ssh_argv::config_path;

/// Where the master for these listens: a name of their hash in eic's private directory (short:
/// a socket's path has at most about 100 bytes).
pub fn socket(region: &str, instance_id: &str, user: &str, port: u16) -> anyhow::Result<PathBuf> {
    let digest = Sha256::digest(format!("{region}\0{instance_id}\0{user}\0{port}"));
    let name: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    Ok(keys::private_dir()?.join(format!("ssh-{name}")))
}

/// Whether a master answers on `socket` (`ssh -O check`). A socket whose master died (its
/// tunnel ended, say) is removed, so that the next master can listen there.
pub fn alive(ssh: &Path, socket: &Path) -> bool {
    let alive = control(ssh, socket, "check");
    if !alive {
        let _ = std::fs::remove_file(socket);
    }
    alive
}

/// Ends the master on `socket` (`ssh -O exit`); whether there was one.
pub fn stop(ssh: &Path, socket: &Path) -> bool {
    control(ssh, socket, "exit")
}

fn control(ssh: &Path, socket: &Path, command: &str) -> bool {
    let path = format!("ControlPath={}", config_path(&socket.display().to_string()));
    let mut ssh = Command::new(ssh);
    ssh.args(["-O", command, "-o", &path, "eic-master"]);
    let status = ssh.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status();
    status.is_ok_and(|s| s.success())
}
