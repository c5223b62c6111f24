//! A stand-in holding a fleet: many instances behind one endpoint, the endpoint's limit of
//! tunnels open at once, and the stand-in's own record of how many were.

use aws_sdk_ec2::types::{Filter, InstanceStateName};
use eic_standin::{
    tcp_echo, StandIn, World, SERVICE_MAX_TUNNELS, TYPICAL_ENDPOINT_ID, TYPICAL_INSTANCE_ID,
};
use futures_util::{SinkExt, StreamExt};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;
use tokio_tungstenite::tungstenite::{Error, Message};

use crate::standin_tunnel::{connect, Ws};

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG8s8bUUqMv3LmuJO6X0iAq8PrqT6GWFqkWW6/mQd5ln test@host";

/// How long the stand-in may take to count ended tunnels out.
const SETTLE: Duration = Duration::from_secs(10);

fn ec2(s: &StandIn) -> aws_sdk_ec2::Client {
    crate::standin_api::ec2(s, "AKIDSTANDIN", "standin-secret")
}

fn instance_connect(s: &StandIn) -> aws_sdk_ec2instanceconnect::Client {
    crate::standin_api::eic(s)
}

async fn push(s: &StandIn, instance_id: &str, user: &str, key: &str) {
    instance_connect(s)
        .send_ssh_public_key()
        .instance_id(instance_id)
        .instance_os_user(user)
        .ssh_public_key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("pushing a key for {instance_id}: {e:?}"));
}

/// The instances a DescribeInstances call answers, by id.
async fn describe(
    call: aws_sdk_ec2::operation::describe_instances::builders::DescribeInstancesFluentBuilder,
) -> BTreeMap<String, aws_sdk_ec2::types::Instance> {
    let out = call.send().await.unwrap();
    assert!(out.next_token().is_none());
    let all: Vec<_> = out.reservations().iter().flat_map(|r| r.instances()).cloned().collect();
    let by_id: BTreeMap<_, _> =
        all.iter().map(|i| (i.instance_id().unwrap().to_string(), i.clone())).collect();
    assert_eq!(by_id.len(), all.len(), "an instance answered twice");
    by_id
}

fn tag<'a>(i: &'a aws_sdk_ec2::types::Instance, key: &str) -> Option<&'a str> {
    i.tags().iter().find(|t| t.key() == Some(key)).and_then(|t| t.value())
}

/// An upgraded tunnel, or the refusal's (HTTP status, ErrorCode).
async fn open(s: &StandIn, url: &str) -> Result<Ws, (u16, String)> {
    match connect(s, url).await {
        Ok(ws) => Ok(ws),
        Err(Error::Http(resp)) => {
            let body: serde_json::Value =
                serde_json::from_slice(resp.body().as_deref().unwrap_or_default()).unwrap();
            Err((resp.status().as_u16(), body["ErrorCode"].as_str().unwrap().to_string()))
        }
        Err(e) => panic!("neither an upgrade nor an HTTP refusal: {e}"),
    }
}

