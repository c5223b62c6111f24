//! Hardening: faults beyond the stand-in's basic knobs, hostile frame sequences, secrets, key
//! clean-up under SIGKILL, and load. Each test is bounded in time; docs/reliability.md lists them.

#[cfg(target_os = "linux")]
use std::process::Stdio;
use std::time::{Duration, Instant};

#[cfg(target_os = "linux")]
use crate::common::child_named;
use crate::common::{run, text, Lab, TunnelListener, INSTANCE};
use eic_standin::{Credential, Faults, World};
#[cfg(target_os = "linux")]
use tokio::io::AsyncBufReadExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(30);

struct Ended {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
    elapsed: Duration,
}

/// `eic open-tunnel` in stdio mode to the echo target (port 3389), stdin held open as ssh does,
/// writing `send`, until eic exits by itself (bounded by LIMIT).
async fn stdio_until_exit(lab: &Lab, extra: &[&str], send: &[u8]) -> Ended {
    let mut args = vec!["--instance-id", INSTANCE, "--remote-port", "3389"];
    args.extend_from_slice(extra);
    let started = Instant::now();
    let mut child = lab.stdio_tunnel(&args).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let _ = stdin.write_all(send).await;
    let drain = tokio::spawn(async move {
        let mut sink = Vec::new();
        let _ = stdout.read_to_end(&mut sink).await;
        sink
    });
    let status = tokio::time::timeout(LIMIT, child.wait())
        .await
        .unwrap_or_else(|_| panic!("eic open-tunnel {extra:?} did not exit within {LIMIT:?}"))
        .unwrap();
    drop(stdin);
    let stdout = drain.await.unwrap_or_default();
    let mut err = String::new();
    let _ = stderr.read_to_string(&mut err).await;
    Ended { code: status.code(), stdout, stderr: err, elapsed: started.elapsed() }
}

fn faults(edit: impl FnOnce(&mut Faults)) -> Faults {
    let mut f = Faults::default();
    edit(&mut f);
    f
}

/// A hand-made server frame: FIN set, unmasked.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n < 65536 => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

#[tokio::test]
async fn close_codes_with_and_without_reasons() {
    for (code, reason, want_exit) in [
        (1000, "", 0),
        (1000, "bye", 0),
        (1001, "", 255),
        (1001, "Endpoint going away", 255),
        (1008, "", 255),
        (1008, "Policy violation", 255),
        (1011, "", 255),
        (1011, "Internal error", 255),
    ] {
        let lab = Lab::start_echo(faults(|f| f.close_after = Some((4, code, reason.into())))).await;
        let ended = stdio_until_exit(&lab, &[], b"ping").await;
        assert_eq!(ended.code, Some(want_exit), "{code} {reason:?}: {}", ended.stderr);
        assert!(ended.elapsed < Duration::from_secs(10), "{code}: {:?}", ended.elapsed);
        // What came before the close frame is delivered, whatever the code.
        assert_eq!(ended.stdout, b"ping", "{code} {reason:?}");
        if want_exit != 0 {
            assert!(ended.stderr.contains(&format!("code {code}")), "{code}: {}", ended.stderr);
            assert!(ended.stderr.contains(reason), "{code}: {}", ended.stderr);
        } else {
            assert!(ended.stderr.is_empty(), "{code}: {}", ended.stderr);
        }
    }
}

#[tokio::test]
async fn a_close_reason_that_is_not_utf8_is_a_clean_255() {
    let mut payload = 1011u16.to_be_bytes().to_vec();
    payload.extend_from_slice(&[0xff, 0xfe, 0xfd]);
    let lab = Lab::start_echo(faults(|f| f.raw_after_upgrade = Some(frame(0x8, &payload)))).await;
    let ended = stdio_until_exit(&lab, &[], b"x").await;
    assert_eq!(ended.code, Some(255), "{}", ended.stderr);
    assert!(ended.stderr.contains("eic: error:"), "{}", ended.stderr);
    assert!(!ended.stderr.contains("panicked"), "{}", ended.stderr);
}

