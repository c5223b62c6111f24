//! The EICE WebSocket tunnel: TLS connect (optionally through a proxy), the upgrade, and the
//! tunnel wrapped once as an `AsyncRead + AsyncWrite` byte stream, plus the copy loop and a
//! stdin that does not hold up the exit.

use std::fmt;
use std::future::Future;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use bytes::{Bytes, BytesMut};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf};
use tokio::net::unix::pipe;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::{HeaderValue, USER_AGENT};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::error;
use crate::proxy;

/// How big one relayed chunk (and so one binary frame) may be.
const CHUNK: usize = 64 * 1024;

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

type Ws = WebSocketStream<MaybeTlsStream<BufReader<TcpStream>>>;

/// A TLS WebSocket tunnel as a byte stream: writes become binary frames, binary frames are read.
pub struct Tunnel {
    reader: TunnelReader,
    writer: TunnelWriter,
}

/// The receiving half of a [`Tunnel`]: the payloads of the server's binary frames.
pub struct TunnelReader {
    ws: SplitStream<Ws>,
    pending: Bytes,
    eof: bool,
}

/// The sending half of a [`Tunnel`]: each chunk becomes one binary frame.
pub struct TunnelWriter {
    ws: SplitSink<Ws, Message>,
    close_sent: bool,
}

impl Tunnel {
    fn new(ws: Ws) -> Tunnel {
        let (sink, stream) = ws.split();
        Tunnel {
            reader: TunnelReader {
                ws: stream,
                pending: Bytes::new(),
                eof: false,
            },
            writer: TunnelWriter {
                ws: sink,
                close_sent: false,
            },
        }
    }

    /// The two directions, to drive concurrently.
    pub fn split(self) -> (TunnelReader, TunnelWriter) {
        (self.reader, self.writer)
    }

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
            request
                .headers_mut()
                .insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
            let result = tokio_tungstenite::client_async_tls_with_config(
                request,
                tcp,
                Some(config),
                Some(tokio_tungstenite::Connector::Rustls(tls)),
            )
            .await;
            match result {
                Ok((ws, _response)) => Ok(Tunnel::new(ws)),
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

impl TunnelReader {
    /// The next payload from the server; `None` once it has ended the tunnel with 1000 (or
    /// without a close frame). Any other close code is a [`Closed`] error.
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>> {
        if !self.pending.is_empty() {
            return Poll::Ready(Ok(Some(std::mem::take(&mut self.pending))));
        }
        loop {
            if self.eof {
                return Poll::Ready(Ok(None));
            }
            let message = match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                None | Some(Err(tungstenite::Error::ConnectionClosed)) => {
                    self.eof = true;
                    continue;
                }
                Some(Ok(message)) => message,
                Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
            };
            match message {
                Message::Binary(data) if data.is_empty() => {}
                Message::Binary(data) => return Poll::Ready(Ok(Some(data))),
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                Message::Text(_) => {
                    return Poll::Ready(Err(io::Error::other(ProtocolError(
                        "the endpoint sent a text frame".into(),
                    ))))
                }
                Message::Close(frame) => {
                    self.eof = true;
                    if let Some(frame) = frame.filter(|f| f.code != CloseCode::Normal) {
                        return Poll::Ready(Err(io::Error::other(Closed {
                            code: frame.code.into(),
                            reason: frame.reason.to_string(),
                        })));
                    }
                }
            }
        }
    }

    /// The next payload from the server, as it arrived; `None` at the end.
    pub async fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        std::future::poll_fn(|cx| self.poll_chunk(cx)).await
    }
}

impl AsyncRead for TunnelReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(mut chunk) = ready!(self.poll_chunk(cx))? {
            let n = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk.split_to(n));
            self.pending = chunk;
        }
        Poll::Ready(Ok(()))
    }
}

