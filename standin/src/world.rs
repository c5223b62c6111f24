//! The simulated AWS account: credentials, instances, endpoints, fault knobs and the call record.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// An access key the stand-in accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// When set, requests signed with this key must carry exactly this token.
    pub session_token: Option<String>,
}

impl Credential {
    /// A long-term key (no session token).
    pub fn new(access_key_id: &str, secret_access_key: &str) -> Self {
        Credential {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: None,
        }
    }

    /// A temporary key that requires `token`.
    pub fn with_token(mut self, token: &str) -> Self {
        self.session_token = Some(token.into());
        self
    }
}

/// An EC2 instance.
#[derive(Clone, Debug)]
pub struct Instance {
    pub id: String,
    /// `pending`, `running`, `shutting-down`, `terminated`, `stopping` or `stopped`.
    pub state: String,
    pub private_ip: Option<String>,
    pub public_ip: Option<String>,
    pub ipv6: Option<String>,
    pub vpc_id: String,
    pub subnet_id: String,
    pub availability_zone: String,
    pub tags: Vec<(String, String)>,
    /// ISO 8601, e.g. `2024-01-01T00:00:00.000Z`.
    pub launch_time: String,
    /// Where the EICE relay really connects for a remote port (e.g. 22 -> the test sshd).
    pub targets: BTreeMap<u16, SocketAddr>,
}

impl Instance {
    /// A running instance in `vpc-1`/`subnet-1`/`us-east-1a` with the given private IPv4 address.
    pub fn new(id: &str, private_ip: &str) -> Self {
        Instance {
            id: id.into(),
            state: "running".into(),
            private_ip: Some(private_ip.into()),
            public_ip: None,
            ipv6: None,
            vpc_id: "vpc-1".into(),
            subnet_id: "subnet-1".into(),
            availability_zone: "us-east-1a".into(),
            tags: Vec::new(),
            launch_time: "2024-01-01T00:00:00.000Z".into(),
            targets: BTreeMap::new(),
        }
    }
    pub fn state(mut self, state: &str) -> Self {
        self.state = state.into();
        self
    }
    pub fn vpc(mut self, vpc_id: &str, subnet_id: &str) -> Self {
        self.vpc_id = vpc_id.into();
        self.subnet_id = subnet_id.into();
        self
    }
    pub fn az(mut self, az: &str) -> Self {
        self.availability_zone = az.into();
        self
    }
    pub fn no_private_ip(mut self) -> Self {
        self.private_ip = None;
        self
    }
    pub fn public_ip(mut self, ip: &str) -> Self {
        self.public_ip = Some(ip.into());
        self
    }
    pub fn ipv6(mut self, ip: &str) -> Self {
        self.ipv6 = Some(ip.into());
        self
    }
    pub fn tag(mut self, key: &str, value: &str) -> Self {
        self.tags.push((key.into(), value.into()));
        self
    }
    /// Where the relay connects when a tunnel asks for `port` on this instance.
    pub fn target(mut self, port: u16, addr: SocketAddr) -> Self {
        self.targets.insert(port, addr);
        self
    }
    /// The `Name` tag, if any.
    pub fn name(&self) -> Option<&str> {
        self.tags.iter().find(|(k, _)| k == "Name").map(|(_, v)| v.as_str())
    }
}

/// An EC2 Instance Connect Endpoint.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub id: String,
    /// `create-in-progress`, `create-complete`, `create-failed`, `delete-in-progress`,
    /// `delete-complete`, `delete-failed`, `update-in-progress`, `update-complete`, `update-failed`.
    pub state: String,
    pub vpc_id: String,
    pub subnet_id: String,
    pub availability_zone: String,
    /// `None`: the stand-in's own TLS server as `localhost:PORT`. `Some("")`: omitted.
    pub dns_name: Option<String>,
    /// `None`: the stand-in's own TLS server as `127.0.0.1:PORT`. `Some("")`: omitted.
    pub fips_dns_name: Option<String>,
    /// `PublicDnsNames.Dualstack` (`DnsName`, `FipsDnsName`), when the endpoint has them.
    pub dualstack: Option<(String, String)>,
}