#[tokio::test]
async fn pings_are_answered_fragments_joined_and_a_close_echoed() {
    // Every kind of frame an endpoint may send, hand-made: eic must answer the ping with its
    // payload, pass the fragmented message on as one byte stream, and echo the close code.
    let mut raw = frame(0x9, b"are you there");
    let mut first = frame(0x2, b"frag");
    first[0] &= 0x7f; // FIN clear: the message continues
    raw.extend_from_slice(&first);
    raw.extend_from_slice(&frame(0xa, b"unasked pong"));
    raw.extend_from_slice(&frame(0x0, b"mented"));
    raw.extend_from_slice(&frame(0x2, b""));
    raw.extend_from_slice(&frame(0x2, b" and whole"));
    raw.extend_from_slice(&frame(0x8, &1000u16.to_be_bytes()));
    let lab = Lab::start_echo(faults(|f| f.raw_after_upgrade = Some(raw))).await;
    let ended = stdio_until_exit(&lab, &[], b"").await;
    assert_eq!(ended.code, Some(0), "{}", ended.stderr);
    assert_eq!(ended.stdout, b"fragmented and whole");
    assert!(ended.stderr.is_empty(), "{}", ended.stderr);
    let drained = lab.standin.drained(2, Duration::from_secs(5)).await;
    assert_eq!(drained, ["pong are you there", "close 1000"]);
}

#[tokio::test]
async fn broken_fragments_and_masked_frames_are_protocol_errors() {
    let mut masked = frame(0x2, b"");
    masked[1] |= 0x80;
    masked.extend_from_slice(&[1, 2, 3, 4]);
    let mut open = frame(0x2, b"a");
    open[0] &= 0x7f;
    let mut interrupted = open.clone();
    interrupted.extend_from_slice(&frame(0x2, b"b"));
    for (raw, what) in [
        (masked, "masked frame from server"),
        (frame(0x0, b"x"), "nothing to continue"),
        (interrupted, "waiting for more fragments"),
        (frame(0x9, &[0u8; 126]), "Control frame too big"),
        (frame(0x1, b"text"), "the endpoint sent a text frame"),
    ] {
        let lab = Lab::start_echo(faults(|f| f.raw_after_upgrade = Some(raw))).await;
        let ended = stdio_until_exit(&lab, &[], b"").await;
        assert_eq!(ended.code, Some(255), "{what}: {}", ended.stderr);
        let lines: Vec<&str> = ended.stderr.lines().collect();
        assert!(
            lines.len() == 1 && lines[0].contains("protocol error") && lines[0].contains(what),
            "{what}: {}",
            ended.stderr
        );
    }
}

#[tokio::test]
async fn random_frame_sequences_never_panic_or_hang() {
    // Seeded, so a failure is reproducible: valid and invalid opcodes, lengths, reserved bits.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..24 {
        let mut bytes = Vec::new();
        for _ in 0..(1 + next() % 6) {
            let opcode = (next() % 16) as u8;
            let payload: Vec<u8> = (0..(next() % 200)).map(|_| next() as u8).collect();
            let mut f = frame(opcode, &payload);
            if next() % 4 == 0 {
                f[0] ^= (next() as u8) & 0x70; // reserved bits
            }
            bytes.extend_from_slice(&f);
        }
        let lab = Lab::start_echo(faults(|f| f.raw_after_upgrade = Some(bytes.clone()))).await;
        let ended = stdio_until_exit(&lab, &["--connect-timeout", "5"], b"").await;
        assert!(
            matches!(ended.code, Some(0 | 255)),
            "round {round}: exit {:?}: {}",
            ended.code,
            ended.stderr
        );
        assert!(!ended.stderr.contains("panicked"), "round {round}: {}", ended.stderr);
    }
}

#[tokio::test]
async fn a_reset_before_the_upgrade_gives_255() {
    let lab = Lab::start_echo(faults(|f| f.reset_after = Some(0))).await;
    let ended = stdio_until_exit(&lab, &[], b"x").await;
    assert_eq!(ended.code, Some(255), "{}", ended.stderr);
    assert!(ended.elapsed < Duration::from_secs(10));
}

