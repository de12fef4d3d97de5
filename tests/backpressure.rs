//! A worker's memory is bounded by its settings, not by what a client sends (issue 11):
//! deep pipelining is answered in full and in order, a client that stops reading stops
//! being read, and a request body is never held whole. Over real sockets, with the
//! worker's memory read from /proc.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// A field of /proc/PID/status, in kB.
fn status_kb(pid: i32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} for pid {pid}"))
}

/// Send `requests` from a thread of its own (so a blocked send is no deadlock), in one
/// write, and return the connection to read the answers from.
fn pipeline(
    server: &Server,
    requests: Vec<u8>,
) -> (Reader<TcpStream>, std::thread::JoinHandle<()>) {
    let stream = server.connect();
    let mut writer = stream.try_clone().expect("clone");
    let sender = std::thread::spawn(move || writer.write_all(&requests).expect("send"));
    (Reader::new(stream), sender)
}

#[test]
fn ten_thousand_pipelined_gets_in_one_send_are_all_answered_in_order() {
    let server = Server::start(&["echo"]);
    let mut requests = Vec::new();
    for i in 0..10_000 {
        requests.extend_from_slice(format!("GET /{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    }
    let (mut reader, sender) = pipeline(&server, requests);
    for i in 0..10_000 {
        let resp = reader
            .response(false)
            .unwrap_or_else(|e| panic!("answer {i}: {e}\n{}", server.log()));
        assert_eq!(resp.status, 200);
        let want = format!("\"raw_uri\":\"/{i}\"");
        assert!(resp.text().contains(&want), "answer {i}: {}", resp.text());
    }
    sender.join().expect("sender");
}

#[test]
fn ten_thousand_pipelined_gets_to_app_threads_are_all_answered() {
    let server = Server::start_bin(&custom_app_bin(), &[], &[]);
    let request = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n";
    let (mut reader, sender) = pipeline(&server, request.repeat(10_000));
    for i in 0..10_000 {
        let resp = reader
            .response(false)
            .unwrap_or_else(|e| panic!("answer {i}: {e}\n{}", server.log()));
        assert_eq!(resp.status, 200, "answer {i}");
    }
    sender.join().expect("sender");
}

/// A client that pipelines 32 MB of requests for 32 MB of answers and reads nothing for
/// a while: the worker stops reading it once its answers back up, so its memory stays
/// near idle; every answer still comes, in order, once the client reads.
#[test]
fn a_client_that_does_not_read_is_not_read_either() {
    let server = Server::start(&["echo"]);
    let worker = server.wait_for_workers(1, Duration::from_secs(10))[0];
    // echo's answer carries the request's headers: about 8 KB each way per request.
    let filler = "f".repeat(8000);
    let mut requests = Vec::new();
    for i in 0..4000 {
        requests.extend_from_slice(
            format!("GET /{i} HTTP/1.1\r\nHost: x\r\nX-Filler: {filler}\r\n\r\n").as_bytes(),
        );
    }
    let idle = status_kb(worker, "VmRSS:");
    let (mut reader, sender) = pipeline(&server, requests);
    let mut peak = idle;
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        peak = peak.max(status_kb(worker, "VmRSS:"));
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        peak < idle + 8 * 1024,
        "worker RSS {peak} kB while its client does not read (idle {idle} kB)"
    );
    for i in 0..4000 {
        let resp = reader.response(false).expect("answer");
        assert!(
            resp.text().contains(&format!("\"raw_uri\":\"/{i}\"")),
            "answer {i}"
        );
    }
    sender.join().expect("sender");
}

/// 256 MiB of body: the worker's resident memory stays within a few MB of idle while it
/// receives it, and the body is spooled to a file that has no name.
#[test]
fn a_large_body_is_received_in_bounded_memory_into_an_unlinked_file() {
    const BODY: usize = 256 << 20;
    let server = Server::start(&["-w", "1"]);
    let worker = server.wait_for_workers(1, Duration::from_secs(10))[0];
    assert_eq!(get(server.addr, WELCOME_PATH).status, 200);
    let idle = status_kb(worker, "VmRSS:");
    let mut stream = server.connect();
    let mut writer = stream.try_clone().expect("clone");
    let sender = std::thread::spawn(move || {
        let head =
            format!("POST {WELCOME_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {BODY}\r\n\r\n");
        writer.write_all(head.as_bytes()).expect("head");
        let block = vec![b'b'; 1 << 20];
        for _ in 0..BODY / block.len() {
            writer.write_all(&block).expect("body");
        }
    });
    let mut peak = idle;
    let mut spooled = Vec::new();
    while !sender.is_finished() {
        peak = peak.max(status_kb(worker, "VmRSS:"));
        if let Ok(fds) = std::fs::read_dir(format!("/proc/{worker}/fd")) {
            for fd in fds.flatten() {
                if let Ok(target) = std::fs::read_link(fd.path()) {
                    let target = target.to_string_lossy().into_owned();
                    if target.starts_with('/') && !target.starts_with("/dev/") {
                        spooled.push(target);
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    sender.join().expect("sender");
    let resp = Reader::new(&mut stream).response(false).expect("answer");
    assert_eq!(resp.status, 405, "{}", resp.text());
    assert!(
        peak < idle + 4 * 1024,
        "worker RSS {peak} kB while receiving {BODY} bytes (idle {idle} kB)"
    );
    assert!(
        !spooled.is_empty(),
        "the body was never seen spooled to a file"
    );
    assert!(
        spooled.iter().all(|t| t.ends_with("(deleted)")),
        "a spool file has a name: {spooled:?}"
    );
}

/// A chunk size beyond limit_request_body is refused at once, before its data.
#[test]
fn a_chunk_larger_than_the_body_limit_is_refused_at_once() {
    let server = Server::start(&["--limit-request-body", "1000000"]);
    let mut stream = server.connect();
    stream
        .write_all(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffff\r\nabc",
        )
        .expect("send");
    let resp = Reader::new(&mut stream).response(false).expect("answer");
    assert_eq!(resp.status, 413);
    assert_eq!(resp.header("connection"), Some("close"));
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
}
