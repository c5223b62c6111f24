//! The local ends of a tunnel (stdin and stdout, or an accepted TCP connection) and the pump
//! that relays between one and the tunnel.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::tunnel::{Opener, Tunnel, CHUNK};

/// The local end's input, in whole chunks that become frames as they are.
pub struct Reader<R> {
    io: R,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    fn new(io: R) -> Reader<R> {
        Reader { io, buf: BytesMut::new() }
    }

    /// The next chunk; `None` at EOF.
    async fn read_chunk(&mut self) -> io::Result<Option<Bytes>> {
        // Reads into spare capacity: no zero-fill, and the chunk leaves without a copy.
        self.buf.reserve(CHUNK);
        match self.io.read_buf(&mut self.buf).await? {
            0 => Ok(None),
            _ => Ok(Some(self.buf.split().freeze())),
        }
    }
}

/// The local end's output, taking the frames' payloads as they are.
pub struct Writer<W>(W);

impl<W: AsyncWrite + Unpin> Writer<W> {
    async fn write_chunk(&mut self, chunk: Bytes) -> io::Result<()> {
        self.0.write_all(&chunk).await?;
        self.0.flush().await
    }
}

/// An accepted connection's two halves (listener mode).
pub fn tcp(socket: TcpStream) -> (Reader<OwnedReadHalf>, Writer<OwnedWriteHalf>) {
    let _ = socket.set_nodelay(true);
    let (read, write) = socket.into_split();
    (Reader::new(read), Writer(write))
}

#[cfg(unix)]
pub use unix::stdio;

/// stdin and stdout through tokio's own (a thread each: Windows' pipes cannot be polled). A read
/// of stdin that never ends does not hold up the exit: `run` shuts the runtime down without
/// waiting for it.
#[cfg(windows)]
pub fn stdio() -> std::io::Result<(Reader<tokio::io::Stdin>, Writer<tokio::io::Stdout>, ())> {
    Ok((Reader::new(tokio::io::stdin()), Writer(tokio::io::stdout()), ()))
}

/// Opens a tunnel and relays stdin and stdout through it until it ends, as ssh's ProxyCommand
/// uses it. `detach_stderr`: once the tunnel is open, stderr goes to the null device.
pub async fn relay_stdio(opener: &Opener, detach_stderr: bool) -> anyhow::Result<()> {
    let tunnel = opener.open_waiting().await?;
    #[cfg(unix)]
    if detach_stderr {
        let null = std::fs::File::options().write(true).open("/dev/null")?;
        nix::unistd::dup2_stderr(null)?;
    }
    #[cfg(not(unix))]
    let _ = detach_stderr;
    let started = Instant::now();
    let (stdin, stdout, _flags) = stdio()?;
    let result = pump(stdin, stdout, tunnel, std::future::pending()).await;
    opener.explain_end(result, started)
}

/// stdin and stdout, as the runtime's own: pipes (what ssh gives its ProxyCommand), sockets and
/// terminals are polled with no thread in between; files and `/dev/null`, which cannot be polled
/// and never block, are read and written through tokio's file API.
#[cfg(unix)]
mod unix {
    use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    use tokio::net::unix::pipe;
    use tokio_util::either::Either;

    use super::{Reader, Writer};

    pub type Stdin = Reader<Either<pipe::Receiver, tokio::fs::File>>;
    pub type Stdout = Writer<Either<pipe::Sender, tokio::fs::File>>;

    /// Puts stdin's and stdout's file status flags back as they were, when dropped.
    pub struct Flags {
        _stdin: Restore,
        _stdout: Restore,
    }

    /// stdin and stdout, and their flags to put back.
    pub fn stdio() -> std::io::Result<(Stdin, Stdout, Flags)> {
        let (stdin, stdout) = (std::io::stdin(), std::io::stdout());
        // Both flags as they were, read before either is changed: stdin and stdout may share
        // one open file description (a socket pair from socat or inetd).
        let flags =
            Flags { _stdin: Restore::of(stdin.as_fd())?, _stdout: Restore::of(stdout.as_fd())? };
        let stdin =
            polled(stdin.as_fd(), flags._stdin.flags, pipe::Receiver::from_owned_fd_unchecked)?;
        let stdout =
            polled(stdout.as_fd(), flags._stdout.flags, pipe::Sender::from_owned_fd_unchecked)?;
        Ok((Reader::new(stdin), Writer(stdout), flags))
    }

    /// `fd` made non-blocking and registered with the runtime, or as a file when it cannot be.
    fn polled<P>(
        fd: BorrowedFd<'_>,
        flags: OFlag,
        register: impl FnOnce(OwnedFd) -> std::io::Result<P>,
    ) -> std::io::Result<Either<P, tokio::fs::File>> {
        fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        Ok(match register(fd.try_clone_to_owned()?) {
            Ok(polled) => Either::Left(polled),
            Err(_) => {
                fcntl(fd, FcntlArg::F_SETFL(flags))?;
                let file = std::fs::File::from(fd.try_clone_to_owned()?);
                Either::Right(tokio::fs::File::from_std(file))
            }
        })
    }

    /// `O_NONBLOCK` belongs to the open file description, which eic may share with other
    /// processes (`(eic ...; echo done) | less`): the original flags come back on drop.
    struct Restore {
        fd: OwnedFd,
        flags: OFlag,
    }

