//! The socket types a worker serves: TCP and unix listeners inherited from the master,
//! and the connections accepted from them, each behind one enum so the loop is generic.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};

use mio::event::Source;
use mio::{Interest, Registry, Token};

/// A listening socket as the master hands it over (non-blocking, close-on-exec).
pub enum Listener {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

/// The same listener once the worker's poll owns it.
pub enum MioListener {
    Tcp(mio::net::TcpListener),
    Unix(mio::net::UnixListener),
}

impl MioListener {
    pub fn from_std(listener: Listener) -> MioListener {
        match listener {
            Listener::Tcp(l) => MioListener::Tcp(mio::net::TcpListener::from_std(l)),
            Listener::Unix(l) => MioListener::Unix(mio::net::UnixListener::from_std(l)),
        }
    }

    /// Accept one connection: the stream, its peer (None on unix) and our local address.
    pub fn accept(&self) -> io::Result<(Stream, Option<SocketAddr>, Option<SocketAddr>)> {
        match self {
            MioListener::Tcp(l) => {
                let (stream, peer) = l.accept()?;
                // One write per response: no reason to let Nagle hold back its tail.
                let _ = stream.set_nodelay(true);
                let local = stream.local_addr().ok();
                Ok((Stream::Tcp(stream), Some(peer), local))
            }
            MioListener::Unix(l) => {
                let (stream, _) = l.accept()?;
                Ok((Stream::Unix(stream), None, None))
            }
        }
    }
}

impl Source for MioListener {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            MioListener::Tcp(l) => l.register(r, t, i),
            MioListener::Unix(l) => l.register(r, t, i),
        }
    }
    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            MioListener::Tcp(l) => l.reregister(r, t, i),
            MioListener::Unix(l) => l.reregister(r, t, i),
        }
    }
    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            MioListener::Tcp(l) => l.deregister(r),
            MioListener::Unix(l) => l.deregister(r),
        }
    }
}

#[derive(Debug)]
pub enum Stream {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
}

impl Stream {
    pub fn shutdown_write(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
        };
    }

    /// A unix-socket peer's uid (SO_PEERCRED); `None` on TCP.
    pub fn peer_uid(&self) -> Option<u32> {
        match self {
            Stream::Unix(s) => {
                nix::sys::socket::getsockopt(s, nix::sys::socket::sockopt::PeerCredentials)
                    .ok()
                    .map(|cred| cred.uid())
            }
            Stream::Tcp(_) => None,
        }
    }

    /// Whether the peer has shut its sending side with nothing left unread (a peek,
    /// which takes nothing from the socket).
    pub fn peer_done_sending(&self) -> bool {
        use nix::sys::socket::{recv, MsgFlags};
        use std::os::fd::AsRawFd;
        let fd = match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        };
        let mut byte = [0u8; 1];
        matches!(
            recv(fd, &mut byte, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT),
            Ok(0)
        )
    }

    /// Send up to `count` bytes of `file` from its current offset (which moves on) with
    /// sendfile(2): from the page cache to the socket, with no copy through the worker.
    /// `Ok(0)` means the file ended.
    pub fn send_file(&self, file: &File, count: usize) -> io::Result<usize> {
        let sent = match self {
            Stream::Tcp(s) => nix::sys::sendfile::sendfile(s, file, None, count),
            Stream::Unix(s) => nix::sys::sendfile::sendfile(s, file, None, count),
        };
        sent.map_err(io::Error::from)
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Source for Stream {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.register(r, t, i),
            Stream::Unix(s) => s.register(r, t, i),
        }
    }
    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.reregister(r, t, i),
            Stream::Unix(s) => s.reregister(r, t, i),
        }
    }
    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.deregister(r),
            Stream::Unix(s) => s.deregister(r),
        }
    }
}
