//! One key push per instance, user and key while the pushed key is valid, shared by every ssh
//! that starts at the same moment (scp -r, rsync, Ansible forks) through a locked cache file.

use std::fs::{self, OpenOptions, Permissions};
use std::future::Future;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::keys;

/// Pushed keys are valid for 60 s; a push younger than this is reused, leaving time to log in.
pub const FRESH_FOR: Duration = Duration::from_secs(40);

/// This user's cache directory: 0700, owned by us, under `$XDG_RUNTIME_DIR` or the temp dir.
fn cache_dir() -> anyhow::Result<PathBuf> {
    let uid = nix::unistd::getuid().as_raw();
    let dir = keys::runtime_dir().join(format!("eic-cache-{uid}"));
    match fs::create_dir(&dir) {
        Ok(()) => fs::set_permissions(&dir, Permissions::from_mode(0o700))?,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", dir.display())),
    }
    let meta = fs::symlink_metadata(&dir)?;
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o077 != 0 {
        anyhow::bail!(
            "{} is not a private directory of this user: remove it and retry",
            dir.display()
        );
    }
    Ok(dir)
}

/// Runs `push` unless the same key was pushed for the same instance and user less than
/// [`FRESH_FOR`] ago. Concurrent callers wait on one lock, so only the first one pushes.
/// Returns whether this call pushed.
pub async fn push_once<F, Fut>(
    instance: &str,
    user: &str,
    public_key: &str,
    push: F,
) -> anyhow::Result<bool>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let digest = Sha256::digest(format!("{instance}\0{user}\0{public_key}"));
    let path = cache_dir()?.join(hex_prefix(&digest));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot open the push cache {}", path.display()))?;
    // The lock is released when `file` is dropped (or the process ends), whatever happens.
    let mut file = tokio::task::spawn_blocking(move || file.lock().map(|()| file)).await??;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    if let Ok(pushed_at) = text.trim().parse::<u64>() {
        if now.saturating_sub(pushed_at) < FRESH_FOR.as_secs() {
            tracing::debug!("key pushed {} s ago; reusing it", now - pushed_at);
            return Ok(false);
        }
    }
    push().await?;
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    writeln!(file, "{now}")?;
    Ok(true)
}

fn hex_prefix(digest: &[u8]) -> String {
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_push_once() {
        let key = format!("ssh-ed25519 TEST{}", std::process::id());
        let pushes = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..10 {
            let (key, pushes) = (key.clone(), pushes.clone());
            tasks.spawn(async move {
                push_once("i-0cache", "ec2-user", &key, || async {
                    pushes.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })
                .await
                .unwrap()
            });
        }
        let pushed: Vec<bool> = tasks.join_all().await;
        assert_eq!(pushes.load(Ordering::SeqCst), 1);
        assert_eq!(pushed.iter().filter(|p| **p).count(), 1);
        // Another user is another push.
        let again = push_once("i-0cache", "ubuntu", &key, || async { Ok(()) }).await.unwrap();
        assert!(again);
    }

    #[tokio::test]
    async fn a_failed_push_is_not_cached() {
        let key = format!("ssh-ed25519 FAIL{}", std::process::id());
        let err = push_once("i-0fail", "u", &key, || async { anyhow::bail!("denied") }).await;
        assert!(err.is_err());
        assert!(push_once("i-0fail", "u", &key, || async { Ok(()) }).await.unwrap());
    }
}
