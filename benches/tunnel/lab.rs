//! The bench's world: the stand-in (EC2 and EC2 Instance Connect APIs, the EICE endpoint), a real
//! sshd behind it, plain TCP relays beside it (the reference path), the tunnel targets (a sink, a
//! source, an echo server), and helpers to run `eic`, `socat` and `ssh` as child processes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use eic::shell_quote;
use eic_standin::{Instance, Sshd, StandIn, World, TYPICAL_ENDPOINT_ID, TYPICAL_INSTANCE_ID};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinHandle;

/// The typical instance (port 22 -> the sshd).
pub const SSH_IP: &str = "10.0.0.5";
/// Instances whose port 3389 is a sink, a source and an echo server.
pub const SINK_IP: &str = "10.0.0.11";
pub const SOURCE_IP: &str = "10.0.0.12";
pub const ECHO_IP: &str = "10.0.0.13";
pub const TARGET_PORT: u16 = 3389;

/// Buffer size of the bench's own readers and writers, and of socat (`-b`), as eic's chunk.
pub const IO_CHUNK: usize = 64 * 1024;
const MIB: usize = 1 << 20;

pub struct Lab {
    pub standin: StandIn,
    pub sshd: Sshd,
    pub eic: PathBuf,
    pub home: tempfile::TempDir,
    /// XDG_RUNTIME_DIR of `eic ssh` (its one-time keys).
    pub runtime_dir: tempfile::TempDir,
    /// A client key authorized on the sshd for hours (the reference logs in with it).
    pub key: PathBuf,
    pub sink: Sink,
    pub source: Source,
    pub relay_ssh: SocketAddr,
    pub relay_sink: SocketAddr,
    pub relay_source: SocketAddr,
    pub relay_echo: SocketAddr,
    /// 1 MiB of pseudo-random bytes, written over and over.
    pub payload: Arc<Vec<u8>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Lab {
    pub async fn start(eic: PathBuf) -> anyhow::Result<Lab> {
        let sshd = tokio::task::spawn_blocking(Sshd::start).await?.context(
            "starting sshd (the bench needs /usr/sbin/sshd: apt-get install -y openssh-server)",
        )?;
        let payload = Arc::new(payload(MIB, 0x5eed));
        let (sink, sink_task) = Sink::start().await?;
        let (source, source_task) = Source::start(payload.clone()).await?;
        let (echo, echo_task) = eic_standin::tcp_echo().await?;
        let world = World::typical(sshd.addr())
            .authorized_keys_dir(sshd.authorized_keys_dir())
            .instance(Instance::new("i-0000000000000b011", SINK_IP).target(TARGET_PORT, sink.addr))
            .instance(
                Instance::new("i-0000000000000b012", SOURCE_IP).target(TARGET_PORT, source.addr),
            )
            .instance(Instance::new("i-0000000000000b013", ECHO_IP).target(TARGET_PORT, echo));
        let standin = StandIn::start(world).await?;
        let (relay_ssh, t1) = eic_standin::tcp_relay(sshd.addr()).await?;
        let (relay_sink, t2) = eic_standin::tcp_relay(sink.addr).await?;
        let (relay_source, t3) = eic_standin::tcp_relay(source.addr).await?;
        let (relay_echo, t4) = eic_standin::tcp_relay(echo).await?;

        let home = bench_home(&sshd)?;
        let key = home.path().join("id_bench");
        sshd.authorize_new_key(&key, Duration::from_secs(24 * 3600))?;
        let runtime_dir = tempfile::Builder::new().prefix("eic-bench-xdg").tempdir()?;
        Ok(Lab {
            standin,
            sshd,
            eic,
            home,
            runtime_dir,
            key,
            sink,
            source,
            relay_ssh,
            relay_sink,
            relay_source,
            relay_echo,
            payload,
            tasks: vec![sink_task, source_task, echo_task, t1, t2, t3, t4],
        })
    }

    /// Clears the AWS and proxy environment, points it at the stand-in, sets the bench's HOME.
    pub fn isolate(&self, cmd: &mut Command) {
        isolate(cmd, &self.standin, self.home.path(), self.runtime_dir.path());
    }

    /// `eic ARGS`, isolated.
    pub fn eic(&self, args: &[String]) -> Command {
        let mut cmd = Command::new(&self.eic);
        cmd.args(args);
        self.isolate(&mut cmd);
        cmd
    }

    /// `open-tunnel` with all ids given (no API call), as `eic ssh` builds its ProxyCommand.
    pub fn tunnel_args(&self, ip: &str, port: u16) -> Vec<String> {
        let region = self.standin.world().region.clone();
        [
            "open-tunnel",
            "--region",
            &region,
            "--instance-connect-endpoint-id",
            TYPICAL_ENDPOINT_ID,
            "--instance-connect-endpoint-dns-name",
            &self.standin.eice_dns_name(),
            "--private-ip-address",
            ip,
            "--remote-port",
            &port.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// The reference for a stdio tunnel: `socat -b 65536 - TCP:<relay>,nodelay`.
    pub fn socat(&self, relay: SocketAddr) -> Command {
        let mut cmd = Command::new("socat");
        cmd.args(socat_args(relay));
        self.isolate(&mut cmd);
        cmd
    }

    /// eic as ssh's ProxyCommand, exactly as `eic ssh` writes it.
    pub fn eic_proxy_command(&self) -> String {
        let mut words = vec![shell_quote(&self.eic.display().to_string())];
        words
            .extend(self.tunnel_args(SSH_IP, 22).iter().map(|w| shell_quote(w).replace('%', "%%")));
        words.join(" ")
    }

    /// socat through the plain relay to the sshd, as ssh's ProxyCommand.
    pub fn relay_proxy_command(&self) -> String {
        format!("socat {}", socat_args(self.relay_ssh).join(" "))
    }

    /// ssh options that keep the client away from the real ~/.ssh and never prompt.
    pub fn ssh_options(&self) -> Vec<String> {
        ssh_options(self.home.path())
    }

    /// `ssh` with `proxy` as ProxyCommand and the pre-authorized key, running `remote`.
    pub fn ssh(&self, proxy: &str, remote: &str) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(self.ssh_options());
        cmd.arg("-o").arg(format!("ProxyCommand={proxy}"));
        cmd.arg("-i").arg(&self.key);
        cmd.args(["-o", "IdentitiesOnly=yes"]);
        cmd.arg("-o").arg(format!("HostKeyAlias={TYPICAL_INSTANCE_ID}"));
        cmd.args(["-p", "22"]);
        cmd.arg(format!("{}@{SSH_IP}", self.sshd.user()));
        cmd.arg(remote);
        self.isolate(&mut cmd);
        cmd
    }

    /// `eic ssh --instance-id ... -- <isolating ssh options> REMOTE`: lookups, key push, ssh.
    pub fn eic_ssh(&self, remote: &str) -> Command {
        // A login of its own each time (B8 measures shared connections).
        self.eic_ssh_with(&["--no-reuse"], remote)
    }

    /// `eic ssh` with `options` before its `--`.
    pub fn eic_ssh_with(&self, options: &[&str], remote: &str) -> Command {
        let mut args: Vec<String> = ["ssh", "--instance-id", TYPICAL_INSTANCE_ID, "--os-user"]
            .iter()
            .chain([&self.sshd.user()])
            .chain(options)
            .chain(&["--"])
            .map(|s| s.to_string())
            .collect();
        args.extend(self.ssh_options());
        args.push(remote.into());
        self.eic(&args)
    }
}

/// Clears the AWS and proxy environment, points it at `standin`, sets HOME and XDG_RUNTIME_DIR.
fn isolate(cmd: &mut Command, standin: &StandIn, home: &Path, runtime_dir: &Path) {
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        if name.starts_with("AWS_") || name.to_ascii_lowercase().ends_with("_proxy") {
            cmd.env_remove(&key);
        }
    }
    cmd.envs(standin.env());
    cmd.env("HOME", home);
    cmd.env("XDG_RUNTIME_DIR", runtime_dir);
    cmd.kill_on_drop(true);
}

/// ssh options that keep the client away from the real ~/.ssh (`home`'s known_hosts only) and
/// never prompt.
fn ssh_options(home: &Path) -> Vec<String> {
    let known_hosts = home.join(".ssh/known_hosts");
    [
        "-F".into(),
        "/dev/null".into(),
        "-o".into(),
        format!("UserKnownHostsFile={}", known_hosts.display()),
        "-o".into(),
        "StrictHostKeyChecking=yes".into(),
        "-o".into(),
        "BatchMode=yes".into(),
        "-o".into(),
        "LogLevel=ERROR".into(),
        "-o".into(),
        "IdentityAgent=none".into(),
    ]
    .to_vec()
}

/// A throw-away HOME whose known_hosts trusts `sshd` under any name.
fn bench_home(sshd: &Sshd) -> anyhow::Result<tempfile::TempDir> {
    let home = tempfile::Builder::new().prefix("eic-bench-home").tempdir()?;
    std::fs::create_dir(home.path().join(".ssh"))?;
    // `*`: whatever HostKeyAlias is used (the instance id), it is this sshd.
    std::fs::write(
        home.path().join(".ssh/known_hosts"),
        format!("* {}\n", sshd.host_public_key()),
    )?;
    Ok(home)
}

// ---- B9's world: a fleet behind one endpoint ----

/// `StandIn::with_fleet(n)`: `n` instances behind one endpoint that allows 20 tunnels at once,
/// port 22 of each relayed to one sshd of its own; a HOME and runtime directory of its own.
pub struct Fleet {
    pub standin: StandIn,
    pub sshd: Sshd,
    /// The sshd daemon's pid (its per-connection forks are its children), when found.
    pub sshd_pid: Option<u32>,
    pub size: usize,
    eic: PathBuf,
    home: tempfile::TempDir,
    runtime_dir: tempfile::TempDir,
}

impl Fleet {
    pub async fn start(eic: PathBuf, size: usize) -> anyhow::Result<Fleet> {
        let (standin, sshd) = StandIn::with_fleet(size).await.context(
            "starting a fleet stand-in and its sshd (needs /usr/sbin/sshd: apt-get install -y openssh-server)",
        )?;
        let home = bench_home(&sshd)?;
        let runtime_dir = tempfile::Builder::new().prefix("eic-bench-xdg").tempdir()?;
        let sshd_pid = child_pid_with_arg(sshd.scratch_dir());
        Ok(Fleet { standin, sshd, sshd_pid, size, eic, home, runtime_dir })
    }