/// Sends `data` through the tunnel and reads the echo back.
async fn echo(ws: &mut Ws, data: &[u8]) {
    ws.send(Message::binary(data.to_vec())).await.unwrap();
    let mut got = Vec::new();
    while got.len() < data.len() {
        match ws.next().await.expect("the tunnel is open").unwrap() {
            Message::Binary(b) => got.extend_from_slice(&b),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, data);
}

/// Closes the tunnel and reads on to its end.
async fn close(mut ws: Ws) {
    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = ws.next().await {}
}

fn unreachable_target() -> SocketAddr {
    "127.0.0.1:9".parse().unwrap()
}

#[tokio::test]
async fn a_fleet_of_forty_is_described_and_filtered() {
    let s = StandIn::start(World::fleet(40, unreachable_target())).await.unwrap();
    let c = ec2(&s);

    let all = describe(c.describe_instances()).await;
    assert_eq!(all.len(), 40);
    assert!(!all.contains_key(TYPICAL_INSTANCE_ID));
    let mut ips = BTreeSet::new();
    for (id, i) in &all {
        assert_eq!(id.len(), 19, "{id}");
        assert!(id.starts_with("i-"), "{id}");
        assert!(id[2..].bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')), "{id}");
        assert_eq!(i.state().unwrap().name(), Some(&InstanceStateName::Running));
        assert_eq!(i.vpc_id(), Some("vpc-1"));
        assert_eq!(i.subnet_id(), Some("subnet-1"));
        let ip = i.private_ip_address().unwrap();
        assert!(ip.starts_with("10.0.") && ip != "10.0.0.5", "{ip}");
        assert!(ips.insert(ip.to_string()), "{ip} twice");
        assert_eq!(tag(i, "env"), Some("test"));
    }
    for n in 1..=40 {
        let i = &all[&World::fleet_instance_id(n)];
        assert_eq!(tag(i, "Name"), Some(format!("fleet-{n}").as_str()));
        assert_eq!(tag(i, "role"), Some(if n % 2 == 0 { "web" } else { "db" }));
        assert_eq!(i.private_ip_address(), Some(World::fleet_private_ip(n).as_str()));
    }

    let role = |r: &str| Filter::builder().name("tag:role").values(r).build();
    let web = describe(c.describe_instances().filters(role("web"))).await;
    assert_eq!(web.len(), 20);
    assert!(web.values().all(|i| tag(i, "role") == Some("web")));
    let db = describe(c.describe_instances().filters(role("db"))).await;
    assert_eq!(db.len(), 20);
    assert!(web.keys().all(|id| !db.contains_key(id)));

    let three: BTreeSet<String> = [3, 17, 40].map(World::fleet_instance_id).into();
    let by_filter = c.describe_instances().filters(
        Filter::builder()
            .name("instance-id")
            .set_values(Some(three.iter().cloned().collect()))
            .build(),
    );
    let got = describe(by_filter).await;
    assert_eq!(got.keys().cloned().collect::<BTreeSet<_>>(), three);
    let by_id = c.describe_instances().set_instance_ids(Some(three.iter().cloned().collect()));
    let got = describe(by_id).await;
    assert_eq!(got.keys().cloned().collect::<BTreeSet<_>>(), three);

    let endpoints = c.describe_instance_connect_endpoints().send().await.unwrap();
    let ids: Vec<_> = endpoints
        .instance_connect_endpoints()
        .iter()
        .filter_map(|e| e.instance_connect_endpoint_id())
        .collect();
    assert_eq!(ids, [TYPICAL_ENDPOINT_ID]);
}

#[tokio::test]
async fn every_key_push_is_counted_and_lands_in_the_users_file() {
    let dir = tempfile::tempdir().unwrap();
    let world = World::fleet(40, unreachable_target()).authorized_keys_dir(dir.path());
    let s = StandIn::start(world).await.unwrap();
    for n in [1, 2, 39] {
        push(&s, &World::fleet_instance_id(n), "ec2-user", KEY).await;
    }
    assert_eq!(s.count("SendSSHPublicKey"), 3);
    let pushed: Vec<_> =
        s.calls_of("SendSSHPublicKey").iter().map(|c| c.params["InstanceId"].clone()).collect();
    assert_eq!(pushed, [1, 2, 39].map(World::fleet_instance_id));
    // One file per user, whatever the instance: the one sshd behind them all reads it.
    let text = std::fs::read_to_string(dir.path().join("ec2-user")).unwrap();
    assert_eq!(text.lines().filter(|l| l.ends_with(KEY)).count(), 3, "{text}");
}

#[tokio::test]
async fn twenty_tunnels_at_once_then_429_and_the_peak_is_recorded() {
    let (echo_addr, _echo) = tcp_echo().await.unwrap();
    let mut world = World::fleet(40, echo_addr);
    world.faults.max_tunnels = Some(SERVICE_MAX_TUNNELS);
    let s = StandIn::start(world).await.unwrap();
    assert_eq!(s.peak_tunnels(), 0);

    // 25 upgrades at once, each to another instance.
    let urls: Vec<String> = (1..=25)
        .map(|n| s.tunnel_url(TYPICAL_ENDPOINT_ID, &World::fleet_private_ip(n), 22, None))
        .collect();
    let outcomes = futures_util::future::join_all(urls.iter().map(|u| open(&s, u))).await;
    let mut open_now = Vec::new();
    let mut refused = Vec::new();
    for outcome in outcomes {
        match outcome {
            Ok(ws) => open_now.push(ws),
            Err(refusal) => refused.push(refusal),
        }
    }
    assert_eq!(open_now.len(), 20);
    assert_eq!(refused, vec![(429, "TooManyRequests".to_string()); 5]);
    assert_eq!(s.live_tunnels(), 20, "a refused upgrade counted as open");
    assert_eq!(s.peak_tunnels(), 20);
    let mut statuses: Vec<u16> = s.calls_of("OpenTunnel").iter().map(|c| c.status).collect();
    statuses.sort();
    assert_eq!(statuses, [[101; 20].as_slice(), &[429; 5]].concat());

    // All 20 really relay.
    for (n, ws) in open_now.iter_mut().enumerate() {
        echo(ws, format!("tunnel {n}").as_bytes()).await;
    }
    futures_util::future::join_all(open_now.into_iter().map(close)).await;
    assert_eq!(s.wait_live_tunnels(0, SETTLE).await, 0);

    let mut one_more =
        open(&s, &urls[24]).await.unwrap_or_else(|r| panic!("refused after closing: {r:?}"));
    echo(&mut one_more, b"one more").await;
    assert_eq!(s.live_tunnels(), 1);
    assert_eq!(s.peak_tunnels(), 20);
    close(one_more).await;
    assert_eq!(s.wait_live_tunnels(0, SETTLE).await, 0);
    assert_eq!(s.peak_tunnels(), 20);
}

#[tokio::test]
async fn the_peak_counts_only_tunnels_open_together() {
    let (echo_addr, _echo) = tcp_echo().await.unwrap();
    let s = StandIn::start(World::fleet(3, echo_addr)).await.unwrap();
    for n in 1..=3 {
        let url = s.tunnel_url(TYPICAL_ENDPOINT_ID, &World::fleet_private_ip(n), 22, None);
        let mut ws = open(&s, &url).await.unwrap();
        echo(&mut ws, b"x").await;
        close(ws).await;
        assert_eq!(s.wait_live_tunnels(0, SETTLE).await, 0);
    }
    assert_eq!(s.peak_tunnels(), 1);
    assert_eq!(s.count("OpenTunnel"), 3);
}

/// `with_fleet`: one sshd behind every instance, the service's tunnel limit, and a key pushed
/// for one instance logs in on the sshd that every instance's port 22 reaches.
#[cfg(unix)]
#[tokio::test]
async fn with_fleet_puts_one_sshd_behind_every_instance() {
    let (s, sshd) = StandIn::with_fleet(6).await.unwrap();
    {
        let w = s.world();
        assert_eq!(w.faults.max_tunnels, Some(20));
        assert_eq!(w.instances.len(), 6);
        assert!(w.instances.iter().all(|i| i.targets.get(&22) == Some(&sshd.addr())));
        assert_eq!(w.authorized_keys_dir.as_deref(), Some(sshd.authorized_keys_dir()));
    }

    // Port 22 of instance 2 is the sshd.
    let url = s.tunnel_url(TYPICAL_ENDPOINT_ID, &World::fleet_private_ip(2), 22, None);
    let mut ws = open(&s, &url).await.unwrap();
    let mut banner = Vec::new();
    while !banner.ends_with(b"\n") {
        match ws.next().await.expect("the sshd's banner").unwrap() {
            Message::Binary(b) => banner.extend_from_slice(&b),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(banner.starts_with(b"SSH-2.0-"), "{}", String::from_utf8_lossy(&banner));
    close(ws).await;

    // A key pushed for instance 5 logs the user in.
    let home = tempfile::tempdir().unwrap();
    let (key, public) = crate::common::keypair(home.path());
    push(&s, &World::fleet_instance_id(5), sshd.user(), &public).await;
    assert_eq!(s.count("SendSSHPublicKey"), 1);
    let args = sshd.ssh_client_args(&home.path().join("known_hosts"), &key).unwrap();
    let out = tokio::process::Command::new("ssh")
        .args(args)
        .arg(format!("{}@127.0.0.1", sshd.user()))
        .arg("echo ok")
        .env("HOME", home.path())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ok\n",
        "ssh stderr: {}\nsshd log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        sshd.log_text()
    );
}
