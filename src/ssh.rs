//! `eic ssh`: look up the instance, push a one-time key, and run the system ssh with eic
//! itself as the ProxyCommand.

use std::net::IpAddr;
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};

use crate::aws::{self, Aws, Instance};
use crate::cli::{ConnectionType, Global, SshArgs};
use crate::error;
use crate::keys::{self, Key};
use crate::ssh_command::{self, Proxy, SshCommand};

/// How ssh reaches the instance: straight to an address, or through an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Direct(IpAddr),
    Endpoint(IpAddr),
}

/// Picks the address as the AWS CLI defines the connection types.
pub fn route(
    instance: &Instance,
    kind: ConnectionType,
    forced_eice: bool,
    instance_ip: Option<IpAddr>,
) -> anyhow::Result<Route> {
    let eice = forced_eice || kind == ConnectionType::Eice;
    let route = match (kind, eice) {
        (_, true) => instance_ip
            .or(instance.private_ipv4)
            .or(instance.ipv6)
            .map(Route::Endpoint),
        (ConnectionType::Direct, false) => instance_ip
            .or(instance.public_ipv4)
            .or(instance.ipv6)
            .or(instance.private_ipv4)
            .map(Route::Direct),
        (_, false) => instance
            .public_ipv4
            .map(Route::Direct)
            .or(instance.private_ipv4.map(Route::Endpoint))
            .or(instance.ipv6.map(Route::Direct)),
    };
    route.ok_or_else(|| {
        error::usage(format!(
            "instance {} has no IP address to connect to with --connection-type {}",
            instance.id,
            match (kind, eice) {
                (_, true) => "eice (it needs a private IPv4 or an IPv6 address)",
                (ConnectionType::Direct, _) => "direct",
                _ => "auto",
            }
        ))
    })
}

pub async fn run(global: &Global, args: &SshArgs) -> anyhow::Result<i32> {
    // Until ssh runs, a signal ends eic through the normal path, so the key is removed.
    let mut signals = Signals::new()?;
    let prepared = tokio::select! {
        prepared = prepare(global, args) => prepared?,
        signo = signals.recv() => return Err(interrupted(signo)),
    };
    let Prepared { command, key, env } = prepared;
    if args.dry_run {
        return crate::print_out(format!("{}\n", command.display()).as_bytes());
    }
    let status = run_ssh(&command, &env, &key, &mut signals).await?;
    drop(key);
    Ok(exit_code(status))
}

