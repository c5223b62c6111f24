//! The `eic` binary: parse, run, and map the outcome to an exit code in one place.
#![forbid(unsafe_code)]

use clap::error::ErrorKind;
use clap::Parser;

fn main() {
    eic::forget_empty_aws_variables();
    let code = match eic::cli::Cli::try_parse() {
        Ok(cli) => match eic::run(cli) {
            Ok(code) => code,
            Err(err) => {
                eic::say::error(&err);
                eic::error::exit_code(&err)
            }
        },
        Err(err) => match err.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                let _ = err.print();
                0
            }
            // A bad value: one line naming the option and the expected form.
            ErrorKind::ValueValidation | ErrorKind::InvalidValue => {
                let rendered = err.render().to_string();
                eic::say::note(rendered.lines().next().unwrap_or_default());
                eic::error::USAGE
            }
            _ => {
                let _ = err.print();
                eic::error::USAGE
            }
        },
    };
    std::process::exit(code);
}
