//! `eic exec` and `eic list` against a stand-in fleet behind one endpoint (20 tunnels at once)
//! and a real sshd.

use std::process::Stdio;
use std::time::Duration;

use eic_standin::{Instance, StandIn, World};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::common::{run, runtime_dir, text, Lab};

const LIMIT: Duration = Duration::from_secs(120);

async fn fleet(n: usize) -> Lab {
    let (standin, sshd) = StandIn::with_fleet(n).await.expect("the stand-in and sshd start");
    Lab::with(standin, sshd)
}

/// `eic exec SELECTORS -- <isolating ssh options> COMMAND`, its one-time keys in `runtime`.
fn exec(lab: &Lab, runtime: &std::path::Path, selectors: &[&str], command: &[&str]) -> Command {
    let mut args = vec!["exec", "--os-user", lab.sshd.user()];
    args.extend_from_slice(selectors);
    args.push("--");
    let options = lab.ssh_options();
    args.extend(options.iter().map(String::as_str));
    args.extend_from_slice(command);
    let mut cmd = lab.eic(&args);
    cmd.env("XDG_RUNTIME_DIR", runtime);
    cmd
}

fn id(i: usize) -> String {
    World::fleet_instance_id(i)
}

/// The `LABEL | line` lines of `out`, sorted.
fn lines(out: &[u8]) -> Vec<String> {
    let mut lines: Vec<String> = text(out).lines().map(String::from).collect();
    lines.sort();
    lines
}

#[tokio::test]
async fn by_tag_each_line_is_labelled_with_its_instance() {
    let lab = fleet(6).await;
    let runtime = runtime_dir();
    let out =
        run(&mut exec(&lab, runtime.path(), &["--tag", "role=web"], &["echo a; echo b"]), LIMIT)
            .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // role=web: the even ones.
    let mut want = Vec::new();
    for i in [2, 4, 6] {
        for line in ["a", "b"] {
            want.push(format!("{} fleet-{i} | {line}", id(i)));
        }
    }
    want.sort();
    assert_eq!(lines(&out.stdout), want);
    assert_eq!(lab.standin.count("SendSSHPublicKey"), 3);
    assert_eq!(lab.standin.count("DescribeInstances"), 1, "one lookup for the tag set");
    assert_eq!(lab.standin.count("DescribeInstanceConnectEndpoints"), 1);
    assert_eq!(std::fs::read_dir(runtime.path()).unwrap().count(), 0, "no key is left");
}

#[tokio::test]
async fn ids_and_names_mixed_each_instance_once_and_stderr_apart() {
    let lab = fleet(4).await;
    let runtime = runtime_dir();
    let (one, two) = (id(1), id(2));
    let selectors =
        ["--instance-id", &one, "--instance-id", &two, "--name", "fleet-2", "--name", "fleet-3"];
    let command = ["echo out; echo err >&2; printf 'no newline'"];
    let out = run(&mut exec(&lab, runtime.path(), &selectors, &command), LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut want = Vec::new();
    for i in [1, 2, 3] {
        want.push(format!("{} fleet-{i} | out", id(i)));
        want.push(format!("{} fleet-{i} | no newline", id(i)));
    }
    want.sort();
    assert_eq!(lines(&out.stdout), want);
    let stderr = lines(&out.stderr);
    assert_eq!(stderr.iter().filter(|l| l.ends_with("| err")).count(), 3, "{stderr:?}");
    assert_eq!(lab.standin.count("SendSSHPublicKey"), 3, "fleet-2 once");
    assert_eq!(lab.standin.count("DescribeInstances"), 2, "one call for ids, one for names");
}

#[tokio::test]
async fn a_stopped_or_unknown_instance_is_reported_and_the_rest_run() {
    let lab = fleet(3).await;
    lab.standin.world().instances[1].state = "stopped".into();
    let runtime = runtime_dir();
    let unknown = "i-0000000000000dead";
    let selectors = ["--tag", "env=test", "--instance-id", &id(2), "--instance-id", unknown];
    let mut cmd = exec(&lab, runtime.path(), &selectors, &["echo ran"]);
    let out = run(&mut cmd, LIMIT).await;
    assert_eq!(out.status.code(), Some(254), "{}", text(&out.stderr));
    let mut want = [format!("{} fleet-1 | ran", id(1)), format!("{} fleet-3 | ran", id(3))];
    want.sort();
    assert_eq!(lines(&out.stdout), want);
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&format!("{} is stopped, not running", id(2))), "{stderr}");
    assert!(stderr.contains(&format!("instance {unknown} was not found")), "{stderr}");
    // EC2 takes `*` in a tag filter as a wildcard; eic takes the value as it is.
    let out = run(&mut exec(&lab, runtime.path(), &["--tag", "env=te*"], &["true"]), LIMIT).await;
    assert_eq!(out.status.code(), Some(254), "{}", text(&out.stderr));
    assert_eq!(lab.standin.count("SendSSHPublicKey"), 2, "nothing more pushed");
    // A tag set that matches nothing: an error before anything runs.
    let out =
        run(&mut exec(&lab, runtime.path(), &["--tag", "role=cache"], &["true"]), LIMIT).await;
    assert_eq!(out.status.code(), Some(254));
    assert!(text(&out.stderr).contains("no running instance"), "{}", text(&out.stderr));
}

