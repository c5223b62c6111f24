//! The EICE WebSocket: presigned upgrade, relay to a TCP echo server, rejections and fault knobs.

use eic_standin::{tcp_echo, Endpoint, Faults, Instance, StandIn, World, TYPICAL_ENDPOINT_ID};
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{protocol::frame::coding::CloseCode, Error, Message};
use tokio_tungstenite::WebSocketStream;

pub(crate) type Ws = WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

async fn standin() -> StandIn {
    let (echo, _) = tcp_echo().await.unwrap();
    let world = World::typical(echo)
        .instance(
            Instance::new("i-0aaaaaaaaaaaaaaa1", "10.0.0.9")
                .target(22, "127.0.0.1:1".parse().unwrap()),
        )
        .instance(
            Instance::new("i-0aaaaaaaaaaaaaaa2", "10.0.0.10").state("stopped").target(22, echo),
        )
        .endpoint(Endpoint::new("eice-0bbbbbbbbbbbbbbb1").state("create-in-progress"));
    StandIn::start(world).await.unwrap()
}

/// Connect over TLS (trusting the stand-in's CA) and upgrade with `url`, whose host is sent.
pub(crate) async fn connect(s: &StandIn, url: &str) -> Result<Ws, Error> {
    let tcp = TcpStream::connect(s.eice_addr()).await?;
    let tls = tokio_rustls::TlsConnector::from(s.rustls_client_config())
        .connect("localhost".try_into().unwrap(), tcp)
        .await?;
    Ok(tokio_tungstenite::client_async(url, tls).await?.0)
}

