//! The front under full-rate load and through every process change: the real `rgunicorn`
//! master with a `[front]` table (workers on a unix socket), driven by a keep-alive TLS
//! load ([`front_support::load`]) that keeps a request in flight on every connection.
//! Each test asserts counts: 0 failed requests, every pipelined request answered, the
//! status a slow or oversized body deserves, one log line per out-of-descriptors episode.

mod common;
mod front_support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::load::{FullRate, Options, Tally, Tls};
use common::{cpu_ticks, wait_until, Server, WELCOME, WELCOME_PATH};
use front_support::*;

/// The master with workers on a unix socket and the front before them.
struct Stack {
    server: Server,
    front: SocketAddr,
    config: MasterFront,
}

impl Stack {
    /// `args` go to `rgunicorn`; `front` is added to the `[front]` table.
    fn start(args: &[&str], front: &str) -> Stack {
        Stack::with(&common::rgunicorn_bin(), WELCOME_PATH, args, front)
    }

    /// [`Stack::start`] with another binary embedding rgunicorn; `probe` answers 200.
    fn with(bin: &std::path::Path, probe: &str, args: &[&str], front: &str) -> Stack {
        let config =
            MasterFront::write(&format!("error_log = \"{{dir}}/front-error.log\"\n{front}"));
        let mut all: Vec<String> = config.args();
        all.extend(args.iter().map(|a| a.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let server = Server::start_bin(bin, &all, &[]);
        wait_until(Duration::from_secs(10), "the front", || {
            MasterFront::address(&server.log()).is_some()
        });
        let front = MasterFront::address(&server.log()).expect("front address");
        let stack = Stack {
            server,
            front,
            config,
        };
        wait_until(
            Duration::from_secs(10),
            "an answer through the front",
            || get(&stack.config.client, stack.front, probe).is_ok_and(|r| r.status == 200),
        );
        stack
    }

    /// `conns` clients at full rate; nothing retried unless `attempts` says so.
    fn load_with(&self, path: &str, expect: Option<&str>, conns: usize, attempts: u32) -> FullRate {
        let load = FullRate::get_with(
            Tls {
                addr: self.front,
                config: self.config.client.clone(),
            },
            conns,
            path,
            Options {
                attempts,
                expect: expect.map(|b| b.as_bytes().to_vec()),
                ..Options::default()
            },
        );
        load.run_for(200, Duration::from_secs(20));
        load
    }

    fn load(&self, conns: usize) -> FullRate {
        self.load_with(WELCOME_PATH, Some(WELCOME), conns, 1)
    }

    fn front_pid(&self) -> i32 {
        MasterFront::pid(&self.server.log()).expect("front pid")
    }

    /// The front's error log (its own file: the master's log is the master's).
    fn front_log(&self) -> String {
        std::fs::read_to_string(self.config.dir.path().join("front-error.log")).unwrap_or_default()
    }

    fn booted_workers(&self) -> usize {
        self.server.log().matches("Booting worker with pid").count()
    }
}

fn assert_clean(tally: &Tally, what: &str, stack: &Stack) {
    let front = stack.front_log();
    assert!(
        tally.failures.is_empty() && tally.ok > 0,
        "{what}: {}\n{}\n{front}",
        tally.summary(),
        stack.server.log()
    );
    assert!(
        !front.contains("[error]"),
        "{what}: the front logged an error\n{front}"
    );
}

fn kill(pid: i32, signal: i32) {
    // SAFETY: kill(2) on a process this test started.
    unsafe {
        libc::kill(pid, signal);
    }
}

#[test]
fn hup_and_ttou_under_full_load_fail_no_request_through_the_front() {
    let stack = Stack::start(&["-w", "3"], "");
    stack.server.wait_for_workers(4, Duration::from_secs(10));
    // The built-in app runs inline: the front's batches are not bounded for app threads.
    assert!(
        stack.front_log().contains("front listening on")
            && !stack.front_log().contains("app threads"),
        "{}",
        stack.front_log()
    );
    let load = stack.load(24);
    for round in 1..=2 {
        let booted = stack.booted_workers();
        stack.server.signal(libc::SIGHUP);
        wait_until(Duration::from_secs(15), "the new workers", || {
            stack.booted_workers() >= booted + 3
        });
        // The old workers retire while the load runs; the master keeps 3 and the front.
        stack.server.wait_for_workers(4, Duration::from_secs(15));
        load.run_for(500 * round, Duration::from_secs(20));
    }
    // The master forwards HUP to the front, which loads the configuration from the
    // master's arguments as the master does.
    wait_until(Duration::from_secs(10), "the front's two reloads", || {
        stack.front_log().matches("HUP: reloaded").count() == 2
    });
    stack.server.signal(libc::SIGTTOU);
    stack.server.wait_for_workers(3, Duration::from_secs(15));
    load.run_for(500, Duration::from_secs(20));
    let tally = load.finish();
    assert_clean(&tally, "HUP x2 and TTOU", &stack);
}

#[test]
fn max_requests_recycling_fails_no_request_through_the_front() {
    let stack = Stack::start(
        &[
            "-w",
            "2",
            "--max-requests",
            "300",
            "--max-requests-jitter",
            "50",
        ],
        "",
    );
    let booted = stack.booted_workers();
    let load = stack.load(16);
    wait_until(Duration::from_secs(30), "four recycled workers", || {
        stack.booted_workers() >= booted + 4
    });
    let tally = load.finish();
    assert_clean(&tally, "max_requests", &stack);
}

/// A request stuck in an app thread gets the worker's 504 and the worker is recycled;
/// the other clients, whose requests the front forwarded to that worker, lose nothing.
#[test]
fn request_timeout_recycle_fails_no_other_request_through_the_front() {
    let stack = Stack::with(
        &common::custom_app_bin(),
        "/hello",
        &["-w", "1", "--request-timeout", "1"],
        "",
    );
    // The embedded app runs on app threads: the front was told, whatever the APP says.
    assert!(
        stack
            .front_log()
            .contains("(app threads: batches of at most 4)"),
        "{}",
        stack.front_log()
    );
    let booted = stack.booted_workers();
    let load = stack.load_with("/hello", None, 16, 1);
    let resp = get(&stack.config.client, stack.front, "/spin").expect("the stuck request's answer");
    assert_eq!(resp.status, 504);
    wait_until(Duration::from_secs(15), "the replacement worker", || {
        stack.booted_workers() > booted
    });
    load.run_for(300, Duration::from_secs(20));
    let tally = load.finish();
    assert_clean(&tally, "request-timeout recycle", &stack);
}

/// A slow request on a worker with one app thread holds up no other request: the worker
/// counts as stalled after 20 ms, takes no new connection and hands the requests the
/// front offers back to it, which the front sends to the other worker (DESIGN.md, "A
/// worker whose app threads are all held up"). Before, the requests the front had sent
/// that worker waited for the slow one: about half of them, with two workers.
#[test]
fn a_slow_request_on_a_one_thread_worker_holds_up_no_other_request() {
    let stack = Stack::with(
        &common::custom_app_bin(),
        "/hello",
        &["-w", "2", "--threads", "1"],
        "",
    );
    // Both workers hold connections from the front.
    let warm = stack.load_with("/hello", None, 16, 1);
    warm.run_for(400, Duration::from_secs(20));
    assert_clean(&warm.finish(), "warm-up", &stack);

    let slow_ms = 4000;
    let slow = {
        let (client, front) = (stack.config.client.clone(), stack.front);
        std::thread::spawn(move || get(&client, front, &format!("/slow?ms={slow_ms}")))
    };
    std::thread::sleep(Duration::from_millis(300));
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let (client, front) = (stack.config.client.clone(), stack.front);
            std::thread::spawn(move || {
                let until = Instant::now() + Duration::from_millis(1500);
                let mut longest = Duration::ZERO;
                let mut answered = 0;
                while Instant::now() < until {
                    let sent = Instant::now();
                    let resp = get(&client, front, "/hello").expect("an answer");
                    assert_eq!(resp.status, 200, "{}", resp.text());
                    longest = longest.max(sent.elapsed());
                    answered += 1;
                }
                (answered, longest)
            })
        })
        .collect();
    let mut answered = 0;
    let mut longest = Duration::ZERO;
    for client in clients {
        let (n, l) = client.join().expect("a client failed");
        answered += n;
        longest = longest.max(l);
    }
    let resp = slow.join().expect("slow client").expect("the slow answer");
    assert_eq!(resp.status, 200);
    assert!(answered > 16, "{answered} answers");
    // A request held up by the slow one waits at least 2 s (it began 300 ms after it, and
    // it sleeps 4 s): the margin is wide on a busy machine.
    assert!(
        longest < Duration::from_millis(slow_ms / 2),
        "a request waited {longest:?} behind the slow one ({answered} answered)\n{}",
        stack.server.log()
    );
}

