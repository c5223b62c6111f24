//! `eic open-tunnel` when things go wrong or need choosing: the endpoint's faults (close
//! frames, resets, refused or hanging upgrades), the duration limit, how fast eic exits, and
//! which endpoint and address a tunnel goes to.

use std::process::ExitStatus;
use std::time::{Duration, Instant};

use crate::common::{Lab, ENDPOINT, INSTANCE};
use eic_standin::eice::{CONNECT_FAILED, DURATION_EXCEEDED};
use eic_standin::{Endpoint, Faults, World};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

/// No single eic run here may take longer than this.
const LIMIT: Duration = Duration::from_secs(20);

/// What one stdio-mode run of eic did.
struct Run {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: String,
    /// From the start to the exit.
    elapsed: Duration,
    /// From the last byte expected on stdout (or the start, when none is) to the exit.
    tail: Duration,
}

impl Run {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }

    #[track_caller]
    fn assert_stderr_has(&self, needles: &[&str]) {
        for needle in needles {
            assert!(self.stderr.contains(needle), "stderr lacks `{needle}`:\n{}", self.stderr);
        }
    }

    #[track_caller]
    fn assert_reached_sshd(&self) {
        assert!(
            self.stdout.starts_with(b"SSH-"),
            "no sshd banner; exit {:?}, stderr:\n{}",
            self.status,
            self.stderr
        );
        assert_eq!(self.code(), Some(0), "{}", self.stderr);
    }
}

/// Runs `eic open-tunnel ARGS` in stdio mode, writes `send` (stdin stays open, as ssh keeps it),
/// waits for `expect` bytes on stdout, then for the exit.
async fn stdio_run(lab: &Lab, args: &[&str], send: &[u8], expect: usize) -> Run {
    let started = Instant::now();
    let mut child = lab.stdio_tunnel(args).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let stderr = read_stderr(&mut child);
    let run = async {
        // eic may be gone before it reads anything: a failed write is its answer.
        let _ = stdin.write_all(send).await;
        let mut out = vec![0u8; expect];
        stdout.read_exact(&mut out).await.expect("the expected bytes on stdout");
        let data_done = Instant::now();
        stdout.read_to_end(&mut out).await.unwrap();
        (child.wait().await.unwrap(), out, data_done)
    };
    let outcome = timeout(LIMIT, run).await;
    drop(stdin);
    let Ok((status, stdout, data_done)) = outcome else { hung(child, stderr, args).await };
    Run {
        status,
        stdout,
        stderr: stderr.await.unwrap(),
        elapsed: started.elapsed(),
        tail: data_done.elapsed(),
    }
}

/// Collects the child's stderr in the background.
fn read_stderr(child: &mut tokio::process::Child) -> tokio::task::JoinHandle<String> {
    let mut stderr = child.stderr.take().unwrap();
    tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    })
}

/// Fails the test for a child that did not exit in time, with what it said.
async fn hung(
    mut child: tokio::process::Child,
    stderr: tokio::task::JoinHandle<String>,
    args: &[&str],
) -> ! {
    let _ = child.kill().await;
    let said = timeout(Duration::from_secs(5), stderr)
        .await
        .map(Result::unwrap_or_default)
        .unwrap_or_default();
    panic!("eic open-tunnel {args:?} did not exit within {LIMIT:?}; stderr:\n{said}")
}

/// stdio mode to the echo target on port 3389, with `faults` in force.
async fn echo_run(faults: Faults, extra: &[&str], send: &[u8], expect: usize) -> (Lab, Run) {
    let lab = Lab::start_echo(faults).await;
    let mut args = vec!["--instance-id", INSTANCE, "--remote-port", "3389"];
    args.extend_from_slice(extra);
    let run = stdio_run(&lab, &args, send, expect).await;
    (lab, run)
}

fn close_after(n: usize, code: u16, reason: &str) -> Faults {
    Faults { close_after: Some((n, code, reason.to_string())), ..Faults::default() }
}

// ---- How the endpoint ends a tunnel ----

