//! `eic ssh`: find the instance and its route, push a one-time key, and run the system ssh,
//! with eic itself as the ProxyCommand when the route goes through an endpoint.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use tempfile::TempDir;

use crate::aws::{Aws, Configured, Settings};
use crate::cli::{Output, SshPlan};
use crate::keys;
use crate::private;
use crate::resolve::{self, InstanceRef, Route, Via};
use crate::sharing::{Binding, Claim, Shared};
use crate::signals::{self, Signals};
use crate::ssh_argv::{self, Master, SshCommand, TunnelCommand};
use crate::target::TunnelTarget;
use crate::{error, say};

pub async fn run(settings: &Settings, plan: SshPlan) -> anyhow::Result<i32> {
    // Until ssh runs, a signal ends eic through the normal path, so the key is removed.
    let mut signals = Signals::catch()?;
    let ssh = ssh_argv::require_ssh()?;
    // The configuration is loaded once: sharing needs it before any API call (a shared
    // connection is found with none), and picking an instance or finding one by --name
    // needs the APIs before the rest.
    let sharing = plan.persist.is_some() || plan.stop;
    let config = if sharing { Some(Configured::load(settings).await?) } else { None };
    let mut aws = None;
    let first = match plan.instance {
        InstanceRef::Pick => true,
        // Named once: a reconnection goes back to the same instance.
        InstanceRef::Name(_) => sharing || plan.reconnect,
        InstanceRef::Id(_) => false,
    };
    let plan = if first {
        let loaded = match &config {
            Some(config) => Aws::connect(config.clone()).await?,
            None => Aws::load(settings).await?,
        };
        let found = resolve::instance(aws.insert(loaded), &plan.instance).await?;
        SshPlan { instance: InstanceRef::Id(found.id), ..plan }
    } else {
        plan
    };
    if plan.reconnect {
        return reconnecting(settings, aws, &plan, ssh, &mut signals).await;
    }
    let shared = match (&plan.instance, &config) {
        (InstanceRef::Id(instance_id), Some(config)) => Shared::find(&Binding {
            config,
            instance_id,
            user: &plan.os_user,
            port: plan.port,
            via: &plan.via,
            key: &plan.key,
        }),
        _ => None,
    };
    let claim = match shared {
        Some(shared) => tokio::select! {
            claim = shared.decide(&ssh, plan.stop, plan.dry_run) => claim?,
            signal = signals.recv() => return Err(signal.error()),
        },
        None => Claim::Alone,
    };
    let (starting, socket) = match claim {
        Claim::Stopped { instance_id, ended } => {
            let what = if ended { "ended the" } else { "there was no" };
            say::note(format_args!("{what} shared connection to {instance_id}"));
            return Ok(0);
        }
        Claim::Over { socket, instance_id } => {
            tracing::debug!(socket = %socket.display(), "running over the shared connection");
            let args = ssh_argv::over_master(
                &socket,
                &plan.os_user,
                &instance_id,
                plan.port,
                &plan.local_forwarding,
                plan.debug,
                &plan.ssh_args,
            );
            let mut command = ssh_argv::command(&ssh);
            command.args(args);
            return signals::foreground(command, &mut signals).await;
        }
        Claim::Start(starting) => {
            let socket = starting.socket.clone();
            (Some(starting), Some(socket))
        }
        // A dry run shows the master this call would start.
        Claim::Shown(socket) => (None, Some(socket)),
        Claim::Alone => (None, None),
    };
    let master = plan.persist.zip(socket).map(|(persist, socket)| Master { socket, persist });
    let prepared = tokio::select! {
        prepared = prepare(settings, aws, config, &plan, ssh.clone(), master) => prepared?,
        signal = signals.recv() => return Err(signal.error()),
    };
    let Prepared { command, scratch, aws } = prepared;
    if plan.dry_run {
        let printed = match plan.output {
            Output::Text => command.display(),
            Output::Json => plan_json(&command, &aws.region).to_string(),
        };
        return super::print_out(format!("{printed}\n").as_bytes());
    }
    // The key and the URL stay until the new master answers (or ssh ends); then other eic
    // may run over it.
    let forget_key = tokio::spawn(async move {
        match starting {
            Some(starting) => {
                starting.up(&ssh).await;
                drop(scratch);
            }
            None => std::future::pending::<()>().await,
        }
    });
    let code = run_ssh(&command, &mut signals).await;
    forget_key.abort();
    let _ = forget_key.await;
    code
}

struct Prepared {
    command: SshCommand,
    /// The one-time key and the presigned URL, removed with it.
    scratch: TempDir,
    /// The configuration and clients: the region, and another round (`--reconnect`).
    aws: Aws,
}

