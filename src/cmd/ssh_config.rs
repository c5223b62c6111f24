//! `eic ssh-config`: the ~/.ssh/config block that makes ssh, scp, sftp, rsync, git and editors
//! reach instances through `eic proxy`, and its idempotent installation.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::error;
use crate::keys;
use crate::private;
use crate::private::write_file;
use crate::ssh_argv::{config_path, config_quote, proxy_command_line, quote_token};

pub fn run(install_it: bool, force: bool) -> anyhow::Result<i32> {
    let exe = std::env::current_exe().context("cannot find eic's own path")?;
    let exe = stable_exe(&exe, std::env::var_os("PATH"));
    let key = keys::dedicated(None)?;
    let block = block(&exe, &key.path);
    if !install_it {
        return super::print_out(block.as_bytes());
    }
    let ssh_dir =
        key.path.parent().ok_or_else(|| error::config("cannot find ~/.ssh"))?.to_path_buf();
    let ours = ssh_dir.join("eic_config");
    let config = ssh_dir.join("config");
    let overridden = overridden(&config, &include_line(&ours))?;
    if !overridden.is_empty() {
        let list = overridden.iter().map(|o| format!("\n  {o}")).collect::<String>();
        let what = format!(
            "your ssh config already sets these for the hosts eic's block is for, and the block, read first, would override them:{list}"
        );
        if !force {
            return Err(error::config(format!(
                "{what}\nleave those hosts to your config, or install anyway with --force"
            )));
        }
        crate::say::warn(format_args!("{what}"));
    }
    let done = install(&ssh_dir, &block)?;
    match (done.block_written, done.include_added) {
        (false, false) => crate::say::note(format_args!(
            "already installed: {} includes {}",
            config.display(),
            ours.display()
        )),
        (written, added) => {
            if written {
                crate::say::note(format_args!("wrote {}", ours.display()));
            }
            if added {
                crate::say::note(format_args!(
                    "added an Include line at the top of {}",
                    config.display()
                ));
            }
            if let Some(backup) = &done.backup {
                crate::say::note(format_args!(
                    "the previous {} is saved as {}",
                    config.display(),
                    backup.display()
                ));
            }
        }
    }
    Ok(0)
}

/// The block, for this binary and key (absolute paths: ssh expands `~` from the password
/// database, not from `$HOME`). The proxy is told the key too, so that the key it pushes is the
/// one ssh offers whatever `$HOME` is then. ssh expands `%` tokens in all three values.
pub fn block(exe: &Path, key: &Path) -> String {
    let words = [exe, Path::new("proxy"), Path::new("--key-file"), key, Path::new("--")];
    let proxy = proxy_command_line(&words.map(|w| w.display().to_string()));
    let (h, r) = (quote_token("%h"), quote_token("%r"));
    let body = format!(
        "    User ec2-user
    ProxyCommand {proxy} {h} %p {r}
    IdentityFile {}
    IdentitiesOnly yes
",
        config_path(&key.display().to_string())
    );
    format!(
        "\
# Written by `eic ssh-config`: ssh, scp, sftp, rsync, git and editors reach EC2 instances
# through EC2 Instance Connect Endpoints, with eic's key pushed for 60 s at each connection.
#   ssh i-0123456789abcdef0        an instance, by id
#   ssh web-1.eic                  the running instance whose Name tag is web-1
# known_hosts entries are kept under the name you type (no HostName is set), which is what
# HostKeyAlias=<host> would do; ssh_config's HostKeyAlias takes no %h token.
# Instance ids are i- and 8 or 17 characters without a dot: other hosts are left alone.
# %h and %r are single-quoted for the ProxyCommand's shell, and a host or user with a ' in
# it is left alone: OpenSSH before 9.6 passes such names through from the command line.
Match host \"i-????????,i-?????????????????,!*.*,!*'*\" user \"*,!*'*\"
{body}Match host \"*.eic,!*'*\" user \"*,!*'*\"
{body}"
    )
}

/// What `install` changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Installed {
    pub block_written: bool,
    pub include_added: bool,
    pub backup: Option<PathBuf>,
}