struct Prepared {
    command: SshCommand,
    key: Key,
    /// Variables set (or removed) for ssh, and so for the ProxyCommand child.
    env: Vec<(&'static str, Option<String>)>,
}

async fn prepare(global: &Global, args: &SshArgs) -> anyhow::Result<Prepared> {
    let ssh = ssh_command::find_ssh().ok_or_else(|| {
        error::config(
            "ssh not found on PATH: install the OpenSSH client (e.g. `apt-get install openssh-client`)",
        )
    })?;
    let key = match &args.private_key_file {
        Some(path) if args.push_key => keys::from_file(path)?,
        Some(path) => keys::existing(path)?,
        None => keys::generate()?,
    };
    let aws = Aws::load(global).await?;
    let ec2 = aws.ec2().await?;
    let target = match (&args.instance_id, &args.name) {
        (Some(id), _) => aws::Target::Id(id),
        (None, Some(name)) => aws::Target::Name(name),
        (None, None) => unreachable!("clap requires --instance-id or --name"),
    };

    // DescribeInstances, the endpoint lookup and the key push are independent: all three go out
    // at once. The push needs the instance id, so with --name it waits for the lookup; the
    // endpoint lookup is dropped when the route turns out to be direct.
    let eice = args.eice_options.clone().unwrap_or_default();
    let endpoints = (args.connection_type != ConnectionType::Direct || args.eice_options.is_some())
        .then(|| {
            tokio::spawn(aws::lookup_endpoints(
                ec2.clone(),
                eice.endpoint_id.clone(),
                eice.dns_name.clone(),
            ))
        });
    let instance_connect = aws.instance_connect().await?;
    // Nothing is pushed for a dry run, or for the user's own key unless asked to.
    let public = key.public.clone().filter(|_| !args.dry_run);
    let push = |id: String| {
        let public = public.clone()?;
        let client = instance_connect.clone();
        let (user, region) = (args.os_user.clone(), aws.region.clone());
        Some(tokio::spawn(async move {
            aws::send_ssh_public_key(&client, &id, &user, &public, &region).await
        }))
    };
    let mut pushed = match target {
        aws::Target::Id(id) => push(id.to_string()),
        aws::Target::Name(_) => None,
    };
    let instance = aws::find_instance(&ec2, target, &aws.region).await?;
    instance.ensure_running()?;
    let route = route(
        &instance,
        args.connection_type,
        args.eice_options.is_some(),
        args.instance_ip,
    )?;
    tracing::debug!(?route, "route chosen");
    if pushed.is_none() {
        pushed = push(instance.id.clone());
    }
    let proxy = match (route, endpoints) {
        (Route::Endpoint(ip), Some(endpoints)) => {
            let (endpoint_id, dns_name) =
                joined(endpoints)
                    .await?
                    .choose(Some(&instance), aws.fips, &aws.region)?;
            let exe = std::env::current_exe()
                .context("cannot find eic's own path for the ProxyCommand")?;
            Some(Proxy {
                exe,
                endpoint_id,
                dns_name,
                private_ip: ip,
                remote_port: args.ssh_port,
                region: aws.region.clone(),
                max_tunnel_duration: eice.max_tunnel_duration,
                debug: global.debug,
            })
        }
        (Route::Endpoint(_), None) => {
            unreachable!("direct connections never route through an endpoint")
        }
        (Route::Direct(_), endpoints) => {
            if let Some(endpoints) = endpoints {
                endpoints.abort();
            }
            None
        }
    };
    if let Some(pushed) = pushed {
        joined(pushed).await?;
    }

    let address = match route {
        Route::Direct(ip) | Route::Endpoint(ip) => ip,
    };
    let command = SshCommand {
        ssh,
        key: key.path.clone(),
        user: args.os_user.clone(),
        address,
        port: args.ssh_port,
        instance_id: instance.id.clone(),
        proxy,
        local_forwarding: args.local_forwarding.clone(),
        verbose: global.debug,
        extra: args.ssh_args.clone(),
    };
    // The ProxyCommand child gets the credentials through its environment, never its argv.
    let credentials = aws.credentials().await?;
    let mut env = vec![
        (
            "AWS_ACCESS_KEY_ID",
            Some(credentials.access_key_id().to_string()),
        ),
        (
            "AWS_SECRET_ACCESS_KEY",
            Some(credentials.secret_access_key().to_string()),
        ),
        (
            "AWS_SESSION_TOKEN",
            credentials.session_token().map(str::to_string),
        ),
    ];
    if let Some(bundle) = &aws.ca_bundle {
        env.push(("AWS_CA_BUNDLE", Some(bundle.display().to_string())));
    }
    Ok(Prepared { command, key, env })
}

/// The result of a spawned lookup.
async fn joined<T>(task: tokio::task::JoinHandle<anyhow::Result<T>>) -> anyhow::Result<T> {
    task.await
        .map_err(|e| anyhow::anyhow!("an AWS lookup did not complete: {e}"))?
}

/// Runs ssh as a child, passing on the signals a shell would, and returns its status.
async fn run_ssh(
    command: &SshCommand,
    env: &[(&str, Option<String>)],
    key: &Key,
    signals: &mut Signals,
) -> anyhow::Result<ExitStatus> {
    let mut cmd = tokio::process::Command::new(&command.ssh);
    cmd.args(command.args());
    for (name, value) in env {
        match value {
            Some(value) => cmd.env(name, value),
            None => cmd.env_remove(name),
        };
    }
    tracing::debug!(key = %key.path.display(), "running {}", command.ssh.display());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run {}", command.ssh.display()))?;
    let pid = child.id().map(|id| Pid::from_raw(id as i32));
    let mut interrupted_by = None;
    loop {
        tokio::select! {
            status = child.wait() => {
                let status = status?;
                // Interrupted (SIGINT sent to eic, or Ctrl-C outside raw mode): 130, as the
                // AWS CLI; ssh's own status otherwise.
                return match interrupted_by {
                    Some(signo) => Err(interrupted(signo)),
                    None => Ok(status),
                };
            }
            signo = signals.recv() => {
                // Pass the signal on, as a shell would; ssh decides how to end, then eic
                // removes the key.
                if let Some(pid) = pid {
                    let _ = kill(pid, signo);
                }
                interrupted_by = Some(signo);
                if signo != Signal::SIGINT {
                    // SIGTERM/SIGHUP/SIGQUIT: give ssh a moment, then make sure it is gone.
                    if tokio::time::timeout(Duration::from_secs(5), child.wait()).await.is_err() {
                        let _ = child.kill().await;
                    }
                    let _ = child.wait().await;
                    return Err(interrupted(signo));
                }
            }
        }
    }
}

/// ssh's exit status as eic's: its code, or 128 + the signal that ended it.
fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(error::OTHER)
}

