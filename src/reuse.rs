//! OpenSSH's connection sharing for `eic ssh`: one master connection per region, instance,
//! user and port (never per private IP, which other VPCs reuse), its socket in eic's private
//! directory, kept by `ControlPersist` after its last session. While it lives, `eic ssh` runs
//! ssh over it: no API call, no key pushed, no tunnel opened.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use sha2::{Digest, Sha256};

use crate::keys;
use crate::ssh_argv::{self, config_path};

/// Where the master for these listens: a name of their hash in eic's private directory. A
/// socket's path has at most about 100 bytes (and ssh adds a temporary suffix of 17 while it
/// binds): `None` when it would be longer.
pub fn socket(
    region: &str,
    instance_id: &str,
    user: &str,
    port: u16,
) -> anyhow::Result<Option<PathBuf>> {
    let digest = Sha256::digest(format!("{region}\0{instance_id}\0{user}\0{port}"));
    let name = data_encoding::HEXLOWER.encode(&digest[..8]);
    let socket = keys::private_dir()?.join(format!("ssh-{name}"));
    Ok(Some(socket).filter(|s| s.as_os_str().len() + 17 < 100))
}

/// Held while this eic decides whether to start the master and until that master has logged
/// in: a second `eic ssh` to the same place waits, then runs over it (instead of racing it).
pub async fn lock(socket: &Path) -> anyhow::Result<File> {
    keys::lock_file(&socket.with_extension("lock")).await
}

/// Whether a master answers on `socket` (`ssh -O check`). A socket left by a master that died
/// is ssh's to replace (it does when the next master finds nobody there).
pub fn alive(ssh: &Path, socket: &Path) -> bool {
    control(ssh, socket, "check")
}

/// Ends the master on `socket` (`ssh -O exit`); whether there was one.
pub fn stop(ssh: &Path, socket: &Path) -> bool {
    control(ssh, socket, "exit")
}

fn control(ssh: &Path, socket: &Path, command: &str) -> bool {
    let path = format!("ControlPath={}", config_path(&socket.display().to_string()));
    let mut ssh = ssh_argv::command(ssh);
    ssh.args(["-F", "none", "-O", command, "-o", &path, "eic-master"]);
    let status = ssh.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status();
    status.is_ok_and(|s| s.success())
}