#[test]
fn kill_9_of_the_front_fails_no_request() {
    let stack = Stack::start(&["-w", "2"], "");
    // Requests in flight on the killed front's connections are sent again (no byte of
    // their answer came): the client sees the same as a network blip, never an error.
    let load = stack.load_with(WELCOME_PATH, Some(WELCOME), 16, 5);
    for _ in 0..2 {
        let pid = stack.front_pid();
        kill(pid, libc::SIGKILL);
        wait_until(Duration::from_secs(15), "the front to be restarted", || {
            stack.front_pid() != pid
        });
        load.run_for(500, Duration::from_secs(20));
    }
    let tally = load.finish();
    assert!(tally.retried > 0, "{}", tally.summary());
    assert_clean(&tally, "kill -9 of the front", &stack);
}

/// 10,000 small pipelined GETs in one send are all answered, in order (issue 11.1).
#[test]
fn ten_thousand_pipelined_gets_are_all_answered() {
    let stack = BeforeWorkers::start("");
    let tls = connect(&stack.client, stack.front.addr);
    let n = 10_000;
    let (sock_r, conn) = (tls.sock, tls.conn);
    let shared = std::sync::Arc::new(std::sync::Mutex::new(conn));
    // One thread writes everything while this one reads: neither side may wait for the other.
    let writer = {
        let shared = shared.clone();
        let mut sock_w = sock_r.try_clone().expect("clone");
        std::thread::spawn(move || {
            let mut batch = Vec::new();
            for i in 0..n {
                batch.extend_from_slice(
                    format!("GET /p/{i} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes(),
                );
            }
            for part in batch.chunks(16 * 1024) {
                let mut conn = shared.lock().expect("lock");
                conn.writer().write_all(part).expect("queue");
                while conn.wants_write() {
                    conn.write_tls(&mut sock_w).expect("send");
                }
            }
        })
    };
    let mut reader = SharedTls {
        conn: shared,
        sock: sock_r,
    };
    let mut buffered = std::io::BufReader::new(&mut reader);
    for i in 0..n {
        let resp = read_response(&mut buffered, false).expect("response");
        assert_eq!(resp.status, 200, "request {i}");
        let json: serde_json::Value = serde_json::from_slice(&resp.body).expect("json");
        assert_eq!(json["path"], format!("/p/{i}"), "out of order");
    }
    writer.join().expect("writer");
}

/// A rustls client connection shared by a writing thread and a reading one.
struct SharedTls {
    conn: std::sync::Arc<std::sync::Mutex<rustls::ClientConnection>>,
    sock: std::net::TcpStream,
}

impl Read for SharedTls {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            {
                let mut conn = self.conn.lock().expect("lock");
                match conn.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            // Wait for bytes without holding the lock, then hand them to rustls.
            let mut peek = [0u8; 1];
            if self.sock.peek(&mut peek)? == 0 {
                return Ok(0);
            }
            let mut conn = self.conn.lock().expect("lock");
            conn.read_tls(&mut self.sock)?;
            conn.process_new_packets().map_err(std::io::Error::other)?;
        }
    }
}

