//! Test support: start the real `rgunicorn` binary (or the custom_app example) on port 0,
//! learn its address from its log, talk to it over real sockets, signal it, and make
//! sure it and its workers are gone when the test ends.

#![allow(dead_code)]

pub mod load;
pub mod tools;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const WELCOME: &str = r#"{"code": "SUCCESS", "data": {"title": "Welcome to HUO Ke Website"}}"#;
pub const WELCOME_PATH: &str = "/api/v1/welcome/get_welcome_data";

pub fn rgunicorn_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rgunicorn"))
}

/// The custom_app example, built by `cargo test` beside the binaries.
pub fn custom_app_bin() -> PathBuf {
    let bin = rgunicorn_bin();
    let dir = bin.parent().expect("binary has a directory");
    dir.join("examples").join("custom_app")
}

pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
    pub dir: tempfile::TempDir,
}

impl Server {
    /// Start rgunicorn with `args`; binds 127.0.0.1:0 unless `args` has a bind.
    pub fn start(args: &[&str]) -> Server {
        Server::start_bin(&rgunicorn_bin(), args, &[])
    }

    pub fn start_bin(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cmd = Command::new(bin);
        if !args.iter().any(|a| *a == "-b" || a.starts_with("--bind")) {
            cmd.args(["-b", "127.0.0.1:0"]);
        }
        cmd.args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("WEB_CONCURRENCY")
            .env_remove("PORT")
            .env_remove("RGUNICORN_CMD_ARGS")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        Server::spawn(cmd, worker_count(args), dir)
    }

