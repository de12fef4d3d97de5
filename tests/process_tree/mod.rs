//! The process tree as a whole (issue 10, items 3 and 4): what is left after the master
//! is killed, which listening sockets each process holds, how the master restarts a
//! front that dies, and how a stop refuses new connections at once while in-flight
//! requests finish. Real binaries, real signals, real sockets; counts and process state
//! are asserted, never speed.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::load::{FullRate, Options, Tcp};
use crate::common::*;
use crate::front_support;

mod upgrade;

/// rgunicorn (or the custom_app example) with a `[front]` table, its workers on a unix
/// socket (the front's upstream) plus the binds the test asks for, started with exactly
/// the arguments given so a HUP re-reads them as they are.
struct Tree {
    child: Child,
    log: Arc<Mutex<String>>,
    dir: tempfile::TempDir,
    conf: PathBuf,
    sock: PathBuf,
    client: Arc<rustls::ClientConfig>,
}

impl Tree {
    /// `binds` go into the config file beside the unix socket; `top` is more top-level
    /// config (before `[front]`). Returns once `GET ready` through the front is a 200.
    fn start(bin: &Path, ready: &str, binds: &[&str], top: &str) -> Tree {
        Tree::start_with_front(bin, ready, binds, top, "threads = 2")
    }

    /// [`Tree::start`], with `front` added to the `[front]` table.
    fn start_with_front(bin: &Path, ready: &str, binds: &[&str], top: &str, front: &str) -> Tree {
        let dir = tempfile::tempdir().expect("tempdir");
        let certs = front_support::Certs::new(dir.path());
        certs.write_leaf(1);
        let sock = dir.path().join("w.sock");
        let conf = dir.path().join("rg.toml");
        write_tree_config(&conf, &sock, binds, top, front);
        let mut child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("WEB_CONCURRENCY")
            .env_remove("PORT")
            .env_remove("RGUNICORN_CMD_ARGS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rgunicorn");
        let stderr = child.stderr.take().expect("stderr piped");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().expect("log lock");
                log.push_str(&line);
                log.push('\n');
            }
        });
        let tree = Tree {
            child,
            log,
            client: front_support::client_config(&certs.ca_pem),
            dir,
            conf,
            sock,
        };
        wait_until(Duration::from_secs(20), "the front to answer", || {
            tree.front_addr()
                .is_some_and(|addr| tls_get(&tree.client, addr, ready).is_ok_and(|s| s == 200))
        });
        tree
    }

    fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The value after the last `key` in the log.
    fn last(&self, key: &str) -> Option<String> {
        self.log()
            .lines()
            .filter_map(|l| l.split(key).nth(1))
            .filter_map(|rest| rest.split_whitespace().next().map(str::to_string))
            .next_back()
    }

    fn front_addr(&self) -> Option<SocketAddr> {
        self.last("Front listening at: https://")?.parse().ok()
    }

    fn front_pid(&self) -> i32 {
        self.last("Booting front with pid: ")
            .and_then(|p| p.parse().ok())
            .expect("front pid")
    }

    /// The address a bind on `host` got (port 0 resolved).
    fn bound(&self, host: &str) -> SocketAddr {
        self.log()
            .lines()
            .filter_map(|l| l.split("Listening at: http://").nth(1))
            .filter_map(|rest| rest.split_whitespace().next())
            .filter_map(|a| a.parse::<SocketAddr>().ok())
            .find(|a| a.ip().to_string() == host)
            .expect("bound address")
    }

    fn children(&self) -> Vec<i32> {
        children_of(self.pid())
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the master this test started.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let mut code = None;
        wait_until(within, "the master to exit", || {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    code = status.code();
                    true
                }
                _ => false,
            }
        });
        code
    }

    fn rewrite_config(&self, binds: &[&str], top: &str) {
        write_tree_config(&self.conf, &self.sock, binds, top, "threads = 2");
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        stop_master(&mut self.child);
        let _ = &self.dir;
    }
}

/// The config: `binds` beside the unix socket, `top`, and a `[front]` table with the
/// certificate the test wrote beside it and `front`.
fn write_tree_config(conf: &Path, sock: &Path, binds: &[&str], top: &str, front: &str) {
    let dir = conf.parent().expect("config dir");
    let mut all: Vec<String> = binds.iter().map(|b| format!("{b:?}")).collect();
    all.push(format!("\"unix:{}\"", sock.display()));
    let text = format!(
        "bind = [{}]\n{top}\n[front]\nlisten = \"127.0.0.1:0\"\ncertfile = \"{}\"\nkeyfile = \"{}\"\n\
         upstream = \"unix:{}\"\naccess_log = \"off\"\n{front}\n",
        all.join(", "),
        dir.join("server.pem").display(),
        dir.join("server.key").display(),
        sock.display()
    );
    std::fs::write(conf, text).expect("write config");
}