#[tokio::test]
async fn the_stand_in_killed_mid_transfer_gives_255_at_once() {
    let lab = Lab::start_echo(Faults::default()).await;
    let mut child =
        lab.stdio_tunnel(&["--instance-id", INSTANCE, "--remote-port", "3389"]).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    stdin.write_all(b"first").await.unwrap();
    let mut buf = [0u8; 5];
    tokio::time::timeout(LIMIT, stdout.read_exact(&mut buf)).await.unwrap().unwrap();
    let Lab { standin, sshd, home } = lab;
    drop(standin); // every server task and connection of the stand-in ends here
    let killed = Instant::now();
    let status = tokio::time::timeout(LIMIT, child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(255));
    assert!(killed.elapsed() < Duration::from_secs(5), "{:?}", killed.elapsed());
    drop((sshd, home, stdin));
}

#[tokio::test]
async fn api_500s_are_retried_then_254() {
    let lab = Lab::start().await;
    lab.standin.world().faults.internal_error = u32::MAX;
    let started = Instant::now();
    let out = run(&mut lab.eic(&["open-tunnel", "--instance-id", INSTANCE]), LIMIT).await;
    assert_eq!(out.status.code(), Some(254), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("InternalError"), "{}", text(&out.stderr));
    assert_eq!(lab.standin.count("DescribeInstances"), 3, "the SDK's standard retry: 3 attempts");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test]
async fn credentials_that_expire_between_lookup_and_tunnel() {
    let lab = Lab::start_echo(Faults::default()).await;
    let mut listener =
        TunnelListener::start(&lab, &["--instance-id", INSTANCE, "--remote-port", "3389"]).await;
    // The lookups are done; now the endpoint no longer accepts these credentials.
    lab.standin.world().credentials = vec![Credential::new("AKIDOTHER", "other")];
    let mut tcp = listener.connect().await;
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(LIMIT, tcp.read(&mut buf)).await.unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "the connection is closed");
    let line = listener.stderr.wait_for("the refusal", |l| l.contains("HTTP 403")).await;
    assert!(line.contains("request id") && line.contains("credentials"), "{line}");
    // The listener stays up for the next connection.
    assert!(listener.child.try_wait().unwrap().is_none());
    listener.interrupt();
    assert_eq!(listener.exit(LIMIT).await.code(), Some(130));
}

#[tokio::test]
async fn a_local_port_in_use_is_named() {
    let lab = Lab::start().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = run(
        &mut lab.eic(&["open-tunnel", "--instance-id", INSTANCE, "--local-port", &port]),
        LIMIT,
    )
    .await;
    assert_eq!(out.status.code(), Some(255));
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&port) && stderr.contains("--local-port"), "{stderr}");
}

// ---- Hostile text ----

/// Text shown on a terminal holds no control character (escape sequences stay escaped).
fn assert_printable(what: &str, text: &str) {
    let bad = text.chars().find(|c| c.is_control() && *c != '\n');
    assert!(bad.is_none(), "{what} shows {bad:?} raw: {text:?}");
}

