//! `eic serial-console`: find the instance, check the region's serial console host key against
//! AWS's published fingerprint, push a one-time key for the serial port, and run the system
//! ssh to `INSTANCE.portN@` the console's endpoint. No endpoint and no tunnel: the console is
//! reached over the internet, for an instance whose own network is no help.

use crate::aws::{Aws, Settings};
use crate::cli::{Output, SerialConsolePlan};
use crate::resolve::{self, InstanceRef};
use crate::serial_console::{self, Console, HostKey, Override};
use crate::signals::{self, Signals};
use crate::ssh_argv::{self, PinnedKey, SerialCommand};
use crate::{keys, private, say};

pub async fn run(settings: &Settings, plan: SerialConsolePlan) -> anyhow::Result<i32> {
    // Until ssh runs, a signal ends eic through the normal path, so the key is removed.
    let mut signals = Signals::catch()?;
    let ssh = ssh_argv::require_ssh()?;
    let over = Override::from_env()?;
    let scratch = private::scratch_dir()?;
    let prepared = tokio::select! {
        prepared = async {
            let aws = Aws::load(settings).await?;
            let instance_id = match &plan.instance {
                // The service itself says whether the instance exists and runs.
                InstanceRef::Id(id) => id.clone(),
                which => resolve::instance(&aws, which).await?.id,
            };
            if let Some(over) = &over {
                say::warn(format_args!(
                    "the serial console is at {}:{}, from {}",
                    over.host, over.port, serial_console::ENDPOINT_VARIABLE
                ));
            }
            let console = serial_console::console(&aws.region, aws.dual_stack, over)?;
            let host_key = match &console.pin {
                Some(pin) => {
                    let keyscan = serial_console::keyscan(&ssh)?;
                    Some(serial_console::verified_host_key(&keyscan, &console, pin).await?)
                }
                None => None,
            };
            anyhow::Ok((aws, instance_id, console, host_key))
        } => prepared?,
        signal = signals.recv() => return Err(signal.error()),
    };
    let (aws, instance_id, console, host_key) = prepared;
    let pinned = match &host_key {
        Some(key) => {
            let file = scratch.path().join("known_hosts");
            let line = key.known_hosts_line(&console.alias);
            private::write_file(&file, line.as_bytes(), 0o600, true)?;
            let (algorithms, openssh) =
                (key.host_key_algorithms(), ssh_argv::openssh_version(&ssh).await);
            Some(PinnedKey { file, algorithms, openssh })
        }
        None => None,
    };
    let key = keys::load(&plan.key, scratch.path())?;
    let command = SerialCommand {
        ssh: ssh.clone(),
        key: key.path.clone(),
        user: format!("{instance_id}.port{}", plan.serial_port),
        host: console.host.clone(),
        port: console.port,
        alias: console.alias.clone(),
        pinned,
        debug: plan.debug,
    };
    if plan.dry_run {
        let printed = match plan.output {
            Output::Text => command.display(),
            Output::Json => {
                plan_json(&command, &aws.region, &instance_id, &console, host_key.as_ref())
                    .to_string()
            }
        };
        return super::print_out(format!("{printed}\n").as_bytes());
    }
    let public = key.public.as_deref().ok_or_else(|| {
        anyhow::anyhow!("{}: no public key to push for the serial console", key.path.display())
    })?;
    tokio::select! {
        pushed = aws.send_serial_console_ssh_public_key(&instance_id, plan.serial_port, public) => pushed?,
        signal = signals.recv() => return Err(signal.error()),
    }
    if console.pin.is_none() {
        say::note(format_args!(
            "no published fingerprint to check {}'s host key against: ssh's known_hosts decides (the key is known as {})",
            console.host, console.alias
        ));
    }
    let mut ssh = ssh_argv::command(&command.ssh);
    ssh.args(command.args());
    tracing::debug!(key = %command.key.display(), "running {}", command.ssh.display());
    let code = signals::foreground(ssh, &mut signals).await;
    drop(scratch);
    code
}

/// The plan for scripts: the console, its host key check and ssh's argv. Nothing secret.
fn plan_json(
    command: &SerialCommand,
    region: &str,
    instance_id: &str,
    console: &Console,
    host_key: Option<&HostKey>,
) -> serde_json::Value {
    let host_key = console.pin.as_ref().map(|(fingerprint, source)| {
        serde_json::json!({
            "fingerprint": fingerprint,
            "source": source,
            "type": host_key.map(|k| k.key_type.as_str()),
        })
    });
    serde_json::json!({
        "region": region,
        "instance_id": instance_id,
        "user": command.user,
        "host": command.host,
        "port": command.port,
        "host_key_alias": command.alias,
        "host_key": host_key,
        "ssh": command.argv(),
    })
}
