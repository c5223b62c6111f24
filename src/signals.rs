//! The one place signals are caught, mapped to exit codes and passed on to ssh.

use anyhow::Context;

use crate::error;

/// A signal that ends eic (or, with ssh running, that eic passes on to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Interrupt,
    Terminate,
    Hangup,
    Quit,
}

impl Signal {
    /// The signal's number and name.
    fn parts(self) -> (i32, &'static str) {
        match self {
            Signal::Hangup => (1, "SIGHUP"),
            Signal::Interrupt => (2, "SIGINT"),
            Signal::Quit => (3, "SIGQUIT"),
            Signal::Terminate => (15, "SIGTERM"),
        }
    }

    /// As a shell reports it: 128 + the signal's number (130 for Ctrl-C).
    pub fn exit_code(self) -> i32 {
        128 + self.parts().0
    }

    /// The error eic ends with: "interrupted" (130) for Ctrl-C, "terminated by SIG..." else.
    pub fn error(self) -> anyhow::Error {
        if self == Signal::Interrupt {
            return error::interrupted();
        }
        let message = format!("terminated by {}", self.parts().1);
        anyhow::Error::new(error::Exit { code: self.exit_code(), message })
    }

    /// Passes the signal on to the process `pid`, as a shell would.
    #[cfg(unix)]
    pub fn forward(self, pid: u32) {
        use nix::sys::signal::{kill, Signal as Nix};
        if let (Ok(signal), Ok(pid)) = (Nix::try_from(self.parts().0), i32::try_from(pid)) {
            let _ = kill(nix::unistd::Pid::from_raw(pid), signal);
        }
    }
}

/// SIGINT, SIGTERM, SIGHUP and SIGQUIT, caught from the moment this exists: eic then ends
/// through its normal path (its key removed, its tunnels closed), never by the default action.
#[cfg(unix)]
pub struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    pub fn catch() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        let catch = |kind: SignalKind| signal(kind).context("cannot catch signals");
        Ok(Signals {
            int: catch(SignalKind::interrupt())?,
            term: catch(SignalKind::terminate())?,
            hup: catch(SignalKind::hangup())?,
            quit: catch(SignalKind::quit())?,
        })
    }

    /// The next signal.
    pub async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.int.recv() => Signal::Interrupt,
            _ = self.term.recv() => Signal::Terminate,
            _ = self.hup.recv() => Signal::Hangup,
            _ = self.quit.recv() => Signal::Quit,
        }
    }
}