#[tokio::test]
async fn text_from_the_endpoint_and_the_api_reaches_the_terminal_escaped() {
    // A close reason and an upgrade refusal, with escape sequences in them.
    let reason = "Unable to connect\x1b[2J\x1b]0;pwned\x07";
    let lab = Lab::start_echo(faults(|f| f.close_after = Some((0, 1011, reason.into())))).await;
    let ended = stdio_until_exit(&lab, &[], b"").await;
    assert_eq!(ended.code, Some(255), "{}", ended.stderr);
    assert!(ended.stderr.contains("Unable to connect\\u{1b}[2J"), "{}", ended.stderr);
    assert_printable("a close reason", &ended.stderr);
    let refused = (403, "Denied\x1b[31m".to_string(), "go\r\naway\x1b[0m".to_string());
    let lab = Lab::start_echo(faults(|f| f.upgrade_error = Some(refused))).await;
    let ended = stdio_until_exit(&lab, &[], b"").await;
    assert_eq!(ended.code, Some(254), "{}", ended.stderr);
    assert!(ended.stderr.contains("go\\r\\naway"), "{}", ended.stderr);
    assert_printable("an upgrade refusal", &ended.stderr);

    // Tags and other API text in the table of instances to choose from.
    let lab = Lab::start_with(|mut world| {
        let mut twin = world.instance_mut(INSTANCE).unwrap().clone();
        twin.id = "i-0aaaaaaaaaaaaaaa1".into();
        // XML carries no C0 control but these: CSI (U+009B) is ESC [ to many terminals.
        twin.availability_zone = "us-east-1a\u{9b}2J\t".into();
        world.instance(twin)
    })
    .await;
    let out = run(&mut lab.eic(&["open-tunnel", "--name", "web-1"]), LIMIT).await;
    assert_eq!(out.status.code(), Some(252), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("us-east-1a\\u{9b}2J\\t"), "{}", text(&out.stderr));
    assert_printable("the table of instances", &text(&out.stderr));
}

#[tokio::test]
async fn an_endpoint_dns_name_from_the_api_is_checked_before_any_connection() {
    // An HTTP proxy that would carry the CONNECT request line: it must see nothing.
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    let lab = Lab::start_with(|mut world| {
        let endpoint = world.endpoints.iter_mut().next().unwrap();
        endpoint.dns_name = Some("eice.example.com\r\nX-Injected: yes".into());
        world
    })
    .await;
    let mut cmd = lab.stdio_tunnel(&["--instance-id", INSTANCE]);
    cmd.env("HTTPS_PROXY", &proxy_url);
    let out = run(&mut cmd, LIMIT).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(254), "{stderr}");
    assert!(stderr.contains("invalid DNS name"), "{stderr}");
    assert_printable("the error", &stderr);
    let accepted = tokio::time::timeout(Duration::from_millis(200), proxy.accept()).await;
    assert!(accepted.is_err(), "eic connected to the proxy");
}

#[tokio::test]
async fn a_name_with_wildcards_matches_only_itself() {
    // EC2 takes `*` and `?` in a tag:Name filter as wildcards; eic takes the name as it is.
    let lab = Lab::start().await;
    for name in ["web*", "web-?", "*"] {
        let out = run(&mut lab.eic(&["ssh", "--name", name, "--dry-run"]), LIMIT).await;
        assert_eq!(out.status.code(), Some(252), "--name {name}: {}", text(&out.stdout));
        assert!(
            text(&out.stderr).contains("no running instance is named"),
            "{}",
            text(&out.stderr)
        );
    }
}

#[tokio::test]
async fn ids_from_the_api_are_checked_for_their_shape() {
    // An answer that names an instance or endpoint by something that is not an id of its kind
    // is not trusted: 254, before any key is pushed or tunnel opened.
    let lab = Lab::start().await;
    lab.standin.world().instances[0].id = "i-0123456789abcdef0;x".into();
    let out = run(&mut lab.eic(&["ssh", "--name", "web-1", "--dry-run"]), LIMIT).await;
    assert_eq!(out.status.code(), Some(254), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("malformed id"), "{}", text(&out.stderr));

    let lab = Lab::start().await;
    lab.standin.world().endpoints[0].id = "eice-1".into();
    let out = run(&mut lab.eic(&["ssh", "--instance-id", INSTANCE, "--dry-run"]), LIMIT).await;
    assert_eq!(out.status.code(), Some(254), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("malformed id `eice-1`"), "{}", text(&out.stderr));
    assert_eq!(lab.standin.count("SendSSHPublicKey"), 0);
}

// ---- Secrets ----

// The tests that look for secrets read /proc: Linux only, and so are their helpers.
#[cfg(target_os = "linux")]
const ACCESS_KEY: &str = "AKIDHARDENINGTEST";
#[cfg(target_os = "linux")]
const SECRET: &str = "hardening-secret-key-value";
#[cfg(target_os = "linux")]
const TOKEN: &str = "hardening-session-token-value";

