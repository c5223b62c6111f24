//! `eic ssh` over one shared connection (OpenSSH's ControlMaster, kept by ControlPersist): no
//! lookup, no push and no new tunnel while it lives; replaced when its tunnel dies.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::{run, runtime_dir, text, Lab};
use tokio::process::Command;

const LIMIT: Duration = Duration::from_secs(30);

/// `eic ssh` to the typical instance, sharing connections (the default) in `runtime`.
fn eic_ssh(lab: &Lab, runtime: &Path, eic_args: &[&str], remote: &[&str]) -> Command {
    lab.eic_ssh(runtime, eic_args, remote)
}

/// The shared connection's socket, once there is one.
fn socket(runtime: &Path) -> Option<PathBuf> {
    let dir = std::fs::read_dir(runtime.join("eic")).ok()?;
    dir.flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("ssh-"))
}

/// Whether a master answers on `socket`.
fn master_alive(socket: &Path) -> bool {
    let path = format!("ControlPath={}", socket.display());
    let check = std::process::Command::new("ssh")
        .args(["-F", "/dev/null", "-O", "check", "-o", &path, "x"])
        .output();
    check.is_ok_and(|o| o.status.success())
}

#[tokio::test]
async fn twenty_commands_share_one_login() {
    let lab = Lab::start().await;
    let runtime = runtime_dir();
    let started = Instant::now();
    for i in 0..20 {
        let out =
            run(&mut eic_ssh(&lab, runtime.path(), &[], &[&format!("echo {i}")]), LIMIT).await;
        assert_eq!(out.status.code(), Some(0), "command {i}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), format!("{i}\n"));
        if i == 0 {
            // The master is up: the one-time key (and the presigned URL) are gone already.
            let left: Vec<_> = std::fs::read_dir(runtime.path())
                .unwrap()
                .flatten()
                .map(|e| e.file_name())
                .collect();
            assert_eq!(left, ["eic"], "only eic's private directory is left");
        }
    }
    let elapsed = started.elapsed();
    eprintln!("20 commands over one shared connection: {:.2} s", elapsed.as_secs_f64());
    for (action, calls) in [
        ("DescribeInstances", 1),
        ("DescribeInstanceConnectEndpoints", 1),
        ("SendSSHPublicKey", 1),
        ("OpenTunnel", 1),
    ] {
        assert_eq!(lab.standin.count(action), calls, "{action}");
    }
    let socket = socket(runtime.path()).expect("the master's socket");
    assert!(master_alive(&socket));

    // --stop ends it, and its tunnel.
    let out = run(&mut eic_ssh(&lab, runtime.path(), &["--stop"], &[]), LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("ended the shared connection"), "{}", text(&out.stderr));
    assert!(!master_alive(&socket));
}

#[tokio::test]
async fn a_master_whose_tunnel_died_is_replaced() {
    let lab = Lab::start().await;
    let runtime = runtime_dir();
    let out = run(&mut eic_ssh(&lab, runtime.path(), &[], &["echo first"]), LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let socket = socket(runtime.path()).expect("the master's socket");
    assert!(master_alive(&socket));

    // The endpoint drops the tunnel: the master ends with it.
    lab.standin.kill_tunnels();
    let gone = async {
        while master_alive(&socket) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(LIMIT, gone).await.expect("the master ends with its tunnel");

    let out = run(&mut eic_ssh(&lab, runtime.path(), &[], &["echo second"]), LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "second\n");
    assert_eq!(lab.standin.count("OpenTunnel"), 2, "a new tunnel");
    assert_eq!(lab.standin.count("SendSSHPublicKey"), 2, "a new login");
    assert!(master_alive(&socket), "a new master");
    let _ = run(&mut eic_ssh(&lab, runtime.path(), &["--stop"], &[]), LIMIT).await;
}
