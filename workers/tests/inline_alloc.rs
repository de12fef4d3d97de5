//! The inline keep-alive path allocates nothing per request (issue 12): a real worker
//! event loop serving the built-in welcome app on a real TCP socket, with every heap
//! allocation made on the worker's thread counted by the global allocator below.
//!
//! The worker runs in a thread of this test process (`worker::run`, as a forked worker
//! would), so its allocations can be told from the client's: only threads that set
//! [`COUNT_HERE`] are counted. Each head is sent until the connection's buffers and the
//! environ have grown to fit it, then many more times; the count must not move.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rgunicorn_workers::app::welcome::{Welcome, WELCOME_BODY};
use rgunicorn_workers::stream::Listener;
use rgunicorn_workers::worker::{self, NoHooks};
use rgunicorn_workers::WorkerConfig;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNT_HERE: Cell<bool> = const { Cell::new(false) };
}

fn note() {
    // `try_with`: the thread's locals may already be gone while it exits.
    if COUNT_HERE.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is passed on unchanged to the system allocator; counting touches
// only an atomic and a const-initialised thread local, neither of which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// wrk's request, a browser's, and what the front forwards (from a trusted peer, so the
/// forwarded client address and scheme are applied).
const HEADS: [&str; 3] = [
    "GET /api/v1/welcome/get_welcome_data HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n",
    "GET /api/v1/welcome/get_welcome_data?ref=home HTTP/1.1\r\nHost: www.example.com\r\n\
     User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:126.0) Gecko/20100101 Firefox/126.0\r\n\
     Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
     Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br, zstd\r\n\
     Referer: https://www.example.com/\r\nConnection: keep-alive\r\n\
     Cookie: session=0123456789abcdef0123456789abcdef; theme=dark\r\n\
     Upgrade-Insecure-Requests: 1\r\nSec-Fetch-Dest: document\r\n\r\n",
    "GET /api/v1/welcome/get_welcome_data HTTP/1.1\r\nHost: example.com\r\n\
     User-Agent: curl/7.88.1\r\nAccept: */*\r\nX-Forwarded-For: 192.0.2.7\r\n\
     X-Forwarded-Proto: https\r\nX-Forwarded-Host: example.com\r\nX-Real-IP: 192.0.2.7\r\n\r\n",
];

const WARM_UP: usize = 50;
const WARM_UP_AT_LEAST: Duration = Duration::from_millis(600);
const MEASURED: usize = 2000;
/// Long enough for the loop's clock tick (every 500 ms: deadlines, heartbeat) and the
/// `Date` header's change of second to happen while counting.
const MEASURED_AT_LEAST: Duration = Duration::from_millis(1200);

/// Start a worker serving the welcome app inline on a new port; its thread is counted.
fn start_worker() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("local address").port();
    std::thread::spawn(move || {
        COUNT_HERE.with(|c| c.set(true));
        worker::run(
            vec![Listener::Tcp(listener)],
            WorkerConfig::default(),
            Arc::new(Welcome),
            &mut NoHooks,
        )
    });
    port
}

/// One request and its whole answer (the welcome body is framed by Content-Length).
fn exchange(client: &mut TcpStream, head: &str, got: &mut Vec<u8>) {
    client.write_all(head.as_bytes()).expect("send");
    got.clear();
    let mut buf = [0u8; 4096];
    loop {
        let n = client.read(&mut buf).expect("read");
        assert!(n > 0, "the worker closed the connection");
        got.extend_from_slice(&buf[..n]);
        if got.ends_with(WELCOME_BODY) {
            break;
        }
    }
    assert!(
        got.starts_with(b"HTTP/1.1 200 OK\r\n"),
        "{}",
        String::from_utf8_lossy(got)
    );
}

#[test]
fn the_inline_keep_alive_path_allocates_nothing_per_request() {
    let port = start_worker();
    let mut per_head = Vec::new();
    for head in HEADS {
        let mut client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let mut got = Vec::new();
        // Past a tick too: the loop's first pass over its connections sizes its list.
        let since = Instant::now();
        let mut sent = 0;
        while sent < WARM_UP || since.elapsed() < WARM_UP_AT_LEAST {
            exchange(&mut client, head, &mut got);
            sent += 1;
        }
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        let since = Instant::now();
        sent = 0;
        while sent < MEASURED || since.elapsed() < MEASURED_AT_LEAST {
            exchange(&mut client, head, &mut got);
            sent += 1;
        }
        let after = ALLOCATIONS.load(Ordering::Relaxed);
        per_head.push(after - before);
    }
    assert_eq!(
        per_head,
        vec![0; HEADS.len()],
        "allocations on the worker's thread over at least {MEASURED} keep-alive requests, per head"
    );
}