/// A body that trickles gets the 408 the workers would give, from the front itself, with
/// one info line and no error; one larger than the limit gets 413 (issue 11.3).
#[test]
fn slow_body_gets_408_and_a_large_one_413_through_the_front() {
    let stack = Stack::start(
        &["-w", "1", "--limit-request-body", "100000"],
        "client_max_body_size = \"200k\"",
    );
    let mut slow = Vec::new();
    for _ in 0..3 {
        let mut tls = connect(&stack.config.client, stack.front);
        write!(
            tls,
            "POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\nabc"
        )
        .expect("head");
        tls.flush().expect("flush");
        slow.push(tls);
    }
    let started = Instant::now();
    for tls in &mut slow {
        let resp = read_response(tls, false).expect("408");
        assert_eq!(resp.status, 408, "{}", resp.text());
    }
    assert!(started.elapsed() < Duration::from_secs(20));
    // The workers' limit is 100000: a 150000-byte body is refused by them, a 300000-byte
    // one by the front; either way the client gets 413, not 502.
    for size in [150_000usize, 300_000] {
        let mut tls = connect(&stack.config.client, stack.front);
        write!(
            tls,
            "POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: {size}\r\n\r\n"
        )
        .expect("head");
        let _ = tls.write_all(&vec![b'b'; size]);
        let resp = read_response(&mut tls, false).expect("413");
        assert_eq!(resp.status, 413, "{size}: {}", resp.text());
    }
    let log = stack.front_log();
    assert!(!log.contains("[error]"), "{log}");
    assert_eq!(
        log.matches("timed out sending the request body").count(),
        3,
        "{log}"
    );
}

/// Out of descriptors, the front stops accepting for a moment, logs once per episode with
/// a count, stays idle, and serves again by itself (issue 10.5).
#[test]
fn out_of_descriptors_pauses_accepting_with_one_line_and_recovers() {
    let scripted = Scripted::start_limited("threads = 1", Some(64));
    let (front, config) = (&scripted.front, &scripted.client);
    assert_eq!(
        get(config, front.addr, "/count").expect("before").status,
        200
    );
    // Hold more connections than the front has descriptors.
    let held: Vec<_> = (0..100)
        .filter_map(|_| std::net::TcpStream::connect(front.addr).ok())
        .collect();
    let pid = front.proc.child.id() as i32;
    std::thread::sleep(Duration::from_millis(500));
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(2));
    let spent = cpu_ticks(pid) - before;
    // 2 s of wall time: an idle process spends a few ticks (of 10 ms) at most.
    assert!(
        spent < 50,
        "the front spent {spent} ticks while out of descriptors"
    );
    drop(held);
    wait_until(Duration::from_secs(10), "serving again", || {
        get(config, front.addr, "/count").is_ok_and(|r| r.status == 200)
    });
    // The episode ends (and is logged) once accepting has worked for a moment.
    let mut lines: Vec<String> = front
        .proc
        .wait_line("accept", Duration::from_secs(10))
        .into_iter()
        .collect();
    while let Some(line) = front.proc.wait_line("accept", Duration::from_secs(3)) {
        lines.push(line);
    }
    assert_eq!(lines.len(), 1, "one line per episode: {lines:?}");
    assert!(
        lines[0].contains("descriptors") && lines[0].contains("times"),
        "{lines:?}"
    );
}
