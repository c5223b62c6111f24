//! The presigner reproduces botocore's openTunnel URLs byte for byte.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use eic::presign;
use eic::TunnelTarget;
use serde_json::Value;

/// `YYYYMMDDTHHMMSSZ` as a `SystemTime` (days-from-civil, proleptic Gregorian).
fn amz_date(s: &str) -> SystemTime {
    let n = |r: std::ops::Range<usize>| s[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(4..6), n(6..8));
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let days = era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
    let secs = days * 86400 + n(9..11) * 3600 + n(11..13) * 60 + n(13..15);
    UNIX_EPOCH + Duration::from_secs(secs as u64)
}

#[test]
fn reproduces_every_botocore_vector() {
    let file: Value =
        serde_json::from_str(include_str!("../data/presign-vectors.json")).expect("vectors parse");
    let vectors = file["vectors"].as_array().expect("vectors array");
    assert!(vectors.len() >= 5, "expected the full vector set");
    for vector in vectors {
        let name = vector["name"].as_str().unwrap();
        let input = &vector["input"];
        let s = |k: &str| input[k].as_str().map(str::to_string);
        let target = TunnelTarget {
            dns_name: s("dns_name").unwrap().parse().unwrap(),
            endpoint_id: s("endpoint_id").unwrap(),
            private_ip: s("private_ip").unwrap().parse().unwrap(),
            remote_port: input["remote_port"].as_u64().unwrap() as u16,
            max_tunnel_duration: input["max_tunnel_duration"].as_u64().map(|d| d as u32),
        };
        let credentials = Credentials::new(
            s("access_key").unwrap(),
            s("secret_key").unwrap(),
            s("session_token"),
            None,
            "test",
        );
        let time = amz_date(&s("timestamp").unwrap());
        let url = presign(&target, &credentials, &s("region").unwrap(), time).unwrap();
        assert_eq!(url, vector["expected_url"].as_str().unwrap(), "vector {name}");
    }
}

#[test]
fn a_different_second_changes_the_url() {
    let target = TunnelTarget {
        dns_name: "eice-1.example.com".parse().unwrap(),
        endpoint_id: "eice-1".into(),
        private_ip: "10.0.0.5".parse().unwrap(),
        remote_port: 22,
        max_tunnel_duration: None,
    };
    let credentials = Credentials::new("AK", "SK", None, None, "test");
    let t = amz_date("20240101T000000Z");
    let a = presign(&target, &credentials, "us-east-1", t).unwrap();
    let b = presign(&target, &credentials, "us-east-1", t + Duration::from_secs(1)).unwrap();
    assert_ne!(a, b);
    assert!(a.contains("X-Amz-Date=20240101T000000Z"));
}