/// One GET over a fresh TLS connection; the status, or why there was none.
fn tls_get(
    client: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    path: &str,
) -> std::io::Result<u16> {
    let sock = TcpStream::connect(addr)?;
    tls_get_on(client, sock, path)
}

fn tls_get_on(
    client: &Arc<rustls::ClientConfig>,
    sock: TcpStream,
    path: &str,
) -> std::io::Result<u16> {
    sock.set_read_timeout(Some(Duration::from_secs(20)))?;
    let name =
        rustls::pki_types::ServerName::try_from("localhost").map_err(std::io::Error::other)?;
    let conn =
        rustls::ClientConnection::new(client.clone(), name).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    tls.flush()?;
    Ok(front_support::read_response(&mut tls, false)?.status)
}

fn refused(addr: SocketAddr) -> bool {
    matches!(TcpStream::connect(addr), Err(e) if e.kind() == ErrorKind::ConnectionRefused)
}

/// The TCP ports and unix socket paths `pid` holds listening sockets for, from its
/// descriptors and /proc/net.
fn listening_sockets_of(pid: i32) -> (Vec<u16>, Vec<String>) {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter_map(|target| {
                    let t = target.to_string_lossy().into_owned();
                    t.strip_prefix("socket:[")?
                        .strip_suffix(']')
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    let mut ports = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address, st (0A: LISTEN), inode
            if f.len() > 9 && f[3] == "0A" && inodes.iter().any(|i| i == f[9]) {
                if let Some(port) = f[1]
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
                {
                    ports.push(port);
                }
            }
        }
    }
    let mut paths = Vec::new();
    let unix = std::fs::read_to_string(format!("/proc/{pid}/net/unix")).unwrap_or_default();
    for line in unix.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        // Flags 00010000: __SO_ACCEPTCON, a listening socket.
        if f.len() > 7 && f[3] == "00010000" && inodes.iter().any(|i| i == f[6]) {
            paths.push(f[7].to_string());
        }
    }
    ports.sort();
    (ports, paths)
}

#[test]
fn killing_the_master_leaves_nothing_behind_and_frees_the_ports() {
    let tree = Tree::start(
        &rgunicorn_bin(),
        WELCOME_PATH,
        &["127.0.0.1:0"],
        "workers = 2",
    );
    let tls = tree.front_addr().expect("front address");
    let plain = tree.bound("127.0.0.1");
    assert_eq!(get(plain, WELCOME_PATH).status, 200);
    let mut everyone = tree.children();
    assert_eq!(everyone.len(), 3, "two workers and the front: {everyone:?}");
    everyone.push(tree.pid());
    tree.signal(libc::SIGKILL);
    wait_until(
        Duration::from_secs(2),
        "every rgunicorn process to be gone",
        || everyone.iter().all(|p| !is_running(*p)),
    );
    // Free: a new listener can take each port, and nobody listens on the unix socket.
    TcpListener::bind(tls).expect("the front's port is free");
    TcpListener::bind(plain).expect("the workers' port is free");
    let unix = std::os::unix::net::UnixStream::connect(&tree.sock);
    assert!(
        matches!(&unix, Err(e) if e.kind() == ErrorKind::ConnectionRefused),
        "{unix:?}"
    );
}

#[test]
fn the_front_holds_only_its_own_sockets_and_a_removed_bind_stops_accepting() {
    let mut tree = Tree::start(
        &rgunicorn_bin(),
        WELCOME_PATH,
        &["127.0.0.1:0", "127.0.0.2:0"],
        "workers = 1",
    );
    let kept = tree.bound("127.0.0.1");
    let removed = tree.bound("127.0.0.2");
    let tls = tree.front_addr().expect("front address");
    let front = tree.front_pid();
    let (mut ports, paths) = listening_sockets_of(front);
    ports.dedup(); // one socket per event loop, all on the same port
    assert_eq!(
        ports,
        vec![tls.port()],
        "the front listens only on its own port"
    );
    assert!(
        paths.is_empty(),
        "the front holds the workers' unix socket: {paths:?}"
    );
    assert_eq!(get(removed, WELCOME_PATH).status, 200);

    let old = tree
        .children()
        .into_iter()
        .filter(|p| *p != front)
        .collect::<Vec<_>>();
    tree.rewrite_config(&["127.0.0.1:0"], "workers = 1");
    tree.signal(libc::SIGHUP);
    wait_until(Duration::from_secs(15), "the old worker to exit", || {
        old.iter().all(|p| !is_running(*p))
    });
    assert!(
        tree.log()
            .contains(&format!("Closing http://{removed} (no longer bound)")),
        "{}",
        tree.log()
    );
    assert!(
        refused(removed),
        "the removed bind still accepts\n{}",
        tree.log()
    );
    assert_eq!(get(kept, WELCOME_PATH).status, 200);
    assert_eq!(tls_get(&tree.client, tls, WELCOME_PATH).ok(), Some(200));
    tree.signal(libc::SIGTERM);
    assert_eq!(tree.wait_exit(Duration::from_secs(20)), Some(0));
}

