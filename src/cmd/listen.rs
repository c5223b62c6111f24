//! `eic open-tunnel --local-port`: every accepted connection gets its own freshly presigned
//! tunnel, until a signal closes the listener and every tunnel.

use std::sync::Arc;

use tokio::net::TcpListener;

use crate::aws::Settings;
use crate::cli::ListenPlan;
use crate::local;
use crate::signals::Signals;

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

    let signal = local::listen(listener, opener, max, signals.recv()).await;
    Ok(signal.exit_code())
}
