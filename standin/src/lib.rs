//! A local stand-in for EC2, EC2 Instance Connect and an EICE WebSocket endpoint, for eic's tests.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use eic_standin::{StandIn, World};
//! let (standin, sshd) = StandIn::with_sshd().await?;
//! // run `eic` with `standin.env()` ...
//! standin.world().instance_mut("i-0123456789abcdef0").unwrap().state = "stopped".into();
//! assert_eq!(standin.count("SendSSHPublicKey"), 0);
//! # drop(sshd); Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod connect;
pub mod ec2;
pub mod eice;
pub mod serial;
pub mod sigv4;
#[cfg(unix)]
pub mod sshd;
pub mod world;

#[cfg(unix)]
pub use sshd::Sshd;
pub use world::{
    Call, Credential, Endpoint, Faults, Instance, SerialKey, World, DEFAULT_ACCESS_KEY_ID,
    DEFAULT_SECRET, FLEET_MAX, SERVICE_MAX_TUNNELS, TYPICAL_ENDPOINT_ID, TYPICAL_INSTANCE_ID,
};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use world::OwnNames;

/// State shared by the servers.
pub(crate) struct Shared {
    pub world: Mutex<World>,
    pub own: OwnNames,
    /// The API actions that have arrived so far (for `Faults::answer_together`).
    pub arrived: tokio::sync::watch::Sender<Vec<String>>,
    /// What clients sent on tunnels that were only drained (after a fault such as
    /// `raw_after_upgrade`), one entry per message: `pong PAYLOAD`, `close CODE`, `binary LEN`.
    pub drained: tokio::sync::watch::Sender<Vec<String>>,
    /// Tunnels open now (upgraded and not yet ended), for `Faults::max_tunnels`.
    pub live: std::sync::atomic::AtomicUsize,
    /// The most tunnels open at once since start: raised with `fetch_max` right after each
    /// increment of `live`.
    pub peak: std::sync::atomic::AtomicUsize,
    /// Bumped after each tunnel is counted out of `live` (for [`StandIn::wait_live_tunnels`]).
    pub ended: tokio::sync::watch::Sender<u64>,
    /// Bumped by [`StandIn::kill_tunnels`]: every live tunnel ends at once, as a network
    /// failure ends it (no close frame).
    pub kill: tokio::sync::watch::Sender<u64>,
}

/// Holds a call named in `Faults::answer_together` until all of those actions have arrived,
/// for at most [`TOGETHER_WAIT`]; a client that sends them one after another waits that long.
async fn answer_together(shared: &Shared, action: &str) {
    let together = shared.lock().faults.answer_together.clone();
    if !together.iter().any(|a| a == action) {
        return;
    }
    shared.arrived.send_modify(|arrived| arrived.push(action.to_string()));
    let mut arrived = shared.arrived.subscribe();
    let all = |arrived: &Vec<String>| together.iter().all(|a| arrived.contains(a));
    let _ = tokio::time::timeout(TOGETHER_WAIT, arrived.wait_for(all)).await;
}

/// How long `Faults::answer_together` holds a call at most.
pub const TOGETHER_WAIT: Duration = Duration::from_secs(5);

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An HTTP answer built by a handler.
pub(crate) struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    pub error_code: Option<String>,
}

impl Reply {
    pub fn new(status: u16, content_type: &'static str, body: String) -> Self {
        Reply { status, content_type, body, error_code: None }
    }
}

/// A fresh UUID-shaped request id.
pub(crate) fn request_id() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t =
        SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let x = splitmix(t ^ n.rotate_left(32));
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        x >> 32,
        (x >> 16) & 0xffff,
        x & 0xfff,
        n & 0xfff,
        splitmix(x) & 0xffff_ffff_ffff
    )
}

