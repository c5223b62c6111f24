//! The EC2 serial console's SSH server, as the service behaves: the user is `INSTANCE.portN`,
//! the key must have been pushed with SendSerialConsoleSSHPublicKey for that instance and port
//! and still be valid, and an instance has one session at a time (while it is open, another
//! push is refused with `SerialConsoleSessionLimitExceededException`). The "console" prints a
//! login prompt and echoes what it gets, as a serial line with echo on does.

use crate::Shared;
use russh::keys::{Algorithm, EcdsaCurve, HashAlg, PrivateKey, PublicKey};
use russh::server::{Auth, Msg, Session};
use russh::{Channel, ChannelId};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;

/// The server's settings and its host keys, made fresh for each stand-in: Ed25519, which
/// OpenSSH prefers, then ECDSA P-256 (a client pinned to it must not get the other).
pub(crate) fn config() -> anyhow::Result<Arc<russh::server::Config>> {
    let ecdsa = Algorithm::Ecdsa { curve: EcdsaCurve::NistP256 };
    let keys = [Algorithm::Ed25519, ecdsa].map(|a| PrivateKey::random(&mut rand::rng(), a));
    let keys = keys.into_iter().collect::<Result<Vec<_>, _>>()?;
    Ok(Arc::new(russh::server::Config {
        keys,
        // A refused key is answered at once: the tests wait for nothing.
        auth_rejection_time: Duration::ZERO,
        auth_rejection_time_initial: Some(Duration::ZERO),
        inactivity_timeout: Some(Duration::from_secs(300)),
        ..Default::default()
    }))
}

/// Each host key's `SHA256:...` fingerprint, as `ssh-keygen -l` prints it, and its line
/// (`ssh-ed25519 AAAA...`), in the server's order.
pub(crate) fn host_keys(config: &russh::server::Config) -> anyhow::Result<Vec<(String, String)>> {
    let line = |key: &PrivateKey| {
        let public = key.public_key();
        Ok((public.fingerprint(HashAlg::Sha256).to_string(), public.to_openssh()?))
    };
    config.keys.iter().map(line).collect()
}

pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    config: Arc<russh::server::Config>,
) {
    let mut sessions = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                let (shared, config) = (shared.clone(), config.clone());
                sessions.spawn(async move {
                    let console = Console { shared: shared.clone(), instance: None };
                    if let Ok(running) = russh::server::run_stream(config, tcp, console).await {
                        let _ = running.await;
                    }
                });
            }
            Some(_) = sessions.join_next() => {}
        }
    }
}

/// One connection. Its session is counted from login until the connection ends.
struct Console {
    shared: Arc<Shared>,
    /// The instance logged in to, once authenticated.
    instance: Option<String>,
}

impl Drop for Console {
    fn drop(&mut self) {
        if let Some(id) = self.instance.take() {
            self.shared.lock().serial_sessions.remove(&id);
        }
    }
}

impl Console {
    /// The instance `user` names, if `key` was pushed for it and its port and is still valid.
    fn pushed_for(&self, user: &str, key: &PublicKey) -> Option<String> {
        let (id, digits) = user.split_once(".port")?;
        // As the service spells it: `port0`, not `port00` or `port+0`.
        let port: u32 = digits.parse().ok().filter(|p: &u32| p.to_string() == digits)?;
        let offered = key.to_openssh().ok()?;
        let key_part = |line: &str| line.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        let world = self.shared.lock();
        let now = SystemTime::now();
        world
            .serial_keys
            .iter()
            .any(|k| {
                k.instance_id == id
                    && k.serial_port == port
                    && k.expires > now
                    && key_part(&k.key) == key_part(&offered)
            })
            .then(|| id.to_string())
    }
}

impl russh::server::Handler for Console {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(match self.pushed_for(user, offer.public_key) {
            Some(_) => Auth::Accept,
            None => Auth::reject(),
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let Some(id) = self.pushed_for(user, key.public_key) else {
            return Ok(Auth::reject());
        };
        // One session per instance: a second login while one is open is refused.
        if !self.shared.lock().serial_sessions.insert(id.clone()) {
            return Ok(Auth::reject());
        }
        self.instance = Some(id);
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _cols: u32,
        _rows: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        let id = self.instance.clone().unwrap_or_default();
        session.data(channel, format!("\r\n{id} serial console\r\nlogin: ").into_bytes())?;
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.data(channel, data.to_vec())?;
        Ok(())
    }

    /// The client's end of input (ssh's stdin closed): the console says goodbye and closes.
    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.exit_status_request(channel, 0)?;
        session.eof(channel)?;
        session.close(channel)?;
        Ok(())
    }
}
