//! `eic open-tunnel --local-port`: every accepted connection gets its own freshly presigned
//! tunnel, until a signal closes the listener and every tunnel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::aws::Settings;
use crate::cli::ListenPlan;
use crate::local;
use crate::signals::Signals;
use crate::tunnel::Opener;

/// How long open tunnels get to close cleanly after Ctrl-C.
const DRAIN: Duration = Duration::from_secs(3);

pub async fn run(settings: &Settings, plan: ListenPlan) -> anyhow::Result<i32> {
    let max = plan.max_connections;
    let opener = Arc::new(super::opener(settings, plan.tunnel).await?);
    let listener = TcpListener::bind(plan.bind).await.map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            " - the port is in use: pick another --local-port (0 picks a free one)"
        } else {
            ""
        };
        anyhow::anyhow!("cannot listen on {}: {e}{hint}", plan.bind)
    })?;
    // Catch signals before saying we are ready: one that arrives while none is caught would
    // kill the process.
    let mut signals = Signals::catch()?;
    let local = listener.local_addr()?;
    let target = opener.target();
    // Each connection opens a tunnel signed with this user's credentials, asking nothing of
    // whoever connects: off loopback, that is anyone on the network.
    if !local.ip().to_canonical().is_loopback() {
        crate::say::warn(format_args!("{local} is not a loopback address: anyone who can reach it opens tunnels to {}:{} with your AWS credentials (--bind 127.0.0.1 keeps it to this machine)",
            target.private_ip, target.remote_port
        ));
    }
    crate::say::note(format_args!(
        "listening on {local}, tunnelling to {}:{} through {} (Ctrl-C to stop)",
        target.private_ip, target.remote_port, target.endpoint_id
    ));

    let limit = Arc::new(Semaphore::new(max));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut next_id = 0u64;
    let signal = loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        crate::say::note(format_args!("accept failed: {e}"));
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
            signal = signals.recv() => break signal,
        }
    };
    drop(listener);
    let _ = stop_tx.send(true);
    let drained =
        tokio::time::timeout(DRAIN, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        crate::say::note(format_args!("some tunnels did not close within {} s", DRAIN.as_secs()));
    }
    Ok(signal.exit_code())
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
    let (read, write) = local::tcp(socket);
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let result = local::pump(read, write, tunnel, stopped).await;
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