impl TunnelWriter {
    /// Sends `chunk` as one binary frame, without copying it, and flushes.
    pub async fn send(&mut self, chunk: Bytes) -> io::Result<()> {
        self.ws
            .send(Message::Binary(chunk))
            .await
            .map_err(io::Error::other)
    }
}

impl AsyncWrite for TunnelWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(io::Error::other)?;
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

impl AsyncRead for Tunnel {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.reader).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tunnel {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.writer).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.writer).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.writer).poll_shutdown(cx)
    }
}

/// Closing an already closed WebSocket is not an error.
fn closed_ok(e: tungstenite::Error) -> io::Result<()> {
    match e {
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => Ok(()),
        e => Err(io::Error::other(e)),
    }
}

/// The local end's input, in whole chunks that become frames as they are.
pub trait ChunkRead {
    /// The next chunk; `None` at EOF.
    fn read_chunk(&mut self) -> impl Future<Output = io::Result<Option<Bytes>>> + Send;
}

/// The local end's output, taking the frames' payloads as they are.
pub trait ChunkWrite {
    fn write_chunk(&mut self, chunk: Bytes) -> impl Future<Output = io::Result<()>> + Send;
    /// Everything written has been delivered; no more will come.
    fn finish(&mut self) -> impl Future<Output = io::Result<()>> + Send;
}

/// An `AsyncRead` or `AsyncWrite` (a TCP connection's half) moved in chunks.
pub struct Chunked<T> {
    io: T,
    buf: BytesMut,
}

impl<T> Chunked<T> {
    pub fn new(io: T) -> Chunked<T> {
        Chunked {
            io,
            buf: BytesMut::new(),
        }
    }
}

impl<R: AsyncRead + Unpin + Send> ChunkRead for Chunked<R> {
    async fn read_chunk(&mut self) -> io::Result<Option<Bytes>> {
        // Reads into spare capacity: no zero-fill, and the chunk leaves without a copy.
        self.buf.reserve(CHUNK);
        match self.io.read_buf(&mut self.buf).await? {
            0 => Ok(None),
            _ => Ok(Some(self.buf.split().freeze())),
        }
    }
}

impl<W: AsyncWrite + Unpin + Send> ChunkWrite for Chunked<W> {
    async fn write_chunk(&mut self, chunk: Bytes) -> io::Result<()> {
        self.io.write_all(&chunk).await?;
        self.io.flush().await
    }

    async fn finish(&mut self) -> io::Result<()> {
        self.io.shutdown().await
    }
}

/// Relays the local end and `tunnel` both ways until the tunnel ends.
///
/// EOF from the local end (or `stop` firing) becomes a close frame while the server's remaining
/// output is still delivered; the end of the server's output ends the relay at once.
pub async fn pump(
    mut local_read: impl ChunkRead,
    mut local_write: impl ChunkWrite,
    tunnel: Tunnel,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let (mut tunnel_read, mut tunnel_write) = tunnel.split();
    let result = relay(
        &mut local_read,
        &mut local_write,
        &mut tunnel_read,
        &mut tunnel_write,
        stop,
    )
    .await;
    // The server's close frame has a reply queued (RFC 6455 5.5.1): send it if the socket takes
    // it now, without waiting.
    let _ = tunnel_write.flush().now_or_never();
    match result {
        // The reader of our output went away (`| head`): nothing left to deliver.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(tunnel_error),
    }
}