#[cfg(target_os = "linux")]
fn secret_world(world: World) -> World {
    world.only_credential(Credential::new(ACCESS_KEY, SECRET).with_token(TOKEN))
}

/// No secret, and no signature value, in `text`.
#[cfg(target_os = "linux")]
fn assert_clean(what: &str, text: &str) {
    for secret in [SECRET, TOKEN] {
        assert!(!text.contains(secret), "{what} shows {secret}:\n{text}");
    }
    for (i, _) in text.match_indices("X-Amz-Signature=") {
        let value = &text[i + "X-Amz-Signature=".len()..];
        assert!(value.starts_with("REDACTED"), "{what} shows a signature:\n{text}");
    }
    for (i, _) in text.match_indices("X-Amz-Credential=") {
        let value = &text[i + "X-Amz-Credential=".len()..];
        assert!(!value.starts_with(ACCESS_KEY), "{what} shows the access key in a URL:\n{text}");
    }
}

/// Every process's argv on this machine.
#[cfg(target_os = "linux")]
fn all_argv() -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(raw) = std::fs::read(entry.path().join("cmdline")) {
            out.push_str(&String::from_utf8_lossy(&raw).replace('\0', " "));
            out.push('\n');
        }
    }
    out
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn no_secret_on_any_output_or_argv_with_debug() {
    let lab = Lab::start_with(secret_world).await;
    let key = lab.authorized_key();

    // open-tunnel as a ProxyCommand (stdio), with --debug.
    let out = run(
        &mut lab.ssh_via_proxy(&format!("--debug --instance-id {INSTANCE}"), &key, &["echo ok"]),
        LIMIT,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("opening tunnel"), "--debug logs: {}", text(&out.stderr));
    assert_clean("open-tunnel stderr", &text(&out.stderr));
    // Not a terminal: plain text, no colour codes.
    assert!(!text(&out.stderr).contains('\x1b'), "{}", text(&out.stderr));

    // Listener mode with --debug: its argv, stderr, and a connection through it.
    let mut listener = TunnelListener::start(&lab, &["--debug", "--instance-id", INSTANCE]).await;
    let mut tcp = listener.connect().await;
    let mut banner = [0u8; 8];
    tokio::time::timeout(LIMIT, tcp.read_exact(&mut banner)).await.unwrap().unwrap();
    assert_eq!(&banner, b"SSH-2.0-");
    assert_clean("argv while the listener runs", &all_argv());
    listener.interrupt();
    listener.exit(LIMIT).await;
    assert_clean("listener stderr", &listener.stderr.text());

    // eic ssh with --debug: the remote command sees every argv, the ProxyCommand child's too.
    let dump = r#"for f in /proc/[0-9]*/cmdline; do tr '\0' ' ' < "$f"; echo; done"#;
    let user = lab.sshd.user().to_string();
    let mut args = vec!["--debug", "ssh", "--instance-id", INSTANCE, "--os-user", &user, "--"];
    let options = lab.ssh_options();
    args.extend(options.iter().map(String::as_str));
    args.push(dump);
    let out = run(&mut lab.eic(&args), LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("open-tunnel"), "the child's argv was seen");
    assert_clean("ssh: every argv", &text(&out.stdout));
    assert_clean("ssh: stderr", &text(&out.stderr));

    // eic ssh --dry-run prints a command line: no secret in it either.
    let out = run(&mut lab.eic(&["ssh", "--instance-id", INSTANCE, "--dry-run"]), LIMIT).await;
    assert_eq!(out.status.code(), Some(0));
    assert_clean("dry-run stdout", &text(&out.stdout));
}

