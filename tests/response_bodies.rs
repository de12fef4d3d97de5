//! What the worker does with an app's response body (issue 9's needs from the event
//! loop): files go out whole (with sendfile) on TCP and unix sockets; a body that breaks
//! the Content-Length its app declared closes the connection rather than leave it out of
//! step; a stream whose client has gone is dropped on its app thread.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::*;

fn request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes()
}

/// 8 MiB that are not all the same byte, so a misplaced piece shows.
fn big_file(dir: &std::path::Path) -> (std::path::PathBuf, Vec<u8>) {
    let data: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
    let path = dir.join("big.bin");
    std::fs::write(&path, &data).expect("write file");
    (path, data)
}

fn fetch_twice<S: Read + Write>(stream: S, want: &[u8]) {
    let mut reader = Reader::new(stream);
    for round in 0..2 {
        reader.get_mut().write_all(&request("/file")).expect("send");
        let resp = reader.response(false).expect("answer");
        assert_eq!(resp.status, 200);
        assert_eq!(
            resp.header("content-length"),
            Some(want.len().to_string().as_str())
        );
        assert!(resp.body == want, "round {round}: the file arrived changed");
    }
}

#[test]
fn a_file_body_arrives_whole_over_tcp_and_unix_sockets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, data) = big_file(dir.path());
    let sock = dir.path().join("w.sock");
    let unix = format!("unix:{}", sock.display());
    let file = path.to_str().expect("utf-8");
    let server = Server::start_bin(
        &custom_app_bin(),
        &["-b", "127.0.0.1:0", "-b", &unix],
        &[("DEMO_FILE", file)],
    );
    fetch_twice(server.connect(), &data);
    let stream = UnixStream::connect(&sock).expect("connect unix");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    fetch_twice(stream, &data);
}

/// Read everything until the server closes; an error (a reset) fails the test.
fn read_to_close(stream: &mut std::net::TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    stream.read_to_end(&mut all).expect("a clean close");
    all
}

fn body_of(raw: &[u8]) -> &[u8] {
    let at = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    &raw[at + 4..]
}

#[test]
fn a_stream_shorter_than_its_content_length_closes_the_connection() {
    let server = Server::start_bin(&custom_app_bin(), &[], &[]);
    let mut stream = server.connect();
    stream
        .write_all(&request("/stream?n=3&size=5&declare=20"))
        .expect("send");
    let raw = read_to_close(&mut stream);
    assert!(raw.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert_eq!(body_of(&raw), b"aaaaabbbbbccccc");
    wait_until(Duration::from_secs(5), "the warning", || {
        server.log().contains("shorter than its Content-Length")
    });
}

#[test]
fn a_stream_longer_than_its_content_length_is_cut_there_and_closed() {
    let server = Server::start_bin(&custom_app_bin(), &[], &[]);
    let mut stream = server.connect();
    // A second request behind it must not be read as part of the first answer.
    let mut two = request("/stream?n=3&size=5&declare=7");
    two.extend_from_slice(&request("/hello"));
    stream.write_all(&two).expect("send");
    let raw = read_to_close(&mut stream);
    assert_eq!(body_of(&raw), b"aaaaabb");
    wait_until(Duration::from_secs(5), "the warning", || {
        server.log().contains("longer than its Content-Length")
    });
}

#[test]
fn a_bytes_body_that_breaks_its_content_length_says_close() {
    let server = Server::start_bin(&custom_app_bin(), &[], &[]);
    for (declare, body) in [(3, &b"hel"[..]), (10, &b"hello\n"[..])] {
        let mut stream = server.connect();
        stream
            .write_all(&request(&format!("/lie?declare={declare}")))
            .expect("send");
        let raw = read_to_close(&mut stream);
        let text = String::from_utf8_lossy(&raw);
        assert!(text.contains("Connection: close\r\n"), "{text}");
        assert_eq!(body_of(&raw), body, "{text}");
    }
}

/// The client reads the start of an endless stream and leaves: the app thread drops the
/// app's iterator (a Python iterable's close() would run) when it next hands over a
/// chunk, not a chunk later after a failed write, nor after a timeout.
#[test]
fn a_stream_whose_client_left_is_dropped_on_its_app_thread() {
    let server = Server::start_bin(&custom_app_bin(), &[], &[]);
    let mut stream = server.connect();
    stream
        .write_all(&request("/forever?ms=1500"))
        .expect("send");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"tick\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) => panic!("closed early"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    drop(stream);
    let left = Instant::now();
    wait_until(Duration::from_secs(10), "the stream to be dropped", || {
        server.log().contains("demo stream dropped")
    });
    // One chunk interval (1.5 s) at most; two would mean the loop noticed only when a
    // write failed.
    assert!(
        left.elapsed() < Duration::from_millis(2500),
        "dropped {:?} after the client left",
        left.elapsed()
    );
}
