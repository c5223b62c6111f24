//! The cases B1-B7 of issue 7, B8 (issue 19) and B9 (issue 25). Each runs eic and the reference
//! alternately, so that a pair of samples shares the machine's state of the moment, and returns
//! rows of paired samples.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::lab::{
    big_file, connect, cpu_seconds, peak_rss_mib, rss_split, within, CpuUse, Fleet, Lab, Proc,
    ECHO_IP, IO_CHUNK, SINK_IP, SOURCE_IP, TARGET_PORT,
};
use crate::stats::{percentile, Row, Summary, Target};
use crate::Config;

const GIB: f64 = (1u64 << 30) as f64;
const MIB: f64 = (1u64 << 20) as f64;
/// Upper bound for one bulk transfer (a hang fails the bench instead of stalling it).
const TRANSFER_LIMIT: Duration = Duration::from_secs(300);
const SHORT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Eic,
    Reference,
}

/// eic first on even runs, the reference first on odd ones.
fn order(run: usize) -> [Who; 2] {
    if run.is_multiple_of(2) {
        [Who::Eic, Who::Reference]
    } else {
        [Who::Reference, Who::Eic]
    }
}

/// Paired samples of eic and of its reference.
#[derive(Default)]
struct Pair {
    eic: Vec<f64>,
    reference: Vec<f64>,
}

impl Pair {
    fn push(&mut self, who: Who, value: f64) {
        match who {
            Who::Eic => self.eic.push(value),
            Who::Reference => self.reference.push(value),
        }
    }

    fn row(
        self,
        case: &'static str,
        metric: &'static str,
        what: String,
        unit: &'static str,
        reference_is: &'static str,
        target: Target,
    ) -> Row {
        Row {
            case,
            metric,
            what,
            unit,
            reference_is,
            eic: self.eic,
            reference: self.reference,
            target,
        }
    }
}

