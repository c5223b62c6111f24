//! `eic ssh` end to end: the stand-in, a real sshd, and the system ssh.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{run, runtime_dir, text, Lab, ENDPOINT, INSTANCE};
use eic_standin::{Endpoint, Instance, Sshd, StandIn, World};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

const LIMIT: Duration = Duration::from_secs(30);
const VPC: &str = "vpc-1";

/// `eic ssh` to the typical instance with its one-time keys under a runtime dir of the test's
/// own, unshared: each test here is about one login of its own (tests/it/reuse.rs shares them).
fn eic_ssh(lab: &Lab, runtime: &tempfile::TempDir, eic_args: &[&str], remote: &[&str]) -> Command {
    lab.eic_ssh(runtime.path(), &[&["--no-reuse"], eic_args].concat(), remote)
}

fn assert_no_key_left(runtime: &tempfile::TempDir) {
    let left: Vec<_> = std::fs::read_dir(runtime.path()).unwrap().collect();
    assert!(left.is_empty(), "key directory left behind: {left:?}");
}

/// A lab whose world is built by the test around a running sshd.
async fn lab_with(world: impl FnOnce(&Sshd) -> World) -> Lab {
    let sshd = tokio::task::spawn_blocking(Sshd::start)
        .await
        .unwrap()
        .expect("sshd starts (apt-get install -y openssh-server)");
    let world = world(&sshd).authorized_keys_dir(sshd.authorized_keys_dir());
    let standin = StandIn::start(world).await.unwrap();
    Lab::with(standin, sshd)
}

