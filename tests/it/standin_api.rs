//! The EC2 and Instance Connect APIs, called for real through the AWS SDK.

use aws_sdk_ec2::types::{Filter, InstanceStateName};
use aws_sdk_ec2instanceconnect::operation::send_ssh_public_key::SendSSHPublicKeyError;
use eic_standin::{
    Credential, Endpoint, Instance, StandIn, World, TYPICAL_ENDPOINT_ID, TYPICAL_INSTANCE_ID,
};
use std::net::SocketAddr;
use std::time::Duration;

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG8s8bUUqMv3LmuJO6X0iAq8PrqT6GWFqkWW6/mQd5ln test@host";

fn target() -> SocketAddr {
    "127.0.0.1:9".parse().unwrap()
}

pub(crate) fn ec2(s: &StandIn, ak: &str, secret: &str) -> aws_sdk_ec2::Client {
    use aws_sdk_ec2::config::{retry::RetryConfig, BehaviorVersion, Credentials, Region};
    let conf = aws_sdk_ec2::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(s.api_url())
        .credentials_provider(Credentials::new(ak, secret, None, None, "test"))
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_ec2::Client::from_conf(conf)
}

pub(crate) fn eic(s: &StandIn) -> aws_sdk_ec2instanceconnect::Client {
    use aws_sdk_ec2instanceconnect::config::{
        retry::RetryConfig, BehaviorVersion, Credentials, Region,
    };
    let conf = aws_sdk_ec2instanceconnect::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(s.api_url())
        .credentials_provider(Credentials::new("AKIDSTANDIN", "standin-secret", None, None, "test"))
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_ec2instanceconnect::Client::from_conf(conf)
}

fn world() -> World {
    World::typical(target())
        .instance(
            Instance::new("i-0aaaaaaaaaaaaaaa1", "10.0.1.7")
                .vpc("vpc-2", "subnet-2")
                .az("us-east-1b")
                .state("stopped")
                .public_ip("203.0.113.9")
                .ipv6("2001:db8::7")
                .tag("Name", "db-1")
                .tag("team", "data"),
        )
        .instance(Instance::new("i-0aaaaaaaaaaaaaaa2", "10.0.0.8").tag("Name", "web-2"))
}

#[tokio::test]
async fn describe_instances_parses_in_the_sdk() {
    let s = StandIn::start(world()).await.unwrap();
    let c = ec2(&s, "AKIDSTANDIN", "standin-secret");
    let out = c.describe_instances().send().await.unwrap();
    let all: Vec<_> = out.reservations().iter().flat_map(|r| r.instances()).collect();
    assert_eq!(all.len(), 3);
    let db = all.iter().find(|i| i.instance_id() == Some("i-0aaaaaaaaaaaaaaa1")).unwrap();
    assert_eq!(db.state().unwrap().name(), Some(&InstanceStateName::Stopped));
    assert_eq!(db.state().unwrap().code(), Some(80));
    assert_eq!(db.private_ip_address(), Some("10.0.1.7"));
    assert_eq!(db.public_ip_address(), Some("203.0.113.9"));
    assert_eq!(db.ipv6_address(), Some("2001:db8::7"));
    let nic = &db.network_interfaces()[0];
    assert_eq!(nic.ipv6_addresses()[0].ipv6_address(), Some("2001:db8::7"));
    assert_eq!(db.vpc_id(), Some("vpc-2"));
    assert_eq!(db.subnet_id(), Some("subnet-2"));
    assert_eq!(db.placement().unwrap().availability_zone(), Some("us-east-1b"));
    assert_eq!(db.tags().len(), 2);
    assert_eq!(db.tags()[1].key(), Some("team"));
    assert_eq!(db.tags()[1].value(), Some("data"));
    assert!(db.launch_time().is_some());
    assert!(out.next_token().is_none());

    let web = c
        .describe_instances()
        .filters(Filter::builder().name("tag:Name").values("web-*").build())
        .filters(Filter::builder().name("instance-state-name").values("running").build())
        .send()
        .await
        .unwrap();
    let ids: Vec<_> = web
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter_map(|i| i.instance_id())
        .collect();
    assert_eq!(ids, [TYPICAL_INSTANCE_ID, "i-0aaaaaaaaaaaaaaa2"]);

    let one = c.describe_instances().instance_ids(TYPICAL_INSTANCE_ID).send().await.unwrap();
    assert_eq!(one.reservations().len(), 1);

    let call = &s.calls_of("DescribeInstances")[1];
    assert_eq!(call.params["Filter.1.Name"], "tag:Name");
    assert_eq!(call.params["Filter.1.Value.1"], "web-*");
    assert_eq!(call.access_key_id.as_deref(), Some("AKIDSTANDIN"));
    assert_eq!(call.status, 200);
}

