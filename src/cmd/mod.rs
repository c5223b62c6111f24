//! One module per subcommand, each reading top to bottom as its flow over the layers.

pub mod completions;
pub mod exec;
pub mod list;
pub mod listen;
pub mod man;
pub mod open_tunnel;
pub mod proxy;
pub mod rdp;
pub mod serial_console;
pub mod ssh;
pub mod ssh_config;

use std::sync::Arc;
use std::time::SystemTime;

use crate::aws::{Aws, CaBundle, Settings, Signing};
use crate::cli::TunnelPlan;
use crate::resolve::{self, GivenEndpoint, TunnelTo};
use crate::target::{ChosenEndpoint, TunnelTarget};
use crate::tunnel::{Opener, Signer};

/// Presigns the tunnel to `target` now (valid 60 s) into `file`, 0600, for the ProxyCommand
/// child of `eic ssh` or `eic exec`: the child reads it and holds no credential.
async fn write_presigned_url(
    aws: &Aws,
    target: &crate::target::TunnelTarget,
    file: &std::path::Path,
) -> anyhow::Result<()> {
    let credentials = aws.signing.credentials().await?;
    let url = crate::presign::presign(target, &credentials, &aws.region, SystemTime::now())?;
    crate::private::write_file(file, url.as_bytes(), 0o600, true)?;
    Ok(())
}

/// Writes command output to stdout; a reader that went away (`| head`) is not an error.
fn print_out(bytes: &[u8]) -> anyhow::Result<i32> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(0),
    }
}

/// What opens `open-tunnel`'s tunnels. With the endpoint's id and DNS name and the address all
/// given, no API call is made, and with credentials in the environment no profile is read.
async fn opener(settings: &Settings, plan: TunnelPlan) -> anyhow::Result<Opener> {
    let (port, max) = (plan.remote_port, plan.max_tunnel_duration);
    let (signing, ca_bundle, target) = match (plan.to, Signing::from_env(settings)) {
        (
            TunnelTo::Address { ip, endpoint: GivenEndpoint { id, dns_name: Some(dns_name) } },
            Some(signing),
        ) => {
            let target = TunnelTarget::new(ChosenEndpoint { id, dns_name }, ip, port, max);
            (Arc::new(signing), CaBundle::named(settings)?, target)
        }
        (to, _) => {
            let aws = Aws::load(settings).await?;
            let target = resolve::tunnel(&aws, to, port, max).await?;
            (aws.signing, aws.ca_bundle, target)
        }
    };
    tracing::debug!(?target, "tunnel target");
    Opener::new(Signer::Credentials(signing), ca_bundle.as_ref(), target, plan.connect_timeout)
}
