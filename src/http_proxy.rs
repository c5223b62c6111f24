//! TCP connections to the endpoint, directly or through `HTTPS_PROXY` (else `HTTP_PROXY`, as
//! the AWS CLI's tunnel also uses it) by HTTP CONNECT, with `NO_PROXY` honoured as curl and the
//! AWS SDKs do.

use anyhow::{bail, Context};
use percent_encoding::percent_decode_str;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A parsed `http://[user:pass@]host[:port]` proxy URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpProxy {
    pub host: String,
    pub port: u16,
    /// `user:password`, percent-decoded, for `Proxy-Authorization: Basic`.
    pub credentials: Option<String>,
}

impl HttpProxy {
    pub fn parse(url: &str) -> anyhow::Result<HttpProxy> {
        let rest = match url.split_once("://") {
            Some(("http", rest)) => rest,
            Some((scheme, _)) => bail!("proxy scheme {scheme}:// is not supported (use http://)"),
            None => url,
        };
        let authority = rest.split('/').next().unwrap_or_default();
        let (credentials, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => {
                (Some(percent_decode_str(userinfo).decode_utf8_lossy().into_owned()), hostport)
            }
            None => (None, authority),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => {
                (host, port.parse().with_context(|| format!("bad port in proxy URL `{hostport}`"))?)
            }
            _ => (hostport, 80),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            bail!("no host in the proxy URL");
        }
        Ok(HttpProxy { host: host.to_string(), port, credentials })
    }
}

/// Whether `host` is exempt by a `NO_PROXY` list: `*`, exact hosts, and domain suffixes
/// (`example.com` and `.example.com` both match `example.com` and its subdomains).
pub fn bypassed(host: &str, no_proxy: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    no_proxy.split(',').map(str::trim).any(|entry| {
        let entry = entry.to_ascii_lowercase();
        // Drop an entry's port; the endpoint is always reached on one port anyway.
        let entry = match entry.rsplit_once(':') {
            Some((name, port))
                if port.bytes().all(|b| b.is_ascii_digit()) && !name.contains(':') =>
            {
                name.to_string()
            }
            _ => entry,
        };
        let entry = entry.trim_matches(|c| c == '[' || c == ']');
        if entry == "*" {
            return true;
        }
        let suffix = entry.trim_start_matches('.').trim_start_matches("*.");
        !suffix.is_empty() && (host == suffix || host.ends_with(&format!(".{suffix}")))
    })
}

/// The proxy to use for `host`, from the environment: `HTTPS_PROXY`, else `HTTP_PROXY` (the
/// AWS CLI's `open-tunnel` takes either); lower case wins, as in curl.
pub fn from_env(host: &str) -> anyhow::Result<Option<HttpProxy>> {
    let var = |names: &[&'static str]| {
        names.iter().find_map(|n| {
            let value = std::env::var(n).ok().filter(|v| !v.is_empty())?;
            Some((*n, value))
        })
    };
    let Some((name, url)) = var(&["https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"]) else {
        return Ok(None);
    };
    if var(&["no_proxy", "NO_PROXY"]).is_some_and(|(_, list)| bypassed(host, &list)) {
        return Ok(None);
    }
    HttpProxy::parse(&url).map(Some).with_context(|| format!("{name} is not a valid proxy URL"))
}

/// Connects to `host:port`, through the environment's proxy when there is one.
pub async fn connect(host: &str, port: u16) -> anyhow::Result<TcpStream> {
    match from_env(host)? {
        None => TcpStream::connect((host, port))
            .await
            .with_context(|| format!("cannot connect to the endpoint {host}:{port}")),
        Some(proxy) => tunnel_through(&proxy, host, port).await,
    }
}

async fn tunnel_through(proxy: &HttpProxy, host: &str, port: u16) -> anyhow::Result<TcpStream> {
    use data_encoding::BASE64;
    let mut stream = TcpStream::connect((proxy.host.as_str(), proxy.port))
        .await
        .with_context(|| format!("cannot connect to the proxy {}:{}", proxy.host, proxy.port))?;
    stream.set_nodelay(true)?;
    let mut request = format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n");
    if let Some(credentials) = &proxy.credentials {
        let token = BASE64.encode(credentials.as_bytes());
        request.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;

    // Read the response head byte-wise-buffered, leaving nothing of the tunnel unread.
    let mut reader = BufReader::with_capacity(1, &mut stream);
    let mut status = String::new();
    reader.read_line(&mut status).await?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            bail!("the proxy {}:{} closed the connection", proxy.host, proxy.port);
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
    }
    let code = status.split_whitespace().nth(1).unwrap_or_default();
    if code != "200" {
        bail!(
            "the proxy {}:{} refused CONNECT {host}:{port}: {}",
            proxy.host,
            proxy.port,
            status.trim()
        );
    }
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proxy_urls() {
        let p = HttpProxy::parse("http://user:p%40ss@proxy.corp:3128/").unwrap();
        assert_eq!(p.host, "proxy.corp");
        assert_eq!(p.port, 3128);
        assert_eq!(p.credentials.as_deref(), Some("user:p@ss"));
        let p = HttpProxy::parse("proxy.corp").unwrap();
        assert_eq!((p.port, p.credentials), (80, None));
        let p = HttpProxy::parse("http://[::1]:8080").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("::1", 8080));
        assert!(HttpProxy::parse("socks5://x:1").is_err());
    }

    #[test]
    fn no_proxy_matching() {
        let list = "localhost, .amazonaws.com,10.0.0.1,internal.corp:8443";
        for (host, want) in [
            ("eice-1.ec2-instance-connect-endpoint.us-east-1.amazonaws.com", true),
            ("amazonaws.com", true),
            ("notamazonaws.com", false),
            ("localhost", true),
            ("10.0.0.1", true),
            ("10.0.0.10", false),
            ("a.internal.corp", true),
            ("example.com", false),
        ] {
            assert_eq!(bypassed(host, list), want, "{host}");
        }
        assert!(bypassed("anything", "*"));
        assert!(!bypassed("anything", ""));
    }
}
