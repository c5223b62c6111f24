//! An independent SigV4 query-presign verifier (and signer) for `openTunnel` URLs: hmac + sha2 only.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The signing name of EC2 Instance Connect Endpoint tunnels.
pub const SERVICE: &str = "ec2-instance-connect";
/// SHA-256 of the empty payload.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// Largest X-Amz-Expires the endpoint accepts.
pub const MAX_EXPIRES: u64 = 60;
/// How far in the future X-Amz-Date may be.
pub const MAX_CLOCK_SKEW: u64 = 300;

/// A presigned request that passed verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub access_key_id: String,
    /// X-Amz-Date as sent.
    pub amz_date: String,
    pub expires: u64,
    pub session_token: Option<String>,
    /// The canonical request the signature was checked against.
    pub canonical_request: String,
    pub string_to_sign: String,
}

/// Why a presigned request was refused: HTTP status, AWS error code and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub code: String,
    pub message: String,
}

fn reject(status: u16, code: &str, message: impl Into<String>) -> Rejection {
    Rejection { status, code: code.into(), message: message.into() }
}

/// Percent-encode with the RFC 3986 unreserved set kept and upper-case `%XX`.
pub fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decode `%XX` escapes (a `+` stays a `+`). `None` for bad escapes or invalid UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Split a raw query string into decoded (name, value) pairs, in order.
pub fn parse_query(raw: &str) -> Option<Vec<(String, String)>> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn sha256_hex(data: &str) -> String {
    hex::encode(Sha256::digest(data.as_bytes()))
}

/// The SigV4 signing key for a day (`YYYYMMDD`), region and service.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k = hmac(format!("AWS4{secret}").as_bytes(), date);
    let k = hmac(&k, region);
    let k = hmac(&k, service);
    hmac(&k, "aws4_request")
}

/// The canonical query: every pair but X-Amz-Signature, encoded, sorted.
fn canonical_query(pairs: &[(String, String)]) -> String {
    let mut enc: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, _)| k != "X-Amz-Signature")
        .map(|(k, v)| (uri_encode(k), uri_encode(v)))
        .collect();
    enc.sort();
    enc.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

fn canonical_request(path: &str, pairs: &[(String, String)], host: &str) -> String {
    format!("GET\n{path}\n{}\nhost:{}\n\nhost\n{EMPTY_SHA256}", canonical_query(pairs), host.trim())
}

fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", sha256_hex(canonical_request))
}

