//! A full-rate keep-alive load client, for claims of the form "this event costs no
//! request": N connections, each sending its next request the moment the previous
//! answer is read (so, like wrk, every connection always has a request in flight),
//! reconnecting as urllib3 does after an answer that says `Connection: close`, and
//! counting every failure: a connect error, a reset, a close with a request in flight,
//! a timeout, a malformed answer, a non-2xx status, a body other than the one expected.
//!
//! Nothing is retried unless [`Options::attempts`] says so: then a request whose
//! connection closed before any byte of its answer goes again on a new connection, as
//! browsers and urllib3 do for idempotent requests (RFC 9110 9.2.2), counted apart in
//! [`Tally::retried`] (for events that may close connections, as a crash of the front).
//!
//! Generic over the transport ([`Connect`]): plain TCP, unix sockets, and TLS to the
//! front ([`Tls`], a rustls client stream). A load may mix keep-alive clients with
//! clients that open a new connection for every request ([`FullRate::get_kept_and_fresh`]),
//! so an event meets both the connections it finds open and those it must accept.
//!
//! The clients stop when the load is finished or dropped: a test that fails halfway
//! leaves none running.

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

/// TLS to the front: a TCP connection with the handshake done, trusting `config`'s CA
/// for the name `localhost`.
pub struct Tls {
    pub addr: SocketAddr,
    pub config: Arc<rustls::ClientConfig>,
}

impl Connect for Tls {
    type Conn = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

    fn connect(&self) -> io::Result<Self::Conn> {
        let sock = TcpStream::connect(self.addr)?;
        sock.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        sock.set_write_timeout(Some(ANSWER_TIMEOUT))?;
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

/// How a load treats what it gets.
#[derive(Debug, Clone)]
pub struct Options {
    /// Tries per request (1: nothing is retried). A request is tried again only when
    /// its connection could not be opened, or closed before any byte of its answer.
    pub attempts: u32,
    /// The body every answer must carry (`None`: any).
    pub expect: Option<Vec<u8>>,
    /// A client stops at its first refused connect, counted in [`Tally::refused`] and
    /// not as a failure: for a server that stops listening (a client then goes
    /// elsewhere), where only what happened before the refusal counts.
    pub stop_when_refused: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            attempts: 1,
            expect: None,
            stop_when_refused: false,
        }
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
    /// A 2xx answer with another body than expected.
    Body(String),
}

/// What a load run saw.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// 2xx answers.
    pub ok: u64,
    pub failures: Vec<Failure>,
    /// Connections opened (the first of each client, then one per `Connection: close`).
    pub connections: u64,
    /// Requests sent again after their connection closed before any byte of the answer
    /// (only with [`Options::attempts`] above 1).
    pub retried: u64,
    /// Clients stopped by a refused connect (only with [`Options::stop_when_refused`]).
    pub refused: u64,
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
            "{} ok, {} failed, {} retried, {} refused, {} connections: [{}]",
            self.ok,
            self.failures.len(),
            self.retried,
            self.refused,
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
    /// Start `clients` connections, each sending `request` (a complete HTTP/1.1 request)
    /// over and over, on a new connection after an answer that says `Connection: close`.
    pub fn start<C: Connect>(connect: C, clients: usize, request: &[u8]) -> FullRate {
        FullRate::with(connect, clients, request, Options::default())
    }

    /// [`FullRate::start`] with `options`.
    pub fn with<C: Connect>(
        connect: C,
        clients: usize,
        request: &[u8],
        options: Options,
    ) -> FullRate {
        FullRate::spawn(connect, vec![request.to_vec(); clients], options)
    }

    /// `GET path` with a Host header.
    pub fn get<C: Connect>(connect: C, clients: usize, path: &str) -> FullRate {
        FullRate::start(connect, clients, &get_request(path, false))
    }

    /// [`FullRate::get`] with `options`.
    pub fn get_with<C: Connect>(
        connect: C,
        clients: usize,
        path: &str,
        options: Options,
    ) -> FullRate {
        FullRate::with(connect, clients, &get_request(path, false), options)
    }

