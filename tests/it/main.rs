//! eic's integration tests, in one test binary (as ripgrep does): one link instead of thirteen.
//!
//! Each module was a test file of its own: the end-to-end tests of `eic` (run as a real binary
//! against the stand-in and a real sshd), and, as `standin_*`, the stand-in's own tests. Run one
//! module, or one test, by its path:
//!
//! ```text
//! cargo test --test it hardening::
//! cargo test --test it ssh::throttled_key_push_is_retried -- --nocapture
//! ```

// On every platform (Linux, macOS, Windows).
mod architecture;
mod cli;
mod presign_vectors;
mod properties;
mod standin_sigv4_vectors;

// End to end, against the stand-in and a real sshd (`/usr/sbin/sshd`): Linux and macOS. The
// tests that read `/proc` (argv, environ, fds, process states) are marked Linux only.
#[cfg(unix)]
mod common;
#[cfg(unix)]
mod fleet;
#[cfg(unix)]
mod hardening;
#[cfg(unix)]
mod open_tunnel;
#[cfg(unix)]
mod open_tunnel_faults;
#[cfg(unix)]
mod picker;
#[cfg(unix)]
mod rdp;
#[cfg(unix)]
mod serial_console;
#[cfg(unix)]
mod sharing;
#[cfg(unix)]
mod ssh;
#[cfg(unix)]
mod ssh_config;
#[cfg(unix)]
mod standin_api;
#[cfg(unix)]
mod standin_e2e;
#[cfg(unix)]
mod standin_fleet;
#[cfg(unix)]
mod standin_serial;
#[cfg(unix)]
mod standin_sshd;
#[cfg(unix)]
mod standin_tunnel;
