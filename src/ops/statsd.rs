//! The master's statsd sender (`--statsd-host`, `--statsd-prefix`): about once a second,
//! on the master's own tick, it reads the shared table, and sends gunicorn's metrics
//! for what changed since the last time (`rgunicorn_metrics::statsd` says which).
//! Nothing runs on the request path: a worker only adds to its counters. The socket is
//! non-blocking and a datagram that cannot go is dropped (statsd is lossy by design);
//! the first failure in a row is logged once, and the recovery too.

use std::io;
use std::net::{ToSocketAddrs, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use rgunicorn_metrics::{statsd, Snapshot, Table};
use rgunicorn_workers::{log_info, log_warning};

use crate::config::StatsdTarget;

/// How often the counters are sent.
pub const INTERVAL: Duration = Duration::from_secs(1);

enum Socket {
    Udp(UdpSocket),
    Unix(UnixDatagram),
}

pub struct Statsd {
    socket: Socket,
    target: StatsdTarget,
    prefix: String,
    last: Snapshot,
    due: Instant,
    failing: bool,
}

impl Statsd {
    /// Resolve and connect once (a DNS lookup per send would stall the master).
    /// `table` gives the starting point: only what changes from now on is sent.
    pub fn connect(target: &StatsdTarget, prefix: &str, table: &Table) -> io::Result<Statsd> {
        let socket = match target {
            StatsdTarget::Udp { host, port } => {
                let addr = (host.as_str(), *port)
                    .to_socket_addrs()?
                    .next()
                    .ok_or_else(|| io::Error::other("the host resolves to no address"))?;
                let local: std::net::SocketAddr = if addr.is_ipv6() {
                    "[::]:0".parse().map_err(io::Error::other)?
                } else {
                    "0.0.0.0:0".parse().map_err(io::Error::other)?
                };
                let socket = UdpSocket::bind(local)?;
                socket.connect(addr)?;
                socket.set_nonblocking(true)?;
                Socket::Udp(socket)
            }
            StatsdTarget::Unix(path) => {
                let socket = UnixDatagram::unbound()?;
                socket.set_nonblocking(true)?;
                // A server not there yet is not an error: connect again on every send.
                let _ = socket.connect(path);
                Socket::Unix(socket)
            }
        };
        Ok(Statsd {
            socket,
            target: target.clone(),
            prefix: statsd::normalize_prefix(prefix),
            last: Snapshot::read(table),
            due: Instant::now() + INTERVAL,
            failing: false,
        })
    }

    /// Send what changed, if a second has passed (or at once with `now_anyway`, on the
    /// way out).
    pub fn tick(&mut self, table: &Table, now_anyway: bool) {
        let now = Instant::now();
        if now < self.due && !now_anyway {
            return;
        }
        self.due = now + INTERVAL;
        let snap = Snapshot::read(table);
        let lines = statsd::lines(&self.last, &snap, &self.prefix);
        self.last = snap;
        let mut failure = None;
        for packet in statsd::datagrams(&lines) {
            let sent = match &self.socket {
                Socket::Udp(s) => s.send(&packet),
                Socket::Unix(s) => match &self.target {
                    StatsdTarget::Unix(path) => s.send_to(&packet, path),
                    StatsdTarget::Udp { .. } => s.send(&packet),
                },
            };
            if let Err(err) = sent {
                failure = Some(err);
            }
        }
        match (failure, self.failing) {
            (Some(err), false) => {
                log_warning!(
                    "statsd: cannot send to {}: {err}; dropping metrics until it can",
                    self.target
                );
                self.failing = true;
            }
            (None, true) => {
                log_info!("statsd: sending to {} again", self.target);
                self.failing = false;
            }
            _ => {}
        }
    }
}
