//! Binding the listening sockets in the master, before any worker exists, so that every
//! worker inherits them (gunicorn's model) and a bad address stops the start early.
//! TCP (`HOST:PORT`, `[V6]:PORT`), unix sockets (`unix:PATH`) and inherited fds (`fd://N`).
//! On HUP, [`rebind`] keeps the sockets whose bind did not change; after a USR2 upgrade,
//! [`bind_all`] adopts the sockets the old master passed down instead of binding again.

use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use socket2::{Domain, SockAddr, Socket, Type};

use crate::config::BindAddr;
use rgunicorn_workers::Listener;

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot resolve bind address {addr:?}: {source}")]
    Resolve { addr: String, source: io::Error },
    #[error("cannot bind {addr}: {source}")]
    Bind { addr: String, source: io::Error },
    #[error("cannot bind unix:{}: another process is listening there", .0.display())]
    UnixInUse(PathBuf),
    #[error("cannot bind unix:{}: the path exists and is not a socket", .0.display())]
    NotASocket(PathBuf),
    #[error("cannot use fd://{fd}: {source}")]
    InheritedFd { fd: RawFd, source: io::Error },
    #[error("cannot give unix:{} to the workers' user (chown): {source}", path.display())]
    Chown { path: PathBuf, source: io::Error },
}

/// A bound socket and the `--bind` value it came from (what HUP compares).
pub struct Listening {
    pub bind: BindAddr,
    pub socket: Bound,
}

/// How sockets are bound: the settings that shape a new socket.
#[derive(Debug, Clone, Copy)]
pub struct BindOptions {
    pub backlog: i32,
    pub umask: u32,
    pub reuse_port: bool,
    /// Owner for unix socket files, so workers that drop privileges can use them.
    pub owner: (Option<u32>, Option<u32>),
}

/// A socket the master holds for the whole life of the server.
pub enum Bound {
    Tcp(TcpListener),
    /// `--reuse-port`: the address is bound (port reserved, port 0 resolved) but not
    /// listening, so no connection ever queues here; each worker gets a listening socket
    /// of its own on the same address, and the kernel spreads connections over them.
    TcpPerWorker {
        reserved: TcpListener,
        backlog: i32,
    },
    Unix {
        listener: UnixListener,
        path: PathBuf,
    },
}

impl Bound {
    /// A duplicate of the socket for one worker, or with `--reuse-port` a socket of its own.
    pub fn for_worker(&self) -> io::Result<Listener> {
        Ok(match self {
            Bound::Tcp(l) => Listener::Tcp(l.try_clone()?),
            Bound::TcpPerWorker { reserved, backlog } => {
                let addr = reserved.local_addr()?;
                let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
                socket.set_reuse_address(true)?;
                socket.set_reuse_port(true)?;
                if addr.is_ipv6() {
                    socket.set_only_v6(true)?;
                }
                socket.bind(&addr.into())?;
                socket.listen(*backlog)?;
                socket.set_nonblocking(true)?;
                Listener::Tcp(socket.into())
            }
            Bound::Unix { listener, .. } => Listener::Unix(listener.try_clone()?),
        })
    }

    /// How the startup log names it: `http://127.0.0.1:8000` or `unix:/run/x.sock`.
    pub fn describe(&self) -> String {
        match self {
            Bound::Tcp(l) | Bound::TcpPerWorker { reserved: l, .. } => match l.local_addr() {
                Ok(addr) => format!("http://{addr}"),
                Err(_) => "http://?".into(),
            },
            Bound::Unix { path, .. } => format!("unix:{}", path.display()),
        }
    }

    pub fn raw_fd(&self) -> RawFd {
        match self {
            Bound::Tcp(l) | Bound::TcpPerWorker { reserved: l, .. } => l.as_raw_fd(),
            Bound::Unix { listener, .. } => listener.as_raw_fd(),
        }
    }

