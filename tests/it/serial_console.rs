//! `eic serial-console` against the stand-in's SendSerialConsoleSSHPublicKey and its serial
//! console SSH server (in-process), reached through eic's documented override
//! (`EIC_SERIAL_CONSOLE_ENDPOINT`, `EIC_SERIAL_CONSOLE_FINGERPRINT`). ssh is the real OpenSSH,
//! behind the lab's wrapper (`BatchMode`, `StrictHostKeyChecking yes`, a known_hosts file that
//! does not hold the console's key).

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::common::{run, runtime_dir, text, Lab, INSTANCE};

const LIMIT: Duration = Duration::from_secs(30);
const PUSH: &str = "SendSerialConsoleSSHPublicKey";
/// AWS's published fingerprint for us-east-1's serial console: not the stand-in's key.
const AWS_US_EAST_1: &str = "SHA256:dXwn5ma/xadVMeBZGEru5l2gx+yI5LDiJaLUcz0FMmw";

/// `eic serial-console ARGS` at the stand-in's console, pinned to its key (unless `pinned` is
/// false), ssh being the lab's wrapper, with `runtime` as XDG_RUNTIME_DIR.
fn console(lab: &Lab, runtime: &std::path::Path, args: &[&str], pinned: bool) -> Command {
    let mut cmd = lab.eic(&["serial-console"]);
    cmd.args(args).env("PATH", lab.wrapped_path()).env("XDG_RUNTIME_DIR", runtime);
    for (key, value) in lab.standin.serial_console_env() {
        if pinned || key == "EIC_SERIAL_CONSOLE_ENDPOINT" {
            cmd.env(key, value);
        }
    }
    cmd
}

/// Runs a console session: sends `input`, closes stdin (the console then ends the session).
async fn session(mut cmd: Command, input: &str) -> std::process::Output {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("eic starts");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    tokio::time::timeout(LIMIT, child.wait_with_output()).await.expect("the session ends").unwrap()
}

