//! Building the app's [`Environ`] from a parsed request head and what the connection
//! knows (peer address, listener, scheme), applying `X-Forwarded-*` only from trusted peers.

use std::net::{IpAddr, SocketAddr};

use crate::app::Environ;
use crate::config::ForwardedAllow;
use crate::http::{percent_decode_latin1, RequestHead, Version};

/// What the connection contributes to the environ.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The TCP peer; `None` on a unix socket.
    pub peer: Option<SocketAddr>,
    /// The listener's own address, for SERVER_NAME/PORT when the request has no Host.
    pub local: Option<SocketAddr>,
    /// Those addresses as the environ spells them, formatted once per connection
    /// rather than once per request: (REMOTE_ADDR, REMOTE_PORT), (SERVER_NAME, SERVER_PORT).
    peer_text: (String, String),
    local_text: (String, String),
}

impl ConnInfo {
    pub fn new(peer: Option<SocketAddr>, local: Option<SocketAddr>) -> ConnInfo {
        let text = |addr: Option<SocketAddr>| match addr {
            Some(a) => (a.ip().to_string(), a.port().to_string()),
            None => (String::new(), String::new()),
        };
        ConnInfo {
            peer,
            local,
            peer_text: text(peer),
            local_text: text(local),
        }
    }
}

pub fn build(head: &RequestHead, conn: &ConnInfo, trust: &ForwardedAllow) -> Environ {
    let target = head.target.as_str();
    // absolute-form (`GET http://host/path`): the app sees only the path.
    let origin = match target.find("://") {
        Some(i) if !target.starts_with('/') => {
            let after = &target[i + 3..];
            after.find('/').map(|p| &after[p..]).unwrap_or("/")
        }
        _ => target,
    };
    let (path, query) = match origin.split_once('?') {
        Some((p, q)) => (p, q),
        None => (origin, ""),
    };
    let headers: Vec<(String, String)> = head
        .headers
        .iter()
        .map(|h| (h.name.clone(), latin1(&h.value)))
        .collect();
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };

    let (mut server_name, mut server_port) = conn.local_text.clone();
    if let Some(host) = find("host").filter(|h| !h.is_empty()) {
        let (name, port) = split_host(host);
        server_name = name.to_string();
        if let Some(port) = port {
            server_port = port.to_string();
        }
    }

    let mut url_scheme = "http".to_string();
    let (mut remote_addr, mut remote_port) = conn.peer_text.clone();
    if trust.trusts(conn.peer.map(|p| p.ip())) {
        if let Some(proto) = find("x-forwarded-proto") {
            let proto = proto.trim().to_ascii_lowercase();
            if proto == "https" || proto == "http" {
                url_scheme = proto;
            }
        }
        // The trusted proxy appends the client it saw last; X-Real-IP is that same client.
        let client = find("x-real-ip").map(str::trim).or_else(|| {
            find("x-forwarded-for")
                .and_then(|v| v.rsplit(',').next())
                .map(str::trim)
        });
        if let Some(ip) = client.and_then(|c| c.parse::<IpAddr>().ok()) {
            remote_addr = ip.to_string();
            remote_port = String::new();
        }
        if url_scheme == "https" && conn.local.is_none() && find("host").is_none() {
            server_port = "443".into();
        }
    }
    if server_port.is_empty() {
        server_port = if url_scheme == "https" { "443" } else { "80" }.into();
    }

    Environ {
        method: head.method.clone(),
        script_name: String::new(),
        path_info: percent_decode_latin1(path),
        query_string: query.to_string(),
        raw_uri: target.to_string(),
        content_type: find("content-type").unwrap_or("").to_string(),
        content_length: find("content-length").unwrap_or("").to_string(),
        server_name,
        server_port,
        server_protocol: match head.version {
            Version::Http10 => "HTTP/1.0".into(),
            Version::Http11 => "HTTP/1.1".into(),
        },
        remote_addr,
        remote_port,
        url_scheme,
        headers,
    }
}

/// `host`, `host:port`, `[v6]:port`.
fn split_host(host: &str) -> (&str, Option<&str>) {
    if let Some(rest) = host.strip_prefix('[') {
        if let Some((v6, after)) = rest.split_once(']') {
            return (v6, after.strip_prefix(':'));
        }
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => (name, Some(port)),
        _ => (host, None),
    }
}

/// Header bytes as text: ISO-8859-1, as PEP 3333 requires.
pub fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_hosts() {
        assert_eq!(
            split_host("example.com:8080"),
            ("example.com", Some("8080"))
        );
        assert_eq!(split_host("[::1]:5000"), ("::1", Some("5000")));
        assert_eq!(split_host("example.com"), ("example.com", None));
    }
}
