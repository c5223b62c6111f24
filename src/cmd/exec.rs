//! `eic exec`: one command on many instances at once. A few lookups for the whole run (one
//! DescribeInstances per kind of selector, one endpoint lookup), one key; then each instance in
//! its turn (at most `--parallel` at once, never more tunnels per endpoint than it allows):
//! its key push, its presigned tunnel and ssh, every output line labelled with the instance.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::aws::{Aws, Instance, Settings};
use crate::cli::{ExecPlan, Output};
use crate::keys::{self, Key};
use crate::resolve::{self, Endpoints, Missing, Reach, Route};
use crate::signals::Signals;
use crate::ssh_argv::{self, SshCommand, TunnelCommand};
use crate::target::TunnelTarget;
use crate::{error, private, say};

/// An endpoint accepts this many tunnels at once.
const TUNNELS_PER_ENDPOINT: usize = 20;
/// What `--output json` keeps of each of an instance's stdout and stderr.
const KEEP: usize = 16 << 20;

pub async fn run(settings: &Settings, plan: ExecPlan) -> anyhow::Result<i32> {
    let mut signals = Signals::catch()?;
    let ssh = ssh_argv::require_ssh()?;
    let aws = Aws::load(settings).await?;
    let given = plan.via.given_endpoint();
    let fleet = resolve::fleet(&aws, &plan.selection, false).await?;
    // The endpoints are looked up only when an instance is reached through one.
    let through_endpoint =
        |i: &Instance| matches!(resolve::route(i, &plan.via), Ok(Route::Endpoint(_)));
    let endpoints = if fleet.instances.iter().any(through_endpoint) {
        resolve::endpoints(aws.clone(), given).await?
    } else {
        Endpoints::Usable(Vec::new())
    };
    // One key for the run, pushed to each instance in its turn; its directory goes on every
    // way out, and with it every presigned URL.
    let scratch = private::scratch_dir()?;
    let key = keys::load(&plan.key, scratch.path())?;
    let exe = std::env::current_exe().context("cannot find eic's own path for the ProxyCommand")?;
    let mut outcomes: Vec<Outcome> = fleet.missing.into_iter().map(Outcome::missing).collect();
    let reaches: Vec<(Instance, Reach)> = fleet
        .instances
        .into_iter()
        .map(|i| {
            let reach = resolve::reach(&i, &plan.via, &endpoints, &aws);
            (i, reach)
        })
        .collect();
    let run = Arc::new(Run {
        slots: Arc::new(Semaphore::new(plan.parallel)),
        endpoint_slots: Mutex::new(HashMap::new()),
        scratch: scratch.path().to_path_buf(),
        aws,
        plan,
        key,
        ssh,
        exe,
    });
    let mut tasks = JoinSet::new();
    for (instance, reach) in reaches {
        tasks.spawn(one(run.clone(), instance, reach));
    }
    loop {
        tokio::select! {
            done = tasks.join_next() => match done {
                Some(outcome) => outcomes.push(outcome.context("an instance's task failed")?),
                None => break,
            },
            // Every ssh is killed as its task is dropped; the key goes with `scratch`.
            signal = signals.recv() => {
                tasks.shutdown().await;
                return Err(signal.error());
            }
        }
    }
    drop(scratch);
    outcomes.sort_by(|a, b| (&a.name, &a.instance_id).cmp(&(&b.name, &b.instance_id)));
    report(&outcomes, run.plan.output)?;
    Ok(outcomes.iter().map(Outcome::status).max().unwrap_or(0))
}

/// What every instance's turn shares.
struct Run {
    aws: Aws,
    plan: ExecPlan,
    key: Key,
    ssh: PathBuf,
    exe: PathBuf,
    scratch: PathBuf,
    slots: Arc<Semaphore>,
    endpoint_slots: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Run {
    /// A tunnel slot on this endpoint, waited for.
    async fn endpoint_slot(&self, endpoint_id: &str) -> anyhow::Result<OwnedSemaphorePermit> {
        let slots = self
            .endpoint_slots
            .lock()
            .await
            .entry(endpoint_id.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(TUNNELS_PER_ENDPOINT)))
            .clone();
        Ok(slots.acquire_owned().await?)
    }
}

/// How one instance's turn ended.
struct Outcome {
    instance_id: Option<String>,
    name: Option<String>,
    /// The command's exit status (255: ssh could not connect); `Err`: eic failed before ssh.
    result: Result<Finished, String>,
    seconds: f64,
}

struct Finished {
    exit_status: i32,
    stdout: Captured,
    stderr: Captured,
}

#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    truncated: bool,
}

impl Outcome {
    fn missing(missing: Missing) -> Outcome {
        let Missing { instance_id, name, why } = missing;
        Outcome { instance_id, name, result: Err(why), seconds: 0.0 }
    }

    /// Its part of eic's exit status: the command's, or 254 where eic could not reach it.
    fn status(&self) -> i32 {
        self.result.as_ref().map_or(error::AWS, |f| f.exit_status)
    }
}

