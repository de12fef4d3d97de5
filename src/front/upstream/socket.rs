//! The socket to the workers: a unix stream (the default deployment) or TCP, started
//! without blocking and registered with poll once.

use std::io::{self, Read, Write};

use mio::event::Source;
use mio::{Interest, Registry, Token};

use crate::front::settings::UpstreamAddr;

#[derive(Debug)]
pub enum Socket {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
}

impl Socket {
    /// Start a non-blocking connect; completion shows as writable, then [`Socket::connected`].
    pub fn connect(addr: &UpstreamAddr) -> io::Result<Socket> {
        Ok(match addr {
            UpstreamAddr::Tcp(addr) => {
                let stream = mio::net::TcpStream::connect(*addr)?;
                // Requests are written whole; do not let Nagle hold their tails.
                let _ = stream.set_nodelay(true);
                Socket::Tcp(stream)
            }
            UpstreamAddr::Unix(path) => Socket::Unix(mio::net::UnixStream::connect(path)?),
        })
    }

    /// Whether a started connect has finished: `Ok(false)` while still in progress.
    pub fn connected(&self) -> io::Result<bool> {
        let (error, peer) = match self {
            Socket::Tcp(s) => (s.take_error()?, s.peer_addr().map(|_| ())),
            Socket::Unix(s) => (s.take_error()?, s.peer_addr().map(|_| ())),
        };
        if let Some(err) = error {
            return Err(err);
        }
        match peer {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(err) => Err(err),
        }
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.read(buf),
            Socket::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.write(buf),
            Socket::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Source for Socket {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.register(r, t, i),
            Socket::Unix(s) => s.register(r, t, i),
        }
    }

    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.reregister(r, t, i),
            Socket::Unix(s) => s.reregister(r, t, i),
        }
    }

    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.deregister(r),
            Socket::Unix(s) => s.deregister(r),
        }
    }
}
