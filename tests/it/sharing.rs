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
    dir.flatten().map(|e| e.path()).find(|p| {
        p.file_name().unwrap().to_string_lossy().starts_with("ssh-") && p.extension().is_none()
    })
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

/// Asserts exit 0 and returns stdout.
fn ok(out: &std::process::Output) -> String {
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    text(&out.stdout)
}

/// The socket a dry run names (`ControlPath=...`).
async fn dry_run_socket(lab: &Lab, runtime: &Path, eic_args: &[&str]) -> Option<PathBuf> {
    let args = [&["--dry-run"], eic_args].concat();
    let out = run(&mut eic_ssh(lab, runtime, &args, &["true"]), LIMIT).await;
    let line = ok(&out);
    let path = line.split(" -o ").find_map(|o| o.strip_prefix("ControlPath="))?;
    Some(PathBuf::from(path.split_whitespace().next()?)).filter(|p| p != Path::new("none"))
}

#[tokio::test]
async fn a_master_serves_only_the_identity_that_opened_it() {
    let lab = Lab::start().await;
    lab.standin.world().credentials.push(eic_standin::Credential::new("AKIDSECOND", "second"));
    let runtime = runtime_dir();
    let as_second = |cmd: &mut Command| {
        cmd.env("AWS_ACCESS_KEY_ID", "AKIDSECOND").env("AWS_SECRET_ACCESS_KEY", "second");
    };
    assert_eq!(ok(&run(&mut eic_ssh(&lab, runtime.path(), &[], &["echo a"]), LIMIT).await), "a\n");
    // Another identity: its own push, tunnel and master, never the first one's.
    let mut second = eic_ssh(&lab, runtime.path(), &[], &["echo b"]);
    as_second(&mut second);
    assert_eq!(ok(&run(&mut second, LIMIT).await), "b\n");
    assert_eq!(lab.standin.count("SendSSHPublicKey"), 2);
    assert_eq!(lab.standin.count("OpenTunnel"), 2);
    // Each identity then shares its own.
    let mut again = eic_ssh(&lab, runtime.path(), &[], &["echo b2"]);
    as_second(&mut again);
    assert_eq!(ok(&run(&mut again, LIMIT).await), "b2\n");
    assert_eq!(
        ok(&run(&mut eic_ssh(&lab, runtime.path(), &[], &["echo a2"]), LIMIT).await),
        "a2\n"
    );
    assert_eq!(lab.standin.count("SendSSHPublicKey"), 2);
    // Another profile is another identity, even with the same keys in the environment.
    let mut profile = eic_ssh(&lab, runtime.path(), &["--profile", "other"], &["echo p"]);
    let config = lab.home.path().join("aws-config");
    std::fs::write(&config, "[profile other]\nregion = us-east-1\n").unwrap();
    profile.env("AWS_CONFIG_FILE", &config);
    assert_eq!(ok(&run(&mut profile, LIMIT).await), "p\n");
    assert_eq!(lab.standin.count("SendSSHPublicKey"), 3);
    // No credentials at all: a configuration error, as a login without a master.
    let mut none = eic_ssh(&lab, runtime.path(), &[], &["echo never"]);
    none.env_remove("AWS_ACCESS_KEY_ID").env_remove("AWS_SECRET_ACCESS_KEY");
    let out = run(&mut none, LIMIT).await;
    assert_eq!(out.status.code(), Some(253), "{}", text(&out.stderr));
    assert!(text(&out.stdout).is_empty());
    assert!(text(&out.stderr).contains("no AWS credentials"), "{}", text(&out.stderr));
    assert_eq!(lab.standin.count("SendSSHPublicKey"), 3);
    for who in [None, Some("second")] {
        let mut stop = eic_ssh(&lab, runtime.path(), &["--stop"], &[]);
        if who.is_some() {
            as_second(&mut stop);
        }
        assert!(text(&run(&mut stop, LIMIT).await.stderr).contains("ended the shared connection"));
    }
    let mut stop = eic_ssh(&lab, runtime.path(), &["--profile", "other", "--stop"], &[]);
    stop.env("AWS_CONFIG_FILE", &config);
    let _ = run(&mut stop, LIMIT).await;
}

#[tokio::test]
async fn settings_and_routes_each_get_their_own_master() {
    let lab = Lab::start().await;
    let runtime = runtime_dir();
    let first = dry_run_socket(&lab, runtime.path(), &[]).await.expect("shared");
    let own_key = lab.authorized_key();
    let own_key = own_key.to_str().unwrap();
    for eic_args in [
        &["--private-key-file", own_key][..],
        &["--connection-type", "eice"],
        &["--eice-options", "maxTunnelDuration=600"],
        &["--ssh-port", "2222"],
    ] {
        let other = dry_run_socket(&lab, runtime.path(), eic_args).await.expect("shared");
        assert_ne!(other, first, "{eic_args:?}");
    }
    // Settings from the environment: FIPS, and another CA bundle (a copy of the same).
    let bundle = lab.home.path().join("ca-copy.pem");
    std::fs::copy(lab.standin.ca_pem_path(), &bundle).unwrap();
    for (name, value) in
        [("AWS_USE_FIPS_ENDPOINT", "true".into()), ("AWS_CA_BUNDLE", bundle.display().to_string())]
    {
        let mut cmd = eic_ssh(&lab, runtime.path(), &["--dry-run"], &["true"]);
        cmd.env(name, value);
        let line = ok(&run(&mut cmd, LIMIT).await);
        assert!(
            line.contains("ControlPath=") && !line.contains(&first.display().to_string()),
            "{name}: {line}"
        );
    }
}

