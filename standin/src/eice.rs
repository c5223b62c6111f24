//! The EICE `openTunnel` TLS WebSocket: presign verification, checks, TCP relay and fault injection.

use crate::sigv4::{self, Rejection};
use crate::world::{Call, Faults};
use crate::{request_id, splitmix, Shared};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{http, Message};
use tokio_tungstenite::WebSocketStream;

/// Close reason when maxTunnelDuration elapses (code 1008).
pub const DURATION_EXCEEDED: &str = "Connection closed: maximum tunnel duration exceeded";
/// Close reason when the target cannot be reached (code 1011).
pub const CONNECT_FAILED: &str = "Unable to connect to target instance";
/// Relay read buffer.
const BUF: usize = 64 * 1024;

type Ws = WebSocketStream<TlsStream<TcpStream>>;

pub(crate) struct TlsMaterial {
    pub ca_pem: String,
    pub ca_der: Vec<u8>,
    pub server_config: Arc<rustls::ServerConfig>,
}

/// A throw-away CA and a server certificate for localhost, 127.0.0.1 and ::1.
pub(crate) fn tls_material() -> anyhow::Result<TlsMaterial> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name.push(DnType::CommonName, "eic-standin throw-away CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate()?;
    let mut params =
        CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into(), "::1".into()])?;
    params.distinguished_name.push(DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &issuer)?;

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone(), ca_cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )?;
    Ok(TlsMaterial {
        ca_pem: ca_cert.pem(),
        ca_der: ca_cert.der().to_vec(),
        server_config: Arc::new(server_config),
    })
}

pub(crate) async fn serve(listener: TcpListener, acceptor: TlsAcceptor, shared: Arc<Shared>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                conns.spawn(connection(tcp, acceptor.clone(), shared.clone()));
            }
            Some(_) = conns.join_next() => {}
        }
    }
}

/// What an accepted upgrade leads to.
struct Plan {
    target: Option<SocketAddr>,
    max_duration: Option<Duration>,
}

async fn connection(tcp: TcpStream, acceptor: TlsAcceptor, shared: Arc<Shared>) {
    let faults = shared.lock().faults.clone();
    if faults.reset_after.is_some() {
        // Linger 0 turns the eventual drop into a RST.
        let _ = tcp.set_zero_linger();
        if faults.reset_after == Some(0) {
            return;
        }
    }
    let _ = tcp.set_nodelay(true);
    let Ok(mut tls) = acceptor.accept(tcp).await else {
        return;
    };
    if !faults.api_latency.is_zero() {
        tokio::time::sleep(faults.api_latency).await;
    }
    if faults.upgrade_hang {
        let mut sink = [0u8; 4096];
        while matches!(tls.read(&mut sink).await, Ok(n) if n > 0) {}
        return;
    }
    let mut plan = None;
    // The callback's signature is tungstenite's.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let (outcome, call) = authorize(&shared, req);
        let status = match &outcome {
            Ok(_) => 101,
            Err(r) => r.status,
        };
        shared.lock().calls.push(Call {
            status,
            error_code: outcome.as_ref().err().map(|r| r.code.to_string()),
            ..call
        });
        match outcome {
            Ok(p) => {
                plan = Some(p);
                Ok(resp)
            }
            Err(r) => Err(error_response(&r)),
        }
    };
    // The endpoint's own cost lands on the benchmark's machine: read one TLS record at a time
    // (tungstenite zero-fills the whole read buffer before each read).
    let config = WebSocketConfig::default().read_buffer_size(16 << 10);
    let accepted =
        tokio_tungstenite::accept_hdr_async_with_config(tls, callback, Some(config)).await;
    // `authorize` counted the tunnel in; it is counted out when this connection ends.
    let _live = plan.is_some().then(|| Live(shared.clone()));
    let Ok(mut ws) = accepted else {
        return;
    };
    let Some(plan) = plan else { return };

    if let Some(seed) = faults.random_garbage_after_upgrade {
        let mut garbage = Vec::with_capacity(4096);
        let mut x = seed;
        while garbage.len() < 4096 {
            x = splitmix(x);
            garbage.extend_from_slice(&x.to_le_bytes());
        }
        let raw = ws.get_mut();
        let _ = raw.write_all(&garbage).await;
        let _ = raw.flush().await;
        return drain(ws, &shared).await;
    }
    if let Some(bytes) = &faults.raw_after_upgrade {
        let raw = ws.get_mut();
        let _ = raw.write_all(bytes).await;
        let _ = raw.flush().await;
        return drain(ws, &shared).await;
    }
    if faults.oversized_frame {
        let mut header = vec![0x82u8, 127];
        header.extend_from_slice(&(32u64 << 20).to_be_bytes());
        header.extend_from_slice(&[0u8; 1024]);
        let raw = ws.get_mut();
        let _ = raw.write_all(&header).await;
        let _ = raw.flush().await;
        return drain(ws, &shared).await;
    }
    let target = match plan.target {
        Some(addr) => tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
            .await
            .ok()
            .and_then(Result::ok),
        None => None,
    };
    let Some(target) = target else {
        let _ = ws.send(close(1011, CONNECT_FAILED)).await;
        return drain(ws, &shared).await;
    };
    let _ = target.set_nodelay(true);
    relay(ws, target, faults, plan.max_duration, shared.kill.subscribe()).await;
}

