//! A full-rate keep-alive load client, for claims of the form "this event costs no
//! request": N connections, each sending its next request the moment the previous
//! answer is read (so, like wrk, every connection always has a request in flight),
//! reconnecting as urllib3 does after an answer that says `Connection: close`, and
//! counting every failure: a connect error, a reset, a close with a request in flight,
//! a timeout, a malformed answer, a non-2xx status. Nothing is retried.
//!
//! Generic over the transport ([`Connect`]): plain TCP and unix sockets here; a TLS
//! client stream (rustls `StreamOwned`) works the same way for the front's tests.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Reader;

/// How long a request may go unanswered before it counts as failed.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// Opens one client connection of some transport.
pub trait Connect: Send + Sync + 'static {
    type Conn: Read + Write + Send + 'static;
    fn connect(&self) -> io::Result<Self::Conn>;
}

/// Plain TCP.
pub struct Tcp(pub SocketAddr);

impl Connect for Tcp {
    type Conn = TcpStream;
    fn connect(&self) -> io::Result<TcpStream> {
        let stream = TcpStream::connect(self.0)?;
        stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

/// A unix socket path (how the front reaches the workers).
pub struct Unix(pub PathBuf);

impl Connect for Unix {
    type Conn = UnixStream;
    fn connect(&self) -> io::Result<UnixStream> {
        let stream = UnixStream::connect(&self.0)?;
        stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        Ok(stream)
    }
}

/// One failed request, and why.
#[derive(Debug, Clone)]
pub enum Failure {
    Connect(String),
    /// The request could not be sent (the connection was reset or closed under it).
    Send(String),
    /// The connection closed (cleanly or not) while the request waited for its answer.
    ClosedInFlight(String),
    Timeout,
    Malformed(String),
    Status(u16),
}

/// What a load run saw.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// 2xx answers.
    pub ok: u64,
    pub failures: Vec<Failure>,
    /// Connections opened (the first of each client, then one per `Connection: close`).
    pub connections: u64,
}

impl Tally {
    /// A one-line account for assertion messages.
    pub fn summary(&self) -> String {
        let mut shown: Vec<String> = self
            .failures
            .iter()
            .take(10)
            .map(|f| format!("{f:?}"))
            .collect();
        if self.failures.len() > shown.len() {
            shown.push(format!("... {} more", self.failures.len() - shown.len()));
        }
        format!(
            "{} ok, {} failed, {} connections: [{}]",
            self.ok,
            self.failures.len(),
            self.connections,
            shown.join(", ")
        )
    }
}

/// A running load: clients on their own threads until [`FullRate::finish`].
pub struct FullRate {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    clients: Vec<JoinHandle<Tally>>,
}

impl FullRate {
    /// Start `clients` connections, each sending `request` (a complete HTTP/1.1 request
    /// without `Connection: close`) over and over. `head` when the request is a HEAD.
    pub fn start<C: Connect>(connect: C, clients: usize, request: &[u8]) -> FullRate {
        let connect = Arc::new(connect);
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let head = request.starts_with(b"HEAD ");
        let clients = (0..clients)
            .map(|_| {
                let connect = Arc::clone(&connect);
                let stop = Arc::clone(&stop);
                let answered = Arc::clone(&answered);
                let request = request.to_vec();
                std::thread::spawn(move || client(&*connect, &request, head, &stop, &answered))
            })
            .collect();
        FullRate {
            stop,
            answered,
            clients,
        }
    }

    /// `GET path` with a Host header.
    pub fn get<C: Connect>(connect: C, clients: usize, path: &str) -> FullRate {
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        FullRate::start(connect, clients, request.as_bytes())
    }

    /// Answers received so far, of any status.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::SeqCst)
    }

    /// Wait until `more` answers beyond the count now have come (or `within` passed,
    /// which the caller's assertions on the tally then show).
    pub fn run_for(&self, more: u64, within: Duration) {
        let target = self.answered() + more;
        let deadline = Instant::now() + within;
        while self.answered() < target && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn finish(self) -> Tally {
        self.stop.store(true, Ordering::SeqCst);
        let mut total = Tally::default();
        for client in self.clients {
            let t = client.join().expect("load client thread");
            total.ok += t.ok;
            total.connections += t.connections;
            total.failures.extend(t.failures);
        }
        total
    }
}

fn client<C: Connect>(
    connect: &C,
    request: &[u8],
    head: bool,
    stop: &AtomicBool,
    answered: &AtomicU64,
) -> Tally {
    let mut tally = Tally::default();
    let mut conn: Option<Reader<C::Conn>> = None;
    while !stop.load(Ordering::SeqCst) {
        let mut reader = match conn.take() {
            Some(reader) => reader,
            None => match connect.connect() {
                Ok(stream) => {
                    tally.connections += 1;
                    Reader::new(stream)
                }
                Err(e) => {
                    tally.failures.push(Failure::Connect(e.to_string()));
                    // Do not spin on a refused port; the failure is counted.
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            },
        };
        if let Err(e) = reader.get_mut().write_all(request) {
            tally.failures.push(Failure::Send(e.to_string()));
            continue;
        }
        let resp = match reader.response(head) {
            Ok(resp) => resp,
            Err(e) => {
                tally.failures.push(match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Failure::Timeout,
                    io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe => Failure::ClosedInFlight(e.to_string()),
                    _ => Failure::Malformed(e.to_string()),
                });
                continue;
            }
        };
        answered.fetch_add(1, Ordering::SeqCst);
        if (200..300).contains(&resp.status) {
            tally.ok += 1;
        } else {
            tally.failures.push(Failure::Status(resp.status));
        }
        let closing = resp
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
            || resp.version == "HTTP/1.0";
        if !closing {
            conn = Some(reader);
        }
    }
    tally
}