async fn prepare(
    settings: &Settings,
    aws: Option<Aws>,
    config: Option<Configured>,
    plan: &SshPlan,
    ssh: PathBuf,
    master: Option<Master>,
) -> anyhow::Result<Prepared> {
    let scratch = private::scratch_dir()?;
    let key = keys::load(&plan.key, scratch.path())?;
    // Whatever of the configuration is loaded already is used.
    let aws = match (aws, config) {
        (Some(aws), _) => aws,
        (None, Some(config)) => Aws::connect(config).await?,
        (None, None) => Aws::load(settings).await?,
    };

    // DescribeInstances, the endpoint lookup and the key push are independent: all three go out
    // at once. The push needs the instance id, so with --name it waits for the lookup; the
    // endpoint lookup is dropped when the route turns out to be direct.
    let lookup = |given| tokio::spawn(resolve::endpoints(aws.clone(), given));
    let mut endpoints = match &plan.via {
        Via::Direct { .. } => None,
        Via::Auto => Some(lookup(None)),
        Via::Eice { endpoint, .. } => Some(lookup(endpoint.clone())),
    };
    // Nothing is pushed for a dry run, or for the user's own key unless asked to.
    let public = key.public.clone().filter(|_| !plan.dry_run);
    let push = |id: String| {
        let (aws, public, user) = (aws.clone(), public.clone()?, plan.os_user.clone());
        Some(tokio::spawn(async move { aws.send_ssh_public_key(&id, &user, &public).await }))
    };
    let mut pushed = match &plan.instance {
        InstanceRef::Id(id) => push(id.clone()),
        InstanceRef::Name(_) | InstanceRef::Pick => None,
    };
    let instance = resolve::instance(&aws, &plan.instance).await?;
    let route = resolve::route(&instance, &plan.via)?;
    tracing::debug!(?route, "route chosen");
    if pushed.is_none() {
        pushed = push(instance.id.clone());
    }
    let (address, proxy) = match route {
        Route::Direct(ip) => {
            if let Some(endpoints) = endpoints.take() {
                endpoints.abort();
            }
            (ip, None)
        }
        Route::Endpoint(ip) => {
            let endpoints = endpoints.take().unwrap_or_else(|| lookup(None));
            let endpoint = joined(endpoints).await?.choose(&instance, &aws)?;
            let max_tunnel_duration = plan.via.max_tunnel_duration();
            let exe = std::env::current_exe()
                .context("cannot find eic's own path for the ProxyCommand")?;
            let target = TunnelTarget::new(endpoint, ip, plan.port, max_tunnel_duration);
            let url_file = scratch.path().join("tunnel-url");
            let ca_bundle = aws.ca_bundle.as_ref().map(|b| b.path.clone());
            let detach_stderr = master.is_some();
            let debug = plan.debug;
            (ip, Some(TunnelCommand { exe, target, url_file, ca_bundle, debug, detach_stderr }))
        }
    };
    if let Some(pushed) = pushed {
        joined(pushed).await?;
    }
    // The child gets a URL presigned here, once the push has answered (a throttled push
    // cannot leave it expired): valid 60 s, for this endpoint, address and port, in a file
    // only this user can read. ssh's environment, which reaches its SendEnv, -v output and
    // every command it starts, carries no credential.
    if let Some(proxy) = proxy.as_ref().filter(|_| !plan.dry_run) {
        super::write_presigned_url(&aws, &proxy.target, &proxy.url_file).await?;
    }

    let command = SshCommand {
        ssh,
        key: key.path.clone(),
        user: plan.os_user.clone(),
        address,
        port: plan.port,
        instance_id: instance.id.clone(),
        proxy,
        local_forwarding: plan.local_forwarding.clone(),
        debug: plan.debug,
        extra: plan.ssh_args.clone(),
        master,
    };
    Ok(Prepared { command, scratch, aws })
}

/// What ssh prints (through its LocalCommand) once the session is up, on a pipe only eic reads.
const CONNECTED: &str = "eic-connected";

