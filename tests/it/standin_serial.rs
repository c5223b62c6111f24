//! The stand-in's serial console: its SSH server takes `INSTANCE.portN` with a key pushed by
//! SendSerialConsoleSSHPublicKey for that instance and port, while the key is valid, one
//! session per instance; the API checks what the service checks. ssh is the real OpenSSH.

use std::path::Path;
use std::time::Duration;

use crate::common::keypair;

use aws_sdk_ec2instanceconnect::config::{BehaviorVersion, Credentials, Region};
use eic_standin::{Instance, StandIn, World, TYPICAL_INSTANCE_ID as INSTANCE};

const OTHER: &str = "i-0fedcba9876543210";

async fn standin() -> StandIn {
    let world = World::new()
        .instance(Instance::new(INSTANCE, "10.0.0.5"))
        .instance(Instance::new(OTHER, "10.0.0.6"));
    StandIn::start(world).await.unwrap()
}

fn client(s: &StandIn) -> aws_sdk_ec2instanceconnect::Client {
    let conf = aws_sdk_ec2instanceconnect::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(s.api_url())
        .credentials_provider(Credentials::new("AKIDSTANDIN", "standin-secret", None, None, "t"))
        .build();
    aws_sdk_ec2instanceconnect::Client::from_conf(conf)
}

/// Pushes `public` for `instance`'s port `port`; the service's error code, if any.
async fn push(s: &StandIn, instance: &str, port: i32, public: &str) -> Option<String> {
    use aws_sdk_ec2instanceconnect::error::ProvideErrorMetadata;
    let request = client(s).send_serial_console_ssh_public_key().instance_id(instance);
    let sent = request.serial_port(port).ssh_public_key(public).send().await;
    sent.err().map(|e| e.code().unwrap_or("?").to_string())
}

/// `ssh USER@console` with `key`, trusting only the console's host key; sends nothing.
async fn login(s: &StandIn, dir: &Path, key: &Path, user: &str) -> std::process::Output {
    let known = dir.join("known_hosts");
    let addr = s.serial_console_addr();
    std::fs::write(&known, format!("console {}\n", s.serial_console_host_key())).unwrap();
    let command = tokio::process::Command::new("ssh")
        .args(["-F", "none", "-i"])
        .arg(key)
        .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "HostKeyAlias=console"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known.display()))
        .args(["-o", "StrictHostKeyChecking=yes", "-p", &addr.port().to_string()])
        .arg(format!("{user}@127.0.0.1"))
        .env("HOME", dir)
        .stdin(std::process::Stdio::null())
        .output();
    tokio::time::timeout(Duration::from_secs(20), command).await.unwrap().unwrap()
}

#[tokio::test]
async fn only_a_valid_key_pushed_for_that_instance_and_port_logs_in() {
    let s = standin().await;
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keypair(dir.path());
    let user = format!("{INSTANCE}.port0");
    let refused = |out: &std::process::Output| {
        out.status.code() == Some(255)
            && String::from_utf8_lossy(&out.stderr).contains("Permission denied")
    };
    // Not pushed yet; then pushed for another instance.
    assert!(refused(&login(&s, dir.path(), &key, &user).await));
    assert_eq!(push(&s, OTHER, 0, &public).await, None);
    assert!(refused(&login(&s, dir.path(), &key, &user).await));
    // Pushed for this one: its port 0 only.
    assert_eq!(push(&s, INSTANCE, 0, &public).await, None);
    assert!(refused(&login(&s, dir.path(), &key, &format!("{INSTANCE}.port1")).await));
    assert!(refused(&login(&s, dir.path(), &key, "ec2-user").await));
    let out = login(&s, dir.path(), &key, &user).await;
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("{INSTANCE} serial console")));
    // Expired.
    for pushed in s.world().serial_keys.iter_mut() {
        pushed.expires = std::time::SystemTime::now() - Duration::from_secs(1);
    }
    assert!(refused(&login(&s, dir.path(), &key, &user).await));
}

#[tokio::test]
async fn the_api_checks_what_the_service_checks() {
    let s = standin().await;
    let dir = tempfile::tempdir().unwrap();
    let (_, public) = keypair(dir.path());
    let code = |c: &str| Some(c.to_string());
    assert_eq!(push(&s, INSTANCE, 1, &public).await, code("InvalidArgsException"));
    assert_eq!(push(&s, INSTANCE, 0, "ssh-ed25519 AAAA").await, code("InvalidArgsException"));
    assert_eq!(
        push(&s, "i-0000000000000000a", 0, &public).await,
        code("EC2InstanceNotFoundException")
    );
    s.world().instance_mut(OTHER).unwrap().state = "stopped".into();
    assert_eq!(push(&s, OTHER, 0, &public).await, code("EC2InstanceStateInvalidException"));
    s.world().serial_sessions.insert(INSTANCE.into());
    assert_eq!(
        push(&s, INSTANCE, 0, &public).await,
        code("SerialConsoleSessionLimitExceededException")
    );
    s.world().serial_console_access = false;
    assert_eq!(push(&s, INSTANCE, 0, &public).await, code("SerialConsoleAccessDisabledException"));
    // An Ed25519 key line without a comment is exactly the model's minimum length (80).
    s.world().serial_console_access = true;
    s.world().serial_sessions.clear();
    let bare: String = public.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    assert_eq!(bare.len(), eic_standin::connect::MIN_PUBLIC_KEY_LEN);
    assert_eq!(push(&s, INSTANCE, 0, &bare).await, None);
}
