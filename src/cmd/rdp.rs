//! `eic rdp`: a listener on 127.0.0.1 tunnelled to the instance's port 3389 (every connection
//! its own tunnel, as `open-tunnel --local-port`), and this platform's RDP client pointed at it.
//! It ends when a client that blocks ends, else (a launcher that returns at once) on Ctrl-C.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::aws::{Aws, Settings};
use crate::cli::RdpPlan;
use crate::resolve::{self, Route};
use crate::signals::{Signal, Signals};
use crate::ssh_argv::on_path;
use crate::target::TunnelTarget;
use crate::tunnel::{Opener, Signer};
use crate::{error, private, say};

/// RDP's port on the instance.
const RDP: u16 = 3389;
/// Tunnels one RDP client may hold open at once (it opens a few side channels).
const MAX_TUNNELS: usize = 10;

pub async fn run(settings: &Settings, plan: RdpPlan) -> anyhow::Result<i32> {
    let mut signals = Signals::catch()?;
    let (aws, instance) = tokio::select! {
        found = async {
            let aws = Aws::load(settings).await?;
            let instance = resolve::instance(&aws, &plan.instance).await?;
            anyhow::Ok((aws, instance))
        } => found?,
        signal = signals.recv() => return Err(signal.error()),
    };
    let route = resolve::route(&instance, &plan.via)?;
    // A .rdp file (macOS) lives as long as eic does.
    let scratch = private::scratch_dir()?;
    let (address, listener, opener) = match route {
        Route::Direct(ip) => (SocketAddr::new(ip, RDP), None, None),
        Route::Endpoint(ip) => {
            let given = plan.via.given_endpoint();
            let endpoint = resolve::endpoints(aws.clone(), given).await?.choose(&instance, &aws)?;
            let target = TunnelTarget::new(endpoint, ip, RDP, plan.via.max_tunnel_duration());
            let signer = Signer::Credentials(aws.signing.clone());
            let opener = Opener::new(signer, aws.ca_bundle.as_ref(), target, plan.connect_timeout)?;
            let bind = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), plan.local_port);
            let listener = TcpListener::bind(bind)
                .await
                .with_context(|| format!("cannot listen on {bind}: pick another --local-port"))?;
            (listener.local_addr()?, Some(listener), Some(Arc::new(opener)))
        }
    };
    let client = if plan.launch { Some(client(address, scratch.path())?) } else { None };
    let how = match (&listener, &client) {
        (Some(_), None) => format!("point your RDP client at {address} (Ctrl-C to stop)"),
        (Some(_), Some(c)) => {
            format!("{address} tunnelled to {}:{RDP}; starting {}", instance.id, c.name)
        }
        (None, Some(c)) => {
            format!("{} reaches {address} directly; starting {}", instance.id, c.name)
        }
        (None, None) => {
            format!("{} reaches {address} directly: point your RDP client at it", instance.id)
        }
    };
    say::note(how);
    let until = ended(client, &mut signals);
    let end = match (listener, opener) {
        (Some(listener), Some(opener)) => {
            crate::local::listen(listener, opener, MAX_TUNNELS, until).await
        }
        _ => until.await,
    };
    drop(scratch);
    match end {
        End::Client(status) => Ok(status.code().unwrap_or(error::OTHER)),
        End::Signal(signal) => Err(signal.error()),
        End::Failed(e) => Err(e),
    }
}

/// What ended `eic rdp`.
enum End {
    Client(ExitStatus),
    Signal(Signal),
    Failed(anyhow::Error),
}

/// The client's end when it blocks, else a signal.
async fn ended(client: Option<Client>, signals: &mut Signals) -> End {
    let child = match client {
        Some(Client { mut command, blocks, .. }) => match command.kill_on_drop(blocks).spawn() {
            Ok(child) => Some(child).filter(|_| blocks),
            Err(e) => {
                return End::Failed(anyhow::Error::new(e).context("cannot start the RDP client"))
            }
        },
        None => None,
    };
    match child {
        Some(mut child) => tokio::select! {
            status = child.wait() => match status {
                Ok(status) => End::Client(status),
                Err(e) => End::Failed(e.into()),
            },
            signal = signals.recv() => End::Signal(signal),
        },
        None => End::Signal(signals.recv().await),
    }
}

/// This platform's RDP client, pointed at `address`.
struct Client {
    name: String,
    command: tokio::process::Command,
    /// Whether it runs until its window closes (`open` on macOS returns at once).
    blocks: bool,
}

fn client(address: SocketAddr, scratch: &std::path::Path) -> anyhow::Result<Client> {
    let command = |program: PathBuf, args: Vec<String>, blocks: bool| {
        let name = program.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let mut command = tokio::process::Command::new(&program);
        command.args(args);
        Client { name, command, blocks }
    };
    if cfg!(windows) {
        let mstsc = on_path("mstsc.exe").unwrap_or_else(|| PathBuf::from("mstsc.exe"));
        return Ok(command(mstsc, vec![format!("/v:{address}")], true));
    }
    if cfg!(target_os = "macos") {
        // Microsoft's Remote Desktop (Windows App) opens .rdp files.
        let file = scratch.join("eic.rdp");
        let settings = format!("full address:s:{address}\nprompt for credentials:i:1\n");
        private::write_file(&file, settings.as_bytes(), 0o600, true)?;
        let open = PathBuf::from("/usr/bin/open");
        return Ok(command(open, vec![file.display().to_string()], false));
    }
    for name in ["xfreerdp3", "sdl-freerdp3", "wlfreerdp3", "xfreerdp"] {
        if let Some(path) = on_path(name) {
            return Ok(command(path, vec![format!("/v:{address}")], true));
        }
    }
    // Remmina hands the connection to a running Remmina and returns: Ctrl-C ends eic.
    if let Some(path) = on_path("remmina") {
        return Ok(command(path, vec!["-c".into(), format!("rdp://{address}")], false));
    }
    Err(error::config(
        "no RDP client found on PATH (xfreerdp3, sdl-freerdp3, wlfreerdp3, xfreerdp or remmina): install one (e.g. `apt-get install freerdp3-x11`), or use --no-launch and your own",
    ))
}
