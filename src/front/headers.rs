//! What crosses the proxy: the request head sent to the workers (hop-by-hop fields
//! stripped, `X-Forwarded-*` and `X-Real-IP` set by the front, the target in origin form
//! with the authority it names as `Host`, framing re-stated from the parsed body), the
//! response head sent to the client (hop-by-hop stripped, the front's `Server`, optional
//! HSTS, framing re-stated), and the front's own error pages. The heads are
//! `rgunicorn_http`'s, borrowed from the buffers they were parsed in.

use std::io::Write;

use rgunicorn_http::date::with_http_date;
use rgunicorn_http::{
    is_framing_field, reason, resend, Fields, Framing, RequestHead, ResponseHead, Version,
};

use super::settings::FrontSettings;

/// Fields only the front may set on the way in: a client sending them could otherwise
/// pose as another address or scheme to the workers, which trust the front, or offer
/// its request to be handed back. (`Expect` is answered by the front itself.)
const FRONT_OWNED: &[&str] = &[
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-protocol",
    "x-forwarded-ssl",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-real-ip",
    "expect",
    resend::OFFER_FIELD,
];

/// Whether a field of `fields` named `name` stops at this hop: hop-by-hop by definition or
/// listed in `Connection` (RFC 9110 7.6.1), or framing the front states itself.
fn stops_here(fields: &Fields<'_>, has_connection: bool, name: &str) -> bool {
    is_framing_field(name)
        || rgunicorn_http::is_hop_by_hop(name)
        || has_connection && fields.connection_lists(name)
}

