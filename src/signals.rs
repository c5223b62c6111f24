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
    /// Any other signal whose default action would end eic (SIGUSR1, SIGALRM, ...): caught so
    /// that eic ends through its normal path all the same.
    #[cfg(unix)]
    Other(nix::sys::signal::Signal),
}

impl Signal {
    /// The signal's number and name.
    fn parts(self) -> (i32, &'static str) {
        match self {
            Signal::Hangup => (1, "SIGHUP"),
            Signal::Interrupt => (2, "SIGINT"),
            Signal::Quit => (3, "SIGQUIT"),
            Signal::Terminate => (15, "SIGTERM"),
            #[cfg(unix)]
            Signal::Other(signal) => (signal as i32, signal.as_str()),
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

    /// Passes the signal on to the process `pid` (ssh), as a shell would. ssh handles SIGINT,
    /// SIGTERM, SIGHUP and SIGQUIT (it restores the terminal, ends its session); any other
    /// would kill it on the spot, terminal left raw, so it gets SIGTERM instead.
    #[cfg(unix)]
    pub fn forward(self, pid: u32) {
        use nix::sys::signal::{kill, Signal as Nix};
        let signal = match self {
            Signal::Other(_) => Ok(Nix::SIGTERM),
            _ => Nix::try_from(self.parts().0),
        };
        if let (Ok(signal), Ok(pid)) = (signal, i32::try_from(pid)) {
            let _ = kill(nix::unistd::Pid::from_raw(pid), signal);
        }
    }
}

/// Every signal whose default action ends the process, and that may be caught: SIGINT,
/// SIGTERM, SIGHUP, SIGQUIT and the rest below. Not caught:
/// - SIGKILL and SIGSTOP: they cannot be;
/// - the faults (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGSYS, SIGTRAP, SIGEMT): a handler that
///   returns runs the faulting code again; nor SIGABRT, which `abort()` ends with regardless;
/// - SIGPIPE: Rust's runtime ignores it, so that a reader that goes away is a write error,
///   which eic handles; caught, it would end a listener whenever a client leaves;
/// - the real-time signals: where their range starts (past those the C library keeps for
///   itself) only libc's `SIGRTMIN()` tells, and no tool sends them unasked.
#[cfg(unix)]
fn caught() -> Vec<Signal> {
    use nix::sys::signal::Signal as Nix;
    let mut caught = vec![Signal::Interrupt, Signal::Terminate, Signal::Hangup, Signal::Quit];
    let others = [
        Nix::SIGUSR1,
        Nix::SIGUSR2,
        Nix::SIGALRM,
        Nix::SIGVTALRM,
        Nix::SIGPROF,
        Nix::SIGXCPU,
        Nix::SIGXFSZ,
    ];
    caught.extend(others.map(Signal::Other));
    // SIGPOLL, where there is one, is SIGIO.
    #[cfg(not(target_os = "haiku"))]
    caught.push(Signal::Other(Nix::SIGIO));
    #[cfg(any(target_os = "linux", target_os = "android"))]
    caught.push(Signal::Other(Nix::SIGPWR));
    // Unused by Linux itself, but its default action ends the process too.
    #[cfg(all(
        any(target_os = "linux", target_os = "android"),
        not(any(
            target_arch = "mips",
            target_arch = "mips32r6",
            target_arch = "mips64",
            target_arch = "mips64r6",
            target_arch = "sparc",
            target_arch = "sparc64"
        ))
    ))]
    caught.push(Signal::Other(Nix::SIGSTKFLT));
    caught
}

/// The signals of [`caught`], caught from the moment this exists: eic then ends through its
/// normal path (its key removed, its tunnels closed), never by the default action.
#[cfg(unix)]
pub struct Signals {
    caught: Vec<(Signal, tokio::signal::unix::Signal)>,
}

#[cfg(unix)]
impl Signals {
    pub fn catch() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        let caught = caught()
            .into_iter()
            .map(|s| {
                let stream = signal(SignalKind::from_raw(s.parts().0))
                    .with_context(|| format!("cannot catch {}", s.parts().1))?;
                Ok((s, stream))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Signals { caught })
    }

    /// The next signal.
    pub async fn recv(&mut self) -> Signal {
        std::future::poll_fn(|cx| {
            for (signal, stream) in &mut self.caught {
                if stream.poll_recv(cx).is_ready() {
                    return std::task::Poll::Ready(*signal);
                }
            }
            std::task::Poll::Pending
        })
        .await
    }
}

/// Runs `command` (ssh) and waits for it as a shell waits for its foreground job; returns its
/// exit status as a shell reports it (its code, or 128 + the signal that ended it). Signals are
/// passed on ([`Signal::forward`]): ssh decides how to end after SIGINT; after the others it gets 5 s, then SIGKILL, and eic
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

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use nix::sys::signal::Signal as Nix;

    fn numbers() -> Vec<i32> {
        caught().into_iter().map(|s| s.parts().0).collect()
    }

    #[test]
    fn every_signal_that_would_end_eic_is_caught() {
        #[cfg(target_os = "linux")]
        let linux_only: &[Nix] = &[Nix::SIGPWR];
        #[cfg(not(target_os = "linux"))]
        let linux_only: &[Nix] = &[];
        let want = [
            Nix::SIGINT,
            Nix::SIGTERM,
            Nix::SIGHUP,
            Nix::SIGQUIT,
            Nix::SIGUSR1,
            Nix::SIGUSR2,
            Nix::SIGALRM,
            Nix::SIGVTALRM,
            Nix::SIGPROF,
            Nix::SIGXCPU,
            Nix::SIGXFSZ,
            Nix::SIGIO,
        ];
        let numbers = numbers();
        for &signal in want.iter().chain(linux_only) {
            assert!(numbers.contains(&(signal as i32)), "{signal} is not caught");
        }
    }

    #[test]
    fn faults_and_what_cannot_or_need_not_be_caught_are_not() {
        let numbers = numbers();
        for signal in [
            Nix::SIGKILL,
            Nix::SIGSTOP,
            Nix::SIGSEGV,
            Nix::SIGBUS,
            Nix::SIGFPE,
            Nix::SIGILL,
            Nix::SIGSYS,
            Nix::SIGTRAP,
            Nix::SIGABRT,
            Nix::SIGPIPE,
            Nix::SIGCHLD,
            Nix::SIGWINCH,
            Nix::SIGTSTP,
            Nix::SIGCONT,
        ] {
            assert!(!numbers.contains(&(signal as i32)), "{signal} is caught");
        }
        let mut unique = numbers.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), numbers.len(), "a signal is listed twice: {numbers:?}");
    }

    #[test]
    fn each_ends_eic_with_128_plus_its_number_and_name() {
        for signal in caught() {
            let (number, name) = signal.parts();
            assert_eq!(signal.exit_code(), 128 + number);
            assert_eq!(Nix::try_from(number).unwrap().as_str(), name);
            let error = signal.error();
            assert_eq!(error::exit_code(&error), 128 + number, "{name}");
            if signal != Signal::Interrupt {
                assert_eq!(error.to_string(), format!("terminated by {name}"));
            }
        }
        let usr1 = Signal::Other(Nix::SIGUSR1);
        assert_eq!(usr1.exit_code(), 128 + Nix::SIGUSR1 as i32);
        #[cfg(target_os = "linux")]
        assert_eq!(usr1.exit_code(), 138);
    }
}