/// Writes `block` to `<ssh_dir>/eic_config` and puts one `Include` line for it at the top of
/// `<ssh_dir>/config`, keeping a backup; running it again changes nothing.
pub fn install(ssh_dir: &Path, block: &str) -> anyhow::Result<Installed> {
    let mut done = Installed::default();
    if !ssh_dir.exists() {
        private::create_private_dir(ssh_dir)?;
    }
    let ours = ssh_dir.join("eic_config");
    if fs::read_to_string(&ours).ok().as_deref() != Some(block) {
        write_file(&ours, block.as_bytes(), 0o600, true)?;
        done.block_written = true;
    }

    // A config that is a symlink (dotfile managers) is edited where it points, even when that
    // file does not exist yet.
    let mut config = ssh_dir.join("config");
    for _ in 0..8 {
        match fs::read_link(&config) {
            Ok(target) => config = config.parent().unwrap_or(ssh_dir).join(target),
            Err(_) => break,
        }
    }
    let include = include_line(&ours);
    let existing = match fs::read_to_string(&config) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", config.display())),
    };
    let present = existing.as_deref().is_some_and(|text| text.lines().any(|l| l.trim() == include));
    if !present {
        let mode = private::mode(&config).unwrap_or(0o600);
        if let Some(text) = &existing {
            done.backup = Some(backup(ssh_dir, text)?);
        }
        let new = format!(
            "# Added by `eic ssh-config --install` (an Include only applies at the top).\n{include}\n\n{}",
            existing.unwrap_or_default()
        );
        write_file(&config, new.as_bytes(), mode, true)?;
        done.include_added = true;
    }
    Ok(done)
}

/// Saves `text` as `config.eic-backup` (0600), or the first free `config.eic-backup.N`: an
/// earlier backup is never overwritten.
fn backup(ssh_dir: &Path, text: &str) -> anyhow::Result<PathBuf> {
    for n in 0..1000 {
        let name =
            if n == 0 { "config.eic-backup".into() } else { format!("config.eic-backup.{n}") };
        let path = ssh_dir.join(name);
        if write_file(&path, text.as_bytes(), 0o600, false)? {
            return Ok(path);
        }
    }
    anyhow::bail!("{} holds 1000 config.eic-backup files: remove some", ssh_dir.display())
}

/// The line that includes eic's block.
fn include_line(ours: &Path) -> String {
    format!("Include {}", config_quote(&ours.display().to_string()))
}

/// Names for which `ssh -G` shows what the user's config sets for eic's hosts.
const PROBES: [&str; 2] = ["i-0123456789abcdef0", "web.eic"];

/// Where the user's config (without eic's Include) sets `User`, `ProxyCommand` or `ProxyJump`
/// for eic's hosts, as `FILE line N: LINE (for HOST)`. ssh keeps the first value it reads, so
/// eic's Include at the top would override those.
fn overridden(config: &Path, include: &str) -> anyhow::Result<Vec<String>> {
    let Ok(text) = fs::read_to_string(config) else { return Ok(Vec::new()) };
    let Some(ssh) = crate::ssh_argv::find_ssh() else {
        crate::say::warn(format_args!(
            "ssh not found: cannot check what {} sets",
            config.display()
        ));
        return Ok(Vec::new());
    };
    // Evaluated as if eic's Include were not there (blanked: the line numbers stay).
    let scratch = tempfile::tempdir()?;
    let copy = scratch.path().join("config");
    let lines: Vec<&str> = text.lines().map(|l| if l.trim() == include { "" } else { l }).collect();
    fs::write(&copy, lines.join("\n"))?;
    let settings = |file: &Path, probe: &str| -> anyhow::Result<(String, String)> {
        let mut ssh_g = crate::ssh_argv::command(&ssh);
        let out = ssh_g.args(["-G", "-vvv", "-F"]).arg(file).arg(probe).output();
        let out = out.with_context(|| format!("cannot run {}", ssh.display()))?;
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            anyhow::bail!("{}", log.lines().last().unwrap_or("ssh -G failed"));
        }
        Ok((String::from_utf8_lossy(&out.stdout).into(), log))
    };
    let mut found = Vec::new();
    for probe in PROBES {
        let (default, _) = settings(Path::new("none"), probe)?;
        let (mine, log) = match settings(&copy, probe) {
            Ok(read) => read,
            Err(e) => {
                crate::say::warn(format_args!("cannot check what {} sets: {e}", config.display()));
                return Ok(Vec::new());
            }
        };
        for key in ["user", "proxycommand", "proxyjump"] {
            let value = |text: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ').map(str::to_string))
            };
            if value(&mine) != value(&default) {
                let at = where_set(&log, key, &copy).map(|(file, line, text)| {
                    let file = if file == copy { config.to_path_buf() } else { file };
                    format!("{} line {line}: {text}", file.display())
                });
                let at = at.unwrap_or_else(|| format!("{} sets {key}", config.display()));
                found.push(format!("{at} (for {probe})"));
            }
        }
    }
    Ok(found)
}

