//! The presign verifier against botocore's vectors (tests/data/presign-vectors.json).

use eic_standin::sigv4::{parse_amz_date, presign_query, verify_presigned, Rejection};
use serde_json::Value;
use std::time::{Duration, SystemTime};

struct Vector {
    name: String,
    input: Value,
    url: String,
    canonical_request: String,
    string_to_sign: String,
}

impl Vector {
    fn s(&self, key: &str) -> &str {
        self.input[key].as_str().unwrap_or_default()
    }
    fn token(&self) -> Option<String> {
        self.input["session_token"].as_str().map(str::to_string)
    }
    fn time(&self) -> SystemTime {
        parse_amz_date(self.s("timestamp")).unwrap()
    }
    fn query(&self) -> &str {
        self.url.split_once('?').unwrap().1
    }
    fn verify(
        &self,
        host: &str,
        query: &str,
        region: &str,
        now: SystemTime,
    ) -> Result<(), Rejection> {
        let (ak, secret, token) = (self.s("access_key"), self.s("secret_key"), self.token());
        verify_presigned(
            host,
            "/openTunnel",
            query,
            |k| (k == ak).then(|| (secret.to_string(), token.clone())),
            region,
            now,
        )
        .map(|_| ())
    }
    fn check(&self, query: &str, now_offset: i64) -> Result<(), Rejection> {
        let now = if now_offset >= 0 {
            self.time() + Duration::from_secs(now_offset as u64)
        } else {
            self.time() - Duration::from_secs((-now_offset) as u64)
        };
        self.verify(self.s("dns_name"), query, self.s("region"), now)
    }
}

fn vectors() -> Vec<Vector> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/presign-vectors.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    doc["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| Vector {
            name: v["name"].as_str().unwrap().into(),
            input: v["input"].clone(),
            url: v["expected_url"].as_str().unwrap().into(),
            canonical_request: v["canonical_request"].as_str().unwrap().into(),
            string_to_sign: v["string_to_sign"].as_str().unwrap().into(),
        })
        .collect()
}

fn code(r: Result<(), Rejection>) -> String {
    match r {
        Ok(()) => "accepted".into(),
        Err(r) => {
            assert_eq!(r.status, 403, "{r:?}");
            r.code
        }
    }
}

#[test]
fn valid_vectors_verify_with_botocore_canonical_forms() {
    for v in vectors() {
        let (ak, secret, token) = (v.s("access_key"), v.s("secret_key"), v.token());
        let ok = verify_presigned(
            v.s("dns_name"),
            "/openTunnel",
            v.query(),
            |k| (k == ak).then(|| (secret.to_string(), token.clone())),
            v.s("region"),
            v.time() + Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("{}: {e:?}", v.name));
        assert_eq!(ok.canonical_request, v.canonical_request, "{}", v.name);
        assert_eq!(ok.string_to_sign, v.string_to_sign, "{}", v.name);
        assert_eq!(ok.access_key_id, "AKIDEXAMPLE");
        assert_eq!(ok.session_token, v.token());
        assert_eq!(v.check(v.query(), 0), Ok(()), "{}: at the signing instant", v.name);
        assert_eq!(v.check(v.query(), 60), Ok(()), "{}: at the last valid second", v.name);
    }
}

#[test]
fn own_signer_reproduces_the_urls_byte_for_byte() {
    for v in vectors() {
        let port = v.input["remote_port"].as_u64().unwrap().to_string();
        let dur = v.input["max_tunnel_duration"].as_u64().map(|d| d.to_string());
        let mut params = vec![
            ("instanceConnectEndpointId", v.s("endpoint_id")),
            ("remotePort", port.as_str()),
            ("privateIpAddress", v.s("private_ip")),
        ];
        if let Some(d) = &dur {
            params.push(("maxTunnelDuration", d));
        }
        let token = v.token();
        let q = presign_query(
            v.s("dns_name"),
            "/openTunnel",
            &params,
            v.s("access_key"),
            v.s("secret_key"),
            token.as_deref(),
            v.s("region"),
            v.time(),
        );
        assert_eq!(format!("wss://{}/openTunnel?{q}", v.s("dns_name")), v.url, "{}", v.name);
    }
}

#[test]
fn expired_or_not_yet_valid() {
    for v in vectors() {
        assert_eq!(code(v.check(v.query(), 61)), "ExpiredToken", "{}", v.name);
        assert_eq!(code(v.check(v.query(), 3600)), "ExpiredToken", "{}", v.name);
        assert_eq!(code(v.check(v.query(), -299)), "accepted", "{}", v.name);
        assert_eq!(code(v.check(v.query(), -301)), "SignatureDoesNotMatch", "{}", v.name);
    }
}