#[tokio::test]
async fn close_1011_names_the_reason_and_the_security_group() {
    let (_lab, run) = echo_run(close_after(0, 1011, CONNECT_FAILED), &[], b"", 0).await;
    assert_eq!(run.code(), Some(255), "{}", run.stderr);
    run.assert_stderr_has(&["1011", CONNECT_FAILED, "security group"]);
    assert!(run.elapsed < Duration::from_secs(5), "{:?}", run.elapsed);
}

#[tokio::test]
async fn an_unreachable_target_gives_the_same_1011() {
    // Nothing listens for port 3389 of the typical instance.
    let lab = Lab::start().await;
    let args = ["--instance-id", INSTANCE, "--remote-port", "3389"];
    let run = stdio_run(&lab, &args, b"", 0).await;
    assert_eq!(run.code(), Some(255), "{}", run.stderr);
    run.assert_stderr_has(&["1011", CONNECT_FAILED, "security group"]);
}

#[tokio::test]
async fn close_1008_gives_255_with_the_reason() {
    let (_lab, run) = echo_run(close_after(5, 1008, "Policy says no"), &[], b"hello", 5).await;
    assert_eq!(run.stdout, b"hello");
    assert_eq!(run.code(), Some(255), "{}", run.stderr);
    run.assert_stderr_has(&["1008", "Policy says no"]);
    assert!(!run.stderr.contains("maximum duration"), "{}", run.stderr);
}

#[tokio::test]
async fn close_1000_is_success_and_eic_exits_at_once() {
    let (_lab, run) = echo_run(close_after(5, 1000, ""), &[], b"hello", 5).await;
    assert_eq!(run.stdout, b"hello");
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    assert_eq!(run.stderr, "");
    // stdin is still open: eic must not wait for it.
    assert!(run.tail < Duration::from_millis(500), "exit {:?} after the close", run.tail);
}

#[tokio::test]
async fn a_text_frame_is_a_protocol_error() {
    let faults = Faults { text_frame_after: Some(5), ..Faults::default() };
    let (_lab, run) = echo_run(faults, &[], b"hello", 5).await;
    assert_eq!(run.stdout, b"hello");
    assert_eq!(run.code(), Some(255), "{}", run.stderr);
    run.assert_stderr_has(&["text frame"]);
    assert!(run.elapsed < Duration::from_secs(5), "{:?}", run.elapsed);
}

#[tokio::test]
async fn a_reset_mid_stream_gives_255() {
    let faults = Faults { reset_after: Some(5), ..Faults::default() };
    // Bytes not yet read when the reset arrives may be lost, so none are expected.
    let (_lab, run) = echo_run(faults, &[], b"hello", 0).await;
    assert_eq!(run.code(), Some(255), "{}", run.stderr);
    run.assert_stderr_has(&["eic: error: the tunnel failed", "reset"]);
    assert_eq!(run.stderr.lines().count(), 1, "one line: {}", run.stderr);
    assert_eq!(run.stderr.matches("reset").count(), 1, "said once: {}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(run.elapsed < Duration::from_secs(5), "{:?}", run.elapsed);
}

#[tokio::test]
async fn garbage_or_an_oversized_frame_after_the_upgrade_gives_255() {
    let garbage = Faults { random_garbage_after_upgrade: Some(7), ..Faults::default() };
    let oversized = Faults { oversized_frame: true, ..Faults::default() };
    for (faults, what) in [(garbage, "invalid opcode"), (oversized, "Message too long")] {
        let (_lab, run) = echo_run(faults, &[], b"", 0).await;
        assert_eq!(run.code(), Some(255), "{}", run.stderr);
        run.assert_stderr_has(&["eic: error: the tunnel failed", what]);
        assert_eq!(run.stderr.matches(what).count(), 1, "said once: {}", run.stderr);
        assert!(run.elapsed < Duration::from_secs(5), "{:?}", run.elapsed);
    }
}

// ---- Refused and unanswered upgrades ----

fn upgrade_error(status: u16, code: &str, message: &str) -> Faults {
    Faults {
        upgrade_error: Some((status, code.to_string(), message.to_string())),
        ..Faults::default()
    }
}

#[tokio::test]
async fn a_refused_upgrade_gives_254_with_status_code_message_and_request_id() {
    let faults = upgrade_error(403, "AccessDeniedException", "User is not authorized");
    let (lab, run) = echo_run(faults, &[], b"", 0).await;
    assert_eq!(run.code(), Some(254), "{}", run.stderr);
    run.assert_stderr_has(&[
        "HTTP 403",
        "AccessDeniedException",
        "User is not authorized",
        "ec2-instance-connect:OpenTunnel",
    ]);
    // The stand-in's request ids are UUID-shaped.
    let id = run
        .stderr
        .split("(request id ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no request id in {}", run.stderr));
    assert_eq!(id.len(), 36, "request id `{id}`");
    let opened = lab.standin.calls_of("OpenTunnel");
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0].status, 403);
    assert!(run.elapsed < Duration::from_secs(5), "{:?}", run.elapsed);
}

