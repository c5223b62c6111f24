//! The domain's values, each checked where it enters eic and built in one way: an endpoint's
//! DNS name, the endpoint chosen for a tunnel, and what one tunnel connects to.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An endpoint's DNS name, lower-cased, with an optional `:port` (the stand-in has one). Checked
/// once where it enters eic, from the command line or an API answer: it goes into a URL, the
/// TLS server name and a CONNECT request line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsName(String);

impl DnsName {
    /// The name as signed for the `host` header: `host[:port]`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The host to connect to, and its port (443 unless one is given).
    pub fn host_port(&self) -> (&str, u16) {
        match self.0.split_once(':') {
            Some((host, port)) => (host, port.parse().unwrap_or(443)),
            None => (&self.0, 443),
        }
    }
}

impl FromStr for DnsName {
    type Err = String;

    /// Letters, digits, `.` and `-`, with an optional `:port`.
    fn from_str(value: &str) -> Result<DnsName, String> {
        const EXPECTED: &str =
            "expected a DNS name of letters, digits, '.' and '-', with an optional :port";
        let (host, port) = match value.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (value, None),
        };
        let host_ok = !host.is_empty()
            && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        let port_ok = port.is_none_or(|p| {
            p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !host_ok || !port_ok {
            return Err(EXPECTED.to_string());
        }
        Ok(DnsName(value.to_ascii_lowercase()))
    }
}

impl fmt::Display for DnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The endpoint a tunnel goes through, as resolved: its id and the DNS name to connect to
/// (the FIPS or dual-stack one where configured).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChosenEndpoint {
    pub id: String,
    pub dns_name: DnsName,
}

/// What one tunnel connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelTarget {
    /// The endpoint's DNS name, signed as the `host` header.
    pub dns_name: DnsName,
    pub endpoint_id: String,
    pub private_ip: IpAddr,
    pub remote_port: u16,
    pub max_tunnel_duration: Option<u32>,
}

impl TunnelTarget {
    /// Through `endpoint` to `private_ip:remote_port`, for at most `max_tunnel_duration` s.
    pub fn new(
        endpoint: ChosenEndpoint,
        private_ip: IpAddr,
        remote_port: u16,
        max_tunnel_duration: Option<u32>,
    ) -> TunnelTarget {
        let ChosenEndpoint { id: endpoint_id, dns_name } = endpoint;
        TunnelTarget { dns_name, endpoint_id, private_ip, remote_port, max_tunnel_duration }
    }
}
