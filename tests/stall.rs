//! A worker whose app threads are all held up (DESIGN.md, "A worker whose app threads are
//! all held up"): requests the front offered to take back (`rgunicorn_http::resend`) go
//! back to it unstarted, those already queued and those that arrive, and only when they
//! come from a trusted unix-socket peer; other requests wait for a thread as before. The
//! real binary (the custom_app example: `/slow` sleeps on its one app thread), with the
//! offer sent as the front sends it.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::*;

fn offered(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nX-Rgunicorn-Resend: 1\r\n\r\n")
}

fn plain(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")
}

fn send<W: Write>(mut stream: W, request: &str) -> W {
    stream.write_all(request.as_bytes()).expect("send");
    stream
}

fn assert_handed_back(resp: &Resp, log: &str) {
    assert_eq!(resp.status, 503, "{log}");
    assert_eq!(resp.header("x-rgunicorn-resend"), Some("busy"), "{log}");
    assert!(resp.body.is_empty(), "{log}");
}

/// Whether any byte of an answer has come on `stream` (without waiting for one, and
/// leaving it to be read).
fn answered_yet(stream: &UnixStream) -> bool {
    let mut byte = [0u8; 1];
    // SAFETY: a one-byte buffer we own, on a socket that stays open for the call.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            byte.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        let err = std::io::Error::last_os_error();
        assert_eq!(err.kind(), ErrorKind::WouldBlock, "peek: {err}");
    }
    n > 0
}

#[test]
fn a_stalled_worker_hands_back_what_the_front_offered_and_queues_the_rest() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sock = dir.path().join("workers.sock");
    let unix_bind = format!("unix:{}", sock.display());
    let server = Server::start_bin(
        &custom_app_bin(),
        &[
            "-w",
            "1",
            "--threads",
            "1",
            "-b",
            &unix_bind,
            "-b",
            "127.0.0.1:0",
        ],
        &[],
    );
    let connect = || UnixStream::connect(&sock).expect("connect to the worker's socket");
    // Opened before the stall: a stalled worker takes no new connections.
    let spare = connect();
    let tcp = TcpStream::connect(server.addr).expect("connect over TCP");
    std::thread::sleep(Duration::from_millis(100));

    // The only app thread sleeps 3 s; an offered request queued just behind it is handed
    // back once the worker counts as stalled (20 ms), long before the sleep ends.
    let slow = send(connect(), &plain("/slow?ms=3000"));
    std::thread::sleep(Duration::from_millis(5));
    let mut offering = Reader::new(send(connect(), &offered("/hello?queued")));
    assert_handed_back(&offering.response(false).expect("answer"), &server.log());
    assert!(
        !answered_yet(&slow),
        "the hand-back waited for the slow request"
    );

    // One that arrives while the worker is stalled goes back at once, on the same
    // connection, which stays open.
    std::thread::sleep(Duration::from_millis(200));
    send(offering.get_mut(), &offered("/hello?arriving"));
    assert_handed_back(&offering.response(false).expect("answer"), &server.log());
    assert!(
        !answered_yet(&slow),
        "the hand-back waited for the slow request"
    );

    // Not offered, or offered by a peer the worker does not trust (TCP): they wait for the
    // thread, and the app answers them.
    let waiting: Vec<_> = [
        (Box::new(send(spare, &plain("/hello"))) as Box<dyn Read + Send>),
        Box::new(send(tcp, &offered("/hello?tcp"))),
    ]
    .into_iter()
    .map(|stream| std::thread::spawn(move || Reader::new(stream).response(false).expect("answer")))
    .collect();
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !answered_yet(&slow),
        "the slow request ended too soon for this test"
    );

    let mut slow = Reader::new(slow);
    let resp = slow.response(false).expect("the slow answer");
    assert_eq!(resp.text(), "slow done\n");
    for client in waiting {
        let resp = client.join().expect("a queued request got no answer");
        assert_eq!(resp.status, 200, "{}", server.log());
        assert!(resp.text().starts_with("hello from pid"), "{}", resp.text());
    }
    // The stall is over: an offered request is served again.
    send(offering.get_mut(), &offered("/hello?after"));
    assert_eq!(offering.response(false).expect("answer").status, 200);
}
