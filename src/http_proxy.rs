//! TCP connections to the endpoint, directly or through `HTTPS_PROXY` (else `HTTP_PROXY`, as
//! the AWS CLI's tunnel also uses it) by HTTP CONNECT, with `NO_PROXY` honoured as curl and the
//! AWS SDKs do.

use anyhow::{bail, Context};
use percent_encoding::percent_decode_str;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::error;

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
    let name = format!("{}:{}", proxy.host, proxy.port);
    let status = read_head(&mut stream, &name).await?;
    let code = status.split_whitespace().nth(1).unwrap_or_default();
    if code != "200" {
        bail!(
            "the proxy {name} refused CONNECT {host}:{port}: {}",
            error::printable(status.trim())
        );
    }
    Ok(stream)
}

/// The most of a CONNECT reply's head that is read: a proxy sends a few hundred bytes; one that
/// sends more is broken or hostile, and must not make eic grow its memory without end.
const MAX_HEAD: u64 = 8 << 10;
/// The most header lines of a CONNECT reply that are read.
const MAX_HEADER_LINES: usize = 100;

/// Reads the proxy's reply head (status line, headers, blank line), at most [`MAX_HEAD`] bytes
/// and [`MAX_HEADER_LINES`] headers, and returns the status line.
async fn read_head<R: AsyncRead + Unpin>(stream: R, proxy: &str) -> anyhow::Result<String> {
    // One byte per read: what follows the head is the tunnel, and must be left unread.
    let mut reader = BufReader::with_capacity(1, stream).take(MAX_HEAD);
    let mut status = Vec::new();
    let mut headers = 0;
    loop {
        let mut line = Vec::new();
        let read = reader
            .read_until(b'\n', &mut line)
            .await
            .with_context(|| format!("cannot read the reply of the proxy {proxy} to CONNECT"))?;
        if reader.limit() == 0 && !line.ends_with(b"\n") {
            bail!(
                "the proxy {proxy} sent a reply head longer than {} KiB to CONNECT: is it an HTTP proxy?",
                MAX_HEAD >> 10
            );
        }
        if read == 0 || !line.ends_with(b"\n") {
            bail!("the proxy {proxy} closed the connection before it answered CONNECT");
        }
        if status.is_empty() {
            status = line;
            continue;
        }
        if line == b"\r\n" || line == b"\n" {
            return Ok(String::from_utf8_lossy(&status).into_owned());
        }
        headers += 1;
        if headers > MAX_HEADER_LINES {
            bail!(
                "the proxy {proxy} sent more than {MAX_HEADER_LINES} header lines in its reply to CONNECT: is it an HTTP proxy?"
            );
        }
    }
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

    /// `read_head` over `reply`: its result, and what it left unread.
    async fn head_of(reply: &[u8]) -> (anyhow::Result<String>, Vec<u8>) {
        let mut rest = reply;
        let head = read_head(&mut rest, "proxy.corp:3128").await;
        (head, rest.to_vec())
    }

    #[tokio::test]
    async fn the_reply_head_is_read_to_its_end_and_no_further() {
        let reply = b"HTTP/1.1 200 Connection established\r\nVia: 1.1 squid\r\n\r\nSSH-2.0-x";
        let (head, rest) = head_of(reply).await;
        assert_eq!(head.unwrap(), "HTTP/1.1 200 Connection established\r\n");
        assert_eq!(rest, b"SSH-2.0-x", "the tunnel's first bytes stay unread");

        // Exactly the limits: 100 header lines, in 8 KiB.
        let mut reply = b"HTTP/1.1 200 OK\r\n".to_vec();
        let line = |i: usize| format!("X-{i:03}: {}\r\n", "v".repeat(60));
        for i in 0..MAX_HEADER_LINES {
            reply.extend_from_slice(line(i).as_bytes());
        }
        reply.extend_from_slice(b"\r\n");
        assert!(reply.len() as u64 <= MAX_HEAD, "{}", reply.len());
        assert!(head_of(&reply).await.0.is_ok());
    }

    #[tokio::test]
    async fn a_reply_head_over_8_kib_is_refused_naming_the_proxy() {
        // One endless header line, and many short ones.
        let mut long_line = b"HTTP/1.1 200 OK\r\nX-Junk: ".to_vec();
        long_line.resize(1 << 20, b'a');
        let mut long_head = b"HTTP/1.1 200 OK\r\n".to_vec();
        while long_head.len() < 16 << 10 {
            long_head.extend_from_slice(format!("X-Pad: {}\r\n", "p".repeat(200)).as_bytes());
        }
        for reply in [long_line, long_head] {
            let (head, rest) = head_of(&reply).await;
            let message = format!("{:#}", head.unwrap_err());
            assert!(message.contains("proxy.corp:3128"), "{message}");
            assert!(message.contains("longer than 8 KiB"), "{message}");
            assert_eq!(reply.len() - rest.len(), 8 << 10, "read past the limit");
        }
    }

    #[tokio::test]
    async fn more_than_100_header_lines_are_refused_naming_the_proxy() {
        let mut reply = b"HTTP/1.1 200 OK\r\n".to_vec();
        reply.extend(b"X: y\r\n".repeat(MAX_HEADER_LINES + 1));
        reply.extend_from_slice(b"\r\n");
        let message = format!("{:#}", head_of(&reply).await.0.unwrap_err());
        assert!(message.contains("proxy.corp:3128"), "{message}");
        assert!(message.contains("more than 100 header lines"), "{message}");
    }

    #[tokio::test]
    async fn a_reply_cut_short_says_the_proxy_closed() {
        for reply in [&b""[..], b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 200 OK\r\nVia: x"] {
            let message = format!("{:#}", head_of(reply).await.0.unwrap_err());
            assert!(message.contains("proxy.corp:3128 closed the connection"), "{message}");
        }
    }

    #[tokio::test]
    async fn a_refusals_status_line_is_shown_escaped() {
        // A proxy that only accepts, then answers with terminal escapes in its status line.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut client, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 1024];
            let _ = tokio::io::AsyncReadExt::read(&mut client, &mut request).await;
            let reply = b"HTTP/1.1 407 \x1b]0;pwned\x07\xe2\x80\xae\r\n\r\n";
            client.write_all(reply).await.unwrap();
        });
        let proxy = HttpProxy { host: "127.0.0.1".into(), port, credentials: None };
        let error = tunnel_through(&proxy, "eice.example", 443).await.unwrap_err();
        let message = format!("{error:#}");
        assert!(
            message.contains(&format!("the proxy 127.0.0.1:{port} refused CONNECT")),
            "{message}"
        );
        assert!(message.ends_with("HTTP/1.1 407 \\u{1b}]0;pwned\\u{7}\\u{202e}"), "{message}");
        server.await.unwrap();
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