    /// Close the socket without removing a unix socket file (another master uses it).
    pub fn close_keeping_file(self) {
        let fd = match self {
            Bound::Tcp(ref l)
            | Bound::TcpPerWorker {
                reserved: ref l, ..
            } => l.as_raw_fd(),
            Bound::Unix { ref listener, .. } => listener.as_raw_fd(),
        };
        std::mem::forget(self);
        // SAFETY: `self` owned this fd and was forgotten above, so nothing else closes it.
        drop(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) });
    }

    /// Whether this socket is what `bind` asks for (an inherited socket's match).
    fn serves(&self, bind: &BindAddr) -> bool {
        match (bind, self) {
            (BindAddr::Fd(fd), b) => b.raw_fd() == *fd,
            (BindAddr::Unix(path), Bound::Unix { path: p, .. }) => p == path,
            (BindAddr::Tcp { host, port }, Bound::Tcp(l))
            | (BindAddr::Tcp { host, port }, Bound::TcpPerWorker { reserved: l, .. }) => {
                let Ok(local) = l.local_addr() else {
                    return false;
                };
                let host = host.trim_start_matches('[').trim_end_matches(']');
                (host, *port).to_socket_addrs().is_ok_and(|mut addrs| {
                    addrs.any(|a| a.ip() == local.ip() && (*port == 0 || *port == local.port()))
                })
            }
            _ => false,
        }
    }

    /// The port a TCP listener got (useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Bound::Tcp(l) | Bound::TcpPerWorker { reserved: l, .. } => l.local_addr().ok(),
            Bound::Unix { .. } => None,
        }
    }
}

