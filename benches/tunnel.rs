//! `cargo bench --bench tunnel`: eic against a plain TCP relay, on one machine, in one run.
//!
//! Starts the stand-in (EC2 and EC2 Instance Connect APIs, the EICE WebSocket endpoint), a real
//! sshd behind it, and plain TCP relays beside it (`eic_standin::tcp_relay`, driven through
//! `socat` where a stdio process is needed) as the reference. Each case of issue 7 runs eic and
//! the reference alternately, several times; the table gives median (min–max) of each figure
//! and of the paired ratios, and one `BENCH {json}` line per figure follows.
//!
//! Environment:
//! - `EIC_BENCH_SCALE` (default 1): multiplies the transfer sizes (B1 1 GiB, B2 256 MiB).
//! - `EIC_BENCH_RUNS` (default 5): runs per case (B2 and B3/B4 do twice as many, B7 four times).
//!   B9 (issue 25) starts a fleet of its own (40 instances behind one endpoint, its own sshd)
//!   and times `eic exec` on 2, 10 and 40 of them against one `eic ssh --no-reuse` login.
//! - `EIC_BENCH_PINGS` (default 1000): round trips per B5 sample.
//! - `EIC_BENCH_CASES` (default all), or arguments: e.g. `B1,B5` (B6's stdio figure comes
//!   with B1, its listener figure with B6; B4 comes with B3).
//! - `EIC_BENCH_LATENCY_MS` (default 50): the API latency of B4.
//! - `EIC_BENCH_EIC`: the eic binary to measure (default: the one cargo built for the bench).
//! - `EIC_BENCH_STRICT=1`: exit 1 when a target is not met.

#[cfg(unix)]
#[path = "tunnel/cases.rs"]
mod cases;
#[cfg(unix)]
#[path = "tunnel/lab.rs"]
mod lab;
#[cfg(unix)]
#[path = "tunnel/stats.rs"]
mod stats;

#[cfg(unix)]
use std::path::PathBuf;
#[cfg(unix)]
use std::process::ExitCode;
#[cfg(unix)]
use std::time::Instant;

#[cfg(unix)]
use anyhow::Context as _;

#[cfg(unix)]
pub struct Config {
    pub eic: PathBuf,
    pub scale: f64,
    pub runs: usize,
    pub pings: usize,
    pub b1_bytes: u64,
    pub b2_bytes: u64,
    pub latency_ms: u64,
    pub cases: Vec<String>,
    pub strict: bool,
}

#[cfg(unix)]
impl Config {
    fn from_env() -> anyhow::Result<Config> {
        fn var<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
            match std::env::var(name) {
                Ok(v) if !v.trim().is_empty() => {
                    v.trim().parse().map_err(|_| anyhow::anyhow!("{name}={v} is not a valid value"))
                }
                _ => Ok(default),
            }
        }
        let scale: f64 = var("EIC_BENCH_SCALE", 1.0)?;
        anyhow::ensure!(scale > 0.0, "EIC_BENCH_SCALE must be positive");
        let mib = |base: u64, min: u64| ((base as f64 * scale).round() as u64).max(min) << 20;
        // `cargo bench` passes `--bench`; other arguments name cases.
        let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
        let env = std::env::var("EIC_BENCH_CASES").unwrap_or_default();
        let mut cases: Vec<String> = std::iter::once(env.as_str())
            .chain(args.iter().map(String::as_str))
            .flat_map(|list| list.split(','))
            .map(|s| s.trim().to_ascii_uppercase())
            .filter(|s| !s.is_empty())
            .collect();
        cases.dedup();
        let eic = std::env::var_os("EIC_BENCH_EIC")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_eic")));
        Ok(Config {
            eic,
            scale,
            runs: var("EIC_BENCH_RUNS", 5usize)?.max(1),
            pings: var("EIC_BENCH_PINGS", 1000usize)?.max(10),
            b1_bytes: mib(1024, 1),
            b2_bytes: mib(256, 16),
            latency_ms: var("EIC_BENCH_LATENCY_MS", 50u64)?,
            cases,
            strict: std::env::var("EIC_BENCH_STRICT").is_ok_and(|v| v == "1"),
        })
    }

    fn wants(&self, case: &str) -> bool {
        self.cases.is_empty() || self.cases.iter().any(|c| c == case)
    }
}

#[cfg(unix)]
fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpus} CPUs ({model}), Linux {}", kernel.trim())
}

#[cfg(not(unix))]
fn main() {
    eprintln!("the benchmark runs sshd and socat: Linux and macOS only");
}

#[cfg(unix)]
fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("bench failed: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(unix)]
fn run() -> anyhow::Result<bool> {
    let cfg = Config::from_env()?;
    anyhow::ensure!(
        cfg.eic.exists(),
        "no eic binary at {} (build it, or set EIC_BENCH_EIC)",
        cfg.eic.display()
    );
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let started = Instant::now();
        println!("machine: {}", machine());
        println!(
            "eic: {}\nruns: {}, scale: {} (B1 {} MiB each way, B2 {} MiB), pings: {}",
            cfg.eic.display(),
            cfg.runs,
            cfg.scale,
            cfg.b1_bytes >> 20,
            cfg.b2_bytes >> 20,
            cfg.pings
        );
        let lab = lab::Lab::start(cfg.eic.clone())
            .await
            .context("starting the stand-in, sshd, relays and targets")?;
        let mut rows = Vec::new();
        macro_rules! case {
            ($name:literal, $also:literal, $f:path) => {
                if cfg.wants($name) || cfg.wants($also) {
                    let t = Instant::now();
                    eprintln!("{} ...", $name);
                    rows.extend($f(&lab, &cfg).await.context($name)?);
                    eprintln!("{} done in {:.1} s", $name, t.elapsed().as_secs_f64());
                }
            };
        }
        case!("B7", "B7", cases::b7);
        case!("B5", "B5", cases::b5);
        case!("B3", "B4", cases::b3_b4);
        case!("B6", "B6", cases::b6);
        case!("B1", "B1", cases::b1);
        case!("B2", "B2", cases::b2);
        case!("B8", "B8", cases::b8);
        case!("B9", "B9", cases::b9);
        drop(lab);

        rows.sort_by_key(|r| r.case);
        println!();
        print!("{}", stats::table(&rows));
        println!();
        for row in &rows {
            println!("{}", row.bench_line());
        }
        let unmet: Vec<String> = rows
            .iter()
            .filter(|r| r.met() == Some(false))
            .map(|r| format!("{} {}", r.case, r.metric))
            .collect();
        println!(
            "\ntotal {:.0} s; targets not met: {}",
            started.elapsed().as_secs_f64(),
            if unmet.is_empty() { "none".to_string() } else { unmet.join(", ") }
        );
        Ok(unmet.is_empty() || !cfg.strict)
    })
}
