//! `eic proxy HOST PORT USER`: the ProxyCommand for ssh_config. Resolves HOST (an instance id,
//! a Name tag, or NAME.eic), pushes eic's key for USER once per validity window, then tunnels
//! stdin/stdout like `open-tunnel`.

use std::time::Duration;

use crate::aws::{self, Aws, Target};
use crate::cli::{parse_instance_id, Global, ProxyArgs};
use crate::open_tunnel::{self, Opener};
use crate::presign::TunnelTarget;
use crate::push_cache;
use crate::{error, keys};

/// The instance that ssh's `%h` names.
pub fn target(host: &str) -> Target<'_> {
    match parse_instance_id(host) {
        Ok(_) => Target::Id(host),
        Err(_) => Target::Name(host.strip_suffix(".eic").unwrap_or(host)),
    }
}

pub async fn run(global: &Global, args: &ProxyArgs) -> anyhow::Result<i32> {
    let key = keys::dedicated(args.key_file.as_deref())?;
    let aws = Aws::load(global).await?;
    let ec2 = aws.ec2().await?;
    // The instance and the region's endpoints are looked up at once.
    let (instance, endpoints) = tokio::join!(
        aws::find_instance(&ec2, target(&args.host), &aws.region),
        aws::lookup_endpoints(ec2.clone(), None, None),
    );
    let instance = instance?;
    instance.ensure_running()?;
    let private_ip = instance.tunnel_address().ok_or_else(|| {
        error::usage(format!(
            "instance {} has no private IPv4 or IPv6 address to tunnel to",
            instance.id
        ))
    })?;
    let (endpoint_id, dns_name) = endpoints?.choose(Some(&instance), aws.fips, &aws.region)?;
    let public = key
        .public
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("{}: no public key to push", key.path.display()))?;
    push_cache::push_once(&instance.id, &args.user, public, || async {
        let client = aws.instance_connect().await?;
        aws::send_ssh_public_key(&client, &instance.id, &args.user, public, &aws.region).await
    })
    .await?;

    let target = TunnelTarget {
        dns_name,
        endpoint_id,
        private_ip,
        remote_port: args.port,
        max_tunnel_duration: None,
    };
    let timeout = Duration::from_secs(args.connect_timeout.into());
    let opener = Opener::new(aws, target, timeout)?;
    open_tunnel::stdio(&opener).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_name_instances_by_id_or_name_tag() {
        assert!(matches!(
            target("i-0123456789abcdef0"),
            Target::Id("i-0123456789abcdef0")
        ));
        assert!(matches!(target("web-1.eic"), Target::Name("web-1")));
        assert!(matches!(target("web-1"), Target::Name("web-1")));
        assert!(matches!(target("i-bad.eic"), Target::Name("i-bad")));
    }
}