/// One live tunnel, counted while it lasts.
struct Live(Arc<Shared>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        self.0.ended.send_modify(|n| *n += 1);
    }
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame { code: CloseCode::from(code), reason: reason.into() }))
}

/// Read client frames until the client goes away, at most a minute, noting each in
/// `Shared::drained`.
async fn drain(mut ws: Ws, shared: &Shared) {
    let _ = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(Ok(message)) = ws.next().await {
            let seen = match &message {
                Message::Pong(p) => format!("pong {}", String::from_utf8_lossy(p)),
                Message::Close(f) => {
                    format!("close {}", f.as_ref().map_or(0, |f| u16::from(f.code)))
                }
                Message::Binary(b) => format!("binary {}", b.len()),
                Message::Ping(_) => "ping".into(),
                Message::Text(_) => "text".into(),
                Message::Frame(_) => "frame".into(),
            };
            shared.drained.send_modify(|d| d.push(seen));
        }
    })
    .await;
    shutdown(ws).await;
}

/// Reads at most `limit` bytes into spare capacity and hands them out without a copy.
async fn read_chunk(
    rd: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
    limit: usize,
) -> std::io::Result<Option<Bytes>> {
    buf.reserve(BUF);
    let n = rd.read_buf(&mut (&mut *buf).limit(limit)).await?;
    Ok((n > 0).then(|| buf.split().freeze()))
}

enum S2c {
    /// The stand-in sent a close frame; wait for the client's reply.
    Closed,
    /// Reset the connection now.
    Reset,
}

