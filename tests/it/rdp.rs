//! `eic rdp` against the stand-in: its listener tunnels to a stand-in service on the
//! instance's port 3389, and a stand-in RDP client (first on PATH) talks through it.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::common::{run, text, Lab, INSTANCE};

const LIMIT: Duration = Duration::from_secs(30);

/// The typical world, its instance's port 3389 an echo service.
async fn lab() -> (Lab, tokio::task::JoinHandle<()>) {
    let lab = Lab::start().await;
    let (echo, task) = eic_standin::tcp_echo().await.unwrap();
    lab.standin.world().instances[0].targets.insert(3389, echo);
    (lab, task)
}

/// A directory with `name`, a stand-in RDP client: it takes `/v:HOST:PORT` as FreeRDP does,
/// sends a greeting through it and writes what came back to `$RDP_RESULT`.
fn client_dir(dir: &Path, name: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("rdp-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = r#"#!/bin/bash
addr=${1#/v:}
exec 3<>"/dev/tcp/${addr%:*}/${addr##*:}" || exit 9
printf 'rdp-hello' >&3
IFS= read -r -n 9 reply <&3
printf '%s' "$reply" > "$RDP_RESULT"
"#;
    let path = bin.join(name);
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

#[tokio::test]
async fn the_client_talks_to_port_3389_through_the_listener_and_eic_ends_with_it() {
    let (lab, _echo) = lab().await;
    let bin = client_dir(lab.home.path(), "xfreerdp3");
    let result = lab.home.path().join("rdp-result");
    let mut cmd = lab.eic(&["rdp", "--instance-id", INSTANCE]);
    cmd.env("PATH", format!("{}:/usr/bin:/bin", bin.display())).env("RDP_RESULT", &result);
    let out = run(&mut cmd, LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&result).unwrap(), "rdp-hello");
    assert!(text(&out.stderr).contains("starting xfreerdp3"), "{}", text(&out.stderr));
    let tunnels = lab.standin.calls_of("OpenTunnel");
    assert_eq!(tunnels.len(), 1);
    let query = tunnels[0].raw_query.clone().unwrap_or_default();
    assert!(query.contains("remotePort=3389"), "{query}");
}

#[tokio::test]
async fn no_launch_keeps_the_listener_until_ctrl_c() {
    let (lab, _echo) = lab().await;
    let mut cmd = lab.eic(&["rdp", "--instance-id", INSTANCE, "--no-launch"]);
    cmd.stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = tokio::time::timeout(LIMIT, lines.next_line()).await.unwrap().unwrap().unwrap();
    // "eic: point your RDP client at 127.0.0.1:PORT (Ctrl-C to stop)"
    let address = line.split(" at ").nth(1).and_then(|r| r.split(' ').next()).expect(&line);
    for _ in 0..2 {
        let mut conn = tokio::net::TcpStream::connect(address).await.unwrap();
        conn.write_all(b"rdp-hello").await.unwrap();
        let mut buf = [0u8; 9];
        tokio::time::timeout(LIMIT, conn.read_exact(&mut buf)).await.unwrap().unwrap();
        assert_eq!(&buf, b"rdp-hello");
    }
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = tokio::time::timeout(LIMIT, child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(130));
    assert_eq!(lab.standin.count("OpenTunnel"), 2, "a tunnel per connection");
}

#[tokio::test]
async fn no_rdp_client_is_a_configuration_error() {
    let (lab, _echo) = lab().await;
    let empty = lab.home.path().join("empty-bin");
    std::fs::create_dir_all(&empty).unwrap();
    let mut cmd = lab.eic(&["rdp", "--instance-id", INSTANCE]);
    cmd.env("PATH", &empty);
    let out = run(&mut cmd, LIMIT).await;
    assert_eq!(out.status.code(), Some(253), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--no-launch"), "{}", text(&out.stderr));
}