/// Starts a console session and returns once its console prompts (the session is up).
async fn prompted(mut cmd: Command) -> tokio::process::Child {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    tokio::time::timeout(LIMIT, async {
        let mut buf = [0u8; 256];
        while !text(&seen).contains("login: ") {
            let n = stdout.read(&mut buf).await.unwrap();
            assert!(n > 0, "the session ended: {}", text(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("the console prompts");
    child
}

fn is_empty_dir(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).unwrap().next().is_none()
}

#[tokio::test]
async fn logs_in_with_a_key_pushed_for_port_0_and_the_pinned_host_key() {
    let lab = Lab::start().await;
    let runtime = runtime_dir();
    let cmd = console(&lab, runtime.path(), &["--instance-id", INSTANCE], true);
    let out = session(cmd, "hello console\n").await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains(&format!("{INSTANCE} serial console")), "{stdout}");
    assert!(stdout.contains("login: ") && stdout.contains("hello console"), "{stdout}");
    let pushes = lab.standin.calls_of(PUSH);
    assert_eq!(pushes.len(), 1);
    assert_eq!(pushes[0].params["InstanceId"], INSTANCE);
    assert_eq!(pushes[0].params["SerialPort"], "0");
    assert!(pushes[0].params["SSHPublicKey"].starts_with("ssh-ed25519 "));
    // An instance id is not looked up: the service says whether it exists and runs.
    assert_eq!(lab.standin.count("DescribeInstances"), 0);
    // The override is said; the one-time key and the known_hosts file are gone.
    assert!(stderr.contains("warning: the serial console is at 127.0.0.1:"), "{stderr}");
    assert!(is_empty_dir(runtime.path()));
    // The session is over: the instance takes a new one.
    assert!(lab.standin.world().serial_sessions.is_empty());
    let again =
        session(console(&lab, runtime.path(), &["--instance-id", INSTANCE], true), "").await;
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
}

#[tokio::test]
async fn a_host_key_with_another_fingerprint_is_refused_before_any_push() {
    let lab = Lab::start().await;
    let runtime = runtime_dir();
    let mut cmd = console(&lab, runtime.path(), &["--instance-id", INSTANCE], true);
    cmd.env("EIC_SERIAL_CONSOLE_FINGERPRINT", AWS_US_EAST_1);
    let out = run(&mut cmd, LIMIT).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{stderr}");
    let shown = lab.standin.serial_console_fingerprint();
    assert!(stderr.contains(&format!("ssh-ed25519 {shown}")), "{stderr}");
    assert!(stderr.contains("presented a host key (ecdsa-sha2-nistp256 SHA256:"), "{stderr}");
    assert!(stderr.contains(&format!("that is not {AWS_US_EAST_1}")), "{stderr}");
    assert!(stderr.contains("nothing was pushed"), "{stderr}");
    assert_eq!(lab.standin.count(PUSH), 0);
    assert!(out.stdout.is_empty());
    assert!(is_empty_dir(runtime.path()));
}

#[tokio::test]
async fn without_a_fingerprint_ssh_decides_by_its_known_hosts() {
    let lab = Lab::start().await;
    let runtime = runtime_dir();
    let args = ["--instance-id", INSTANCE];
    // The lab's known_hosts does not know the console: ssh (BatchMode, strict) refuses.
    let out = session(console(&lab, runtime.path(), &args, false), "").await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{stderr}");
    assert!(stderr.contains("no published fingerprint"), "{stderr}");
    assert!(stderr.contains("Host key verification failed"), "{stderr}");
    // Known under the override's own name, never the region's (AWS's key is another).
    let port = lab.standin.serial_console_addr().port();
    let known = format!("[127.0.0.1]:{port} {}\n", lab.standin.serial_console_host_key());
    std::fs::write(lab.known_hosts(), known).unwrap();
    let out = session(console(&lab, runtime.path(), &args, false), "hi\n").await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("hi"));
}

#[tokio::test]
async fn a_second_session_gets_the_session_limit_error() {
    let lab = Lab::start().await;
    let runtime = runtime_dir();
    let mut first =
        prompted(console(&lab, runtime.path(), &["--instance-id", INSTANCE], true)).await;

    let out =
        run(&mut console(&lab, runtime.path(), &["--instance-id", INSTANCE], true), LIMIT).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(254), "{stderr}");
    assert!(stderr.contains("SerialConsoleSessionLimitExceededException"), "{stderr}");
    assert!(stderr.contains("already has a serial console session (one at a time)"), "{stderr}");

    drop(first.stdin.take());
    let status = tokio::time::timeout(LIMIT, first.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn every_service_error_says_what_to_do_and_exits_254() {
    let lab = Lab::start().await;
    let runtime = runtime_dir();
    let table = [
        (
            "SerialConsoleAccessDisabledException",
            "aws ec2 enable-serial-console-access --region us-east-1",
        ),
        ("SerialConsoleSessionLimitExceededException", "one at a time"),
        ("SerialConsoleSessionUnavailableException", "retry in a minute"),
        ("SerialConsoleSessionUnsupportedException", "reboot the instance to update it"),
        ("EC2InstanceTypeInvalidException", "needs a Nitro instance type"),
        ("EC2InstanceNotFoundException", "check the instance id and the region (us-east-1)"),
        ("EC2InstanceStateInvalidException", "must be running"),
        ("EC2InstanceUnavailableException", "retry in a minute"),
        ("AuthException", "must allow ec2-instance-connect:SendSerialConsoleSSHPublicKey"),
        ("InvalidArgsException", "the service has only port 0"),
        ("ServiceException", "retry in a minute"),
    ];
    for (code, hint) in table {
        lab.standin.world().faults.serial_console_error = Some(code.into());
        let args = ["--instance-id", INSTANCE];
        let out = run(&mut console(&lab, runtime.path(), &args, true), LIMIT).await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(254), "{code}: {stderr}");
        assert!(stderr.contains(code) && stderr.contains(hint), "{code}: {stderr}");
        assert!(is_empty_dir(runtime.path()), "{code}");
    }
    // The account setting itself, as the stand-in's service checks it.
    lab.standin.world().faults.serial_console_error = None;
    lab.standin.world().serial_console_access = false;
    let out =
        run(&mut console(&lab, runtime.path(), &["--instance-id", INSTANCE], true), LIMIT).await;
    assert_eq!(out.status.code(), Some(254));
    assert!(text(&out.stderr).contains("enable-serial-console-access"));
}

#[tokio::test]
async fn dry_run_shows_the_command_and_the_checked_key_and_pushes_nothing() {
    let lab = Lab::start().await;
    let runtime = runtime_dir();
    let args = ["--instance-id", INSTANCE, "--dry-run"];
    let out = run(&mut console(&lab, runtime.path(), &args, true), LIMIT).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for part in [
        &format!("HostKeyAlias=[127.0.0.1]:{}", lab.standin.serial_console_addr().port()),
        "StrictHostKeyChecking=yes",
        "VerifyHostKeyDNS=no",
        "HostKeyAlgorithms=ssh-ed25519",
        "CheckHostIP=no",
        &format!("-- {INSTANCE}.port0@127.0.0.1"),
    ] {
        assert!(stdout.contains(part), "{part}: {stdout}");
    }
    assert!(!stdout.contains("ProxyCommand"), "{stdout}");

    // By Name, as JSON.
    let args = ["--name", "web-1", "--dry-run", "--output", "json"];
    let out = run(&mut console(&lab, runtime.path(), &args, true), LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["instance_id"], INSTANCE);
    assert_eq!(plan["user"], format!("{INSTANCE}.port0"));
    assert_eq!(plan["region"], "us-east-1");
    assert_eq!(plan["host_key"]["type"], "ssh-ed25519");
    assert_eq!(plan["host_key"]["fingerprint"], lab.standin.serial_console_fingerprint());
    assert_eq!(plan["host_key"]["source"], "EIC_SERIAL_CONSOLE_FINGERPRINT");
    assert!(plan["ssh"][0].as_str().unwrap().ends_with("ssh"));
    assert_eq!(lab.standin.count(PUSH), 0);
    assert_eq!(lab.standin.count("DescribeInstances"), 1);
}

#[tokio::test]
async fn a_name_with_no_running_instance_is_a_usage_error_and_nothing_is_pushed() {
    let lab = Lab::start().await;
    lab.standin.world().instance_mut(INSTANCE).unwrap().state = "stopped".into();
    let runtime = runtime_dir();
    let out = run(&mut console(&lab, runtime.path(), &["--name", "web-1"], true), LIMIT).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(252), "{stderr}");
    assert!(stderr.contains("no running instance is named `web-1` in us-east-1"), "{stderr}");
    assert_eq!(lab.standin.count(PUSH), 0);
}

#[tokio::test]
async fn without_ssh_keyscan_it_is_a_configuration_error() {
    let lab = Lab::start().await;
    let runtime = runtime_dir();
    // An ssh with no ssh-keyscan beside it or on PATH.
    let bin = lab.home.path().join("only-ssh");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(which("ssh"), bin.join("ssh")).unwrap();
    let mut cmd = console(&lab, runtime.path(), &["--instance-id", INSTANCE], true);
    cmd.env("PATH", &bin);
    let out = run(&mut cmd, LIMIT).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(253), "{stderr}");
    assert!(stderr.contains("ssh-keyscan not found"), "{stderr}");
    assert_eq!(lab.standin.count(PUSH), 0);
}

