//! The connection state machine driven over a socket pair, without a worker around it.

use std::io::Read as _;

use super::*;

struct Never;
impl App for Never {
    fn call(&self, _: &Environ, _: &mut Input) -> crate::app::Response {
        unreachable!("the request is already on an app thread")
    }
}

fn context(mode: Mode) -> Context {
    Context {
        app: Arc::new(Never),
        mode,
        cfg: WorkerConfig::default(),
        access: None,
        scratch: vec![0; 4096],
        requests: 0,
        retiring: false,
        stalled: false,
    }
}

fn pair() -> (Conn, mio::net::UnixStream) {
    let (ours, client) = mio::net::UnixStream::pair().expect("socketpair");
    let mut conn = Conn::new(0, Stream::Unix(ours), ConnInfo::new(None, None), None);
    conn.readable = true;
    conn.writable = true;
    (conn, client)
}

fn read_all(client: &mut mio::net::UnixStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match client.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("read: {e}"),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn ok(body: &str) -> crate::app::Response {
    crate::app::Response::new(200, Vec::new(), crate::app::Body::Bytes(body.into()))
}

/// A connection of a threaded app that has received `GET /a` and handed it to the threads.
fn one_request_on_app_threads() -> (Conn, mio::net::UnixStream, Context, Job) {
    let (mut conn, mut client) = pair();
    let mut cx = context(Mode::Threaded);
    client
        .write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let job = dispatched(conn.drive(&mut cx));
    (conn, client, cx, job)
}

fn dispatched(outcome: Outcome) -> Job {
    match outcome {
        Outcome::Dispatched(job) => job,
        Outcome::Open => panic!("expected a dispatch, got Open"),
        Outcome::Close => panic!("expected a dispatch, got Close"),
    }
}

#[test]
fn the_504_follows_an_earlier_pipelined_answer_still_unsent() {
    let (mut conn, mut client) = pair();
    let mut cx = context(Mode::Threaded);
    conn.writable = false;
    // The first request's answer is queued but the socket was full; the second
    // request is on an app thread that will not come back.
    let first = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst";
    conn.out.extend_from_slice(first);
    let ticket = Ticket { key: 0, seq: 2 };
    let taken = Taken::default();
    taken.mark();
    conn.taken = Some(taken);
    conn.state = State::App {
        ticket,
        ctx: ResponseContext {
            version: Version::Http11,
            is_head: false,
            keep_alive: true,
        },
        started: Instant::now(),
    };
    assert!(conn.app_overran(Instant::now(), Duration::ZERO));
    assert!(matches!(conn.abandon_app(&mut cx), Outcome::Open));
    conn.writable = true;
    assert!(matches!(conn.drive(&mut cx), Outcome::Open));
    let text = read_all(&mut client);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    let second = text.find("HTTP/1.1 504 Gateway Timeout\r\n").expect(&text);
    assert_eq!(second, first.len(), "{text}");
    assert!(text.contains("Connection: close"), "{text}");
    // The app's answer, should it ever come, is dropped.
    conn.answered(ticket, Environ::default(), ok("late"), &mut cx);
    assert!(!conn.out.windows(4).any(|w| w == b"late"));
}

/// `--request-timeout` counts from when a thread takes the request: one still queued
/// behind busy threads has not started and cannot overrun, however long it waits.
#[test]
fn a_request_waiting_for_a_thread_does_not_overrun() {
    let (mut conn, mut client, mut cx, job) = one_request_on_app_threads();
    let later = Instant::now() + Duration::from_secs(3600);
    assert!(!conn.app_overran(later, Duration::from_secs(1)));
    job.taken.mark();
    assert!(conn.app_overran(later, Duration::from_secs(1)));
    assert!(!conn.app_overran(Instant::now(), Duration::from_secs(1)));
    // The next request of the connection starts unmarked again.
    conn.answered(job.ticket, job.environ, ok("a"), &mut cx);
    client
        .write_all(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    conn.readable = true;
    let next = dispatched(conn.drive(&mut cx));
    assert!(next.taken.at().is_none());
    assert!(!conn.app_overran(later, Duration::from_secs(1)));
}

#[test]
fn an_answer_for_an_earlier_ticket_is_not_taken_for_the_current_one() {
    let (mut conn, mut client, mut cx, job) = one_request_on_app_threads();
    let stale = Ticket {
        key: job.ticket.key,
        seq: job.ticket.seq - 1,
    };
    conn.answered(stale, Environ::default(), ok("stale"), &mut cx);
    assert_eq!(read_all(&mut client), "");
    conn.answered(job.ticket, job.environ, ok("fresh"), &mut cx);
    let got = read_all(&mut client);
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    assert!(got.ends_with("\r\n\r\nfresh"), "{got}");
}

#[test]
fn a_retiring_worker_keeps_the_connection_for_requests_already_received() {
    let (mut conn, mut client) = pair();
    let mut cx = context(Mode::Threaded);
    cx.retiring = true;
    client
        .write_all(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let first = dispatched(conn.drive(&mut cx));
    let second = dispatched(conn.answered(first.ticket, first.environ, ok("1"), &mut cx));
    let got = read_all(&mut client);
    assert!(
        got.contains("Connection: keep-alive"),
        "a second request is here: {got}"
    );
    conn.answered(second.ticket, second.environ, ok("2"), &mut cx);
    let got = read_all(&mut client);
    assert!(
        got.contains("Connection: close"),
        "the last one received: {got}"
    );
}