    fn eic(&self, args: &[String]) -> Command {
        let mut cmd = Command::new(&self.eic);
        cmd.args(args);
        isolate(&mut cmd, &self.standin, self.home.path(), self.runtime_dir.path());
        cmd
    }

    /// `eic exec --os-user U --parallel P --instance-id I1 ... --instance-id In -- <isolating
    /// ssh options> REMOTE` on the first `count` instances.
    pub fn exec(&self, count: usize, parallel: usize, remote: &str) -> Command {
        let mut args: Vec<String> = ["exec", "--os-user", self.sshd.user(), "--parallel"]
            .iter()
            .map(|s| s.to_string())
            .chain([parallel.to_string()])
            .collect();
        for i in 1..=count.min(self.size) {
            args.extend(["--instance-id".into(), World::fleet_instance_id(i)]);
        }
        args.push("--".into());
        args.extend(ssh_options(self.home.path()));
        args.push(remote.into());
        self.eic(&args)
    }

    /// `eic ssh --instance-id <the first instance> --os-user U --no-reuse -- <isolating ssh
    /// options> REMOTE`: one login of its own.
    pub fn eic_ssh(&self, remote: &str) -> Command {
        let mut args: Vec<String> = ["ssh", "--instance-id", &World::fleet_instance_id(1)]
            .iter()
            .chain(&["--os-user", self.sshd.user(), "--no-reuse", "--"])
            .map(|s| s.to_string())
            .collect();
        args.extend(ssh_options(self.home.path()));
        args.push(remote.into());
        self.eic(&args)
    }