/// The environment of process `pid`, one `NAME=value` per line.
#[cfg(target_os = "linux")]
fn environ(pid: u32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    String::from_utf8_lossy(&raw).replace('\0', "\n")
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn ssh_and_its_commands_get_no_credential_in_their_environment() {
    let lab = Lab::start_with(secret_world).await;
    let runtime = crate::common::runtime_dir();
    let user = lab.sshd.user().to_string();
    // `SendEnv AWS_*` (a user's ssh_config may have it), `-v` from --debug, and a remote
    // command that prints the environment it got.
    let mut args = vec!["--debug", "ssh", "--instance-id", INSTANCE, "--os-user", &user, "--"];
    let options = lab.ssh_options();
    args.extend(options.iter().map(String::as_str));
    args.extend(["-o", "SendEnv=AWS_*", "env; echo started; exec sleep 60"]);
    let mut cmd = lab.eic(&args);
    cmd.env("XDG_RUNTIME_DIR", runtime.path()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut remote_env = String::new();
    while !remote_env.ends_with("started\n") {
        let read = tokio::time::timeout(LIMIT, stdout.read_line(&mut remote_env));
        assert!(read.await.unwrap().unwrap() > 0, "ssh ended early: {remote_env}");
    }
    assert_clean("the remote command's environment", &remote_env);
    let ssh = child_named(child.id().unwrap(), "ssh").expect("eic's ssh child");
    let proxy = child_named(ssh, "eic").expect("ssh's ProxyCommand child, eic");
    for (what, pid) in [("ssh", ssh), ("the ProxyCommand child", proxy)] {
        let env = environ(pid);
        assert_clean(&format!("{what}'s environment"), &env);
        for name in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"] {
            assert!(!env.contains(&format!("{name}=")), "{what} has {name}:\n{env}");
        }
    }
    crate::common::signal(child.id().unwrap(), "TERM");
    let status = tokio::time::timeout(LIMIT, child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(128 + 15));
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).await.unwrap();
    assert!(stderr.contains("debug1:"), "ssh -v logs: {stderr}");
    assert_clean("stderr with --debug and SendEnv AWS_*", &stderr);
}

// ---- Keys under every exit path ----