#[tokio::test]
async fn describe_instances_errors() {
    let s = StandIn::start(world()).await.unwrap();
    let c = ec2(&s, "AKIDSTANDIN", "standin-secret");
    let code = |r: Result<_, aws_sdk_ec2::error::SdkError<_, _>>| {
        use aws_sdk_ec2::error::ProvideErrorMetadata;
        let e = r.expect_err("an error");
        let svc: aws_sdk_ec2::operation::describe_instances::DescribeInstancesError =
            e.into_service_error();
        (svc.code().unwrap_or("").to_string(), svc.message().unwrap_or("").to_string())
    };
    let (c1, m1) = code(c.describe_instances().instance_ids("i-0123456789abcdef9").send().await);
    assert_eq!(c1, "InvalidInstanceID.NotFound");
    assert_eq!(m1, "The instance ID 'i-0123456789abcdef9' does not exist");
    let (c2, _) = code(c.describe_instances().instance_ids("web-1").send().await);
    assert_eq!(c2, "InvalidInstanceID.Malformed");
    let (c3, _) = code(
        c.describe_instances()
            .filters(Filter::builder().name("nonsense").values("x").build())
            .send()
            .await,
    );
    assert_eq!(c3, "InvalidParameterValue");

    s.world().faults.unauthorized = vec!["DescribeInstances".into()];
    assert_eq!(code(c.describe_instances().send().await).0, "UnauthorizedOperation");
    s.world().faults.unauthorized.clear();

    s.world().faults.request_limit_exceeded = 2;
    assert_eq!(code(c.describe_instances().send().await).0, "RequestLimitExceeded");
    assert_eq!(code(c.describe_instances().send().await).0, "RequestLimitExceeded");
    c.describe_instances().send().await.unwrap();

    s.world().faults.internal_error = 1;
    assert_eq!(code(c.describe_instances().send().await).0, "InternalError");
    c.describe_instances().send().await.unwrap();
    let statuses: Vec<u16> = s.calls().iter().map(|c| c.status).collect();
    assert_eq!(statuses, [400, 400, 400, 403, 503, 503, 200, 500, 200]);

    let wrong = ec2(&s, "AKIDWRONG", "x");
    assert_eq!(code(wrong.describe_instances().send().await).0, "AuthFailure");
}

#[tokio::test]
async fn endpoints_paginate_and_carry_the_standin_dns() {
    let mut w = world();
    for n in 1..=4 {
        w = w
            .endpoint(Endpoint::new(&format!("eice-0bbbbbbbbbbbbbbb{n}")).vpc("vpc-2", "subnet-2"));
    }
    w = w.endpoint(
        Endpoint::new("eice-0cccccccccccccccc")
            .dns("eice.example.com")
            .no_fips()
            .state("create-failed"),
    );
    let s = StandIn::start(w).await.unwrap();
    s.world().faults.page_size = Some(2);
    let c = ec2(&s, "AKIDSTANDIN", "standin-secret");
    let all: Vec<_> = c
        .describe_instance_connect_endpoints()
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    assert_eq!(all.len(), 6);
    assert_eq!(s.count("DescribeInstanceConnectEndpoints"), 3);
    let first = &all[0];
    assert_eq!(first.instance_connect_endpoint_id(), Some(TYPICAL_ENDPOINT_ID));
    assert_eq!(first.dns_name(), Some(s.eice_dns_name().as_str()));
    assert_eq!(first.fips_dns_name(), Some(s.eice_fips_dns_name().as_str()));
    assert_eq!(first.state().map(|s| s.as_str()), Some("create-complete"));
    assert_eq!(first.vpc_id(), Some("vpc-1"));
    assert_eq!(first.subnet_id(), Some("subnet-1"));
    assert!(first.instance_connect_endpoint_arn().unwrap().ends_with(TYPICAL_ENDPOINT_ID));
    let last = &all[5];
    assert_eq!(last.dns_name(), Some("eice.example.com"));
    assert_eq!(last.fips_dns_name(), None);
    assert_eq!(last.state().map(|s| s.as_str()), Some("create-failed"));

    let vpc2 = c
        .describe_instance_connect_endpoints()
        .filters(Filter::builder().name("vpc-id").values("vpc-2").build())
        .filters(Filter::builder().name("state").values("create-complete").build())
        .max_results(50)
        .send()
        .await
        .unwrap();
    assert_eq!(vpc2.instance_connect_endpoints().len(), 2);
    assert!(vpc2.next_token().is_some());
    assert_eq!(s.calls_of("DescribeInstanceConnectEndpoints")[3].params["MaxResults"], "50");

    s.world().faults.page_size = None;
    let by_id = c
        .describe_instance_connect_endpoints()
        .instance_connect_endpoint_ids("eice-0bbbbbbbbbbbbbbb3")
        .send()
        .await
        .unwrap();
    assert_eq!(by_id.instance_connect_endpoints().len(), 1);
    let missing = c
        .describe_instance_connect_endpoints()
        .instance_connect_endpoint_ids("eice-0dddddddddddddddd")
        .send()
        .await
        .unwrap_err();
    use aws_sdk_ec2::error::ProvideErrorMetadata;
    assert_eq!(missing.code(), Some("InvalidInstanceConnectEndpointId.NotFound"));
}

