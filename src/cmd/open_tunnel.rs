//! `eic open-tunnel` without `--local-port`: stdin and stdout are the tunnel, as ssh's
//! ProxyCommand uses them.

use std::path::Path;

use anyhow::Context;

use crate::aws::{CaBundle, Settings};
use crate::cli::{PresignedPlan, TunnelPlan};
use crate::local;
use crate::tunnel::{Opener, Signer};

pub async fn run(settings: &Settings, plan: TunnelPlan) -> anyhow::Result<i32> {
    let opener = super::opener(settings, plan).await?;
    local::relay_stdio(&opener, false).await?;
    Ok(0)
}

/// As `eic ssh`'s ProxyCommand: the URL was presigned by the parent, which holds the
/// credentials, and is read once from its private file.
pub async fn presigned(settings: &Settings, plan: PresignedPlan) -> anyhow::Result<i32> {
    // A shared connection's tunnel outlives the `eic ssh` that started it: out of that one's
    // session, so that its Ctrl-C or Ctrl-Z does not reach the tunnel of every later session.
    #[cfg(unix)]
    if plan.detach_stderr {
        let _ = nix::unistd::setsid();
    }
    let path = &plan.url_file;
    let url = read_private(path)?;
    let _ = std::fs::remove_file(path);
    let signer = Signer::Url(url.trim().to_string());
    let ca_bundle = CaBundle::named(settings)?;
    let opener = Opener::new(signer, ca_bundle.as_ref(), plan.target, plan.connect_timeout)?;
    local::relay_stdio(&opener, plan.detach_stderr).await?;
    Ok(0)
}

/// Reads the presigned URL's file, which `eic ssh` writes 0600 in a directory of its own
/// (0700): anything else (a link, a file others may read or write, in a directory others may
/// change) is not its file, and is refused rather than used or deleted.
#[cfg(unix)]
fn read_private(path: &Path) -> anyhow::Result<String> {
    use nix::fcntl::OFlag;
    use std::os::unix::fs::OpenOptionsExt;
    let cannot = || format!("cannot read the presigned URL {}", path.display());
    check_private_file(path, &std::fs::symlink_metadata(path).with_context(cannot)?)?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if !crate::private::is_private_dir(dir) {
        let what = format!(
            "is in {}, which is not a directory of this user with mode 0700",
            dir.display()
        );
        return Err(refused(path, &what));
    }
    // The checks again on what is opened: no link (O_NOFOLLOW) or other file put in its place
    // since, and no wait on a FIFO (O_NONBLOCK).
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK).bits())
        .open(path)
        .with_context(cannot)?;
    check_private_file(path, &file.metadata().with_context(cannot)?)?;
    std::io::read_to_string(file).with_context(cannot)
}

#[cfg(windows)]
fn read_private(path: &Path) -> anyhow::Result<String> {
    // The directory's ACL grants this user alone (private::scratch_dir); Windows has no modes.
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the presigned URL {}", path.display()))
}

/// A regular file (not a link), owned by this user, with no access for group or others.
#[cfg(unix)]
fn check_private_file(path: &Path, meta: &std::fs::Metadata) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let uid = nix::unistd::getuid().as_raw();
    if meta.file_type().is_symlink() {
        return Err(refused(path, "is a symbolic link"));
    }
    if !meta.is_file() {
        return Err(refused(path, "is not a regular file"));
    }
    if meta.uid() != uid {
        let what = format!("is owned by uid {}, not by this user (uid {uid})", meta.uid());
        return Err(refused(path, &what));
    }
    if meta.mode() & 0o077 != 0 {
        let mode = meta.mode() & 0o7777;
        let what = format!("has mode {mode:04o}: group or others may use it (it must be 0600)");
        return Err(refused(path, &what));
    }
    Ok(())
}

/// The usage error for a presigned URL file that `eic ssh` did not make.
#[cfg(unix)]
fn refused(path: &Path, what: &str) -> anyhow::Error {
    crate::error::usage(format!(
        "--presigned-url-file {} {what}: the option is for the ProxyCommand of `eic ssh`, which writes the file 0600 in a private (0700) directory; run `eic ssh` instead",
        path.display()
    ))
}
