//! What an event loop lends the code that handles one of its entries: the registry, the
//! running configuration, the logs, the clock of this pass; plus the slab key type and
//! the tokens. Shared by every layer (transport, HTTP/1 exchange, upstream, relay) so
//! none of them imports the event loop ([`super::event_loop`] owns the slab and the poll).

use std::time::Instant;

use mio::{Registry, Token};

use super::log::Logger;
use super::Runtime;

/// The loop's TLS listener.
pub const LISTENER: Token = Token(0);
/// The loop's plain-HTTP (redirect) listener.
pub const REDIRECT: Token = Token(1);
/// The control thread's wake-up.
pub const WAKER: Token = Token(2);
/// Tokens below this are fixed sources; from here on they are slab keys.
const FIRST_KEY: usize = 16;

/// A slab key: one entry of an event loop (a client connection, a redirect connection or
/// an upstream connection), each with a socket and so a token of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key(pub usize);

impl Key {
    pub fn token(self) -> Token {
        Token(FIRST_KEY + self.0)
    }

    /// The key a token stands for; `None` for the fixed sources.
    pub fn of(token: Token) -> Option<Key> {
        token.0.checked_sub(FIRST_KEY).map(Key)
    }
}

/// What a handler may touch while the loop drives it.
pub struct Ctx<'a> {
    pub registry: &'a Registry,
    pub rt: &'a Runtime,
    pub log: &'a Logger,
    /// TERM: answer in-flight requests with `Connection: close`, take no new ones.
    pub draining: bool,
    pub now: Instant,
}

/// What an entry leaves behind after being driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Open,
    Closed,
}

/// Readiness of one socket as edge-triggered poll reports it: set by events, cleared
/// when a read or write would block, so no syscall is made only to learn `WouldBlock`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Readiness {
    /// The socket may have bytes to read.
    pub readable: bool,
    /// The last write was refused; wait for a writable event.
    pub write_blocked: bool,
    /// The peer closed its side: its EOF may sit behind the data already readable, with
    /// no further event to announce it, so reads go on until it shows.
    pub read_closed: bool,
}

impl Readiness {
    /// A socket just created or accepted: try both directions once.
    pub fn fresh() -> Readiness {
        Readiness {
            readable: true,
            write_blocked: false,
            read_closed: false,
        }
    }

    pub fn note(&mut self, event: &mio::event::Event) {
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.readable = true;
        }
        if event.is_writable() || event.is_write_closed() || event.is_error() {
            self.write_blocked = false;
        }
        self.read_closed |= event.is_read_closed() || event.is_error();
    }

    /// A read filled `got` bytes of `room`: a short read drained the socket.
    pub fn after_read(&mut self, got: usize, room: usize) {
        if got < room && !self.read_closed {
            self.readable = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_tokens_round_trip() {
        for key in [0, 1, 7, 1000] {
            assert_eq!(Key::of(Key(key).token()), Some(Key(key)));
        }
        assert_eq!(Key::of(WAKER), None);
        assert_eq!(Key::of(LISTENER), None);
    }
}