    /// Waits (at most `limit`) until every process of the last run has ended: sshd's
    /// per-connection forks (reaped by the daemon, so that their CPU is in its `cutime`) and the
    /// tunnel processes (ssh's ProxyCommands: they name this stand-in's endpoint DNS name).
    pub async fn settle(&self, limit: Duration) {
        let dns = self.standin.eice_dns_name();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let busy = processes().any(|(pid, ppid)| {
                Some(ppid) == self.sshd_pid
                    || (pid != std::process::id() && cmdline(pid).iter().any(|a| a.contains(&dns)))
            });
            if !busy {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// `(pid, ppid)` of every process, from /proc.
fn processes() -> impl Iterator<Item = (u32, u32)> {
    std::fs::read_dir("/proc").into_iter().flatten().flatten().filter_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // After `(comm)`: state, then ppid.
        let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
        Some((pid, ppid))
    })
}

/// A process's arguments (empty once it has exited).
fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect()
        })
        .unwrap_or_default()
}

/// The pid of a child of this process one of whose arguments contains `dir`.
fn child_pid_with_arg(dir: &Path) -> Option<u32> {
    let dir = dir.display().to_string();
    let me = std::process::id();
    processes()
        .filter(|(_, ppid)| *ppid == me)
        .map(|(pid, _)| pid)
        .find(|pid| cmdline(*pid).iter().any(|a| a.contains(&dir)))
}

