//! `Transfer-Encoding: chunked`, both ways: [`ChunkedDecoder`] for request bodies and
//! upstream response bodies alike, [`push_chunk`] and [`LAST_CHUNK`] to encode.
//!
//! The decoder is an incremental state machine fed whatever bytes arrived (one at a time
//! works), with memory bounded by the longest line it may buffer (a chunk-size line or
//! one trailer field), never by the body. It hands out chunk data as slices of its input
//! (no copy), stops right after the final CRLF so a pipelined message stays with the
//! caller, and refuses a chunk whose declared size would take the body past 2^63-1 bytes
//! or past the caller's limit as soon as its size line ends, before any of its data.
//!
//! Strict where parsers are known to disagree (the TE.TE / chunk-size smuggling family):
//! chunk-size is 1 to 16 hex digits, extensions follow the RFC 9112 7.1.1 grammar (BWS
//! allowed around `;` and `=`, as it says), every line ends in CRLF. The body reader over
//! all framings is [`crate::body`]; trailer field lines are read by httparse.

use crate::body::Decoded;
use crate::fields::{is_tchar, Header};
use crate::lines::parse_field_line;
use crate::request::MAX_BODY_LEN;
use crate::{Limits, ParseError};

/// Longest chunk extension accepted on one chunk-size line. Extensions carry nothing we
/// use; the bound only keeps a hostile client from growing the line buffer.
pub const MAX_CHUNK_EXTENSION: usize = 4096;
/// chunk-size digits: 16 hex digits fill a u64, more can only overflow or pad.
const MAX_SIZE_DIGITS: usize = 16;

/// The last chunk and the empty trailer section: the end of a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Appends `data` as one chunk (nothing for empty data: that would end the body).
pub fn push_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    let mut n = data.len();
    while n > 0 {
        i -= 1;
        digits[i] = b"0123456789abcdef"[n % 16];
        n /= 16;
    }
    out.reserve(digits.len() - i + data.len() + 4);
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeProgress {
    /// Feed more input. (If `consumed < input.len()`, the output cap was reached: call
    /// again with the rest once the data is drained.)
    NeedMore,
    /// The body ended; bytes after `consumed` belong to the next message.
    Done,
}

/// What the decoder waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A chunk-size line.
    SizeLine,
    /// `remaining` bytes of chunk data.
    Data {
        remaining: u64,
    },
    /// The CR after chunk data.
    DataCr,
    /// The LF after chunk data.
    DataLf,
    /// A trailer field line, or the final empty line.
    TrailerLine,
    Done,
}

#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
    /// A line split over several inputs, CRLF not yet complete. Bounded by
    /// `line_limit()`; empty (and unallocated) while lines arrive whole.
    line: Vec<u8>,
    max_trailer_fields: usize,
    /// Longest trailer line content, CRLF excluded.
    max_trailer_line: usize,
    trailers: Vec<Header>,
    /// Sum of the chunk sizes declared so far, the current chunk's included.
    declared: u64,
    /// Refuse a body declaring more than this (0: no limit but 2^63-1).
    max_body: u64,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder::new()
    }
}

impl ChunkedDecoder {
    /// A decoder bounding trailers with the default [`Limits`].
    pub fn new() -> ChunkedDecoder {
        ChunkedDecoder::with_limits(&Limits::default())
    }

    /// A decoder bounding trailers like headers: at most `limits.fields` trailer fields,
    /// each line at most `limits.field_size` bytes, CRLF included.
    pub fn with_limits(limits: &Limits) -> ChunkedDecoder {
        let limits = limits.normalized();
        ChunkedDecoder {
            state: State::SizeLine,
            line: Vec::new(),
            max_trailer_fields: limits.fields,
            max_trailer_line: limits
                .field_content_max()
                .unwrap_or_else(|| limits.max_head_len()),
            trailers: Vec::new(),
            declared: 0,
            max_body: 0,
        }
    }

    /// Refuse the body ([`ParseError::BodyTooLarge`], 413) as soon as a size line takes
    /// the declared total past `max` bytes (0: no limit), before that chunk's data.
    pub fn with_max_body(mut self, max: u64) -> ChunkedDecoder {
        self.max_body = max;
        self
    }

    /// Whether the final CRLF has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The body size the chunk-size lines have declared so far, the chunk being
    /// received included in full: at least what will have been decoded once it ends.
    pub fn declared(&self) -> u64 {
        self.declared
    }

    /// Trailer fields received so far (complete once [`is_done`](Self::is_done)).
    pub fn trailers(&self) -> &[Header] {
        &self.trailers
    }