/// Deterministic pseudo-random bytes (xorshift64), for transfers whose failures must be
/// reproducible (tests and benchmarks).
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A small deterministic PRNG step (splitmix64).
pub(crate) fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The running stand-in: an HTTP API server and a TLS WebSocket server on 127.0.0.1.
/// Dropping it stops both servers and their connections.
pub struct StandIn {
    shared: Arc<Shared>,
    api_addr: SocketAddr,
    eice_addr: SocketAddr,
    serial_addr: SocketAddr,
    serial_host_keys: Vec<(String, String)>,
    ca_der: Vec<u8>,
    ca_pem_path: PathBuf,
    config_path: PathBuf,
    credentials_path: PathBuf,
    cert_dir: PathBuf,
    tasks: Vec<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl StandIn {
    /// Bind 127.0.0.1:0 twice (API, EICE), make a throw-away CA and serve `world`.
    pub async fn start(world: World) -> anyhow::Result<StandIn> {
        let api = TcpListener::bind("127.0.0.1:0").await?;
        let eice = TcpListener::bind("127.0.0.1:0").await?;
        let serial = TcpListener::bind("127.0.0.1:0").await?;
        let (api_addr, eice_addr) = (api.local_addr()?, eice.local_addr()?);
        let serial_addr = serial.local_addr()?;
        let serial_config = serial::config()?;
        let serial_host_keys = serial::host_keys(&serial_config)?;
        let dir = tempfile::Builder::new().prefix("eic-standin").tempdir()?;
        let tls = eice::tls_material()?;
        let ca_pem_path = dir.path().join("ca.pem");
        std::fs::write(&ca_pem_path, &tls.ca_pem)?;
        let config_path = dir.path().join("config");
        let credentials_path = dir.path().join("credentials");
        std::fs::write(&config_path, "")?;
        std::fs::write(&credentials_path, "")?;
        let cert_dir = dir.path().join("certs");
        std::fs::create_dir(&cert_dir)?;
        let shared = Arc::new(Shared {
            world: Mutex::new(world),
            own: OwnNames {
                dns: format!("localhost:{}", eice_addr.port()),
                fips: format!("127.0.0.1:{}", eice_addr.port()),
            },
            arrived: tokio::sync::watch::Sender::new(Vec::new()),
            drained: tokio::sync::watch::Sender::new(Vec::new()),
            live: std::sync::atomic::AtomicUsize::new(0),
            peak: std::sync::atomic::AtomicUsize::new(0),
            ended: tokio::sync::watch::Sender::new(0),
            kill: tokio::sync::watch::Sender::new(0),
        });
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config);
        let tasks = vec![
            tokio::spawn(serve_api(api, shared.clone())),
            tokio::spawn(eice::serve(eice, acceptor, shared.clone())),
            tokio::spawn(serial::serve(serial, shared.clone(), serial_config)),
        ];
        Ok(StandIn {
            shared,
            api_addr,
            eice_addr,
            serial_addr,
            serial_host_keys,
            ca_der: tls.ca_der,
            ca_pem_path,
            config_path,
            credentials_path,
            cert_dir,
            tasks,
            _dir: dir,
        })
    }

    #[cfg(unix)]
    /// Start an [`Sshd`] and a stand-in serving [`World::typical`] with port 22 of
    /// `i-0123456789abcdef0` relayed to that sshd and keys written to its AuthorizedKeysFile dir.
    pub async fn with_sshd() -> anyhow::Result<(StandIn, Sshd)> {
        let sshd = tokio::task::spawn_blocking(Sshd::start).await??;
        let world = World::typical(sshd.addr()).authorized_keys_dir(sshd.authorized_keys_dir());
        Ok((StandIn::start(world).await?, sshd))
    }

    #[cfg(unix)]
    /// Start an [`Sshd`] and a stand-in serving [`World::fleet`]`(n, sshd)`: port 22 of every
    /// instance relayed to that one sshd, keys written to its AuthorizedKeysFile dir (a key
    /// pushed for any instance logs its user in on all: see [`World::authorized_keys_dir`]),
    /// and at most [`SERVICE_MAX_TUNNELS`] (20) tunnels open at once, as the real endpoint
    /// allows (`Faults::max_tunnels`; one more is refused with HTTP 429).
    pub async fn with_fleet(n: usize) -> anyhow::Result<(StandIn, Sshd)> {
        let sshd = tokio::task::spawn_blocking(Sshd::start).await??;
        let mut world =
            World::fleet(n, sshd.addr()).authorized_keys_dir(sshd.authorized_keys_dir());
        world.faults.max_tunnels = Some(SERVICE_MAX_TUNNELS);
        Ok((StandIn::start(world).await?, sshd))
    }

