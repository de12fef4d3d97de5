//! Helpers for the front's tests (tests/front*.rs, and the master's tests that run a
//! front): certificates made at test time (rcgen), the real binaries started on port 0
//! and temp unix sockets, a scripted upstream over a unix socket, a front under the
//! master ([`MasterFront`]), and a rustls client.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SerialNumber};

/// A test CA and a leaf for localhost, written as PEM files in `dir`.
pub struct Certs {
    pub dir: PathBuf,
    pub ca_pem: String,
    ca_cert: rcgen::Certificate,
    ca_key: KeyPair,
}

impl Certs {
    pub fn new(dir: &Path) -> Certs {
        let ca_key = KeyPair::generate().expect("ca key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "rgunicorn test CA");
        let ca_cert = params.self_signed(&ca_key).expect("ca cert");
        let ca_pem = ca_cert.pem();
        std::fs::write(dir.join("ca.pem"), &ca_pem).expect("write ca");
        Certs {
            dir: dir.to_path_buf(),
            ca_pem,
            ca_cert,
            ca_key,
        }
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Write a leaf for localhost with `serial` to server.pem/server.key.
    pub fn write_leaf(&self, serial: u8) {
        let (cert, key) = self.leaf(serial, None);
        std::fs::write(self.dir.join("server.pem"), cert).expect("write cert");
        let key_path = self.dir.join("server.key");
        std::fs::write(&key_path, key).expect("write key");
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod key");
    }

    /// Write a leaf for `names` with `serial` to `STEM.pem`/`STEM.key`.
    pub fn write_named(&self, serial: u8, names: &[&str], stem: &str) {
        let (cert, key) = self.leaf_for(serial, names, None);
        std::fs::write(self.dir.join(format!("{stem}.pem")), cert).expect("write cert");
        let key_path = self.dir.join(format!("{stem}.key"));
        std::fs::write(&key_path, key).expect("write key");
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod key");
    }

    /// A leaf PEM and key PEM; `not_after` in the past makes it expired.
    pub fn leaf(&self, serial: u8, expired: Option<()>) -> (String, String) {
        self.leaf_for(serial, &["localhost"], expired)
    }

    fn leaf_for(&self, serial: u8, names: &[&str], expired: Option<()>) -> (String, String) {
        let key = KeyPair::generate().expect("leaf key");
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("leaf params");
        params.serial_number = Some(SerialNumber::from(vec![serial]));
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress("127.0.0.1".parse().expect("ip")));
        if expired.is_some() {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = params
            .signed_by(&key, &self.ca_cert, &self.ca_key)
            .expect("sign leaf");
        (cert.pem(), key.serialize_pem())
    }
}

/// The contents of `path` once a line of it contains `needle` (access lines are written
/// by the front's event loops a moment after the response: nginx's `buffer=`).
pub fn read_log_with(path: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process killed when dropped.
pub struct Proc {
    pub child: Child,
    pub stderr_lines: mpsc::Receiver<String>,
}

impl Proc {
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    /// Wait for a stderr line containing `needle`; returns it.
    pub fn wait_line(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.stderr_lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Some(line),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(mut cmd: Command) -> Proc {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if std::env::var_os("FRONT_TEST_VERBOSE").is_some() {
                eprintln!("  | {line}");
            }
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Proc {
        child,
        stderr_lines: rx,
    }
}

/// The real worker server running the built-in echo app on a unix socket.
pub fn start_workers(socket: &Path) -> Proc {
    start_workers_with(socket, &[])
}

/// [`start_workers`] with more arguments for `rgunicorn`.
pub fn start_workers_with(socket: &Path, args: &[&str]) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rgunicorn"));
    cmd.arg("-b")
        .arg(format!("unix:{}", socket.display()))
        .args(["-w", "1"])
        .args(args)
        .arg("echo");
    let proc = spawn(cmd);
    let deadline = Instant::now() + Duration::from_secs(20);
    while UnixStream::connect(socket).is_err() {
        assert!(
            Instant::now() < deadline,
            "workers did not come up on {}",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    proc
}

/// A running front and its actual addresses.
pub struct Front {
    pub proc: Proc,
    pub addr: SocketAddr,
    pub redirect: Option<SocketAddr>,
    pub config: PathBuf,
}

/// Write `dir/front.toml` with `[front]` holding `extra` plus the test certificate, and
/// start `rgunicorn-front` on it; waits until it listens.
pub fn start_front(dir: &Path, upstream: &str, extra: &str) -> Front {
    start_front_limited(dir, upstream, extra, None)
}

/// [`start_front`] with its descriptors limited to `nofile` (`ulimit -n`).
pub fn start_front_limited(dir: &Path, upstream: &str, extra: &str, nofile: Option<u64>) -> Front {
    start_front_launched(dir, upstream, extra, |config| {
        let mut cmd = Command::new(front_bin());
        cmd.arg("-c").arg(config);
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            let limit = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            // SAFETY: runs in the forked child before exec; setrlimit is async-signal-safe
            // and touches only the child's own limits.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        cmd
    })
}

pub fn front_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_rgunicorn-front"))
}

/// [`start_front`], the command made by `launch` from the config file's path (to run the
/// front under another program, as `unshare`).
pub fn start_front_launched(
    dir: &Path,
    upstream: &str,
    extra: &str,
    launch: impl FnOnce(&Path) -> Command,
) -> Front {
    let config = dir.join("front.toml");
    let text = format!(
        "[front]\nlisten = \"127.0.0.1:0\"\ncertfile = \"{}\"\nkeyfile = \"{}\"\nupstream = \"{upstream}\"\n{access_log}{threads}{extra}\n",
        dir.join("server.pem").display(),
        dir.join("server.key").display(),
        access_log = if extra.contains("access_log") {
            ""
        } else {
            "access_log = \"off\"\n"
        },
        threads = if extra.contains("threads") { "" } else { "threads = 2\n" },
    );
    std::fs::write(&config, text).expect("write config");
    let proc = spawn(launch(&config));
    let line = proc
        .wait_line("front listening on ", Duration::from_secs(20))
        .expect("front did not start");
    let addr = line
        .split("front listening on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .expect("listening address");
    let redirect = line
        .split("redirecting http on ")
        .nth(1)
        .and_then(|rest| rest.trim().parse().ok());
    Front {
        proc,
        addr,
        redirect,
        config,
    }
}

/// A front under the master (`rgunicorn -c CONF`): a temp directory holding the test
/// certificate and CONF, whose `[front]` table listens on 127.0.0.1:0 with that
/// certificate, forwards to the workers' unix socket in the directory, keeps no access
/// log and runs one event loop, plus `extra` lines (where `{dir}` stands for the
/// directory). The caller starts the master with [`MasterFront::args`] and finds the
/// front in its log ([`MasterFront::address`]).
pub struct MasterFront {
    pub dir: tempfile::TempDir,
    pub certs: Certs,
    pub conf: PathBuf,
    /// The workers' unix socket, which the front forwards to.
    pub sock: PathBuf,
    pub client: Arc<rustls::ClientConfig>,
}

impl MasterFront {
    pub fn write(extra: &str) -> MasterFront {
        let (dir, certs) = dir_with_certs();
        let sock = dir.path().join("w.sock");
        let conf = dir.path().join("rg.toml");
        let text = format!(
            "[front]\nlisten = \"127.0.0.1:0\"\ncertfile = \"{}\"\nkeyfile = \"{}\"\n\
             upstream = \"unix:{}\"\naccess_log = \"off\"\nthreads = 1\n{}\n",
            dir.path().join("server.pem").display(),
            dir.path().join("server.key").display(),
            sock.display(),
            extra.replace("{dir}", &dir.path().display().to_string()),
        );
        std::fs::write(&conf, text).expect("write config");
        let client = client_config(&certs.ca_pem);
        MasterFront {
            dir,
            certs,
            conf,
            sock,
            client,
        }
    }

    /// `-c CONF -b unix:SOCK`: the master's arguments for this front and its workers.
    pub fn args(&self) -> Vec<String> {
        vec![
            "-c".into(),
            self.conf.display().to_string(),
            "-b".into(),
            format!("unix:{}", self.sock.display()),
        ]
    }

    /// The front's TLS address, once the master's `log` says it listens.
    pub fn address(log: &str) -> Option<SocketAddr> {
        last_word_after(log, "Front listening at: https://").and_then(|a| a.parse().ok())
    }

    /// The pid of the front the master's `log` last started.
    pub fn pid(log: &str) -> Option<i32> {
        last_word_after(log, "Booting front with pid: ").and_then(|p| p.parse().ok())
    }
}

/// The word after the last `key` in `log`.
pub fn last_word_after(log: &str, key: &str) -> Option<String> {
    log.lines()
        .filter_map(|l| l.split(key).nth(1))
        .filter_map(|rest| rest.split_whitespace().next().map(str::to_string))
        .next_back()
}

/// A temporary directory holding a test CA and a leaf for localhost (serial 01).
fn dir_with_certs() -> (tempfile::TempDir, Certs) {
    let dir = tempfile::Builder::new()
        .prefix("front-test")
        .tempdir()
        .expect("tempdir");
    let certs = Certs::new(dir.path());
    certs.write_leaf(1);
    (dir, certs)
}

/// A front (threads as `extra` says, else 2) before a scripted upstream, with its test
/// certificates and a client trusting them: what most front tests start from.
pub struct Scripted {
    pub dir: tempfile::TempDir,
    pub certs: Certs,
    pub upstream: TestUpstream,
    pub front: Front,
    pub client: Arc<rustls::ClientConfig>,
}

impl Scripted {
    pub fn start(extra: &str) -> Scripted {
        Scripted::start_limited(extra, None)
    }

    /// [`Scripted::start`] with the front's descriptors limited to `nofile`.
    pub fn start_limited(extra: &str, nofile: Option<u64>) -> Scripted {
        Scripted::start_in(extra, |dir, upstream, extra| {
            start_front_limited(dir, upstream, extra, nofile)
        })
    }

    /// [`Scripted::start`], the front started by `start(dir, upstream, extra)`.
    pub fn start_in(extra: &str, start: impl FnOnce(&Path, &str, &str) -> Front) -> Scripted {
        let (dir, certs) = dir_with_certs();
        let upstream = TestUpstream::start(&dir.path().join("up.sock"));
        let front = start(
            dir.path(),
            &format!("unix:{}", upstream.path.display()),
            extra,
        );
        let client = client_config(&certs.ca_pem);
        Scripted {
            dir,
            certs,
            upstream,
            front,
            client,
        }
    }
}

/// A front before the real workers (the echo app on a unix socket), with its test
/// certificates and a client trusting them.
pub struct BeforeWorkers {
    pub dir: tempfile::TempDir,
    pub certs: Certs,
    pub workers: Proc,
    pub front: Front,
    pub client: Arc<rustls::ClientConfig>,
}

impl BeforeWorkers {
    pub fn start(extra: &str) -> BeforeWorkers {
        let (dir, certs) = dir_with_certs();
        let sock = dir.path().join("w.sock");
        let workers = start_workers(&sock);
        let front = start_front(dir.path(), &format!("unix:{}", sock.display()), extra);
        let client = client_config(&certs.ca_pem);
        BeforeWorkers {
            dir,
            certs,
            workers,
            front,
            client,
        }
    }
}

/// A rustls client configuration trusting the test CA.
pub fn client_config(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("ca pem")).expect("add ca");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

pub type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection to the front, handshake done.
pub fn connect(config: &Arc<rustls::ClientConfig>, addr: SocketAddr) -> Tls {
    try_connect(config, addr).expect("TLS connection to the front")
}

/// [`connect`], with failures returned.
pub fn try_connect(config: &Arc<rustls::ClientConfig>, addr: SocketAddr) -> std::io::Result<Tls> {
    let sock = TcpStream::connect(addr)?;
    sock.set_read_timeout(Some(Duration::from_secs(20)))?;
    let name = rustls::pki_types::ServerName::try_from("localhost")
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let conn =
        rustls::ClientConnection::new(config.clone(), name).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// The serial of the certificate the server presented, as hex.
pub fn peer_serial(tls: &Tls) -> String {
    let certs = tls.conn.peer_certificates().expect("peer certs");
    let (_, cert) = x509_parser::parse_x509_certificate(certs[0].as_ref()).expect("parse cert");
    cert.raw_serial_as_string()
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Read one response (Content-Length, chunked, or until close) from `stream`.
pub fn read_response(stream: &mut impl Read, head_request: bool) -> std::io::Result<Resp> {
    let mut reader = ByteReader { inner: stream };
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(reader.byte()?);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut resp = Resp {
        status,
        headers,
        body: Vec::new(),
    };
    if head_request || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(resp);
    }
    if resp
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut line = Vec::new();
            while !line.ends_with(b"\r\n") {
                line.push(reader.byte()?);
            }
            let size_text = String::from_utf8_lossy(&line[..line.len() - 2]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size {size_text:?}")))?;
            let mut chunk = vec![0u8; size + 2];
            reader.inner.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            resp.body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(len) = resp
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        resp.body = vec![0u8; len];
        reader.inner.read_exact(&mut resp.body)?;
    } else {
        let _ = reader.inner.read_to_end(&mut resp.body);
    }
    Ok(resp)
}

struct ByteReader<'a, R: Read> {
    inner: &'a mut R,
}

impl<R: Read> ByteReader<'_, R> {
    fn byte(&mut self) -> std::io::Result<u8> {
        let mut b = [0u8; 1];
        self.inner.read_exact(&mut b)?;
        Ok(b[0])
    }
}

/// One GET over a fresh TLS connection.
pub fn get(
    config: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    path: &str,
) -> std::io::Result<Resp> {
    let mut tls = try_connect(config, addr)?;
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    tls.flush()?;
    read_response(&mut tls, false)
}

/// A scripted upstream on a unix socket: answers by path.
/// - `/count`: `conn=<connection number> req=<request number on it>`, keep-alive
/// - `/slow/<ms>`: the same after sleeping
/// - `/hang`: never answers
/// - `/big/<bytes>`: a chunked body of that many `x`
/// - `/until-close/<bytes>`: HTTP/1.0-style body ended by closing
/// - `/handback`: handed back unstarted, as a stalled worker does, when the front offered
///   it (`rgunicorn_http::resend`); else as `/count`
/// - `/close`: as `/count`, with `Connection: close`, and the connection closed unread
///
/// A query (`/count?a`) changes nothing but marks the request in `seen`.
pub struct TestUpstream {
    pub path: PathBuf,
    pub connections: Arc<AtomicUsize>,
    /// Requests that had arrived already when the one before them was answered
    /// (pipelined by the front rather than sent one round trip at a time).
    pub pipelined: Arc<AtomicUsize>,
    /// Every request taken: its connection, its number on that connection, its target.
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

/// A request as the scripted upstream took it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub conn: usize,
    pub n: usize,
    pub target: String,
    /// The front offered to take the request back.
    pub offered: bool,
    /// The request body as received.
    pub body: Vec<u8>,
}

impl TestUpstream {
    pub fn start(path: &Path) -> TestUpstream {
        let listener = UnixListener::bind(path).expect("bind test upstream");
        let connections = Arc::new(AtomicUsize::new(0));
        let pipelined = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (counter, waiting, log) = (connections.clone(), pipelined.clone(), seen.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let id = counter.fetch_add(1, Ordering::SeqCst) + 1;
                let (waiting, log) = (waiting.clone(), log.clone());
                std::thread::spawn(move || serve_upstream(stream, id, &waiting, &log));
            }
        });
        TestUpstream {
            path: path.to_path_buf(),
            connections,
            pipelined,
            seen,
        }
    }

    /// The request whose target is `target`, once taken.
    pub fn find(&self, target: &str) -> Option<Seen> {
        let seen = self.seen.lock().expect("upstream log");
        seen.iter().find(|s| s.target == target).cloned()
    }
}

fn serve_upstream(stream: UnixStream, id: usize, pipelined: &AtomicUsize, seen: &Mutex<Vec<Seen>>) {
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut out = stream;
    for n in 1.. {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        let mut offered = false;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
                offered |= name.eq_ignore_ascii_case(rgunicorn_http::resend::OFFER_FIELD);
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if !reader.buffer().is_empty() {
            pipelined.fetch_add(1, Ordering::SeqCst);
        }
        let target = request_line.split(' ').nth(1).unwrap_or("/").to_string();
        if let Ok(mut log) = seen.lock() {
            log.push(Seen {
                conn: id,
                n,
                target: target.clone(),
                offered,
                body: body.clone(),
            });
        }
        // A query only marks the request (for `seen`).
        let path = target.split('?').next().unwrap_or("/").to_string();
        let result = if path == "/close" {
            let body = format!("conn={id} req={n}");
            let _ = write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            return;
        } else if path == "/handback" && offered {
            out.write_all(rgunicorn_http::resend::HANDED_BACK)
        } else if path == "/count" || path == "/handback" {
            let body = format!("conn={id} req={n}");
            write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        } else if let Some(ms) = path.strip_prefix("/slow/") {
            std::thread::sleep(Duration::from_millis(ms.parse().unwrap_or(0)));
            let body = format!("conn={id} req={n}");
            write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        } else if path == "/hang" {
            std::thread::sleep(Duration::from_secs(30));
            return;
        } else if let Some(size) = path.strip_prefix("/big/") {
            let mut left: usize = size.parse().unwrap_or(0);
            let chunk = vec![b'x'; 60_000];
            let mut result =
                out.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
            while left > 0 && result.is_ok() {
                let n = left.min(chunk.len());
                result = write!(out, "{n:x}\r\n")
                    .and_then(|_| out.write_all(&chunk[..n]))
                    .and_then(|_| out.write_all(b"\r\n"));
                left -= n;
            }
            result.and_then(|_| out.write_all(b"0\r\n\r\n"))
        } else if let Some(size) = path.strip_prefix("/until-close/") {
            let size: usize = size.parse().unwrap_or(0);
            let _ = out.write_all(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n");
            let _ = out.write_all(&vec![b'y'; size]);
            return;
        } else {
            out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        };
        if result.is_err() {
            return;
        }
    }
}