async fn one(run: Arc<Run>, instance: Instance, reach: Reach) -> Outcome {
    let started = Instant::now();
    let label = label(&instance.id, instance.name.as_deref());
    let result = turn(&run, &instance, reach, &label).await.map_err(|e| format!("{e:#}"));
    Outcome {
        instance_id: Some(instance.id),
        name: instance.name.as_deref().map(error::printable),
        result,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// `i-0123456789abcdef0 web-1 | `: what starts each of the instance's lines.
fn label(instance_id: &str, name: Option<&str>) -> String {
    match name {
        Some(name) => format!("{instance_id} {} | ", error::printable(name)),
        None => format!("{instance_id} | "),
    }
}

/// The instance's turn: its slots, its key push (inside them, so that a wait for a free
/// tunnel cannot outlast the key's 60 s), its tunnel, ssh.
async fn turn(
    run: &Run,
    instance: &Instance,
    reach: Reach,
    label: &str,
) -> anyhow::Result<Finished> {
    let _slot = run.slots.clone().acquire_owned().await?;
    let plan = &run.plan;
    let (address, target, _tunnel_slot) = match reach {
        Reach::No(why) => anyhow::bail!("{why}"),
        Reach::Direct(ip) => (ip, None, None),
        Reach::Endpoint { endpoint, ip } => {
            let slot = run.endpoint_slot(&endpoint.id).await?;
            let max = plan.via.max_tunnel_duration();
            (ip, Some(TunnelTarget::new(endpoint, ip, plan.port, max)), Some(slot))
        }
    };
    if let Some(public) = &run.key.public {
        run.aws.send_ssh_public_key(&instance.id, &plan.os_user, public).await?;
    }
    let proxy = match target {
        Some(target) => {
            let url_file = run.scratch.join(format!("{}.url", instance.id));
            super::write_presigned_url(&run.aws, &target, &url_file).await?;
            let ca_bundle = run.aws.ca_bundle.as_ref().map(|b| b.path.clone());
            let (exe, debug, detach_stderr) = (run.exe.clone(), plan.debug, false);
            Some(TunnelCommand { exe, target, url_file, ca_bundle, debug, detach_stderr })
        }
        None => None,
    };
    let command = SshCommand {
        ssh: run.ssh.clone(),
        key: run.key.path.clone(),
        user: plan.os_user.clone(),
        address,
        port: plan.port,
        instance_id: instance.id.clone(),
        proxy,
        local_forwarding: Vec::new(),
        debug: plan.debug,
        extra: unattended(&plan.ssh_args),
        master: None,
    };
    let mut ssh = tokio::process::Command::from(ssh_argv::command(&command.ssh));
    ssh.args(command.args()).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = ssh.kill_on_drop(true).spawn().context("cannot start ssh")?;
    let (out, err) = (child.stdout.take(), child.stderr.take());
    let (stdout, stderr) = tokio::join!(
        pump(out, label, Stream::Out, plan.output),
        pump(err, label, Stream::Err, plan.output),
    );
    let status = child.wait().await?;
    Ok(Finished { exit_status: status.code().unwrap_or(error::OTHER), stdout, stderr })
}

/// The user's ssh options and command, with two defaults after the options (ssh takes the
/// first value of an option, so the user's win): nobody answers a prompt of many ssh at once,
/// and an instance's first host key is recorded (under its instance id) as a first login would.
fn unattended(ssh_args: &[String]) -> Vec<String> {
    let (options, command) = ssh_argv::split_ssh_args(ssh_args);
    let defaults = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new", "--"];
    options
        .iter()
        .cloned()
        .chain(defaults.map(String::from))
        .chain(command.iter().cloned())
        .collect()
}

#[derive(Clone, Copy)]
enum Stream {
    Out,
    Err,
}

/// Reads ssh's output line by line: each line labelled and written whole as it arrives
/// (text), or kept for the JSON report, up to [`KEEP`].
async fn pump(
    from: Option<impl AsyncRead + Unpin>,
    label: &str,
    stream: Stream,
    output: Output,
) -> Captured {
    let mut captured = Captured::default();
    let Some(from) = from else { return captured };
    let mut from = BufReader::new(from);
    let mut line = Vec::new();
    loop {
        line.clear();
        // A line longer than a MiB is passed on in pieces, each labelled.
        match (&mut from).take(1 << 20).read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        match output {
            Output::Text => {
                if !line.ends_with(b"\n") {
                    line.push(b'\n');
                }
                let whole = [label.as_bytes(), &line].concat();
                match stream {
                    Stream::Out => {
                        let _ = super::print_out(&whole);
                    }
                    Stream::Err => say::relay(&whole),
                }
            }
            Output::Json => {
                let room = KEEP.saturating_sub(captured.bytes.len());
                captured.truncated |= line.len() > room;
                captured.bytes.extend_from_slice(&line[..line.len().min(room)]);
            }
        }
    }
    captured
}

/// After the run: on stderr a line for each instance that failed (text), or the JSON array.
fn report(outcomes: &[Outcome], output: Output) -> anyhow::Result<()> {
    match output {
        Output::Text => {
            for outcome in outcomes {
                let who = outcome.instance_id.as_deref().or(outcome.name.as_deref()).unwrap_or("?");
                match &outcome.result {
                    Ok(f) if f.exit_status == 0 => {}
                    Ok(f) => say::note(format_args!("{who}: exit status {}", f.exit_status)),
                    Err(why) => say::note(format_args!("{who}: not run: {why}")),
                }
            }
            Ok(())
        }
        Output::Json => {
            let text = |c: &Captured| String::from_utf8_lossy(&c.bytes).into_owned();
            let all: Vec<serde_json::Value> = outcomes
                .iter()
                .map(|o| {
                    let finished = o.result.as_ref().ok();
                    serde_json::json!({
                        "instance_id": o.instance_id,
                        "name": o.name,
                        "exit_status": finished.map(|f| f.exit_status),
                        "error": o.result.as_ref().err(),
                        "stdout": finished.map_or(String::new(), |f| text(&f.stdout)),
                        "stderr": finished.map_or(String::new(), |f| text(&f.stderr)),
                        "truncated": finished.is_some_and(|f| f.stdout.truncated || f.stderr.truncated),
                        "seconds": (o.seconds * 1000.0).round() / 1000.0,
                    })
                })
                .collect();
            super::print_out(format!("{}\n", serde_json::Value::Array(all)).as_bytes())?;
            Ok(())
        }
    }
}
