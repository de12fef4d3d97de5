//! The metrics and health listener (`--metrics-bind`): a small process of its own, forked
//! and supervised by the master (`crate::arbiter`'s `ops` module), that answers
//!
//! - `GET /metrics`: the shared counters in the Prometheus text format,
//! - `GET /healthz`: 200 when the master runs and a worker answers its heartbeat,
//! - `GET /readyz`: 200 when every worker is booted and no stop has begun,
//!
//! and 404 for any other path, 405 for any other method. Every answer closes its
//! connection. It reads the table the master mapped before its first fork
//! ([`rgunicorn_metrics`]), so it sees the workers, the front and the master without
//! asking any of them anything: a scrape costs them nothing, and a stuck worker cannot
//! stall the page. A process rather than a thread of the master, because the master
//! forks (so it stays single-threaded) and must never wait on a client; the master keeps
//! the listening socket, so while this process restarts, scrapes wait in the backlog.
//!
//! The master's statsd sender is [`statsd`].

pub mod statsd;

use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use mio::net::{TcpListener as MioTcpListener, UnixListener as MioUnixListener};
use mio::{Events, Interest, Poll, Token};
use rgunicorn_http::Limits;
use rgunicorn_metrics::{health, prometheus, Snapshot, Table};
use rgunicorn_process::Signals;
use slab::Slab;

use crate::arbiter::ops::MetricsListener;

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);
const CONN_BASE: usize = 16;
/// Connections served at once; more wait in the backlog.
const MAX_CONNS: usize = 64;
/// A request head longer than this is refused.
const MAX_HEAD: usize = 8 * 1024;
/// A client gets this long to send its request and read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
const TICK: Duration = Duration::from_secs(1);

enum Listener {
    Tcp(MioTcpListener),
    Unix(MioUnixListener),
}

enum Stream {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
}

