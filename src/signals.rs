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

/// Runs `command` (ssh) and waits for it as a shell waits for its foreground job; returns its
/// exit status as a shell reports it (its code, or 128 + the signal that ended it). Signals are passed on:
/// ssh decides how to end after SIGINT; after the others it gets 5 s, then SIGKILL, and eic
/// ends with the signal's code. When ssh stops (`~^Z`), eic stops too, so that the shell gets
/// the terminal back; when eic is continued, it continues ssh.
#[cfg(unix)]
pub async fn foreground(
    mut command: std::process::Command,
    signals: &mut Signals,
) -> anyhow::Result<i32> {
    use nix::sys::signal::{kill, raise, Signal as Nix};
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    use nix::unistd::Pid;
    let child = command
        .spawn()
        .with_context(|| format!("cannot run {}", command.get_program().to_string_lossy()))?;
    let pid = child.id();
    let nix_pid = Pid::from_raw(i32::try_from(pid)?);
    // The child is reaped here, by waitpid, and never through `child`.
    let mut waiter = tokio::task::spawn_blocking(move || loop {
        match waitpid(nix_pid, Some(WaitPidFlag::WUNTRACED)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, signal, _)) => return Ok(128 + signal as i32),
            Ok(WaitStatus::Stopped(..)) => {
                // SIGSTOP, not SIGTSTP: a process group without a shell ignores SIGTSTP.
                let _ = raise(Nix::SIGSTOP);
                let _ = kill(nix_pid, Nix::SIGCONT);
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(anyhow::Error::new(e).context("cannot wait for ssh")),
        }
    });
    let mut ended_by = None;
    loop {
        tokio::select! {
            code = &mut waiter => {
                let code = code??;
                // After Ctrl-C (sent to eic, or outside ssh's raw mode): 130, as the AWS CLI.
                return ended_by.map_or(Ok(code), |signal: Signal| Err(signal.error()));
            }
            signal = signals.recv() => {
                signal.forward(pid);
                ended_by = Some(signal);
                if signal != Signal::Interrupt {
                    let timeout = std::time::Duration::from_secs(5);
                    if tokio::time::timeout(timeout, &mut waiter).await.is_err() {
                        let _ = kill(nix_pid, Nix::SIGKILL);
                        let _ = waiter.await;
                    }
                    return Err(signal.error());
                }
            }
        }
    }
}

/// Ctrl-C, Ctrl-Break and the console's close, caught from the moment this exists. A console
/// delivers Ctrl-C and Ctrl-Break to every process attached to it, ssh included, so they are
/// not passed on (and while ssh's raw mode is on, Ctrl-C is a keystroke for the remote side).
#[cfg(windows)]
pub struct Signals {
    ctrl_c: tokio::signal::windows::CtrlC,
    ctrl_break: tokio::signal::windows::CtrlBreak,
    close: tokio::signal::windows::CtrlClose,
}

#[cfg(windows)]
impl Signals {
    pub fn catch() -> anyhow::Result<Signals> {
        use tokio::signal::windows::{ctrl_break, ctrl_c, ctrl_close};
        Ok(Signals {
            ctrl_c: ctrl_c().context("cannot catch Ctrl-C")?,
            ctrl_break: ctrl_break().context("cannot catch Ctrl-Break")?,
            close: ctrl_close().context("cannot catch the console's close")?,
        })
    }

    /// The next console event: Ctrl-C is an interrupt, Ctrl-Break a quit, a close a hang-up.
    pub async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.ctrl_c.recv() => Signal::Interrupt,
            _ = self.ctrl_break.recv() => Signal::Quit,
            _ = self.close.recv() => Signal::Hangup,
        }
    }
}

/// Runs `command` (ssh) and waits for it. The console gives ssh its own Ctrl-C and Ctrl-Break:
/// eic waits for it to end, then ends with 130 (131 for Ctrl-Break). When the console closes,
/// Windows allows about 5 s: ssh is stopped at once, so that eic can remove its key.
#[cfg(windows)]
pub async fn foreground(
    command: std::process::Command,
    signals: &mut Signals,
) -> anyhow::Result<i32> {
    let program = command.get_program().to_owned();
    let mut child = tokio::process::Command::from(command)
        .spawn()
        .with_context(|| format!("cannot run {}", program.to_string_lossy()))?;
    let mut ended_by = None;
    loop {
        tokio::select! {
            status = child.wait() => {
                let code = status?.code().unwrap_or(crate::error::OTHER);
                return ended_by.map_or(Ok(code), |signal: Signal| Err(signal.error()));
            }
            signal = signals.recv() => {
                ended_by = Some(signal);
                if signal == Signal::Hangup {
                    let _ = child.kill().await;
                    return Err(signal.error());
                }
            }
        }
    }
}
