//! USR2 with the front configured (issue 10): the old master hands the front's listening
//! sockets to the new master with the workers', so both fronts accept from the same
//! sockets during the hand-over and whichever master is stopped, the other keeps serving
//! without a failed request. The full-rate load ([`crate::common::load`], over rustls:
//! [`crate::common::load::Tls`]) runs through each change, on keep-alive connections and on
//! a new TLS connection per request (so both fronts get clients while both run); counts
//! and process state are asserted, never speed.
//!
//! The two hand-over tests also retire one master's workers while the other master's
//! front holds pooled upstream connections to them (the workers share the unix socket):
//! the front sends again a request such a closing connection did not answer.

use std::net::SocketAddr;
use std::time::Duration;

use super::{listening_sockets_of, refused, tls_get, Tree};
use crate::common::load::{FullRate, Tally, Tls};
use crate::common::*;

/// Keep-alive TLS connections the load keeps busy.
const KEPT: usize = 12;
/// Clients opening a new TLS connection for every request (`Connection: close`).
const FRESH: usize = 4;
const WORKERS: usize = 2;

/// The master a USR2 started, stopped (with everything it started) when dropped.
struct NewMaster {
    pid: i32,
    /// When it started (/proc/PID/stat): with the pid, what tells it from a process that
    /// got its pid after it exited (it is not this test's child, so nothing here reaps it).
    started: Option<u64>,
}

