//! The openTunnel presigner: a pure function of the request, the credentials and the time.
//!
//! It reproduces the AWS CLI's URLs byte for byte (botocore's `generate_presigned_url`): SigV4
//! query signing for service `ec2-instance-connect`, 60 s expiry, only `host` signed, the
//! SHA-256 of the empty payload, and the query parameters in botocore's order.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::target::TunnelTarget;

/// The SigV4 signing name of the EC2 Instance Connect Endpoint service.
pub const SIGNING_NAME: &str = "ec2-instance-connect";
/// How long a presigned URL stays valid, as the AWS CLI signs it.
pub const EXPIRES_IN: Duration = Duration::from_secs(60);

/// Returns the `wss://` URL that opens a tunnel to `target`, signed at `time`.
pub fn presign(
    target: &TunnelTarget,
    credentials: &Credentials,
    region: &str,
    time: SystemTime,
) -> anyhow::Result<String> {
    let host = target.dns_name.as_str();
    let mut query = vec![
        ("instanceConnectEndpointId", target.endpoint_id.clone()),
        ("remotePort", target.remote_port.to_string()),
        ("privateIpAddress", target.private_ip.to_string()),
    ];
    if let Some(secs) = target.max_tunnel_duration {
        query.push(("maxTunnelDuration", secs.to_string()));
    }
    let base = format!("wss://{host}/openTunnel?{}", encode_query(&query));

    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(EXPIRES_IN);
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SIGNING_NAME)
        .time(time)
        .settings(settings)
        .build()?
        .into();
    // Sign the bare DNS name as `host`, and the empty body's hash (botocore does, for `wss`).
    let https = base.replacen("wss://", "https://", 1);
    let request = SignableRequest::new(
        "GET",
        &https,
        std::iter::once(("host", host)),
        SignableBody::Bytes(&[]),
    )?;
    let (instructions, _) = sign(request, &params)?.into_parts();

    // botocore's order: Algorithm, Credential, Date, Expires, SignedHeaders, [Token], Signature.
    const ORDER: [&str; 7] = [
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Security-Token",
        "X-Amz-Signature",
    ];
    let signed = instructions.params();
    let mut url = base;
    for name in ORDER {
        if let Some((_, value)) = signed.iter().find(|(n, _)| *n == name) {
            url.push('&');
            url.push_str(name);
            url.push('=');
            url.push_str(&encode(value));
        }
    }
    Ok(url)
}

fn encode_query(pairs: &[(&str, String)]) -> String {
    pairs.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect::<Vec<_>>().join("&")
}

/// RFC 3986 percent-encoding: unreserved characters kept, everything else `%XX` upper-case.
fn encode(value: &str) -> String {
    const UNRESERVED: &AsciiSet =
        &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
    utf8_percent_encode(value, UNRESERVED).to_string()
}

/// The URL with its signature and session token replaced, safe for debug logs.
pub fn redact(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let query = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if k == "X-Amz-Signature" || k == "X-Amz-Security-Token" => {
                format!("{k}=REDACTED")
            }
            Some((k, v)) if k == "X-Amz-Credential" => {
                // Keep the scope, hide the access key id.
                let scope = v.split_once("%2F").map_or("", |(_, s)| s);
                format!("{k}=REDACTED%2F{scope}")
            }
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&");
    format!("{base}?{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_rfc3986() {
        assert_eq!(encode("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(encode("fd00::1"), "fd00%3A%3A1");
        assert_eq!(encode("a/b+c=="), "a%2Fb%2Bc%3D%3D");
    }

    #[test]
    fn redacts_secrets() {
        let url = "wss://h/openTunnel?remotePort=22&X-Amz-Credential=AKID%2F20240101%2Fus-east-1%2Fec2-instance-connect%2Faws4_request&X-Amz-Security-Token=tok&X-Amz-Signature=abc";
        let red = redact(url);
        assert!(!red.contains("AKID") && !red.contains("tok") && !red.contains("abc"));
        assert!(red.contains("remotePort=22") && red.contains("us-east-1"));
    }
}