impl Endpoint {
    /// A `create-complete` endpoint in `vpc-1`/`subnet-1` served by the stand-in itself.
    pub fn new(id: &str) -> Self {
        Endpoint {
            id: id.into(),
            state: "create-complete".into(),
            vpc_id: "vpc-1".into(),
            subnet_id: "subnet-1".into(),
            availability_zone: "us-east-1a".into(),
            dns_name: None,
            fips_dns_name: None,
            dualstack: None,
        }
    }
    pub fn state(mut self, state: &str) -> Self {
        self.state = state.into();
        self
    }
    pub fn vpc(mut self, vpc_id: &str, subnet_id: &str) -> Self {
        self.vpc_id = vpc_id.into();
        self.subnet_id = subnet_id.into();
        self
    }
    /// A fixed DnsName (e.g. one that does not resolve).
    pub fn dns(mut self, dns_name: &str) -> Self {
        self.dns_name = Some(dns_name.into());
        self
    }
    /// Answer without a FipsDnsName.
    pub fn no_fips(mut self) -> Self {
        self.fips_dns_name = Some(String::new());
        self
    }
    /// True for the states in which the real service opens tunnels.
    pub fn usable(&self) -> bool {
        matches!(
            self.state.as_str(),
            "create-complete" | "update-in-progress" | "update-complete" | "update-failed"
        )
    }
}

/// Fault knobs. Counters named "next K calls" count down as they fire; `u32::MAX` means always.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Delay before answering every API call and every WebSocket upgrade.
    pub api_latency: Duration,
    /// Hold the answer to each of these API actions until all of them have arrived (at most
    /// `TOGETHER_WAIT`): shows that a client sends them concurrently, not one after another.
    pub answer_together: Vec<String>,
    /// EC2 actions (e.g. "DescribeInstances") answered with 403 `UnauthorizedOperation`.
    pub unauthorized: Vec<String>,
    /// The next K EC2 calls fail with 503 `RequestLimitExceeded`.
    pub request_limit_exceeded: u32,
    /// The next K API calls (EC2 and Instance Connect) fail with HTTP 500
    /// (`InternalError` / `ServiceException`).
    pub internal_error: u32,
    /// Largest page for both Describe calls, whatever MaxResults says.
    pub page_size: Option<usize>,
    /// The next K SendSSHPublicKey calls fail with `ThrottlingException`.
    pub throttle_send_key: u32,
    /// SendSSHPublicKey fails with this error type (`AuthException` or `AccessDeniedException`).
    pub deny_send_key: Option<String>,
    /// SendSerialConsoleSSHPublicKey fails with this error type (any of the service's).
    pub serial_console_error: Option<String>,
    /// After N bytes relayed server->client (0: right after the upgrade), send this close frame.
    pub close_after: Option<(usize, u16, String)>,
    /// After N bytes relayed server->client, send a TEXT frame.
    pub text_frame_after: Option<usize>,
    /// After N bytes relayed server->client, reset the TCP connection (0: on accept, before TLS).
    pub reset_after: Option<usize>,
    /// Refuse the upgrade with (HTTP status, ErrorCode, Message).
    pub upgrade_error: Option<(u16, String, String)>,
    /// At most this many tunnels open at once (the service allows 20 per endpoint); one more
    /// is refused with HTTP 429.
    pub max_tunnels: Option<usize>,
    /// Accept TCP and TLS but never answer the upgrade request.
    pub upgrade_hang: bool,
    /// Right after the upgrade, write random bytes (from this seed) on the TLS stream.
    pub random_garbage_after_upgrade: Option<u64>,
    /// Right after the upgrade, send the header of a 32 MiB binary frame.
    pub oversized_frame: bool,
    /// Right after the upgrade, write exactly these bytes on the TLS stream (hand-made frames:
    /// a close frame with an invalid UTF-8 reason, random frame sequences, ...).
    pub raw_after_upgrade: Option<Vec<u8>>,
}

