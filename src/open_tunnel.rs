//! `eic open-tunnel`: resolve the endpoint and address, then relay stdin/stdout or serve a
//! local listener.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::aws::{self, Aws};
use crate::cli::{Global, TunnelArgs};
use crate::presign::{self, TunnelTarget};
use crate::tunnel::{self, Closed, Tunnel};
use crate::{error, listener};

/// Opens tunnels to one target, each with a freshly presigned URL.
pub struct Opener {
    aws: Aws,
    target: TunnelTarget,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
}

impl Opener {
    pub fn new(aws: Aws, target: TunnelTarget, timeout: Duration) -> anyhow::Result<Opener> {
        let tls = tunnel::tls_config(aws.ca_bundle.as_deref())?;
        Ok(Opener {
            aws,
            target,
            tls,
            timeout,
        })
    }

    pub fn target(&self) -> &TunnelTarget {
        &self.target
    }

    pub async fn open(&self) -> anyhow::Result<Tunnel> {
        let credentials = self.aws.credentials().await?;
        let url = presign::presign(
            &self.target,
            &credentials,
            &self.aws.region,
            SystemTime::now(),
        )?;
        tracing::debug!(url = %presign::redact(&url), "opening tunnel");
        let (host, port) = split_host_port(&self.target.dns_name);
        Tunnel::connect(&url, host, port, self.tls.clone(), self.timeout).await
    }

    /// Explains how a tunnel ended, naming the duration limit when that is what ended it.
    pub fn explain_end(&self, result: anyhow::Result<()>, started: Instant) -> anyhow::Result<()> {
        let limit = self.target.max_tunnel_duration.map(u64::from);
        // The endpoint's clock started about when ours did; allow it a little lead, but never
        // enough to blame the limit for a tunnel that ended early on.
        let at_limit = limit.is_some_and(|l| {
            let l = Duration::from_secs(l);
            started.elapsed() + (l / 10).min(Duration::from_secs(2)) >= l
        });
        match result {
            Ok(()) if at_limit => {
                eprintln!(
                    "eic: the tunnel reached its maximum duration of {} s (--max-tunnel-duration)",
                    limit.unwrap_or_default()
                );
                Ok(())
            }
            Err(e) if at_limit && e.is::<Closed>() => Err(e.context(format!(
                "the tunnel reached its maximum duration of {} s (--max-tunnel-duration)",
                limit.unwrap_or_default()
            ))),
            other => other,
        }
    }
}

/// `host[:port]` of an endpoint's DNS name; 443 when no port is given.
fn split_host_port(dns_name: &str) -> (&str, u16) {
    match dns_name.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().unwrap_or(443)),
        None => (dns_name, 443),
    }
}

pub async fn run(global: &Global, args: &TunnelArgs) -> anyhow::Result<i32> {
    let all_given = args.instance_connect_endpoint_id.is_some()
        && args.instance_connect_endpoint_dns_name.is_some()
        && args.private_ip_address.is_some();
    let aws = match all_given.then(|| Aws::from_env(global)).flatten() {
        Some(aws) => aws,
        None => Aws::load(global).await?,
    };
    let target = resolve(&aws, args).await?;
    tracing::debug!(?target, "tunnel target");
    let timeout = Duration::from_secs(args.connect_timeout.into());
    let opener = Arc::new(Opener::new(aws, target, timeout)?);
    match args.local_port {
        None => stdio(&opener).await,
        Some(port) => {
            listener::serve(
                opener,
                args.bind,
                port,
                args.max_websocket_connections.into(),
            )
            .await
        }
    }
}

/// The endpoint and address to tunnel to; no API call when all three are given.
async fn resolve(aws: &Aws, args: &TunnelArgs) -> anyhow::Result<TunnelTarget> {
    let tunnel_target = |endpoint_id: String, dns_name: String, private_ip: IpAddr| TunnelTarget {
        dns_name,
        endpoint_id,
        private_ip,
        remote_port: args.remote_port,
        max_tunnel_duration: args.max_tunnel_duration,
    };
    if let (Some(id), Some(dns), Some(ip)) = (
        &args.instance_connect_endpoint_id,
        &args.instance_connect_endpoint_dns_name,
        args.private_ip_address,
    ) {
        return Ok(tunnel_target(id.clone(), dns.clone(), ip));
    }
    let ec2 = aws.ec2().await?;
    // Given the private IP (and so the endpoint id), the instance is not looked up, as in the
    // AWS CLI: ec2:DescribeInstances is not needed.
    let target = match (&args.instance_id, &args.name) {
        _ if args.private_ip_address.is_some() => None,
        (Some(id), _) => Some(aws::Target::Id(id)),
        (None, Some(name)) => Some(aws::Target::Name(name)),
        (None, None) => None,
    };
    // The instance and the endpoint are looked up at once; the instance's error comes first.
    let find_instance = async {
        match target {
            Some(target) => aws::find_instance(&ec2, target, &aws.region)
                .await
                .map(Some),
            None => Ok(None),
        }
    };
    let endpoints = aws::lookup_endpoints(
        ec2.clone(),
        args.instance_connect_endpoint_id.clone(),
        args.instance_connect_endpoint_dns_name.clone(),
    );
    let (instance, endpoints) = tokio::join!(find_instance, endpoints);
    let instance = instance?;
    let private_ip = match (args.private_ip_address, &instance) {
        (Some(ip), _) => ip,
        (None, Some(instance)) => instance.tunnel_address().ok_or_else(|| {
            error::usage(format!(
                "instance {} has no private IPv4 or IPv6 address to tunnel to",
                instance.id
            ))
        })?,
        (None, None) => unreachable!("validated: --instance-id or --private-ip-address"),
    };
    let (endpoint_id, dns) = endpoints?.choose(instance.as_ref(), aws.fips, &aws.region)?;
    Ok(tunnel_target(endpoint_id, dns, private_ip))
}

/// Stdio mode, as ssh's ProxyCommand uses it.
pub async fn stdio(opener: &Opener) -> anyhow::Result<i32> {
    let tunnel = opener.open().await?;
    let started = Instant::now();
    let result = tunnel::pump(
        tunnel::stdin(),
        tunnel::stdout(),
        tunnel,
        std::future::pending(),
    )
    .await;
    opener.explain_end(result, started)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::split_host_port;

    #[test]
    fn host_and_port_of_dns_names() {
        assert_eq!(
            split_host_port("eice.example.com"),
            ("eice.example.com", 443)
        );
        assert_eq!(split_host_port("localhost:8443"), ("localhost", 8443));
    }
}
