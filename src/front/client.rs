//! A client connection: its TLS transport ([`super::transport`]) under its HTTP/1
//! exchange ([`super::http1`]), and how it ends (nginx's lingering close). Upstream
//! connections are entries of their own; the relay ([`super::relay`]) joins the two.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use rustls::ServerConfig;

use super::context::{Ctx, Key};
use super::http1::{Missed, Session};
use super::transport::{Broken, TlsTransport};

/// How long a closing connection keeps reading (and discarding) so the client sees the
/// response before a reset: nginx's lingering close.
const LINGER: Duration = Duration::from_secs(2);

/// Where the connection stands.
#[derive(Debug, Clone, Copy)]
enum Phase {
    Serving,
    /// close_notify sent, write side shut: discarding input until EOF or `until`.
    Lingering {
        until: Instant,
    },
}

pub struct Client {
    pub peer: SocketAddr,
    pub transport: TlsTransport,
    pub session: Session,
    phase: Phase,
}

impl Client {
    pub fn new(
        sock: TcpStream,
        peer: SocketAddr,
        key: Key,
        config: Arc<ServerConfig>,
        ctx: &Ctx<'_>,
    ) -> std::io::Result<Client> {
        Ok(Client {
            peer,
            transport: TlsTransport::new(sock, config, ctx.registry, key.token(), ctx.now)?,
            session: Session::new(peer.ip(), ctx.now),
            phase: Phase::Serving,
        })
    }

    pub fn note(&mut self, event: &mio::event::Event) {
        self.transport.note(event);
    }

    /// Read and parse what the client sent. `ids` numbers new exchanges.
    pub fn pump(&mut self, ctx: &Ctx<'_>, ids: &mut u64) -> Result<(), Broken> {
        if let Phase::Lingering { .. } = self.phase {
            self.transport.discard()?;
            return Ok(());
        }
        loop {
            let t = &mut self.transport;
            let mut progress = match t.receive(self.session.input_cap()) {
                Ok(p) => p,
                Err(Broken(Some(why))) => {
                    ctx.log.info(&format!("client {}: {why}", self.peer.ip()));
                    return Err(Broken(None));
                }
                Err(broken) => return Err(broken),
            };
            let (handshaking, peer_done) = (t.is_handshaking(), t.peer_done);
            progress |= self.session.advance(
                &mut t.input,
                &mut t.output,
                handshaking,
                peer_done,
                &ctx.rt.settings,
                ctx.log,
                ids,
                ctx.now,
            );
            if !progress {
                return Ok(());
            }
        }
    }

    /// Write what is queued for the client; once everything is said, close_notify and
    /// the lingering close.
    pub fn flush(&mut self, ctx: &Ctx<'_>) -> Result<(), Broken> {
        if let Some(err) = self.transport.output.take_refusal() {
            ctx.log.error(&format!(
                "client {}: cannot write a temp file for its answer ({err}); other answers \
                 on its upstream connection wait for it to read",
                self.peer.ip()
            ));
        }
        match self.transport.send(ctx.now) {
            Err(Broken(Some(why))) => {
                ctx.log.error(&format!("client {}: {why}", self.peer.ip()));
                return Err(Broken(None));
            }
            Err(broken) => return Err(broken),
            Ok(_) => {}
        }
        if let Phase::Serving = self.phase {
            if self.session.finished() && !self.transport.has_pending_output() {
                self.transport.finish();
                self.phase = Phase::Lingering {
                    until: ctx.now + LINGER,
                };
                self.transport.discard()?;
            }
        }
        Ok(())
    }

    /// Enforce the deadlines; `Err` when the connection must close now.
    pub fn check_deadlines(&mut self, ctx: &Ctx<'_>) -> Result<(), Broken> {
        let s = &ctx.rt.settings;
        let now = ctx.now;
        match self.phase {
            Phase::Lingering { until } if now > until => return Err(Broken(None)),
            Phase::Lingering { .. } => return Ok(()),
            Phase::Serving => {}
        }
        if self.transport.has_pending_output()
            && now.saturating_duration_since(self.transport.last_write) > s.send_timeout
        {
            return Err(Broken(None));
        }
        let missed = self.session.check_deadlines(
            self.transport.is_handshaking(),
            s,
            ctx.log,
            ctx.draining,
            now,
        );
        match missed {
            Some(Missed::Close) => Err(Broken(None)),
            Some(Missed::Answered408) | None => Ok(()),
        }
    }
}
