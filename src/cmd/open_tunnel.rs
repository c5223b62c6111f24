//! `eic open-tunnel` without `--local-port`: stdin and stdout are the tunnel, as ssh's
//! ProxyCommand uses them.

use crate::aws::Settings;
use crate::cli::TunnelPlan;
use crate::local;

pub async fn run(settings: &Settings, plan: TunnelPlan) -> anyhow::Result<i32> {
    let opener = super::opener(settings, plan).await?;
    local::relay_stdio(&opener).await?;
    Ok(0)
}