/// The HTTP refusal of an upgrade: (status, ErrorCode).
async fn refusal(s: &StandIn, url: &str) -> (u16, String) {
    match connect(s, url).await {
        Err(Error::Http(resp)) => {
            let body: serde_json::Value =
                serde_json::from_slice(resp.body().as_deref().unwrap_or_default()).unwrap();
            assert!(resp.headers().contains_key("x-amzn-requestid"));
            (resp.status().as_u16(), body["ErrorCode"].as_str().unwrap().to_string())
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("upgrade accepted: {url}"),
    }
}

async fn next_close(ws: &mut Ws) -> (Vec<u8>, Option<(u16, String)>) {
    let mut data = Vec::new();
    while let Some(msg) = ws.next().await {
        match msg.unwrap() {
            Message::Binary(b) => data.extend_from_slice(&b),
            Message::Close(f) => {
                return (data, f.map(|f| (u16::from(f.code), f.reason.to_string())))
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    (data, None)
}

#[tokio::test]
async fn relays_to_the_target_and_closes_normally() {
    let s = standin().await;
    let url = s.tunnel_url(TYPICAL_ENDPOINT_ID, "10.0.0.5", 22, None);
    let mut ws = connect(&s, &url).await.unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    ws.send(Message::binary(big.clone())).await.unwrap();
    let mut got = Vec::new();
    while got.len() < big.len() {
        match ws.next().await.unwrap().unwrap() {
            Message::Binary(b) => got.extend_from_slice(&b),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, big);
    ws.close(None).await.unwrap();
    assert!(matches!(ws.next().await, Some(Ok(Message::Close(_))) | None));
    let call = &s.calls_of("OpenTunnel")[0];
    assert_eq!(call.status, 101);
    assert_eq!(call.params["remotePort"], "22");
    assert_eq!(call.access_key_id.as_deref(), Some("AKIDSTANDIN"));
    assert_eq!(call.host.as_deref(), Some(s.eice_dns_name().as_str()));
    assert_eq!(call.raw_query.as_deref(), url.split_once('?').map(|q| q.1));
}

#[tokio::test]
async fn rejections() {
    let s = standin().await;
    let ok = s.tunnel_url(TYPICAL_ENDPOINT_ID, "10.0.0.5", 22, None);
    // Signed for localhost:PORT but sent with Host 127.0.0.1:PORT.
    let other_host = ok.replace("localhost", "127.0.0.1");
    assert_eq!(refusal(&s, &other_host).await, (403, "SignatureDoesNotMatch".into()));
    let tampered = format!("{}0", &ok[..ok.len() - 1]);
    let tampered = if tampered == ok { format!("{}1", &ok[..ok.len() - 1]) } else { tampered };
    assert_eq!(refusal(&s, &tampered).await, (403, "SignatureDoesNotMatch".into()));
    s.world().credentials[0].access_key_id = "AKIDOTHER".into();
    assert_eq!(refusal(&s, &ok).await, (403, "InvalidClientTokenId".into()));
    s.world().credentials[0].access_key_id = "AKIDSTANDIN".into();

    let cases = [
        (s.tunnel_url("eice-0eeeeeeeeeeeeeee1", "10.0.0.5", 22, None), 404, "ResourceNotFound"),
        (s.tunnel_url("eice-0bbbbbbbbbbbbbbb1", "10.0.0.5", 22, None), 400, "InvalidParameter"),
        (s.tunnel_url(TYPICAL_ENDPOINT_ID, "10.0.0.5", 80, None), 400, "InvalidParameter"),
        (s.tunnel_url(TYPICAL_ENDPOINT_ID, "10.9.9.9", 22, None), 400, "InvalidParameter"),
        (s.tunnel_url(TYPICAL_ENDPOINT_ID, "10.0.0.5", 22, Some(3601)), 400, "InvalidParameter"),
    ];
    for (url, status, code) in cases {
        assert_eq!(refusal(&s, &url).await, (status, code.to_string()), "{url}");
    }
    s.world().faults.upgrade_error = Some((429, "ThrottlingException".into(), "slow down".into()));
    assert_eq!(refusal(&s, &ok).await, (429, "ThrottlingException".into()));
    s.world().faults.upgrade_error = None;

    // The FIPS name reaches the same server and is accepted when it is what was signed.
    let fips_url = {
        let mut w = s.world();
        let e = w.endpoint_mut(TYPICAL_ENDPOINT_ID).unwrap();
        e.dns_name = Some(s.eice_fips_dns_name());
        drop(w);
        let url = s.tunnel_url(TYPICAL_ENDPOINT_ID, "10.0.0.5", 22, None);
        s.world().endpoint_mut(TYPICAL_ENDPOINT_ID).unwrap().dns_name = None;
        url
    };
    assert!(fips_url.starts_with("wss://127.0.0.1:"));
    connect(&s, &fips_url).await.unwrap();
    let statuses: Vec<u16> = s.calls_of("OpenTunnel").iter().map(|c| c.status).collect();
    assert_eq!(statuses, [403, 403, 403, 404, 400, 400, 400, 400, 429, 101]);
}

#[tokio::test]
async fn unreachable_or_stopped_target_closes_with_1011() {
    let s = standin().await;
    for ip in ["10.0.0.9", "10.0.0.10"] {
        let mut ws = connect(&s, &s.tunnel_url(TYPICAL_ENDPOINT_ID, ip, 22, None)).await.unwrap();
        let (_, close) = next_close(&mut ws).await;
        assert_eq!(close, Some((1011, "Unable to connect to target instance".into())));
    }
}

#[tokio::test]
async fn max_tunnel_duration_is_enforced() {
    let s = standin().await;
    let t = Instant::now();
    let mut ws =
        connect(&s, &s.tunnel_url(TYPICAL_ENDPOINT_ID, "10.0.0.5", 22, Some(1))).await.unwrap();
    let (_, close) = next_close(&mut ws).await;
    assert_eq!(close, Some((1008, "Connection closed: maximum tunnel duration exceeded".into())));
    assert!(t.elapsed() >= Duration::from_millis(900), "{:?}", t.elapsed());
}

#[tokio::test]
async fn close_and_text_faults_fire_at_exact_byte_counts() {
    let s = standin().await;
    s.world().faults = Faults {
        close_after: Some((5, 4000, "bye".into())),
        text_frame_after: Some(3),
        ..Faults::default()
    };
    let mut ws =
        connect(&s, &s.tunnel_url(TYPICAL_ENDPOINT_ID, "10.0.0.5", 22, None)).await.unwrap();
    ws.send(Message::binary(b"0123456789".to_vec())).await.unwrap();
    let mut data = Vec::new();
    let mut text_at = None;
    let close = loop {
        match ws.next().await.unwrap().unwrap() {
            Message::Binary(b) => data.extend_from_slice(&b),
            Message::Text(_) => text_at = Some(data.len()),
            Message::Close(f) => break f.unwrap(),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(data, b"01234");
    assert_eq!(text_at, Some(3));
    assert_eq!(close.code, CloseCode::from(4000));
    assert_eq!(close.reason.as_str(), "bye");

    s.world().faults = Faults { close_after: Some((0, 1011, "now".into())), ..Faults::default() };
    let mut ws =
        connect(&s, &s.tunnel_url(TYPICAL_ENDPOINT_ID, "10.0.0.5", 22, None)).await.unwrap();
    assert_eq!(next_close(&mut ws).await, (vec![], Some((1011, "now".into()))));
}

#[tokio::test]
async fn reset_garbage_oversized_and_hang() {
    let s = standin().await;
    let url = s.tunnel_url(TYPICAL_ENDPOINT_ID, "10.0.0.5", 22, None);

    s.world().faults.reset_after = Some(0);
    assert!(connect(&s, &url).await.is_err());

    s.world().faults.reset_after = Some(4);
    let mut ws = connect(&s, &url).await.unwrap();
    ws.send(Message::binary(b"abcdefgh".to_vec())).await.unwrap();
    let mut data = Vec::new();
    let err = loop {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => data.extend_from_slice(&b),
            Some(Ok(other)) => panic!("unexpected {other:?}"),
            Some(Err(e)) => break e,
            None => panic!("clean end instead of a reset"),
        }
    };
    assert_eq!(data, b"abcd");
    assert!(matches!(err, Error::Io(_) | Error::Protocol(_)), "{err:?}");

    s.world().faults.reset_after = None;
    s.world().faults.random_garbage_after_upgrade = Some(7);
    let mut ws = connect(&s, &url).await.unwrap();
    assert!(matches!(ws.next().await, Some(Err(_))));

    s.world().faults.random_garbage_after_upgrade = None;
    s.world().faults.oversized_frame = true;
    let mut ws = connect(&s, &url).await.unwrap();
    assert!(matches!(ws.next().await, Some(Err(Error::Capacity(_)))));

    s.world().faults.oversized_frame = false;
    s.world().faults.upgrade_hang = true;
    let hang = tokio::time::timeout(Duration::from_millis(300), connect(&s, &url)).await;
    assert!(hang.is_err(), "the upgrade was answered");
}
