//! The stand-in end to end: a URL from eic's presigner reaches the real sshd through the
//! stand-in's TLS WebSocket, and the stand-in refuses what the service refuses.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use crate::common::{Lab, ENDPOINT, PRIVATE_IP};
use aws_credential_types::Credentials;
use eic::presign;
use eic::TunnelTarget;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::{self, Message};

fn target(lab: &Lab, port: u16) -> TunnelTarget {
    TunnelTarget {
        dns_name: lab.standin.eice_dns_name().parse().unwrap(),
        endpoint_id: ENDPOINT.to_string(),
        private_ip: PRIVATE_IP.parse::<IpAddr>().unwrap(),
        remote_port: port,
        max_tunnel_duration: None,
    }
}

fn credentials() -> Credentials {
    Credentials::new(
        eic_standin::DEFAULT_ACCESS_KEY_ID,
        eic_standin::DEFAULT_SECRET,
        None,
        None,
        "test",
    )
}

async fn connect(
    lab: &Lab,
    url: &str,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    tungstenite::Error,
> {
    let tcp = tokio::net::TcpStream::connect(lab.standin.eice_addr()).await.unwrap();
    let connector = tokio_tungstenite::Connector::Rustls(lab.standin.rustls_client_config());
    tokio_tungstenite::client_async_tls_with_config(url, tcp, None, Some(connector))
        .await
        .map(|(ws, _)| ws)
}

/// The service's refusal: HTTP status, JSON ErrorCode, and a request id header.
async fn refusal(lab: &Lab, url: &str) -> (u16, String) {
    match connect(lab, url).await {
        Err(tungstenite::Error::Http(response)) => {
            assert!(response.headers().contains_key("x-amzn-RequestId"));
            let body: serde_json::Value =
                serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap();
            assert!(body["Message"].is_string(), "{body}");
            (response.status().as_u16(), body["ErrorCode"].as_str().unwrap().to_string())
        }
        Ok(_) => panic!("the stand-in accepted {url}"),
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[tokio::test]
async fn presigned_url_reaches_the_real_sshd() {
    let lab = Lab::start().await;
    let url = presign(&target(&lab, 22), &credentials(), "us-east-1", SystemTime::now()).unwrap();
    let mut ws = connect(&lab, &url).await.expect("upgrade accepted");
    ws.send(Message::Binary(b"SSH-2.0-eic_test\r\n".to_vec().into())).await.unwrap();
    let mut seen = Vec::new();
    while !seen.windows(8).any(|w| w == b"SSH-2.0-") {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Binary(data)))) => seen.extend_from_slice(&data),
            other => panic!("no SSH banner through the tunnel: {other:?}"),
        }
    }
    assert!(String::from_utf8_lossy(&seen).contains("OpenSSH"));
    let call = lab.standin.calls_of("OpenTunnel").pop().expect("recorded");
    assert_eq!(call.status, 101);
    assert_eq!(call.access_key_id.as_deref(), Some(eic_standin::DEFAULT_ACCESS_KEY_ID));
}

#[tokio::test]
async fn bad_signature_expired_url_and_wrong_port_are_refused() {
    let lab = Lab::start().await;
    let now = SystemTime::now();
    let good = presign(&target(&lab, 22), &credentials(), "us-east-1", now).unwrap();

    // One character of the signature changed.
    let last = good.chars().last().unwrap();
    let tampered = format!("{}{}", &good[..good.len() - 1], if last == '0' { '1' } else { '0' });
    assert_eq!(refusal(&lab, &tampered).await.0, 403);

    // Signed two minutes ago: past the 60 s expiry.
    let old = now - Duration::from_secs(120);
    let expired = presign(&target(&lab, 22), &credentials(), "us-east-1", old).unwrap();
    assert_eq!(refusal(&lab, &expired).await.0, 403);

    // The service only tunnels to ports 22 and 3389.
    let wrong_port = presign(&target(&lab, 2222), &credentials(), "us-east-1", now).unwrap();
    assert_eq!(refusal(&lab, &wrong_port).await.0, 400);

    // Signed for another region: the credential scope does not match.
    let wrong_scope = presign(&target(&lab, 22), &credentials(), "eu-west-1", now).unwrap();
    assert_eq!(refusal(&lab, &wrong_scope).await.0, 403);

    // Signed for the FIPS name but sent to the other name: the host does not match.
    let mut fips = target(&lab, 22);
    fips.dns_name = lab.standin.eice_fips_dns_name().parse().unwrap();
    let wrong_host = presign(&fips, &credentials(), "us-east-1", now).unwrap();
    let wrong_host =
        wrong_host.replace(&lab.standin.eice_fips_dns_name(), &lab.standin.eice_dns_name());
    assert_eq!(refusal(&lab, &wrong_host).await.0, 403);

    // The good URL still works: the refusals were about the changes.
    assert!(connect(&lab, &good).await.is_ok());
}