#[tokio::test]
async fn too_many_tunnels_gives_254() {
    let faults = upgrade_error(429, "TooManyRequestsException", "Too many tunnels");
    let (_lab, run) = echo_run(faults, &[], b"", 0).await;
    assert_eq!(run.code(), Some(254), "{}", run.stderr);
    run.assert_stderr_has(&["HTTP 429", "TooManyRequestsException", "Too many tunnels"]);
}

#[tokio::test]
async fn an_unanswered_upgrade_times_out_after_connect_timeout() {
    let faults = Faults { upgrade_hang: true, ..Faults::default() };
    let (_lab, run) = echo_run(faults, &["--connect-timeout", "2"], b"", 0).await;
    assert_eq!(run.code(), Some(255), "{}", run.stderr);
    run.assert_stderr_has(&["within 2 s", "--connect-timeout"]);
    assert!(
        run.elapsed >= Duration::from_secs(2) && run.elapsed < Duration::from_millis(3500),
        "{:?}",
        run.elapsed
    );
}

// ---- --max-tunnel-duration ----

#[tokio::test]
async fn max_tunnel_duration_is_sent_and_its_end_explained() {
    let (lab, run) =
        echo_run(Faults::default(), &["--max-tunnel-duration", "2"], b"hello", 5).await;
    assert_eq!(run.stdout, b"hello");
    let opened = lab.standin.calls_of("OpenTunnel");
    assert_eq!(opened[0].params["maxTunnelDuration"], "2");
    assert_eq!(run.code(), Some(255), "{}", run.stderr);
    run.assert_stderr_has(&[DURATION_EXCEEDED, "maximum duration of 2 s", "--max-tunnel-duration"]);
    assert!(
        run.elapsed >= Duration::from_secs(2) && run.elapsed < Duration::from_secs(4),
        "{:?}",
        run.elapsed
    );
}

#[tokio::test]
async fn an_early_end_is_not_blamed_on_the_duration_limit() {
    // Nothing listens for port 3389: the endpoint closes with 1011 at once.
    let lab = Lab::start().await;
    let args = ["--instance-id", INSTANCE, "--remote-port", "3389", "--max-tunnel-duration", "2"];
    let run = stdio_run(&lab, &args, b"", 0).await;
    assert_eq!(run.code(), Some(255), "{}", run.stderr);
    run.assert_stderr_has(&[CONNECT_FAILED]);
    assert!(!run.stderr.contains("maximum duration"), "{}", run.stderr);
}

// ---- Which endpoint and address a tunnel goes to ----

/// stdio mode to the sshd on port 22: the tunnel works when sshd's banner arrives. Closing
/// stdin then ends it.
async fn reach_sshd(lab: &Lab, args: &[&str]) -> Run {
    reach_sshd_env(lab, args, &[]).await
}

async fn reach_sshd_env(lab: &Lab, args: &[&str], env: &[(&str, &str)]) -> Run {
    let started = Instant::now();
    let mut cmd = lab.stdio_tunnel(args);
    cmd.envs(env.iter().copied());
    let mut child = cmd.spawn().unwrap();
    let stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let stderr = read_stderr(&mut child);
    let run = async {
        let mut banner = [0u8; 4];
        let got = stdout.read_exact(&mut banner).await.map(|_| banner.to_vec());
        drop(stdin);
        let mut out = got.unwrap_or_default();
        stdout.read_to_end(&mut out).await.unwrap();
        (child.wait().await.unwrap(), out)
    };
    let Ok((status, stdout)) = timeout(LIMIT, run).await else { hung(child, stderr, args).await };
    Run {
        status,
        stdout,
        stderr: stderr.await.unwrap(),
        elapsed: started.elapsed(),
        tail: Duration::ZERO,
    }
}