#[tokio::test]
async fn remote_command_output_and_exit_status_pass_through() {
    let lab = Lab::start().await;
    let runtime = runtime_dir();
    let out = run(&mut eic_ssh(&lab, &runtime, &[], &["echo hello; exit 42"]), LIMIT).await;
    assert_eq!(out.status.code(), Some(42), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello\n");
    let out = run(&mut eic_ssh(&lab, &runtime, &[], &["false"]), LIMIT).await;
    assert_eq!(out.status.code(), Some(1), "stderr: {}", text(&out.stderr));
    assert_no_key_left(&runtime);

    // Each run: one lookup of each kind, one key push, one tunnel; the ProxyCommand child
    // made no API call of its own.
    for action in
        ["DescribeInstances", "DescribeInstanceConnectEndpoints", "SendSSHPublicKey", "OpenTunnel"]
    {
        assert_eq!(lab.standin.count(action), 2, "{action}");
    }
    let push = lab.standin.calls_of("SendSSHPublicKey").pop().unwrap();
    assert_eq!(push.params.get("InstanceOSUser").map(String::as_str), Some(lab.sshd.user()));
    assert!(push.params["SSHPublicKey"].starts_with("ssh-ed25519 "));
}

#[tokio::test]
async fn a_command_that_looks_like_an_option_stays_a_command() {
    let lab = Lab::start().await;
    let runtime = runtime_dir();
    // ssh would read `-x` after the destination as its own option (no X11) and open a login
    // shell; it reaches the remote shell's `-c` instead, which refuses it (bash and dash: 2).
    let out = run(&mut eic_ssh(&lab, &runtime, &[], &["--", "-x"]), LIMIT).await;
    let stderr = text(&out.stderr);
    assert!(!matches!(out.status.code(), Some(0 | 255)), "{stderr}");
    assert!(stderr.contains("-c"), "{stderr}");

    // -l and -p after `--` would undo --os-user (the key's user) and --ssh-port: refused.
    for (extra, instead) in
        [(&["-l", "root", "true"][..], "--os-user"), (&["-o", "Port=2222", "true"], "--ssh-port")]
    {
        let out = run(&mut eic_ssh(&lab, &runtime, &[], extra), LIMIT).await;
        assert_eq!(out.status.code(), Some(252), "{extra:?}");
        assert!(text(&out.stderr).contains(instead), "{}", text(&out.stderr));
    }
    assert_eq!(lab.standin.count("SendSSHPublicKey"), 1);
    assert_no_key_left(&runtime);
}

#[tokio::test]
async fn lookups_and_key_push_go_out_at_once() {
    // The stand-in answers none of the three until all three have arrived: one after another,
    // each would wait TOGETHER_WAIT.
    let together = ["DescribeInstances", "DescribeInstanceConnectEndpoints", "SendSSHPublicKey"];
    let lab = Lab::start_with(|mut w| {
        w.faults.answer_together = together.map(String::from).to_vec();
        w
    })
    .await;
    let runtime = runtime_dir();
    let started = Instant::now();
    let out = run(&mut eic_ssh(&lab, &runtime, &[], &["true"]), LIMIT).await;
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(
        took < eic_standin::TOGETHER_WAIT,
        "the lookups and the key push were sent one after another ({took:?})"
    );
    for action in together {
        assert_eq!(lab.standin.count(action), 1, "{action}");
    }
}

#[tokio::test]
async fn piped_stdin_drives_a_login_shell() {
    let lab = Lab::start().await;
    let runtime = runtime_dir();
    let mut cmd = eic_ssh(&lab, &runtime, &[], &[]);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"echo piped-$((40 + 2))\nexit 3\n").await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(LIMIT, child.wait_with_output()).await.unwrap().unwrap();
    assert_eq!(out.status.code(), Some(3), "stderr: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains("piped-42"));
    assert_no_key_left(&runtime);
}

#[tokio::test]
async fn every_local_forwarding_carries_a_tcp_connection() {
    // Two --local-forwarding: both are forwarded (the AWS CLI keeps only the last one).
    let lab = Lab::start().await;
    let runtime = runtime_dir();
    let (echo, _task) = eic_standin::tcp_echo().await.unwrap();
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let locals = [free(), free()];
    let specs = locals.map(|local| format!("{local}:127.0.0.1:{}", echo.port()));
    let mut cmd = eic_ssh(
        &lab,
        &runtime,
        &["--local-forwarding", &specs[0], "--local-forwarding", &specs[1]],
        &["-o", "ExitOnForwardFailure=yes", "echo ready; exec sleep 60"],
    );
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    // The forwards listen before the remote command runs.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(LIMIT, lines.next_line()).await.unwrap().unwrap();
    assert_eq!(ready.as_deref(), Some("ready"));
    for local in locals {
        let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", local)).await.unwrap();
        conn.write_all(b"through the forward").await.unwrap();
        let mut buf = [0u8; 19];
        tokio::time::timeout(LIMIT, conn.read_exact(&mut buf)).await.unwrap().unwrap();
        assert_eq!(&buf, b"through the forward", "through {local}");
    }
    child.kill().await.unwrap();
}

/// The first line of `lines` that contains `what`.
async fn said(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    what: &str,
) -> String {
    loop {
        let line = tokio::time::timeout(LIMIT, lines.next_line()).await.unwrap().unwrap();
        let line = line.unwrap_or_else(|| panic!("eic ended before saying {what:?}"));
        if line.contains(what) {
            return line;
        }
    }
}

/// Bytes sent through the forward on `local` come back from the echo server behind it. ssh
/// binds the port again within moments of its new login: the connection is tried until then.
async fn echoed(local: u16) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    let mut conn = loop {
        match tokio::net::TcpStream::connect(("127.0.0.1", local)).await {
            Ok(conn) => break conn,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the forward on {local} never came back: {e}"),
        }
    };
    conn.write_all(b"through the forward").await.unwrap();
    let mut buf = [0u8; 19];
    tokio::time::timeout(LIMIT, conn.read_exact(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf, b"through the forward");
}

/// `eic ssh --reconnect` forwarding a free local port to an echo server, its tunnels cut by
/// the endpoint after 3 s; returns once the session is up (and the echo server's task).
async fn reconnecting(
    lab: &Lab,
    runtime: &tempfile::TempDir,
) -> (
    tokio::process::Child,
    tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    u16,
    tokio::task::JoinHandle<()>,
) {
    let (echo, task) = eic_standin::tcp_echo().await.unwrap();
    let local = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let spec = format!("{local}:127.0.0.1:{}", echo.port());
    let args =
        ["--reconnect", "--local-forwarding", &spec, "--eice-options", "maxTunnelDuration=3"];
    let mut cmd = eic_ssh(lab, runtime, &args, &[]);
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    said(&mut stderr, "forwarding through").await;
    (child, stderr, local, task)
}

#[tokio::test]
async fn reconnect_retries_a_round_that_fails_once_the_session_was_up() {
    // After the first cut, one round's tunnel is refused (503): eic tries again after a longer
    // pause, and the forward comes back when the endpoint takes tunnels again.
    let lab = Lab::start().await;
    let runtime = runtime_dir();
    let (mut child, mut stderr, local, _echo) = reconnecting(&lab, &runtime).await;
    echoed(local).await;
    let refused = (503, "ServiceUnavailable".to_string(), "try later".to_string());
    lab.standin.world().faults.upgrade_error = Some(refused);
    said(&mut stderr, "reconnecting in 1 s").await;
    said(&mut stderr, "reconnecting in 2 s").await;
    lab.standin.world().faults.upgrade_error = None;
    echoed(local).await;
    send(&child, "INT");
    let status = tokio::time::timeout(LIMIT, child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(130));
}

#[tokio::test]
async fn reconnect_stops_with_254_once_the_instance_is_not_running() {
    let lab = Lab::start().await;
    let runtime = runtime_dir();
    let (mut child, mut stderr, local, _echo) = reconnecting(&lab, &runtime).await;
    echoed(local).await;
    lab.standin.world().instance_mut(INSTANCE).unwrap().state = "stopped".into();
    said(&mut stderr, "reconnecting in 1 s").await;
    let status = tokio::time::timeout(LIMIT, child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(254));
    let rest = said(&mut stderr, "error:").await;
    assert!(rest.contains("stopped") || rest.contains("running"), "{rest}");
}

#[tokio::test]
async fn reconnect_brings_the_forwarding_back_after_the_tunnel_is_cut() {
    // The endpoint cuts the tunnel after 3 s (maxTunnelDuration): the forwarded port answers
    // before and after, on the same number.
    let lab = Lab::start().await;
    let runtime = runtime_dir();
    let (mut child, mut stderr, local, _echo) = reconnecting(&lab, &runtime).await;
    echoed(local).await;
    let line = said(&mut stderr, "reconnecting in 1 s").await;
    assert!(line.contains(INSTANCE), "{line}");
    echoed(local).await;
    assert_eq!(lab.standin.count("OpenTunnel"), 2);
    assert_eq!(lab.standin.count("SendSSHPublicKey"), 2, "a new key each time");
    send(&child, "INT");
    let status = tokio::time::timeout(LIMIT, child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(130));
}

#[tokio::test]
async fn reconnect_passes_up_a_failure_before_the_session_was_up() {
    // The local port is taken: ssh fails before the session is up, and eic does not retry.
    let lab = Lab::start().await;
    let runtime = runtime_dir();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let spec = format!("127.0.0.1:{}:127.0.0.1:22", taken.local_addr().unwrap().port());
    let args = ["--reconnect", "--local-forwarding", &spec];
    let out = run(&mut eic_ssh(&lab, &runtime, &args, &[]), LIMIT).await;
    assert_eq!(out.status.code(), Some(255), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("reconnecting"), "{}", text(&out.stderr));
    assert_eq!(lab.standin.count("SendSSHPublicKey"), 1);
}

#[tokio::test]
async fn connection_types_choose_the_address() {
    // Public IPv4 (auto and direct): straight to the sshd, no tunnel.
    let lab = lab_with(|sshd| {
        World::new()
            .instance(
                Instance::new(INSTANCE, "10.0.0.5").public_ip("127.0.0.1").target(22, sshd.addr()),
            )
            .endpoint(Endpoint::new(ENDPOINT))
    })
    .await;
    let runtime = runtime_dir();
    let port = lab.sshd.port().to_string();
    for kind in ["auto", "direct"] {
        let out = run(
            &mut eic_ssh(
                &lab,
                &runtime,
                &["--connection-type", kind, "--ssh-port", &port],
                &["echo direct"],
            ),
            LIMIT,
        )
        .await;
        assert_eq!(out.status.code(), Some(0), "{kind}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "direct\n");
    }
    assert_eq!(lab.standin.count("OpenTunnel"), 0);
    // The same instance through its endpoint, and with an explicit --instance-ip.
    for extra in [
        &["--connection-type", "eice"][..],
        &["--connection-type", "eice", "--instance-ip", "10.0.0.5"],
    ] {
        let out = run(&mut eic_ssh(&lab, &runtime, extra, &["echo tunnelled"]), LIMIT).await;
        assert_eq!(out.status.code(), Some(0), "{extra:?}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "tunnelled\n");
    }
    let tunnels = lab.standin.calls_of("OpenTunnel");
    assert_eq!(tunnels.len(), 2);
    assert!(tunnels.iter().all(|c| c.params["privateIpAddress"] == "10.0.0.5"));
    // --instance-ip with direct overrides the public address.
    let out = run(
        &mut eic_ssh(
            &lab,
            &runtime,
            &["--connection-type", "direct", "--instance-ip", "127.0.0.1", "--ssh-port", &port],
            &["true"],
        ),
        LIMIT,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_no_key_left(&runtime);
}

#[tokio::test]
async fn ipv6_addresses_direct_and_through_the_endpoint() {
    let lab = lab_with(|sshd| {
        World::new()
            .instance(
                Instance::new(INSTANCE, "10.0.0.5")
                    .no_private_ip()
                    .ipv6("::1")
                    .target(22, sshd.addr()),
            )
            .endpoint(Endpoint::new(ENDPOINT))
    })
    .await;
    let runtime = runtime_dir();
    let port = lab.sshd.port().to_string();
    // auto: no public or private IPv4, so IPv6 directly.
    let out = run(&mut eic_ssh(&lab, &runtime, &["--ssh-port", &port], &["echo v6"]), LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "v6\n");
    assert_eq!(lab.standin.count("OpenTunnel"), 0);
    // eice: the IPv6 address through the endpoint.
    let out = run(
        &mut eic_ssh(&lab, &runtime, &["--connection-type", "eice"], &["echo v6 tunnel"]),
        LIMIT,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let tunnel = lab.standin.calls_of("OpenTunnel").pop().unwrap();
    assert_eq!(tunnel.params["privateIpAddress"], "::1");
}

#[tokio::test]
async fn no_address_is_a_usage_error() {
    let lab = lab_with(|_| {
        World::new()
            .instance(Instance::new(INSTANCE, "10.0.0.5").no_private_ip())
            .endpoint(Endpoint::new(ENDPOINT))
    })
    .await;
    let runtime = runtime_dir();
    let out = run(&mut eic_ssh(&lab, &runtime, &[], &["true"]), LIMIT).await;
    assert_eq!(out.status.code(), Some(252), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("no IP address"), "{}", text(&out.stderr));
    // The key push goes out with DescribeInstances (it only needs the id), but ssh never ran.
    assert_eq!(lab.standin.count("OpenTunnel"), 0);
    assert_no_key_left(&runtime);
}

#[tokio::test]
async fn endpoint_by_subnet_by_id_and_fips() {
    let lab = lab_with(|sshd| {
        World::new()
            .instance(Instance::new(INSTANCE, "10.0.0.5").target(22, sshd.addr()))
            .endpoint(Endpoint::new("eice-0aaaaaaaaaaaaaaa1").vpc(VPC, "subnet-other"))
            .endpoint(Endpoint::new(ENDPOINT))
            .endpoint(Endpoint::new("eice-0bbbbbbbbbbbbbbb2").vpc(VPC, "subnet-other").no_fips())
    })
    .await;
    let runtime = runtime_dir();
    let endpoint_of_last_tunnel = || lab.standin.calls_of("OpenTunnel").pop().unwrap();

    // By subnet: the instance's own subnet wins over the first in the VPC.
    let out = run(&mut eic_ssh(&lab, &runtime, &[], &["true"]), LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(endpoint_of_last_tunnel().params["instanceConnectEndpointId"], ENDPOINT);

    // By id.
    let out = run(
        &mut eic_ssh(
            &lab,
            &runtime,
            &["--eice-options", "endpointId=eice-0aaaaaaaaaaaaaaa1"],
            &["true"],
        ),
        LIMIT,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        endpoint_of_last_tunnel().params["instanceConnectEndpointId"],
        "eice-0aaaaaaaaaaaaaaa1"
    );

    // FIPS: the tunnel goes to the FIPS DNS name.
    let mut cmd = eic_ssh(&lab, &runtime, &[], &["true"]);
    cmd.env("AWS_USE_FIPS_ENDPOINT", "true");
    let out = run(&mut cmd, LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        endpoint_of_last_tunnel().host.as_deref(),
        Some(lab.standin.eice_fips_dns_name().as_str())
    );

    // FIPS asked for, but the endpoint has no FIPS name: a configuration error, no key pushed.
    let pushes = lab.standin.count("SendSSHPublicKey");
    let mut cmd = eic_ssh(
        &lab,
        &runtime,
        &["--eice-options", "endpointId=eice-0bbbbbbbbbbbbbbb2"],
        &["true"],
    );
    cmd.env("AWS_USE_FIPS_ENDPOINT", "true");
    let out = run(&mut cmd, LIMIT).await;
    assert_eq!(out.status.code(), Some(253), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("FIPS"), "{}", text(&out.stderr));
    assert!(lab.standin.count("SendSSHPublicKey") <= pushes + 1);
    assert_no_key_left(&runtime);
}

#[tokio::test]
async fn api_errors_say_what_to_check() {
    let lab = Lab::start().await;
    let runtime = runtime_dir();

    let out = run(&mut lab.eic(&["ssh", "--instance-id", "i-0000000000000000f"]), LIMIT).await;
    assert_eq!(out.status.code(), Some(254), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("InvalidInstanceID.NotFound") && stderr.contains("region"), "{stderr}");

    lab.standin.world().faults.unauthorized = vec!["DescribeInstances".into()];
    let out = run(&mut eic_ssh(&lab, &runtime, &[], &["true"]), LIMIT).await;
    assert_eq!(out.status.code(), Some(254));
    assert!(text(&out.stderr).contains("ec2:DescribeInstances"), "{}", text(&out.stderr));
    lab.standin.world().faults.unauthorized.clear();

    for denial in ["AuthException", "AccessDeniedException"] {
        lab.standin.world().faults.deny_send_key = Some(denial.into());
        let out = run(&mut eic_ssh(&lab, &runtime, &[], &["true"]), LIMIT).await;
        assert_eq!(out.status.code(), Some(254), "{denial}");
        let stderr = text(&out.stderr);
        assert!(stderr.contains(denial), "{stderr}");
        assert!(
            stderr.contains("ec2-instance-connect:SendSSHPublicKey")
                && stderr.contains("ec2:osuser"),
            "{stderr}"
        );
    }
    lab.standin.world().faults.deny_send_key = None;

    // Not running: the state is named. The key push went out with DescribeInstances and was
    // refused, but DescribeInstances' answer is the one reported.
    lab.standin.world().instance_mut(INSTANCE).unwrap().state = "stopped".into();
    let tunnels = lab.standin.count("OpenTunnel");
    let out = run(&mut eic_ssh(&lab, &runtime, &[], &["true"]), LIMIT).await;
    assert_eq!(out.status.code(), Some(254));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("is stopped"), "{stderr}");
    assert!(!stderr.contains("SendSSHPublicKey"), "{stderr}");
    assert_eq!(lab.standin.count("OpenTunnel"), tunnels);
    assert_no_key_left(&runtime);
}

#[tokio::test]
async fn throttled_key_push_is_retried() {
    let lab = Lab::start().await;
    let runtime = runtime_dir();
    lab.standin.world().faults.throttle_send_key = 2;
    let out = run(&mut eic_ssh(&lab, &runtime, &[], &["echo in"]), LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(lab.standin.count("SendSSHPublicKey"), 3);
}

#[tokio::test]
async fn an_own_key_is_used_as_it_is_unless_push_key() {
    let lab = Lab::start().await;
    let runtime = runtime_dir();
    // Already authorized, as an EC2 key pair is: used as it is, nothing pushed (the AWS CLI's
    // --private-key-file). Its .pub is gone, so eic could not even tell its public half.
    let authorized = lab.authorized_key();
    std::fs::remove_file(authorized.with_extension("pub")).unwrap();
    let key = authorized.display().to_string();
    let own = ["--private-key-file", key.as_str()];
    let out = run(&mut eic_ssh(&lab, &runtime, &own, &["echo own"]), LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "own\n");
    assert_eq!(lab.standin.count("SendSSHPublicKey"), 0);
    assert!(authorized.exists(), "the user's key is never removed");

    // In a directory whose name has a % and a space: ssh expands % tokens in key paths.
    let odd = lab.home.path().join("100% sure");
    std::fs::create_dir(&odd).unwrap();
    let moved = odd.join("id");
    std::fs::rename(&authorized, &moved).unwrap();
    let key = moved.display().to_string();
    let own = ["--private-key-file", key.as_str()];
    let out = run(&mut eic_ssh(&lab, &runtime, &own, &["echo odd"]), LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "odd\n");

    // Not authorized anywhere: --push-key pushes its public half first.
    let fresh = lab.home.path().join("id_fresh");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&fresh)
        .status()
        .unwrap();
    assert!(made.success());
    let key = fresh.display().to_string();
    let without = ["--private-key-file", key.as_str()];
    let out = run(&mut eic_ssh(&lab, &runtime, &without, &["true"]), LIMIT).await;
    assert_eq!(out.status.code(), Some(255), "not authorized, not pushed");
    assert_eq!(lab.standin.count("SendSSHPublicKey"), 0);
    let pushed = ["--private-key-file", key.as_str(), "--push-key"];
    let out = run(&mut eic_ssh(&lab, &runtime, &pushed, &["echo pushed"]), LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "pushed\n");
    // The login proves the pushed key was this one: nothing else authorized it.
    assert_eq!(lab.standin.count("SendSSHPublicKey"), 1);
    assert_no_key_left(&runtime);
}

#[tokio::test]
async fn ssh_missing_from_path_is_a_configuration_error() {
    let lab = Lab::start().await;
    let runtime = runtime_dir();
    let empty = tempfile::tempdir().unwrap();
    let mut cmd = eic_ssh(&lab, &runtime, &[], &["true"]);
    cmd.env("PATH", empty.path());
    let out = run(&mut cmd, LIMIT).await;
    assert_eq!(out.status.code(), Some(253));
    assert!(text(&out.stderr).contains("ssh not found"), "{}", text(&out.stderr));
    assert_eq!(lab.standin.count("SendSSHPublicKey"), 0);
    assert_no_key_left(&runtime);
}

#[tokio::test]
async fn dry_run_prints_the_command_and_pushes_nothing() {
    let lab = Lab::start().await;
    let runtime = runtime_dir();
    let out = run(&mut eic_ssh(&lab, &runtime, &["--dry-run"], &["uptime"]), LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let line = text(&out.stdout);
    for part in [
        "ProxyCommand=",
        "open-tunnel",
        "-i ",
        "IdentitiesOnly=yes",
        &format!("HostKeyAlias={INSTANCE}"),
        "ServerAliveInterval=5",
        " uptime",
    ] {
        assert!(line.contains(part), "{part} missing in {line}");
    }
    assert!(line.contains(&runtime.path().display().to_string()), "no key path in {line}");
    assert_eq!(lab.standin.count("SendSSHPublicKey"), 0);
    assert_no_key_left(&runtime);
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn no_secret_in_any_argv_and_no_api_call_from_the_proxy() {
    let world = |sshd: &Sshd| {
        World::typical(sshd.addr()).only_credential(
            eic_standin::Credential::new("AKIDARGVTEST", "argv-secret-key")
                .with_token("argv-session-token"),
        )
    };
    let lab = lab_with(world).await;
    let runtime = runtime_dir();
    // The remote command runs on this machine: it sees every process's argv, eic's and the
    // ProxyCommand child's included.
    let dump = r#"for f in /proc/[0-9]*/cmdline; do tr '\0' ' ' < "$f"; echo; done"#;
    let out = run(&mut eic_ssh(&lab, &runtime, &["--debug"], &[dump]), LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let argvs = text(&out.stdout);
    assert!(
        argvs.contains("--presigned-url-file"),
        "the ProxyCommand child was not seen:\n{argvs}"
    );
    let stderr = text(&out.stderr);
    for secret in ["AKIDARGVTEST", "argv-secret-key", "argv-session-token"] {
        assert!(!argvs.contains(secret), "{secret} in some argv");
        assert!(!stderr.contains(secret), "{secret} on stderr");
    }
    assert!(!argvs.contains("X-Amz-Signature"), "a presigned URL in some argv");
    // --debug logs the tunnel URL, with its signature redacted.
    let signatures: Vec<&str> = stderr.split("X-Amz-Signature=").skip(1).collect();
    assert!(!signatures.is_empty(), "--debug should log the (redacted) URL:\n{stderr}");
    assert!(signatures.iter().all(|s| s.starts_with("REDACTED")), "{stderr}");
    // One call of each kind, all from the parent eic; the tunnel comes last.
    let mut actions: Vec<String> = lab.standin.calls().into_iter().map(|c| c.action).collect();
    assert_eq!(actions.last().map(String::as_str), Some("OpenTunnel"));
    actions.sort();
    assert_eq!(
        actions,
        ["DescribeInstanceConnectEndpoints", "DescribeInstances", "OpenTunnel", "SendSSHPublicKey"]
    );
}

/// Starts `eic ssh ... -- 'echo started; exec sleep 60'` and waits until ssh runs the command.
async fn started(lab: &Lab, runtime: &tempfile::TempDir) -> tokio::process::Child {
    let mut cmd = eic_ssh(lab, runtime, &[], &["echo started; exec sleep 60"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(LIMIT, lines.next_line()).await.unwrap().unwrap();
    assert_eq!(line.as_deref(), Some("started"));
    assert_eq!(
        std::fs::read_dir(runtime.path()).unwrap().count(),
        1,
        "the key directory exists while ssh runs"
    );
    child
}

fn send(child: &tokio::process::Child, name: &str) {
    crate::common::signal(child.id().unwrap(), name);
}

#[tokio::test]
async fn the_key_is_removed_on_every_way_out() {
    let lab = Lab::start().await;

    // ssh fails (authentication refused: the key is pushed for another user).
    let runtime = runtime_dir();
    let mut args =
        vec!["ssh", "--no-reuse", "--instance-id", INSTANCE, "--os-user", "nobody-else", "--"];
    let options = lab.ssh_options();
    args.extend(options.iter().map(String::as_str));
    args.push("true");
    let mut cmd = lab.eic(&args);
    cmd.env("XDG_RUNTIME_DIR", runtime.path());
    let out = run(&mut cmd, LIMIT).await;
    assert_eq!(out.status.code(), Some(255), "{}", text(&out.stderr));
    assert_no_key_left(&runtime);

    // eic's own error after the key was made.
    lab.standin.world().faults.deny_send_key = Some("AuthException".into());
    let out = run(&mut eic_ssh(&lab, &runtime, &[], &["true"]), LIMIT).await;
    assert_eq!(out.status.code(), Some(254));
    assert_no_key_left(&runtime);
    lab.standin.world().faults.deny_send_key = None;

    // SIGINT, SIGTERM, SIGHUP and SIGQUIT (Ctrl-\\) sent to eic while ssh runs: ssh is ended,
    // the key removed, and eic exits promptly with the signal's status.
    for (signal, code) in [("INT", 130), ("TERM", 143), ("HUP", 129), ("QUIT", 131)] {
        let mut child = started(&lab, &runtime).await;
        let sent = Instant::now();
        send(&child, signal);
        let status = tokio::time::timeout(LIMIT, child.wait()).await.unwrap().unwrap();
        assert!(sent.elapsed() < Duration::from_secs(6), "{signal}: took {:?}", sent.elapsed());
        assert_eq!(status.code(), Some(code), "{signal}");
        assert_no_key_left(&runtime);
    }
}

#[tokio::test]
async fn a_runtime_dir_that_is_not_private_gets_no_key() {
    use std::os::unix::fs::PermissionsExt;
    let lab = Lab::start().await;
    // With `su`, XDG_RUNTIME_DIR is still the invoking user's; here, one others can write to.
    let shared = tempfile::tempdir().unwrap();
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = run(&mut eic_ssh(&lab, &shared, &["--dry-run"], &["true"]), LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let line = text(&out.stdout);
    assert!(line.contains("/id_ed25519"), "{line}");
    assert!(!line.contains(&shared.path().display().to_string()), "a key in {shared:?}: {line}");
}

/// The state letter of process `pid` (`S` sleeping, `T` stopped, ...).
#[cfg(target_os = "linux")]
fn state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next()).unwrap_or('?')
}

/// Polls until `pid`'s state is `want` (a stop or a continue is asynchronous).
#[cfg(target_os = "linux")]
async fn reaches(pid: u32, want: char) -> bool {
    for _ in 0..200 {
        if state(pid) == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn when_ssh_stops_eic_stops_and_continues_it() {
    // `~^Z` makes ssh stop itself; a shell then gets the terminal back only if eic stops too.
    let lab = Lab::start().await;
    let runtime = runtime_dir();
    let mut cmd = eic_ssh(&lab, &runtime, &[], &["echo started; sleep 1; echo done"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut eic = cmd.spawn().unwrap();
    let pid = eic.id().unwrap();
    let mut lines = BufReader::new(eic.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(LIMIT, lines.next_line()).await.unwrap().unwrap();
    assert_eq!(line.as_deref(), Some("started"));
    let ssh = crate::common::child_named(pid, "ssh").expect("eic's ssh child");
    crate::common::signal(ssh, "STOP");
    assert!(reaches(pid, 'T').await, "eic did not stop with ssh: state {}", state(pid));
    // `fg`: the shell continues eic, which continues ssh.
    crate::common::signal(pid, "CONT");
    assert!(reaches(ssh, 'S').await || state(ssh) == 'R', "ssh was not continued");
    let line = tokio::time::timeout(LIMIT, lines.next_line()).await.unwrap().unwrap();
    assert_eq!(line.as_deref(), Some("done"));
    let status = tokio::time::timeout(LIMIT, eic.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn dry_run_prints_the_plan_as_json_with_the_dual_stack_name_when_asked() {
    let lab = Lab::start_with(|mut world| {
        let endpoint = world.endpoint_mut(ENDPOINT).unwrap();
        endpoint.dualstack = Some((
            "eice-0123456789abcdef0.dualstack.example.com".into(),
            "fips.dual.example.com".into(),
        ));
        world
    })
    .await;
    let runtime = runtime_dir();
    let plan = |dual_stack: Option<&str>| {
        let mut cmd = eic_ssh(&lab, &runtime, &["--dry-run", "--output", "json"], &["uptime"]);
        if let Some(value) = dual_stack {
            cmd.env("AWS_USE_DUALSTACK_ENDPOINT", value);
        }
        cmd
    };
    let out = run(&mut plan(None), LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(json["instance_id"], INSTANCE);
    assert_eq!(json["address"], "10.0.0.5");
    assert_eq!(json["route"], "eice");
    assert_eq!(json["region"], "us-east-1");
    assert_eq!(json["endpoint"]["id"], ENDPOINT);
    assert_eq!(json["endpoint"]["dns_name"], lab.standin.eice_dns_name());
    let argv: Vec<&str> =
        json["ssh"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(argv.last() == Some(&"uptime") && argv.contains(&"--"), "{argv:?}");
    assert!(!text(&out.stdout).contains("X-Amz"), "no URL in the plan");
    assert_eq!(lab.standin.count("SendSSHPublicKey"), 0);

    // use_dualstack_endpoint: the tunnel goes to the endpoint's dual-stack name.
    let out = run(&mut plan(Some("true")), LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["endpoint"]["dns_name"], "eice-0123456789abcdef0.dualstack.example.com");
}
