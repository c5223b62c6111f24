//! One key push per identity, region, instance, user and key while the pushed key is valid,
//! shared by every ssh
//! that starts at the same moment (scp -r, rsync, Ansible forks) through a locked cache file.
//! The cache only saves pushes: any problem with it gives one warning and a push without it,
//! never a failed login.

use std::future::Future;
use std::io::{Read, Seek, SeekFrom, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::private;

/// Pushed keys are valid for 60 s; a push younger than this is reused, leaving time to log in.
pub const FRESH_FOR: Duration = Duration::from_secs(40);

/// Runs `push` unless the same key was pushed by the same identity (`who`: the configuration's
/// identity and region) for the same instance and user less than [`FRESH_FOR`] ago. Concurrent
/// callers wait on one lock, so only the first one pushes. Returns whether this call pushed.
pub async fn push_once<F, Fut>(
    who: &str,
    instance: &str,
    user: &str,
    public_key: &str,
    push: F,
) -> anyhow::Result<bool>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let digest = Sha256::digest(format!("{who}\0{instance}\0{user}\0{public_key}"));
    let name = data_encoding::HEXLOWER.encode(&digest[..16]);
    let path = private::private_dir().map(|dir| dir.join(name));
    let locked = async { private::lock_file(&path?).await };
    let mut file = match locked.await {
        Ok(file) => file,
        Err(e) => {
            crate::say::warn(format_args!("pushing the key without the push cache: {e:#}"));
            push().await?;
            return Ok(true);
        }
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    if text.trim().parse::<u64>().is_ok_and(|pushed_at| fresh(pushed_at, now)) {
        tracing::debug!("the key was pushed less than {} s ago; reusing it", FRESH_FOR.as_secs());
        return Ok(false);
    }
    push().await?;
    let recorded = file.set_len(0).and_then(|()| file.seek(SeekFrom::Start(0)));
    if let Err(e) = recorded.and_then(|_| writeln!(file, "{now}")) {
        crate::say::warn(format_args!("cannot record the push in the push cache: {e}"));
    }
    Ok(true)
}

/// A push at `pushed_at` is still fresh at `now`. A clock stepped backwards makes `now` earlier
/// than the push: that push is not trusted.
fn fresh(pushed_at: u64, now: u64) -> bool {
    pushed_at <= now && now < pushed_at.saturating_add(FRESH_FOR.as_secs())
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
                push_once("a", "i-0cache", "ec2-user", &key, || async {
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
        // Another user is another push, and so is another identity or region.
        for (who, user) in [("a", "ubuntu"), ("b", "ec2-user")] {
            let again = push_once(who, "i-0cache", user, &key, || async { Ok(()) }).await.unwrap();
            assert!(again, "{who} {user}");
        }
    }

    #[test]
    fn only_a_push_in_the_last_40_seconds_is_fresh() {
        for (pushed_at, now, want) in [
            (1000, 1000, true),
            (1000, 1039, true),
            (1000, 1040, false),
            (1000, 999, false),
            (1000, 0, false),
            (u64::MAX - 10, u64::MAX - 5, true),
            (u64::MAX, u64::MAX, false),
            (0, u64::MAX, false),
        ] {
            assert_eq!(fresh(pushed_at, now), want, "pushed at {pushed_at}, now {now}");
        }
    }

    #[tokio::test]
    async fn a_failed_push_is_not_cached() {
        let key = format!("ssh-ed25519 FAIL{}", std::process::id());
        let err = push_once("a", "i-0fail", "u", &key, || async { anyhow::bail!("denied") }).await;
        assert!(err.is_err());
        assert!(push_once("a", "i-0fail", "u", &key, || async { Ok(()) }).await.unwrap());
    }
}
