//! What eic tells the user: one funnel to stderr that owns the `eic: ` prefix. Commands, and
//! layers for what must be said mid-operation (a wait for a free tunnel, a cache warning),
//! call it; nothing else writes to stderr but the debug logs. In proxy mode stdout is the SSH
//! stream: nothing here ever touches it.

use std::fmt::Display;
use std::sync::atomic::{AtomicBool, Ordering};

static DEBUG: AtomicBool = AtomicBool::new(false);

/// With `--debug`, errors also show their sources and debug forms.
pub(crate) fn set_debug(on: bool) {
    DEBUG.store(on, Ordering::Relaxed);
}

/// A fact or a step: `eic: TEXT`.
pub fn note(text: impl Display) {
    eprintln!("eic: {text}");
}

/// Something to know that is not a failure: `eic: warning: TEXT`.
pub(crate) fn warn(text: impl Display) {
    eprintln!("eic: warning: {text}");
}

/// The error that ends eic: what failed and what to do, in a line or two (each message in
/// its chain, which eic writes to be read). With `--debug`, also its debug form.
pub fn error(err: &anyhow::Error) {
    eprintln!("eic: error: {err:#}");
    if DEBUG.load(Ordering::Relaxed) {
        eprintln!("eic: debug: {err:?}");
    }
}

/// Another program's stderr line, already labelled by the caller, in one write so that lines
/// of programs running side by side never mix.
pub(crate) fn relay(line: &[u8]) {
    use std::io::Write;
    let _ = std::io::stderr().lock().write_all(line);
}