/// CPU seconds used so far by the whole machine and by the parts of it B9 can name.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    /// Every CPU's busy time (/proc/stat: user, nice, system, irq, softirq, steal).
    pub machine: f64,
    /// The bench process itself: the stand-in (API, TLS WebSocket endpoint, relays to sshd).
    pub bench: f64,
    /// The bench's children once reaped, with what they reaped: eic, the ssh processes it
    /// waited for, and the tunnel processes that ended before their ssh.
    pub children: f64,
    /// The sshd daemon and its per-connection forks (reaped).
    pub sshd: f64,
}

impl CpuUse {
    pub fn now(sshd: Option<u32>) -> anyhow::Result<CpuUse> {
        let me = std::process::id();
        let line = std::fs::read_to_string("/proc/stat")?
            .lines()
            .next()
            .map(str::to_string)
            .context("empty /proc/stat")?;
        let jiffies: Vec<f64> =
            line.split_whitespace().skip(1).map(|f| f.parse().unwrap_or(0.0)).collect();
        let busy: f64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|i| jiffies.get(*i)).sum();
        Ok(CpuUse {
            machine: busy / clock_ticks(),
            bench: stat_seconds(me, &[14, 15])?,
            children: stat_seconds(me, &[16, 17])?,
            sshd: sshd.map_or(Ok(0.0), |pid| stat_seconds(pid, &[14, 15, 16, 17]))?,
        })
    }

    /// What was used between `before` and `self`.
    pub fn since(self, before: CpuUse) -> CpuUse {
        CpuUse {
            machine: micro(self.machine - before.machine),
            bench: micro(self.bench - before.bench),
            children: micro(self.children - before.children),
            sshd: micro(self.sshd - before.sshd),
        }
    }

    /// What none of the named parts used: mostly the tunnel processes (ssh's ProxyCommands: ssh
    /// does not wait for them, so most end after it and init reaps them), then the rest of the
    /// machine.
    pub fn rest(&self) -> f64 {
        micro(self.machine - self.bench - self.children - self.sshd)
    }
}

/// Rounded to the microsecond: the times are whole clock ticks, and a difference of them
/// should not be 1e-17 where it is 0 (a ratio to it would be absurd).
fn micro(seconds: f64) -> f64 {
    (seconds * 1e6).round() / 1e6
}

fn socat_args(relay: SocketAddr) -> Vec<String> {
    vec!["-b".into(), IO_CHUNK.to_string(), "-".into(), format!("TCP:{relay},nodelay")]
}

pub use eic_standin::payload;

/// Awaits `fut` at most `limit`, naming `what` when it takes longer.
pub async fn within<T>(
    limit: Duration,
    what: &str,
    fut: impl std::future::Future<Output = T>,
) -> anyhow::Result<T> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| anyhow::anyhow!("{what}: no result within {limit:?}"))
}

