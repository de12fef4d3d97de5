//! How a message body is delimited ([`Framing`], the one type for requests, responses and
//! what the front sends its clients) and reading one whatever its framing
//! ([`BodyDecoder`]). The worker and the front read request bodies through this, so they
//! agree on where a body ends; the front reads upstream response bodies through it too.

use crate::chunked::ChunkedDecoder;
use crate::{Limits, ParseError};

/// How the body after a head is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: a request without Content-Length or Transfer-Encoding; a response to
    /// HEAD, or a 1xx, 204 or 304.
    NoBody,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the sender closes: a response without a length (HTTP/1.0 style). Never a
    /// request's.
    UntilClose,
}

/// One step of reading a body: `consumed` bytes of the input were used, of which `data`
/// (a slice of that input) is body content; `done` once the body has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded<'i> {
    pub consumed: usize,
    pub data: &'i [u8],
    pub done: bool,
}

impl<'i> Decoded<'i> {
    pub(crate) fn new(consumed: usize, data: &'i [u8], done: bool) -> Decoded<'i> {
        Decoded {
            consumed,
            data,
            done,
        }
    }
}

#[derive(Debug)]
enum Reading {
    Length { left: u64 },
    Chunked(Box<ChunkedDecoder>),
    UntilClose,
    Done,
}

/// Reads one body, whatever its framing, handing out its content as slices of the
/// input; memory is bounded by one chunk-size or trailer line.
#[derive(Debug)]
pub struct BodyDecoder {
    reading: Reading,
    framing: Framing,
    received: u64,
}

impl BodyDecoder {
    /// For a request body framed by `framing`, trailers bounded by `limits`, the body by
    /// `max` bytes (0: no limit; limit_request_body, client_max_body_size). A
    /// Content-Length over `max` is refused here, before a byte of the body is read; a
    /// chunked body as soon as a chunk-size line declares more.
    pub fn request(framing: Framing, limits: &Limits, max: u64) -> Result<BodyDecoder, ParseError> {
        let reading = match framing {
            Framing::Length(n) if max > 0 && n > max => return Err(ParseError::BodyTooLarge),
            Framing::Chunked => Reading::Chunked(Box::new(
                ChunkedDecoder::with_limits(limits).with_max_body(max),
            )),
            other => Self::reading(other),
        };
        Ok(BodyDecoder {
            reading,
            framing,
            received: 0,
        })
    }

    /// For a response body framed by `framing` (as [`crate::response`] decided it).
    pub fn response(framing: Framing) -> BodyDecoder {
        let reading = match framing {
            Framing::Chunked => Reading::Chunked(Box::default()),
            other => Self::reading(other),
        };
        BodyDecoder {
            reading,
            framing,
            received: 0,
        }
    }

    fn reading(framing: Framing) -> Reading {
        match framing {
            Framing::NoBody | Framing::Length(0) => Reading::Done,
            Framing::Length(left) => Reading::Length { left },
            Framing::Chunked => Reading::Chunked(Box::default()),
            Framing::UntilClose => Reading::UntilClose,
        }
    }

    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Body bytes handed out so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    pub fn is_done(&self) -> bool {
        match &self.reading {
            Reading::Done => true,
            Reading::Chunked(decoder) => decoder.is_done(),
            Reading::Length { .. } | Reading::UntilClose => false,
        }
    }

    /// The chunk decoder, when the body is chunked (its trailers, its declared size).
    pub fn chunked(&self) -> Option<&ChunkedDecoder> {
        match &self.reading {
            Reading::Chunked(decoder) => Some(decoder),
            _ => None,
        }
    }

