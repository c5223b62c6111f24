//! The EICE WebSocket tunnel: TLS connect (optionally through a proxy), the upgrade, and the
//! tunnel wrapped once as an `AsyncRead + AsyncWrite` byte stream, plus the copy loop and a
//! stdin that does not hold up the exit.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::error;
use crate::proxy;

/// How big one relayed chunk (and so one binary frame) may be.
const CHUNK: usize = 64 * 1024;

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
            write!(f, ": {}", self.reason)?;
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

/// The server sent something a tunnel must not carry.
#[derive(Debug)]
pub struct ProtocolError(pub String);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tunnel protocol error: {}", self.0)
    }
}

impl std::error::Error for ProtocolError {}

/// A TLS WebSocket tunnel as a byte stream: writes become binary frames, binary frames are read.
pub struct Tunnel {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pending: Bytes,
    eof: bool,
    close_sent: bool,
}

impl Tunnel {
    /// Opens the tunnel at the presigned `url` (its host is `host:port`).
    pub async fn connect(
        url: &str,
        host: &str,
        port: u16,
        tls: Arc<rustls::ClientConfig>,
        timeout: Duration,
    ) -> anyhow::Result<Tunnel> {
        let open = async {
            let tcp = proxy::connect(host, port).await?;
            tcp.set_nodelay(true)?;
            let config = WebSocketConfig::default()
                .max_message_size(Some(16 << 20))
                .max_frame_size(Some(16 << 20));
            let result = tokio_tungstenite::client_async_tls_with_config(
                url,
                tcp,
                Some(config),
                Some(tokio_tungstenite::Connector::Rustls(tls)),
            )
            .await;
            match result {
                Ok((ws, _response)) => Ok(Tunnel {
                    ws,
                    pending: Bytes::new(),
                    eof: false,
                    close_sent: false,
                }),
                Err(tungstenite::Error::Http(response)) => Err(upgrade_refused(&response)),
                // tungstenite's messages already include their source: show the text once.
                Err(e) => Err(anyhow::anyhow!(
                    "WebSocket handshake with {host}:{port} failed: {e}"
                )),
            }
        };
        tokio::time::timeout(timeout, open).await.map_err(|_| {
            anyhow::anyhow!(
                "no answer from the endpoint {host}:{port} within {} s (change it with --connect-timeout)",
                timeout.as_secs()
            )
        })?
    }
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
    let request_id = response
        .headers()
        .get("x-amzn-RequestId")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none");
    let mut msg = format!("the endpoint refused the tunnel: HTTP {}", status.as_u16());
    if let Some(code) = body.error_code {
        msg.push_str(&format!(" {code}"));
    }
    match body.message {
        Some(m) => msg.push_str(&format!(": {m}")),
        None if !raw.is_empty() => {
            msg.push_str(&format!(": {}", String::from_utf8_lossy(raw).trim()))
        }
        None => {}
    }
    msg.push_str(&format!(" (request id {request_id})"));
    let hint = match status.as_u16() {
        401 | 403 => " - check the system clock, the credentials, and that your IAM policy allows ec2-instance-connect:OpenTunnel on the endpoint",
        429 => " - the endpoint allows 20 concurrent tunnels; close some and retry",
        400 => " - the endpoint only allows ports 22 and 3389, to addresses in its VPC",
        _ => "",
    };
    msg.push_str(hint);
    error::aws(msg)
}

impl AsyncRead for Tunnel {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending[..n]);
                self.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            if self.eof {
                return Poll::Ready(Ok(()));
            }
            let message = match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                None => {
                    self.eof = true;
                    continue;
                }
                Some(Ok(message)) => message,
                Some(Err(tungstenite::Error::ConnectionClosed)) => {
                    self.eof = true;
                    continue;
                }
                Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
            };
            match message {
                Message::Binary(data) => self.pending = data,
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                Message::Text(_) => {
                    return Poll::Ready(Err(io::Error::other(ProtocolError(
                        "the endpoint sent a text frame".into(),
                    ))))
                }
                Message::Close(frame) => {
                    self.eof = true;
                    if let Some(frame) = frame {
                        if frame.code != CloseCode::Normal {
                            return Poll::Ready(Err(io::Error::other(Closed {
                                code: frame.code.into(),
                                reason: frame.reason.to_string(),
                            })));
                        }
                    }
                }
            }
        }
    }
}