impl Faults {
    /// Consume one firing of a countdown knob.
    pub(crate) fn take(counter: &mut u32) -> bool {
        match *counter {
            0 => false,
            u32::MAX => true,
            _ => {
                *counter -= 1;
                true
            }
        }
    }
}

/// One request the stand-in served.
#[derive(Clone, Debug)]
pub struct Call {
    /// `DescribeInstances`, `DescribeInstanceConnectEndpoints`, `SendSSHPublicKey`, `OpenTunnel`
    /// (or the unknown action's name).
    pub action: String,
    /// Form parameters, JSON fields or (decoded) query parameters.
    pub params: BTreeMap<String, String>,
    pub access_key_id: Option<String>,
    pub host: Option<String>,
    /// The `User-Agent` header, as CloudTrail would record it.
    pub user_agent: Option<String>,
    /// OpenTunnel only: the raw query string as received.
    pub raw_query: Option<String>,
    /// HTTP status answered (101 for a successful upgrade).
    pub status: u16,
    /// The error code answered, if any.
    pub error_code: Option<String>,
}

/// Everything the stand-in knows. Shared as `Arc<Mutex<World>>`; change it while running.
#[derive(Clone, Debug)]
pub struct World {
    pub region: String,
    /// Owner/account id shown in ARNs.
    pub account_id: String,
    pub credentials: Vec<Credential>,
    pub instances: Vec<Instance>,
    pub endpoints: Vec<Endpoint>,
    /// Where SendSSHPublicKey writes `<dir>/<os_user>` (the sshd fixture's AuthorizedKeysFile dir).
    ///
    /// A simplification: the file is per OS user, not per instance. Every instance of a world
    /// (a [`World::fleet`] has many) relays port 22 to the same sshd, so a key pushed for any
    /// instance lets its user log in on all of them, for as long as the key is valid.
    pub authorized_keys_dir: Option<PathBuf>,
    /// Validity of a pushed key (60 s like the real service).
    pub key_validity: Duration,
    /// The account's serial console access (`aws ec2 enable-serial-console-access`); off, every
    /// SendSerialConsoleSSHPublicKey fails with `SerialConsoleAccessDisabledException`.
    pub serial_console_access: bool,
    /// Keys pushed with SendSerialConsoleSSHPublicKey, valid for `key_validity`.
    pub serial_keys: Vec<SerialKey>,
    /// Instances with a serial console session open now (the service allows one each).
    pub serial_sessions: std::collections::BTreeSet<String>,
    pub faults: Faults,
    pub calls: Vec<Call>,
}

/// A key pushed for an instance's serial port.
#[derive(Clone, Debug)]
pub struct SerialKey {
    pub instance_id: String,
    pub serial_port: u32,
    /// The OpenSSH public key line as pushed.
    pub key: String,
    pub expires: std::time::SystemTime,
}

/// Access key id of the default credential.
pub const DEFAULT_ACCESS_KEY_ID: &str = "AKIDSTANDIN";
/// Secret of the default credential.
pub const DEFAULT_SECRET: &str = "standin-secret";
/// Id of the instance in [`World::typical`].
pub const TYPICAL_INSTANCE_ID: &str = "i-0123456789abcdef0";
/// Id of the endpoint in [`World::typical`] and [`World::fleet`].
pub const TYPICAL_ENDPOINT_ID: &str = "eice-0123456789abcdef0";
/// Tunnels the real service allows open at once through one endpoint (`Faults::max_tunnels` of
/// [`crate::StandIn::with_fleet`]).
pub const SERVICE_MAX_TUNNELS: usize = 20;
/// Fleet instances get private IPs 10.0.X.4 to 10.0.X.253 for X in 1..=255 (AWS keeps the first
/// four and the last address of a /24 subnet): this many at most.
pub const FLEET_MAX: usize = 255 * FLEET_PER_SUBNET;
const FLEET_PER_SUBNET: usize = 250;

impl Default for World {
    fn default() -> Self {
        World {
            region: "us-east-1".into(),
            account_id: "123456789012".into(),
            credentials: vec![Credential::new(DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET)],
            instances: Vec::new(),
            endpoints: Vec::new(),
            authorized_keys_dir: None,
            key_validity: Duration::from_secs(60),
            serial_console_access: true,
            serial_keys: Vec::new(),
            serial_sessions: Default::default(),
            faults: Faults::default(),
            calls: Vec::new(),
        }
    }
}