#[tokio::test]
async fn a_forwarding_never_outlives_its_command() {
    let lab = Lab::start().await;
    let runtime = runtime_dir();
    let port = {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        free.local_addr().unwrap().port()
    };
    let forward = format!("DynamicForward=127.0.0.1:{port}");
    let out = run(&mut eic_ssh(&lab, runtime.path(), &[], &["-o", &forward, "true"]), LIMIT).await;
    ok(&out);
    assert!(socket(runtime.path()).is_none(), "no master was started");
    let refused = tokio::net::TcpStream::connect(("127.0.0.1", port)).await;
    assert!(refused.is_err(), "the SOCKS port outlived the command");
}

#[tokio::test]
async fn a_master_killed_outright_is_replaced() {
    let lab = Lab::start().await;
    let runtime = runtime_dir();
    ok(&run(&mut eic_ssh(&lab, runtime.path(), &[], &["true"]), LIMIT).await);
    let socket = socket(runtime.path()).expect("the master's socket");
    let check = std::process::Command::new("ssh")
        .args(["-F", "/dev/null", "-O", "check", "-o"])
        .arg(format!("ControlPath={}", socket.display()))
        .arg("x")
        .output()
        .unwrap();
    // "Master running (pid=N)"
    let said = text(&check.stderr);
    let pid: i32 =
        said.split("pid=").nth(1).and_then(|s| s.split(')').next()).unwrap().parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL)
        .unwrap();
    let gone = async {
        while master_alive(&socket) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(LIMIT, gone).await.expect("the master is dead");
    assert!(socket.exists(), "SIGKILL leaves the socket behind");
    let out = run(&mut eic_ssh(&lab, runtime.path(), &[], &["echo again"]), LIMIT).await;
    assert_eq!(ok(&out), "again\n");
    assert!(master_alive(&socket), "a new master");
    let _ = run(&mut eic_ssh(&lab, runtime.path(), &["--stop"], &[]), LIMIT).await;
}

#[tokio::test]
async fn a_master_in_its_tunnels_last_minute_takes_no_new_session() {
    let lab = Lab::start().await;
    let runtime = runtime_dir();
    // A tunnel of 60 s is in its last minute from the start.
    let short = ["--eice-options", "maxTunnelDuration=60"];
    ok(&run(&mut eic_ssh(&lab, runtime.path(), &short, &["true"]), LIMIT).await);
    let socket = socket(runtime.path()).expect("the master's socket");
    let out = run(&mut eic_ssh(&lab, runtime.path(), &short, &["echo alone"]), LIMIT).await;
    assert_eq!(ok(&out), "alone\n");
    assert_eq!(lab.standin.count("OpenTunnel"), 2, "a tunnel of its own");
    assert!(master_alive(&socket), "the old master is left to end");
    let stop = ["--eice-options", "maxTunnelDuration=60", "--stop"];
    let _ = run(&mut eic_ssh(&lab, runtime.path(), &stop, &[]), LIMIT).await;
}

#[tokio::test]
async fn waiting_for_another_eic_says_so() {
    let lab = Lab::start().await;
    let runtime = runtime_dir();
    let socket = dry_run_socket(&lab, runtime.path(), &[]).await.expect("shared");
    let lock = std::fs::File::create(socket.with_extension("lock")).unwrap();
    lock.lock().unwrap();
    let mut cmd = eic_ssh(&lab, runtime.path(), &[], &["echo after"]);
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(LIMIT, tokio::io::AsyncBufReadExt::read_line(&mut stderr, &mut line))
        .await
        .unwrap()
        .unwrap();
    assert!(line.contains("waiting for another eic ssh"), "{line}");
    drop(lock);
    let out = tokio::time::timeout(LIMIT, child.wait_with_output()).await.unwrap().unwrap();
    assert_eq!(ok(&out), "after\n");
    let _ = run(&mut eic_ssh(&lab, runtime.path(), &["--stop"], &[]), LIMIT).await;
}

#[tokio::test]
async fn a_directory_others_may_write_to_above_eics_gets_no_socket() {
    let lab = Lab::start().await;
    let open = tempfile::tempdir().unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let runtime = open.path().join("run");
    std::fs::create_dir(&runtime).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let out = run(&mut eic_ssh(&lab, &runtime, &["--dry-run"], &["true"]), LIMIT).await;
    assert!(ok(&out).contains("ControlMaster=no"));
    let warned = text(&out.stderr);
    assert_eq!(warned.matches("warning").count(), 1, "{warned}");
    assert!(warned.contains("not sharing"), "{warned}");
}
