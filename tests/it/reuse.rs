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

#[tokio::test]
async fn two_first_logins_at_once_share_one_master() {
    // The second waits for the first to start the master, then runs over it.
    let lab = Lab::start().await;
    let runtime = runtime_dir();
    let mut first = eic_ssh(&lab, runtime.path(), &[], &["echo a"]);
    let mut second = eic_ssh(&lab, runtime.path(), &[], &["echo b"]);
    let (a, b) = tokio::join!(run(&mut first, LIMIT), run(&mut second, LIMIT));
    for (out, said) in [(a, "a\n"), (b, "b\n")] {
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), said);
    }
    assert_eq!(lab.standin.count("SendSSHPublicKey"), 1);
    assert_eq!(lab.standin.count("OpenTunnel"), 1);
    let _ = run(&mut eic_ssh(&lab, runtime.path(), &["--stop"], &[]), LIMIT).await;
}

#[tokio::test]
async fn forwardings_and_the_users_own_sharing_are_not_shared() {
    // They would live on in a background master (or fight eic's): a login of their own.
    let lab = Lab::start().await;
    let runtime = runtime_dir();
    let dry = |eic_args: &[&str], ssh_args: &[&str]| {
        let mut args = vec!["--dry-run"];
        args.extend_from_slice(eic_args);
        lab.eic_ssh(runtime.path(), &args, ssh_args)
    };
    let out = run(&mut dry(&[], &["true"]), LIMIT).await;
    assert!(text(&out.stdout).contains("ControlMaster=auto"), "{}", text(&out.stdout));
    for (eic_args, ssh_args) in [
        (&["--local-forwarding", "8080:localhost:80"][..], &["true"][..]),
        (&[], &["-N"]),
        (&[], &["-L", "5432:db:5432", "true"]),
        (&[], &["-D1080"]),
        (&[], &["-o", "ControlPath=/tmp/mine", "true"]),
        (&[], &["-S", "/tmp/mine", "true"]),
    ] {
        let out = run(&mut dry(eic_args, ssh_args), LIMIT).await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let line = text(&out.stdout);
        assert!(
            line.contains("ControlMaster=no") && !line.contains("ControlMaster=auto"),
            "{eic_args:?} {ssh_args:?}: {line}"
        );
    }
}
