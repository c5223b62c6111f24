//! `eic proxy HOST PORT USER`: the ProxyCommand of `eic ssh-config`'s block. Resolves HOST (an
//! instance id, a Name tag, or NAME.eic), pushes eic's key for USER once per validity window,
//! then tunnels stdin and stdout like `open-tunnel`.

use crate::aws::{Aws, Settings};
use crate::cli::ProxyPlan;
use crate::resolve;
use crate::tunnel::{Opener, Signer};
use crate::{keys, local, push_cache};

pub async fn run(settings: &Settings, plan: ProxyPlan) -> anyhow::Result<i32> {
    let key = keys::dedicated(plan.key_file.as_deref())?;
    let aws = Aws::load(settings).await?;
    let (instance, target) =
        resolve::instance_tunnel(&aws, &plan.instance, None, plan.port, None).await?;
    let public = key
        .public
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("{}: no public key to push", key.path.display()))?;
    let who = format!("{}\0{}", aws.identity, aws.region);
    push_cache::push_once(&who, &instance.id, &plan.os_user, public, || {
        aws.send_ssh_public_key(&instance.id, &plan.os_user, public)
    })
    .await?;

    let opener = Opener::new(
        Signer::Credentials(aws.signing),
        aws.ca_bundle.as_ref(),
        target,
        plan.connect_timeout,
    )?;
    local::relay_stdio(&opener, false).await?;
    Ok(0)
}