#[cfg(target_os = "linux")]
#[tokio::test]
async fn sigkill_of_ssh_still_removes_the_key() {
    let lab = Lab::start().await;
    let runtime = crate::common::runtime_dir();
    let user = lab.sshd.user().to_string();
    let mut args = vec!["ssh", "--no-reuse", "--instance-id", INSTANCE, "--os-user", &user, "--"];
    let options = lab.ssh_options();
    args.extend(options.iter().map(String::as_str));
    args.push("echo started; exec sleep 60");
    let mut cmd = lab.eic(&args);
    cmd.env("XDG_RUNTIME_DIR", runtime.path()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut started = [0u8; 8];
    tokio::time::timeout(LIMIT, stdout.read_exact(&mut started)).await.unwrap().unwrap();
    assert_eq!(&started, b"started\n");

    let key_dir = std::fs::read_dir(runtime.path()).unwrap().next().unwrap().unwrap().path();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(key_dir.metadata().unwrap().permissions().mode() & 0o777, 0o700);
    let key = key_dir.join("id_ed25519");
    assert_eq!(key.metadata().unwrap().permissions().mode() & 0o777, 0o600);

    let ssh = child_named(child.id().unwrap(), "ssh").expect("eic's ssh child");
    crate::common::signal(ssh, "KILL");
    let status = tokio::time::timeout(LIMIT, child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(128 + 9), "ssh's death by SIGKILL is passed on");
    assert!(!key_dir.exists(), "the key directory is gone");
}

// ---- Load ----

#[cfg(target_os = "linux")]
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

#[cfg(target_os = "linux")]
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_sequential_connections_leak_nothing() {
    let lab = Lab::start_echo(Faults::default()).await;
    let mut listener =
        TunnelListener::start(&lab, &["--instance-id", INSTANCE, "--remote-port", "3389"]).await;
    let pid = listener.child.id().unwrap();
    let one = |i: u32| {
        let addr = listener.addr;
        async move {
            let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let msg = format!("connection {i}");
            let back = crate::common::echo_back(&mut tcp, msg.as_bytes()).await;
            assert_eq!(back, msg.as_bytes());
        }
    };
    // Warm up (allocator arenas, TLS session state), then measure.
    for i in 0..50 {
        one(i).await;
    }
    let settle = |pid| async move {
        // Closed connections' descriptors are released asynchronously: wait until stable.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last = fd_count(pid);
        loop {
            tokio::task::yield_now().await;
            let now = fd_count(pid);
            if now == last && now > 0 || Instant::now() > deadline {
                return now;
            }
            last = now;
        }
    };
    let (fds_before, rss_before) = (settle(pid).await, rss_kib(pid));
    let started = Instant::now();
    for i in 50..1050 {
        one(i).await;
    }
    let elapsed = started.elapsed();
    let lines = listener.stderr.count("closed after");
    let deadline = Instant::now() + LIMIT;
    while listener.stderr.count("closed after") < 1050 && Instant::now() < deadline {
        listener.stderr.wait_for("a closed line", |l| l.contains("closed after")).await;
    }
    let (fds_after, rss_after) = (settle(pid).await, rss_kib(pid));
    eprintln!(
        "1000 connections in {elapsed:?}; fds {fds_before} -> {fds_after}; RSS {rss_before} -> {rss_after} KiB; {lines} closed lines"
    );
    assert!(fds_after <= fds_before + 2, "fds {fds_before} -> {fds_after}");
    assert!(rss_after < rss_before + 8 * 1024, "RSS {rss_before} -> {rss_after} KiB");
    listener.interrupt();
    listener.exit(LIMIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_tunnels_of_64_mib_in_parallel() {
    let size: usize =
        std::env::var("EIC_LOAD_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(64) << 20;
    let lab = Lab::start_echo(Faults::default()).await;
    let mut listener = TunnelListener::start(
        &lab,
        &["--instance-id", INSTANCE, "--remote-port", "3389", "--max-websocket-connections", "20"],
    )
    .await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20u64 {
        let addr = listener.addr;
        tasks.spawn(async move {
            let data = crate::common::payload(size, 1000 + i);
            let want = crate::common::sha256(&data);
            let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let back = crate::common::echo_back(&mut tcp, &data).await;
            (i, want, crate::common::sha256(&back))
        });
    }
    let all = tokio::time::timeout(Duration::from_secs(240), tasks.join_all())
        .await
        .expect("20 x 64 MiB within 4 minutes");
    for (i, want, got) in all {
        assert_eq!(got, want, "tunnel {i}");
    }
    listener.interrupt();
    listener.exit(LIMIT).await;
}

// ---- Trust store ----

#[tokio::test]
async fn the_trust_store_is_aws_ca_bundle_then_ssl_cert_file() {
    let lab = Lab::start().await;
    let key = lab.authorized_key();
    let ca = lab.standin.ca_pem_path().display().to_string();
    let args = format!("--instance-id {INSTANCE}");

    // SSL_CERT_FILE alone is honoured.
    let mut cmd = lab.ssh_via_proxy(&args, &key, &["echo trusted"]);
    cmd.env_remove("AWS_CA_BUNDLE").env("SSL_CERT_FILE", &ca);
    let out = run(&mut cmd, LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "trusted\n");

    // AWS_CA_BUNDLE wins over SSL_CERT_FILE, as in the AWS CLI: a bundle without the
    // stand-in's CA makes the TLS handshake fail, and eic says so.
    let other = eic_standin::StandIn::start(World::new()).await.unwrap();
    let mut cmd = lab.ssh_via_proxy(&args, &key, &["echo trusted"]);
    cmd.env("AWS_CA_BUNDLE", other.ca_pem_path()).env("SSL_CERT_FILE", &ca);
    let out = run(&mut cmd, LIMIT).await;
    assert_eq!(out.status.code(), Some(255));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("certificate") || stderr.contains("Certificate"), "{stderr}");

    // --ca-bundle (the AWS CLI's global option) wins over both.
    let args = format!("--ca-bundle {ca} --instance-id {INSTANCE}");
    let mut cmd = lab.ssh_via_proxy(&args, &key, &["echo trusted"]);
    cmd.env("AWS_CA_BUNDLE", other.ca_pem_path()).env("SSL_CERT_FILE", other.ca_pem_path());
    let out = run(&mut cmd, LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}