fn which(program: &str) -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap();
    let found = std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file());
    found.unwrap_or_else(|| panic!("{program} on PATH"))
}

#[tokio::test]
async fn a_signal_during_the_session_ends_it_and_removes_the_key() {
    let lab = Lab::start().await;
    let runtime = runtime_dir();
    for (signal, code) in [("INT", 130), ("TERM", 143), ("HUP", 129)] {
        let args = ["--instance-id", INSTANCE];
        let mut child = prompted(console(&lab, runtime.path(), &args, true)).await;
        assert!(!is_empty_dir(runtime.path()), "the key exists while ssh runs");
        // stdin stays open: its end would end the session before the signal arrives.
        let _stdin = child.stdin.take();
        crate::common::signal(child.id().unwrap(), signal);
        let status = tokio::time::timeout(LIMIT, child.wait()).await.unwrap().unwrap();
        assert_eq!(status.code(), Some(code), "{signal}");
        assert!(is_empty_dir(runtime.path()), "{signal}");
        // The next session must not find this one still open.
        let deadline = std::time::Instant::now() + LIMIT;
        while !lab.standin.world().serial_sessions.is_empty() {
            assert!(std::time::Instant::now() < deadline, "the session never ended");
            tokio::task::yield_now().await;
        }
    }
}