    /// `GET path` from `kept` keep-alive clients and `fresh` clients that send every
    /// request on a new connection (`Connection: close`), counted together.
    pub fn get_kept_and_fresh<C: Connect>(
        connect: C,
        kept: usize,
        fresh: usize,
        path: &str,
    ) -> FullRate {
        let mut requests = vec![get_request(path, false); kept];
        requests.extend(vec![get_request(path, true); fresh]);
        FullRate::spawn(connect, requests, Options::default())
    }

    /// One client per request in `requests`, each sending its own over and over.
    fn spawn<C: Connect>(connect: C, requests: Vec<Vec<u8>>, options: Options) -> FullRate {
        let connect = Arc::new(connect);
        let options = Arc::new(options);
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let clients = requests
            .into_iter()
            .map(|request| {
                let connect = Arc::clone(&connect);
                let stop = Arc::clone(&stop);
                let answered = Arc::clone(&answered);
                let options = Arc::clone(&options);
                std::thread::spawn(move || client(&*connect, &request, &options, &stop, &answered))
            })
            .collect();
        FullRate {
            stop,
            answered,
            clients,
        }
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

    pub fn finish(mut self) -> Tally {
        self.stop.store(true, Ordering::SeqCst);
        let mut total = Tally::default();
        for client in std::mem::take(&mut self.clients) {
            let t = client.join().expect("load client thread");
            total.ok += t.ok;
            total.connections += t.connections;
            total.retried += t.retried;
            total.refused += t.refused;
            total.failures.extend(t.failures);
        }
        total
    }
}

impl Drop for FullRate {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// `GET path` with a Host header, and `Connection: close` when `close`.
fn get_request(path: &str, close: bool) -> Vec<u8> {
    let close = if close { "Connection: close\r\n" } else { "" };
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{close}\r\n").into_bytes()
}

fn client<C: Connect>(
    connect: &C,
    request: &[u8],
    options: &Options,
    stop: &AtomicBool,
    answered: &AtomicU64,
) -> Tally {
    let head = request.starts_with(b"HEAD ");
    let mut tally = Tally::default();
    let mut conn: Option<Reader<C::Conn>> = None;
    while !stop.load(Ordering::SeqCst) {
        let mut attempt = 1;
        // One request, tried until answered or out of attempts.
        let failure = loop {
            let mut reader = match conn.take() {
                Some(reader) => reader,
                None => match connect.connect() {
                    Ok(stream) => {
                        tally.connections += 1;
                        Reader::new(stream)
                    }
                    Err(e)
                        if options.stop_when_refused
                            && e.kind() == io::ErrorKind::ConnectionRefused =>
                    {
                        tally.refused += 1;
                        return tally;
                    }
                    Err(e) => {
                        // Do not spin on a refused port.
                        std::thread::sleep(Duration::from_millis(10));
                        if attempt < options.attempts {
                            attempt += 1;
                            tally.retried += 1;
                            continue;
                        }
                        break Some(Failure::Connect(e.to_string()));
                    }
                },
            };
            let before = reader.received();
            let resp = match reader
                .get_mut()
                .write_all(request)
                .and_then(|()| reader.get_mut().flush())
            {
                Err(e) => Err(Failure::Send(e.to_string())),
                Ok(()) => reader.response(head).map_err(|e| match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Failure::Timeout,
                    io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe => Failure::ClosedInFlight(e.to_string()),
                    _ => Failure::Malformed(e.to_string()),
                }),
            };
            let resp = match resp {
                Ok(resp) => resp,
                Err(failure) => {
                    let unanswered = reader.received() == before
                        && matches!(failure, Failure::Send(_) | Failure::ClosedInFlight(_));
                    if unanswered && attempt < options.attempts {
                        attempt += 1;
                        tally.retried += 1;
                        continue;
                    }
                    break Some(failure);
                }
            };
            answered.fetch_add(1, Ordering::SeqCst);
            let closing = resp
                .header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close"))
                || resp.version == "HTTP/1.0";
            if !closing {
                conn = Some(reader);
            }
            break if !(200..300).contains(&resp.status) {
                Some(Failure::Status(resp.status))
            } else if options.expect.as_ref().is_some_and(|b| *b != resp.body) {
                Some(Failure::Body(
                    String::from_utf8_lossy(&resp.body).into_owned(),
                ))
            } else {
                None
            };
        };
        match failure {
            None => tally.ok += 1,
            Some(failure) => tally.failures.push(failure),
        }
    }
    tally
}