fn size_text(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{} GiB", bytes >> 30)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}

// ---- B1 (and B6's stdio half): raw tunnel throughput, CPU and peak RSS ----

struct Transfer {
    secs: f64,
    cpu: f64,
    rss: f64,
    /// Where the resident memory was at the end of the transfer.
    split: String,
    /// CPU of the bench process itself meanwhile: the stand-in (or the relay) and the target.
    server_cpu: f64,
}

pub async fn b1(lab: &Lab, cfg: &Config) -> anyhow::Result<Vec<Row>> {
    let bytes = cfg.b1_bytes;
    let mut up = Pair::default();
    let mut down = Pair::default();
    let mut cpu_up = Pair::default();
    let mut cpu_down = Pair::default();
    let mut rss = Pair::default();
    let mut server_up = Pair::default();
    let mut server_down = Pair::default();
    // The same through the listener (TCP on the local side, no stdin/stdout), against TCP straight
    // to the relay: isolates eic's stdio handling from its tunnel.
    let (mut tcp_up, mut tcp_down) = (Pair::default(), Pair::default());
    let mut sink_listener = start_listener(lab, SINK_IP, &[]).await?;
    let sink_addr = listener_addr(&mut sink_listener).await?;
    let mut source_listener = start_listener(lab, SOURCE_IP, &[]).await?;
    let source_addr = listener_addr(&mut source_listener).await?;
    for run in 0..cfg.runs {
        for who in order(run) {
            let (to_sink, from_source) = match who {
                Who::Eic => (sink_addr, source_addr),
                Who::Reference => (lab.relay_sink, lab.relay_source),
            };
            tcp_up.push(who, tcp_upload(lab, to_sink, bytes).await?);
            tcp_down.push(who, tcp_download(lab, from_source, bytes).await?);
            let u = upload(lab, who, bytes).await?;
            let d = download(lab, who, bytes).await?;
            up.push(who, bytes as f64 / MIB / u.secs);
            down.push(who, bytes as f64 / MIB / d.secs);
            cpu_up.push(who, u.cpu / (bytes as f64 / GIB));
            cpu_down.push(who, d.cpu / (bytes as f64 / GIB));
            rss.push(who, u.rss.max(d.rss));
            server_up.push(who, u.server_cpu / (bytes as f64 / GIB));
            server_down.push(who, d.server_cpu / (bytes as f64 / GIB));
            if who == Who::Eic {
                eprintln!(
                    "  B1 run {}: eic peak RSS up {:.1} MiB ({}), down {:.1} MiB ({})",
                    run + 1,
                    u.rss,
                    u.split,
                    d.rss,
                    d.split
                );
            }
        }
        eprintln!(
            "  B1 run {}: up {:.0}/{:.0} MiB/s, down {:.0}/{:.0} MiB/s (eic/reference); \
             listener up {:.0}/{:.0}, down {:.0}/{:.0}",
            run + 1,
            up.eic[run],
            up.reference[run],
            down.eic[run],
            down.reference[run],
            tcp_up.eic[run],
            tcp_up.reference[run],
            tcp_down.eic[run],
            tcp_down.reference[run]
        );
    }
    sink_listener.interrupt().await;
    source_listener.interrupt().await;
    let size = size_text(bytes);
    let reference = "socat + relay";
    Ok(vec![
        up.row(
            "B1",
            "upload_throughput",
            format!("raw tunnel {size} up (stdio → sink)"),
            "MiB/s",
            reference,
            Target::RatioAtLeast(0.5),
        ),
        down.row(
            "B1",
            "download_throughput",
            format!("raw tunnel {size} down (source → stdio)"),
            "MiB/s",
            reference,
            Target::RatioAtLeast(0.5),
        ),
        tcp_up.row(
            "B1",
            "listener_upload_throughput",
            format!("raw tunnel {size} up, listener (TCP → sink)"),
            "MiB/s",
            "TCP to relay",
            Target::None,
        ),
        tcp_down.row(
            "B1",
            "listener_download_throughput",
            format!("raw tunnel {size} down, listener (source → TCP)"),
            "MiB/s",
            "TCP to relay",
            Target::None,
        ),
        cpu_up.row(
            "B1",
            "upload_cpu",
            "CPU of the tunnel process, up".into(),
            "s/GiB",
            "socat",
            Target::None,
        ),
        cpu_down.row(
            "B1",
            "download_cpu",
            "CPU of the tunnel process, down".into(),
            "s/GiB",
            "socat",
            Target::None,
        ),
        server_up.row(
            "B1",
            "upload_server_cpu",
            "CPU of the bench process (stand-in or relay, sink), up".into(),
            "s/GiB",
            "relay",
            Target::None,
        ),
        server_down.row(
            "B1",
            "download_server_cpu",
            "CPU of the bench process (stand-in or relay, source), down".into(),
            "s/GiB",
            "relay",
            Target::None,
        ),
        rss.row(
            "B6",
            "proxy_peak_rss",
            "peak RSS of the stdio tunnel process in B1".into(),
            "MiB",
            "socat",
            Target::AtMost(10.0),
        ),
    ])
}

/// MiB/s of `bytes` sent over TCP to `addr` (a listener or the relay, in front of the sink),
/// timed at the sink from first to last byte.
async fn tcp_upload(lab: &Lab, addr: std::net::SocketAddr, bytes: u64) -> anyhow::Result<f64> {
    lab.sink.expect(bytes).await;
    let mut tcp = connect(addr).await?;
    let payload = lab.payload.clone();
    let writer = tokio::spawn(async move {
        let mut left = bytes;
        while left > 0 {
            let n = (left as usize).min(payload.len());
            tcp.write_all(&payload[..n]).await?;
            left -= n as u64;
        }
        Ok::<_, std::io::Error>(tcp)
    });
    let report = lab.sink.next(TRANSFER_LIMIT).await?;
    if report.bytes < bytes {
        bail!("the sink got {} of {bytes} bytes via {addr}", report.bytes);
    }
    drop(writer.await??);
    Ok(bytes as f64 / MIB / report.done.duration_since(report.first).as_secs_f64())
}

/// MiB/s of `bytes` from the source read over TCP from `addr`, from first to last byte.
async fn tcp_download(lab: &Lab, addr: std::net::SocketAddr, bytes: u64) -> anyhow::Result<f64> {
    lab.source.set_size(bytes);
    let mut tcp = connect(addr).await?;
    let read = read_timed(&mut tcp, bytes, "a download via TCP").await?;
    if read.got < bytes {
        bail!("got {} of {bytes} bytes via {addr}", read.got);
    }
    Ok(bytes as f64 / MIB / read.secs()?)
}

/// What [`read_timed`] read: how many bytes, and when the first and the last arrived.
struct Timed {
    got: u64,
    span: Option<(Instant, Instant)>,
}

impl Timed {
    /// Seconds from the first byte to the last.
    fn secs(&self) -> anyhow::Result<f64> {
        let (first, last) = self.span.context("no byte arrived")?;
        Ok(last.duration_since(first).as_secs_f64())
    }
}

/// Reads until EOF or until `limit` bytes have arrived (within `TRANSFER_LIMIT`).
async fn read_timed(
    reader: &mut (impl AsyncRead + Unpin),
    limit: u64,
    what: &str,
) -> anyhow::Result<Timed> {
    let mut buf = vec![0u8; 4 * IO_CHUNK];
    let mut read = Timed { got: 0, span: None };
    within(TRANSFER_LIMIT, what, async {
        while read.got < limit {
            let n = reader.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            let now = Instant::now();
            read.span = Some((read.span.map_or(now, |(first, _)| first), now));
            read.got += n as u64;
        }
        Ok::<_, std::io::Error>(())
    })
    .await??;
    Ok(read)
}

/// The stdio tunnel process to the sink (eic) or its reference (socat to the relay).
fn stdio_to(lab: &Lab, who: Who, ip: &str) -> (tokio::process::Command, &'static str) {
    match who {
        Who::Eic => (lab.eic(&lab.tunnel_args(ip, TARGET_PORT)), "eic open-tunnel (stdio)"),
        Who::Reference => {
            let relay = match ip {
                SINK_IP => lab.relay_sink,
                SOURCE_IP => lab.relay_source,
                _ => lab.relay_echo,
            };
            (lab.socat(relay), "socat")
        }
    }
}

/// `bytes` written to the process's stdin; timed at the sink from first to last byte.
async fn upload(lab: &Lab, who: Who, bytes: u64) -> anyhow::Result<Transfer> {
    lab.sink.expect(bytes).await;
    let server_cpu = cpu_seconds(std::process::id())?;
    let (mut cmd, what) = stdio_to(lab, who, SINK_IP);
    let mut proc = Proc::spawn(what, &mut cmd, Stdio::piped(), Stdio::null())?;
    let mut stdin = proc.child.stdin.take().context("piped stdin")?;
    let payload = lab.payload.clone();
    let writer = tokio::spawn(async move {
        let mut left = bytes;
        while left > 0 {
            let n = (left as usize).min(payload.len());
            stdin.write_all(&payload[..n]).await?;
            left -= n as u64;
        }
        Ok::<_, std::io::Error>(stdin)
    });
    let report = lab.sink.next(TRANSFER_LIMIT).await?;
    if report.bytes < bytes {
        bail!(
            "{what}: the sink got {} of {bytes} bytes; stderr:\n{}",
            report.bytes,
            proc.stderr_text()
        );
    }
    let cpu = cpu_seconds(proc.pid)?;
    let rss = peak_rss_mib(proc.pid)?;
    let split = rss_split(proc.pid);
    let server_cpu = cpu_seconds(std::process::id())? - server_cpu;
    let stdin = writer.await?.with_context(|| format!("writing to {what}"))?;
    drop(stdin);
    proc.finish(SHORT).await?;
    Ok(Transfer {
        secs: report.done.duration_since(report.first).as_secs_f64(),
        cpu,
        rss,
        split,
        server_cpu,
    })
}

/// `bytes` from the source read from the process's stdout, timed from first to last byte.
async fn download(lab: &Lab, who: Who, bytes: u64) -> anyhow::Result<Transfer> {
    lab.source.set_size(bytes);
    let server_cpu = cpu_seconds(std::process::id())?;
    let (mut cmd, what) = stdio_to(lab, who, SOURCE_IP);
    let mut proc = Proc::spawn(what, &mut cmd, Stdio::piped(), Stdio::piped())?;
    let stdin = proc.child.stdin.take().context("piped stdin")?;
    let mut stdout = proc.child.stdout.take().context("piped stdout")?;
    let read = read_timed(&mut stdout, bytes, what).await?;
    if read.got < bytes {
        bail!("{what}: got {} of {bytes} bytes; stderr:\n{}", read.got, proc.stderr_text());
    }
    let cpu = cpu_seconds(proc.pid)?;
    let rss = peak_rss_mib(proc.pid)?;
    let split = rss_split(proc.pid);
    let server_cpu = cpu_seconds(std::process::id())? - server_cpu;
    drop(stdin);
    within(SHORT, what, tokio::io::copy(&mut stdout, &mut tokio::io::sink())).await??;
    proc.finish(SHORT).await?;
    Ok(Transfer { secs: read.secs()?, cpu, rss, split, server_cpu })
}

// ---- B2: ssh bulk transfers with eic as ProxyCommand ----

/// How much of an ssh upload is written before the clock starts (ssh reads its stdin only once
/// the session is up; this keeps the login out of the figure).
const SSH_UPLOAD_HEAD: u64 = 4 << 20;

pub async fn b2(lab: &Lab, cfg: &Config) -> anyhow::Result<Vec<Row>> {
    let bytes = cfg.b2_bytes;
    let file = big_file(lab.home.path(), bytes, &lab.payload)?;
    let (mut up, mut down) = (Pair::default(), Pair::default());
    // ssh's own CPU makes B2 the noisiest ratio (0.79-1.12 over 9 runs): twice the runs.
    for run in 0..cfg.runs * 2 {
        for who in order(run) {
            let proxy = match who {
                Who::Eic => lab.eic_proxy_command(),
                Who::Reference => lab.relay_proxy_command(),
            };
            let u = ssh_upload(lab, &proxy, bytes).await?;
            let d = ssh_download(lab, &proxy, &file, bytes).await?;
            up.push(who, u);
            down.push(who, d);
        }
        eprintln!(
            "  B2 run {}: up {:.0}/{:.0} MiB/s, down {:.0}/{:.0} MiB/s (eic/reference)",
            run + 1,
            up.eic[run],
            up.reference[run],
            down.eic[run],
            down.reference[run]
        );
    }
    let _ = std::fs::remove_file(&file);
    let size = size_text(bytes);
    let reference = "ssh via socat + relay";
    Ok(vec![
        up.row(
            "B2",
            "ssh_upload_throughput",
            format!("ssh 'cat >/dev/null' < {size}"),
            "MiB/s",
            reference,
            Target::RatioAtLeast(0.95),
        ),
        down.row(
            "B2",
            "ssh_download_throughput",
            format!("ssh 'cat {size} file'"),
            "MiB/s",
            reference,
            Target::RatioAtLeast(0.95),
        ),
    ])
}

/// MiB/s of `ssh 'cat >/dev/null'`, from the first 4 MiB written to the exit.
async fn ssh_upload(lab: &Lab, proxy: &str, bytes: u64) -> anyhow::Result<f64> {
    let mut cmd = lab.ssh(proxy, "cat >/dev/null");
    let mut proc = Proc::spawn("ssh upload", &mut cmd, Stdio::piped(), Stdio::null())?;
    let mut stdin = proc.child.stdin.take().context("piped stdin")?;
    let payload = lab.payload.clone();
    let writer = async move {
        let mut written = 0u64;
        let mut started = None;
        while written < bytes {
            let n = ((bytes - written) as usize).min(payload.len());
            stdin.write_all(&payload[..n]).await?;
            written += n as u64;
            if written >= SSH_UPLOAD_HEAD {
                started.get_or_insert_with(Instant::now);
            }
        }
        Ok::<_, std::io::Error>(started)
    };
    let started = within(TRANSFER_LIMIT, "ssh upload", writer)
        .await?
        .context("writing to ssh")?
        .context("nothing written")?;
    proc.finish(TRANSFER_LIMIT).await?;
    let secs = started.elapsed().as_secs_f64();
    Ok((bytes - SSH_UPLOAD_HEAD) as f64 / MIB / secs)
}

/// MiB/s of `ssh 'cat FILE'`, from the first byte to the last.
async fn ssh_download(
    lab: &Lab,
    proxy: &str,
    file: &std::path::Path,
    bytes: u64,
) -> anyhow::Result<f64> {
    let mut cmd = lab.ssh(proxy, &format!("cat '{}'", file.display()));
    let mut proc = Proc::spawn("ssh download", &mut cmd, Stdio::null(), Stdio::piped())?;
    let mut stdout = proc.child.stdout.take().context("piped stdout")?;
    // To EOF: more bytes than the file has would be an error too.
    let read = read_timed(&mut stdout, u64::MAX, "ssh download").await?;
    proc.finish(SHORT).await?;
    if read.got != bytes {
        bail!("ssh download: got {} of {bytes} bytes", read.got);
    }
    Ok(bytes as f64 / MIB / read.secs()?)
}

// ---- B3 and B4: login time, without and with 50 ms of API latency ----

pub async fn b3_b4(lab: &Lab, cfg: &Config) -> anyhow::Result<Vec<Row>> {
    let latency = Duration::from_millis(cfg.latency_ms);
    let relay_proxy = lab.relay_proxy_command();
    let relay_proxy = &relay_proxy;
    let login = |eic: bool| async move {
        let mut cmd = if eic { lab.eic_ssh("true") } else { lab.ssh(relay_proxy, "true") };
        let started = Instant::now();
        let what = if eic { "eic ssh -- true" } else { "ssh true" };
        let proc = Proc::spawn(what, &mut cmd, Stdio::null(), Stdio::null())?;
        proc.finish(SHORT).await?;
        Ok::<_, anyhow::Error>(started.elapsed().as_secs_f64() * 1e3)
    };
    let set_latency = |d: Duration| lab.standin.world().faults.api_latency = d;
    // Warm-up: page cache, sshd's first fork, ssh's first key load.
    login(false).await?;
    login(true).await?;
    let (mut b3, mut b4) = (Pair::default(), Pair::default());
    let mut slow = Vec::new();
    for run in 0..cfg.runs * 2 {
        // Rotate the order of the three logins from run to run.
        for step in 0..3 {
            match (run + step) % 3 {
                0 => b3.push(Who::Reference, login(false).await?),
                1 => {
                    let t = login(true).await?;
                    b3.push(Who::Eic, t);
                    b4.push(Who::Reference, t);
                }
                _ => {
                    set_latency(latency);
                    let t = login(true).await;
                    set_latency(Duration::ZERO);
                    slow.push(t?);
                }
            }
        }
    }
    b4.eic = slow;
    eprintln!(
        "  B3/B4: eic {:?} ms, reference {:?} ms, eic with latency {:?} ms",
        b3.eic.iter().map(|t| t.round()).collect::<Vec<_>>(),
        b3.reference.iter().map(|t| t.round()).collect::<Vec<_>>(),
        b4.eic.iter().map(|t| t.round()).collect::<Vec<_>>()
    );
    let rounds = 3.0;
    Ok(vec![
        b3.row(
            "B3",
            "login_time",
            "`eic ssh -- true` vs `ssh -o ProxyCommand=<relay> true`".into(),
            "ms",
            "ssh via socat + relay",
            Target::RatioAtMost(1.15),
        ),
        b4.row(
            "B4",
            "login_time_with_latency",
            format!("B3 with {} ms on every API call and upgrade", cfg.latency_ms),
            "ms",
            "B3 eic",
            Target::AddedAtMost(rounds * cfg.latency_ms as f64),
        ),
    ])
}

// ---- B8: twenty one-off commands, over one shared connection or each logging in ----

pub async fn b8(lab: &Lab, cfg: &Config) -> anyhow::Result<Vec<Row>> {
    let twenty = |shared: bool| async move {
        let options: &[&str] = if shared { &[] } else { &["--no-reuse"] };
        let started = Instant::now();
        for _ in 0..20 {
            let mut cmd = lab.eic_ssh_with(options, "true");
            Proc::spawn("eic ssh -- true", &mut cmd, Stdio::null(), Stdio::null())?
                .finish(SHORT)
                .await?;
        }
        let elapsed = started.elapsed().as_secs_f64() * 1e3;
        if shared {
            let mut stop = lab.eic_ssh_with(&["--stop"], "true");
            Proc::spawn("eic ssh --stop", &mut stop, Stdio::null(), Stdio::null())?
                .finish(SHORT)
                .await?;
        }
        Ok::<_, anyhow::Error>(elapsed)
    };
    let mut pair = Pair::default();
    for run in 0..cfg.runs {
        for step in 0..2 {
            match (run + step) % 2 {
                0 => pair.push(Who::Eic, twenty(true).await?),
                _ => pair.push(Who::Reference, twenty(false).await?),
            }
        }
    }
    eprintln!(
        "  B8: shared {:?} ms, each logging in {:?} ms",
        pair.eic.iter().map(|t| t.round()).collect::<Vec<_>>(),
        pair.reference.iter().map(|t| t.round()).collect::<Vec<_>>()
    );
    Ok(vec![pair.row(
        "B8",
        "twenty_commands",
        "20 `eic ssh -- true` over one shared connection vs each logging in".into(),
        "ms",
        "eic --no-reuse",
        Target::None,
    )])
}

// ---- B5: 1-byte echo round trips ----

/// One 1-byte round trip, in ms.
async fn ping<R, W>(read: &mut R, write: &mut W, i: usize) -> anyhow::Result<f64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let sent = [(i % 251) as u8];
    let mut back = [0u8; 1];
    let started = Instant::now();
    write.write_all(&sent).await?;
    write.flush().await?;
    read.read_exact(&mut back).await?;
    let rtt = started.elapsed().as_secs_f64() * 1e3;
    if back != sent {
        bail!("the echo sent back {back:?} for {sent:?}");
    }
    Ok(rtt)
}

