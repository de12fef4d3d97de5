//! The TLS front: rustls over mio, doing nginx's job in the reference deployment.
//!
//! The master calls [`bind`] before forking (possibly as root: 443 and 80), then
//! [`serve`] in the forked child; `rgunicorn-front` does both itself. Inside:
//!
//! - [`settings`]: the `[front]` table → [`FrontSettings`]
//! - [`tls`]: certificate checks and the rustls configuration
//! - [`control`]: the process's main thread (signals, reload, event loop threads)
//! - [`event_loop`]: one mio loop per thread (poll, accept, control messages, sweeps)
//! - [`relay`]: a loop's connections (slab) and how requests and responses move
//!   between clients and upstream connections
//! - [`client`]: a client connection, [`transport`] (socket ↔ rustls ↔ plaintext)
//!   under [`http1`] (requests parsed and queued, responses re-framed in order)
//! - [`upstream`]: a connection to the workers and its response parsing
//! - [`context`]: what the layers share (keys, tokens, the handler context)
//! - [`buffer`]: the byte queue the connections use; [`output`]: a client's output,
//!   memory first, then a temp file for an answer others wait behind
//! - [`headers`]: forwarded request heads, client response heads, error pages
//! - [`redirect`]: the plain-HTTP listener answering 301
//! - [`log`]: access (nginx combined) and error logs

mod buffer;
mod client;
mod context;
mod control;
mod event_loop;
mod headers;
mod http1;
pub mod log;
pub mod metrics;
mod output;
mod redirect;
mod relay;
pub mod settings;
pub mod tls;
mod transport;
mod upstream;

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

pub use control::{EXIT_BOOT, EXIT_LOOP_DIED, EXIT_OK};
pub use settings::{CertificatePaths, FrontSettings, LogTarget, UpstreamAddr};

/// Listen backlog of the front's sockets (nginx's default on Linux is 511).
const BACKLOG: i32 = 1024;

#[derive(Debug, thiserror::Error)]
pub enum FrontError {
    #[error("front.listen: cannot bind {addr}: {source}")]
    BindTls {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("front.redirect_http: cannot bind {addr}: {source}")]
    BindRedirect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("front: {0}")]
    Certificate(#[from] tls::TlsError),
}

/// The front's bound sockets: one TLS listener per event loop (SO_REUSEPORT, so the
/// kernel spreads connections evenly), and the optional redirect listener.
#[derive(Debug, Default)]
pub struct FrontListeners {
    tls: Vec<TcpListener>,
    redirect: Option<TcpListener>,
}

impl FrontListeners {
    /// Sockets an old master handed over (USR2), for [`bind_inheriting`].
    pub fn inherited(tls: Vec<TcpListener>, redirect: Option<TcpListener>) -> FrontListeners {
        FrontListeners { tls, redirect }
    }

