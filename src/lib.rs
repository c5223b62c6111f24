//! eic: a fast, native clone of `aws ec2-instance-connect ssh` and `open-tunnel`.
//!
//! ARCHITECTURE.md is the map: the rooms, the rules between them and the invariants.
#![forbid(unsafe_code)]

mod aws;
pub mod cli;
mod cmd;
pub mod error;
mod http_proxy;
mod keys;
mod local;
mod picker;
mod presign;
mod private;
mod push_cache;
mod resolve;
pub mod say;
mod serial_console;
mod sharing;
mod signals;
mod ssh_argv;
mod target;
mod tunnel;

// What the tests, the benches and the playground use besides the command line; the rest is
// private to the crate, so that rustc reports what nothing uses.
pub use cmd::ssh_config::install as install_ssh_config;
pub use http_proxy::{bypassed, HttpProxy};
pub use presign::presign;
pub use signals::Signals;
pub use ssh_argv::{shell_quote, split_ssh_args};
pub use target::TunnelTarget;

use std::io::IsTerminal;

use cli::{Cli, Invocation, Plan};

/// An AWS variable set to nothing counts as unset, as the AWS SDKs take it (`AWS_REGION=` is
/// no region, not the region ""). Call it first, while the process has one thread.
pub fn forget_empty_aws_variables() {
    for (name, value) in std::env::vars_os() {
        if value.is_empty() && name.to_str().is_some_and(|n| n.starts_with("AWS_")) {
            std::env::remove_var(name);
        }
    }
}

/// Runs a parsed command line and returns the process's exit status.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    let Invocation { settings, debug, plan } = cli.into_plan(std::io::stdin().is_terminal())?;
    init_logging(debug);
    say::set_debug(debug);
    install_default_crypto();
    let runtime = match plan {
        // The listener serves many tunnels: one worker per core, tokio's default.
        Plan::Listen(_) | Plan::Rdp(_) => {
            tokio::runtime::Builder::new_multi_thread().enable_all().build()?
        }
        _ => tokio::runtime::Builder::new_current_thread().enable_all().build()?,
    };
    let code = runtime.block_on(async {
        match plan {
            Plan::Ssh(plan) => cmd::ssh::run(&settings, plan).await,
            Plan::Exec(plan) => cmd::exec::run(&settings, plan).await,
            Plan::List(plan) => cmd::list::run(&settings, plan).await,
            Plan::Rdp(plan) => cmd::rdp::run(&settings, plan).await,
            Plan::SerialConsole(plan) => cmd::serial_console::run(&settings, plan).await,
            Plan::OpenTunnel(plan) => cmd::open_tunnel::run(&settings, plan).await,
            Plan::Listen(plan) => cmd::listen::run(&settings, plan).await,
            Plan::Presigned(plan) => cmd::open_tunnel::presigned(&settings, plan).await,
            Plan::Proxy(plan) => cmd::proxy::run(&settings, plan).await,
            Plan::SshConfig { install, force } => cmd::ssh_config::run(install, force),
            Plan::Completions(shell) => cmd::completions::run(shell),
            Plan::Man(command) => cmd::man::run(command.as_deref()),
        }
    });
    // A blocking read of stdin (a file, or on Windows any stdin) cannot be cancelled: leave it.
    runtime.shutdown_background();
    code
}

/// rustls is built with both aws-lc-rs and ring (see `tunnel::tls_config`), so it cannot pick a
/// process-wide provider by itself, and a rustls config built without naming one would panic.
/// Every config in eic names its provider; this makes aws-lc the answer for any that does not.
fn install_default_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Logs go to stderr only (in proxy mode stdout is the SSH stream). `--debug` shows eic's
/// own debug logs and the SDK's informational ones; neither carries secrets.
fn init_logging(debug: bool) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    // A fixed filter, not RUST_LOG: eic's own events, and with --debug the SDK's.
    let filter = if debug {
        let sdk = ["aws_config", "aws_smithy_runtime", "aws_sdk_ec2", "aws_sdk_ec2instanceconnect"];
        Targets::new()
            .with_target("eic", LevelFilter::DEBUG)
            .with_targets(sdk.map(|target| (target, LevelFilter::INFO)))
    } else {
        Targets::new().with_target("eic", LevelFilter::WARN)
    };
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(
            std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        )
        .with_target(false);
    let _ = tracing_subscriber::registry().with(fmt).with(filter).try_init();
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_config_without_a_named_provider_gets_aws_lc() {
        super::install_default_crypto();
        let provider = rustls::crypto::CryptoProvider::get_default().expect("installed");
        let aws_lc = rustls::crypto::aws_lc_rs::default_provider();
        let names = |p: &rustls::crypto::CryptoProvider| {
            p.kx_groups.iter().map(|g| g.name()).collect::<Vec<_>>()
        };
        assert_eq!(names(provider), names(&aws_lc));
        // The call that panics when rustls has two providers and none is installed.
        let _ = rustls::ClientConfig::builder();
    }
}