fn interrupted(signo: Signal) -> anyhow::Error {
    match signo {
        Signal::SIGINT => error::interrupted(),
        other => anyhow::Error::new(error::Exit {
            code: 128 + other as i32,
            message: format!("terminated by {}", other.as_str()),
        }),
    }
}

/// SIGINT, SIGTERM, SIGHUP and SIGQUIT, caught so that eic always removes its key before it
/// exits.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
            quit: signal(SignalKind::quit())?,
        })
    }

    async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.int.recv() => Signal::SIGINT,
            _ = self.term.recv() => Signal::SIGTERM,
            _ = self.hup.recv() => Signal::SIGHUP,
            _ = self.quit.recv() => Signal::SIGQUIT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(public: Option<&str>, private: Option<&str>, ipv6: Option<&str>) -> Instance {
        let ip = |s: Option<&str>| s.map(|s| s.parse().unwrap());
        Instance {
            id: "i-1".into(),
            state: "running".into(),
            private_ipv4: ip(private),
            public_ipv4: ip(public),
            ipv6: ip(ipv6),
            vpc_id: Some("vpc-1".into()),
            subnet_id: Some("subnet-1".into()),
            availability_zone: None,
            name: None,
            launch_time: None,
        }
    }

    #[test]
    fn connection_types_pick_addresses_like_the_aws_cli() {
        use ConnectionType::*;
        let all = instance(Some("3.3.3.3"), Some("10.0.0.5"), Some("fd00::5"));
        let private_only = instance(None, Some("10.0.0.5"), None);
        let ipv6_only = instance(None, None, Some("fd00::5"));
        let none = instance(None, None, None);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let cases = [
            (&all, Auto, false, None, Some(Route::Direct(ip("3.3.3.3")))),
            (
                &private_only,
                Auto,
                false,
                None,
                Some(Route::Endpoint(ip("10.0.0.5"))),
            ),
            (
                &ipv6_only,
                Auto,
                false,
                None,
                Some(Route::Direct(ip("fd00::5"))),
            ),
            (
                &all,
                Direct,
                false,
                None,
                Some(Route::Direct(ip("3.3.3.3"))),
            ),
            (
                &ipv6_only,
                Direct,
                false,
                None,
                Some(Route::Direct(ip("fd00::5"))),
            ),
            (
                &private_only,
                Direct,
                false,
                None,
                Some(Route::Direct(ip("10.0.0.5"))),
            ),
            (
                &all,
                Eice,
                false,
                None,
                Some(Route::Endpoint(ip("10.0.0.5"))),
            ),
            (
                &ipv6_only,
                Eice,
                false,
                None,
                Some(Route::Endpoint(ip("fd00::5"))),
            ),
            (
                &all,
                Auto,
                true,
                None,
                Some(Route::Endpoint(ip("10.0.0.5"))),
            ),
            (
                &all,
                Eice,
                false,
                Some(ip("10.0.0.9")),
                Some(Route::Endpoint(ip("10.0.0.9"))),
            ),
            (
                &all,
                Direct,
                false,
                Some(ip("1.2.3.4")),
                Some(Route::Direct(ip("1.2.3.4"))),
            ),
            (&none, Auto, false, None, None),
            (&none, Eice, false, None, None),
        ];
        for (instance, kind, forced, ip, want) in cases {
            let got = route(instance, kind, forced, ip).ok();
            assert_eq!(got, want, "{kind:?} forced={forced} ip={ip:?}");
        }
        let err = route(&none, Auto, false, None).unwrap_err();
        assert_eq!(error::exit_code(&err), error::USAGE);
    }
}
