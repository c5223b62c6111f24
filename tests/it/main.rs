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

mod common;

mod architecture;
mod cli;
mod hardening;
mod open_tunnel;
mod open_tunnel_faults;
mod presign_vectors;
mod properties;
mod ssh;
mod ssh_config;
mod standin_api;
mod standin_e2e;
mod standin_sigv4_vectors;
mod standin_sshd;
mod standin_tunnel;