#[test]
fn the_front_restarts_at_once_backs_off_in_a_crash_loop_and_its_port_stays_bound() {
    let mut tree = Tree::start(&rgunicorn_bin(), WELCOME_PATH, &[], "workers = 1");
    let tls = tree.front_addr().expect("front address");
    let kill9 = |pid: i32| {
        // SAFETY: kill(2) on the front this test's master started.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    };
    let next_front = |tree: &Tree, after: i32| {
        wait_until(
            Duration::from_secs(10),
            "the front to be started again",
            || tree.front_pid() != after,
        );
        tree.front_pid()
    };
    // A single crash: started again at once.
    let first = tree.front_pid();
    kill9(first);
    let second = next_front(&tree, first);
    assert!(
        tree.log().contains(&format!(
            "Front (pid:{first}) was killed by SIGKILL: starting it again now"
        )),
        "{}",
        tree.log()
    );
    // Killed again right after its start: a crash loop, so it waits 1 s. Meanwhile the
    // master still holds the port: a client connects (it queues) and is served once the
    // next front is up.
    kill9(second);
    wait_until(Duration::from_secs(10), "the crash to be seen", || {
        tree.log()
            .contains(&format!("Front (pid:{second}) was killed by SIGKILL"))
    });
    let queued = TcpStream::connect(tls).expect("the port stays bound while the front is down");
    assert!(
        tree.log()
            .contains("2 times in a row: starting it again in 1 s"),
        "{}",
        tree.log()
    );
    let third = next_front(&tree, second);
    assert_eq!(
        tls_get_on(&tree.client, queued, WELCOME_PATH).ok(),
        Some(200)
    );
    kill9(third);
    let _fourth = next_front(&tree, third);
    let log = tree.log();
    assert!(
        log.contains("3 times in a row: starting it again in 2 s"),
        "{log}"
    );
    assert_eq!(log.matches("Booting front with pid").count(), 4, "{log}");
    assert_eq!(tls_get(&tree.client, tls, WELCOME_PATH).ok(), Some(200));
    tree.signal(libc::SIGTERM);
    assert_eq!(tree.wait_exit(Duration::from_secs(20)), Some(0));
}

/// Keep-alive clients through a stop.
const CLIENTS: usize = 4;

#[test]
fn term_under_load_refuses_new_connections_at_once_while_requests_finish() {
    // Threads to spare beside the slow request: with one, the clients' requests on its
    // worker's connections would wait for it (no front here to hand them back), and this
    // test is about what TERM refuses.
    let args = ["-w", "2", "--threads", "4"];
    let mut server = Server::start_bin(&custom_app_bin(), &args, &[]);
    let addr = server.addr;
    // Each client stops at its refusal: it would go elsewhere.
    let options = Options {
        stop_when_refused: true,
        ..Options::default()
    };
    let load = FullRate::get_with(Tcp(addr), CLIENTS, "/hello", options);
    load.run_for(300, Duration::from_secs(20));
    let slow = std::thread::spawn(move || get(addr, "/slow?ms=3000"));
    std::thread::sleep(Duration::from_millis(500));
    server.signal(libc::SIGTERM);
    wait_until(
        Duration::from_secs(5),
        "new connections to be refused",
        || refused(addr),
    );
    assert!(
        !slow.is_finished(),
        "the in-flight request ended before new connections were refused"
    );
    let resp = slow.join().expect("the slow request");
    assert_eq!((resp.status, resp.text().as_str()), (200, "slow done\n"));
    let tally = load.finish();
    eprintln!("keep-alive clients through TERM: {}", tally.summary());
    assert!(tally.ok > 0, "{}", tally.summary());
    // Every client was refused in the end, and none was accepted and then reset.
    assert_eq!(tally.refused, CLIENTS as u64, "{}", tally.summary());
    assert!(tally.failures.is_empty(), "{}", tally.summary());
    assert_eq!(server.wait_exit(Duration::from_secs(15)).code(), Some(0));
}

#[test]
fn term_with_the_front_refuses_new_tls_connections_at_once_while_requests_finish() {
    let mut tree = Tree::start(&custom_app_bin(), "/hello", &[], "workers = 1");
    let tls = tree.front_addr().expect("front address");
    let client = tree.client.clone();
    let slow = std::thread::spawn(move || tls_get(&client, tls, "/slow?ms=3000"));
    std::thread::sleep(Duration::from_millis(500));
    tree.signal(libc::SIGTERM);
    wait_until(
        Duration::from_secs(5),
        "new TLS connections to be refused",
        || refused(tls),
    );
    assert!(
        !slow.is_finished(),
        "the in-flight request ended before new connections were refused"
    );
    assert_eq!(slow.join().expect("the slow request").ok(), Some(200));
    assert_eq!(tree.wait_exit(Duration::from_secs(20)), Some(0));
}
