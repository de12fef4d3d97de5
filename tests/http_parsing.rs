//! What the worker makes of request heads and chunked bodies, seen on the wire from the
//! real `rgunicorn` binary with the `echo` app (issue 11's parser defects): absolute-form
//! targets, CONNECT, HTTP/0.9 lines, chunk extensions with whitespace, chunk sizes past a
//! file offset or past limit_request_body, and limit_request_field_size as configured.
//! Requests are written by hand and never half-closed, so "answered at once" means
//! answered while the connection still waits, within the 10 s read timeout and far below
//! the 30 s header timeout.

mod common;

use common::*;

/// The echo app's JSON answer to `raw`.
fn echo(server: &Server, raw: &[u8]) -> serde_json::Value {
    let resp = exchange(server.addr, raw);
    assert_eq!(resp.status, 200, "{}", resp.text());
    serde_json::from_slice(&resp.body).expect("echo answers JSON")
}

#[test]
fn absolute_form_target_is_split_by_rfc_9112_and_its_authority_wins() {
    let server = Server::start(&["echo"]);
    let got = echo(
        &server,
        b"GET http://h?next=/home HTTP/1.1\r\nHost: other.example:81\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(got["path"], "/");
    assert_eq!(got["query"], "next=/home");
    assert_eq!(got["raw_uri"], "http://h?next=/home");
    assert_eq!(got["server_name"], "h");
    assert_eq!(got["server_port"], "80");
    let got = echo(
        &server,
        b"GET https://example.com:8443/a%20b/c?x=1 HTTP/1.1\r\nHost: example.com\r\n\
          Connection: close\r\n\r\n",
    );
    assert_eq!(got["path"], "/a b/c");
    assert_eq!(got["query"], "x=1");
    assert_eq!(got["server_name"], "example.com");
    assert_eq!(got["server_port"], "8443");
}

#[test]
fn connect_is_405_and_http09_is_400_at_once() {
    let server = Server::start(&["echo", "--header-timeout", "30"]);
    let resp = exchange(
        server.addr,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    );
    assert_eq!(resp.status, 405);
    assert_eq!(resp.header("connection"), Some("close"));
    // The request line alone decides: no headers are waited for.
    let resp = exchange(server.addr, b"CONNECT example.com:443 HTTP/1.1\r\n");
    assert_eq!(resp.status, 405);
    let resp = exchange(server.addr, b"GET /\r\n");
    assert_eq!(resp.status, 400);
    assert_eq!(resp.header("connection"), Some("close"));
}

#[test]
fn chunk_extensions_may_have_whitespace() {
    let server = Server::start(&["echo"]);
    let got = echo(
        &server,
        b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
          5 ; name = value\r\nhello\r\n6;\tq=\"a b\"\r\n world\r\n0\r\n\r\n",
    );
    assert_eq!(got["body"], "hello world");
    assert_eq!(got["body_length"], 11);
}

#[test]
fn chunk_sizes_past_a_file_offset_or_the_body_limit_are_refused_before_their_data() {
    let head = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    let unlimited = Server::start(&["echo"]);
    let mut raw = head.to_vec();
    raw.extend_from_slice(b"ffffffffffffffff\r\n");
    assert_eq!(exchange(unlimited.addr, &raw).status, 400);
    // 0x65 = 101 bytes declared against a limit of 100: 413 on the size line alone.
    // (With a limit, `ff...` is 413 too: its second digit already declares 255.)
    let server = Server::start(&["echo", "--limit-request-body", "100"]);
    let mut raw = head.to_vec();
    raw.extend_from_slice(b"65\r\n");
    let resp = exchange(server.addr, &raw);
    assert_eq!(resp.status, 413);
    assert_eq!(resp.header("connection"), Some("close"));
    // Exactly at the limit is fine.
    let mut raw = head.to_vec();
    raw.extend_from_slice(b"64\r\n");
    raw.extend_from_slice(&[b'x'; 100]);
    raw.extend_from_slice(b"\r\n0\r\n\r\n");
    let resp = exchange(server.addr, &raw);
    assert_eq!(resp.status, 200);
}

#[test]
fn limit_request_field_size_is_the_configured_value_crlf_counted() {
    let server = Server::start(&["echo", "--limit-request-field-size", "16384"]);
    let field = |len: usize| {
        // "X-Big: " + value + CRLF is `len` bytes.
        let value = "v".repeat(len - "X-Big: ".len() - 2);
        format!("GET / HTTP/1.1\r\nHost: h\r\nX-Big: {value}\r\nConnection: close\r\n\r\n")
    };
    // Far past the 8190 it used to be clamped to, and exactly at the limit.
    assert_eq!(exchange(server.addr, field(16384).as_bytes()).status, 200);
    assert_eq!(exchange(server.addr, field(16385).as_bytes()).status, 431);
}