#[tokio::test]
async fn the_largest_exit_status_is_passed_up_and_the_others_output_is_intact() {
    let lab = fleet(3).await;
    // fleet-3's port 22 leads nowhere: ssh cannot connect there (255).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    lab.standin.world().instances[2].targets.insert(22, closed);
    let runtime = runtime_dir();
    let out =
        run(&mut exec(&lab, runtime.path(), &["--tag", "env=test"], &["echo fine; exit 3"]), LIMIT)
            .await;
    assert_eq!(out.status.code(), Some(255), "{}", text(&out.stderr));
    let mut want = [format!("{} fleet-1 | fine", id(1)), format!("{} fleet-2 | fine", id(2))];
    want.sort();
    assert_eq!(lines(&out.stdout), want);
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&format!("eic: {}: exit status 3", id(1))), "{stderr}");
    assert!(stderr.contains(&format!("eic: {}: exit status 255", id(3))), "{stderr}");
}

#[tokio::test]
async fn json_has_one_object_per_instance() {
    let lab = fleet(2).await;
    let runtime = runtime_dir();
    let selectors = ["--tag", "env=test", "--name", "nobody", "--output", "json"];
    let out =
        run(&mut exec(&lab, runtime.path(), &selectors, &["echo o; echo e >&2; exit 2"]), LIMIT)
            .await;
    assert_eq!(out.status.code(), Some(254), "{}", text(&out.stderr));
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let all = all.as_array().expect("an array");
    assert_eq!(all.len(), 3);
    let ran = all.iter().find(|o| o["instance_id"] == id(1).as_str()).unwrap();
    assert_eq!(ran["name"], "fleet-1");
    assert_eq!(ran["exit_status"], 2);
    assert_eq!((ran["stdout"].as_str(), ran["stderr"].as_str()), (Some("o\n"), Some("e\n")));
    assert_eq!((&ran["error"], &ran["truncated"]), (&serde_json::Value::Null, &false.into()));
    assert!(ran["seconds"].as_f64().is_some_and(|s| s > 0.0));
    let missing = all.iter().find(|o| o["name"] == "nobody").unwrap();
    assert_eq!(
        (&missing["instance_id"], &missing["exit_status"]),
        (&serde_json::Value::Null, &serde_json::Value::Null)
    );
    assert!(missing["error"].as_str().unwrap().contains("no instance is named `nobody`"));
}

