//! `eic open-tunnel` end to end, through the stand-in and a real sshd: the ProxyCommand, bulk
//! data both ways, listener mode, HTTPS_PROXY, and a reader that goes away.
//!
//! Faults, target resolution and time limits are in `open_tunnel_faults.rs`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::common::{
    echo_back, eic_bin, payload, run, runtime_dir, sha256, text, ConnectProxy, Lab, TunnelListener,
    ENDPOINT, INSTANCE, PRIVATE_IP,
};
use eic_standin::Faults;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(30);
/// For the 64 MiB transfers (debug builds are slow).
const BULK_LIMIT: Duration = Duration::from_secs(60);
/// 64 MiB.
const BIG: usize = 64 << 20;

/// The 64 MiB payload and its SHA-256, made once per test binary (hashing 64 MiB takes seconds
/// in a debug build).
fn big() -> &'static (Vec<u8>, String) {
    static BIG_PAYLOAD: OnceLock<(Vec<u8>, String)> = OnceLock::new();
    BIG_PAYLOAD.get_or_init(|| {
        let data = payload(BIG, 64);
        let hash = sha256(&data);
        (data, hash)
    })
}

// ---- As ssh's ProxyCommand ----

#[tokio::test]
async fn ssh_runs_a_remote_command_through_the_proxy_command() {
    let lab = Lab::start().await;
    let key = lab.authorized_key();
    let out = run(
        &mut lab.ssh_via_proxy(
            &format!("--instance-id {INSTANCE}"),
            &key,
            &["echo", "hello from $USER"],
        ),
        LIMIT,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), format!("hello from {}", lab.sshd.user()));
    assert_eq!(lab.standin.count("DescribeInstances"), 1);
    assert_eq!(lab.standin.count("DescribeInstanceConnectEndpoints"), 1);
    assert_eq!(lab.standin.count("OpenTunnel"), 1);

    // CloudTrail tells eic's calls apart: the upgrade's User-Agent, and the SDK's app name.
    let tunnel = lab.standin.calls_of("OpenTunnel").remove(0);
    let expected = concat!("eic/", env!("CARGO_PKG_VERSION"));
    assert_eq!(tunnel.user_agent.as_deref(), Some(expected));
    let described = lab.standin.calls_of("DescribeInstances").remove(0);
    let agent = described.user_agent.unwrap_or_default();
    assert!(agent.contains("app/eic"), "{agent}");
}

#[tokio::test]
async fn no_api_call_when_endpoint_dns_and_ip_are_given() {
    let lab = Lab::start().await;
    let key = lab.authorized_key();
    let args = format!(
        "--instance-connect-endpoint-id {ENDPOINT} --instance-connect-endpoint-dns-name {} --private-ip-address {PRIVATE_IP}",
        lab.standin.eice_dns_name()
    );
    let out = run(&mut lab.ssh_via_proxy(&args, &key, &["true"]), LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let actions: Vec<String> = lab.standin.calls().into_iter().map(|c| c.action).collect();
    assert_eq!(actions, ["OpenTunnel"]);
}

#[tokio::test]
async fn a_given_private_ip_needs_no_instance_lookup() {
    // As in the AWS CLI: with the address given, the instance id is not described (no
    // ec2:DescribeInstances needed); only the endpoint is looked up, by its id.
    let lab = Lab::start().await;
    let key = lab.authorized_key();
    let args = format!(
        "--instance-id {INSTANCE} --instance-connect-endpoint-id {ENDPOINT} --private-ip-address {PRIVATE_IP}"
    );
    let out = run(&mut lab.ssh_via_proxy(&args, &key, &["true"]), LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let actions: Vec<String> = lab.standin.calls().into_iter().map(|c| c.action).collect();
    assert_eq!(actions, ["DescribeInstanceConnectEndpoints", "OpenTunnel"]);
}

// ---- Bulk data: 64 MiB each way, verified by SHA-256 ----

#[tokio::test]
async fn stdio_mode_carries_64_mib_each_way() {
    let lab = Lab::start().await;
    let key = lab.authorized_key();
    let proxy = format!("--instance-id {INSTANCE}");
    let (data, hash) = big();
    // The sshd runs as this user, so it can read the file written here.
    let file = lab.home.path().join("payload.bin");
    std::fs::write(&file, data).unwrap();

    // Upload: the remote sha256sum reads the payload from ssh's stdin.
    let mut upload = lab.ssh_via_proxy(&proxy, &key, &["sha256sum"]);
    upload.stdin(std::fs::File::open(&file).unwrap());
    let started = Instant::now();
    let out =
        timeout(BULK_LIMIT, upload.output()).await.expect("the upload finishes in time").unwrap();
    eprintln!("64 MiB up: {:.1?}", started.elapsed());
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).split_whitespace().next(), Some(hash.as_str()));

    // Download: the remote cat writes it to ssh's stdout.
    let path = file.display().to_string();
    let started = Instant::now();
    let out = run(&mut lab.ssh_via_proxy(&proxy, &key, &["cat", &path]), BULK_LIMIT).await;
    eprintln!("64 MiB down: {:.1?}", started.elapsed());
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(out.stdout.len(), BIG);
    assert_eq!(&sha256(&out.stdout), hash);
}

