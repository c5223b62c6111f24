//! `eic ssh`: look up the instance, push a one-time key, and run the system ssh.

use crate::cli::{Global, SshArgs};

pub async fn run(_global: &Global, _args: &SshArgs) -> anyhow::Result<i32> {
    anyhow::bail!("eic ssh is not implemented yet")
}