    /// Decodes from the start of `input` up to and including the next piece of chunk
    /// data, which is returned as a slice of `input`. Call again with the rest while
    /// `consumed > 0` and not `done`.
    pub fn next<'i>(&mut self, input: &'i [u8]) -> Result<Decoded<'i>, ParseError> {
        self.next_capped(input, usize::MAX)
    }

    /// Like [`next`](Self::next), with at most `max_data` bytes of data.
    pub fn next_capped<'i>(
        &mut self,
        input: &'i [u8],
        max_data: usize,
    ) -> Result<Decoded<'i>, ParseError> {
        let mut pos = 0;
        loop {
            match self.state {
                State::Done => return Ok(Decoded::new(pos, &[], true)),
                _ if pos == input.len() => return Ok(Decoded::new(pos, &[], false)),
                State::SizeLine | State::TrailerLine => {
                    pos += self.take_line(&input[pos..])?;
                }
                State::Data { remaining } => {
                    let avail = (input.len() - pos).min(max_data);
                    // `n` fits in usize because it is at most `avail`.
                    let n = usize::try_from(remaining).map_or(avail, |r| r.min(avail));
                    if n == 0 {
                        return Ok(Decoded::new(pos, &[], false));
                    }
                    let left = remaining - n as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data { remaining: left }
                    };
                    return Ok(Decoded::new(pos + n, &input[pos..pos + n], false));
                }
                State::DataCr => {
                    if input[pos] != b'\r' {
                        return Err(ParseError::InvalidChunkTerminator);
                    }
                    pos += 1;
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if input[pos] != b'\n' {
                        return Err(ParseError::InvalidChunkTerminator);
                    }
                    pos += 1;
                    self.state = State::SizeLine;
                }
            }
        }
    }

    /// Decodes as much of `input` as possible, appending chunk data to `out`.
    /// Returns how many bytes of `input` were consumed.
    pub fn decode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(usize, DecodeProgress), ParseError> {
        self.decode_capped(input, out, usize::MAX)
    }

    /// Like [`decode`](Self::decode), but appends at most `max_out` bytes of data to `out`,
    /// so a caller streaming the body can bound its buffer. Stops consuming when the cap
    /// is reached and returns `NeedMore` with `consumed < input.len()`.
    pub fn decode_capped(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max_out: usize,
    ) -> Result<(usize, DecodeProgress), ParseError> {
        let mut pos = 0;
        let mut budget = max_out;
        loop {
            let step = self.next_capped(&input[pos..], budget)?;
            out.extend_from_slice(step.data);
            budget -= step.data.len();
            pos += step.consumed;
            if step.done {
                return Ok((pos, DecodeProgress::Done));
            }
            if step.consumed == 0 {
                return Ok((pos, DecodeProgress::NeedMore));
            }
        }
    }

    /// Longest line content (CRLF excluded) the current state accepts.
    fn line_limit(&self) -> usize {
        match self.state {
            State::SizeLine => MAX_SIZE_DIGITS + MAX_CHUNK_EXTENSION,
            _ => self.max_trailer_line,
        }
    }

    fn too_long(&self, content: &[u8]) -> ParseError {
        match self.state {
            State::SizeLine if content.contains(&b';') => ParseError::ChunkExtensionTooLong,
            State::SizeLine => ParseError::ChunkSizeTooLong,
            _ => ParseError::TrailerFieldTooLong,
        }
    }

    /// Takes input up to and including the next LF; on LF, completes the line. Returns
    /// the bytes consumed. A line that arrives whole is parsed where it lies.
    fn take_line(&mut self, input: &[u8]) -> Result<usize, ParseError> {
        let lf = input.iter().position(|&b| b == b'\n');
        let used = lf.map_or(input.len(), |lf| lf + 1);
        if self.line.is_empty() {
            if let Some(lf) = lf {
                self.complete_line(&input[..=lf])?;
                return Ok(used);
            }
        }
        self.line.extend_from_slice(&input[..used]);
        if lf.is_none() {
            // Refuse what can already be refused, so a peer waiting for an answer gets
            // one and a hostile one cannot grow the buffer past the line limit.
            let partial = self.line.strip_suffix(b"\r").unwrap_or(&self.line);
            self.check_partial(partial)?;
            return Ok(used);
        }
        let line = std::mem::take(&mut self.line);
        let result = self.complete_line(&line);
        self.line = line;
        self.line.clear();
        result.map(|()| used)
    }

    /// The checks a line prefix can fail, in the order a whole line meets them.
    fn check_partial(&self, content: &[u8]) -> Result<(), ParseError> {
        if self.state == State::SizeLine {
            self.check_size_prefix(content)?;
        }
        if content.len() > self.line_limit() {
            return Err(self.too_long(content));
        }
        if content.contains(&b'\r') {
            return Err(ParseError::BareCarriageReturn);
        }
        Ok(())
    }

    /// `line` ends in LF.
    fn complete_line(&mut self, line: &[u8]) -> Result<(), ParseError> {
        let without_lf = &line[..line.len() - 1];
        let content = without_lf.strip_suffix(b"\r").unwrap_or(without_lf);
        self.check_partial(content)?;
        if content.len() == without_lf.len() {
            return Err(ParseError::BareLineFeed);
        }
        match self.state {
            State::SizeLine => {
                let size = parse_size_line(content)?;
                self.declare(size)?;
                self.state = if size == 0 {
                    State::TrailerLine
                } else {
                    State::Data { remaining: size }
                };
            }
            _ if content.is_empty() => self.state = State::Done,
            _ => {
                let field = parse_field_line(line)?;
                if self.trailers.len() >= self.max_trailer_fields {
                    return Err(ParseError::TooManyTrailerFields);
                }
                self.trailers.push(field);
            }
        }
        Ok(())
    }

    /// Adds a chunk's size to the declared total, refusing it past the bounds.
    fn declare(&mut self, size: u64) -> Result<(), ParseError> {
        self.declared = self
            .declared
            .checked_add(size)
            .filter(|&total| total <= MAX_BODY_LEN)
            .ok_or(ParseError::ChunkSizeTooLarge)?;
        if self.max_body > 0 && self.declared > self.max_body {
            return Err(ParseError::BodyTooLarge);
        }
        Ok(())
    }

    /// The digits seen so far of a chunk-size line are plausible, and do not already
    /// declare too much (more digits only make the size larger).
    fn check_size_prefix(&self, partial: &[u8]) -> Result<(), ParseError> {
        // Digit by digit, as they arrive: the first digit that makes the size wrong
        // decides which error, whether the line came whole or a byte at a time.
        let mut size: u64 = 0;
        let mut digits = 0;
        for &d in partial {
            let Some(v) = hex_digit(d) else {
                break;
            };
            digits += 1;
            if digits > MAX_SIZE_DIGITS {
                return Err(ParseError::ChunkSizeTooLong);
            }
            size = (size << 4) | u64::from(v);
            let total = self
                .declared
                .checked_add(size)
                .filter(|&total| total <= MAX_BODY_LEN)
                .ok_or(ParseError::ChunkSizeTooLarge)?;
            if self.max_body > 0 && total > self.max_body {
                return Err(ParseError::BodyTooLarge);
            }
        }
        match partial.get(digits) {
            None => Ok(()),
            Some(_) if digits == 0 => Err(ParseError::InvalidChunkSize),
            Some(b' ' | b'\t' | b';' | b'\r') => Ok(()),
            Some(_) => Err(ParseError::InvalidChunkSize),
        }
    }
}