    /// The actual TLS address (useful with port 0).
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls.first().and_then(|l| l.local_addr().ok())
    }

    pub fn redirect_addr(&self) -> Option<SocketAddr> {
        self.redirect.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Duplicates of the sockets, so a master can keep its own and hand these to a
    /// (re)spawned front.
    pub fn try_clone(&self) -> std::io::Result<FrontListeners> {
        Ok(FrontListeners {
            tls: self
                .tls
                .iter()
                .map(TcpListener::try_clone)
                .collect::<Result<_, _>>()?,
            redirect: self
                .redirect
                .as_ref()
                .map(TcpListener::try_clone)
                .transpose()?,
        })
    }

    /// The TLS sockets' descriptors, one per event loop (a USR2 hands them over).
    pub fn tls_fds(&self) -> Vec<RawFd> {
        self.tls.iter().map(AsRawFd::as_raw_fd).collect()
    }

    pub fn redirect_fd(&self) -> Option<RawFd> {
        self.redirect.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// How many event loops serve them: one per TLS socket.
    pub fn event_loops(&self) -> usize {
        self.tls.len()
    }

    /// Every descriptor, for a master that must keep them open (e.g. across re-exec).
    pub fn raw_fds(&self) -> Vec<RawFd> {
        self.tls
            .iter()
            .chain(self.redirect.iter())
            .map(AsRawFd::as_raw_fd)
            .collect()
    }
}

/// What the event loops share, swapped as a whole on reload.
pub struct Runtime {
    pub settings: FrontSettings,
    pub tls: Arc<rustls::ServerConfig>,
    /// The serving certificates' serials (and names), for the log.
    pub certificates: String,
}

/// Check the certificate and bind the front's sockets (before forking, maybe as root).
/// Every error is one line naming the setting or the file.
pub fn bind(settings: &FrontSettings) -> Result<FrontListeners, FrontError> {
    bind_inheriting(settings, FrontListeners::default())
}

/// [`bind`], taking the sockets an old master handed over (USR2) where they serve the
/// configured addresses: the same sockets, so the old and the new front accept from
/// the same queues and nothing queued is lost when either goes. Inherited TLS sockets
/// are kept all together (their number, not `threads`, sets the event loops: changing
/// it needs a full restart, as on HUP); inherited sockets no address asks for close.
pub fn bind_inheriting(
    settings: &FrontSettings,
    inherited: FrontListeners,
) -> Result<FrontListeners, FrontError> {
    let loaded = tls::load_all(&settings.certificates)?;
    for warning in &loaded.warnings {
        eprintln!("rgunicorn-front: warning: {warning}");
    }
    let FrontListeners {
        tls: inherited_tls,
        redirect: inherited_redirect,
    } = inherited;
    let tls =
        if !inherited_tls.is_empty() && inherited_tls.iter().all(|l| serves(l, settings.listen)) {
            // Made by an older front, maybe without TCP_NODELAY (see `listen`).
            for listener in &inherited_tls {
                let _ = socket2::SockRef::from(listener).set_nodelay(true);
            }
            inherited_tls
        } else {
            bind_tls(settings)?
        };
    let redirect = match (settings.redirect_http, inherited_redirect) {
        (Some(addr), Some(l)) if serves(&l, addr) => Some(l),
        (Some(addr), _) => {
            Some(listen(addr, false).map_err(|source| FrontError::BindRedirect { addr, source })?)
        }
        (None, _) => None,
    };
    Ok(FrontListeners { tls, redirect })
}

/// One TLS socket per event loop, all on one port (SO_REUSEPORT when more than one).
fn bind_tls(settings: &FrontSettings) -> Result<Vec<TcpListener>, FrontError> {
    let threads = settings.threads.max(1);
    let mut tls = Vec::with_capacity(threads);
    let mut addr = settings.listen;
    for _ in 0..threads {
        let listener = listen(addr, threads > 1).map_err(|source| FrontError::BindTls {
            addr: settings.listen,
            source,
        })?;
        // With port 0 the first socket picks the port; the others join it.
        if let Ok(bound) = listener.local_addr() {
            addr = bound;
        }
        tls.push(listener);
    }
    Ok(tls)
}

/// Whether `listener` is bound where `addr` asks (any port when `addr`'s is 0).
fn serves(listener: &TcpListener, addr: SocketAddr) -> bool {
    listener.local_addr().is_ok_and(|local| {
        local.ip() == addr.ip() && (addr.port() == 0 || addr.port() == local.port())
    })
}

fn listen(addr: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.set_cloexec(true)?;
    // Accepted connections inherit it (Linux): no setsockopt per connection.
    socket.set_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Run the front on `listeners` until a signal stops it; returns the exit code
/// ([`EXIT_OK`], [`EXIT_LOOP_DIED`], or [`EXIT_BOOT`]: do not respawn). Call it in the
/// forked child (it creates threads, polls and the rustls config). HUP reloads the
/// certificate from the same paths.
pub fn serve(settings: FrontSettings, listeners: FrontListeners) -> i32 {
    let same = settings.clone();
    control::serve(settings, listeners, &move || Ok(same.clone()))
}

/// [`serve`], with HUP taking its settings from `reload` (the standalone binary re-reads
/// its config file). Listen addresses, threads, logs and user keep their first values.
pub fn serve_with_reload(
    settings: FrontSettings,
    listeners: FrontListeners,
    reload: &dyn Fn() -> Result<FrontSettings, String>,
) -> i32 {
    control::serve(settings, listeners, reload)
}

/// Read a TOML config file whole (what `rgunicorn-front -c` reads).
pub fn read_config_file(path: &std::path::Path) -> Result<toml::Table, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    text.parse()
        .map_err(|e: toml::de::Error| format!("config file {}: {}", path.display(), e.message()))
}

/// The `[front]` table of the config file `path` read as `table`.
pub fn settings_from_config(
    path: &std::path::Path,
    table: &toml::Table,
) -> Result<FrontSettings, String> {
    match table.get("front") {
        Some(toml::Value::Table(front)) => FrontSettings::from_table(front),
        Some(_) => Err(format!(
            "config file {}: front must be a table ([front])",
            path.display()
        )),
        None => Err(format!(
            "config file {} has no [front] table",
            path.display()
        )),
    }
}