/// Presign a GET for `host` + `path` with the given (unencoded) leading parameters.
/// Returns the query string (no `?`), parameters in botocore's order.
#[allow(clippy::too_many_arguments)]
pub fn presign_query(
    host: &str,
    path: &str,
    params: &[(&str, &str)],
    access_key_id: &str,
    secret: &str,
    session_token: Option<&str>,
    region: &str,
    now: SystemTime,
) -> String {
    let amz_date = format_amz_date(now);
    let scope = format!("{}/{region}/{SERVICE}/aws4_request", &amz_date[..8]);
    let mut pairs: Vec<(String, String)> =
        params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    pairs.push(("X-Amz-Algorithm".into(), "AWS4-HMAC-SHA256".into()));
    pairs.push(("X-Amz-Credential".into(), format!("{access_key_id}/{scope}")));
    pairs.push(("X-Amz-Date".into(), amz_date.clone()));
    pairs.push(("X-Amz-Expires".into(), MAX_EXPIRES.to_string()));
    pairs.push(("X-Amz-SignedHeaders".into(), "host".into()));
    if let Some(t) = session_token {
        pairs.push(("X-Amz-Security-Token".into(), t.into()));
    }
    let creq = canonical_request(path, &pairs, host);
    let sts = string_to_sign(&amz_date, &scope, &creq);
    let key = signing_key(secret, &amz_date[..8], region, SERVICE);
    pairs.push(("X-Amz-Signature".into(), hex::encode(hmac(&key, &sts))));
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", uri_encode(k), uri_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Verify a SigV4 presigned GET as the EICE service would.
///
/// `host` is the request's actual Host header, `raw_query` the query exactly as received,
/// `lookup_secret` maps an access key id to (secret, required session token), `region` is the
/// only region accepted in the credential scope.
pub fn verify_presigned(
    host: &str,
    path: &str,
    raw_query: &str,
    lookup_secret: impl Fn(&str) -> Option<(String, Option<String>)>,
    region: &str,
    now: SystemTime,
) -> Result<Verified, Rejection> {
    let pairs = parse_query(raw_query)
        .ok_or_else(|| reject(400, "InvalidParameter", "Malformed query string"))?;
    let get = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let need = |name: &str| {
        get(name).ok_or_else(|| {
            reject(403, "IncompleteSignature", format!("Missing required query parameter {name}"))
        })
    };
    let algorithm = need("X-Amz-Algorithm")?;
    let credential = need("X-Amz-Credential")?;
    let amz_date = need("X-Amz-Date")?;
    let expires = need("X-Amz-Expires")?;
    let signed_headers = need("X-Amz-SignedHeaders")?;
    let signature = need("X-Amz-Signature")?;
    if algorithm != "AWS4-HMAC-SHA256" {
        return Err(reject(
            403,
            "IncompleteSignature",
            format!("Unsupported X-Amz-Algorithm {algorithm}"),
        ));
    }
    if signed_headers != "host" {
        return Err(reject(
            403,
            "SignatureDoesNotMatch",
            format!("X-Amz-SignedHeaders must be 'host', got '{signed_headers}'"),
        ));
    }
    let signed_at = parse_amz_date(amz_date).ok_or_else(|| {
        reject(
            403,
            "IncompleteSignature",
            format!("X-Amz-Date '{amz_date}' is not in the form YYYYMMDDTHHMMSSZ"),
        )
    })?;
    let expires_secs: u64 =
        expires.parse().ok().filter(|e| (1..=MAX_EXPIRES).contains(e)).ok_or_else(|| {
            reject(
                403,
                "AuthorizationQueryParametersError",
                format!(
                    "X-Amz-Expires must be between 1 and {MAX_EXPIRES} seconds, got '{expires}'"
                ),
            )
        })?;
    let parts: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, cred_region, service, terminator] = parts[..] else {
        return Err(reject(
            403,
            "IncompleteSignature",
            format!("Malformed X-Amz-Credential '{credential}'"),
        ));
    };
    if terminator != "aws4_request" || service != SERVICE {
        return Err(reject(
            403,
            "SignatureDoesNotMatch",
            format!("Credential should be scoped to correct service: '{SERVICE}'."),
        ));
    }
    if cred_region != region {
        return Err(reject(
            403,
            "SignatureDoesNotMatch",
            format!("Credential should be scoped to a valid region, not '{cred_region}'."),
        ));
    }
    if date != &amz_date[..8] {
        return Err(reject(
            403,
            "SignatureDoesNotMatch",
            format!("Date in Credential scope does not match YYYYMMDD from X-Amz-Date: '{date}'"),
        ));
    }
    let (secret, token) = lookup_secret(access_key_id).ok_or_else(|| {
        reject(
            403,
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
        )
    })?;
    let sent_token = get("X-Amz-Security-Token");
    if sent_token != token.as_deref() {
        return Err(reject(
            403,
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
        ));
    }
    let scope = format!("{date}/{region}/{SERVICE}/aws4_request");
    let creq = canonical_request(path, &pairs, host);
    let sts = string_to_sign(amz_date, &scope, &creq);
    let expected = hex::encode(hmac(&signing_key(&secret, date, region, SERVICE), &sts));
    if !constant_time_eq(expected.as_bytes(), signature.as_bytes()) {
        return Err(reject(
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        ));
    }
    if now + Duration::from_secs(MAX_CLOCK_SKEW) < signed_at {
        return Err(reject(
            403,
            "SignatureDoesNotMatch",
            format!(
                "Signature not yet current: {amz_date} is still later than {}",
                format_amz_date(now)
            ),
        ));
    }
    if now > signed_at + Duration::from_secs(expires_secs) {
        return Err(reject(
            403,
            "ExpiredToken",
            format!(
                "Signature expired: {amz_date} is now earlier than {}",
                format_amz_date(now - Duration::from_secs(expires_secs))
            ),
        ));
    }
    Ok(Verified {
        access_key_id: access_key_id.to_string(),
        amz_date: amz_date.to_string(),
        expires: expires_secs,
        session_token: sent_token.map(str::to_string),
        canonical_request: creq,
        string_to_sign: sts,
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

// ---- UTC calendar helpers (no time crate needed) ----

/// Days since 1970-01-01 for a proleptic Gregorian date.
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// (year, month, day) for days since 1970-01-01.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// UTC broken down: (year, month, day, hour, minute, second).
pub fn utc_parts(t: SystemTime) -> (i64, u32, u32, u32, u32, u32) {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86400));
    let s = secs.rem_euclid(86400) as u32;
    (y, m, d, s / 3600, s / 60 % 60, s % 60)
}

/// `YYYYMMDDTHHMMSSZ`.
pub fn format_amz_date(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = utc_parts(t);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// Parse `YYYYMMDDTHHMMSSZ`.
pub fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, sec) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let days = days_from_civil(y as i64, mo, d);
    let secs = days * 86400 + (h * 3600 + mi * 60 + sec) as i64;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        for s in ["20240101T000000Z", "20240229T235959Z", "20251231T120000Z", "19700101T000000Z"] {
            assert_eq!(format_amz_date(parse_amz_date(s).unwrap()), s);
        }
        assert!(parse_amz_date("2024-01-01T00:00:00Z").is_none());
        assert!(parse_amz_date("20241301T000000Z").is_none());
    }

    #[test]
    fn encoding() {
        assert_eq!(uri_encode("2001:db8::5"), "2001%3Adb8%3A%3A5");
        assert_eq!(uri_encode("a/b+c=~"), "a%2Fb%2Bc%3D~");
        assert_eq!(percent_decode("a%2Fb+c").unwrap(), "a/b+c");
        assert!(percent_decode("%zz").is_none());
    }
}