/// Append the head forwarded to the workers for `head` from `client` to `out`.
pub fn upstream_request(
    head: &RequestHead<'_>,
    client: &str,
    settings: &FrontSettings,
    out: &mut Vec<u8>,
) {
    // Keep-alive with the workers is always HTTP/1.1, whatever the client spoke, and the
    // target is the origin form whatever form came (RFC 9112 3.2.1).
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    head.target.write_origin_form(out);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let has_connection = head.fields.get("connection").is_some();
    let mut forwarded_for: Vec<&[u8]> = Vec::new();
    for field in head.fields.iter() {
        let name = field.name;
        if name.eq_ignore_ascii_case("x-forwarded-for") {
            forwarded_for.push(field.value);
        } else if !(name.eq_ignore_ascii_case("host")
            || stops_here(&head.fields, has_connection, name)
            || FRONT_OWNED.iter().any(|n| name.eq_ignore_ascii_case(n)))
        {
            push_header(out, name, field.value);
        }
    }
    // The authority the request is for: an absolute-form target's wins over Host
    // (RFC 9112 3.2.2); the front's own name when there is neither.
    let fallback;
    let host = match head.authority() {
        Some(authority) => authority,
        None => {
            fallback = settings
                .server_name
                .clone()
                .unwrap_or_else(|| settings.listen.ip().to_string());
            &fallback
        }
    };
    push_header(out, "Host", host.as_bytes());
    // nginx's $proxy_add_x_forwarded_for: what the client sent, then the client. The
    // workers take the last entry (added here), never one a client could forge.
    out.extend_from_slice(b"X-Forwarded-For: ");
    for value in forwarded_for {
        out.extend_from_slice(value);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(client.as_bytes());
    out.extend_from_slice(b"\r\nX-Forwarded-Proto: https\r\n");
    push_header(out, "X-Forwarded-Host", host.as_bytes());
    push_header(out, "X-Real-IP", client.as_bytes());
    match head.body {
        Framing::Length(n) => {
            let _ = write!(out, "Content-Length: {n}\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        Framing::NoBody | Framing::UntilClose => {}
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

/// Append the response head for the client to `out`: `framing` is how the front sends
/// the body (re-chunked for an HTTP/1.1 client when the workers' body has no length).
pub fn client_response(
    resp: &ResponseHead<'_>,
    framing: Framing,
    keep_alive: bool,
    version: Version,
    settings: &FrontSettings,
    out: &mut impl Write,
) {
    let printable = |b: &u8| *b == b' ' || *b == b'\t' || (b'!'..=b'~').contains(b);
    let reason = match std::str::from_utf8(resp.reason) {
        Ok(text) if !text.is_empty() && resp.reason.iter().all(printable) => text,
        _ => reason(resp.status),
    };
    let _ = write!(out, "HTTP/1.1 {} {}\r\n", resp.status, reason);
    let has_connection = resp.fields.get("connection").is_some();
    let mut has_date = false;
    let mut has_hsts = false;
    for field in resp.fields.iter() {
        let name = field.name;
        if stops_here(&resp.fields, has_connection, name)
            || name.eq_ignore_ascii_case("server") && settings.server_header.is_some()
        {
            continue;
        }
        has_date |= name.eq_ignore_ascii_case("date");
        has_hsts |= name.eq_ignore_ascii_case("strict-transport-security");
        push_header(out, name, field.value);
    }
    if let Some(server) = &settings.server_header {
        push_header(out, "Server", server.as_bytes());
    }
    if !has_date {
        with_http_date(|date| push_header(out, "Date", date.as_bytes()));
    }
    if let (Some(hsts), false) = (&settings.hsts, has_hsts) {
        push_header(out, "Strict-Transport-Security", hsts.as_bytes());
    }
    match framing {
        Framing::Length(n) => {
            let _ = write!(out, "Content-Length: {n}\r\n");
        }
        Framing::NoBody => {
            // HEAD and 304 re-state the length the workers announced.
            if let Some(n) = resp.content_length {
                let _ = write!(out, "Content-Length: {n}\r\n");
            }
        }
        Framing::Chunked => {
            let _ = out.write_all(b"Transfer-Encoding: chunked\r\n");
        }
        Framing::UntilClose => {}
    }
    let line: &[u8] = match (keep_alive, version) {
        (false, _) => b"Connection: close\r\n",
        (true, Version::Http10) => b"Connection: keep-alive\r\n",
        (true, Version::Http11) => b"",
    };
    let _ = out.write_all(line);
    let _ = out.write_all(b"\r\n");
}

/// A response the front makes itself (4xx/5xx), nginx-style HTML; the connection closes.
/// Returns the length of its body (0 for HEAD), for the access log.
pub fn error_response(
    status: u16,
    head_only: bool,
    settings: &FrontSettings,
    out: &mut impl Write,
) -> u64 {
    let reason = reason(status);
    let server = settings.server_header.as_deref().unwrap_or("");
    let body = format!(
        "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n<center><h1>{status} {reason}</h1></center>\r\n<hr><center>{server}</center>\r\n</body>\r\n</html>\r\n"
    );
    let _ = write!(out, "HTTP/1.1 {status} {reason}\r\n");
    if !server.is_empty() {
        push_header(out, "Server", server.as_bytes());
    }
    with_http_date(|date| push_header(out, "Date", date.as_bytes()));
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
    if head_only {
        return 0;
    }
    let _ = out.write_all(body.as_bytes());
    body.len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use rgunicorn_http::{parse_request_head, parse_response_head, Limits};

    /// The head the front sends the workers for `raw`, from client 192.0.2.7, default settings.
    fn forwarded(raw: &[u8]) -> String {
        let head = parse_request_head(raw, &Limits::default())
            .expect("valid")
            .expect("complete");
        let mut out = Vec::new();
        upstream_request(&head, "192.0.2.7", &FrontSettings::default(), &mut out);
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn request_strips_and_forwards() {
        let raw =
            b"POST /a?b=1 HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive, X-Secret\r\n\
            X-Secret: 1\r\nX-Forwarded-For: 10.0.0.1\r\nX-Real-IP: 6.6.6.6\r\n\
            X-Forwarded-Proto: http\r\nTransfer-Encoding: chunked\r\nAccept: */*\r\n\r\n";
        let text = forwarded(raw);
        assert_eq!(
            text,
            "POST /a?b=1 HTTP/1.1\r\nAccept: */*\r\nHost: example.com\r\n\
             X-Forwarded-For: 10.0.0.1, 192.0.2.7\r\nX-Forwarded-Proto: https\r\n\
             X-Forwarded-Host: example.com\r\nX-Real-IP: 192.0.2.7\r\n\
             Transfer-Encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn an_absolute_target_is_forwarded_in_origin_form_with_its_authority() {
        let raw = b"GET http://h.example?next=/home HTTP/1.1\r\nHost: other.example\r\n\r\n";
        let text = forwarded(raw);
        assert!(
            text.starts_with("GET /?next=/home HTTP/1.1\r\nHost: h.example\r\n"),
            "{text}"
        );
        assert!(text.contains("X-Forwarded-Host: h.example\r\n"), "{text}");
    }

    #[test]
    fn response_restates_framing_and_server() {
        let settings = FrontSettings {
            hsts: Some("max-age=31536000".into()),
            ..FrontSettings::default()
        };
        let raw = b"HTTP/1.1 200 OK\r\nServer: gunicorn\r\nConnection: close\r\n\
            Transfer-Encoding: chunked\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\n\
            Content-Type: text/plain\r\n\r\n";
        let resp = parse_response_head(raw, false)
            .expect("valid")
            .expect("complete");
        let mut out = Vec::new();
        client_response(
            &resp,
            Framing::Chunked,
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