    /// Reads from the start of `input` up to and including the next piece of body
    /// content. Call again with the rest while `consumed > 0` and not `done`.
    pub fn next<'i>(&mut self, input: &'i [u8]) -> Result<Decoded<'i>, ParseError> {
        self.next_capped(input, usize::MAX)
    }

    /// Like [`next`](Self::next), with at most `max_data` bytes of content, so a caller
    /// can bound the buffer it moves the content into.
    pub fn next_capped<'i>(
        &mut self,
        input: &'i [u8],
        max_data: usize,
    ) -> Result<Decoded<'i>, ParseError> {
        let step = match &mut self.reading {
            Reading::Done => Decoded::new(0, &[], true),
            Reading::Length { left } => {
                let avail = input.len().min(max_data);
                let n = usize::try_from(*left).map_or(avail, |l| l.min(avail));
                *left -= n as u64;
                Decoded::new(n, &input[..n], *left == 0)
            }
            Reading::UntilClose => {
                let n = input.len().min(max_data);
                Decoded::new(n, &input[..n], false)
            }
            // A finished chunk decoder stays: its trailers may still be wanted.
            Reading::Chunked(decoder) => decoder.next_capped(input, max_data)?,
        };
        self.received += step.data.len() as u64;
        if step.done && !matches!(self.reading, Reading::Chunked(_)) {
            self.reading = Reading::Done;
        }
        Ok(step)
    }

    /// The sender closed its side. Returns whether that ends the body well: it does for
    /// an until-close body (and one already complete); any other body was cut short.
    pub fn close(&mut self) -> bool {
        match self.reading {
            Reading::UntilClose | Reading::Done => {
                self.reading = Reading::Done;
                true
            }
            Reading::Chunked(ref decoder) => decoder.is_done(),
            Reading::Length { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(decoder: &mut BodyDecoder, input: &[u8], cap: usize) -> (Vec<u8>, usize, bool) {
        let mut out = Vec::new();
        let mut pos = 0;
        loop {
            let step = decoder.next_capped(&input[pos..], cap).unwrap();
            out.extend_from_slice(step.data);
            pos += step.consumed;
            if step.done || step.consumed == 0 {
                return (out, pos, step.done);
            }
        }
    }

    #[test]
    fn every_framing_ends_where_it_should() {
        let limits = Limits::default();
        let mut d = BodyDecoder::request(Framing::Length(5), &limits, 0).unwrap();
        assert_eq!(
            read_all(&mut d, b"helloGET", 2),
            (b"hello".to_vec(), 5, true)
        );
        assert!(d.is_done() && d.received() == 5);

        let mut d = BodyDecoder::request(Framing::Chunked, &limits, 0).unwrap();
        let input = b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: 1\r\n\r\nGET";
        assert_eq!(
            read_all(&mut d, input, 1),
            (b"abcde".to_vec(), input.len() - 3, true)
        );
        assert_eq!(d.chunked().map(|c| c.trailers().len()), Some(1));

        let mut d = BodyDecoder::request(Framing::NoBody, &limits, 0).unwrap();
        assert_eq!(read_all(&mut d, b"GET", 9), (Vec::new(), 0, true));

        let mut d = BodyDecoder::response(Framing::UntilClose);
        assert_eq!(
            read_all(&mut d, b"all of it", 4),
            (b"all of it".to_vec(), 9, false)
        );
        assert!(d.close() && d.is_done());

        let mut d = BodyDecoder::response(Framing::Length(9));
        read_all(&mut d, b"cut", 9);
        assert!(!d.close());
    }

    #[test]
    fn limits_refuse_before_the_data() {
        let limits = Limits::default();
        assert_eq!(
            BodyDecoder::request(Framing::Length(11), &limits, 10).err(),
            Some(ParseError::BodyTooLarge)
        );
        let mut d = BodyDecoder::request(Framing::Chunked, &limits, 10).unwrap();
        assert_eq!(d.next(b"5\r\nhello\r\n").map(|s| s.data), Ok(&b"hello"[..]));
        assert_eq!(d.next(b"\r\n6\r\n").err(), Some(ParseError::BodyTooLarge));
        // The size alone is enough, before its line ends.
        let mut d = BodyDecoder::request(Framing::Chunked, &limits, 10).unwrap();
        assert_eq!(d.next(b"b").err(), Some(ParseError::BodyTooLarge));
    }
}
