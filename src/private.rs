//! Private files: directories, files and locks that only this user may read, made so from
//! the start (mode 0600/0700 on Unix; on Windows an ACL that grants this user alone, what
//! Win32-OpenSSH demands of a private key), and the one way eic writes a file. The Windows
//! calls are in one `cfg` block at the end; their pure helpers are tested everywhere.

#[cfg(any(windows, test))]
use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::error;

/// A fresh private directory (0700) for one `eic ssh`: its one-time key and presigned URL,
/// removed when dropped. It goes in `$XDG_RUNTIME_DIR` (a per-user tmpfs) only when that is
/// ours and private (with `su`, it is still the invoking user's), else in the temp dir, where
/// its fresh random name is safe.
pub fn scratch_dir() -> anyhow::Result<tempfile::TempDir> {
    let parent = runtime_dir().unwrap_or_else(std::env::temp_dir);
    private_tempdir(&parent)
        .with_context(|| format!("cannot create a private directory in {}", parent.display()))
}

/// `$XDG_RUNTIME_DIR` (a per-user tmpfs), when it is ours and private.
fn runtime_dir() -> Option<PathBuf> {
    let runtime = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
    runtime.filter(|p| p.is_absolute() && is_private_dir(p))
}

/// eic's directory for this user (the push cache, shared connections' sockets), created 0700
/// and used only while it is ours and private:
/// `$XDG_RUNTIME_DIR/eic` when `XDG_RUNTIME_DIR` is itself ours and private, else
/// `~/.cache/eic` (never a predictable name in a shared directory such as /tmp).
pub fn private_dir() -> anyhow::Result<PathBuf> {
    let dir = match runtime_dir() {
        Some(runtime) => runtime.join("eic"),
        None => home()?.join(".cache").join("eic"),
    };
    create_private_dir(&dir)?;
    if cfg!(unix) && !is_private_dir(&dir) {
        anyhow::bail!("{} is not a private directory of this user", dir.display());
    }
    // As OpenSSH's safe_path(), and up to the root: whoever may replace a directory above it
    // may replace what is in it.
    if let Some(unsafe_dir) = unsafe_ancestor(&dir.canonicalize()?) {
        anyhow::bail!(
            "{} is in {}, which someone else owns or may write to (make it 0755 or tighter)",
            dir.display(),
            unsafe_dir.display()
        );
    }
    Ok(dir)
}

/// The first directory above `dir` (a canonical path) that is not owned by root or this
/// user, or that group or others may write to; `None` when all are safe. On Windows the
/// directory's own ACL is the rule ([`create_private_dir`]).
pub fn unsafe_ancestor(dir: &Path) -> Option<PathBuf> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let uid = nix::unistd::getuid().as_raw();
        dir.ancestors().skip(1).find_map(|parent| {
            let safe = fs::metadata(parent)
                .is_ok_and(|m| (m.uid() == 0 || m.uid() == uid) && m.mode() & 0o022 == 0);
            (!safe).then(|| parent.to_path_buf())
        })
    }
    #[cfg(windows)]
    {
        let _ = dir;
        None
    }
}

/// `path`, created if need be (0600, and never through a symbolic link on Unix) and locked:
/// the lock goes when the file is closed, however eic ends.
pub async fn lock_file(path: &Path) -> anyhow::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits());
    }
    let file = options.open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(tokio::task::spawn_blocking(move || file.lock().map(|()| file)).await??)
}

/// `$HOME` (on Windows, else `%USERPROFILE%`).
pub fn home() -> anyhow::Result<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|h| !h.is_empty());
    let home = var("HOME").or_else(|| if cfg!(windows) { var("USERPROFILE") } else { None });
    home.map(PathBuf::from).ok_or_else(|| error::config("HOME is not set: cannot find ~/.ssh"))
}