// ---- targets ----

/// What the sink saw of one connection: when its first byte and its `expect`-th byte arrived.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    pub first: Instant,
    pub done: Instant,
    pub bytes: u64,
}

/// A TCP server that reads and discards; each connection reports once it has received the
/// expected number of bytes (or at EOF, if fewer came).
pub struct Sink {
    pub addr: SocketAddr,
    expect: Arc<AtomicU64>,
    reports: Mutex<mpsc::UnboundedReceiver<Report>>,
}

impl Sink {
    async fn start() -> anyhow::Result<(Sink, JoinHandle<()>)> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let expect = Arc::new(AtomicU64::new(1));
        let (tx, rx) = mpsc::unbounded_channel();
        let want = expect.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut tcp, _)) = listener.accept().await else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let want = want.load(Ordering::SeqCst);
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4 * IO_CHUNK];
                    let mut got = 0u64;
                    let mut first = None;
                    let mut reported = false;
                    loop {
                        let n = match tcp.read(&mut buf).await {
                            Ok(n) if n > 0 => n,
                            _ => break,
                        };
                        let now = Instant::now();
                        let first_at = *first.get_or_insert(now);
                        got += n as u64;
                        if !reported && got >= want {
                            reported = true;
                            let _ = tx.send(Report { first: first_at, done: now, bytes: got });
                        }
                    }
                    if !reported {
                        let now = Instant::now();
                        let _ =
                            tx.send(Report { first: first.unwrap_or(now), done: now, bytes: got });
                    }
                });
            }
        });
        Ok((Sink { addr, expect, reports: Mutex::new(rx) }, task))
    }

    /// The next connection reports after `bytes`; stale reports are dropped.
    pub async fn expect(&self, bytes: u64) {
        self.expect.store(bytes.max(1), Ordering::SeqCst);
        let mut rx = self.reports.lock().await;
        while rx.try_recv().is_ok() {}
    }

    pub async fn next(&self, limit: Duration) -> anyhow::Result<Report> {
        let mut rx = self.reports.lock().await;
        within(limit, "the sink's report", rx.recv()).await?.context("the sink stopped")
    }
}

/// A TCP server that writes `size` bytes on every connection, then reads until EOF (the
/// connection stays open until the client ends it).
pub struct Source {
    pub addr: SocketAddr,
    size: Arc<AtomicU64>,
}

impl Source {
    async fn start(payload: Arc<Vec<u8>>) -> anyhow::Result<(Source, JoinHandle<()>)> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let size = Arc::new(AtomicU64::new(0));
        let want = size.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let mut left = want.load(Ordering::SeqCst);
                let payload = payload.clone();
                tokio::spawn(async move {
                    let (mut rd, mut wr) = tcp.into_split();
                    while left > 0 {
                        let n = (left as usize).min(payload.len());
                        if wr.write_all(&payload[..n]).await.is_err() {
                            return;
                        }
                        left -= n as u64;
                    }
                    let mut sink = vec![0u8; IO_CHUNK];
                    while matches!(rd.read(&mut sink).await, Ok(n) if n > 0) {}
                    let _ = wr.shutdown().await;
                });
            }
        });
        Ok((Source { addr, size }, task))
    }

    /// Every new connection gets `bytes`.
    pub fn set_size(&self, bytes: u64) {
        self.size.store(bytes, Ordering::SeqCst);
    }
}