/// The first line that sets `key` in the blocks that `ssh -G -vvv` says applied (`FILE line N:
/// Applying options for ...`, `FILE line N: matched '...'`): its file, number and text.
fn where_set(log: &str, key: &str, copy: &Path) -> Option<(PathBuf, usize, String)> {
    let blocks = log.lines().filter_map(|l| {
        let (head, tail) = l.split_once(" line ")?;
        let (number, what) = tail.split_once(": ")?;
        let applied = what.starts_with("Applying options for") || what.starts_with("matched '");
        let file = head.split_once(": ").map_or(head, |(_, f)| f);
        applied.then(|| Some((PathBuf::from(file), number.parse::<usize>().ok()?)))?
    });
    blocks.into_iter().find_map(|(file, start)| {
        let text = fs::read_to_string(if file == copy { copy } else { &file }).ok()?;
        let word = |l: &str| l.trim().split([' ', '\t', '=']).next().unwrap_or("").to_lowercase();
        let body = text.lines().enumerate().skip(start);
        let body = body.take_while(|(_, l)| !matches!(word(l).as_str(), "host" | "match"));
        let (n, line) = body.into_iter().find(|(_, l)| word(l) == key)?;
        Some((file.clone(), n + 1, line.trim().to_string()))
    })
}

/// eic's path for the block: the `eic` on `path` (`PATH`) when that is this binary, so that a
/// link such as a package manager's keeps working when the version it points to is replaced;
/// else the binary itself.
fn stable_exe(exe: &Path, path: Option<std::ffi::OsString>) -> PathBuf {
    let Ok(real) = fs::canonicalize(exe) else {
        return exe.to_path_buf();
    };
    let on_path = exe.file_name().zip(path).and_then(|(name, path)| {
        std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| {
            candidate.is_absolute() && fs::canonicalize(candidate).is_ok_and(|c| c == real)
        })
    });
    on_path.unwrap_or_else(|| exe.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(unix)]
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn install_keeps_the_users_entries_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let ssh = dir.path().join(".ssh");
        fs::create_dir(&ssh).unwrap();
        let users = "Host work\n    HostName work.example.com\n    User me\n\nHost *\n    ServerAliveInterval 30\n";
        fs::write(ssh.join("config"), users).unwrap();
        let block = block(Path::new("/usr/local/bin/eic"), &ssh.join("eic_ed25519"));

        let first = install(&ssh, &block).unwrap();
        assert!(first.block_written && first.include_added);
        let config = fs::read_to_string(ssh.join("config")).unwrap();
        assert!(config.ends_with(users), "the user's entries are kept as they were");
        let first_line = config.lines().find(|l| !l.starts_with('#')).unwrap();
        assert_eq!(first_line, format!("Include {}", ssh.join("eic_config").display()));
        assert_eq!(fs::read_to_string(ssh.join("config.eic-backup")).unwrap(), users);
        assert_eq!(fs::read_to_string(ssh.join("eic_config")).unwrap(), block);

        let second = install(&ssh, &block).unwrap();
        assert_eq!(second, Installed::default());
        assert_eq!(fs::read_to_string(ssh.join("config")).unwrap(), config);
    }

    #[test]
    fn a_backup_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let ssh = dir.path().join(".ssh");
        fs::create_dir(&ssh).unwrap();
        let include = format!("Include {}\n", ssh.join("eic_config").display());
        for (n, users) in ["Host first\n", "Host second\n"].iter().enumerate() {
            fs::write(ssh.join("config"), users).unwrap();
            let done = install(&ssh, "Host i-*\n").unwrap();
            let backup = done.backup.unwrap();
            assert_eq!(fs::read_to_string(&backup).unwrap(), *users, "backup {n}");
            #[cfg(unix)]
            assert_eq!(fs::metadata(&backup).unwrap().permissions().mode() & 0o777, 0o600);
            assert!(fs::read_to_string(ssh.join("config")).unwrap().contains(&include));
        }
        assert_eq!(fs::read_to_string(ssh.join("config.eic-backup")).unwrap(), "Host first\n");
        assert_eq!(fs::read_to_string(ssh.join("config.eic-backup.1")).unwrap(), "Host second\n");
    }

    #[test]
    fn install_creates_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let ssh = dir.path().join(".ssh");
        let done = install(&ssh, "Host i-*\n").unwrap();
        assert!(done.include_added && done.backup.is_none());
        #[cfg(unix)]
        {
            assert_eq!(fs::metadata(&ssh).unwrap().permissions().mode() & 0o777, 0o700);
            let config = fs::metadata(ssh.join("config")).unwrap();
            assert_eq!(config.permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    #[cfg(windows)]
    fn block_quotes_paths_for_win32_openssh() {
        let exe = Path::new(r"C:\Program Files\eic\eic.exe");
        let b = block(exe, Path::new(r"C:\Users\a b\.ssh\eic_ed25519"));
        // No shell: the path in double quotes, the rest by the MSVC rules, `--` before the host.
        assert!(b.contains(
            r#"ProxyCommand "C:\Program Files\eic\eic.exe" proxy --key-file "C:\Users\a b\.ssh\eic_ed25519" -- "%h" %p "%r""#
        ), "{b}");
    }

    #[test]
    #[cfg(unix)]
    fn block_quotes_paths() {
        let b = block(Path::new("/opt/my tools/eic"), Path::new("/home/a b/.ssh/eic_ed25519"));
        // `--`: a host is never taken for an option.
        assert!(b.contains(
            "ProxyCommand '/opt/my tools/eic' proxy --key-file '/home/a b/.ssh/eic_ed25519' -- '%h' %p '%r'"
        ));
        assert!(b.contains("IdentityFile \"/home/a b/.ssh/eic_ed25519\""));
        assert!(b.contains("IdentitiesOnly yes"));
        let b = block(Path::new("/opt/100%/eic"), Path::new("/home/100%/eic_ed25519"));
        assert!(b.contains("ProxyCommand /opt/100%%/eic proxy --key-file /home/100%%/eic_ed25519"));
        assert!(b.contains("IdentityFile /home/100%%/eic_ed25519\n"));
    }

    #[cfg(unix)]
    #[test]
    fn the_block_takes_instance_ids_and_names_only() {
        // As OpenSSH reads it: `ssh -G` prints the configuration it would use for a host.
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config");
        fs::write(&config, block(Path::new("/usr/bin/eic"), Path::new("/k"))).unwrap();
        let resolved = |destination: &str| {
            let out = std::process::Command::new("ssh")
                .arg("-G")
                .arg("-F")
                .arg(&config)
                .arg(destination)
                .output()
                .expect("ssh (openssh-client) runs");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let text = String::from_utf8(out.stdout).unwrap();
            let value =
                |key: &str| text.lines().find_map(|l| l.strip_prefix(key)).map(str::to_string);
            (value("user "), value("proxycommand "))
        };
        for host in ["i-0123456789abcdef0", "i-01234567", "web-1.eic"] {
            let (user, proxy) = resolved(host);
            assert_eq!(user.as_deref(), Some("ec2-user"), "{host}");
            let proxy = proxy.unwrap_or_default();
            assert!(proxy.starts_with("/usr/bin/eic proxy --key-file /k "), "{host}: {proxy}");
        }
        assert_eq!(resolved("ubuntu@web-1.eic").0.as_deref(), Some("ubuntu"));
        for host in ["i-cloud.fr", "i-love.example.com", "i-0123456789", "example.com"] {
            assert_eq!(resolved(host).1, None, "{host}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn install_writes_a_dangling_symlinks_target() {
        let dir = tempfile::tempdir().unwrap();
        let ssh = dir.path().join(".ssh");
        fs::create_dir(&ssh).unwrap();
        fs::create_dir(dir.path().join("dotfiles")).unwrap();
        std::os::unix::fs::symlink("../dotfiles/ssh_config", ssh.join("config")).unwrap();
        install(&ssh, "Host i-*\n").unwrap();
        assert!(fs::symlink_metadata(ssh.join("config")).unwrap().is_symlink());
        let text = fs::read_to_string(dir.path().join("dotfiles/ssh_config")).unwrap();
        assert!(text.contains("Include "), "{text}");
    }

    #[cfg(unix)]
    #[test]
    fn install_edits_a_symlinked_config_where_it_points() {
        let dir = tempfile::tempdir().unwrap();
        let ssh = dir.path().join(".ssh");
        fs::create_dir(&ssh).unwrap();
        let dotfile = dir.path().join("dotfiles-ssh-config");
        fs::write(&dotfile, "Host work\n").unwrap();
        std::os::unix::fs::symlink(&dotfile, ssh.join("config")).unwrap();
        install(&ssh, "Host i-*\n").unwrap();
        assert!(fs::symlink_metadata(ssh.join("config")).unwrap().is_symlink());
        let text = fs::read_to_string(&dotfile).unwrap();
        assert!(text.contains("Include ") && text.ends_with("Host work\n"), "{text}");
    }

    #[cfg(unix)]
    #[test]
    fn the_block_names_eic_as_found_on_path() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("Cellar/eic/0.1.0/bin/eic");
        fs::create_dir_all(real.parent().unwrap()).unwrap();
        fs::write(&real, "").unwrap();
        let bin = dir.path().join("bin");
        fs::create_dir(&bin).unwrap();
        std::os::unix::fs::symlink(&real, bin.join("eic")).unwrap();
        let elsewhere = std::env::join_paths([dir.path()]).ok();
        assert_eq!(stable_exe(&real, elsewhere), real, "not on PATH: the binary itself");
        let path = std::env::join_paths([dir.path(), &bin]).ok();
        assert_eq!(stable_exe(&real, path), bin.join("eic"));
    }
}
