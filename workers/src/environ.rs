//! Building the app's [`Environ`] from a parsed request head and what the connection
//! knows (peer address, listener, scheme), applying `X-Forwarded-*` only from trusted
//! peers. The target's parts come decoded from `rgunicorn_http`; turning them into WSGI's
//! strings (PATH_INFO's percent-decoding read as latin-1) happens here and only here.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use rgunicorn_http::fields::trim_ows;
use rgunicorn_http::{resend, split_authority, RequestHead, TargetForm};

use crate::app::Environ;
use crate::config::ForwardedAllow;

/// What the connection contributes to the environ.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The TCP peer; `None` on a unix socket.
    pub peer: Option<SocketAddr>,
    /// A unix-socket peer whose credentials are trusted to forward (root, the front).
    pub trusted_unix_peer: bool,
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
            trusted_unix_peer: false,
            local,
            peer_text: text(peer),
            local_text: text(local),
        }
    }
}

/// The environ of one request, built afresh (tests, tools); a connection refills its
/// own with [`fill`] instead.
pub fn build(head: &RequestHead<'_>, conn: &ConnInfo, trust: &ForwardedAllow) -> Environ {
    let mut environ = Environ::default();
    let _ = fill(&mut environ, head, conn, trust);
    environ
}

/// Overwrite `environ` with this request's keys. Every string is cleared and written in
/// place, and header entries are reused in order, so a keep-alive connection that
/// refills the same environ allocates nothing once its strings have grown to fit.
/// Returns whether the head carries the front's offer to take the request back
/// (`rgunicorn_http::resend`), which the environ leaves out.
#[must_use]
pub fn fill(
    environ: &mut Environ,
    head: &RequestHead<'_>,
    conn: &ConnInfo,
    trust: &ForwardedAllow,
) -> bool {
    let target = &head.target;
    // RFC 9112 3.2.2: with an absolute-form target the server must ignore Host and use
    // the target's authority; the app sees it in HTTP_HOST too, as a proxy would send it.
    let absolute_authority = match target.form() {
        TargetForm::Absolute => target.authority(),
        _ => None,
    };
    let headers = &mut environ.headers;
    // The front's offer to take the request back is between the front and the worker
    // (`rgunicorn_http::resend`): the app does not see it.
    let mut offered = false;
    let fields = head.fields.iter().filter(|f| {
        let offer = f.name.eq_ignore_ascii_case(resend::OFFER_FIELD);
        offered |= offer;
        !offer
    });
    let mut kept = 0;
    for (i, f) in fields.enumerate() {
        kept = i + 1;
        let value = match absolute_authority {
            Some(authority) if f.name.eq_ignore_ascii_case("host") => authority.as_bytes(),
            _ => f.value,
        };
        match headers.get_mut(i) {
            Some((name, old)) => {
                set(name, f.name);
                set_latin1(old, value);
            }
            None => headers.push((f.name.to_owned(), latin1(value))),
        }
    }
    headers.truncate(kept);

    let mut url_scheme = "http";
    let mut client = None;
    let trusted = match conn.peer {
        Some(peer) => trust.trusts(Some(peer.ip())),
        None => conn.trusted_unix_peer || *trust == ForwardedAllow::All,
    };
    if trusted {
        if let Some(proto) = head.header("x-forwarded-proto") {
            if trim_ows(proto).eq_ignore_ascii_case(b"https") {
                url_scheme = "https";
            }
        }
        // The trusted proxy appends the client it saw last; X-Real-IP is that same client.
        client = head
            .header("x-real-ip")
            .or_else(|| {
                head.header("x-forwarded-for")
                    .and_then(|v| v.rsplit(|&b| b == b',').next())
            })
            .and_then(|c| std::str::from_utf8(trim_ows(c)).ok())
            .and_then(|c| c.parse::<IpAddr>().ok());
    }
    match client {
        Some(ip) => {
            environ.remote_addr.clear();
            // Writing into a String cannot fail.
            let _ = write!(environ.remote_addr, "{ip}");
            environ.remote_port.clear();
        }
        None => {
            set(&mut environ.remote_addr, &conn.peer_text.0);
            set(&mut environ.remote_port, &conn.peer_text.1);
        }
    }

    // SERVER_NAME and SERVER_PORT: from the request's authority (the target's, else
    // Host), the port defaulting by scheme as gunicorn does; else from the listener.
    let default_port = if url_scheme == "https" { "443" } else { "80" };
    let (server_name, server_port) = match head.authority() {
        Some(authority) => {
            let (name, port) = split_authority(authority);
            let name = name
                .strip_prefix('[')
                .and_then(|n| n.strip_suffix(']'))
                .unwrap_or(name);
            (name, port.unwrap_or(default_port))
        }
        None => {
            let (name, port) = &conn.local_text;
            let port = if port.is_empty() { default_port } else { port };
            (name.as_str(), port)
        }
    };
    set(&mut environ.server_name, server_name);
    set(&mut environ.server_port, server_port);

    set(&mut environ.method, head.method);
    environ.script_name.clear();
    environ.path_info.clear();
    push_path_info(&mut environ.path_info, target.path());
    set(&mut environ.query_string, target.query());
    set(&mut environ.raw_uri, target.raw());
    set_latin1(
        &mut environ.content_type,
        head.header("content-type").unwrap_or_default(),
    );
    set_latin1(
        &mut environ.content_length,
        head.header("content-length").unwrap_or_default(),
    );
    set(&mut environ.server_protocol, head.version.as_str());
    set(&mut environ.url_scheme, url_scheme);
    offered
}

