//! A full-rate keep-alive TLS load, the minimum the USR2 tests need: N rustls connections
//! to the front, each sending its next `GET` the moment the previous answer is read (so,
//! as with wrk, every connection always has a request in flight), opening a new
//! connection after an answer that says `Connection: close` and after every
//! `per_connection` requests (the last one asking `Connection: close`, as a browser
//! leaving does: so new TLS connections keep arriving too), and counting every failure:
//! a connect or handshake error, a reset, a close with a request in flight, a timeout, a
//! non-200 answer or a wrong body. Nothing is retried.
//!
//! The `core` helper's `tests/common/load.rs` is the general client (generic over the
//! transport); this one can fold into it as its rustls transport.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::front_support;

/// How long a request may go unanswered before it counts as failed.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// What the clients saw.
#[derive(Debug, Default)]
pub struct Tally {
    /// 200s with the expected body.
    pub ok: u64,
    /// Every failed request, and why.
    pub failures: Vec<String>,
    /// Connections opened: each client's first, then one per `Connection: close`.
    pub connections: u64,
}

impl Tally {
    pub fn summary(&self) -> String {
        let shown: Vec<&str> = self.failures.iter().take(10).map(String::as_str).collect();
        format!(
            "{} ok, {} failed, {} connections: {shown:?}",
            self.ok,
            self.failures.len(),
            self.connections
        )
    }
}

/// Clients running on their own threads until [`TlsLoad::finish`].
pub struct TlsLoad {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    clients: Vec<JoinHandle<Tally>>,
}

impl TlsLoad {
    /// `clients` connections to `addr`, each asking `GET path` `per_connection` times
    /// and expecting `body`.
    pub fn start(
        config: &Arc<rustls::ClientConfig>,
        addr: SocketAddr,
        (path, body): (&str, &str),
        clients: usize,
        per_connection: u64,
    ) -> TlsLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let clients = (0..clients)
            .map(|_| {
                let client = Client {
                    config: Arc::clone(config),
                    addr,
                    path: path.to_string(),
                    body: body.to_string(),
                    per_connection: per_connection.max(1),
                };
                let stop = Arc::clone(&stop);
                let answered = Arc::clone(&answered);
                std::thread::spawn(move || client.run(&stop, &answered))
            })
            .collect();
        TlsLoad {
            stop,
            answered,
            clients,
        }
    }

    /// Answers so far, of any kind.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::SeqCst)
    }

    /// Wait for `more` answers beyond those so far (or `within`; the tally then shows why).
    pub fn run_for(&self, more: u64, within: Duration) {
        let target = self.answered() + more;
        let deadline = Instant::now() + within;
        while self.answered() < target && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stop every client after its request in flight, and add up what they saw.
    pub fn finish(self) -> Tally {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = Tally::default();
        for client in self.clients {
            match client.join() {
                Ok(seen) => {
                    all.ok += seen.ok;
                    all.connections += seen.connections;
                    all.failures.extend(seen.failures);
                }
                Err(_) => all.failures.push("a client thread panicked".into()),
            }
        }
        all
    }
}

struct Client {
    config: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    path: String,
    body: String,
    per_connection: u64,
}

type Stream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

impl Client {
    fn run(&self, stop: &AtomicBool, answered: &AtomicU64) -> Tally {
        let mut seen = Tally::default();
        let mut conn: Option<(Stream, u64)> = None;
        while !stop.load(Ordering::SeqCst) {
            let (mut stream, sent_before) = match conn.take() {
                Some(kept) => kept,
                None => match self.connect() {
                    Ok(stream) => {
                        seen.connections += 1;
                        (stream, 0)
                    }
                    Err(e) => {
                        seen.failures.push(format!("connect: {e}"));
                        // Counted; no need to spin on a port that refuses.
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                },
            };
            let last = sent_before + 1 == self.per_connection;
            let request = format!(
                "GET {} HTTP/1.1\r\nHost: localhost\r\n{}\r\n",
                self.path,
                if last { "Connection: close\r\n" } else { "" }
            );
            let sent = stream
                .write_all(request.as_bytes())
                .and_then(|()| stream.flush());
            if let Err(e) = sent {
                seen.failures.push(format!("send: {e}"));
                continue;
            }
            let answer = front_support::read_response(&mut stream, false);
            answered.fetch_add(1, Ordering::SeqCst);
            match answer {
                Ok(resp) if resp.status == 200 && resp.body == self.body.as_bytes() => {
                    seen.ok += 1;
                    let closing = resp
                        .header("connection")
                        .is_some_and(|v| v.eq_ignore_ascii_case("close"));
                    if !closing && !last {
                        conn = Some((stream, sent_before + 1));
                    }
                }
                Ok(resp) => {
                    seen.failures
                        .push(format!("status {}: {:?}", resp.status, resp.text()))
                }
                Err(e) if is_timeout(&e) => seen.failures.push("no answer in time".into()),
                Err(e) => seen.failures.push(format!("closed in flight: {e}")),
            }
        }
        seen
    }

    /// A TCP connection with the TLS handshake done.
    fn connect(&self) -> io::Result<Stream> {
        let sock = TcpStream::connect(self.addr)?;
        sock.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        sock.set_nodelay(true)?;
        let name =
            rustls::pki_types::ServerName::try_from("localhost").map_err(io::Error::other)?;
        let conn = rustls::ClientConnection::new(Arc::clone(&self.config), name)
            .map_err(io::Error::other)?;
        let mut stream = rustls::StreamOwned::new(conn, sock);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(stream)
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