/// `count` round trips after 20 warm-up ones (which also open the tunnel).
async fn pings<R, W>(read: &mut R, write: &mut W, count: usize) -> anyhow::Result<Vec<f64>>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    for i in 0..20 {
        within(SHORT, "a warm-up ping", ping(read, write, i)).await??;
    }
    let mut rtts = Vec::with_capacity(count);
    for i in 0..count {
        rtts.push(within(SHORT, "a ping", ping(read, write, i)).await??);
    }
    Ok(rtts)
}

pub async fn b5(lab: &Lab, cfg: &Config) -> anyhow::Result<Vec<Row>> {
    let (mut p50, mut p99) = (Pair::default(), Pair::default());
    let mut listener = start_listener(lab, ECHO_IP, &[]).await?;
    let addr = listener_addr(&mut listener).await?;
    for run in 0..cfg.runs {
        for who in order(run) {
            let mut tcp = connect(match who {
                Who::Eic => addr,
                Who::Reference => lab.relay_echo,
            })
            .await?;
            let (mut r, mut w) = tcp.split();
            let rtts = pings(&mut r, &mut w, cfg.pings).await?;
            p50.push(who, percentile(&rtts, 50.0));
            p99.push(who, percentile(&rtts, 99.0));
        }
    }
    listener.interrupt().await;

    let (mut s50, mut s99) = (Pair::default(), Pair::default());
    for run in 0..cfg.runs {
        for who in order(run) {
            let (mut cmd, what) = stdio_to(lab, who, ECHO_IP);
            let mut proc = Proc::spawn(what, &mut cmd, Stdio::piped(), Stdio::piped())?;
            let mut stdin = proc.child.stdin.take().context("piped stdin")?;
            let mut stdout = proc.child.stdout.take().context("piped stdout")?;
            let rtts = pings(&mut stdout, &mut stdin, cfg.pings)
                .await
                .with_context(|| format!("{what}: {}", proc.stderr_text()))?;
            drop(stdin);
            proc.finish(SHORT).await?;
            s50.push(who, percentile(&rtts, 50.0));
            s99.push(who, percentile(&rtts, 99.0));
        }
    }
    let n = cfg.pings;
    Ok(vec![
        p50.row(
            "B5",
            "echo_rtt_p50_listener",
            format!("1-byte echo RTT p50 of {n}, listener"),
            "ms",
            "TCP to relay",
            Target::AddedAtMost(0.2),
        ),
        p99.row(
            "B5",
            "echo_rtt_p99_listener",
            format!("1-byte echo RTT p99 of {n}, listener"),
            "ms",
            "TCP to relay",
            Target::None,
        ),
        s50.row(
            "B5",
            "echo_rtt_p50_stdio",
            format!("1-byte echo RTT p50 of {n}, stdio"),
            "ms",
            "socat + relay",
            Target::AddedAtMost(0.2),
        ),
        s99.row(
            "B5",
            "echo_rtt_p99_stdio",
            format!("1-byte echo RTT p99 of {n}, stdio"),
            "ms",
            "socat + relay",
            Target::None,
        ),
    ])
}