#[test]
fn tampered_signature_or_params() {
    for v in vectors() {
        let q = v.query();
        let last = q.chars().last().unwrap();
        let flipped = if last == '0' { '1' } else { '0' };
        let tampered = format!("{}{flipped}", &q[..q.len() - 1]);
        assert_eq!(code(v.check(&tampered, 10)), "SignatureDoesNotMatch", "{}", v.name);
        let other_ip = q.replace("privateIpAddress=", "privateIpAddress=1");
        assert_eq!(code(v.check(&other_ip, 10)), "SignatureDoesNotMatch", "{}", v.name);
        let added = format!("maxTunnelDuration=5&{q}");
        assert_eq!(code(v.check(&added, 10)), "SignatureDoesNotMatch", "{}", v.name);
    }
}

#[test]
fn wrong_host() {
    for v in vectors() {
        let now = v.time() + Duration::from_secs(10);
        let other = format!("{}:443", v.s("dns_name"));
        for host in ["localhost:1234", other.as_str(), "evil.example.com"] {
            assert_eq!(
                code(v.verify(host, v.query(), v.s("region"), now)),
                "SignatureDoesNotMatch"
            );
        }
        // The signed host itself is still accepted.
        assert_eq!(code(v.verify(v.s("dns_name"), v.query(), v.s("region"), now)), "accepted");
    }
}

#[test]
fn wrong_credential_scope() {
    for v in vectors() {
        let q = v.query();
        let now = v.time() + Duration::from_secs(10);
        // The server's region differs from the scope.
        assert_eq!(code(v.verify(v.s("dns_name"), q, "ap-south-1", now)), "SignatureDoesNotMatch");
        // Scope edited in the URL: region, service, date.
        let region = v.s("region");
        let day = &v.s("timestamp")[..8];
        let edits = [
            q.replace(&format!("%2F{region}%2F"), "%2Fus-west-2%2F"),
            q.replace("%2Fec2-instance-connect%2F", "%2Fec2%2F"),
            q.replace(&format!("%2F{day}%2F"), "%2F20200101%2F"),
            q.replace("%2Faws4_request", "%2Faws4_other"),
        ];
        for edited in edits {
            assert_ne!(edited, q);
            assert_eq!(code(v.check(&edited, 10)), "SignatureDoesNotMatch", "{}: {edited}", v.name);
        }
    }
}

#[test]
fn unknown_key_and_token_mismatch() {
    for v in vectors() {
        let now = v.time() + Duration::from_secs(10);
        let unknown = verify_presigned(
            v.s("dns_name"),
            "/openTunnel",
            v.query(),
            |_| None,
            v.s("region"),
            now,
        );
        assert_eq!(unknown.unwrap_err().code, "InvalidClientTokenId");
        let q = v.query();
        if let Some(start) = q.find("&X-Amz-Security-Token=") {
            let end = q[start + 1..].find('&').unwrap() + start + 1;
            let without = format!("{}{}", &q[..start], &q[end..]);
            assert_eq!(code(v.check(&without, 10)), "InvalidClientTokenId", "{}", v.name);
            let other = q.replace("IQoJ", "XQoJ");
            assert_eq!(code(v.check(&other, 10)), "InvalidClientTokenId", "{}", v.name);
        } else {
            // A long-term key presented with a token it does not have.
            let with = format!("{q}&X-Amz-Security-Token=abc");
            assert_eq!(code(v.check(&with, 10)), "InvalidClientTokenId", "{}", v.name);
        }
    }
}

#[test]
fn malformed_auth_parameters() {
    let v = &vectors()[0];
    let q = v.query();
    let cases = [
        q.replace("X-Amz-Algorithm=AWS4-HMAC-SHA256", "X-Amz-Algorithm=AWS4-HMAC-SHA1"),
        q.replace("X-Amz-Expires=60", "X-Amz-Expires=61"),
        q.replace("X-Amz-Expires=60", "X-Amz-Expires=abc"),
        q.replace("X-Amz-SignedHeaders=host", "X-Amz-SignedHeaders=host%3Bx-amz-date"),
        q.replace("X-Amz-Date=20240101T000000Z", "X-Amz-Date=2024-01-01"),
        q.replace("&X-Amz-Signature=", "&X-Amz-Nothing="),
    ];
    for case in cases {
        let r = v.check(&case, 10).unwrap_err();
        assert_eq!(r.status, 403, "{case}: {r:?}");
    }
}