/// `--reconnect`: the forwarding-only session, started again (a new key, a new tunnel) when its
/// connection drops after it was up: ssh exits 255. Pauses from 1 s, doubling to 30 s, and back
/// to 1 s after a connection that lasted a minute. Any other end is passed up: a 255 before the
/// session was up (authentication, host key, a refused tunnel, a busy local port), another
/// status, Ctrl-C (130), or the instance no longer running (254, from the lookup).
async fn reconnecting(
    settings: &Settings,
    mut aws: Option<Aws>,
    plan: &SshPlan,
    ssh: PathBuf,
    signals: &mut Signals,
) -> anyhow::Result<i32> {
    let mut pause = Duration::from_secs(1);
    let mut first = true;
    // Once the session has been up, a failed round (the network still down, a refused tunnel)
    // is retried too; rounds that each end within seconds, three in a row, stop it.
    let mut ever_up = false;
    let mut short_rounds = 0;
    loop {
        let prepared = tokio::select! {
            prepared = prepare(settings, aws.take(), None, plan, ssh.clone(), None) => prepared,
            signal = signals.recv() => return Err(signal.error()),
        };
        let prepared = match prepared {
            Ok(prepared) => prepared,
            // A parameter, configuration or service answer (the instance stopped): not retried.
            Err(e) if !ever_up || error::exit_code(&e) != error::OTHER => return Err(e),
            Err(e) => {
                say::note(format_args!(
                    "reconnecting failed ({e:#}): trying again in {} s",
                    pause.as_secs()
                ));
                back_off(&mut pause, signals).await?;
                continue;
            }
        };
        let Prepared { mut command, scratch, aws: loaded, .. } = prepared;
        aws = Some(loaded);
        // -N; the forwardings bound before LocalCommand runs, or ssh fails at once.
        let marker = format!("LocalCommand=echo {CONNECTED}");
        let ours = ["-N", "-o", "ExitOnForwardFailure=yes", "-o", "PermitLocalCommand=yes", "-o"];
        command.extra =
            ours.iter().map(|s| s.to_string()).chain([marker]).chain(command.extra).collect();
        let (reader, writer) = std::io::pipe()?;
        let mut cmd = ssh_argv::command(&command.ssh);
        cmd.args(command.args()).stdin(std::process::Stdio::null()).stdout(writer);
        let instance = command.instance_id.clone();
        let announce = std::mem::replace(&mut first, false);
        // Whether the session came up: the marker arrived.
        let watcher = tokio::task::spawn_blocking(move || {
            let up = BufReader::new(reader).lines().map_while(Result::ok).any(|l| l == CONNECTED);
            if up && announce {
                say::note(format_args!("forwarding through {instance} until Ctrl-C"));
            }
            up
        });
        let started = Instant::now();
        let code = signals::foreground(cmd, signals).await?;
        // The pipe's last writer is gone with ssh: the marker, if any, has been read.
        let up = tokio::time::timeout(Duration::from_secs(1), watcher).await;
        drop(scratch);
        let lasted = started.elapsed();
        ever_up |= matches!(up, Ok(Ok(true)));
        if code != error::OTHER || !ever_up {
            return Ok(code);
        }
        short_rounds = if lasted < Duration::from_secs(10) { short_rounds + 1 } else { 0 };
        if short_rounds == 3 {
            say::note("three connections in a row ended within seconds: not reconnecting");
            return Ok(code);
        }
        if lasted >= Duration::from_secs(60) {
            pause = Duration::from_secs(1);
        }
        say::note(format_args!(
            "the connection to {} dropped after {} s: reconnecting in {} s",
            command.instance_id,
            lasted.as_secs(),
            pause.as_secs()
        ));
        back_off(&mut pause, signals).await?;
    }
}

/// Waits `pause` (a signal ends the wait, and eic), then doubles it, up to 30 s.
async fn back_off(pause: &mut Duration, signals: &mut Signals) -> anyhow::Result<()> {
    tokio::select! {
        () = tokio::time::sleep(*pause) => {}
        signal = signals.recv() => return Err(signal.error()),
    }
    *pause = (*pause * 2).min(Duration::from_secs(30));
    Ok(())
}

/// The plan for scripts: what eic resolved, and the ssh command it would run. Nothing secret:
/// the key and the presigned URL are files, named only.
fn plan_json(command: &SshCommand, region: &str) -> serde_json::Value {
    let endpoint = command.proxy.as_ref().map(|proxy| {
        let target = &proxy.target;
        serde_json::json!({
            "id": target.endpoint_id,
            "dns_name": target.dns_name.as_str(),
            "max_tunnel_duration": target.max_tunnel_duration,
        })
    });
    serde_json::json!({
        "region": region,
        "instance_id": command.instance_id,
        "address": command.address.to_string(),
        "route": if endpoint.is_some() { "eice" } else { "direct" },
        "endpoint": endpoint,
        "user": command.user,
        "port": command.port,
        "ssh": command.argv(),
    })
}

/// The result of a spawned lookup.
async fn joined<T>(task: tokio::task::JoinHandle<anyhow::Result<T>>) -> anyhow::Result<T> {
    task.await.map_err(|e| anyhow::anyhow!("an AWS lookup did not complete: {e}"))?
}

/// Runs ssh as a child, passing on the signals a shell would, and returns its status.
async fn run_ssh(command: &SshCommand, signals: &mut Signals) -> anyhow::Result<i32> {
    let mut cmd = ssh_argv::command(&command.ssh);
    cmd.args(command.args());
    tracing::debug!(key = %command.key.display(), "running {}", command.ssh.display());
    signals::foreground(cmd, signals).await
}