async fn relay(
    ws: Ws,
    target: TcpStream,
    faults: Faults,
    max_duration: Option<Duration>,
    mut kill: tokio::sync::watch::Receiver<u64>,
) {
    let (mut sink, mut stream) = ws.split();
    let (mut rd, mut wr) = target.into_split();

    let c2s = async {
        while let Some(msg) = stream.next().await {
            match msg {
                Ok(Message::Binary(b)) => {
                    if wr.write_all(&b).await.is_err() {
                        break;
                    }
                }
                Ok(Message::Close(_)) => {
                    // tungstenite queued the close reply: one more read flushes it.
                    let _ = wr.shutdown().await;
                    let _ = stream.next().await;
                    return;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let _ = wr.shutdown().await;
    };

    let s2c = async {
        let deadline =
            tokio::time::sleep(max_duration.unwrap_or(Duration::from_secs(u64::MAX / 4)));
        tokio::pin!(deadline);
        let mut buf = BytesMut::new();
        let mut sent = 0usize;
        let mut text_sent = false;
        loop {
            if let Some((n, code, reason)) = &faults.close_after {
                if sent >= *n {
                    let _ = sink.send(close(*code, reason)).await;
                    return S2c::Closed;
                }
            }
            if faults.reset_after.is_some_and(|n| sent >= n) {
                return S2c::Reset;
            }
            if !text_sent && faults.text_frame_after.is_some_and(|n| sent >= n) {
                text_sent = true;
                if sink.send(Message::text("stand-in: unexpected text frame")).await.is_err() {
                    return S2c::Closed;
                }
            }
            // Read no further than the next threshold so faults fire at an exact byte count.
            let thresholds = [
                faults.close_after.as_ref().map(|c| c.0),
                faults.reset_after,
                faults.text_frame_after.filter(|_| !text_sent),
            ];
            let limit = thresholds
                .iter()
                .flatten()
                .filter(|&&n| n > sent)
                .map(|n| n - sent)
                .min()
                .unwrap_or(BUF)
                .min(BUF);
            tokio::select! {
                read = read_chunk(&mut rd, &mut buf, limit) => match read {
                    Ok(Some(chunk)) => {
                        let n = chunk.len();
                        if sink.send(Message::Binary(chunk)).await.is_err() {
                            return S2c::Closed;
                        }
                        sent += n;
                    }
                    _ => {
                        let _ = sink.send(close(1000, "")).await;
                        return S2c::Closed;
                    }
                },
                _ = &mut deadline => {
                    let _ = sink.send(close(1008, DURATION_EXCEEDED)).await;
                    return S2c::Closed;
                }
                _ = kill.changed() => return S2c::Reset,
            }
        }
    };

    let reset = {
        tokio::pin!(c2s, s2c);
        tokio::select! {
            outcome = &mut s2c => match outcome {
                S2c::Reset => true,
                S2c::Closed => {
                    let _ = tokio::time::timeout(Duration::from_secs(10), &mut c2s).await;
                    false
                }
            },
            _ = &mut c2s => false,
        }
    };
    if reset {
        return; // linger 0 was set on accept: dropping sends a RST
    }
    if let Ok(ws) = sink.reunite(stream) {
        shutdown(ws).await;
    }
}

/// End TLS cleanly (close_notify, then FIN).
async fn shutdown(mut ws: Ws) {
    let _ = tokio::time::timeout(Duration::from_secs(5), ws.get_mut().shutdown()).await;
}

fn bad(status: u16, code: &str, message: impl Into<String>) -> Rejection {
    Rejection { status, code: code.into(), message: message.into() }
}

fn error_response(r: &Rejection) -> ErrorResponse {
    let body = serde_json::json!({ "ErrorCode": r.code, "Message": r.message }).to_string();
    http::Response::builder()
        .status(r.status)
        .header("content-type", "application/json")
        .header("x-amzn-RequestId", request_id())
        .body(Some(body))
        .expect("valid response")
}

/// Check one upgrade request; also returns the call to record.
fn authorize(shared: &Shared, req: &Request) -> (Result<Plan, Rejection>, Call) {
    let host = req.headers().get("host").and_then(|h| h.to_str().ok()).unwrap_or("").to_string();
    let raw_query = req.uri().query().unwrap_or("").to_string();
    let params: BTreeMap<String, String> =
        sigv4::parse_query(&raw_query).unwrap_or_default().into_iter().collect();
    let access_key_id =
        params.get("X-Amz-Credential").and_then(|c| c.split('/').next()).map(str::to_string);
    let user_agent =
        req.headers().get("user-agent").and_then(|h| h.to_str().ok()).map(str::to_string);
    let call = Call {
        action: "OpenTunnel".into(),
        params: params.clone(),
        access_key_id,
        host: Some(host.clone()),
        user_agent,
        raw_query: Some(raw_query.clone()),
        status: 0,
        error_code: None,
    };
    let world = shared.lock();
    let outcome = (|| {
        let live = &shared.live;
        if world.faults.max_tunnels.is_some_and(|max| live.load(Ordering::SeqCst) >= max) {
            let message = "Too many concurrent tunnels for this Instance Connect Endpoint";
            return Err(Rejection {
                status: 429,
                code: "TooManyRequests".into(),
                message: message.into(),
            });
        }
        if let Some((status, code, message)) = &world.faults.upgrade_error {
            return Err(Rejection {
                status: *status,
                code: code.clone(),
                message: message.clone(),
            });
        }
        if req.uri().path() != "/openTunnel" {
            return Err(bad(404, "NotFound", format!("No such path {}", req.uri().path())));
        }
        sigv4::verify_presigned(
            &host,
            req.uri().path(),
            &raw_query,
            |ak| world.lookup(ak),
            &world.region,
            SystemTime::now(),
        )?;
        let param = |name: &str| {
            params.get(name).ok_or_else(|| {
                bad(400, "InvalidParameter", format!("Missing required parameter {name}"))
            })
        };
        let eid = param("instanceConnectEndpointId")?;
        let endpoint = world.find_endpoint(eid).ok_or_else(|| {
            bad(404, "ResourceNotFound", format!("Instance Connect Endpoint {eid} not found"))
        })?;
        if !endpoint.usable() {
            return Err(bad(
                400,
                "InvalidParameter",
                format!("Instance Connect Endpoint {eid} is in state {}", endpoint.state),
            ));
        }
        let (dns, fips) = endpoint.names(&shared.own);
        if !(host.eq_ignore_ascii_case(&dns)
            || (!fips.is_empty() && host.eq_ignore_ascii_case(&fips)))
        {
            return Err(bad(
                400,
                "InvalidParameter",
                format!("Host {host} does not belong to Instance Connect Endpoint {eid}"),
            ));
        }
        let port: u16 = param("remotePort")?
            .parse()
            .ok()
            .filter(|p| [22, 3389].contains(p))
            .ok_or_else(|| bad(400, "InvalidParameter", "remotePort must be 22 or 3389"))?;
        let ip_text = param("privateIpAddress")?;
        let ip: IpAddr = ip_text.parse().map_err(|_| {
            bad(400, "InvalidParameter", format!("Invalid privateIpAddress {ip_text}"))
        })?;
        let same =
            |s: &Option<String>| s.as_deref().and_then(|s| s.parse::<IpAddr>().ok()) == Some(ip);
        let instance = world
            .instances
            .iter()
            .find(|i| i.vpc_id == endpoint.vpc_id && (same(&i.private_ip) || same(&i.ipv6)))
            .ok_or_else(|| {
                bad(
                    400,
                    "InvalidParameter",
                    format!("privateIpAddress {ip_text} is not in the VPC of {eid}"),
                )
            })?;
        let max_duration = match params.get("maxTunnelDuration") {
            None => None,
            Some(d) => Some(
                d.parse::<u64>()
                    .ok()
                    .filter(|d| (1..=3600).contains(d))
                    .map(Duration::from_secs)
                    .ok_or_else(|| {
                    bad(400, "InvalidParameter", "maxTunnelDuration must be between 1 and 3600")
                })?,
            ),
        };
        let target =
            (instance.state == "running").then(|| instance.targets.get(&port).copied()).flatten();
        Ok(Plan { target, max_duration })
    })();
    if outcome.is_ok() {
        // Counted in under the world's lock, so that the limit holds; `Live` counts it out.
        // Refusals (the 429 of `max_tunnels` included) are never counted.
        let now = shared.live.fetch_add(1, Ordering::SeqCst) + 1;
        shared.peak.fetch_max(now, Ordering::SeqCst);
    }
    (outcome, call)
}
