//! The rustls transport for the full-rate load client ([`crate::common::load`]): a TCP
//! connection to the front with the TLS handshake done, trusting the test CA.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crate::common::load::Connect;

/// How long a request may go unanswered before it counts as failed (the load's own).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

pub struct Tls {
    pub addr: SocketAddr,
    pub config: Arc<rustls::ClientConfig>,
}

impl Connect for Tls {
    type Conn = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

    fn connect(&self) -> io::Result<Self::Conn> {
        let sock = TcpStream::connect(self.addr)?;
        sock.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        sock.set_nodelay(true)?;
        let name =
            rustls::pki_types::ServerName::try_from("localhost").map_err(io::Error::other)?;
        let conn = rustls::ClientConnection::new(Arc::clone(&self.config), name)
            .map_err(io::Error::other)?;
        let mut stream = rustls::StreamOwned::new(conn, sock);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(stream)
    }
}
