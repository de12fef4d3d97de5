//! Receiving a request body on the event loop, before the app runs: framed by
//! Content-Length or chunked coding, kept in memory up to `body_buffer_size` and spooled
//! to an unlinked temporary file beyond. The connection state machine ([`super`]) feeds
//! it what it reads and hands the result to the app as [`Input`].

use std::fs::File;
use std::io::{self, Cursor, Seek, Write};
use std::time::Instant;

use crate::app::{Environ, Input};
use crate::http::{ChunkedDecoder, DecodeProgress, ParseError};
use crate::respond::ResponseContext;

/// A request whose body is still arriving.
pub(super) struct Pending {
    pub environ: Environ,
    pub ctx: ResponseContext,
    /// When the request head was complete.
    pub started: Instant,
    framing: BodyFraming,
    sink: Sink,
    /// Body bytes received so far (decoded, for chunked).
    pub received: u64,
}

enum BodyFraming {
    Length { remaining: u64 },
    Chunked(ChunkedDecoder),
}

/// Where a body goes: memory up to body_buffer_size, then an unlinked temp file.
enum Sink {
    Memory(Vec<u8>),
    File(File),
}

/// Why a body could not be received.
#[derive(Debug, thiserror::Error)]
pub(super) enum BodyError {
    #[error("bad chunked body: {0}")]
    Framing(ParseError),
    #[error("cannot buffer request body: {0}")]
    Spool(io::Error),
}

impl BodyError {
    pub fn status(&self) -> u16 {
        match self {
            BodyError::Framing(err) => err.status(),
            BodyError::Spool(_) => 500,
        }
    }
}

/// Whether the body is complete.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Progress {
    NeedMore,
    Done,
}

impl Pending {
    pub fn length(environ: Environ, ctx: ResponseContext, started: Instant, len: u64) -> Pending {
        Pending::new(
            environ,
            ctx,
            started,
            BodyFraming::Length { remaining: len },
        )
    }

    pub fn chunked(
        environ: Environ,
        ctx: ResponseContext,
        started: Instant,
        decoder: ChunkedDecoder,
    ) -> Pending {
        Pending::new(environ, ctx, started, BodyFraming::Chunked(decoder))
    }

    fn new(
        environ: Environ,
        ctx: ResponseContext,
        started: Instant,
        framing: BodyFraming,
    ) -> Pending {
        Pending {
            environ,
            ctx,
            started,
            framing,
            sink: Sink::Memory(Vec::new()),
            received: 0,
        }
    }

    /// Take what belongs to the body from the front of `input`. Returns how many bytes
    /// were taken and whether the body is complete; bytes after it stay with the caller.
    pub fn feed(&mut self, input: &[u8], spill_at: usize) -> Result<(usize, Progress), BodyError> {
        match &mut self.framing {
            BodyFraming::Length { remaining } => {
                let take = input
                    .len()
                    .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                self.sink
                    .write(&input[..take], spill_at)
                    .map_err(BodyError::Spool)?;
                *remaining -= take as u64;
                self.received += take as u64;
                let progress = if *remaining == 0 {
                    Progress::Done
                } else {
                    Progress::NeedMore
                };
                Ok((take, progress))
            }
            BodyFraming::Chunked(decoder) => {
                let mut decoded = Vec::new();
                let (consumed, progress) = decoder
                    .decode(input, &mut decoded)
                    .map_err(BodyError::Framing)?;
                self.received += decoded.len() as u64;
                // The decoder was made `with_max_body(limit)`: a chunk whose announced
                // size passes the limit is refused (413) before its data is read.
                self.sink
                    .write(&decoded, spill_at)
                    .map_err(BodyError::Spool)?;
                let progress = match progress {
                    DecodeProgress::Done => Progress::Done,
                    DecodeProgress::NeedMore => Progress::NeedMore,
                };
                Ok((consumed, progress))
            }
        }
    }

    /// The complete request: its environ (a chunked body gets the CONTENT_LENGTH it
    /// turned out to have, as gunicorn's chunked reader gives) and its body as the app
    /// reads it.
    pub fn finish(self) -> io::Result<(Environ, Input, ResponseContext, Instant)> {
        let Pending {
            mut environ,
            ctx,
            started,
            framing,
            sink,
            received,
        } = self;
        if matches!(framing, BodyFraming::Chunked(_)) {
            environ.content_length = received.to_string();
        }
        Ok((environ, sink.into_input()?, ctx, started))
    }
}

impl Sink {
    fn write(&mut self, data: &[u8], spill_at: usize) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        match self {
            Sink::Memory(buf) if buf.len() + data.len() <= spill_at => {
                buf.extend_from_slice(data);
                Ok(())
            }
            Sink::Memory(buf) => {
                let mut file = tempfile::tempfile()?;
                file.write_all(buf)?;
                file.write_all(data)?;
                *self = Sink::File(file);
                Ok(())
            }
            Sink::File(file) => file.write_all(data),
        }
    }

    fn into_input(self) -> io::Result<Input> {
        Ok(match self {
            Sink::Memory(buf) if buf.is_empty() => Input::Empty,
            Sink::Memory(buf) => Input::Memory(Cursor::new(buf)),
            Sink::File(mut file) => {
                file.rewind()?;
                Input::Spooled(file)
            }
        })
    }
}
