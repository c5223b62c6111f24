//! SSH keys: a one-time Ed25519 key made in memory and written 0600 in a private directory
//! (`private::scratch_dir`), eic's persistent key for ssh_config, or the user's own key file.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rand_core::OsRng;
use ssh_key::{Algorithm, LineEnding, PrivateKey, PublicKey};

use crate::error;
use crate::private::{self, create_private_dir, is_private_file, write_file};

/// A private key on disk for ssh's `-i`, and its public half for SendSSHPublicKey.
#[derive(Debug)]
pub struct Key {
    /// The public key in OpenSSH form (`ssh-ed25519 AAAA...`); `None` for a key of the user's
    /// that is used as it is, with nothing pushed.
    pub public: Option<String>,
    /// The private key file.
    pub path: PathBuf,
}

/// Which key `eic ssh` logs in with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A one-time key, made now and pushed.
    OneTime,
    /// The user's own key, already authorized on the instance: nothing is pushed.
    Own(PathBuf),
    /// The user's own key, whose public half is pushed.
    Pushed(PathBuf),
}

/// The key to log in with; a one-time key is written in `dir`.
pub fn load(source: &KeySource, dir: &Path) -> anyhow::Result<Key> {
    match source {
        KeySource::OneTime => generate(dir),
        KeySource::Own(path) => existing(path),
        // Its public half is pushed for anyone who can read the private one.
        KeySource::Pushed(path) if path.is_file() && !is_private_file(path) => {
            Err(error::usage(format!(
                "--private-key-file {}: a key to push must be yours and readable by you only: chmod 600 {}",
                path.display(),
                path.display()
            )))
        }
        KeySource::Pushed(path) => from_file(path),
    }
}

/// Makes a one-time Ed25519 key in `dir`. The private half is only ever in memory and in a
/// 0600 file there.
pub fn generate(dir: &Path) -> anyhow::Result<Key> {
    let private = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
        .context("cannot generate an Ed25519 key")?;
    let public = private.public_key().to_openssh()?;
    let path = dir.join("id_ed25519");
    let pem = private.to_openssh(LineEnding::LF)?;
    write_file(&path, pem.as_bytes(), 0o600, false)?;
    Ok(Key { public: Some(public), path })
}

/// The user's own private key, used as it is (the AWS CLI's `--private-key-file`): it must
/// already be authorized on the instance, so it is not parsed (any type or format ssh reads,
/// an EC2 key pair's PEM included) and nothing is pushed.
pub fn existing(path: &Path) -> anyhow::Result<Key> {
    let unreadable = |why: String| {
        error::usage(format!("--private-key-file {}: cannot read it: {why}", path.display()))
    };
    let file = fs::File::open(path).map_err(|e| unreadable(e.to_string()))?;
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Err(unreadable("not a file".into()));
    }
    Ok(Key { public: None, path: path.to_path_buf() })
}

/// The user's own private key: its public half comes from the key itself (OpenSSH format,
/// even when encrypted) or from `PATH.pub` next to it.
pub fn from_file(path: &Path) -> anyhow::Result<Key> {
    let text = fs::read_to_string(path).map_err(|e| {
        error::usage(format!("--private-key-file {}: cannot read it: {e}", path.display()))
    })?;
    let public = match PrivateKey::from_openssh(&text) {
        Ok(private) => private.public_key().to_openssh()?,
        Err(_) => {
            let pub_path = PathBuf::from(format!("{}.pub", path.display()));
            let line = fs::read_to_string(&pub_path).map_err(|_| {
                error::usage(format!(
                    "--private-key-file {}: not an OpenSSH private key, and there is no {} to take its public key from (convert it with `ssh-keygen -p -f KEY`, or write the .pub with `ssh-keygen -y -f KEY > KEY.pub`)",
                    path.display(),
                    pub_path.display()
                ))
            })?;
            PublicKey::from_openssh(line.trim())
                .map_err(|e| error::usage(format!("{}: {e}", pub_path.display())))?
                .to_openssh()?
        }
    };
    Ok(Key { public: Some(public), path: path.to_path_buf() })
}

/// eic's dedicated key for ssh_config use (`~/.ssh/eic_ed25519` unless `path` is given),
/// made on first use with mode 0600. Concurrent first uses agree on one key: it is written
/// under a temporary name and linked into place only if no other process got there first.
pub fn dedicated(path: Option<&Path>) -> anyhow::Result<Key> {
    let path = match path {
        Some(path) => path.to_path_buf(),
        None => default_dedicated_path()?,
    };
    if !path.exists() {
        create_dedicated(&path)?;
    }
    // What ssh demands of a private key, before its public half is pushed for anyone.
    if !is_private_file(&path) {
        return Err(error::usage(format!(
            "--key-file {}: the key must be yours and readable by you only: chmod 600 {}",
            path.display(),
            path.display()
        )));
    }
    from_file(&path)
}

/// `$HOME/.ssh/eic_ed25519`.
pub fn default_dedicated_path() -> anyhow::Result<PathBuf> {
    Ok(private::home()?.join(".ssh").join("eic_ed25519"))
}

fn create_dedicated(path: &Path) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    if !dir.exists() {
        create_private_dir(dir)?;
    }
    let private = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)?;
    let public = private.public_key().to_openssh()?;
    // Another process may make it first: then theirs is used.
    let pem = private.to_openssh(LineEnding::LF)?;
    if write_file(path, pem.as_bytes(), 0o600, false)? {
        let public = format!("{public} eic\n");
        write_file(Path::new(&format!("{}.pub", path.display())), public.as_bytes(), 0o644, true)?;
        crate::say::note(format_args!("created the key {}", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_time_key_is_private_and_removed_on_drop() {
        let scratch = private::scratch_dir().unwrap();
        let key = generate(scratch.path()).unwrap();
        assert!(key.public.as_ref().unwrap().starts_with("ssh-ed25519 AAAA"));
        let dir = scratch.path().to_path_buf();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
            assert_eq!(fs::metadata(&key.path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let reread = from_file(&key.path).unwrap();
        assert_eq!(reread.public, key.public);
        drop(scratch);
        assert!(!dir.exists());
    }

    #[cfg(unix)]
    #[test]
    fn a_key_to_push_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = generate(dir.path()).unwrap().path;
        assert!(load(&KeySource::Pushed(key.clone()), dir.path()).is_ok());
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load(&KeySource::Pushed(key.clone()), dir.path()).unwrap_err();
        assert_eq!(error::exit_code(&err), error::USAGE);
        assert!(err.to_string().contains("chmod 600"), "{err}");
        // Used as it is (nothing pushed), ssh itself decides.
        assert!(load(&KeySource::Own(key), dir.path()).is_ok());
    }

    #[test]
    fn unreadable_key_file_is_a_usage_error() {
        let dir = tempfile::tempdir().unwrap();
        for err in [
            from_file(Path::new("/nonexistent/key")).unwrap_err(),
            existing(Path::new("/nonexistent/key")).unwrap_err(),
            existing(dir.path()).unwrap_err(),
        ] {
            assert_eq!(error::exit_code(&err), error::USAGE);
            assert!(err.to_string().contains("--private-key-file"));
        }
    }

    #[test]
    fn an_existing_key_is_used_as_it_is() {
        // An EC2 key pair's PEM: not an OpenSSH key, and no .pub beside it.
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("my-key-pair.pem");
        fs::write(&pem, "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n")
            .unwrap();
        let key = existing(&pem).unwrap();
        assert_eq!((key.path.as_path(), key.public.as_deref()), (pem.as_path(), None));
        assert!(from_file(&pem).is_err(), "its public half cannot be pushed");
    }
}