/// The endpoint id in the query of each OpenTunnel call.
fn tunnel_endpoints(lab: &Lab) -> Vec<String> {
    lab.standin
        .calls_of("OpenTunnel")
        .into_iter()
        .map(|c| c.params["instanceConnectEndpointId"].clone())
        .collect()
}

const OTHER_SUBNET: &str = "eice-0a0a0a0a0a0a0a0a0";
const SAME_SUBNET: &str = "eice-0b0b0b0b0b0b0b0b0";
const OTHER_VPC: &str = "eice-0c0c0c0c0c0c0c0c0";
const SUBNET_3: &str = "eice-0d0d0d0d0d0d0d0d0";

/// The instance in vpc-1/subnet-2, and `endpoints` instead of the typical one.
fn in_subnet_2(mut world: World, endpoints: Vec<Endpoint>) -> World {
    world.instance_mut(INSTANCE).unwrap().subnet_id = "subnet-2".into();
    world.endpoints = endpoints;
    world
}

const BY_INSTANCE: [&str; 2] = ["--instance-id", INSTANCE];

#[tokio::test]
async fn the_endpoint_in_the_instances_subnet_is_preferred() {
    let lab = Lab::start_with(|w| {
        in_subnet_2(
            w,
            vec![
                Endpoint::new(OTHER_VPC).vpc("vpc-2", "subnet-2"),
                Endpoint::new(OTHER_SUBNET).vpc("vpc-1", "subnet-1"),
                Endpoint::new(SAME_SUBNET).vpc("vpc-1", "subnet-2"),
            ],
        )
    })
    .await;
    reach_sshd(&lab, &BY_INSTANCE).await.assert_reached_sshd();
    assert_eq!(tunnel_endpoints(&lab), [SAME_SUBNET]);
}

#[tokio::test]
async fn another_endpoint_in_the_vpc_is_used_when_none_is_in_the_subnet() {
    let lab = Lab::start_with(|w| {
        in_subnet_2(
            w,
            vec![
                Endpoint::new(OTHER_VPC).vpc("vpc-2", "subnet-2"),
                Endpoint::new(OTHER_SUBNET).vpc("vpc-1", "subnet-1"),
            ],
        )
    })
    .await;
    reach_sshd(&lab, &BY_INSTANCE).await.assert_reached_sshd();
    assert_eq!(tunnel_endpoints(&lab), [OTHER_SUBNET]);
}

#[tokio::test]
async fn the_preferred_endpoint_is_found_on_a_later_page() {
    let lab = Lab::start_with(|w| {
        let mut w = in_subnet_2(
            w,
            vec![
                Endpoint::new(OTHER_SUBNET).vpc("vpc-1", "subnet-1"),
                Endpoint::new(SUBNET_3).vpc("vpc-1", "subnet-3"),
                Endpoint::new(SAME_SUBNET).vpc("vpc-1", "subnet-2"),
            ],
        );
        w.faults.page_size = Some(1);
        w
    })
    .await;
    reach_sshd(&lab, &BY_INSTANCE).await.assert_reached_sshd();
    assert_eq!(tunnel_endpoints(&lab), [SAME_SUBNET]);
    assert_eq!(lab.standin.count("DescribeInstanceConnectEndpoints"), 3);
}

#[tokio::test]
async fn an_endpoint_id_picks_that_endpoint() {
    let lab = Lab::start_with(|w| {
        in_subnet_2(
            w,
            vec![
                Endpoint::new(OTHER_SUBNET).vpc("vpc-1", "subnet-1"),
                Endpoint::new(SAME_SUBNET).vpc("vpc-1", "subnet-2"),
            ],
        )
    })
    .await;
    let args = ["--instance-id", INSTANCE, "--instance-connect-endpoint-id", OTHER_SUBNET];
    reach_sshd(&lab, &args).await.assert_reached_sshd();
    assert_eq!(tunnel_endpoints(&lab), [OTHER_SUBNET]);
    let described = lab.standin.calls_of("DescribeInstanceConnectEndpoints");
    assert_eq!(described.len(), 1);
    assert_eq!(described[0].params["InstanceConnectEndpointId.1"], OTHER_SUBNET);
}