/// Writes `path` in one step, so that no reader ever sees half a file: staged beside it with
/// `mode`, synced, then renamed into place, or (`replace` false) linked only if `path` does not
/// exist yet. Returns whether it wrote.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32, replace: bool) -> anyhow::Result<bool> {
    let cannot = || format!("cannot write {}", path.display());
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut staged = staged_file(dir, mode).with_context(cannot)?;
    staged.write_all(bytes).with_context(cannot)?;
    staged.as_file().sync_all().with_context(cannot)?;
    let persisted = if replace { staged.persist(path) } else { staged.persist_noclobber(path) };
    match persisted {
        Ok(_) => Ok(true),
        Err(e) if !replace && e.error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e.error).with_context(cannot),
    }
}

/// A new directory in `parent` for this user alone: mode 0700, or on Windows an ACL with one
/// entry, for this user, that what is made in it inherits.
fn private_tempdir(parent: &Path) -> anyhow::Result<tempfile::TempDir> {
    let builder = &mut tempfile::Builder::new();
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700));
    let dir = builder.prefix("eic-").tempdir_in(parent)?;
    #[cfg(windows)]
    restrict(dir.path(), true)?;
    Ok(dir)
}

/// A file staged in `dir` by [`write_file`]: with `mode`, or on Windows, when `mode` gives
/// nothing to group and others, an ACL for this user alone.
fn staged_file(dir: &Path, mode: u32) -> anyhow::Result<tempfile::NamedTempFile> {
    let builder = &mut tempfile::Builder::new();
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(mode));
    let staged = builder.prefix(".eic-").tempfile_in(dir)?;
    #[cfg(windows)]
    if mode & 0o077 == 0 {
        restrict(staged.path(), false)?;
    }
    Ok(staged)
}

/// Creates `dir` for this user alone unless it exists (its parents as usual), as `~/.ssh`
/// should be: mode 0700 from the start, or on Windows an ACL for this user alone.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let builder = &mut fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(builder, 0o700);
    match builder.create(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot create {}", dir.display())),
        Ok(()) => {
            #[cfg(windows)]
            restrict(dir, true)?;
            Ok(())
        }
    }
}

/// Whether `path` is a directory (not a link to one) owned by this user, with no access for
/// anyone else. On Windows eic keeps to the user's profile and temp directories, whose ACLs are
/// private, and never relies on this.
#[cfg(unix)]
pub fn is_private_dir(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::symlink_metadata(path).is_ok_and(|m| {
        m.is_dir() && m.uid() == nix::unistd::getuid().as_raw() && m.mode() & 0o077 == 0
    })
}

#[cfg(windows)]
pub fn is_private_dir(_: &Path) -> bool {
    false
}

/// The permission bits of `path` (none on Windows, whose ACLs have no such thing).
pub fn mode(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    return fs::metadata(path)
        .ok()
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777);
    #[cfg(windows)]
    return fs::metadata(path).ok().map(|_| 0o600);
}

/// Whether the file at `path` is ours and readable by us only (Windows: Win32-OpenSSH checks
/// the ACL itself when ssh reads the key).
pub fn is_private_file(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let uid = nix::unistd::getuid().as_raw();
        fs::metadata(path).is_ok_and(|m| m.uid() == uid && m.mode() & 0o077 == 0)
    }
    #[cfg(windows)]
    path.is_file()
}