async fn start_listener(lab: &Lab, ip: &str, extra: &[&str]) -> anyhow::Result<Proc> {
    let mut args = lab.tunnel_args(ip, TARGET_PORT);
    args.extend(["--local-port".into(), "0".into()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut cmd = lab.eic(&args);
    Proc::spawn("eic open-tunnel (listener)", &mut cmd, Stdio::null(), Stdio::null())
}

async fn listener_addr(listener: &mut Proc) -> anyhow::Result<std::net::SocketAddr> {
    const PREFIX: &str = "eic: listening on ";
    let line = listener.wait_line(SHORT, |l| l.starts_with(PREFIX)).await?;
    line[PREFIX.len()..]
        .split(',')
        .next()
        .unwrap_or_default()
        .parse()
        .with_context(|| format!("no address in `{line}`"))
}

// ---- B6: peak RSS of the listener with 20 live tunnels ----

pub async fn b6(lab: &Lab, cfg: &Config) -> anyhow::Result<Vec<Row>> {
    const TUNNELS: usize = 20;
    let per_tunnel = 1usize << 20;
    let (mut busy, mut idle) = (Pair::default(), Pair::default());
    for _ in 0..cfg.runs.clamp(1, 3) {
        let mut listener =
            start_listener(lab, ECHO_IP, &["--max-websocket-connections", "20"]).await?;
        let addr = listener_addr(&mut listener).await?;
        idle.push(Who::Eic, peak_rss_mib(listener.pid)?);
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..TUNNELS {
            let mut tcp = connect(addr).await?;
            let payload = lab.payload.clone();
            set.spawn(async move {
                // A ping proves the tunnel is open, then 1 MiB goes through it both ways.
                let (mut r, mut w) = tcp.split();
                pings(&mut r, &mut w, 1).await?;
                let send = async {
                    w.write_all(&payload[..per_tunnel]).await?;
                    Ok::<_, std::io::Error>(())
                };
                let mut back = vec![0u8; per_tunnel];
                let receive = r.read_exact(&mut back);
                let (sent, received) = tokio::join!(send, receive);
                sent?;
                received?;
                if back[..] != payload[..per_tunnel] {
                    bail!("the echo changed the data");
                }
                Ok::<_, anyhow::Error>(tcp)
            });
        }
        // All 20 tunnels stay open while the peak is read.
        let mut open = Vec::new();
        while let Some(done) = within(TRANSFER_LIMIT, "20 tunnels", set.join_next()).await? {
            open.push(done??);
        }
        busy.push(Who::Eic, peak_rss_mib(listener.pid)?);
        drop(open);
        listener.interrupt().await;
    }
    Ok(vec![
        busy.row(
            "B6",
            "listener_peak_rss",
            format!("peak RSS of the listener, {TUNNELS} live tunnels (1 MiB echoed each)"),
            "MiB",
            "-",
            Target::AtMost(20.0),
        ),
        idle.row(
            "B6",
            "listener_idle_rss",
            "peak RSS of the listener before any tunnel".into(),
            "MiB",
            "-",
            Target::None,
        ),
    ])
}

// ---- B7: start-up, process start to first byte at the target ----

pub async fn b7(lab: &Lab, cfg: &Config) -> anyhow::Result<Vec<Row>> {
    let first_byte = |who: Who| async move {
        lab.sink.expect(1).await;
        let (mut cmd, what) = stdio_to(lab, who, SINK_IP);
        let started = Instant::now();
        let mut proc = Proc::spawn(what, &mut cmd, Stdio::piped(), Stdio::null())?;
        let mut stdin = proc.child.stdin.take().context("piped stdin")?;
        stdin.write_all(b"x").await?;
        let report = lab.sink.next(SHORT).await?;
        drop(stdin);
        proc.finish(SHORT).await?;
        Ok::<_, anyhow::Error>(report.first.duration_since(started).as_secs_f64() * 1e3)
    };
    let exits = |program: &std::path::Path, arg: &'static str| {
        let mut cmd = tokio::process::Command::new(program);
        cmd.arg(arg);
        async move {
            let started = Instant::now();
            let proc = Proc::spawn("a trivial run", &mut cmd, Stdio::null(), Stdio::null())?;
            proc.finish(SHORT).await?;
            Ok::<_, anyhow::Error>(started.elapsed().as_secs_f64() * 1e3)
        }
    };
    for who in [Who::Eic, Who::Reference] {
        first_byte(who).await?;
    }
    let (mut start, mut floor) = (Pair::default(), Pair::default());
    let socat = std::path::Path::new("socat");
    for run in 0..cfg.runs * 4 {
        for who in order(run) {
            start.push(who, first_byte(who).await?);
            floor.push(
                who,
                match who {
                    Who::Eic => exits(&lab.eic, "--version").await?,
                    Who::Reference => exits(socat, "-V").await?,
                },
            );
        }
    }
    Ok(vec![
        start.row(
            "B7",
            "start_to_first_byte",
            "`eic open-tunnel` (all ids) spawn → first byte at the target".into(),
            "ms",
            "socat + relay",
            Target::AtMost(10.0),
        ),
        floor.row(
            "B7",
            "exec_floor",
            "spawn → exit of `eic --version` (process floor)".into(),
            "ms",
            "socat -V",
            Target::None,
        ),
    ])
}

// ---- B9: `eic exec` on 2, 10 and 40 instances against one login ----

/// One timed run of B9: wall time, and CPU by part (see [`CpuUse`]).
struct FleetRun {
    ms: f64,
    cpu: CpuUse,
}

/// Runs `cmd` to its exit (status 0), timed from spawn to exit; then waits for the run's
/// processes to end (sshd's forks, the tunnel processes) and reads what CPU each part used.
/// Checks that exactly `pushes` keys were pushed.
async fn fleet_run(
    fleet: &Fleet,
    mut cmd: tokio::process::Command,
    what: &str,
    pushes: usize,
) -> anyhow::Result<FleetRun> {
    let pushed = fleet.standin.count("SendSSHPublicKey");
    let before = CpuUse::now(fleet.sshd_pid)?;
    let started = Instant::now();
    let proc = Proc::spawn(what, &mut cmd, Stdio::null(), Stdio::null())?;
    proc.finish(B9_LIMIT).await?;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    // The stand-in's share is read at the exit: the wait below scans /proc, in this process.
    let at_exit = CpuUse::now(fleet.sshd_pid)?;
    fleet.settle(Duration::from_secs(5)).await;
    let after = CpuUse::now(fleet.sshd_pid)?;
    let cpu = CpuUse { bench: at_exit.since(before).bench, ..after.since(before) };
    let n = fleet.standin.count("SendSSHPublicKey") - pushed;
    anyhow::ensure!(n == pushes, "{what}: {n} key pushes, not {pushes}");
    Ok(FleetRun { ms, cpu })
}

const B9_LIMIT: Duration = Duration::from_secs(120);

/// One of B9's fleet sizes: how many instances, the target (exec's time / one login's, at
/// most), and the metrics' names.
struct FleetSize {
    n: usize,
    target: Option<f64>,
    time: &'static str,
    cpu: &'static str,
}

const B9_SIZES: [FleetSize; 3] = [
    FleetSize { n: 2, target: Some(1.5), time: "exec_2_time", cpu: "exec_2_cpu" },
    FleetSize { n: 10, target: None, time: "exec_10_time", cpu: "exec_10_cpu" },
    FleetSize { n: 40, target: Some(4.0), time: "exec_40_time", cpu: "exec_40_cpu" },
];

pub async fn b9(lab: &Lab, cfg: &Config) -> anyhow::Result<Vec<Row>> {
    let largest = &B9_SIZES[B9_SIZES.len() - 1];
    let fleet = &Fleet::start(lab.eic.clone(), largest.n).await?;
    if fleet.sshd_pid.is_none() {
        eprintln!("  B9: the sshd daemon was not found in /proc: its CPU counts as the rest");
    }
    let parallel = largest.n;
    let login = || fleet_run(fleet, fleet.eic_ssh("true"), "eic ssh --no-reuse -- true", 1);
    let exec = |n: usize| {
        let what = format!("eic exec on {n} instances -- true");
        async move { fleet_run(fleet, fleet.exec(n, parallel, "true"), &what, n).await }
    };
    // Warm-up: page cache, sshd's first fork, ssh's first key load.
    login().await?;
    exec(2).await?;
    let mut logins: Vec<FleetRun> = Vec::new();
    let mut execs: Vec<Vec<FleetRun>> = B9_SIZES.iter().map(|_| Vec::new()).collect();
    let steps = B9_SIZES.len() + 1;
    for run in 0..cfg.runs {
        // Rotate the order of the login and the three execs from run to run.
        for step in 0..steps {
            match (run + step) % steps {
                0 => logins.push(login().await?),
                k => execs[k - 1].push(exec(B9_SIZES[k - 1].n).await?),
            }
        }
        let join = |f: &dyn Fn(&FleetRun) -> f64| {
            execs.iter().map(|e| format!("{:.0}", f(&e[run]))).collect::<Vec<_>>().join("/")
        };
        eprintln!(
            "  B9 run {}: one login {:.0} ms, {:.0} ms CPU; exec on 2/10/40 {} ms, {} ms CPU",
            run + 1,
            logins[run].ms,
            logins[run].cpu.machine * 1e3,
            join(&|t| t.ms),
            join(&|t| t.cpu.machine * 1e3),
        );
    }
    let median = |v: &[FleetRun], f: fn(&CpuUse) -> f64| {
        let ms: Vec<f64> = v.iter().map(|t| f(&t.cpu) * 1e3).collect();
        Summary::of(&ms).map_or(0.0, |s| s.median)
    };
    let kinds = std::iter::once(("one login".to_string(), &logins))
        .chain(B9_SIZES.iter().zip(&execs).map(|(s, e)| (format!("exec on {}", s.n), e)));
    for (what, runs) in kinds {
        eprintln!(
            "  B9 CPU, median ms, {what}: machine {:.0} = eic and ssh {:.0} + stand-in {:.0} \
             + sshd {:.0} + rest {:.0}",
            median(runs, |c| c.machine),
            median(runs, |c| c.children),
            median(runs, |c| c.bench),
            median(runs, |c| c.sshd),
            median(runs, |c| c.rest()),
        );
    }
    let refused = fleet.standin.calls_of("OpenTunnel").iter().filter(|c| c.status == 429).count();
    let peak = fleet.standin.peak_tunnels();
    eprintln!(
        "  B9: at most {peak} tunnels open at once (the endpoint allows 20), {refused} refused"
    );

    let cpu_ms =
        |v: &[FleetRun], f: fn(&CpuUse) -> f64| v.iter().map(|t| f(&t.cpu) * 1e3).collect();
    let reference = "one eic ssh --no-reuse";
    let row = |metric, what, eic, reference_runs: Vec<f64>, target| Row {
        case: "B9",
        metric,
        what,
        unit: "ms",
        reference_is: reference,
        eic,
        reference: reference_runs,
        target,
    };
    let mut rows = Vec::new();
    for (size, runs) in B9_SIZES.iter().zip(&execs) {
        rows.push(row(
            size.time,
            format!("`eic exec --parallel {parallel}` on {} instances -- true", size.n),
            runs.iter().map(|t| t.ms).collect(),
            logins.iter().map(|t| t.ms).collect(),
            size.target.map_or(Target::None, Target::RatioAtMost),
        ));
    }
    for (size, runs) in B9_SIZES.iter().zip(&execs) {
        rows.push(row(
            size.cpu,
            format!("CPU of the machine (all cores), exec on {}", size.n),
            cpu_ms(runs, |c| c.machine),
            cpu_ms(&logins, |c| c.machine),
            Target::None,
        ));
    }
    let n = largest.n;
    type Part = fn(&CpuUse) -> f64;
    let parts: [(&'static str, String, Part); 4] = [
        ("exec_cpu_clients", format!("CPU of eic and its ssh processes, exec on {n}"), |c| {
            c.children
        }),
        (
            "exec_cpu_standin",
            format!("CPU of the stand-in (API, TLS endpoint), exec on {n}"),
            |c| c.bench,
        ),
        (
            "exec_cpu_sshd",
            format!("CPU of sshd and its forks (the remote shell too), exec on {n}"),
            |c| c.sshd,
        ),
        ("exec_cpu_rest", format!("CPU of the rest (tunnel processes), exec on {n}"), |c| c.rest()),
    ];
    let last = &execs[execs.len() - 1];
    for (metric, what, part) in parts {
        rows.push(row(metric, what, cpu_ms(last, part), cpu_ms(&logins, part), Target::None));
    }
    rows.push(Row {
        case: "B9",
        metric: "exec_peak_tunnels",
        what: "most tunnels open at once (the endpoint allows 20)".into(),
        unit: "tunnels",
        reference_is: "-",
        eic: vec![peak as f64],
        reference: Vec::new(),
        target: Target::None,
    });
    Ok(rows)
}