/// Both directions of [`pump`], until the tunnel ends.
async fn relay(
    local_read: &mut impl ChunkRead,
    local_write: &mut impl ChunkWrite,
    tunnel_read: &mut TunnelReader,
    tunnel_write: &mut TunnelWriter,
    stop: impl Future<Output = ()>,
) -> io::Result<()> {
    let up = async {
        let copy = async {
            while let Some(chunk) = local_read.read_chunk().await? {
                tunnel_write.send(chunk).await?;
            }
            io::Result::Ok(())
        };
        tokio::select! {
            result = copy => result?,
            () = stop => {}
        }
        tunnel_write.shutdown().await
    };
    let down = async {
        let relayed = async {
            while let Some(chunk) = tunnel_read.next_chunk().await? {
                local_write.write_chunk(chunk).await?;
            }
            io::Result::Ok(())
        }
        .await;
        // Deliver what is queued however the tunnel ended: the bytes before a close code count.
        let finished = local_write.finish().await;
        relayed?;
        finished
    };
    tokio::pin!(up, down);
    tokio::select! {
        result = &mut down => result,
        result = &mut up => match result {
            Ok(()) => down.await,
            Err(e) => Err(e),
        }
    }
}

/// Stdin. A pipe (as ssh gives its ProxyCommand) is read by the runtime itself; anything else
/// (a terminal, a file, a socket) on a thread of its own.
pub fn stdin() -> Stdin {
    match Nonblocking::pipe(std::io::stdin().as_fd(), pipe::Receiver::from_owned_fd) {
        Ok((pipe, restore)) => Stdin::Pipe(Chunked::new(pipe), restore),
        Err(_) => Stdin::Thread(thread_stdin()),
    }
}

/// See [`stdin`].
pub enum Stdin {
    Pipe(Chunked<pipe::Receiver>, Nonblocking),
    Thread(ThreadStdin),
}

impl ChunkRead for Stdin {
    async fn read_chunk(&mut self) -> io::Result<Option<Bytes>> {
        match self {
            Stdin::Pipe(pipe, _) => pipe.read_chunk().await,
            Stdin::Thread(thread) => thread.chunks.recv().await.transpose(),
        }
    }
}

/// Stdout. A pipe is written by the runtime itself; anything else on a thread of its own.
pub fn stdout() -> Stdout {
    match Nonblocking::pipe(std::io::stdout().as_fd(), pipe::Sender::from_owned_fd) {
        Ok((pipe, restore)) => Stdout::Pipe(Chunked::new(pipe), restore),
        Err(_) => Stdout::Thread(thread_stdout()),
    }
}

/// See [`stdout`].
pub enum Stdout {
    Pipe(Chunked<pipe::Sender>, Nonblocking),
    Thread(ThreadStdout),
}

impl ChunkWrite for Stdout {
    async fn write_chunk(&mut self, chunk: Bytes) -> io::Result<()> {
        match self {
            Stdout::Pipe(pipe, _) => pipe.write_chunk(chunk).await,
            Stdout::Thread(thread) => thread.write_chunk(chunk).await,
        }
    }

    async fn finish(&mut self) -> io::Result<()> {
        match self {
            // A pipe has nothing queued, and its write end closes when eic exits.
            Stdout::Pipe(..) => Ok(()),
            Stdout::Thread(thread) => thread.outcome().await,
        }
    }
}

/// A pipe driven by the runtime needs `O_NONBLOCK`, which belongs to the open file description
/// that eic may share with other processes (`(eic ...; echo done) | less`): the original flags
/// come back when this is dropped.
pub struct Nonblocking {
    fd: OwnedFd,
    flags: OFlag,
}

impl Nonblocking {
    /// `open` (tokio's `from_owned_fd`) on a duplicate of `fd`, if `fd` is a pipe.
    fn pipe<P>(
        fd: BorrowedFd<'_>,
        open: impl FnOnce(OwnedFd) -> io::Result<P>,
    ) -> io::Result<(P, Nonblocking)> {
        let restore = Nonblocking {
            fd: fd.try_clone_to_owned()?,
            flags: OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?),
        };
        Ok((open(fd.try_clone_to_owned()?)?, restore))
    }
}

impl Drop for Nonblocking {
    fn drop(&mut self) {
        let _ = fcntl(&self.fd, FcntlArg::F_SETFL(self.flags));
    }
}

