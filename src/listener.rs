//! Listener mode: every accepted local connection gets its own freshly presigned tunnel.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::error;
use crate::open_tunnel::Opener;
use crate::tunnel;

/// How long open tunnels get to close cleanly after Ctrl-C.
const DRAIN: Duration = Duration::from_secs(3);

/// Serves `bind:port` until Ctrl-C or SIGTERM; at most `max` tunnels at once.
pub async fn serve(
    opener: Arc<Opener>,
    bind: IpAddr,
    port: u16,
    max: usize,
) -> anyhow::Result<i32> {
    let listener = TcpListener::bind((bind, port)).await.map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            " - the port is in use: pick another --local-port (0 picks a free one)"
        } else {
            ""
        };
        anyhow::anyhow!(
            "cannot listen on {}: {e}{hint}",
            SocketAddr::new(bind, port)
        )
    })?;
    // Listen for Ctrl-C before saying we are ready, and only once: a signal that arrives while
    // no listener is registered would kill the process or be lost.
    let shutdown = shutdown_signal()?;
    tokio::pin!(shutdown);
    let local = listener.local_addr()?;
    let target = opener.target();
    eprintln!(
        "eic: listening on {local}, tunnelling to {}:{} through {} (Ctrl-C to stop)",
        target.private_ip, target.remote_port, target.endpoint_id
    );

    let limit = Arc::new(Semaphore::new(max));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut next_id = 0u64;
    let code = loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        eprintln!("eic: accept failed: {e}");
                        continue;
                    }
                };
                next_id += 1;
                let Ok(permit) = limit.clone().try_acquire_owned() else {
                    eprintln!("eic: [{next_id}] refused {peer}: {max} tunnels already open (--max-websocket-connections)");
                    continue;
                };
                let opener = opener.clone();
                let stop = stop_rx.clone();
                tasks.spawn(async move {
                    handle(next_id, socket, peer, &opener, stop, permit).await;
                });
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            code = &mut shutdown => break code,
        }
    };
    drop(listener);
    let _ = stop_tx.send(true);
    let drained =
        tokio::time::timeout(DRAIN, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        eprintln!(
            "eic: some tunnels did not close within {} s",
            DRAIN.as_secs()
        );
    }
    Ok(code)
}

async fn handle(
    id: u64,
    socket: TcpStream,
    peer: SocketAddr,
    opener: &Opener,
    mut stop: watch::Receiver<bool>,
    permit: OwnedSemaphorePermit,
) {
    let _ = socket.set_nodelay(true);
    let started = Instant::now();
    let tunnel = tokio::select! {
        tunnel = opener.open() => tunnel,
        _ = stop.wait_for(|s| *s) => return,
    };
    let tunnel = match tunnel {
        Ok(tunnel) => tunnel,
        Err(e) => {
            eprintln!("eic: [{id}] {peer}: {e:#}");
            return;
        }
    };
    eprintln!("eic: [{id}] {peer}: tunnel opened");
    let (read, write) = socket.into_split();
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let result = tunnel::pump(
        tunnel::Chunked::new(read),
        tunnel::Chunked::new(write),
        tunnel,
        stopped,
    )
    .await;
    // Free the slot before saying so: once the `closed` line is out, a new connection is served.
    drop(permit);
    match opener.explain_end(result, started) {
        Ok(()) => eprintln!(
            "eic: [{id}] {peer}: closed after {:.1} s",
            started.elapsed().as_secs_f64()
        ),
        Err(e) => eprintln!("eic: [{id}] {peer}: closed: {e:#}"),
    }
}

/// Ctrl-C (exit 130) or SIGTERM (exit 143), caught from the moment this returns.
pub fn shutdown_signal() -> anyhow::Result<impl Future<Output = i32>> {
    #[cfg(unix)]
    {
        use anyhow::Context as _;
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt =
            signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C (SIGINT)")?;
        let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => error::INTERRUPTED,
                _ = term.recv() => 128 + 15,
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            error::INTERRUPTED
        })
    }
}