/// Gives `path` an ACL that grants the current user alone: no inherited entries, full control
/// for the user (inherited by what is made in it, for a directory). Win32-OpenSSH refuses a
/// private key that anyone else (even `OWNER RIGHTS`) may read: aws/aws-cli#9114.
#[cfg(windows)]
fn restrict(path: &Path, dir: bool) -> anyhow::Result<()> {
    let system32 = |exe: &str| {
        let root = std::env::var_os("SystemRoot").unwrap_or_else(|| "C:\\Windows".into());
        PathBuf::from(root).join("System32").join(exe)
    };
    let run = |exe: &str, args: &[OsString]| -> anyhow::Result<String> {
        let out = std::process::Command::new(system32(exe)).args(args).output();
        let out = out.with_context(|| format!("cannot run {exe}"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        anyhow::ensure!(out.status.success(), "{exe} failed: {}", text.trim());
        Ok(text)
    };
    // Asked once per process: a key, its directory and the URL file all need it.
    static ACCOUNT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let account = match ACCOUNT.get() {
        Some(account) => account.clone(),
        None => {
            let args = ["/user", "/fo", "csv", "/nh"].map(OsString::from);
            let whoami = run("whoami.exe", &args)?;
            let account =
                account_of_whoami(&whoami).context("cannot read this user's SID from whoami")?;
            ACCOUNT.get_or_init(|| account).clone()
        }
    };
    run("icacls.exe", &icacls_args(path, &account, dir))
        .with_context(|| format!("cannot make {} private", path.display()))?;
    Ok(())
}

/// This user for icacls, from `whoami /user /fo csv /nh`'s answer (`"host\user","S-1-5-..."`):
/// the SID, as `*S-1-5-...`. A `whoami` that gives the name alone (`host\user`: Wine's) gives
/// that name.
#[cfg(any(windows, test))]
pub fn account_of_whoami(answer: &str) -> Option<String> {
    let answer = answer.trim();
    let sid = answer.rsplit(',').next()?.trim_matches('"');
    let is_sid =
        sid.starts_with("S-1-") && sid[4..].bytes().all(|b| b.is_ascii_digit() || b == b'-');
    if is_sid {
        return Some(format!("*{sid}"));
    }
    let name = !answer.is_empty() && !answer.contains(['"', ',', '\n', ':', '*']);
    name.then(|| answer.to_string())
}

/// icacls' arguments that make `path` this account's alone: inherited entries removed, explicit
/// ones replaced by full control for the account, inherited by files and folders made in a
/// directory.
#[cfg(any(windows, test))]
pub fn icacls_args(path: &Path, account: &str, dir: bool) -> Vec<OsString> {
    let grant = if dir { format!("{account}:(OI)(CI)F") } else { format!("{account}:F") };
    let args = ["/inheritance:r", "/grant:r", &grant, "/q"];
    std::iter::once(path.as_os_str().to_owned()).chain(args.map(OsString::from)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_directory_under_one_others_may_write_to_is_not_safe() {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(unsafe_ancestor(Path::new("/usr/bin")), None);
        let top = tempfile::tempdir().unwrap();
        let open = top.path().canonicalize().unwrap().join("open");
        fs::create_dir_all(open.join("eic")).unwrap();
        for (mode, unsafe_dir) in [(0o777, Some(open.clone())), (0o775, Some(open.clone()))] {
            fs::set_permissions(&open, fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(unsafe_ancestor(&open.join("eic")), unsafe_dir, "{mode:o}");
        }
        fs::set_permissions(&open, fs::Permissions::from_mode(0o755)).unwrap();
        assert_ne!(unsafe_ancestor(&open.join("eic")), Some(open));
    }

    #[test]
    fn windows_acl_grants_the_user_alone() {
        let answer = "\"desktop-1\\alice\",\"S-1-5-21-1004336348-1177238915-682003330-1001\"\r\n";
        let account = account_of_whoami(answer).unwrap();
        assert_eq!(account, "*S-1-5-21-1004336348-1177238915-682003330-1001");
        assert_eq!(account_of_whoami("VM\\root\r\n").as_deref(), Some("VM\\root"));
        for bad in ["", "\"alice\",\"OWNER RIGHTS\"", "\"a\",\"S-1-5; rd /s\"", "x:(OI)F"] {
            assert_eq!(account_of_whoami(bad), None, "{bad}");
        }
        let args = |dir| icacls_args(Path::new(r"C:\Users\alice\Temp\eic-x"), &account, dir);
        let want = |grant: &str| {
            [r"C:\Users\alice\Temp\eic-x", "/inheritance:r", "/grant:r", grant, "/q"]
                .map(OsString::from)
                .to_vec()
        };
        assert_eq!(args(true), want(&format!("{account}:(OI)(CI)F")));
        assert_eq!(args(false), want(&format!("{account}:F")));
    }
}