impl World {
    /// An empty world accepting the default credential.
    pub fn new() -> Self {
        Self::default()
    }

    /// One running instance `i-0123456789abcdef0` (10.0.0.5, vpc-1, subnet-1, us-east-1a,
    /// Name=web-1, port 22 -> `ssh_target`) and one create-complete endpoint
    /// `eice-0123456789abcdef0` in the same subnet, served by the stand-in.
    pub fn typical(ssh_target: SocketAddr) -> Self {
        World::new()
            .instance(
                Instance::new(TYPICAL_INSTANCE_ID, "10.0.0.5")
                    .tag("Name", "web-1")
                    .target(22, ssh_target),
            )
            .endpoint(Endpoint::new(TYPICAL_ENDPOINT_ID))
    }

    /// `n` running instances and one endpoint, for tests of many hosts at once.
    ///
    /// - The endpoint is [`TYPICAL_ENDPOINT_ID`], `create-complete`, in `vpc-1`/`subnet-1`
    ///   (as in [`World::typical`]), served by the stand-in.
    /// - Instance `i` (1-based, in this order) is running in `vpc-1`/`subnet-1`/`us-east-1a`
    ///   with id [`World::fleet_instance_id`]`(i)` (`i-0` and 16 hex digits that look random:
    ///   splitmix64 of `i`, which is one-to-one, so ids are unique and none is
    ///   [`TYPICAL_INSTANCE_ID`]), private IP [`World::fleet_private_ip`]`(i)` (`10.0.1.4`,
    ///   `10.0.1.5`, ... `10.0.1.253`, `10.0.2.4`, ...: unique, never the typical `10.0.0.5`),
    ///   port 22 relayed to `ssh_target`, and tags `Name=fleet-<i>`, `role=web` (even `i`) or
    ///   `role=db` (odd `i`), and `env=test`.
    ///
    /// Faults are the defaults (no tunnel limit: [`crate::StandIn::with_fleet`] sets the
    /// service's). Panics when `n` exceeds [`FLEET_MAX`].
    pub fn fleet(n: usize, ssh_target: SocketAddr) -> Self {
        assert!(n <= FLEET_MAX, "a fleet has at most {FLEET_MAX} instances, not {n}");
        let mut world = World::new().endpoint(Endpoint::new(TYPICAL_ENDPOINT_ID));
        world.instances = (1..=n)
            .map(|i| {
                Instance::new(&Self::fleet_instance_id(i), &Self::fleet_private_ip(i))
                    .tag("Name", &format!("fleet-{i}"))
                    .tag("role", if i % 2 == 0 { "web" } else { "db" })
                    .tag("env", "test")
                    .target(22, ssh_target)
            })
            .collect();
        world
    }

    /// The id of instance `i` (1-based) of a [`World::fleet`]: `i-0` and 16 lowercase hex
    /// digits, deterministic.
    pub fn fleet_instance_id(i: usize) -> String {
        format!("i-0{:016x}", crate::splitmix(i as u64))
    }

    /// The private IPv4 address of instance `i` (1-based, at most [`FLEET_MAX`]) of a
    /// [`World::fleet`]: `10.0.1.4` for 1, then on through `10.0.1.253`, `10.0.2.4`, ...
    pub fn fleet_private_ip(i: usize) -> String {
        assert!((1..=FLEET_MAX).contains(&i), "no fleet instance {i}");
        let k = i - 1;
        format!("10.0.{}.{}", 1 + k / FLEET_PER_SUBNET, 4 + k % FLEET_PER_SUBNET)
    }