    /// Start a prepared command (its stderr is taken over as the log; a piped stdout is
    /// collected into the log too) and wait until `workers` workers have booted.
    pub fn spawn(mut cmd: Command, workers: usize, dir: tempfile::TempDir) -> Server {
        cmd.stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start rgunicorn");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr piped");
        let stdout = child.stdout.take();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || collect_lines(stderr, &sink));
        if let Some(stdout) = stdout {
            let sink = Arc::clone(&log);
            std::thread::spawn(move || collect_lines(stdout, &sink));
        }
        let mut server = Server {
            child,
            addr: "127.0.0.1:0".parse().unwrap(),
            log,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = server.log();
            let booted = text.matches("Booting worker with pid").count();
            if let Some(addr) = text
                .lines()
                .filter_map(|l| l.split("Listening at: http://").nth(1))
                .filter_map(|rest| rest.split_whitespace().next())
                .find_map(|a| a.parse::<SocketAddr>().ok())
            {
                server.addr = addr;
            }
            let listening = text.contains("Listening at:");
            if listening && booted >= workers {
                // Give the last worker a moment to register its listeners.
                std::thread::sleep(Duration::from_millis(100));
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("rgunicorn exited early with {status}:\n{text}");
            }
            if Instant::now() > deadline {
                panic!("rgunicorn did not start in time:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The master's live children (the workers), from /proc.
    pub fn worker_pids(&self) -> Vec<i32> {
        let mut pids = children_of(self.pid());
        pids.sort();
        pids
    }

    /// Wait until the master has exactly `n` children, or panic.
    pub fn wait_for_workers(&self, n: usize, within: Duration) -> Vec<i32> {
        let deadline = Instant::now() + within;
        loop {
            let pids = self.worker_pids();
            if pids.len() == n && pids.iter().all(|p| is_running(*p)) {
                return pids;
            }
            if Instant::now() > deadline {
                panic!("expected {n} workers, have {pids:?}\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with a pid we started; no memory is involved.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                panic!("rgunicorn did not exit in time:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn connect(&self) -> TcpStream {
        let stream = match TcpStream::connect(self.addr) {
            Ok(stream) => stream,
            Err(err) => panic!(
                "connect to {}: {err} (the master's {}):\n{}",
                self.addr,
                std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
                    .ok()
                    .and_then(|s| s
                        .lines()
                        .find(|l| l.starts_with("State:"))
                        .map(str::to_string))
                    .unwrap_or_else(|| "process is gone".to_string()),
                self.log()
            ),
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        stream
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        stop_master(&mut self.child);
    }
}

/// A process's live children (forked by its main thread), from /proc.
pub fn children_of(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Kill a master this test started, and its children (workers, the front), never a
/// stranger: pids wrap at 32768 on these machines and the tests start thousands, so a
/// child's pid read before the master dies may be another process's right after.
/// Stopped first, the master neither reaps nor respawns, so its children's pids stay
/// theirs (alive or zombies) until it is killed.
pub fn stop_master(master: &mut std::process::Child) {
    if !matches!(master.try_wait(), Ok(None)) {
        return; // exited and reaped: its children are no longer ours to find
    }
    let pid = master.id() as i32;
    // SAFETY: kill(2) on this test's own child, not reaped yet.
    unsafe {
        libc::kill(pid, libc::SIGSTOP);
    }
    for child in children_of(pid) {
        // SAFETY: kill(2) on children of the stopped master, which cannot reap them.
        unsafe {
            libc::kill(child, libc::SIGKILL);
        }
    }
    let _ = master.kill();
    let _ = master.wait();
}

fn collect_lines(from: impl Read, sink: &Mutex<String>) {
    for line in BufReader::new(from).lines().map_while(Result::ok) {
        let mut log = sink.lock().unwrap();
        log.push_str(&line);
        log.push('\n');
    }
}

pub fn worker_count(args: &[&str]) -> usize {
    args.windows(2)
        .find(|w| w[0] == "-w" || w[0] == "--workers")
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(1)
}

/// Field `n` of a /proc `stat` file's text, numbered from 1 as proc(5) does, for `n` >= 3:
/// the fields after the command name, which ends at the last ')' (a name may hold spaces).
pub fn stat_field(stat: &str, n: usize) -> Option<&str> {
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(n.checked_sub(3)?)
}

pub fn is_running(pid: i32) -> bool {
    // Field 3 is the state letter; Z is a zombie.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat_field(&stat, 3).is_some_and(|state| state != "Z"))
}

/// One parsed HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    /// The status line's reason phrase, latin-1 bytes as text.
    pub reason: String,
    pub version: String,
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

/// Reads responses off one connection, keeping what belongs to the next one.
pub struct Reader<R: Read> {
    inner: R,
    buf: Vec<u8>,
    /// Bytes read from `inner` so far.
    received: u64,
}

impl<R: Read> Reader<R> {
    pub fn new(inner: R) -> Self {
        Reader {
            inner,
            buf: Vec::new(),
            received: 0,
        }
    }

    /// The connection underneath, to send the next request on.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Bytes read from the connection so far (to tell whether any of an answer came).
    pub fn received(&self) -> u64 {
        self.received
    }

    fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 16384];
        let n = self.inner.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        self.received += n as u64;
        Ok(n)
    }

    /// Read one response; `head_request` when it answers a HEAD (no body follows).
    pub fn response(&mut self, head_request: bool) -> std::io::Result<Resp> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(len) = parsed
                .parse(&self.buf)
                .map_err(|e| std::io::Error::other(e.to_string()))?
            {
                let status = parsed.code.unwrap_or(0);
                let reason = parsed.reason.unwrap_or_default().to_string();
                let version = format!("HTTP/1.{}", parsed.version.unwrap_or(1));
                let headers: Vec<(String, String)> = parsed
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                self.buf.drain(..len);
                let mut resp = Resp {
                    status,
                    reason,
                    version,
                    headers,
                    body: Vec::new(),
                };
                if head_request || status < 200 || status == 204 || status == 304 {
                    return Ok(resp);
                }
                if let Some(len) = resp.header("content-length") {
                    let len: usize = len.parse().map_err(std::io::Error::other)?;
                    while self.buf.len() < len {
                        if self.fill()? == 0 {
                            return Err(std::io::ErrorKind::UnexpectedEof.into());
                        }
                    }
                    resp.body = self.buf.drain(..len).collect();
                } else if resp
                    .header("transfer-encoding")
                    .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
                {
                    resp.body = self.chunked()?;
                } else {
                    while self.fill()? > 0 {}
                    resp.body = std::mem::take(&mut self.buf);
                }
                return Ok(resp);
            }
            if self.fill()? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    fn line(&mut self) -> std::io::Result<String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Ok(line);
            }
            if self.fill()? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    fn chunked(&mut self) -> std::io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let size =
                usize::from_str_radix(self.line()?.trim(), 16).map_err(std::io::Error::other)?;
            if size == 0 {
                while !self.line()?.is_empty() {}
                return Ok(body);
            }
            while self.buf.len() < size + 2 {
                if self.fill()? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
        }
    }

    /// True when the peer has closed (EOF) with nothing more to read.
    pub fn at_eof(&mut self) -> bool {
        self.buf.is_empty() && matches!(self.fill(), Ok(0) | Err(_))
    }
}

/// Send raw bytes on a new connection and read one response.
pub fn exchange(addr: SocketAddr, raw: &[u8]) -> Resp {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(raw).expect("write");
    Reader::new(stream)
        .response(raw.starts_with(b"HEAD "))
        .expect("response")
}

pub fn get(addr: SocketAddr, path: &str) -> Resp {
    exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// Wait until `cond` holds, or panic with `what` after `within`.
pub fn wait_until(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// CPU time (user + system, in clock ticks) a process has used.
pub fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // utime is field 14, stime 15.
    let ticks = |n| -> u64 {
        stat_field(&stat, n)
            .and_then(|f| f.parse().ok())
            .expect("cpu time")
    };
    ticks(14) + ticks(15)
}

/// Whether this test may mount a small tmpfs in a mount namespace of its own: root, and
/// util-linux's `unshare` allowed to do it (root in a container may still be refused).
/// Says why not on stderr; the full-disk tests skip then.
pub fn can_mount_small_tmpfs() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to mount a small filesystem");
        return false;
    }
    let probe = tempfile::tempdir().expect("tempdir");
    let mounts = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "mount",
            "-t",
            "tmpfs",
        ])
        .args(["-o", "size=64k", "tmpfs"])
        .arg(probe.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounts {
        eprintln!("skipped: cannot mount a tmpfs in a mount namespace here (unshare)");
    }
    mounts
}