    impl Restore {
        fn of(fd: BorrowedFd<'_>) -> std::io::Result<Restore> {
            let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
            Ok(Restore { fd: fd.try_clone_to_owned()?, flags })
        }
    }

    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = fcntl(&self.fd, FcntlArg::F_SETFL(self.flags));
        }
    }
}

/// Relays the local end and `tunnel` both ways until the tunnel ends.
///
/// EOF from the local end (or `stop` firing) becomes a close frame while the server's remaining
/// output is still delivered; the end of the server's output ends the relay at once.
pub async fn pump<R, W>(
    mut local_read: Reader<R>,
    mut local_write: Writer<W>,
    tunnel: Tunnel,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (mut tunnel_read, mut tunnel_write) = tunnel;
    let result = {
        let up = async {
            let copy = async {
                while let Some(chunk) = local_read.read_chunk().await? {
                    tunnel_write.send(chunk).await?;
                }
                anyhow::Ok(())
            };
            tokio::select! {
                result = copy => result?,
                () = stop => {}
            }
            tunnel_write.close().await
        };
        let down = async {
            let relayed = async {
                while let Some(chunk) = tunnel_read.next_chunk().await? {
                    local_write.write_chunk(chunk).await?;
                }
                anyhow::Ok(())
            }
            .await;
            // Deliver what is queued however the tunnel ended: the bytes before a close code
            // count.
            let finished = local_write.0.shutdown().await;
            relayed?;
            Ok(finished?)
        };
        tokio::pin!(up, down);
        tokio::select! {
            result = &mut down => result,
            result = &mut up => match result {
                Ok(()) => down.await,
                Err(e) => Err(e),
            }
        }
    };
    tunnel_write.flush_now();
    match result.map_err(|e| e.downcast::<io::Error>()) {
        Ok(()) => Ok(()),
        // The reader of our output went away (`| head`): nothing left to deliver.
        Err(Ok(local)) if local.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(Ok(local)) => Err(anyhow::anyhow!("the tunnel failed: {local}")),
        Err(Err(tunnel)) => Err(tunnel),
    }
}

/// How long open tunnels get to close cleanly once a listener stops.
const DRAIN: Duration = Duration::from_secs(3);

/// Serves `listener`: every accepted connection gets its own freshly presigned tunnel, at most
/// `max` at once, until `until` completes; then the listener closes and its tunnels get a
/// moment to close cleanly. Returns what `until` gave.
pub async fn listen<T>(
    listener: TcpListener,
    opener: Arc<Opener>,
    max: usize,
    until: impl Future<Output = T>,
) -> T {
    tokio::pin!(until);
    let limit = Arc::new(Semaphore::new(max));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut next_id = 0u64;
    let done = loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of descriptors, say: a pause, not a busy loop.
                        crate::say::note(format_args!("accept failed: {e}"));
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                next_id += 1;
                let Ok(permit) = limit.clone().try_acquire_owned() else {
                    crate::say::note(format_args!("[{next_id}] refused {peer}: {max} tunnels already open (--max-websocket-connections)"));
                    continue;
                };
                let opener = opener.clone();
                let stop = stop_rx.clone();
                // The tunnels this listener has open, for a refusal's message.
                let limit = limit.clone();
                let open = move || max - limit.available_permits();
                tasks.spawn(async move {
                    serve(next_id, socket, peer, &opener, stop, permit, open).await;
                });
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            done = &mut until => break done,
        }
    };
    drop(listener);
    let _ = stop_tx.send(true);
    let drained =
        tokio::time::timeout(DRAIN, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        crate::say::note(format_args!("some tunnels did not close within {} s", DRAIN.as_secs()));
    }
    done
}

/// One accepted connection, through its own tunnel.
async fn serve(
    id: u64,
    socket: TcpStream,
    peer: SocketAddr,
    opener: &Opener,
    mut stop: watch::Receiver<bool>,
    permit: OwnedSemaphorePermit,
    open: impl Fn() -> usize,
) {
    let started = Instant::now();
    let tunnel = tokio::select! {
        tunnel = opener.open() => tunnel,
        _ = stop.wait_for(|s| *s) => return,
    };
    let tunnel = match tunnel {
        Ok(tunnel) => tunnel,
        Err(e) if crate::error::is_busy(&e) => {
            crate::say::note(format_args!(
                "[{id}] {peer}: {e:#} (this listener has {} tunnels open)",
                open() - 1
            ));
            return;
        }
        Err(e) => {
            crate::say::note(format_args!("[{id}] {peer}: {e:#}"));
            return;
        }
    };
    crate::say::note(format_args!("[{id}] {peer}: tunnel opened"));
    let (read, write) = tcp(socket);
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let result = pump(read, write, tunnel, stopped).await;
    // Free the slot before saying so: once the `closed` line is out, a new connection is served.
    drop(permit);
    match opener.explain_end(result, started) {
        Ok(()) => crate::say::note(format_args!(
            "[{id}] {peer}: closed after {:.1} s",
            started.elapsed().as_secs_f64()
        )),
        Err(e) => crate::say::note(format_args!("[{id}] {peer}: closed: {e:#}")),
    }
}
