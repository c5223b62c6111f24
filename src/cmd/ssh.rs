//! `eic ssh`: find the instance and its route, push a one-time key, and run the system ssh,
//! with eic itself as the ProxyCommand when the route goes through an endpoint.

use std::time::SystemTime;

use anyhow::Context;
use tempfile::TempDir;

use crate::aws::{Aws, Settings};
use crate::cli::SshPlan;
use crate::error;
use crate::keys;
use crate::presign::{self, TunnelTarget};
use crate::resolve::{self, InstanceRef, Route, Via};
use crate::signals::{self, Signals};
use crate::ssh_argv::{self, ProxyCommand, SshCommand};

pub async fn run(settings: &Settings, plan: SshPlan) -> anyhow::Result<i32> {
    // Until ssh runs, a signal ends eic through the normal path, so the key is removed.
    let mut signals = Signals::catch()?;
    let prepared = tokio::select! {
        prepared = prepare(settings, &plan) => prepared?,
        signal = signals.recv() => return Err(signal.error()),
    };
    let Prepared { command, scratch } = prepared;
    if plan.dry_run {
        return super::print_out(format!("{}\n", command.display()).as_bytes());
    }
    let code = run_ssh(&command, &mut signals).await?;
    drop(scratch);
    Ok(code)
}

struct Prepared {
    command: SshCommand,
    /// The one-time key and the presigned URL, removed with it.
    scratch: TempDir,
}

async fn prepare(settings: &Settings, plan: &SshPlan) -> anyhow::Result<Prepared> {
    let ssh = ssh_argv::find_ssh().ok_or_else(|| {
        error::config(
            "ssh not found on PATH: install the OpenSSH client (e.g. `apt-get install openssh-client`)",
        )
    })?;
    let scratch = keys::scratch_dir()?;
    let key = keys::load(&plan.key, scratch.path())?;
    let aws = Aws::load(settings).await?;

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
        InstanceRef::Name(_) => None,
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
            let (endpoint_id, dns_name) = joined(endpoints).await?.choose(&instance, &aws)?;
            let max_tunnel_duration = match &plan.via {
                Via::Eice { max_tunnel_duration, .. } => *max_tunnel_duration,
                _ => None,
            };
            let exe = std::env::current_exe()
                .context("cannot find eic's own path for the ProxyCommand")?;
            let target = TunnelTarget {
                dns_name,
                endpoint_id,
                private_ip: ip,
                remote_port: plan.port,
                max_tunnel_duration,
            };
            // The child gets a URL presigned here (valid 60 s, for this endpoint, address and
            // port), in a file only this user can read: ssh's environment, which reaches its
            // SendEnv, -v output and every command it starts, carries no credential.
            let url_file = scratch.path().join("tunnel-url");
            if !plan.dry_run {
                let credentials = aws.signing.credentials().await?;
                let url = presign::presign(&target, &credentials, &aws.region, SystemTime::now())?;
                keys::write_file(&url_file, url.as_bytes(), 0o600, false)?;
            }
            let ca_bundle = aws.ca_bundle.as_ref().map(|b| b.path.clone());
            (ip, Some(ProxyCommand { exe, target, url_file, ca_bundle, debug: plan.debug }))
        }
    };
    if let Some(pushed) = pushed {
        joined(pushed).await?;
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
        verbose: plan.debug,
        extra: plan.ssh_args.clone(),
    };
    Ok(Prepared { command, scratch })
}

/// The environment variables that hold AWS secrets.
const CREDENTIAL_VARIABLES: [&str; 5] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
];

/// The result of a spawned lookup.
async fn joined<T>(task: tokio::task::JoinHandle<anyhow::Result<T>>) -> anyhow::Result<T> {
    task.await.map_err(|e| anyhow::anyhow!("an AWS lookup did not complete: {e}"))?
}

/// Runs ssh as a child, passing on the signals a shell would, and returns its status.
async fn run_ssh(command: &SshCommand, signals: &mut Signals) -> anyhow::Result<i32> {
    let mut cmd = std::process::Command::new(&command.ssh);
    cmd.args(command.args());
    // No credential reaches ssh, whose environment goes to SendEnv, `-v` and every command it
    // starts (ProxyCommand, LocalCommand, KnownHostsCommand, Match exec).
    for name in CREDENTIAL_VARIABLES {
        cmd.env_remove(name);
    }
    tracing::debug!(key = %command.key.display(), "running {}", command.ssh.display());
    signals::foreground(cmd, signals).await
}