#[tokio::test]
async fn endpoints_in_unusable_states_are_skipped() {
    let lab = Lab::start_with(|w| {
        in_subnet_2(
            w,
            vec![
                Endpoint::new(SAME_SUBNET).vpc("vpc-1", "subnet-2").state("create-in-progress"),
                Endpoint::new(SUBNET_3).vpc("vpc-1", "subnet-3").state("delete-in-progress"),
                Endpoint::new(OTHER_SUBNET).vpc("vpc-1", "subnet-1").state("update-failed"),
            ],
        )
    })
    .await;
    reach_sshd(&lab, &BY_INSTANCE).await.assert_reached_sshd();
    assert_eq!(tunnel_endpoints(&lab), [OTHER_SUBNET]);

    // Asked for by id, an unusable endpoint is refused before any tunnel is tried.
    let args = ["--instance-id", INSTANCE, "--instance-connect-endpoint-id", SAME_SUBNET];
    // A parameter error (252), as in the AWS CLI, whose lookup filters by the usable states.
    let run = reach_sshd(&lab, &args).await;
    assert_eq!(run.code(), Some(252), "{}", run.stderr);
    run.assert_stderr_has(&[SAME_SUBNET, "create-in-progress"]);
    assert_eq!(tunnel_endpoints(&lab), [OTHER_SUBNET]);
}

#[tokio::test]
async fn no_endpoint_in_the_vpc_says_to_create_one() {
    let lab = Lab::start_with(|w| {
        in_subnet_2(
            w,
            vec![
                Endpoint::new(OTHER_VPC).vpc("vpc-2", "subnet-2"),
                Endpoint::new(SAME_SUBNET).vpc("vpc-1", "subnet-2").state("create-failed"),
            ],
        )
    })
    .await;
    // A parameter error (252), as in the AWS CLI ("There are no available instance connect
    // endpoints").
    let run = reach_sshd(&lab, &BY_INSTANCE).await;
    assert_eq!(run.code(), Some(252), "{}", run.stderr);
    run.assert_stderr_has(&["vpc-1", "subnet-2", "create one", "create-instance-connect-endpoint"]);
    assert_eq!(lab.standin.count("OpenTunnel"), 0);
    assert!(run.elapsed < Duration::from_secs(5), "{:?}", run.elapsed);
}

#[tokio::test]
async fn an_ipv6_only_instance_is_reached_on_its_ipv6_address() {
    let lab = Lab::start_with(|mut w| {
        let instance = w.instance_mut(INSTANCE).unwrap();
        instance.private_ip = None;
        instance.ipv6 = Some("fd00:ec2::5".into());
        w
    })
    .await;
    reach_sshd(&lab, &BY_INSTANCE).await.assert_reached_sshd();
    let opened = lab.standin.calls_of("OpenTunnel");
    assert_eq!(opened[0].params["privateIpAddress"], "fd00:ec2::5");
}

// ---- FIPS ----

#[tokio::test]
async fn fips_sends_the_tunnel_to_the_fips_dns_name() {
    let lab = Lab::start().await;
    let run = reach_sshd_env(&lab, &BY_INSTANCE, &[("AWS_USE_FIPS_ENDPOINT", "true")]).await;
    run.assert_reached_sshd();
    let opened = lab.standin.calls_of("OpenTunnel");
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0].host.as_deref(), Some(lab.standin.eice_fips_dns_name().as_str()));
    assert_eq!(opened[0].params["instanceConnectEndpointId"], ENDPOINT);
}

#[tokio::test]
async fn fips_without_a_fips_dns_name_gives_253() {
    let lab = Lab::start_with(|mut w| {
        w.endpoints = vec![Endpoint::new(ENDPOINT).no_fips()];
        w
    })
    .await;
    let run = reach_sshd_env(&lab, &BY_INSTANCE, &[("AWS_USE_FIPS_ENDPOINT", "true")]).await;
    assert_eq!(run.code(), Some(253), "{}", run.stderr);
    run.assert_stderr_has(&[ENDPOINT, "no FIPS DNS name"]);
    assert_eq!(lab.standin.count("OpenTunnel"), 0);
}