#[tokio::test]
async fn send_ssh_public_key_installs_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let s = StandIn::start(world().authorized_keys_dir(dir.path())).await.unwrap();
    let out = eic(&s)
        .send_ssh_public_key()
        .instance_id(TYPICAL_INSTANCE_ID)
        .instance_os_user("ec2-user")
        .ssh_public_key(KEY)
        .availability_zone("us-east-1a")
        .send()
        .await
        .unwrap();
    assert!(out.success());
    assert!(out.request_id().is_some());
    let text = std::fs::read_to_string(dir.path().join("ec2-user")).unwrap();
    assert!(text.starts_with("expiry-time=\""), "{text}");
    assert!(text.trim_end().ends_with(KEY), "{text}");
    let call = &s.calls_of("SendSSHPublicKey")[0];
    assert_eq!(call.params["InstanceOSUser"], "ec2-user");
    assert_eq!(call.params["SSHPublicKey"], KEY);
    assert_eq!(call.access_key_id.as_deref(), Some("AKIDSTANDIN"));
}

#[tokio::test]
async fn send_ssh_public_key_errors_map_to_sdk_variants() {
    let s = StandIn::start(world()).await.unwrap();
    let c = eic(&s);
    let send = |id: &str, user: &str, key: &str| {
        c.send_ssh_public_key().instance_id(id).instance_os_user(user).ssh_public_key(key).send()
    };
    let err = |r: Result<
        _,
        aws_sdk_ec2instanceconnect::error::SdkError<SendSSHPublicKeyError, _>,
    >| { r.expect_err("an error").into_service_error() };
    let e = err(send("i-0123456789abcdef9", "ec2-user", KEY).await);
    assert!(matches!(e, SendSSHPublicKeyError::Ec2InstanceNotFoundException(_)), "{e:?}");
    let e = err(send("i-0aaaaaaaaaaaaaaa1", "ec2-user", KEY).await);
    assert!(matches!(e, SendSSHPublicKeyError::Ec2InstanceStateInvalidException(_)), "{e:?}");
    let e = err(send(TYPICAL_INSTANCE_ID, "bad user", KEY).await);
    assert!(matches!(e, SendSSHPublicKeyError::InvalidArgsException(_)), "{e:?}");
    let e = err(send(
        TYPICAL_INSTANCE_ID,
        "ec2-user",
        "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIG8s8bUUqMv3LmuJO6X0iAq8PrqT6GWFqkWW6/mQd5ln",
    )
    .await);
    assert!(matches!(e, SendSSHPublicKeyError::InvalidArgsException(_)), "{e:?}");

    s.world().faults.throttle_send_key = 1;
    let e = err(send(TYPICAL_INSTANCE_ID, "ec2-user", KEY).await);
    assert!(matches!(e, SendSSHPublicKeyError::ThrottlingException(_)), "{e:?}");
    send(TYPICAL_INSTANCE_ID, "ec2-user", KEY).await.unwrap();

    s.world().faults.deny_send_key = Some("AuthException".into());
    let e = err(send(TYPICAL_INSTANCE_ID, "ec2-user", KEY).await);
    assert!(matches!(e, SendSSHPublicKeyError::AuthException(_)), "{e:?}");
    s.world().faults.deny_send_key = Some("AccessDeniedException".into());
    let e = err(send(TYPICAL_INSTANCE_ID, "ec2-user", KEY).await);
    use aws_sdk_ec2instanceconnect::error::ProvideErrorMetadata;
    assert_eq!(e.code(), Some("AccessDeniedException"), "{e:?}");
    s.world().faults.deny_send_key = None;

    s.world().faults.api_latency = Duration::from_millis(200);
    let t = std::time::Instant::now();
    send(TYPICAL_INSTANCE_ID, "ec2-user", KEY).await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn session_tokens_are_required_when_the_credential_has_one() {
    let w = world().only_credential(Credential::new("ASIATEMP", "tmp-secret").with_token("tok"));
    let s = StandIn::start(w).await.unwrap();
    assert!(s.env().contains(&("AWS_SESSION_TOKEN".into(), "tok".into())));
    let c = ec2(&s, "ASIATEMP", "tmp-secret");
    use aws_sdk_ec2::error::ProvideErrorMetadata;
    let e = c.describe_instances().send().await.unwrap_err();
    assert_eq!(e.code(), Some("AuthFailure"));
}