#[tokio::test]
async fn ctrl_c_stops_every_ssh_and_leaves_no_key() {
    let lab = fleet(3).await;
    let runtime = runtime_dir();
    let mut cmd =
        exec(&lab, runtime.path(), &["--tag", "env=test"], &["echo started; exec sleep 60"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    for _ in 0..3 {
        let line = tokio::time::timeout(LIMIT, out.next_line()).await.unwrap().unwrap();
        assert!(line.is_some_and(|l| l.ends_with("| started")));
    }
    assert_eq!(std::fs::read_dir(runtime.path()).unwrap().count(), 1, "the key, while they run");
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status =
        tokio::time::timeout(Duration::from_secs(20), child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(130));
    assert_eq!(std::fs::read_dir(runtime.path()).unwrap().count(), 0, "no key is left");
}

#[tokio::test]
async fn forty_instances_within_an_endpoint_that_allows_twenty_tunnels() {
    let lab = fleet(40).await;
    let runtime = runtime_dir();
    let selectors = ["--tag", "env=test", "--parallel", "40"];
    let out = run(&mut exec(&lab, runtime.path(), &selectors, &["echo ok"]), LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().filter(|l| l.ends_with("| ok")).count(), 40);
    assert_eq!(lab.standin.count("SendSSHPublicKey"), 40);
    let peak = lab.standin.peak_tunnels();
    assert!(peak <= 20, "{peak} tunnels were open at once");
    // eic kept within the quota itself: the endpoint never had to refuse a tunnel.
    let refused = lab.standin.calls_of("OpenTunnel").iter().filter(|c| c.status == 429).count();
    assert_eq!(refused, 0, "tunnels refused with 429");
    eprintln!("40 instances: at most {peak} tunnels open at once");
}

#[tokio::test]
async fn list_says_how_each_instance_is_reached() {
    let (standin, sshd) = StandIn::with_fleet(2).await.unwrap();
    standin.world().instances.push(
        Instance::new("i-0aaaaaaaaaaaaaaaa", "10.9.9.9")
            .vpc("vpc-2", "subnet-2")
            .tag("Name", "alone"),
    );
    standin
        .world()
        .instances
        .push(Instance::new("i-0bbbbbbbbbbbbbbbb", "10.9.9.8").state("stopped").tag("Name", "off"));
    let lab = Lab::with(standin, sshd);
    let out = run(&mut lab.eic(&["list", "--output", "json"]), LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let by_name = |name: &str| all.as_array().unwrap().iter().find(|o| o["name"] == name).cloned();
    let one = by_name("fleet-1").unwrap();
    assert_eq!(
        (one["route"].as_str(), one["endpoint_id"].as_str()),
        (Some("eice"), Some(crate::common::ENDPOINT))
    );
    let alone = by_name("alone").unwrap();
    assert_eq!(alone["route"], "none");
    assert!(alone["why"].as_str().unwrap().contains("no EC2 Instance Connect Endpoint"));
    assert!(by_name("off").is_none(), "running ones only");
    let out = run(&mut lab.eic(&["list", "--all"]), LIMIT).await;
    let table = text(&out.stdout);
    assert!(table.starts_with("NAME ") && table.contains("stopped"), "{table}");
}

#[tokio::test]
async fn new_instances_get_no_prompt_and_their_host_keys_are_recorded() {
    // No known host, no BatchMode of the user's: eic's defaults (BatchMode=yes,
    // StrictHostKeyChecking=accept-new) keep many ssh from asking at once.
    let lab = fleet(2).await;
    let runtime = runtime_dir();
    let known = lab.home.path().join("known_hosts_empty");
    std::fs::write(&known, "").unwrap();
    let mut args = vec!["exec", "--os-user", lab.sshd.user(), "--tag", "env=test", "--"];
    let file = format!("UserKnownHostsFile={}", known.display());
    args.extend(["-F", "/dev/null", "-o", &file, "-o", "LogLevel=ERROR", "echo ok"]);
    let mut cmd = lab.eic(&args);
    cmd.env("XDG_RUNTIME_DIR", runtime.path());
    let out = run(&mut cmd, LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let recorded = std::fs::read_to_string(&known).unwrap();
    for i in [1, 2] {
        assert!(recorded.contains(&id(i)), "{}: {recorded}", id(i));
    }
}