#[tokio::test]
async fn ssh_itself_refuses_a_key_other_than_the_checked_one() {
    use std::os::unix::fs::PermissionsExt;
    let lab = Lab::start().await;
    let runtime = runtime_dir();
    // An ssh-keyscan beside the lab's ssh (found first) that reports another key, as a host
    // that changed its key between the scan and the login would: its fingerprint is pinned.
    let other = "AAAAC3NzaC1lZDI1NTE5AAAAIG8s8bUUqMv3LmuJO6X0iAq8PrqT6GWFqkWW6/mQd5ln";
    let bin = std::env::split_paths(&lab.wrapped_path()).next().unwrap();
    let fake = bin.join("ssh-keyscan");
    std::fs::write(&fake, format!("#!/bin/sh\necho \"127.0.0.1 ssh-ed25519 {other}\"\n")).unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = console(&lab, runtime.path(), &["--instance-id", INSTANCE], true);
    cmd.env("EIC_SERIAL_CONSOLE_FINGERPRINT", "SHA256:YtWCLAztVziqP85NIqgXOS/PDuIOxDWHFpR/Sw3dXJk");
    let out = session(cmd, "").await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{stderr}");
    assert_eq!(lab.standin.count(PUSH), 1, "eic's own check passed: the key was pushed");
    assert!(stderr.contains("Host key verification failed"), "{stderr}");
    assert!(!text(&out.stdout).contains("login:"));
    assert!(is_empty_dir(runtime.path()));
}

#[tokio::test]
async fn a_console_checked_by_its_ecdsa_key_is_reached_with_that_key_type_only() {
    let lab = Lab::start().await;
    let runtime = runtime_dir();
    // The console has an Ed25519 key (OpenSSH's first choice) and an ECDSA one: the ECDSA
    // one is pinned.
    let keys = lab.standin.serial_console_host_keys().to_vec();
    let (ecdsa, _) = keys.iter().find(|(_, l)| l.starts_with("ecdsa-sha2-nistp256 ")).unwrap();
    let pinned = |args: &[&str]| {
        let mut cmd = console(&lab, runtime.path(), args, true);
        cmd.env("EIC_SERIAL_CONSOLE_FINGERPRINT", ecdsa);
        cmd
    };
    let dry = run(&mut pinned(&["--instance-id", INSTANCE, "--dry-run"]), LIMIT).await;
    let line = text(&dry.stdout);
    assert!(line.contains(" HostKeyAlgorithms=ecdsa-sha2-nistp256 "), "{line}");
    let out = session(pinned(&["--debug", "--instance-id", INSTANCE]), "hi\n").await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(text(&out.stdout).contains("hi"));
    assert!(stderr.contains(&format!("Server host key: ecdsa-sha2-nistp256 {ecdsa}")), "{stderr}");
}
