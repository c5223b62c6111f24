//! The sshd fixture: logins with keys pushed through SendSSHPublicKey, directly and via the tunnel.

use eic_standin::{connect::install_key, Sshd, StandIn, TYPICAL_ENDPOINT_ID, TYPICAL_INSTANCE_ID};
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

use crate::common::keypair;

async fn push(s: &StandIn, user: &str, public: &str) {
    use aws_sdk_ec2instanceconnect::config::{BehaviorVersion, Credentials, Region};
    let conf = aws_sdk_ec2instanceconnect::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(s.api_url())
        .credentials_provider(Credentials::new("AKIDSTANDIN", "standin-secret", None, None, "test"))
        .build();
    aws_sdk_ec2instanceconnect::Client::from_conf(conf)
        .send_ssh_public_key()
        .instance_id(TYPICAL_INSTANCE_ID)
        .instance_os_user(user)
        .ssh_public_key(public)
        .send()
        .await
        .unwrap();
}

/// `ssh ... user@127.0.0.1 echo ok` against `port`, trusting sshd's host key there.
async fn ssh_echo(sshd: &Sshd, home: &Path, key: &Path, port: u16) -> std::process::Output {
    let known = home.join(format!("known_hosts_{port}"));
    let mut args = sshd.ssh_client_args(&known, key).unwrap();
    std::fs::write(&known, format!("[127.0.0.1]:{port} {}\n", sshd.host_public_key())).unwrap();
    let p = args.iter().position(|a| a == "-p").unwrap();
    args[p + 1] = port.to_string();
    tokio::process::Command::new("ssh")
        .args(args)
        .arg(format!("{}@127.0.0.1", sshd.user()))
        .arg("echo ok")
        .env("HOME", home)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap()
}

fn explain(out: &std::process::Output, sshd: &Sshd) -> String {
    format!("ssh stderr: {}\nsshd log:\n{}", String::from_utf8_lossy(&out.stderr), sshd.log_text())
}

#[tokio::test]
async fn login_with_a_pushed_key_and_refusal_without() {
    let (s, sshd) = StandIn::with_sshd().await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let (key, public) = keypair(home.path());

    let denied = ssh_echo(&sshd, home.path(), &key, sshd.port()).await;
    assert!(!denied.status.success(), "login without a pushed key");

    // An expired line is ignored by sshd (proves the expiry-time format is understood).
    let past = SystemTime::now() - Duration::from_secs(2);
    install_key(sshd.authorized_keys_dir(), sshd.user(), &public, past).unwrap();
    let expired = ssh_echo(&sshd, home.path(), &key, sshd.port()).await;
    assert!(!expired.status.success(), "login with an expired key");

    push(&s, sshd.user(), &public).await;
    let out = ssh_echo(&sshd, home.path(), &key, sshd.port()).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n", "{}", explain(&out, &sshd));
}

/// A local port that carries each connection through an openTunnel WebSocket.
async fn bridge(s: &StandIn, url: String) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (eice, tls) = (s.eice_addr(), s.rustls_client_config());
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let raw = TcpStream::connect(eice).await.unwrap();
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect("localhost".try_into().unwrap(), raw)
            .await
            .unwrap();
        let (ws, _) = tokio_tungstenite::client_async(url.as_str(), stream).await.unwrap();
        let (mut sink, mut source) = ws.split();
        let (mut r, mut w) = tcp.into_split();
        let up = async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n @ 1..) = r.read(&mut buf).await {
                if sink.send(Message::binary(buf[..n].to_vec())).await.is_err() {
                    return;
                }
            }
            let _ = sink.close().await;
        };
        let down = async move {
            while let Some(Ok(msg)) = source.next().await {
                let more = match msg {
                    Message::Binary(b) => w.write_all(&b).await.is_ok(),
                    Message::Close(_) => false,
                    _ => true,
                };
                if !more {
                    break;
                }
            }
            let _ = w.shutdown().await;
        };
        tokio::join!(up, down);
    });
    addr
}

#[tokio::test]
async fn login_through_the_tunnel() {
    let (s, sshd) = StandIn::with_sshd().await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let (key, public) = keypair(home.path());
    push(&s, sshd.user(), &public).await;
    let url = s.tunnel_url(TYPICAL_ENDPOINT_ID, "10.0.0.5", 22, None);
    let local = bridge(&s, url).await;
    let out = ssh_echo(&sshd, home.path(), &key, local.port()).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n", "{}", explain(&out, &sshd));
    assert_eq!(s.calls_of("OpenTunnel")[0].status, 101);
}

#[test]
fn sshd_fixture_reports_its_identity() {
    let sshd = Sshd::start().unwrap();
    assert!(sshd.host_public_key().starts_with("ssh-ed25519 "));
    assert!(sshd
        .known_hosts_line()
        .starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 ", sshd.port())));
    assert!(sshd.authorized_keys_dir().is_dir());
    assert!(!sshd.user().is_empty());
    assert!(sshd.log_text().contains("Server listening"));
    std::net::TcpStream::connect(sshd.addr()).unwrap();
}
