//! What crosses the proxy: the request head sent to the workers (hop-by-hop headers
//! stripped, `X-Forwarded-*` and `X-Real-IP` set by the front, framing re-stated from the
//! parsed body kind), the response head sent to the client (hop-by-hop stripped, the
//! front's `Server`, optional HSTS, framing re-stated), and the front's own error pages.

use std::io::Write;
use std::net::IpAddr;

use rgunicorn_workers::http::{BodyKind, RequestHead, Version};

use super::log::http_date;
use super::settings::FrontSettings;
use super::upstream::ResponseHead;
pub use rgunicorn_workers::respond::reason;

/// Headers that describe one connection, never the message (RFC 9110 7.6.1), plus the
/// framing headers the front re-states itself.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// Headers only the front may set on the way in: a client sending them could otherwise
/// pose as another address or scheme to the workers, which trust the front.
const FRONT_OWNED: &[&str] = &[
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-protocol",
    "x-forwarded-ssl",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-real-ip",
    "expect",
];

/// Names listed in `Connection` headers: hop-by-hop too.
fn connection_tokens<'a>(headers: impl Iterator<Item = (&'a str, &'a [u8])>) -> Vec<String> {
    let mut tokens = Vec::new();
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("connection") {
            for token in String::from_utf8_lossy(value).split(',') {
                let token = token.trim().to_ascii_lowercase();
                if !token.is_empty() {
                    tokens.push(token);
                }
            }
        }
    }
    tokens
}

fn is_listed(name: &str, list: &[&str]) -> bool {
    list.iter().any(|n| name.eq_ignore_ascii_case(n))
}

/// The value of the first header `name`, as text.
pub fn header<'a>(head: &'a RequestHead, name: &str) -> Option<&'a str> {
    head.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .and_then(|h| std::str::from_utf8(&h.value).ok())
}

/// Append the head forwarded to the workers for `head` from `client` to `out`.
pub fn upstream_request(
    head: &RequestHead,
    client: IpAddr,
    settings: &FrontSettings,
    out: &mut Vec<u8>,
) {
    let tokens = connection_tokens(
        head.headers
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_slice())),
    );
    // Keep-alive with the workers is always HTTP/1.1, whatever the client spoke.
    let _ = write!(out, "{} {} HTTP/1.1\r\n", head.method, head.target);
    let mut forwarded_for: Vec<&[u8]> = Vec::new();
    let mut host: Option<&[u8]> = None;
    for h in &head.headers {
        let name = h.name.as_str();
        if name.eq_ignore_ascii_case("x-forwarded-for") {
            forwarded_for.push(&h.value);
            continue;
        }
        if is_listed(name, HOP_BY_HOP)
            || is_listed(name, FRONT_OWNED)
            || tokens.iter().any(|t| name.eq_ignore_ascii_case(t))
        {
            continue;
        }
        if name.eq_ignore_ascii_case("host") {
            host = Some(&h.value);
        }
        push_header(out, name, &h.value);
    }
    let fallback_host;
    let host = match host {
        Some(host) => host,
        None => {
            fallback_host = settings
                .server_name
                .clone()
                .unwrap_or_else(|| settings.listen.ip().to_string());
            push_header(out, "Host", fallback_host.as_bytes());
            fallback_host.as_bytes()
        }
    };
    // nginx's $proxy_add_x_forwarded_for: what the client sent, then the client. The
    // workers take the last entry (added here), never one a client could forge.
    let mut xff = Vec::new();
    for value in forwarded_for {
        xff.extend_from_slice(value);
        xff.extend_from_slice(b", ");
    }
    let client = client.to_string();
    xff.extend_from_slice(client.as_bytes());
    push_header(out, "X-Forwarded-For", &xff);
    push_header(out, "X-Forwarded-Proto", b"https");
    push_header(out, "X-Forwarded-Host", host);
    push_header(out, "X-Real-IP", client.as_bytes());
    match head.body {
        BodyKind::None => {}
        BodyKind::Length(n) => {
            let _ = write!(out, "Content-Length: {n}\r\n");
        }
        BodyKind::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
    }
    if settings.upstream_keepalive == 0 {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

fn push_header(out: &mut impl Write, name: &str, value: &[u8]) {
    let _ = out.write_all(name.as_bytes());
    let _ = out.write_all(b": ");
    let _ = out.write_all(value);
    let _ = out.write_all(b"\r\n");
}

/// How the client receives a response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFraming {
    /// No body (HEAD, 1xx, 204, 304).
    None,
    Length(u64),
    /// HTTP/1.1 client, body of unknown length: re-encoded chunked.
    Chunked,
    /// HTTP/1.0 client, body of unknown length: ends when the front closes.
    UntilClose,
}