/// Stdin read on a thread of its own.
///
/// A blocking read cannot be cancelled. `tokio::io::stdin` does it in the runtime's blocking
/// pool, whose shutdown waits for it: when the endpoint ended the tunnel while stdin stayed
/// open (ssh keeps it open), eic did not exit until the next input. This thread is simply left
/// behind when the process exits.
fn thread_stdin() -> ThreadStdin {
    let (tx, chunks) = mpsc::channel(4);
    std::thread::spawn(move || {
        use std::io::Read;
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; CHUNK];
        loop {
            let chunk = match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => Ok(Bytes::copy_from_slice(&buf[..n])),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
            let failed = chunk.is_err();
            if tx.blocking_send(chunk).is_err() || failed {
                break;
            }
        }
    });
    ThreadStdin { chunks }
}

/// The receiving end of [`thread_stdin`]; the thread's end is EOF.
pub struct ThreadStdin {
    chunks: mpsc::Receiver<io::Result<Bytes>>,
}

/// Stdout written on a thread of its own.
///
/// Writing each chunk through tokio's blocking pool, then waiting for it to flush, made every
/// chunk a thread round trip: the next frame was not decrypted while the last was written.
/// Here the chunks queue (4 deep) and are written while the next ones arrive.
fn thread_stdout() -> ThreadStdout {
    let (chunks, mut rx) = mpsc::channel::<Bytes>(4);
    let (done_tx, done) = oneshot::channel();
    std::thread::spawn(move || {
        use std::io::Write;
        // A duplicate of fd 1 as a plain file: unbuffered, one write(2) per chunk (std's
        // stdout is line-buffered and would split binary chunks at their newlines).
        let mut result = std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .map(std::fs::File::from);
        if let Ok(stdout) = &mut result {
            while let Some(chunk) = rx.blocking_recv() {
                if let Err(e) = stdout.write_all(&chunk) {
                    result = Err(e);
                    break;
                }
            }
        }
        let _ = done_tx.send(result.map(drop));
    });
    ThreadStdout {
        chunks: Some(chunks),
        done: Some(done),
    }
}

/// The sending end of [`thread_stdout`].
pub struct ThreadStdout {
    chunks: Option<mpsc::Sender<Bytes>>,
    done: Option<oneshot::Receiver<io::Result<()>>>,
}

impl ThreadStdout {
    async fn write_chunk(&mut self, chunk: Bytes) -> io::Result<()> {
        let sent = match &self.chunks {
            Some(chunks) => chunks.send(chunk).await.is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The thread stopped writing: say why.
        self.outcome().await?;
        Err(io::ErrorKind::BrokenPipe.into())
    }

    /// Waits for the thread to end and returns how its writing went.
    async fn outcome(&mut self) -> io::Result<()> {
        self.chunks = None;
        match self.done.take() {
            Some(done) => done
                .await
                .unwrap_or_else(|_| Err(io::Error::other("the stdout thread died"))),
            None => Ok(()),
        }
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
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(tunnel_crypto()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunnel_crypto_offers_what_aws_lc_offers() {
        let ours = tunnel_crypto();
        let aws_lc = rustls::crypto::aws_lc_rs::default_provider();
        let suites = |p: &rustls::crypto::CryptoProvider| {
            p.cipher_suites
                .iter()
                .map(|s| s.suite())
                .collect::<Vec<_>>()
        };
        let groups = |p: &rustls::crypto::CryptoProvider| {
            p.kx_groups.iter().map(|g| g.name()).collect::<Vec<_>>()
        };
        assert_eq!(suites(&ours), suites(&aws_lc));
        assert_eq!(groups(&ours), groups(&aws_lc));
        assert_eq!(
            groups(&ours).first(),
            Some(&rustls::NamedGroup::X25519MLKEM768)
        );
        // rustls checks that every suite has a key exchange it can use.
        rustls::ClientConfig::builder_with_provider(Arc::new(ours))
            .with_safe_default_protocol_versions()
            .expect("a consistent provider");
    }
}
