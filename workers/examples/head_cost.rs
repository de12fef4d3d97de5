//! What a worker spends on one request head before the app runs: parsing it, and
//! building the app's environ from it. Run under callgrind to count instructions, which
//! a shared, noisy machine cannot blur:
//!
//!     cargo build --release -p rgunicorn-workers --example head_cost
//!     valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!         target/release/examples/head_cost parse 100000
//!
//! `parse` parses only; `environ` parses and builds the environ. A third argument picks
//! one head (0 wrk's, 1 what the front forwards, 2 a browser's). The instruction total,
//! less a run with 0 rounds, divided by heads x rounds, is the cost per request.
//!
//! `serve` measures the whole inline keep-alive path instead: a real worker event loop
//! (`worker::run`, in a thread) serving the welcome app, and a client in this process
//! sending it each head `rounds` times on one loopback connection. Count the worker's
//! thread alone, and take the difference of two round counts (boot and warm-up cancel):
//!
//!     valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file=cg.%p \
//!         target/release/examples/head_cost serve 11000 0
//!     (the same with 1000; the worker is thread 2: (Ir_11000 - Ir_1000) / 10000)

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::sync::Arc;

use rgunicorn_http::{parse_request_head, Limits};
use rgunicorn_workers::config::ForwardedAllow;
use rgunicorn_workers::environ::{self, ConnInfo};
use rgunicorn_workers::stream::Listener;
use rgunicorn_workers::worker::{self, NoHooks};
use rgunicorn_workers::WorkerConfig;

/// wrk's request (as bench/ sends it), what the front forwards, and a browser's.
const HEADS: [&[u8]; 3] = [
    b"GET /api/v1/welcome/get_welcome_data HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n",
    b"GET /api/v1/welcome/get_welcome_data HTTP/1.1\r\nHost: example.com\r\n\
      User-Agent: curl/7.88.1\r\nAccept: */*\r\nX-Forwarded-For: 192.0.2.7\r\n\
      X-Forwarded-Proto: https\r\nX-Forwarded-Host: example.com\r\nX-Real-IP: 192.0.2.7\r\n\r\n",
    b"GET /blog/2024/05/a-post?ref=home HTTP/1.1\r\nHost: www.example.com\r\n\
      User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:126.0) Gecko/20100101 Firefox/126.0\r\n\
      Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
      Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br, zstd\r\n\
      Referer: https://www.example.com/\r\nConnection: keep-alive\r\n\
      Cookie: session=0123456789abcdef0123456789abcdef; theme=dark\r\n\
      Upgrade-Insecure-Requests: 1\r\nSec-Fetch-Dest: document\r\nSec-Fetch-Mode: navigate\r\n\
      Sec-Fetch-Site: same-origin\r\nSec-Fetch-User: ?1\r\nPriority: u=0, i\r\n\r\n",
];

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "parse".into());
    let rounds: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let only: Option<usize> = args.next().and_then(|n| n.parse().ok());
    if mode == "serve" {
        serve(rounds, only);
        return;
    }
    let limits = Limits::default();
    let conn = ConnInfo::new(
        Some("127.0.0.1:40000".parse().expect("literal address")),
        Some("127.0.0.1:8000".parse().expect("literal address")),
    );
    let trust = ForwardedAllow::Ips(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    let mut checksum = 0usize;
    for (i, head) in HEADS.into_iter().enumerate() {
        if only.is_some_and(|only| only != i) {
            continue;
        }
        for _ in 0..rounds {
            let parsed = parse_request_head(black_box(head), &limits)
                .expect("valid head")
                .expect("complete head");
            checksum += parsed.head_len;
            if mode == "environ" {
                checksum += black_box(environ::build(&parsed, &conn, &trust))
                    .headers
                    .len();
            }
            black_box(&parsed);
        }
    }
    println!("{mode}: {rounds} rounds, checksum {checksum}");
}

/// Each head `rounds` times, keep-alive, to a worker serving the welcome app inline.
fn serve(rounds: usize, only: Option<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    let port = listener.local_addr().expect("bound address").port();
    std::thread::spawn(move || {
        worker::run(
            vec![Listener::Tcp(listener)],
            WorkerConfig::default(),
            Arc::new(rgunicorn_workers::app::welcome::Welcome),
            &mut NoHooks,
        )
    });
    let mut answered = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    for (i, head) in HEADS.into_iter().enumerate() {
        if only.is_some_and(|only| only != i) {
            continue;
        }
        let mut client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        for _ in 0..rounds {
            client.write_all(head).expect("send");
            let mut got = 0;
            while !whole_answer(&buf[..got]) {
                let n = client.read(&mut buf[got..]).expect("read");
                assert!(n > 0, "the worker closed the connection");
                got += n;
            }
            answered += 1;
        }
    }
    println!("serve: {answered} answers");
}

/// Whether `got` holds a head and the Content-Length body after it.
fn whole_answer(got: &[u8]) -> bool {
    let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&got[..end]);
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|n| n.parse::<usize>().ok())
        .expect("the welcome app's answers carry a Content-Length");
    got.len() >= end + 4 + len
}
