//! `eic open-tunnel` without `--local-port`: stdin and stdout are the tunnel, as ssh's
//! ProxyCommand uses them.

use anyhow::Context;

use crate::aws::{CaBundle, Settings};
use crate::cli::{PresignedPlan, TunnelPlan};
use crate::local;
use crate::tunnel::{Opener, Signer};

pub async fn run(settings: &Settings, plan: TunnelPlan) -> anyhow::Result<i32> {
    let opener = super::opener(settings, plan).await?;
    local::relay_stdio(&opener, false).await?;
    Ok(0)
}

/// As `eic ssh`'s ProxyCommand: the URL was presigned by the parent, which holds the
/// credentials, and is read once from its private file.
pub async fn presigned(settings: &Settings, plan: PresignedPlan) -> anyhow::Result<i32> {
    // A shared connection's tunnel outlives the `eic ssh` that started it: out of that one's
    // session, so that its Ctrl-C or Ctrl-Z does not reach the tunnel of every later session.
    #[cfg(unix)]
    if plan.detach_stderr {
        let _ = nix::unistd::setsid();
    }
    let path = &plan.url_file;
    let url = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the presigned URL {}", path.display()))?;
    let _ = std::fs::remove_file(path);
    let signer = Signer::Url(url.trim().to_string());
    let ca_bundle = CaBundle::named(settings)?;
    let opener = Opener::new(signer, ca_bundle.as_ref(), plan.target, plan.connect_timeout)?;
    local::relay_stdio(&opener, plan.detach_stderr).await?;
    Ok(0)
}