fn set(field: &mut String, value: &str) {
    field.clear();
    field.push_str(value);
}

fn set_latin1(field: &mut String, value: &[u8]) {
    field.clear();
    match std::str::from_utf8(value) {
        // ASCII reads the same as latin-1 and UTF-8: copied whole (the usual case).
        Ok(text) if text.is_ascii() => field.push_str(text),
        _ => field.extend(value.iter().map(|&b| char::from(b))),
    }
}

/// PATH_INFO as gunicorn builds it: `%XX` escapes decoded and each resulting byte mapped
/// to the char of the same code point (latin-1), like Python's
/// `unquote_to_bytes(path).decode("latin-1")` (PEP 3333 "bytes as latin-1 str").
/// Malformed escapes stay as they are (the parser refuses them in paths anyway).
pub fn path_info(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    push_path_info(&mut out, path);
    out
}

/// [`path_info`] appended to `out`.
fn push_path_info(out: &mut String, path: &str) {
    if path.is_ascii() && !path.contains('%') {
        // Nothing to decode (the usual case): copied whole.
        out.push_str(path);
        return;
    }
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            if let Some([h, l]) = bytes.get(i + 1..i + 3) {
                if let (Some(h), Some(l)) = (hex_val(*h), hex_val(*l)) {
                    out.push(char::from(h * 16 + l));
                    i += 3;
                    continue;
                }
            }
        }
        out.push(char::from(b));
        i += 1;
    }
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// Header bytes as text: ISO-8859-1, as PEP 3333 requires.
pub fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rgunicorn_http::{parse_request_head, Limits};

    fn environ(raw: &[u8], local: Option<&str>) -> Environ {
        let head = parse_request_head(raw, &Limits::default())
            .expect("valid")
            .expect("complete");
        let conn = ConnInfo::new(
            Some("192.0.2.9:5555".parse().expect("addr")),
            local.map(|l| l.parse().expect("addr")),
        );
        build(&head, &conn, &ForwardedAllow::Ips(Vec::new()))
    }

    #[test]
    fn a_refilled_environ_keeps_nothing_of_the_last_request() {
        let limits = Limits::default();
        let conn = ConnInfo::new(
            Some("127.0.0.1:5555".parse().expect("addr")),
            Some("127.0.0.1:8000".parse().expect("addr")),
        );
        let trust = ForwardedAllow::Ips(vec![IpAddr::from([127, 0, 0, 1])]);
        let first: &[u8] =
            b"POST /a%20b?x=1 HTTP/1.1\r\nHost: h:81\r\nContent-Type: text/plain\r\n\
            Content-Length: 3\r\nX-Forwarded-Proto: https\r\nX-Real-IP: 192.0.2.7\r\n\r\n";
        let second: &[u8] = b"GET / HTTP/1.0\r\nUser-Agent: t\r\n\r\n";
        let mut refilled = Environ::default();
        for raw in [first, second] {
            let head = parse_request_head(raw, &limits)
                .expect("valid")
                .expect("complete");
            let _ = fill(&mut refilled, &head, &conn, &trust);
        }
        let head = parse_request_head(second, &limits)
            .expect("valid")
            .expect("complete");
        let fresh = build(&head, &conn, &trust);
        assert_eq!(refilled, fresh);
        assert_eq!(refilled.headers, vec![("User-Agent".into(), "t".into())]);
        assert_eq!(
            (refilled.remote_addr.as_str(), refilled.url_scheme.as_str()),
            ("127.0.0.1", "http")
        );
        assert_eq!(refilled.content_length, "");
    }

    #[test]
    fn fill_says_whether_the_front_offered_to_take_the_request_back() {
        let conn = ConnInfo::new(None, None);
        let trust = ForwardedAllow::Ips(Vec::new());
        let mut environ = Environ::default();
        for (raw, offered) in [
            (
                &b"GET / HTTP/1.1\r\nHost: h\r\nX-Rgunicorn-Resend: 1\r\n\r\n"[..],
                true,
            ),
            (&b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"[..], false),
        ] {
            let head = parse_request_head(raw, &Limits::default())
                .expect("valid")
                .expect("complete");
            assert_eq!(fill(&mut environ, &head, &conn, &trust), offered);
        }
    }

    #[test]
    fn the_fronts_offer_to_take_a_request_back_never_reaches_the_app() {
        let e = environ(
            b"GET / HTTP/1.1\r\nHost: h\r\nX-Rgunicorn-Resend: 1\r\nAccept: */*\r\n\r\n",
            None,
        );
        assert_eq!(
            e.headers,
            vec![("Host".into(), "h".into()), ("Accept".into(), "*/*".into())]
        );
    }

    #[test]
    fn a_trusted_forwarded_client_replaces_the_peer() {
        let raw = b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.0.0.1, 192.0.2.8 \r\n\
            X-Forwarded-Proto: https\r\n\r\n";
        let head = parse_request_head(raw, &Limits::default())
            .expect("valid")
            .expect("complete");
        let peer = ConnInfo::new(Some("127.0.0.1:5555".parse().expect("addr")), None);
        let trusted = build(&head, &peer, &ForwardedAllow::All);
        assert_eq!(
            (
                trusted.remote_addr.as_str(),
                trusted.remote_port.as_str(),
                trusted.url_scheme.as_str(),
                trusted.server_port.as_str()
            ),
            ("192.0.2.8", "", "https", "443")
        );
        let untrusted = build(&head, &peer, &ForwardedAllow::Ips(Vec::new()));
        assert_eq!(
            (
                untrusted.remote_addr.as_str(),
                untrusted.url_scheme.as_str()
            ),
            ("127.0.0.1", "http")
        );
    }

    #[test]
    fn path_info_is_latin1_of_decoded_bytes() {
        assert_eq!(path_info("/a%20b"), "/a b");
        assert_eq!(path_info("/caf%C3%A9"), "/caf\u{c3}\u{a9}");
        assert_eq!(path_info("/%2fx%"), "//x%");
        assert_eq!(path_info("/%g1%4"), "/%g1%4");
        let env = environ(b"GET /a%2Fb%20c?x=%20 HTTP/1.1\r\nHost: h\r\n\r\n", None);
        assert_eq!(
            (env.path_info.as_str(), env.query_string.as_str()),
            ("/a/b c", "x=%20")
        );
    }

    #[test]
    fn absolute_form_target_wins_over_host() {
        let env = environ(
            b"GET http://h?next=/home HTTP/1.1\r\nHost: other:81\r\n\r\n",
            Some("127.0.0.1:8000"),
        );
        assert_eq!(env.path_info, "/");
        assert_eq!(env.query_string, "next=/home");
        assert_eq!(env.raw_uri, "http://h?next=/home");
        assert_eq!(
            (env.server_name.as_str(), env.server_port.as_str()),
            ("h", "80")
        );
        assert_eq!(env.header("host"), Some("h"));
        let env = environ(
            b"GET http://[::1]:9/x HTTP/1.1\r\nHost: other\r\n\r\n",
            Some("127.0.0.1:8000"),
        );
        assert_eq!(
            (env.server_name.as_str(), env.server_port.as_str()),
            ("::1", "9")
        );
    }

    #[test]
    fn server_name_from_host_else_listener() {
        let env = environ(
            b"GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
            Some("127.0.0.1:8000"),
        );
        assert_eq!(
            (env.server_name.as_str(), env.server_port.as_str()),
            ("example.com", "8080")
        );
        // gunicorn: a Host without a port means the scheme's port.
        let env = environ(
            b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
            Some("127.0.0.1:8000"),
        );
        assert_eq!(env.server_port, "80");
        let env = environ(b"GET / HTTP/1.0\r\n\r\n", Some("127.0.0.1:8000"));
        assert_eq!(
            (env.server_name.as_str(), env.server_port.as_str()),
            ("127.0.0.1", "8000")
        );
        let env = environ(b"GET / HTTP/1.1\r\nHost:\r\n\r\n", None);
        assert_eq!(
            (env.server_name.as_str(), env.server_port.as_str()),
            ("", "80")
        );
        assert_eq!(env.server_protocol, "HTTP/1.1");
    }
}