impl AsyncWrite for Tunnel {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let ws = Pin::new(&mut self.ws);
        ready!(ws.poll_ready(cx)).map_err(io::Error::other)?;
        let n = buf.len().min(CHUNK);
        Pin::new(&mut self.ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
            .map_err(io::Error::other)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws)
            .poll_flush(cx)
            .map_err(io::Error::other)
    }

    /// Ends our side with a close frame (1000); the server's remaining output can still be read.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.close_sent {
            if let Err(e) = ready!(Pin::new(&mut self.ws).poll_ready(cx)) {
                return Poll::Ready(closed_ok(e));
            }
            let frame = CloseFrame {
                code: CloseCode::Normal,
                reason: Default::default(),
            };
            if let Err(e) = Pin::new(&mut self.ws).start_send(Message::Close(Some(frame))) {
                return Poll::Ready(closed_ok(e));
            }
            self.close_sent = true;
        }
        match ready!(Pin::new(&mut self.ws).poll_flush(cx)) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(closed_ok(e)),
        }
    }
}

/// Closing an already closed WebSocket is not an error.
fn closed_ok(e: tungstenite::Error) -> io::Result<()> {
    match e {
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => Ok(()),
        e => Err(io::Error::other(e)),
    }
}

/// Relays `local` and `tunnel` both ways until the tunnel ends.
///
/// EOF from `local` (or `stop` firing) becomes a close frame while the server's remaining
/// output is still delivered; the end of the server's output ends the relay at once.
pub async fn pump<R, W>(
    mut local_read: R,
    mut local_write: W,
    tunnel: Tunnel,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (mut tunnel_read, mut tunnel_write) = tokio::io::split(tunnel);
    let up = async {
        tokio::select! {
            result = copy(&mut local_read, &mut tunnel_write) => result?,
            () = stop => {}
        }
        tunnel_write.shutdown().await
    };
    let down = async {
        copy(&mut tunnel_read, &mut local_write).await?;
        match local_write.shutdown().await {
            Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e),
            _ => Ok(()),
        }
    };
    tokio::pin!(up, down);
    let result = tokio::select! {
        result = &mut down => result,
        result = &mut up => match result {
            Ok(()) => down.await,
            Err(e) => Err(e),
        }
    };
    match result {
        // The reader of our output went away (`| head`): nothing left to deliver.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(tunnel_error),
    }
}

/// Copies until EOF, flushing after each chunk so that interactive bytes go out at once.
async fn copy<R, W>(reader: &mut R, writer: &mut W) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        writer.write_all(&buf[..n]).await?;
        writer.flush().await?;
    }
}

/// Stdin as an `AsyncRead`, read on a thread of its own.
///
/// A blocking read cannot be cancelled. `tokio::io::stdin` does it in the runtime's blocking
/// pool, whose shutdown waits for it: when the endpoint ended the tunnel while stdin stayed
/// open (ssh keeps it open), eic did not exit until the next input. This thread is simply left
/// behind when the process exits.
pub fn stdin() -> impl AsyncRead + Unpin {
    let (tx, chunks) = tokio::sync::mpsc::channel(4);
    std::thread::spawn(move || {
        use std::io::Read;
        let mut stdin = std::io::stdin().lock();
        loop {
            let mut buf = vec![0u8; CHUNK];
            let chunk = match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    buf.truncate(n);
                    Ok(Bytes::from(buf))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
            let failed = chunk.is_err();
            if tx.blocking_send(chunk).is_err() || failed {
                break;
            }
        }
    });
    ThreadStdin {
        chunks,
        pending: Bytes::new(),
    }
}

/// The receiving end of [`stdin`]'s thread; the thread's end is EOF.
struct ThreadStdin {
    chunks: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    pending: Bytes,
}

impl AsyncRead for ThreadStdin {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pending.is_empty() {
            match ready!(self.chunks.poll_recv(cx)) {
                Some(Ok(chunk)) => self.pending = chunk,
                Some(Err(e)) => return Poll::Ready(Err(e)),
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = self.pending.len().min(buf.remaining());
        buf.put_slice(&self.pending.split_to(n));
        Poll::Ready(Ok(()))
    }
}

/// Lifts the tunnel's own errors out of `io::Error` so they keep their exit code and message.
fn tunnel_error(e: io::Error) -> anyhow::Error {
    if e.get_ref()
        .is_some_and(|inner| inner.is::<Closed>() || inner.is::<ProtocolError>())
    {
        let inner = e.into_inner().expect("checked above");
        match inner.downcast::<Closed>() {
            Ok(closed) => anyhow::Error::new(*closed),
            Err(other) => anyhow::Error::from(
                other
                    .downcast::<ProtocolError>()
                    .map(|p| *p)
                    .expect("checked above"),
            ),
        }
    } else {
        // tungstenite's messages already include their source: show the text once.
        anyhow::anyhow!("the tunnel failed: {e}")
    }
}

/// The rustls client configuration: the CA bundle when one is configured, else the system's.
pub fn tls_config(
    ca_bundle: Option<&std::path::Path>,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    match ca_bundle {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(path)
                .with_context(|| format!("cannot read the CA bundle {}", path.display()))?
            {
                let cert =
                    cert.with_context(|| format!("bad certificate in {}", path.display()))?;
                roots.add(cert)?;
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
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}