/// Append the response head for the client to `out`.
pub fn client_response(
    resp: &ResponseHead,
    framing: ClientFraming,
    keep_alive: bool,
    version: Version,
    settings: &FrontSettings,
    out: &mut impl Write,
) {
    let tokens = connection_tokens(resp.headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())));
    let reason = if !resp.reason.is_empty()
        && resp
            .reason
            .bytes()
            .all(|b| b == b' ' || b == b'\t' || (b'!'..=b'~').contains(&b))
    {
        resp.reason.as_str()
    } else {
        reason(resp.status)
    };
    let _ = write!(out, "HTTP/1.1 {} {}\r\n", resp.status, reason);
    let mut has_date = false;
    let mut has_hsts = false;
    for (name, value) in &resp.headers {
        if is_listed(name, HOP_BY_HOP) || tokens.iter().any(|t| name.eq_ignore_ascii_case(t)) {
            continue;
        }
        if name.eq_ignore_ascii_case("server") && settings.server_header.is_some() {
            continue;
        }
        has_date |= name.eq_ignore_ascii_case("date");
        has_hsts |= name.eq_ignore_ascii_case("strict-transport-security");
        push_header(out, name, value);
    }
    if let Some(server) = &settings.server_header {
        push_header(out, "Server", server.as_bytes());
    }
    if !has_date {
        push_header(out, "Date", http_date().as_bytes());
    }
    if let (Some(hsts), false) = (&settings.hsts, has_hsts) {
        push_header(out, "Strict-Transport-Security", hsts.as_bytes());
    }
    match framing {
        ClientFraming::Length(n) => {
            let _ = write!(out, "Content-Length: {n}\r\n");
        }
        ClientFraming::None => {
            if let Some(n) = resp.content_length {
                let _ = write!(out, "Content-Length: {n}\r\n");
            }
        }
        ClientFraming::Chunked => {
            let _ = out.write_all(b"Transfer-Encoding: chunked\r\n");
        }
        ClientFraming::UntilClose => {}
    }
    connection_header(keep_alive, version, out);
    let _ = out.write_all(b"\r\n");
}

fn connection_header(keep_alive: bool, version: Version, out: &mut impl Write) {
    let line: &[u8] = match (keep_alive, version) {
        (false, _) => b"Connection: close\r\n",
        (true, Version::Http10) => b"Connection: keep-alive\r\n",
        (true, Version::Http11) => b"",
    };
    let _ = out.write_all(line);
}

/// A response the front makes itself (4xx/5xx), nginx-style HTML; the connection closes.
pub fn error_response(
    status: u16,
    head_only: bool,
    settings: &FrontSettings,
    out: &mut impl Write,
) {
    let reason = reason(status);
    let server = settings.server_header.as_deref().unwrap_or("");
    let body = format!(
        "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n<center><h1>{status} {reason}</h1></center>\r\n<hr><center>{server}</center>\r\n</body>\r\n</html>\r\n"
    );
    let _ = write!(out, "HTTP/1.1 {status} {reason}\r\n");
    if !server.is_empty() {
        push_header(out, "Server", server.as_bytes());
    }
    push_header(out, "Date", http_date().as_bytes());
    push_header(out, "Content-Type", b"text/html");
    let _ = write!(
        out,
        "Content-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(hsts) = &settings.hsts {
        push_header(out, "Strict-Transport-Security", hsts.as_bytes());
    }
    let _ = out.write_all(b"\r\n");
    if !head_only {
        let _ = out.write_all(body.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rgunicorn_workers::http::Header;

    fn head(headers: &[(&str, &str)], body: BodyKind) -> RequestHead {
        RequestHead {
            method: "POST".into(),
            target: "/a?b=1".into(),
            version: Version::Http11,
            headers: headers
                .iter()
                .map(|(n, v)| Header {
                    name: n.to_string(),
                    value: v.as_bytes().to_vec(),
                })
                .collect(),
            body,
            keep_alive: true,
            expect_continue: false,
            head_len: 0,
        }
    }

    #[test]
    fn request_strips_and_forwards() {
        let settings = FrontSettings::default();
        let h = head(
            &[
                ("Host", "example.com"),
                ("Connection", "keep-alive, X-Secret"),
                ("X-Secret", "1"),
                ("X-Forwarded-For", "10.0.0.1"),
                ("X-Real-IP", "6.6.6.6"),
                ("X-Forwarded-Proto", "http"),
                ("Transfer-Encoding", "chunked"),
                ("Accept", "*/*"),
            ],
            BodyKind::Chunked,
        );
        let mut out = Vec::new();
        upstream_request(&h, "192.0.2.7".parse().expect("ip"), &settings, &mut out);
        let text = String::from_utf8(out).expect("utf8");
        assert_eq!(
            text,
            "POST /a?b=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\
             X-Forwarded-For: 10.0.0.1, 192.0.2.7\r\nX-Forwarded-Proto: https\r\n\
             X-Forwarded-Host: example.com\r\nX-Real-IP: 192.0.2.7\r\n\
             Transfer-Encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn response_restates_framing_and_server() {
        let settings = FrontSettings {
            hsts: Some("max-age=31536000".into()),
            ..FrontSettings::default()
        };
        let resp = ResponseHead {
            status: 200,
            reason: "OK".into(),
            headers: vec![
                ("Server".into(), b"gunicorn".to_vec()),
                ("Connection".into(), b"close".to_vec()),
                ("Transfer-Encoding".into(), b"chunked".to_vec()),
                ("Date".into(), b"Mon, 01 Jan 2024 00:00:00 GMT".to_vec()),
                ("Content-Type".into(), b"text/plain".to_vec()),
            ],
            framing: super::super::upstream::Framing::Chunked,
            content_length: None,
            close: true,
            head_len: 0,
        };
        let mut out = Vec::new();
        client_response(
            &resp,
            ClientFraming::Chunked,
            true,
            Version::Http11,
            &settings,
            &mut out,
        );
        let text = String::from_utf8(out).expect("utf8");
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nContent-Type: text/plain\r\n\
             Server: rgunicorn-front\r\nStrict-Transport-Security: max-age=31536000\r\n\
             Transfer-Encoding: chunked\r\n\r\n"
        );
    }
}