    /// `http://127.0.0.1:PORT`, for AWS_ENDPOINT_URL.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api_addr)
    }
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }
    pub fn eice_addr(&self) -> SocketAddr {
        self.eice_addr
    }
    pub fn eice_port(&self) -> u16 {
        self.eice_addr.port()
    }
    /// `localhost:PORT`: the DnsName of endpoints whose `dns_name` is `None`.
    pub fn eice_dns_name(&self) -> String {
        self.shared.own.dns.clone()
    }
    /// `127.0.0.1:PORT`: the FipsDnsName of endpoints whose `fips_dns_name` is `None`.
    pub fn eice_fips_dns_name(&self) -> String {
        self.shared.own.fips.clone()
    }
    /// The serial console's SSH server ([`serial`]).
    pub fn serial_console_addr(&self) -> SocketAddr {
        self.serial_addr
    }
    /// `SHA256:...` of the serial console server's Ed25519 host key (made fresh for each
    /// stand-in).
    pub fn serial_console_fingerprint(&self) -> &str {
        &self.serial_host_keys[0].0
    }
    /// The serial console server's Ed25519 host key, `ssh-ed25519 AAAA...`.
    pub fn serial_console_host_key(&self) -> &str {
        &self.serial_host_keys[0].1
    }
    /// Each of the serial console server's host keys (Ed25519, then ECDSA P-256): its
    /// fingerprint and its line.
    pub fn serial_console_host_keys(&self) -> &[(String, String)] {
        &self.serial_host_keys
    }
    /// eic's documented override, pointing `eic serial-console` at this stand-in's serial
    /// console and its host key: `EIC_SERIAL_CONSOLE_ENDPOINT` and
    /// `EIC_SERIAL_CONSOLE_FINGERPRINT`.
    pub fn serial_console_env(&self) -> Vec<(String, String)> {
        vec![
            ("EIC_SERIAL_CONSOLE_ENDPOINT".into(), self.serial_addr.to_string()),
            ("EIC_SERIAL_CONSOLE_FINGERPRINT".into(), self.serial_console_fingerprint().into()),
        ]
    }
    /// PEM of the throw-away CA that signed the WebSocket server's certificate.
    pub fn ca_pem_path(&self) -> &Path {
        &self.ca_pem_path
    }
    /// DER of that CA.
    pub fn ca_der(&self) -> &[u8] {
        &self.ca_der
    }
    /// A rustls client config trusting only the stand-in's CA.
    pub fn rustls_client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(rustls::pki_types::CertificateDer::from(self.ca_der.clone())).expect("own CA");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("TLS versions")
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    /// The environment a child `eic` needs: endpoint, the world's first credential, region,
    /// CA bundle (AWS_CA_BUNDLE, SSL_CERT_FILE, and an empty SSL_CERT_DIR), no IMDS and empty
    /// AWS config/credentials files so the user's real profile is never read.
    pub fn env(&self) -> Vec<(String, String)> {
        let w = self.world();
        let cred = w.credentials.first().cloned();
        let path = |p: &Path| p.display().to_string();
        let mut env = vec![("AWS_ENDPOINT_URL".to_string(), self.api_url())];
        if let Some(c) = cred {
            env.push(("AWS_ACCESS_KEY_ID".into(), c.access_key_id));
            env.push(("AWS_SECRET_ACCESS_KEY".into(), c.secret_access_key));
            if let Some(t) = c.session_token {
                env.push(("AWS_SESSION_TOKEN".into(), t));
            }
        }
        env.extend([
            ("AWS_REGION".to_string(), w.region.clone()),
            ("AWS_CA_BUNDLE".into(), path(&self.ca_pem_path)),
            ("SSL_CERT_FILE".into(), path(&self.ca_pem_path)),
            ("SSL_CERT_DIR".into(), path(&self.cert_dir)),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
            ("AWS_CONFIG_FILE".into(), path(&self.config_path)),
            ("AWS_SHARED_CREDENTIALS_FILE".into(), path(&self.credentials_path)),
        ]);
        env
    }

    /// Lock the world to read or change it. Do not hold the guard across an `.await`.
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.shared.lock()
    }
    /// Every call served so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.world().calls.clone()
    }
    /// The calls of one action (`DescribeInstances`, `OpenTunnel`, ...).
    pub fn calls_of(&self, action: &str) -> Vec<Call> {
        self.world().calls.iter().filter(|c| c.action == action).cloned().collect()
    }
    pub fn count(&self, action: &str) -> usize {
        self.world().calls.iter().filter(|c| c.action == action).count()
    }
    /// Tunnels open now.
    pub fn live_tunnels(&self) -> usize {
        self.shared.live.load(std::sync::atomic::Ordering::SeqCst)
    }
    /// The most tunnels that were open at the same moment since the stand-in started (refused
    /// upgrades, such as the 429 of `Faults::max_tunnels`, never count).
    pub fn peak_tunnels(&self) -> usize {
        self.shared.peak.load(std::sync::atomic::Ordering::SeqCst)
    }
    /// Waits until at most `at_most` tunnels are open (the stand-in counts a tunnel out only
    /// once its connection has ended, a little after the client sees the end), or `limit` has
    /// passed; returns the number open then.
    pub async fn wait_live_tunnels(&self, at_most: usize, limit: Duration) -> usize {
        let mut ended = self.shared.ended.subscribe();
        let _ = tokio::time::timeout(limit, async {
            while self.live_tunnels() > at_most {
                if ended.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        self.live_tunnels()
    }
    /// Ends every live tunnel at once, without a close frame (as a network failure does).
    pub fn kill_tunnels(&self) {
        self.shared.kill.send_modify(|generation| *generation += 1);
    }
    /// What clients sent on drained tunnels (see `Shared::drained`), once there are `n`
    /// entries or `limit` has passed.
    pub async fn drained(&self, n: usize, limit: Duration) -> Vec<String> {
        let mut seen = self.shared.drained.subscribe();
        let _ = tokio::time::timeout(limit, seen.wait_for(|d| d.len() >= n)).await;
        let drained = seen.borrow().clone();
        drained
    }
    pub fn clear_calls(&self) {
        self.world().calls.clear();
    }

    /// A presigned `wss://` openTunnel URL for `endpoint_id`'s DnsName (the stand-in's own when
    /// the endpoint is unknown), signed now with the world's first credential: what eic should
    /// produce.
    pub fn tunnel_url(
        &self,
        endpoint_id: &str,
        private_ip: &str,
        port: u16,
        max_tunnel_duration: Option<u32>,
    ) -> String {
        let (host, cred, region) = {
            let w = self.world();
            let host = w
                .find_endpoint(endpoint_id)
                .map(|e| e.names(&self.shared.own).0)
                .unwrap_or_else(|| self.shared.own.dns.clone());
            (host, w.credentials[0].clone(), w.region.clone())
        };
        let port = port.to_string();
        let dur = max_tunnel_duration.map(|d| d.to_string());
        let mut params = vec![
            ("instanceConnectEndpointId", endpoint_id),
            ("remotePort", port.as_str()),
            ("privateIpAddress", private_ip),
        ];
        if let Some(d) = &dur {
            params.push(("maxTunnelDuration", d));
        }
        let query = sigv4::presign_query(
            &host,
            "/openTunnel",
            &params,
            &cred.access_key_id,
            &cred.secret_access_key,
            cred.session_token.as_deref(),
            &region,
            SystemTime::now(),
        );
        format!("wss://{host}/openTunnel?{query}")
    }
}

/// Decode an `application/x-www-form-urlencoded` string.
fn form_decode(raw: &str) -> BTreeMap<String, String> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let d = |s: &str| sigv4::percent_decode(&s.replace('+', " "));
            Some((d(k)?, d(v)?))
        })
        .collect()
}