/// Connects to `addr` with TCP_NODELAY.
pub async fn connect(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let tcp = within(Duration::from_secs(10), "connect", TcpStream::connect(addr))
        .await?
        .with_context(|| format!("connecting to {addr}"))?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

// ---- child processes ----

/// A child process whose stderr is collected (and offered line by line).
pub struct Proc {
    pub child: Child,
    pub pid: u32,
    pub what: String,
    lines: mpsc::UnboundedReceiver<String>,
    log: Arc<std::sync::Mutex<String>>,
}

impl Proc {
    /// Starts `cmd` with stdin and stdout as given and stderr collected.
    pub fn spawn(
        what: &str,
        cmd: &mut Command,
        stdin: Stdio,
        stdout: Stdio,
    ) -> anyhow::Result<Proc> {
        cmd.stdin(stdin).stdout(stdout).stderr(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("starting {what}"))?;
        let pid = child.id().context("the child has a pid")?;
        let stderr = child.stderr.take().context("piped stderr")?;
        let (tx, lines) = mpsc::unbounded_channel();
        let log = Arc::new(std::sync::Mutex::new(String::new()));
        let keep = log.clone();
        tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if let Ok(mut log) = keep.lock() {
                    log.push_str(&line);
                    log.push('\n');
                }
                let _ = tx.send(line);
            }
        });
        Ok(Proc { child, pid, what: what.to_string(), lines, log })
    }

    pub fn stderr_text(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The next stderr line for which `want` holds.
    pub async fn wait_line(
        &mut self,
        limit: Duration,
        want: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let lines = &mut self.lines;
        let found = within(limit, &self.what, async {
            while let Some(line) = lines.recv().await {
                if want(&line) {
                    return Some(line);
                }
            }
            None
        })
        .await?;
        match found {
            Some(line) => Ok(line),
            None => bail!("{} ended; stderr:\n{}", self.what, self.stderr_text()),
        }
    }

    /// Waits for the exit (at most `limit`) and requires status 0.
    pub async fn finish(mut self, limit: Duration) -> anyhow::Result<()> {
        let status = match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => status?,
            Err(_) => {
                let _ = self.child.kill().await;
                bail!(
                    "{} did not exit within {limit:?}; stderr:\n{}",
                    self.what,
                    self.stderr_text()
                );
            }
        };
        if !status.success() {
            // Give the stderr reader a moment to catch the last lines.
            let _ = within(Duration::from_secs(2), "stderr", async {
                while self.lines.recv().await.is_some() {}
            })
            .await;
            bail!("{} failed ({status}); stderr:\n{}", self.what, self.stderr_text());
        }
        Ok(())
    }

    /// Asks the process to stop (SIGINT, as Ctrl-C), then waits for it.
    pub async fn interrupt(mut self) {
        use nix::sys::signal::{kill, Signal};
        let _ = kill(nix::unistd::Pid::from_raw(self.pid as i32), Signal::SIGINT);
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

/// CPU time (user + system, all threads) of a live process, from /proc/PID/stat.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    stat_seconds(pid, &[14, 15])
}

/// The sum of some time fields of /proc/PID/stat (1-based: utime 14, stime 15, cutime 16 and
/// cstime 17, the last two of the children it has reaped), in seconds.
fn stat_seconds(pid: u32, fields: &[usize]) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the `(comm)`: state is field 3.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("odd /proc/PID/stat")?;
    let all: Vec<&str> = rest.split_whitespace().collect();
    let mut ticks = 0.0;
    for i in fields {
        ticks += all.get(i - 3).context("short /proc/PID/stat")?.parse::<f64>()?;
    }
    Ok(ticks / clock_ticks())
}

/// Peak resident set size (VmHWM) of a live process, in MiB.
pub fn peak_rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .context("no VmHWM in /proc/PID/status (has the process exited?)")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kib / 1024.0)
}

/// `anon X MiB, file Y MiB`: where a live process's resident memory is (/proc/PID/status).
pub fn rss_split(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or("?".to_string(), |kib| format!("{:.1}", kib / 1024.0))
    };
    format!(
        "anon {} MiB, file {} MiB, threads {}",
        field("RssAnon:"),
        field("RssFile:"),
        status.lines().find_map(|l| l.strip_prefix("Threads:")).unwrap_or("?").trim()
    )
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// A file of `bytes` pseudo-random bytes under `dir`, for `ssh 'cat FILE'`.
pub fn big_file(dir: &Path, bytes: u64, payload: &[u8]) -> anyhow::Result<PathBuf> {
    use std::io::Write;
    let path = dir.join(format!("bulk-{bytes}"));
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
    let mut left = bytes;
    while left > 0 {
        let n = (left as usize).min(payload.len());
        file.write_all(&payload[..n])?;
        left -= n as u64;
    }
    file.flush()?;
    Ok(path)
}
