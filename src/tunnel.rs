//! The EICE WebSocket tunnel: TLS (directly or through an HTTP proxy), the presigned upgrade,
//! its reader and writer halves, the close codes, and the [`Opener`] that makes one tunnel per
//! connection.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::BufReader;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::{HeaderValue, USER_AGENT};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::aws::{CaBundle, Signing};
use crate::presign;
use crate::target::{DnsName, TunnelTarget};
use crate::{error, http_proxy};

/// How big one relayed chunk (and so one binary frame) may be.
pub const CHUNK: usize = 64 * 1024;

/// The `User-Agent` of the WebSocket upgrade.
pub const USER_AGENT_VALUE: &str = concat!("eic/", env!("CARGO_PKG_VERSION"));

/// The server ended the tunnel with a close code other than 1000.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    pub code: u16,
    pub reason: String,
}

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the endpoint closed the tunnel with code {}", self.code)?;
        if !self.reason.is_empty() {
            write!(f, ": {}", error::printable(&self.reason))?;
        }
        let reason = self.reason.to_ascii_lowercase();
        if reason.contains("connect to target") || reason.contains("unable to connect") {
            write!(
                f,
                " (check that the instance's security group allows the port from the endpoint's security group, and that the instance is running)"
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for Closed {}

type Ws = WebSocketStream<MaybeTlsStream<BufReader<TcpStream>>>;

/// The receiving half of a tunnel: the payloads of the server's binary frames.
pub struct TunnelReader {
    ws: SplitStream<Ws>,
    eof: bool,
}

/// The sending half of a tunnel: each chunk becomes one binary frame.
pub struct TunnelWriter {
    ws: SplitSink<Ws, Message>,
    close_sent: bool,
}

/// An open tunnel's two directions, to drive concurrently.
pub type Tunnel = (TunnelReader, TunnelWriter);

/// Opens the tunnel at the presigned `url`, on `dns_name`, within `within` (what is left of
/// `--connect-timeout`, which the error names).
async fn connect(
    url: &str,
    dns_name: &DnsName,
    tls: Arc<rustls::ClientConfig>,
    (within, timeout): (Duration, Duration),
) -> anyhow::Result<Tunnel> {
    let (host, port) = dns_name.host_port();
    let open = async {
        let tcp = http_proxy::connect(host, port).await?;
        tcp.set_nodelay(true)?;
        // rustls asks for one TLS record per read: take what has arrived, up to 64 KiB, in
        // one system call.
        let tcp = BufReader::with_capacity(CHUNK, tcp);
        // A TLS record carries at most 16 KiB: reading more at once only zero-fills more
        // of the read buffer (tungstenite does so before every read).
        let config = WebSocketConfig::default()
            .read_buffer_size(16 << 10)
            .max_message_size(Some(16 << 20))
            .max_frame_size(Some(16 << 20));
        // CloudTrail records the upgrade's User-Agent, as it does the AWS CLI's.
        let mut request = url.into_client_request()?;
        request.headers_mut().insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        let result = tokio_tungstenite::client_async_tls_with_config(
            request,
            tcp,
            Some(config),
            Some(tokio_tungstenite::Connector::Rustls(tls)),
        )
        .await;
        match result {
            Ok((ws, _response)) => {
                let (sink, stream) = ws.split();
                let reader = TunnelReader { ws: stream, eof: false };
                Ok((reader, TunnelWriter { ws: sink, close_sent: false }))
            }
            Err(tungstenite::Error::Http(response)) => Err(upgrade_refused(&response)),
            // tungstenite's messages already include their source: show the text once.
            Err(e) => Err(anyhow::anyhow!("WebSocket handshake with {host}:{port} failed: {e}")),
        }
    };
    tokio::time::timeout(within, open).await.map_err(|_| {
            anyhow::anyhow!(
                "no answer from the endpoint {host}:{port} within {} s (change it with --connect-timeout)",
                timeout.as_secs()
            )
        })?
}

/// The service's answer to a refused upgrade: status, `{"ErrorCode","Message"}`, request id.
fn upgrade_refused(response: &tungstenite::http::Response<Option<Vec<u8>>>) -> anyhow::Error {
    #[derive(serde::Deserialize, Default)]
    #[serde(rename_all = "PascalCase")]
    struct Body {
        error_code: Option<String>,
        message: Option<String>,
    }
    let status = response.status();
    let raw = response.body().as_deref().unwrap_or_default();
    let body: Body = serde_json::from_slice(raw).unwrap_or_default();
    let request_id =
        response.headers().get("x-amzn-RequestId").and_then(|v| v.to_str().ok()).unwrap_or("none");
    let mut msg = format!("the endpoint refused the tunnel: HTTP {}", status.as_u16());
    if let Some(code) = body.error_code {
        msg.push_str(&format!(" {}", error::printable(&code)));
    }
    let message = body.message.unwrap_or_else(|| String::from_utf8_lossy(raw).trim().to_string());
    if !message.is_empty() {
        msg.push_str(&format!(": {}", error::printable(&message)));
    }
    msg.push_str(&format!(" (request id {})", error::printable(request_id)));
    let hint = match status.as_u16() {
        401 | 403 => " - check the system clock, the credentials, and that your IAM policy allows ec2-instance-connect:OpenTunnel on the endpoint",
        429 => " - the endpoint allows 20 concurrent tunnels; close some and retry",
        400 => " - the endpoint only allows ports 22 and 3389, to addresses in its VPC",
        _ => "",
    };
    msg.push_str(hint);
    if status == 429 {
        return anyhow::Error::new(error::Busy(msg));
    }
    error::aws(msg)
}

impl TunnelReader {
    /// The next payload from the server, as it arrived; `None` once it has ended the tunnel
    /// with 1000 (or without a close frame). Any other close code is a [`Closed`] error.
    pub async fn next_chunk(&mut self) -> anyhow::Result<Option<Bytes>> {
        while !self.eof {
            let message = match self.ws.next().await {
                None | Some(Err(tungstenite::Error::ConnectionClosed)) => break,
                Some(Ok(message)) => message,
                Some(Err(e)) => return Err(failed(e)),
            };
            match message {
                Message::Binary(data) if data.is_empty() => {}
                Message::Binary(data) => return Ok(Some(data)),
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                Message::Text(_) => {
                    anyhow::bail!("tunnel protocol error: the endpoint sent a text frame")
                }
                Message::Close(frame) => {
                    self.eof = true;
                    if let Some(frame) = frame.filter(|f| f.code != CloseCode::Normal) {
                        let (code, reason) = (frame.code.into(), frame.reason.to_string());
                        return Err(Closed { code, reason }.into());
                    }
                }
            }
        }
        self.eof = true;
        Ok(None)
    }
}

impl TunnelWriter {
    /// Sends `chunk` as one binary frame, without copying it, and flushes.
    pub async fn send(&mut self, chunk: Bytes) -> anyhow::Result<()> {
        self.ws.send(Message::Binary(chunk)).await.map_err(failed)
    }

    /// Ends our side with a close frame (1000); the server's remaining output can still be read.
    pub async fn close(&mut self) -> anyhow::Result<()> {
        let sent = if self.close_sent {
            self.ws.flush().await
        } else {
            self.close_sent = true;
            let frame = CloseFrame { code: CloseCode::Normal, reason: Default::default() };
            self.ws.send(Message::Close(Some(frame))).await
        };
        match sent {
            // Closing an already closed WebSocket is not an error.
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => Ok(()),
            other => other.map_err(failed),
        }
    }

    /// Sends what is queued (the reply to the server's close frame, RFC 6455 5.5.1) if the
    /// socket takes it now, without waiting.
    pub fn flush_now(&mut self) {
        use futures_util::FutureExt;
        let _ = self.ws.flush().now_or_never();
    }
}

/// A failure of the tunnel's connection. tungstenite's messages already include their source:
/// the text is shown once.
fn failed(e: impl fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("the tunnel failed: {e}")
}

/// The tunnel's TLS primitives: aws-lc's, but ring's cipher suites.
///
/// Every tunnelled byte is sealed or opened with the negotiated AEAD (AES-GCM, in practice). ring
/// 0.17.14 has AES-GCM code for CPUs with VAES and AVX2 that aws-lc 0.47 lacks (aws-lc's VAES code
/// needs AVX-512): on AMD Zen 3 it seals and opens 16 KiB records about twice as fast
/// (BENCHMARKS.md, change 9). A suite also brings its hash, so the handshake's transcript hash
/// and key schedule (HKDF; the PRF in TLS 1.2) are ring's too. The key exchange (X25519MLKEM768
/// first, post-quantum), certificate checks and randomness stay aws-lc's, and the suites offered
/// are the same, in the same order: the ClientHello does not change.
fn tunnel_crypto() -> rustls::crypto::CryptoProvider {
    rustls::crypto::CryptoProvider {
        cipher_suites: rustls::crypto::ring::DEFAULT_CIPHER_SUITES.to_vec(),
        ..rustls::crypto::aws_lc_rs::default_provider()
    }
}

/// The rustls client configuration: the CA bundle when one is configured, else the system's.
pub fn tls_config(ca_bundle: Option<&CaBundle>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    match ca_bundle {
        Some(bundle) => {
            let bad = || format!("bad certificate in {}", bundle.path.display());
            for cert in CertificateDer::pem_slice_iter(&bundle.pem) {
                roots.add(cert.with_context(bad)?).with_context(bad)?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        }
    }
    if roots.is_empty() {
        return Err(error::config(
            "no trusted CA certificates found: set AWS_CA_BUNDLE or SSL_CERT_FILE to a PEM bundle",
        ));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(tunnel_crypto()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// How an [`Opener`] gets each tunnel's URL.
pub enum Signer {
    /// Presigned afresh for every tunnel, with credentials refreshed as they expire.
    Credentials(Arc<Signing>),
    /// Presigned by the parent `eic ssh` (valid 60 s): its ProxyCommand child holds no
    /// credentials at all.
    Url(String),
}

/// Opens tunnels to one target.
pub struct Opener {
    signer: Signer,
    target: TunnelTarget,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
}

impl Opener {
    pub fn new(
        signer: Signer,
        ca_bundle: Option<&CaBundle>,
        target: TunnelTarget,
        timeout: Duration,
    ) -> anyhow::Result<Opener> {
        Ok(Opener { signer, target, tls: tls_config(ca_bundle)?, timeout })
    }

    pub fn target(&self) -> &TunnelTarget {
        &self.target
    }

    pub async fn open(&self) -> anyhow::Result<Tunnel> {
        self.open_within(self.timeout).await
    }

    async fn open_within(&self, timeout: Duration) -> anyhow::Result<Tunnel> {
        let url = match &self.signer {
            Signer::Credentials(signing) => {
                let credentials = signing.credentials().await?;
                let now = SystemTime::now();
                presign::presign(&self.target, &credentials, &signing.region, now)?
            }
            Signer::Url(url) => url.clone(),
        };
        tracing::debug!(url = %presign::redact(&url), "opening tunnel");
        connect(&url, &self.target.dns_name, self.tls.clone(), (timeout, self.timeout)).await
    }

    /// Opens a tunnel; while the endpoint has no free one (HTTP 429: it allows 20 at once),
    /// tries again with jittered, growing pauses until the connect timeout has passed, and says
    /// once that it waits. For the ProxyCommand paths: ssh would only fail otherwise.
    pub async fn open_waiting(&self) -> anyhow::Result<Tunnel> {
        let deadline = Instant::now() + self.timeout;
        let mut pause = Duration::from_millis(200);
        let mut said = false;
        loop {
            // Every try within what is left of the connect timeout.
            let left = deadline.saturating_duration_since(Instant::now());
            match self.open_within(left.max(Duration::from_millis(100))).await {
                Err(e) if error::is_busy(&e) && Instant::now() + pause / 2 < deadline => {
                    if !said {
                        crate::say::note(format_args!("the endpoint {} has no free tunnel (it allows 20 at once): waiting up to {} s for one",
                            self.target.endpoint_id,
                            self.timeout.as_secs())
                        );
                        said = true;
                    }
                    // Jitter: 50-150 % of the pause, so that waiting clients do not retry at once.
                    let jitter = 0.5
                        + f64::from(rand_core::RngCore::next_u32(&mut rand_core::OsRng))
                            / f64::from(u32::MAX);
                    let left = deadline.saturating_duration_since(Instant::now());
                    tokio::time::sleep(pause.mul_f64(jitter).min(left)).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                other => return other,
            }
        }
    }

    /// Explains how a tunnel ended, naming the duration limit when that is what ended it.
    pub fn explain_end(&self, result: anyhow::Result<()>, started: Instant) -> anyhow::Result<()> {
        let limit = self.target.max_tunnel_duration.map(u64::from);
        // The endpoint's clock started about when ours did; allow it a little lead, but never
        // enough to blame the limit for a tunnel that ended early on.
        let at_limit = limit.is_some_and(|l| {
            let l = Duration::from_secs(l);
            started.elapsed() + (l / 10).min(Duration::from_secs(2)) >= l
        });
        let reached = || {
            format!(
                "the tunnel reached its maximum duration of {} s (--max-tunnel-duration)",
                limit.unwrap_or_default()
            )
        };
        match result {
            Ok(()) if at_limit => {
                crate::say::note(format_args!("{}", reached()));
                Ok(())
            }
            Err(e) if at_limit && e.is::<Closed>() => Err(e.context(reached())),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunnel_crypto_offers_what_aws_lc_offers() {
        let ours = tunnel_crypto();
        let aws_lc = rustls::crypto::aws_lc_rs::default_provider();
        let suites = |p: &rustls::crypto::CryptoProvider| {
            p.cipher_suites.iter().map(|s| s.suite()).collect::<Vec<_>>()
        };
        let groups = |p: &rustls::crypto::CryptoProvider| {
            p.kx_groups.iter().map(|g| g.name()).collect::<Vec<_>>()
        };
        assert_eq!(suites(&ours), suites(&aws_lc));
        assert_eq!(groups(&ours), groups(&aws_lc));
        assert_eq!(groups(&ours).first(), Some(&rustls::NamedGroup::X25519MLKEM768));
        // rustls checks that every suite has a key exchange it can use.
        rustls::ClientConfig::builder_with_provider(Arc::new(ours))
            .with_safe_default_protocol_versions()
            .expect("a consistent provider");
    }
}