impl Stream {
    fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            Stream::Tcp(s) => s,
            Stream::Unix(s) => s,
        }
    }

    fn io(&mut self) -> &mut dyn ReadWrite {
        match self {
            Stream::Tcp(s) => s,
            Stream::Unix(s) => s,
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// One scrape or probe: its request, then its answer, then it closes.
struct Conn {
    stream: Stream,
    input: Vec<u8>,
    /// The answer, once the request is read; `sent` bytes of it are out.
    output: Option<Vec<u8>>,
    sent: usize,
    deadline: Instant,
}

/// What driving a connection left to do.
enum Outcome {
    Open,
    Close,
}

/// Serve until a stop signal or the master's death. Returns the exit code.
pub fn serve(listener: MetricsListener, table: Table, signals: &mut Signals) -> i32 {
    let poll = match Poll::new() {
        Ok(poll) => poll,
        Err(err) => {
            rgunicorn_workers::log_error!("metrics listener: cannot create its event loop: {err}");
            return rgunicorn_process::exit::BOOT_ERROR;
        }
    };
    let mut listener = match listener {
        MetricsListener::Tcp(l) => Listener::Tcp(MioTcpListener::from_std(l)),
        MetricsListener::Unix(l, _) => Listener::Unix(MioUnixListener::from_std(l)),
    };
    let registered = match &mut listener {
        Listener::Tcp(l) => poll.registry().register(l, LISTENER, Interest::READABLE),
        Listener::Unix(l) => poll.registry().register(l, LISTENER, Interest::READABLE),
    }
    .and_then(|()| {
        poll.registry()
            .register(signals, SIGNALS, Interest::READABLE)
    });
    if let Err(err) = registered {
        rgunicorn_workers::log_error!("metrics listener: cannot register its sockets: {err}");
        return rgunicorn_process::exit::BOOT_ERROR;
    }
    let mut server = Server {
        poll,
        listener,
        conns: Slab::new(),
        table,
        version: env!("CARGO_PKG_VERSION"),
    };
    server.run(signals)
}

struct Server {
    poll: Poll,
    listener: Listener,
    conns: Slab<Conn>,
    table: Table,
    version: &'static str,
}

impl Server {
    fn run(&mut self, signals: &mut Signals) -> i32 {
        let mut events = Events::with_capacity(64);
        loop {
            if let Err(err) = self.poll.poll(&mut events, Some(TICK)) {
                if err.kind() != ErrorKind::Interrupted {
                    rgunicorn_workers::log_error!("metrics listener: poll: {err}");
                    return rgunicorn_process::exit::RUNTIME_ERROR;
                }
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    SIGNALS => {
                        if !signals.pending().is_empty() {
                            // TERM, INT or QUIT: the master stops us last, when nothing
                            // is left to report on.
                            return rgunicorn_process::exit::OK;
                        }
                    }
                    Token(t) => self.drive(t - CONN_BASE),
                }
            }
            let now = Instant::now();
            let late: Vec<usize> = self
                .conns
                .iter()
                .filter(|(_, c)| now >= c.deadline)
                .map(|(k, _)| k)
                .collect();
            for key in late {
                self.close(key);
            }
            if rgunicorn_process::parent::is_gone() {
                return rgunicorn_process::exit::OK;
            }
        }
    }

    fn accept(&mut self) {
        while self.conns.len() < MAX_CONNS {
            let accepted = match &self.listener {
                Listener::Tcp(l) => l.accept().map(|(s, _)| Stream::Tcp(s)),
                Listener::Unix(l) => l.accept().map(|(s, _)| Stream::Unix(s)),
            };
            let mut stream = match accepted {
                Ok(stream) => stream,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // WouldBlock, or out of descriptors: try again on the next event.
                Err(_) => return,
            };
            let entry = self.conns.vacant_entry();
            let key = entry.key();
            if self
                .poll
                .registry()
                .register(
                    stream.source(),
                    Token(CONN_BASE + key),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .is_err()
            {
                continue;
            }
            entry.insert(Conn {
                stream,
                input: Vec::new(),
                output: None,
                sent: 0,
                deadline: Instant::now() + CLIENT_TIMEOUT,
            });
            self.drive(key);
        }
    }

    fn drive(&mut self, key: usize) {
        let table = self.table;
        let version = self.version;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if let Outcome::Close = conn.drive(|head| answer(head, &table, version)) {
            self.close(key);
        }
    }

    fn close(&mut self, key: usize) {
        if let Some(mut conn) = self.conns.try_remove(key) {
            let _ = self.poll.registry().deregister(conn.stream.source());
        }
        // Accepting may have stopped at MAX_CONNS.
        self.accept();
    }
}

impl Conn {
    /// Read the request until its head is complete, answer it, write the answer.
    fn drive(&mut self, respond: impl Fn(&[u8]) -> Vec<u8>) -> Outcome {
        if self.output.is_none() {
            let mut buf = [0u8; 2048];
            loop {
                match self.stream.io().read(&mut buf) {
                    Ok(0) => return Outcome::Close,
                    Ok(n) => {
                        self.input.extend_from_slice(&buf[..n]);
                        if self.input.windows(4).any(|w| w == b"\r\n\r\n")
                            || self.input.len() > MAX_HEAD
                        {
                            self.output = Some(respond(&self.input));
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Outcome::Open,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => return Outcome::Close,
                }
            }
        }
        let Some(out) = &self.output else {
            return Outcome::Open;
        };
        while self.sent < out.len() {
            match self.stream.io().write(&out[self.sent..]) {
                Ok(0) => return Outcome::Close,
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Outcome::Open,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Outcome::Close,
            }
        }
        Outcome::Close
    }
}

/// The whole answer to the request whose head is at the start of `input`.
fn answer(input: &[u8], table: &Table, version: &str) -> Vec<u8> {
    let head = match rgunicorn_http::parse_request_head(input, &Limits::default()) {
        Ok(Some(head)) => head,
        Ok(None) => return response(431, "text/plain", b"request head too large\n", false),
        Err(err) => return response(err.status(), "text/plain", b"bad request\n", false),
    };
    let is_head = head.method == "HEAD";
    if head.method != "GET" && !is_head {
        return response(405, "text/plain", b"only GET and HEAD\n", false);
    }
    let snap = Snapshot::read(table);
    let judged = |verdict: Result<(), String>| match verdict {
        Ok(()) => response(200, "text/plain; charset=utf-8", b"ok\n", is_head),
        Err(why) => response(
            503,
            "text/plain; charset=utf-8",
            format!("{why}\n").as_bytes(),
            is_head,
        ),
    };
    match head.target.path() {
        "/metrics" => {
            let mut page = String::with_capacity(8 * 1024);
            prometheus::render(&snap, version, &mut page);
            response(200, prometheus::CONTENT_TYPE, page.as_bytes(), is_head)
        }
        "/healthz" => judged(health::live(&snap)),
        "/readyz" => judged(health::ready(&snap)),
        _ => response(
            404,
            "text/plain",
            b"not found: /metrics, /healthz, /readyz\n",
            is_head,
        ),
    }
}

fn response(status: u16, content_type: &str, body: &[u8], is_head: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 160);
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\nServer: rgunicorn\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        rgunicorn_http::reason(status),
        body.len()
    );
    if status == 405 {
        // Keep the head whole: insert Allow before the blank line.
        out.truncate(out.len() - 2);
        out.extend_from_slice(b"Allow: GET, HEAD\r\n\r\n");
    }
    if !is_head {
        out.extend_from_slice(body);
    }
    out
}

/// The descriptors the metrics process keeps: its listener and nothing else of the
/// master's (so a worker's port or a removed bind is never held here).
pub fn keep_fds(listener: &MetricsListener) -> Vec<RawFd> {
    vec![match listener {
        MetricsListener::Tcp(l) => l.as_raw_fd(),
        MetricsListener::Unix(l, _) => l.as_raw_fd(),
    }]
}

/// Bind the metrics listener. TCP sockets get `SO_REUSEPORT` too, so the new master a
/// USR2 starts can bind the same address while the old one still serves it.
pub fn bind(addr: &crate::config::BindAddr) -> io::Result<MetricsListener> {
    use socket2::{Domain, Socket, Type};
    use std::net::ToSocketAddrs;
    match addr {
        crate::config::BindAddr::Tcp { host, port } => {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let sockaddr = (host, *port)
                .to_socket_addrs()?
                .next()
                .ok_or_else(|| io::Error::other("the host resolves to no address"))?;
            let socket = Socket::new(Domain::for_address(sockaddr), Type::STREAM, None)?;
            socket.set_reuse_address(true)?;
            socket.set_reuse_port(true)?;
            if sockaddr.is_ipv6() {
                socket.set_only_v6(true)?;
            }
            socket.bind(&sockaddr.into())?;
            socket.listen(128)?;
            socket.set_nonblocking(true)?;
            Ok(MetricsListener::Tcp(socket.into()))
        }
        crate::config::BindAddr::Unix(path) => {
            // A socket file left there (a crash, or the master before a USR2) is replaced.
            if std::fs::symlink_metadata(path)
                .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
            {
                let _ = std::fs::remove_file(path);
            }
            let listener = std::os::unix::net::UnixListener::bind(path)?;
            listener.set_nonblocking(true)?;
            Ok(MetricsListener::Unix(listener, path.clone()))
        }
        crate::config::BindAddr::Fd(_) => Err(io::Error::other(
            "an inherited fd:// cannot be the metrics listener",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_and_the_page_are_answered_by_path_and_method() {
        let table = Table::map().expect("mmap");
        table.master_beat(1);
        table.set_plan(1, Duration::from_secs(30), false);
        let text = |out: Vec<u8>| String::from_utf8(out).expect("utf8");
        let get = |path: &str| {
            text(answer(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
                &table,
                "9.9",
            ))
        };
        let page = get("/metrics");
        assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
        assert!(page.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
        assert!(page.ends_with("rgunicorn_build_info{version=\"9.9\"} 1\n"));
        let health = get("/healthz");
        assert!(
            health.starts_with("HTTP/1.1 503"),
            "no worker yet: {health}"
        );
        let slot = table.claim().expect("slot");
        table.assign(slot, 7);
        table.worker(slot).set_booted();
        assert!(get("/healthz").starts_with("HTTP/1.1 200"));
        assert!(get("/readyz").starts_with("HTTP/1.1 200"));
        table.set_draining();
        let ready = get("/readyz");
        assert!(ready.starts_with("HTTP/1.1 503"));
        assert!(ready.ends_with("\r\n\r\nstopping\n"), "{ready}");
        assert!(get("/nope").starts_with("HTTP/1.1 404"));
        let post = text(answer(
            b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
            &table,
            "9.9",
        ));
        assert!(post.starts_with("HTTP/1.1 405"));
        assert!(post.contains("\r\nAllow: GET, HEAD\r\n\r\n"), "{post}");
        let head = text(answer(
            b"HEAD /readyz HTTP/1.1\r\nHost: x\r\n\r\n",
            &table,
            "9.9",
        ));
        assert!(head.ends_with("\r\n\r\n"), "no body for HEAD: {head}");
        let bad = text(answer(
            b"GET /x HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
            &table,
            "9.9",
        ));
        assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    }
}
