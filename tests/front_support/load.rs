//! A full-rate keep-alive load over TLS: each thread keeps one connection to the front
//! with a request always in flight (the next GET goes out as soon as the answer is in),
//! as wrk does, and counts every request that did not get its 200.
//!
//! A request that met a closed or reset connection before any byte of its answer is sent
//! again on a new connection (at most [`ATTEMPTS`] times), as browsers and urllib3 do for
//! idempotent requests (RFC 9110 9.2.2); those are counted apart in `retried`. Anything
//! else (a non-200, an answer cut short, a request that ran out of attempts) is `failed`.

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::{read_response, Tls};

/// Tries per request before it counts as failed.
pub const ATTEMPTS: u32 = 5;

/// What a [`TlsLoad`] saw.
#[derive(Debug, Default, Clone)]
pub struct TlsCounts {
    pub ok: u64,
    pub failed: u64,
    /// Requests sent again after their connection closed before any byte of the answer.
    pub retried: u64,
    /// Connections opened (the first one per thread included).
    pub connections: u64,
    /// The first few failures, for the assertion message.
    pub errors: Vec<String>,
}

impl TlsCounts {
    fn add(&mut self, other: TlsCounts) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.retried += other.retried;
        self.connections += other.connections;
        for e in other.errors {
            if self.errors.len() < 20 {
                self.errors.push(e);
            }
        }
    }
}

/// `conns` threads, each a keep-alive TLS connection sending `GET path` back to back.
pub struct TlsLoad {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    threads: Vec<JoinHandle<TlsCounts>>,
}

impl TlsLoad {
    /// `expect` is the body every answer must carry (`None`: any body).
    pub fn start(
        config: &Arc<rustls::ClientConfig>,
        addr: SocketAddr,
        path: &str,
        expect: Option<&[u8]>,
        conns: usize,
    ) -> TlsLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let threads = (0..conns)
            .map(|_| {
                let client = Client {
                    config: config.clone(),
                    addr,
                    request: format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n"),
                    expect: expect.map(<[u8]>::to_vec),
                    stop: stop.clone(),
                    ok: ok.clone(),
                };
                std::thread::spawn(move || client.run())
            })
            .collect();
        TlsLoad { stop, ok, threads }
    }

    /// Answers received so far (to wait until the load is really running).
    pub fn ok_so_far(&self) -> u64 {
        self.ok.load(Ordering::SeqCst)
    }

    /// Wait until `more` further answers have come in (or 20 s passed).
    pub fn wait_for(&self, more: u64) {
        let target = self.ok_so_far() + more;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while self.ok_so_far() < target && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn finish(self) -> TlsCounts {
        self.stop.store(true, Ordering::SeqCst);
        let mut total = TlsCounts::default();
        for t in self.threads {
            total.add(t.join().expect("load thread"));
        }
        total
    }
}

struct Client {
    config: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    request: String,
    expect: Option<Vec<u8>>,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
}

/// How one try of a request ended.
enum Try {
    Answered {
        keep: bool,
    },
    /// Nothing of the answer arrived: the request may go again on a new connection.
    Retry(String),
    Failed(String),
}

impl Client {
    fn run(self) -> TlsCounts {
        let mut counts = TlsCounts::default();
        let mut conn: Option<BufReader<Tls>> = None;
        while !self.stop.load(Ordering::SeqCst) {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let mut tls = match conn.take() {
                    Some(tls) => tls,
                    None => {
                        counts.connections += 1;
                        match self.open() {
                            Ok(tls) => BufReader::new(tls),
                            Err(e) if attempt < ATTEMPTS => {
                                counts.retried += 1;
                                let _ = e;
                                std::thread::sleep(Duration::from_millis(20));
                                continue;
                            }
                            Err(e) => {
                                fail(&mut counts, format!("connect: {e}"));
                                break;
                            }
                        }
                    }
                };
                match self.once(&mut tls) {
                    Try::Answered { keep } => {
                        counts.ok += 1;
                        self.ok.fetch_add(1, Ordering::SeqCst);
                        if keep {
                            conn = Some(tls);
                        }
                        break;
                    }
                    Try::Retry(_) if attempt < ATTEMPTS => counts.retried += 1,
                    Try::Retry(e) | Try::Failed(e) => {
                        fail(&mut counts, e);
                        break;
                    }
                }
            }
        }
        counts
    }

    fn open(&self) -> std::io::Result<Tls> {
        let sock = TcpStream::connect(self.addr)?;
        sock.set_read_timeout(Some(Duration::from_secs(30)))?;
        sock.set_write_timeout(Some(Duration::from_secs(30)))?;
        let _ = sock.set_nodelay(true);
        let name = rustls::pki_types::ServerName::try_from("localhost")
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let conn = rustls::ClientConnection::new(self.config.clone(), name)
            .map_err(std::io::Error::other)?;
        let mut tls = rustls::StreamOwned::new(conn, sock);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        Ok(tls)
    }

    fn once(&self, tls: &mut BufReader<Tls>) -> Try {
        let sent = tls
            .get_mut()
            .write_all(self.request.as_bytes())
            .and_then(|()| tls.get_mut().flush());
        if let Err(e) = sent {
            return Try::Retry(format!("write: {e}"));
        }
        let mut counting = Counting {
            inner: tls,
            read: 0,
        };
        match read_response(&mut counting, false) {
            Ok(resp) if resp.status != 200 => Try::Failed(format!(
                "status {}: {}",
                resp.status,
                String::from_utf8_lossy(&resp.body[..resp.body.len().min(200)])
            )),
            Ok(resp) if self.expect.as_ref().is_some_and(|b| *b != resp.body) => Try::Failed(
                format!("unexpected body {:?}", String::from_utf8_lossy(&resp.body)),
            ),
            Ok(resp) => Try::Answered {
                keep: !resp
                    .header("connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("close")),
            },
            Err(e) if counting.read == 0 => Try::Retry(format!("read: {e}")),
            Err(e) => Try::Failed(format!(
                "answer cut short after {} bytes: {e}",
                counting.read
            )),
        }
    }
}

fn fail(counts: &mut TlsCounts, error: String) {
    counts.failed += 1;
    if counts.errors.len() < 20 {
        counts.errors.push(error);
    }
}

/// A reader that counts what came through: whether any byte of an answer arrived.
struct Counting<'a, R: Read> {
    inner: &'a mut R,
    read: usize,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n;
        Ok(n)
    }
}
