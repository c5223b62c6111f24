//! `eic completions SHELL`: a completion script, generated from the same definitions as `--help`.

use crate::cli::Cli;

pub fn run(shell: clap_complete::Shell) -> anyhow::Result<i32> {
    let mut command = <Cli as clap::CommandFactory>::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "eic", &mut script);
    super::print_out(&script)
}