impl Drop for NewMaster {
    fn drop(&mut self) {
        if self.started.is_none() || start_time(self.pid) != self.started {
            return; // gone: the pid is no longer its
        }
        // Stopped, it neither reaps nor respawns: its children's pids stay theirs.
        // SAFETY: kill(2) on the master this test's USR2 started (pid and start time).
        unsafe {
            libc::kill(self.pid, libc::SIGSTOP);
        }
        for pid in children_of(self.pid).into_iter().chain([self.pid]) {
            // SAFETY: kill(2) on the stopped master's children, then on it.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// A process's start time, in clock ticks after boot (/proc/PID/stat, field 22).
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_field(&stat, 22)?.parse().ok()
}

fn start(front: &str) -> (Tree, SocketAddr) {
    let tree = Tree::start_with_front(
        &rgunicorn_bin(),
        WELCOME_PATH,
        &[],
        &format!("workers = {WORKERS}"),
        front,
    );
    wait_until(Duration::from_secs(10), "the workers and the front", || {
        tree.children().len() == WORKERS + 1
    });
    let tls = tree.front_addr().expect("front address");
    (tree, tls)
}

/// Keep-alive and new-connection clients through the front, both at full rate.
struct Load {
    kept: FullRate,
    fresh: FullRate,
}

impl Load {
    fn start(tree: &Tree, addr: SocketAddr) -> Load {
        let tls = || Tls {
            addr,
            config: tree.client.clone(),
        };
        let close =
            format!("GET {WELCOME_PATH} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let load = Load {
            kept: FullRate::get(tls(), KEPT, WELCOME_PATH),
            fresh: FullRate::start(tls(), FRESH, close.as_bytes()),
        };
        load.run_for(500);
        load
    }

    /// Wait for `more` answers on the keep-alive clients and a tenth of that on the others.
    fn run_for(&self, more: u64) {
        self.kept.run_for(more, Duration::from_secs(20));
        self.fresh.run_for(more / 10, Duration::from_secs(20));
    }

    fn finish(self) -> Tally {
        let mut all = self.kept.finish();
        let fresh = self.fresh.finish();
        all.ok += fresh.ok;
        all.connections += fresh.connections;
        all.failures.extend(fresh.failures);
        all
    }
}

/// USR2, and the new master it started.
fn usr2(tree: &Tree) -> NewMaster {
    tree.signal(libc::SIGUSR2);
    let started = "Started the upgraded master (pid:";
    wait_until(Duration::from_secs(15), "the new master", || {
        tree.last(started).is_some()
    });
    let pid = tree
        .last(started)
        .and_then(|p| p.trim_end_matches(')').parse().ok())
        .expect("new master pid");
    NewMaster {
        pid,
        started: start_time(pid),
    }
}

/// USR2, then wait until the new master runs its workers and its front, and its front
/// has said it listens.
fn upgrade(tree: &Tree) -> NewMaster {
    let fronts_before = tree.log().matches("front listening on").count();
    let new = usr2(tree);
    let pid = new.pid;
    wait_until(
        Duration::from_secs(20),
        "the new master's workers and front",
        || {
            children_of(pid).len() == WORKERS + 1
                && tree.log().matches("front listening on").count() > fronts_before
        },
    );
    new
}

/// The front among `pid`'s children, by its title.
fn front_of(pid: i32) -> Option<i32> {
    children_of(pid).into_iter().find(|child| {
        std::fs::read(format!("/proc/{child}/cmdline"))
            .is_ok_and(|c| c.starts_with(b"rgunicorn: front"))
    })
}

fn assert_no_failure(tally: &Tally, what: &str, tree: &Tree) {
    assert!(
        tally.failures.is_empty() && tally.ok > 0,
        "{what}: {}\n{}",
        tally.summary(),
        tree.log()
    );
}

fn terminate(pid: i32) {
    // SAFETY: kill(2) on a master this test started.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}

/// `now` holds exactly the processes of `before`.
fn assert_same_processes(mut now: Vec<i32>, before: &[i32], tree: &Tree) {
    let mut before = before.to_vec();
    now.sort();
    before.sort();
    assert_eq!(now, before, "{}", tree.log());
}

#[test]
fn usr2_with_the_front_then_term_of_the_old_master_fails_no_request() {
    // One event loop: its socket has no SO_REUSEPORT, so the new master could not bind
    // the port again; it must be handed over.
    let (mut tree, tls) = start("threads = 1");
    let old_master = tree.pid();
    let old_children = tree.children();
    let load = Load::start(&tree, tls);
    let new = upgrade(&tree);
    let new_children = children_of(new.pid);
    let new_front = front_of(new.pid).expect("the new master's front");
    load.run_for(1000);
    tree.signal(libc::SIGTERM);
    assert_eq!(tree.wait_exit(Duration::from_secs(40)), Some(0));
    load.run_for(1000);
    let tally = load.finish();
    eprintln!("USR2, TERM of the old master: {}", tally.summary());
    assert_no_failure(&tally, "USR2, then TERM of the old master", &tree);

    // One master, one front and the new workers remain.
    assert!(!is_running(old_master));
    for pid in &old_children {
        assert!(!is_running(*pid), "{pid} of the old master is left");
    }
    assert!(is_running(new.pid), "{}", tree.log());
    assert_same_processes(children_of(new.pid), &new_children, &tree);
    assert_eq!(front_of(new.pid), Some(new_front));
    assert!(
        listening_sockets_of(new_front).0.contains(&tls.port()),
        "the new front does not hold the TLS port"
    );
    assert_eq!(
        tls_get(&tree.client, tls, WELCOME_PATH).ok(),
        Some(200),
        "{}",
        tree.log()
    );
    terminate(new.pid);
    wait_until(Duration::from_secs(20), "the new master to stop", || {
        !is_running(new.pid)
    });
}

#[test]
fn usr2_with_the_front_then_term_of_the_new_master_rolls_back_without_failures() {
    // Two event loops: SO_REUSEPORT sockets, each with its own queue.
    let (mut tree, tls) = start("threads = 2");
    let old_children = tree.children();
    let load = Load::start(&tree, tls);
    let new = upgrade(&tree);
    let new_children = children_of(new.pid);
    load.run_for(1000);
    terminate(new.pid);
    wait_until(Duration::from_secs(30), "the new master to stop", || {
        !is_running(new.pid) && new_children.iter().all(|p| !is_running(*p))
    });
    load.run_for(1000);
    let tally = load.finish();
    eprintln!("USR2, TERM of the new master: {}", tally.summary());
    assert_no_failure(&tally, "USR2, then TERM of the new master", &tree);
    assert!(
        tree.log().contains(&format!(
            "The upgraded master (pid:{}) exited: this master keeps serving",
            new.pid
        )),
        "{}",
        tree.log()
    );
    // The old master serves on, with its own workers and front, and the workers' unix
    // socket (the front's upstream) is still there.
    assert_same_processes(tree.children(), &old_children, &tree);
    assert!(tree.sock.exists(), "the new master removed the unix socket");
    assert_eq!(tls_get(&tree.client, tls, WELCOME_PATH).ok(), Some(200));
    tree.signal(libc::SIGTERM);
    assert_eq!(tree.wait_exit(Duration::from_secs(40)), Some(0));
}

#[test]
fn a_usr2_whose_new_master_cannot_start_leaves_the_old_one_serving() {
    let (mut tree, tls) = start("threads = 1");
    let old_children = tree.children();
    let load = Load::start(&tree, tls);
    // The new master reads the config as it is now: a certificate that is not there
    // stops it after it has taken the inherited sockets.
    let config = std::fs::read_to_string(&tree.conf).expect("config");
    std::fs::write(&tree.conf, config.replace("server.pem", "missing.pem")).expect("config");
    tree.signal(libc::SIGUSR2);
    wait_until(Duration::from_secs(20), "the new master to fail", || {
        tree.log().contains("exited: this master keeps serving")
    });
    load.run_for(1000);
    let tally = load.finish();
    eprintln!("USR2 that fails: {}", tally.summary());
    assert_no_failure(&tally, "a USR2 whose new master fails", &tree);
    assert_same_processes(tree.children(), &old_children, &tree);
    assert!(
        tree.sock.exists(),
        "the failed master removed the unix socket"
    );
    assert_eq!(tls_get(&tree.client, tls, WELCOME_PATH).ok(), Some(200));
    tree.signal(libc::SIGTERM);
    assert_eq!(tree.wait_exit(Duration::from_secs(40)), Some(0));
}

#[test]
fn a_usr2_to_a_config_without_the_front_closes_the_fronts_port_with_the_old_master() {
    let (mut tree, tls) = start("threads = 1");
    let config = std::fs::read_to_string(&tree.conf).expect("config");
    let without_front = config.split("[front]").next().expect("top of the config");
    std::fs::write(&tree.conf, without_front).expect("config");
    let new = usr2(&tree);
    wait_until(Duration::from_secs(20), "the new master's workers", || {
        children_of(new.pid).len() == WORKERS
    });
    tree.signal(libc::SIGTERM);
    assert_eq!(tree.wait_exit(Duration::from_secs(40)), Some(0));
    assert_eq!(
        listening_sockets_of(new.pid).0,
        Vec::<u16>::new(),
        "the new master kept the front's socket it does not use"
    );
    assert!(refused(tls), "the front's port still accepts");
    terminate(new.pid);
    wait_until(Duration::from_secs(20), "the new master to stop", || {
        !is_running(new.pid)
    });
}
