//! eic: a fast, native clone of `aws ec2-instance-connect ssh` and `open-tunnel`.
//!
//! `main.rs` parses the command line and maps errors to exit codes; everything else is here,
//! one module per boundary.
#![forbid(unsafe_code)]

pub mod aws;
pub mod cli;
pub mod error;
pub mod keys;
pub mod listener;
pub mod memcpy;
pub mod open_tunnel;
pub mod presign;
pub mod proxy;
pub mod push_cache;
pub mod ssh;
pub mod ssh_command;
pub mod ssh_config;
pub mod ssh_proxy;
pub mod tunnel;

use std::io::IsTerminal;

use cli::{Cli, Command};

/// Runs a parsed command line and returns the process's exit status.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    cli.validate(std::io::stdin().is_terminal())?;
    init_logging(cli.global.debug);
    install_default_crypto();
    let listener = matches!(&cli.command, Command::OpenTunnel(t) if t.local_port.is_some());
    let runtime = if listener {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    };
    runtime.block_on(async {
        match &cli.command {
            Command::Ssh(args) => ssh::run(&cli.global, args).await,
            Command::OpenTunnel(args) => open_tunnel::run(&cli.global, args).await,
            Command::Proxy(args) => ssh_proxy::run(&cli.global, args).await,
            Command::SshConfig(args) => ssh_config::run(args),
            Command::Completions { shell } => {
                let mut command = <Cli as clap::CommandFactory>::command();
                let mut script = Vec::new();
                clap_complete::generate(*shell, &mut command, "eic", &mut script);
                print_out(&script)
            }
            Command::Man { command } => print_out(&cli::man_page(command.as_deref())?),
        }
    })
}

/// Writes command output to stdout; a reader that went away (`| head`) is not an error.
pub fn print_out(bytes: &[u8]) -> anyhow::Result<i32> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(0),
    }
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
        let sdk = [
            "aws_config",
            "aws_smithy_runtime",
            "aws_sdk_ec2",
            "aws_sdk_ec2instanceconnect",
        ];
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
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(filter)
        .try_init();
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
