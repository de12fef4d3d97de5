//! Sending a response body that did not fit the output buffer with its head: a stream
//! (pulled on the loop for an inline app, on its app thread otherwise), a large bytes
//! body, or a file, which goes from the page cache to the socket with sendfile(2) when
//! its bytes go out unframed. The body is held to the Content-Length the head declared:
//! an app that gives fewer or more bytes gets its connection closed after what was
//! declared, never a keep-alive connection out of step. The state machine that calls
//! this lives in [`super`].

use rgunicorn_metrics::Recorder;
use std::io::{self, ErrorKind};
use std::time::Instant;

use super::{Conn, Context, State, Step};
use crate::pool::Ticket;
use crate::respond::{push_chunk, BodySource, Framing};
use crate::stream::Stream;

/// Most bytes one sendfile call is asked for, so one large file does not hold the loop.
const SENDFILE_MAX: u64 = 1 << 20;

/// A response body being sent after its head.
pub(super) struct Streaming {
    source: BodySource,
    framing: Framing,
    /// Bytes still owed under Content-Length.
    remaining: Option<u64>,
    keep_alive: bool,
    /// For a body an app thread pulls: its ticket, and when the request went to the app
    /// (`--request-timeout` covers the whole exchange).
    pub app: Option<(Ticket, Instant)>,
    /// A file body goes out with sendfile until the kernel says it cannot.
    sendfile: bool,
}

/// What one step of sending the body gave.
enum Pull {
    /// A piece to frame and queue.
    Chunk(Vec<u8>),
    /// Bytes went straight to the socket (sendfile), or nothing did but it may be retried.
    Sent,
    /// The next piece is not there yet (an app thread is producing it).
    NotYet,
    /// The socket is full.
    Blocked,
    /// The body ended.
    End,
    /// The body has more than its Content-Length declared.
    Overflow,
    /// The socket is gone.
    Gone,
    Failed(io::Error),
}

impl Streaming {
    pub fn new(
        source: BodySource,
        framing: Framing,
        keep_alive: bool,
        app: Option<(Ticket, Instant)>,
    ) -> Streaming {
        Streaming {
            remaining: match framing {
                Framing::Length(n) => Some(n),
                _ => None,
            },
            sendfile: matches!(source, BodySource::File { .. })
                && matches!(framing, Framing::Length(_) | Framing::UntilClose),
            source,
            framing,
            keep_alive,
            app,
        }
    }

    fn pull(&mut self, scratch: &mut [u8]) -> Pull {
        match self.source.next_chunk(scratch) {
            Ok(Some(chunk)) => Pull::Chunk(chunk),
            Ok(None) => Pull::End,
            Err(e) if e.kind() == ErrorKind::WouldBlock => Pull::NotYet,
            Err(e) => Pull::Failed(e),
        }
    }

    /// One sendfile call: never past the declared length nor the file's.
    fn send_file(&mut self, socket: &Stream, metrics: Option<Recorder>) -> Pull {
        let BodySource::File { file, remaining } = &mut self.source else {
            return Pull::End;
        };
        let declared = self.remaining.unwrap_or(u64::MAX);
        let in_file = remaining.unwrap_or(u64::MAX);
        let want = declared.min(in_file).min(SENDFILE_MAX);
        if want == 0 {
            return if declared == 0 && in_file > 0 {
                Pull::Overflow
            } else {
                Pull::End
            };
        }
        // `want` is at most SENDFILE_MAX, so it fits in usize.
        match socket.send_file(file, want as usize) {
            // The file ended before its length said.
            Ok(0) => Pull::End,
            Ok(n) => {
                if let Some(metrics) = metrics {
                    metrics.sent(n);
                }
                let n = n as u64;
                self.remaining = self.remaining.map(|r| r - n);
                *remaining = remaining.map(|r| r - n);
                Pull::Sent
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => Pull::Blocked,
            Err(e) if e.kind() == ErrorKind::Interrupted => Pull::Sent,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) => {
                // A file the kernel cannot splice from: read it instead.
                self.sendfile = false;
                Pull::Sent
            }
            Err(e) if matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset) => {
                Pull::Gone
            }
            Err(e) => Pull::Failed(e),
        }
    }
}

impl Conn {
    pub(super) fn on_stream(&mut self, cx: &mut Context) -> Step {
        if self.unsent() > 0 {
            if self.flush().is_err() {
                return Step::Close;
            }
            if self.unsent() > 0 {
                return Step::Wait;
            }
        }
        let State::Stream(s) = &mut self.state else {
            return Step::Wait;
        };
        let pulled = if s.sendfile {
            if !self.writable {
                return Step::Wait;
            }
            s.send_file(&self.stream, self.metrics)
        } else {
            s.pull(&mut cx.scratch)
        };
        match pulled {
            Pull::Chunk(mut chunk) => {
                match s.framing {
                    Framing::Length(_) => {
                        let left = s.remaining.unwrap_or(0);
                        if chunk.len() as u64 > left {
                            // Send what was declared; the rest could only be read as
                            // the next response.
                            chunk.truncate(left as usize);
                            self.out.extend_from_slice(&chunk);
                            return self.overflowed();
                        }
                        s.remaining = Some(left - chunk.len() as u64);
                        self.out.extend_from_slice(&chunk);
                    }
                    Framing::Chunked => push_chunk(&mut self.out, &chunk),
                    Framing::UntilClose => self.out.extend_from_slice(&chunk),
                    Framing::NoBody => {}
                }
                Step::Again
            }
            Pull::Sent => {
                self.last_active = Instant::now();
                Step::Again
            }
            Pull::NotYet => Step::Wait,
            Pull::Blocked => {
                self.writable = false;
                Step::Wait
            }
            Pull::End => {
                let mut keep = s.keep_alive;
                match s.framing {
                    Framing::Chunked => self.out.extend_from_slice(b"0\r\n\r\n"),
                    Framing::Length(_) if s.remaining.unwrap_or(0) > 0 => {
                        // The client cannot tell where this body ends: the connection must.
                        crate::log_warning!(
                            "app body shorter than its Content-Length: closing the connection"
                        );
                        keep = false;
                    }
                    Framing::UntilClose => keep = false,
                    _ => {}
                }
                self.state = if keep { State::Idle } else { State::Closing };
                Step::Again
            }
            Pull::Overflow => self.overflowed(),
            Pull::Gone => Step::Close,
            Pull::Failed(e) => {
                crate::log_error!("error streaming response body: {e}");
                // A body cut short cannot be framed as complete: no terminator, close.
                self.state = State::Closing;
                Step::Again
            }
        }
    }

    /// The app's body is longer than its declared Content-Length: drop the rest of it
    /// (an app thread pulling it lets go) and close after what was declared.
    fn overflowed(&mut self) -> Step {
        crate::log_warning!("app body longer than its Content-Length: closing the connection");
        self.state = State::Closing;
        Step::Again
    }
}