/// The access key id in a SigV4 `Authorization` header.
fn auth_access_key(header: &str) -> Option<String> {
    let cred = header.split("Credential=").nth(1)?;
    Some(cred.split('/').next()?.trim().to_string())
}

async fn serve_api(listener: TcpListener, shared: Arc<Shared>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                let _ = tcp.set_nodelay(true);
                let shared = shared.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| api(req, shared.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
            Some(_) = conns.join_next() => {}
        }
    }
}

async fn api(
    req: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let latency = shared.lock().faults.api_latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let header =
        |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let target = header("x-amz-target");
    let host = header("host");
    let user_agent = header("user-agent");
    let token = header("x-amz-security-token");
    let access_key = header("authorization").and_then(|a| auth_access_key(&a));
    let query = req.uri().query().unwrap_or("").to_string();
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let rid = request_id();
    // The action and its parameters: JSON fields for EC2 Instance Connect, the form (query and
    // body) for EC2.
    let (action, params) = match &target {
        Some(target) => {
            (target.rsplit('.').next().unwrap_or("").to_string(), connect::fields(&body))
        }
        None => {
            let mut params = form_decode(&query);
            params.extend(form_decode(&String::from_utf8_lossy(&body)));
            (params.get("Action").cloned().unwrap_or_default(), params)
        }
    };
    answer_together(&shared, &action).await;

    let mut world = shared.lock();
    let known = access_key.as_deref().and_then(|ak| world.lookup(ak));
    let authentic = known.as_ref().is_some_and(|(_, t)| t.as_deref() == token.as_deref());
    let reply = if let Some(target) = target {
        if target != connect::TARGET && target != connect::SERIAL_TARGET {
            connect::error(400, "UnknownOperationException", &format!("Unknown operation {target}"))
        } else if access_key.is_none() {
            connect::error(
                400,
                "MissingAuthenticationTokenException",
                "Missing Authentication Token",
            )
        } else if !authentic {
            connect::error(
                400,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
        } else if target == connect::SERIAL_TARGET {
            connect::handle_serial(&mut world, &body, &rid)
        } else {
            connect::handle(&mut world, &body, &rid)
        }
    } else if !authentic {
        ec2::error(
            401,
            "AuthFailure",
            "AWS was not able to validate the provided access credentials",
            &rid,
        )
    } else {
        ec2::handle(&mut world, &shared.own, &params, &rid)
    };
    world.calls.push(Call {
        action,
        params,
        access_key_id: access_key,
        host,
        user_agent,
        raw_query: None,
        status: reply.status,
        error_code: reply.error_code.clone(),
    });
    drop(world);

    let mut resp = Response::builder()
        .status(reply.status)
        .header("content-type", reply.content_type)
        .header("x-amzn-RequestId", &rid);
    if let Some(code) = reply.error_code.as_deref().filter(|_| reply.content_type.contains("json"))
    {
        resp = resp.header("x-amzn-ErrorType", code);
    }
    Ok(resp.body(Full::new(Bytes::from(reply.body))).expect("valid response"))
}

/// A plain TCP relay on 127.0.0.1:0 piping every connection to `target` (a benchmark baseline).
/// Abort the handle to stop it.
pub async fn tcp_relay(target: SocketAddr) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let handle = tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((mut a, _)) = accepted else { continue };
                    conns.spawn(async move {
                        if let Ok(mut b) = TcpStream::connect(target).await {
                            let _ = a.set_nodelay(true);
                            let _ = b.set_nodelay(true);
                            let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                        }
                    });
                }
                Some(_) = conns.join_next() => {}
            }
        }
    });
    Ok((addr, handle))
}

/// A TCP echo server on 127.0.0.1:0 (a tunnel target for tests). Abort the handle to stop it.
pub async fn tcp_echo() -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await.context("binding the echo server")?;
    let addr = listener.local_addr()?;
    let handle = tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((tcp, _)) = accepted else { continue };
                    conns.spawn(async move {
                        let (mut r, mut w) = tcp.into_split();
                        let _ = tokio::io::copy(&mut r, &mut w).await;
                        use tokio::io::AsyncWriteExt;
                        let _ = w.shutdown().await;
                    });
                }
                Some(_) = conns.join_next() => {}
            }
        }
    });
    Ok((addr, handle))
}