// ---- Listener mode (--local-port 0) against a TCP echo target on port 3389 ----

fn listener_args(extra: &[&'static str]) -> Vec<&'static str> {
    let mut args = vec!["--instance-id", INSTANCE, "--remote-port", "3389"];
    args.extend_from_slice(extra);
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_echoes_64_mib_both_ways_at_once() {
    let (data, hash) = big();
    let lab = Lab::start_echo(Faults::default()).await;
    let mut listener = TunnelListener::start(&lab, &listener_args(&[])).await;
    let mut tcp = listener.connect().await;
    let started = Instant::now();
    let back = timeout(BULK_LIMIT, echo_back(&mut tcp, data)).await.expect("64 MiB echoed in time");
    eprintln!("64 MiB each way at once: {:.1?}", started.elapsed());
    assert_eq!(&sha256(&back), hash);
    let opened = lab.standin.calls_of("OpenTunnel");
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0].params["remotePort"], "3389");
    drop(tcp);
    listener.stderr.wait_for("the connection's `closed` line", |l| l.contains("closed")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_serves_20_connections_at_once_with_a_line_for_each() {
    const N: usize = 20;
    let lab = Lab::start_echo(Faults::default()).await;
    let mut listener =
        TunnelListener::start(&lab, &listener_args(&["--max-websocket-connections", "20"])).await;
    let addr = listener.addr;
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..N {
        clients.spawn(async move {
            let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let data = payload(2 << 20, i as u64 + 1);
            let back = echo_back(&mut tcp, &data).await;
            assert!(back == data, "connection {i}: the echo differs");
            tcp // keep it open until all are done, so that all 20 were open at once
        });
    }
    let tcps = timeout(BULK_LIMIT, clients.join_all()).await.expect("20 echoes in time");
    assert_eq!(lab.standin.count("OpenTunnel"), N);
    drop(tcps);

    // One line when each tunnel opens, one when it closes, each naming its connection.
    for _ in 0..N {
        listener.stderr.wait_for("a `closed after` line", |l| l.contains(": closed after ")).await;
    }
    let opened = listener.stderr.count(": tunnel opened");
    assert_eq!(opened, N, "stderr:\n{}", listener.stderr.text());
    for id in 1..=N {
        let tag = format!("eic: [{id}] 127.0.0.1:");
        assert_eq!(listener.stderr.count(&tag), 2, "[{id}] has an open and a close line");
    }
}

#[tokio::test]
async fn listener_refuses_connections_over_the_limit_and_keeps_the_others() {
    let lab = Lab::start_echo(Faults::default()).await;
    let mut listener =
        TunnelListener::start(&lab, &listener_args(&["--max-websocket-connections", "2"])).await;
    let mut first = listener.connect().await;
    let mut second = listener.connect().await;
    assert_eq!(echo_back(&mut first, b"one").await, b"one");
    assert_eq!(echo_back(&mut second, b"two").await, b"two");

    // A third is closed at once, and stderr says why.
    let mut third = listener.connect().await;
    let mut buf = [0u8; 16];
    let read = timeout(Duration::from_secs(5), third.read(&mut buf))
        .await
        .expect("the third connection is closed at once");
    assert!(matches!(read, Ok(0) | Err(_)), "the third connection got data: {read:?}");
    let refused = listener.stderr.wait_for("the `refused` line", |l| l.contains("refused")).await;
    assert!(
        refused.contains("2 tunnels already open")
            && refused.contains("--max-websocket-connections"),
        "{refused}"
    );
    assert_eq!(lab.standin.count("OpenTunnel"), 2);

    // The first two still work; once one closes, a new connection is served again.
    assert_eq!(echo_back(&mut first, b"still one").await, b"still one");
    assert_eq!(echo_back(&mut second, b"still two").await, b"still two");
    drop(first);
    listener.stderr.wait_for("the `closed after` line", |l| l.contains(": closed after ")).await;
    let mut fourth = listener.connect().await;
    assert_eq!(echo_back(&mut fourth, b"four").await, b"four");
}

#[tokio::test]
async fn sigint_closes_the_listener_and_its_tunnels_with_130() {
    let lab = Lab::start_echo(Faults::default()).await;
    let mut listener = TunnelListener::start(&lab, &listener_args(&[])).await;
    let mut tcps = Vec::new();
    for i in 0..2u8 {
        let mut tcp = listener.connect().await;
        assert_eq!(echo_back(&mut tcp, &[i; 100]).await, [i; 100]);
        tcps.push(tcp);
    }
    let started = Instant::now();
    listener.interrupt();
    let status = listener.exit(Duration::from_secs(10)).await;
    let elapsed = started.elapsed();
    assert_eq!(status.code(), Some(130), "stderr:\n{}", listener.stderr.rest().await);
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?} to exit");
    // Each local connection was closed.
    for mut tcp in tcps {
        let mut buf = [0u8; 16];
        let read = timeout(Duration::from_secs(2), tcp.read(&mut buf))
            .await
            .expect("the local connection is closed");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    let stderr = listener.stderr.rest().await;
    assert!(!stderr.contains("did not close"), "{stderr}");
}

#[tokio::test]
async fn sigint_right_after_the_listening_line_exits_130() {
    let lab = Lab::start_echo(Faults::default()).await;
    let mut listener = TunnelListener::start(&lab, &listener_args(&[])).await;
    listener.interrupt();
    let status = listener.exit(Duration::from_secs(5)).await;
    assert_eq!(status.code(), Some(130), "{status:?}");
}

#[tokio::test]
async fn listener_binds_ipv6_and_reports_the_real_port() {
    let lab = Lab::start_echo(Faults::default()).await;
    let listener = TunnelListener::start(&lab, &listener_args(&["--bind", "::1"])).await;
    assert!(listener.addr.is_ipv6(), "{}", listener.addr);
    assert!(listener.addr.ip().is_loopback());
    assert_ne!(listener.addr.port(), 0);
    let line = &listener.stderr.seen[0];
    assert!(
        line.starts_with(&format!("eic: listening on [::1]:{},", listener.addr.port())),
        "{line}"
    );
    let mut tcp = listener.connect().await;
    assert_eq!(echo_back(&mut tcp, b"over IPv6").await, b"over IPv6");
}

/// Every signal whose default action would end eic (SIGUSR1, SIGALRM, ...) ends the listener
/// through its normal path, as SIGTERM does: its tunnels closed, 128 + the signal's number.
#[tokio::test]
async fn every_signal_that_would_end_eic_ends_the_listener_with_128_plus_n() {
    use nix::sys::signal::{kill, Signal};
    let lab = Lab::start_echo(Faults::default()).await;
    let signals = [
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGALRM,
        Signal::SIGVTALRM,
        Signal::SIGPROF,
        Signal::SIGXCPU,
        Signal::SIGXFSZ,
        Signal::SIGIO,
        Signal::SIGTERM,
    ];
    #[cfg(target_os = "linux")]
    let signals = [&signals[..], &[Signal::SIGPWR]].concat();
    for signal in signals {
        let mut listener = TunnelListener::start(&lab, &listener_args(&[])).await;
        let mut tcp = listener.connect().await;
        assert_eq!(echo_back(&mut tcp, b"before").await, b"before");
        let pid = listener.child.id().expect("the listener is running");
        kill(nix::unistd::Pid::from_raw(pid as i32), signal).unwrap();
        let status = listener.exit(Duration::from_secs(10)).await;
        let stderr = listener.stderr.rest().await;
        assert_eq!(status.code(), Some(128 + signal as i32), "{signal}: {status:?}\n{stderr}");
        let mut buf = [0u8; 16];
        let read = timeout(Duration::from_secs(2), tcp.read(&mut buf))
            .await
            .expect("the local connection is closed");
        assert!(matches!(read, Ok(0) | Err(_)), "{signal}: {read:?}");
    }
    #[cfg(target_os = "linux")]
    assert_eq!(128 + Signal::SIGUSR1 as i32, 138);
}

#[tokio::test]
async fn a_listener_off_loopback_warns_once_that_anyone_may_use_it() {
    let lab = Lab::start_echo(Faults::default()).await;
    let warning = |listener: &TunnelListener| {
        listener.stderr.seen.iter().filter(|l| l.contains("warning")).cloned().collect::<Vec<_>>()
    };
    let mut open = TunnelListener::start(&lab, &listener_args(&["--bind", "0.0.0.0"])).await;
    let said = warning(&open);
    assert_eq!(said.len(), 1, "stderr:\n{}", open.stderr.text());
    let line = &said[0];
    let port = open.addr.port();
    assert!(line.starts_with("eic: warning: "), "{line}");
    assert!(line.contains(&format!("0.0.0.0:{port} is not a loopback address")), "{line}");
    assert!(line.contains("anyone who can reach it") && line.contains("credentials"), "{line}");
    // Said before the listener is ready, and once only.
    assert!(open.stderr.seen.last().unwrap().starts_with("eic: listening on 0.0.0.0:"));
    open.interrupt();
    assert_eq!(open.exit(Duration::from_secs(5)).await.code(), Some(130));
    assert_eq!(open.stderr.count("warning"), 1, "{}", open.stderr.text());

    // Loopback, as by default: no warning.
    for bind in [&[][..], &["--bind", "::1"]] {
        let mut local = TunnelListener::start(&lab, &listener_args(bind)).await;
        assert_eq!(warning(&local), Vec::<String>::new(), "{bind:?}");
        local.interrupt();
        local.exit(Duration::from_secs(5)).await;
    }
}

// ---- --presigned-url-file (eic ssh's ProxyCommand) takes only a private file ----

/// `eic open-tunnel --presigned-url-file FILE ...` to an endpoint at `127.0.0.1:port`, with no
/// AWS setup (the mode needs none), run to its end.
async fn presigned_run(file: &std::path::Path, port: u16) -> std::process::Output {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(eic_bin());
    cmd.args(["open-tunnel", "--instance-connect-endpoint-id", ENDPOINT])
        .args(["--instance-connect-endpoint-dns-name", &format!("127.0.0.1:{port}")])
        .args(["--private-ip-address", PRIVATE_IP, "--connect-timeout", "5"])
        .arg("--presigned-url-file")
        .arg(file);
    for (key, _) in std::env::vars() {
        if key.starts_with("AWS_") || key.to_ascii_lowercase().ends_with("_proxy") {
            cmd.env_remove(&key);
        }
    }
    cmd.env("HOME", home.path()).kill_on_drop(true);
    run(&mut cmd, LIMIT).await
}

/// A URL file as `eic ssh` writes it, with `mode`.
fn url_file(dir: &std::path::Path, mode: u32) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let file = dir.join("tunnel-url");
    std::fs::write(&file, "wss://127.0.0.1/openTunnel?X-Amz-Signature=0\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
    file
}

#[track_caller]
fn assert_refused(out: &std::process::Output, file: &std::path::Path, what: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(252), "{stderr}");
    assert!(stderr.contains(&format!("--presigned-url-file {} ", file.display())), "{stderr}");
    assert!(stderr.contains(what), "`{what}` not in: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[tokio::test]
async fn a_presigned_url_file_others_may_read_is_refused_with_252() {
    let dir = runtime_dir();
    let file = url_file(dir.path(), 0o644);
    let out = presigned_run(&file, 1).await;
    assert_refused(&out, &file, "has mode 0644");
    assert!(file.exists(), "a refused file is left alone");

    let file = url_file(dir.path(), 0o620);
    assert_refused(&presigned_run(&file, 1).await, &file, "has mode 0620");
}

#[tokio::test]
async fn a_presigned_url_file_in_a_directory_others_may_open_is_refused_with_252() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let file = url_file(dir.path(), 0o600);
    let out = presigned_run(&file, 1).await;
    let what = format!("is in {}, which is not a directory of this user", dir.path().display());
    assert_refused(&out, &file, &what);
    assert!(file.exists(), "a refused file is left alone");
}

#[tokio::test]
async fn a_presigned_url_file_that_is_a_link_is_refused_with_252() {
    let dir = runtime_dir();
    let target = url_file(dir.path(), 0o600);
    let link = dir.path().join("link-to-url");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert_refused(&presigned_run(&link, 1).await, &link, "is a symbolic link");
    assert!(target.exists() && link.exists(), "nothing is removed");

    // Nor a FIFO, which eic would wait on.
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    assert_refused(&presigned_run(&fifo, 1).await, &fifo, "is not a regular file");
}

#[tokio::test]
async fn a_private_presigned_url_file_is_read_and_removed() {
    // The endpoint: a port that accepts, then closes, so the tunnel fails at once.
    let endpoint = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = endpoint.local_addr().unwrap().port();
    let closer = tokio::spawn(async move {
        while let Ok((tcp, _)) = endpoint.accept().await {
            drop(tcp);
        }
    });
    let dir = runtime_dir();
    let file = url_file(dir.path(), 0o600);
    let out = presigned_run(&file, port).await;
    closer.abort();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{stderr}");
    assert!(!stderr.contains("--presigned-url-file"), "{stderr}");
    assert!(!file.exists(), "the URL is read once, then removed");
}

// ---- HTTPS_PROXY and NO_PROXY ----

#[tokio::test]
async fn the_tunnel_goes_through_https_proxy_with_basic_auth() {
    let lab = Lab::start().await;
    let key = lab.authorized_key();
    let proxy = ConnectProxy::start().await;
    let mut ssh =
        lab.ssh_via_proxy(&format!("--instance-id {INSTANCE}"), &key, &["echo", "via the proxy"]);
    ssh.env("HTTPS_PROXY", format!("http://user:pa%40ss@127.0.0.1:{}", proxy.addr.port()));
    let out = run(&mut ssh, LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "via the proxy");
    assert_eq!(proxy.count(), 1);
    let expected = format!("Basic {}", data_encoding::BASE64.encode(b"user:pa@ss"));
    assert_eq!(proxy.authorizations(), [Some(expected)]);
}

#[tokio::test]
async fn http_proxy_is_used_when_https_proxy_is_not_set() {
    // The AWS CLI's tunnel takes HTTP_PROXY as well; HTTPS_PROXY, when set, comes first.
    let lab = Lab::start().await;
    let key = lab.authorized_key();
    let proxy = ConnectProxy::start().await;
    let unused = ConnectProxy::start().await;
    // The counts are cumulative: the second run goes through `unused`.
    for (variables, used) in [
        (&[("HTTP_PROXY", &proxy)][..], 1),
        (&[("http_proxy", &proxy), ("HTTPS_PROXY", &unused)], 1),
    ] {
        let mut ssh = lab.ssh_via_proxy(&format!("--instance-id {INSTANCE}"), &key, &["true"]);
        for (name, proxy) in variables {
            ssh.env(name, format!("http://127.0.0.1:{}", proxy.addr.port()));
        }
        let out = run(&mut ssh, LIMIT).await;
        assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
        let names: Vec<&str> = variables.iter().map(|(name, _)| *name).collect();
        assert_eq!(proxy.count(), used, "{names:?}");
    }
    assert_eq!(unused.count(), 1);
}

#[tokio::test]
async fn no_proxy_bypasses_the_proxy() {
    let lab = Lab::start().await;
    let key = lab.authorized_key();
    let proxy = ConnectProxy::start().await;
    let mut ssh = lab.ssh_via_proxy(&format!("--instance-id {INSTANCE}"), &key, &["true"]);
    ssh.env("HTTPS_PROXY", format!("http://user:pa%40ss@127.0.0.1:{}", proxy.addr.port()));
    ssh.env("NO_PROXY", "localhost");
    let out = run(&mut ssh, LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(proxy.count(), 0);
    assert_eq!(lab.standin.count("OpenTunnel"), 1);
}

// ---- The reader of eic's output goes away ----

#[tokio::test]
async fn a_closed_stdout_ends_eic_quietly() {
    let lab = Lab::start_echo(Faults::default()).await;
    let mut child =
        lab.stdio_tunnel(&["--instance-id", INSTANCE, "--remote-port", "3389"]).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    // Like `yes | eic open-tunnel ... | head -c 10`: input keeps coming, the reader leaves.
    let feed = tokio::spawn(async move {
        let chunk = vec![b'y'; 64 << 10];
        while stdin.write_all(&chunk).await.is_ok() {}
    });
    let mut head = [0u8; 10];
    timeout(LIMIT, stdout.read_exact(&mut head)).await.expect("the echo arrives").unwrap();
    assert_eq!(&head, b"yyyyyyyyyy");
    drop(stdout);
    let started = Instant::now();
    let status = timeout(Duration::from_secs(5), child.wait())
        .await
        .expect("eic exits once its stdout is gone")
        .unwrap();
    let elapsed = started.elapsed();
    let mut err = String::new();
    stderr.read_to_string(&mut err).await.unwrap();
    assert_eq!(status.code(), Some(0), "stderr: {err}");
    assert_eq!(err, "", "no error text");
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    feed.await.unwrap();
}

/// Pipes (as ssh gives its ProxyCommand) are driven by the runtime with `O_NONBLOCK`; the flag
/// belongs to the open file description, which eic shares, so it is cleared again at exit.
#[tokio::test]
async fn pipes_are_driven_nonblocking_and_left_blocking() {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    use std::io::{Read, Write};
    let nonblocking = |fd: &dyn std::os::fd::AsFd| {
        OFlag::from_bits_truncate(fcntl(fd.as_fd(), FcntlArg::F_GETFL).unwrap())
            .contains(OFlag::O_NONBLOCK)
    };
    let lab = Lab::start_echo(Faults::default()).await;
    let (stdin_r, mut stdin_w) = std::io::pipe().unwrap();
    let (mut stdout_r, stdout_w) = std::io::pipe().unwrap();
    let (stdin_keep, stdout_keep) = (stdin_r.try_clone().unwrap(), stdout_w.try_clone().unwrap());
    let mut cmd = lab.stdio_tunnel(&["--instance-id", INSTANCE, "--remote-port", "3389"]);
    cmd.stdin(stdin_r).stdout(stdout_w);
    let mut child = cmd.spawn().unwrap();
    drop(cmd);

    stdin_w.write_all(b"ping").unwrap();
    let echoed = tokio::task::spawn_blocking(move || {
        let mut echoed = [0u8; 4];
        stdout_r.read_exact(&mut echoed).map(|()| echoed)
    });
    let echoed = timeout(LIMIT, echoed).await.unwrap().unwrap().unwrap();
    assert_eq!(&echoed, b"ping");
    assert!(nonblocking(&stdin_keep) && nonblocking(&stdout_keep));

    drop(stdin_w);
    let status = timeout(LIMIT, child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(!nonblocking(&stdin_keep), "stdin left O_NONBLOCK");
    assert!(!nonblocking(&stdout_keep), "stdout left O_NONBLOCK");
}

/// Stdin and stdout that are not pipes (sockets here; a terminal or a file alike) are served by
/// threads of their own.
#[tokio::test]
async fn sockets_as_stdin_and_stdout() {
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixStream;
    let lab = Lab::start_echo(Faults::default()).await;
    let (stdin_child, stdin_ours) = UnixStream::pair().unwrap();
    let (stdout_child, stdout_ours) = UnixStream::pair().unwrap();
    let mut cmd = lab.stdio_tunnel(&["--instance-id", INSTANCE, "--remote-port", "3389"]);
    cmd.stdin(OwnedFd::from(stdin_child)).stdout(OwnedFd::from(stdout_child));
    let mut child = cmd.spawn().unwrap();
    drop(cmd);

    for ours in [&stdin_ours, &stdout_ours] {
        ours.set_nonblocking(true).unwrap();
    }
    let mut stdin = tokio::net::UnixStream::from_std(stdin_ours).unwrap();
    let mut stdout = tokio::net::UnixStream::from_std(stdout_ours).unwrap();
    let data = payload(4 << 20, 9);
    let mut echoed = vec![0u8; data.len()];
    let (sent, received) = timeout(LIMIT, async {
        tokio::join!(stdin.write_all(&data), stdout.read_exact(&mut echoed))
    })
    .await
    .expect("the echo comes back in time");
    sent.unwrap();
    received.unwrap();
    assert_eq!(sha256(&echoed), sha256(&data));
    drop(stdin);
    let status = timeout(LIMIT, child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn credentials_about_to_expire_are_fetched_again_for_the_next_tunnel() {
    // A credential_process whose keys expire in 45 s (within eic's 60 s margin) and change on
    // every call: each tunnel of the listener is presigned with a fresh key.
    let lab = Lab::start_echo(Faults::default()).await;
    let keys: Vec<String> = (0..10).map(|n| format!("AKIDREFRESH{n}")).collect();
    for key in &keys {
        let credential = eic_standin::Credential::new(key, "refreshed-secret");
        lab.standin.world().credentials.push(credential);
    }
    let dir = lab.home.path();
    let script = dir.join("credentials.sh");
    let counter = dir.join("calls");
    let expiry = std::time::SystemTime::now() + Duration::from_secs(45);
    let (y, mo, d, h, mi, s) = eic_standin::sigv4::utc_parts(expiry);
    let expiry = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nn=$(cat '{c}' 2>/dev/null || echo 0)\necho $((n + 1)) > '{c}'\n\
             printf '{{\"Version\": 1, \"AccessKeyId\": \"AKIDREFRESH%s\", \"SecretAccessKey\": \"refreshed-secret\", \"Expiration\": \"{expiry}\"}}' \"$n\"\n",
            c = counter.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.join("aws-config");
    std::fs::write(&config, format!("[default]\ncredential_process = {}\n", script.display()))
        .unwrap();

    let mut cmd = lab.eic(&["open-tunnel", "--local-port", "0"]);
    cmd.args(listener_args(&[]));
    for name in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"] {
        cmd.env_remove(name);
    }
    cmd.env("AWS_CONFIG_FILE", &config);
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null());
    cmd.stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stderr = crate::common::StderrLines::new(child.stderr.take().unwrap());
    let line = stderr.wait_for("listening", |l| l.starts_with("eic: listening on ")).await;
    let addr: std::net::SocketAddr =
        line["eic: listening on ".len()..].split(',').next().unwrap().parse().unwrap();
    for _ in 0..2 {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert_eq!(echo_back(&mut tcp, b"fresh").await, b"fresh");
    }
    let used: Vec<Option<String>> =
        lab.standin.calls_of("OpenTunnel").into_iter().map(|c| c.access_key_id).collect();
    assert_eq!(used.len(), 2, "{used:?}");
    assert!(used.iter().all(|k| k.as_deref().is_some_and(|k| k.starts_with("AKIDREFRESH"))));
    assert_ne!(used[0], used[1], "the second tunnel was signed with fresh credentials");
    crate::common::signal(child.id().unwrap(), "INT");
    let status = timeout(LIMIT, child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(130));
}