fn hex_digit(d: u8) -> Option<u8> {
    match d {
        b'0'..=b'9' => Some(d - b'0'),
        b'a'..=b'f' => Some(d - b'a' + 10),
        b'A'..=b'F' => Some(d - b'A' + 10),
        _ => None,
    }
}

/// The value of at most 16 hex digits.
fn hex_value(digits: &[u8]) -> u64 {
    digits
        .iter()
        .filter_map(|&d| hex_digit(d))
        .fold(0u64, |size, v| (size << 4) | u64::from(v))
}

/// `chunk-size [ chunk-ext ]`, CRLF removed; the digits are checked already.
fn parse_size_line(line: &[u8]) -> Result<u64, ParseError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(ParseError::InvalidChunkSize);
    }
    let ext = &line[digits..];
    if ext.len() > MAX_CHUNK_EXTENSION {
        return Err(ParseError::ChunkExtensionTooLong);
    }
    check_extensions(ext)?;
    Ok(hex_value(&line[..digits]))
}

fn skip_bws(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    &s[n..]
}

/// `*( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] )` (RFC 9112 7.1.1).
fn check_extensions(mut ext: &[u8]) -> Result<(), ParseError> {
    while !ext.is_empty() {
        let Some(rest) = skip_bws(ext).strip_prefix(b";") else {
            return Err(ParseError::InvalidChunkExtension);
        };
        let rest = skip_bws(rest);
        let name_len = rest.iter().take_while(|&&b| is_tchar(b)).count();
        if name_len == 0 {
            return Err(ParseError::InvalidChunkExtension);
        }
        ext = &rest[name_len..];
        if let Some(value) = skip_bws(ext).strip_prefix(b"=") {
            let value = skip_bws(value);
            ext = if let Some(quoted) = value.strip_prefix(b"\"") {
                skip_quoted_string(quoted)?
            } else {
                let len = value.iter().take_while(|&&b| is_tchar(b)).count();
                if len == 0 {
                    return Err(ParseError::InvalidChunkExtension);
                }
                &value[len..]
            };
        }
    }
    Ok(())
}

/// Skips the rest of a quoted-string (opening quote already taken); returns what follows.
fn skip_quoted_string(s: &[u8]) -> Result<&[u8], ParseError> {
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'"' => return Ok(&s[i + 1..]),
            b'\\' => match s.get(i + 1) {
                Some(&b) if b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80 => i += 2,
                _ => return Err(ParseError::InvalidChunkExtension),
            },
            // qdtext: HTAB / SP / VCHAR except `"` and `\` / obs-text
            b if b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80 => i += 1,
            _ => return Err(ParseError::InvalidChunkExtension),
        }
    }
    Err(ParseError::InvalidChunkExtension)
}

#[cfg(test)]
#[path = "chunked_tests.rs"]
mod tests;