impl Drop for Bound {
    fn drop(&mut self) {
        if let Bound::Unix { path, .. } = self {
            // Only the master owns the socket file; workers hold duplicates of the fd.
            if std::process::id() == MASTER_PID.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// The pid that bound the sockets: only it removes unix socket files on drop.
pub static MASTER_PID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Stop removing unix socket files on drop: the other master of a USR2 upgrade (the
/// new one, or in a new master the old one) serves them too.
pub fn keep_socket_files() {
    MASTER_PID.store(0, std::sync::atomic::Ordering::Relaxed);
}

/// This process binds (and so owns) the unix socket files it creates.
pub fn own_socket_files() {
    MASTER_PID.store(std::process::id(), std::sync::atomic::Ordering::Relaxed);
}

/// Bind every `binds` entry, taking a socket from `inherited` (a USR2 upgrade's
/// `RGUNICORN_FD`) instead when one already serves that address. Inherited sockets no
/// bind asks for are closed (their files stay: the old master may still serve them).
/// Whether this process removes unix socket files is the caller's to say first
/// ([`own_socket_files`], [`keep_socket_files`]), since a failure here drops sockets.
pub fn bind_all(
    binds: &[BindAddr],
    opts: BindOptions,
    mut inherited: Vec<Bound>,
) -> Result<Vec<Listening>, ListenError> {
    let mut out = Vec::with_capacity(binds.len());
    for bind in binds {
        let socket = match inherited.iter().position(|b| b.serves(bind)) {
            Some(i) => inherited.swap_remove(i),
            None => bind_one(bind, opts)?,
        };
        out.push(Listening {
            bind: bind.clone(),
            socket,
        });
    }
    for unused in inherited {
        unused.close_keeping_file();
    }
    Ok(out)
}

/// Adopt the sockets systemd passed (`LISTEN_FDS`): every one is a listener.
pub fn adopt_all(fds: &[RawFd]) -> Result<Vec<Listening>, ListenError> {
    fds.iter()
        .map(|fd| {
            Ok(Listening {
                bind: BindAddr::Fd(*fd),
                socket: adopt_fd(*fd)?,
            })
        })
        .collect()
}

/// Adopt inherited descriptors as sockets (the new master after USR2).
pub fn adopt_fds(fds: &[RawFd]) -> Result<Vec<Bound>, ListenError> {
    fds.iter().map(|fd| adopt_fd(*fd)).collect()
}

/// HUP: the sockets for `binds`, keeping those of `current` whose bind is unchanged and
/// binding the rest. On success `current` holds only the sockets no longer wanted (the
/// caller closes them); on failure it is untouched and the new sockets are closed.
pub fn rebind(
    current: &mut Vec<Listening>,
    binds: &[BindAddr],
    opts: BindOptions,
) -> Result<Vec<Listening>, ListenError> {
    let mut fresh = Vec::new();
    for bind in binds {
        if !current.iter().any(|l| l.bind == *bind) {
            fresh.push(Listening {
                bind: bind.clone(),
                socket: bind_one(bind, opts)?,
            });
        }
    }
    let mut out = Vec::with_capacity(binds.len());
    for bind in binds {
        match current.iter().position(|l| l.bind == *bind) {
            Some(i) => out.push(current.remove(i)),
            None => {
                let i = fresh.iter().position(|l| l.bind == *bind).ok_or_else(|| {
                    ListenError::Bind {
                        addr: bind.to_string(),
                        source: io::Error::other("listed twice"),
                    }
                })?;
                out.push(fresh.remove(i));
            }
        }
    }
    Ok(out)
}

fn bind_one(bind: &BindAddr, opts: BindOptions) -> Result<Bound, ListenError> {
    match bind {
        BindAddr::Tcp { host, port } => bind_tcp(host, *port, opts.backlog, opts.reuse_port),
        BindAddr::Unix(path) => {
            let bound = bind_unix(path, opts.backlog, opts.umask)?;
            if let (None, None) = opts.owner {
                return Ok(bound);
            }
            let (uid, gid) = opts.owner;
            nix::unistd::chown(
                path,
                uid.map(nix::unistd::Uid::from_raw),
                gid.map(nix::unistd::Gid::from_raw),
            )
            .map_err(|e| ListenError::Chown {
                path: path.clone(),
                source: e.into(),
            })?;
            Ok(bound)
        }
        BindAddr::Fd(fd) => adopt_fd(*fd),
    }
}

fn bind_tcp(host: &str, port: u16, backlog: i32, reuse_port: bool) -> Result<Bound, ListenError> {
    let shown = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let addr = (host.trim_start_matches('[').trim_end_matches(']'), port)
        .to_socket_addrs()
        .map_err(|source| ListenError::Resolve {
            addr: shown.clone(),
            source,
        })?
        .next()
        .ok_or_else(|| ListenError::Resolve {
            addr: shown.clone(),
            source: io::Error::new(io::ErrorKind::NotFound, "no address found"),
        })?;
    let bind_err = |source| ListenError::Bind {
        addr: shown.clone(),
        source,
    };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(bind_err)?;
    socket.set_reuse_address(true).map_err(bind_err)?;
    if reuse_port {
        socket.set_reuse_port(true).map_err(bind_err)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(bind_err)?;
    }
    socket.bind(&addr.into()).map_err(bind_err)?;
    if reuse_port {
        // Reserved, not listening: the workers listen on sockets of their own.
        return Ok(Bound::TcpPerWorker {
            reserved: socket.into(),
            backlog,
        });
    }
    socket.listen(backlog).map_err(bind_err)?;
    socket.set_nonblocking(true).map_err(bind_err)?;
    Ok(Bound::Tcp(socket.into()))
}

fn bind_unix(path: &Path, backlog: i32, umask: u32) -> Result<Bound, ListenError> {
    let bind_err = |source| ListenError::Bind {
        addr: format!("unix:{}", path.display()),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            // A live server answers; a stale file from a crash refuses: replace that one.
            if UnixStream::connect(path).is_ok() {
                return Err(ListenError::UnixInUse(path.to_path_buf()));
            }
            std::fs::remove_file(path).map_err(bind_err)?;
        }
        Ok(_) => return Err(ListenError::NotASocket(path.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(bind_err(e)),
    }
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(bind_err)?;
    let addr = SockAddr::unix(path).map_err(bind_err)?;
    // The socket file's mode comes from the umask at bind time (gunicorn's --umask).
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
        umask as libc::mode_t,
    ));
    let bound = socket.bind(&addr);
    nix::sys::stat::umask(old);
    bound.map_err(bind_err)?;
    socket.listen(backlog).map_err(bind_err)?;
    socket.set_nonblocking(true).map_err(bind_err)?;
    Ok(Bound::Unix {
        listener: socket.into(),
        path: path.to_path_buf(),
    })
}

/// Backlog of the per-worker sockets made for an inherited reserved socket: its own
/// backlog is not readable back from the kernel; this is gunicorn's default.
const INHERITED_BACKLOG: i32 = 2048;

/// Take ownership of an inherited descriptor that is an open socket.
fn adopt_socket(fd: RawFd) -> Result<Socket, ListenError> {
    let err = |source| ListenError::InheritedFd { fd, source };
    // Refuse fds that are not open sockets before taking ownership of them.
    nix::sys::socket::getsockname::<nix::sys::socket::SockaddrStorage>(fd)
        .map_err(|e| err(io::Error::from(e)))?;
    // SAFETY: the fd was named (by the operator or the old master) as an inherited
    // listening socket, it is open (getsockname succeeded) and nothing else in this
    // process owns it.
    let socket = unsafe { Socket::from_raw_fd(fd) };
    socket.set_nonblocking(true).map_err(err)?;
    let _ = socket.set_cloexec(true);
    Ok(socket)
}

/// Adopt a listening TCP socket the old master handed over (the front's, after USR2).
pub fn adopt_tcp_listener(fd: RawFd) -> Result<TcpListener, ListenError> {
    let socket = adopt_socket(fd)?;
    let err = |source| ListenError::InheritedFd { fd, source };
    let tcp = socket.local_addr().map_err(err)?.as_socket().is_some();
    if !tcp || !socket.is_listener().map_err(err)? {
        return Err(err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a listening TCP socket",
        )));
    }
    Ok(socket.into())
}

fn adopt_fd(fd: RawFd) -> Result<Bound, ListenError> {
    let socket = adopt_socket(fd)?;
    let err = |source| ListenError::InheritedFd { fd, source };
    let local = socket.local_addr().map_err(err)?;
    if let Some(path) = local.as_pathname() {
        let path = path.to_path_buf();
        return Ok(Bound::Unix {
            listener: socket.into(),
            path,
        });
    }
    if local.as_socket().is_some() {
        // A reserved `--reuse-port` socket handed over by USR2 is bound but not listening.
        if !socket.is_listener().map_err(err)? {
            return Ok(Bound::TcpPerWorker {
                reserved: socket.into(),
                backlog: INHERITED_BACKLOG,
            });
        }
        return Ok(Bound::Tcp(socket.into()));
    }
    Err(err(io::Error::new(
        io::ErrorKind::InvalidInput,
        "not a TCP or unix stream socket",
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> BindOptions {
        BindOptions {
            backlog: 16,
            umask: 0,
            reuse_port: false,
            owner: (None, None),
        }
    }

    fn tcp0() -> BindAddr {
        BindAddr::Tcp {
            host: "127.0.0.1".into(),
            port: 0,
        }
    }

    #[test]
    fn rebind_keeps_unchanged_sockets_binds_new_ones_and_returns_removed_ones() {
        own_socket_files();
        let dir = tempfile::tempdir().expect("tempdir");
        let a = BindAddr::Unix(dir.path().join("a.sock"));
        let b = BindAddr::Unix(dir.path().join("b.sock"));
        let mut current = bind_all(&[tcp0(), a.clone()], opts(), Vec::new()).expect("bind");
        let port = current[0].socket.local_addr().expect("tcp").port();
        let next = rebind(&mut current, &[tcp0(), b.clone()], opts()).expect("rebind");
        assert_eq!(next[0].socket.local_addr().expect("tcp").port(), port);
        assert_eq!(next[1].bind, b);
        assert_eq!(current.len(), 1);
        assert_eq!(current[0].bind, a);
        drop(current);
        assert!(!dir.path().join("a.sock").exists());
        assert!(dir.path().join("b.sock").exists());
    }

    #[test]
    fn a_failed_rebind_leaves_the_current_sockets_alone() {
        let mut current = bind_all(&[tcp0()], opts(), Vec::new()).expect("bind");
        let taken = current[0].socket.local_addr().expect("tcp");
        let clash = BindAddr::Tcp {
            host: "127.0.0.1".into(),
            port: taken.port(),
        };
        assert!(rebind(&mut current, &[tcp0(), clash], opts()).is_err());
        assert_eq!(current.len(), 1);
        assert_eq!(current[0].socket.local_addr(), Some(taken));
    }

    #[test]
    fn an_inherited_socket_serves_its_bind() {
        let first = bind_all(&[tcp0()], opts(), Vec::new()).expect("bind");
        let addr = first[0].socket.local_addr().expect("tcp");
        let bind = BindAddr::Tcp {
            host: "127.0.0.1".into(),
            port: addr.port(),
        };
        let inherited: Vec<Bound> = first.into_iter().map(|l| l.socket).collect();
        let again = bind_all(&[bind], opts(), inherited).expect("adopt");
        assert_eq!(again[0].socket.local_addr(), Some(addr));
    }
}