    pub fn instance(mut self, instance: Instance) -> Self {
        self.instances.push(instance);
        self
    }
    pub fn endpoint(mut self, endpoint: Endpoint) -> Self {
        self.endpoints.push(endpoint);
        self
    }
    /// Accept another credential.
    pub fn credential(mut self, credential: Credential) -> Self {
        self.credentials.push(credential);
        self
    }
    /// Accept only this credential.
    pub fn only_credential(mut self, credential: Credential) -> Self {
        self.credentials = vec![credential];
        self
    }
    pub fn region(mut self, region: &str) -> Self {
        self.region = region.into();
        self
    }
    pub fn authorized_keys_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.authorized_keys_dir = Some(dir.into());
        self
    }
    pub fn faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    pub fn find_instance(&self, id: &str) -> Option<&Instance> {
        self.instances.iter().find(|i| i.id == id)
    }
    pub fn instance_mut(&mut self, id: &str) -> Option<&mut Instance> {
        self.instances.iter_mut().find(|i| i.id == id)
    }
    pub fn find_endpoint(&self, id: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.id == id)
    }
    pub fn endpoint_mut(&mut self, id: &str) -> Option<&mut Endpoint> {
        self.endpoints.iter_mut().find(|e| e.id == id)
    }
    /// Secret and token of a known access key.
    pub fn lookup(&self, access_key_id: &str) -> Option<(String, Option<String>)> {
        self.credentials
            .iter()
            .find(|c| c.access_key_id == access_key_id)
            .map(|c| (c.secret_access_key.clone(), c.session_token.clone()))
    }
}

/// The stand-in's own host names, used to fill endpoints whose DNS names are `None`.
#[derive(Clone, Debug)]
pub(crate) struct OwnNames {
    pub dns: String,
    pub fips: String,
}

impl Endpoint {
    /// (DnsName, FipsDnsName) as answered; empty means absent.
    pub(crate) fn names(&self, own: &OwnNames) -> (String, String) {
        (
            self.dns_name.clone().unwrap_or_else(|| own.dns.clone()),
            self.fips_dns_name.clone().unwrap_or_else(|| own.fips.clone()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn fleet_ids_and_ips_are_unique_and_never_the_typical_ones() {
        let mut ids = HashSet::new();
        let mut ips = HashSet::new();
        for i in 1..=FLEET_MAX {
            let id = World::fleet_instance_id(i);
            assert_eq!(id.len(), 2 + 17, "{id}");
            assert!(id[2..].bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')), "{id}");
            assert_ne!(id, TYPICAL_INSTANCE_ID);
            assert!(ids.insert(id));
            let ip = World::fleet_private_ip(i);
            let ip: std::net::Ipv4Addr = ip.parse().unwrap();
            let [a, b, c, d] = ip.octets();
            assert_eq!((a, b), (10, 0));
            assert!(c >= 1 && (4..=253).contains(&d), "{ip}");
            assert!(ips.insert(ip));
        }
        assert_eq!(World::fleet_private_ip(1), "10.0.1.4");
        assert_eq!(World::fleet_private_ip(251), "10.0.2.4");
        assert_eq!(World::fleet_private_ip(FLEET_MAX), "10.0.255.253");
    }

    #[test]
    fn fleet_world() {
        let target: SocketAddr = "127.0.0.1:22".parse().unwrap();
        let w = World::fleet(4, target);
        assert_eq!(w.endpoints.len(), 1);
        assert_eq!(w.endpoints[0].id, TYPICAL_ENDPOINT_ID);
        assert!(w.endpoints[0].usable());
        assert_eq!(w.instances.len(), 4);
        let i2 = &w.instances[1];
        assert_eq!(i2.id, World::fleet_instance_id(2));
        assert_eq!(
            (i2.state.as_str(), i2.vpc_id.as_str(), i2.subnet_id.as_str()),
            ("running", "vpc-1", "subnet-1")
        );
        assert_eq!(
            i2.tags,
            [
                ("Name".into(), "fleet-2".into()),
                ("role".into(), "web".into()),
                ("env".into(), "test".into())
            ]
        );
        assert_eq!(w.instances[2].tags[1].1, "db");
        assert_eq!(i2.targets.get(&22), Some(&target));
        assert_eq!(w.faults.max_tunnels, None);
        assert!(World::fleet(0, target).instances.is_empty());
    }
}
