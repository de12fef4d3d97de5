//! Decoding of `Transfer-Encoding: chunked` request bodies.
//!
//! Owns [`ChunkedDecoder`]: an incremental state machine fed whatever bytes arrived (one
//! at a time works), with memory bounded by the longest line it may buffer (a chunk-size
//! line or one trailer field), never by the body. It stops right after the final CRLF, so
//! a pipelined request behind the body stays with the caller. The request head, and the
//! [`ParseError`] variants, live in [`super::parse`]; field-line rules in `super::fields`.
//!
//! Strict where parsers are known to disagree (the TE.TE / chunk-size smuggling family):
//! chunk-size is 1 to 16 hex digits with nothing around it, extensions follow the RFC 9112
//! 7.1.1 grammar without BWS (which senders must not generate), every line ends in CRLF.

use super::fields::{is_tchar, split_field_line};
use super::parse::{Header, Limits};
use super::ParseError;

/// Longest chunk extension accepted on one chunk-size line. Extensions carry nothing we
/// use; the bound only keeps a hostile client from growing the line buffer.
pub const MAX_CHUNK_EXTENSION: usize = 4096;
/// chunk-size digits: 16 hex digits fill a u64, more can only overflow or pad.
const MAX_SIZE_DIGITS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeProgress {
    /// Feed more input. (If `consumed < input.len()`, the output cap was reached: call
    /// again with the rest once the data is drained.)
    NeedMore,
    /// The body ended; bytes after `consumed` belong to the next request.
    Done,
}

/// What the decoder waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A chunk-size line, accumulated in `line`.
    SizeLine,
    /// `remaining` bytes of chunk data.
    Data {
        remaining: u64,
    },
    /// The CR after chunk data.
    DataCr,
    /// The LF after chunk data.
    DataLf,
    /// A trailer field line (or the final empty line), accumulated in `line`.
    TrailerLine,
    Done,
}

#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
    /// The current line, LF not yet seen. Bounded by `line_limit()`.
    line: Vec<u8>,
    max_trailer_fields: usize,
    max_trailer_line: usize,
    trailers: Vec<Header>,
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

    /// A decoder bounding trailers like headers: at most `limits.fields` trailer fields
    /// of at most `limits.field_size` bytes each.
    pub fn with_limits(limits: &Limits) -> ChunkedDecoder {
        let limits = limits.normalized();
        ChunkedDecoder {
            state: State::SizeLine,
            line: Vec::new(),
            max_trailer_fields: limits.fields,
            max_trailer_line: limits.field_size,
            trailers: Vec::new(),
        }
    }

    /// Whether the final CRLF has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Bytes of the current chunk's declared size not decoded yet (0 between chunks), so
    /// a caller can refuse at once a chunk that alone would pass its body limit.
    pub fn chunk_remaining(&self) -> u64 {
        match self.state {
            State::Data { remaining } => remaining,
            _ => 0,
        }
    }

    /// Trailer fields received so far (complete once [`is_done`](Self::is_done)).
    pub fn trailers(&self) -> &[Header] {
        &self.trailers
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
        while pos < input.len() {
            match self.state {
                State::Done => break,
                State::SizeLine | State::TrailerLine => {
                    pos += self.take_line(&input[pos..])?;
                }
                State::Data { remaining } => {
                    if budget == 0 {
                        return Ok((pos, DecodeProgress::NeedMore));
                    }
                    let avail = (input.len() - pos).min(budget);
                    // `n` fits in usize because it is at most `avail`.
                    let n = usize::try_from(remaining).map_or(avail, |r| r.min(avail));
                    out.extend_from_slice(&input[pos..pos + n]);
                    pos += n;
                    budget -= n;
                    let left = remaining - n as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data { remaining: left }
                    };
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
        let progress = if self.state == State::Done {
            DecodeProgress::Done
        } else {
            DecodeProgress::NeedMore
        };
        Ok((pos, progress))
    }

    fn line_limit(&self) -> usize {
        match self.state {
            // digits + ';' + extension + CR
            State::SizeLine => MAX_SIZE_DIGITS + MAX_CHUNK_EXTENSION + 2,
            _ => self.max_trailer_line + 1,
        }
    }

    /// Appends input up to and including the next LF to `line`; on LF, completes the line.
    /// Returns the bytes consumed.
    fn take_line(&mut self, input: &[u8]) -> Result<usize, ParseError> {
        let (piece, complete) = match input.iter().position(|&b| b == b'\n') {
            Some(lf) => (&input[..lf], true),
            None => (input, false),
        };
        if self.line.len() + piece.len() > self.line_limit() {
            return Err(match self.state {
                State::SizeLine if self.extension_started(piece) => {
                    ParseError::ChunkExtensionTooLong
                }
                State::SizeLine => ParseError::ChunkSizeTooLong,
                _ => ParseError::TrailerFieldTooLong,
            });
        }
        self.line.extend_from_slice(piece);
        // A CR is only allowed as the last byte before the LF.
        let body = self.line.strip_suffix(b"\r").unwrap_or(&self.line);
        if body.contains(&b'\r') {
            return Err(ParseError::BareCarriageReturn);
        }
        if !complete {
            // Refuse a bad chunk-size before its line ends, so a peer waiting for an
            // answer gets one; the size part is short, so rescanning it is cheap.
            if self.state == State::SizeLine {
                check_size_prefix(body)?;
            }
            return Ok(input.len());
        }
        let Some(content) = self.line.strip_suffix(b"\r") else {
            return Err(ParseError::BareLineFeed);
        };
        match self.state {
            State::SizeLine => {
                let size = parse_size_line(content)?;
                self.state = if size == 0 {
                    State::TrailerLine
                } else {
                    State::Data { remaining: size }
                };
            }
            _ => {
                if content.is_empty() {
                    self.state = State::Done;
                } else {
                    if self.trailers.len() >= self.max_trailer_fields {
                        return Err(ParseError::TooManyTrailerFields);
                    }
                    let (name, value) = split_field_line(content)?;
                    let header = Header {
                        // A token is ASCII, so this cannot fail.
                        name: String::from_utf8(name.to_vec())
                            .map_err(|_| ParseError::InvalidHeaderName)?,
                        value: value.to_vec(),
                    };
                    self.trailers.push(header);
                }
            }
        }
        self.line.clear();
        Ok(piece.len() + 1)
    }

    fn extension_started(&self, piece: &[u8]) -> bool {
        self.line.contains(&b';') || piece.contains(&b';')
    }
}

/// The digits seen so far of an unfinished chunk-size line are plausible.
fn check_size_prefix(partial: &[u8]) -> Result<(), ParseError> {
    let digits_end = partial
        .iter()
        .position(|&b| b == b';')
        .unwrap_or(partial.len());
    let digits = &partial[..digits_end];
    if digits.len() > MAX_SIZE_DIGITS {
        return Err(ParseError::ChunkSizeTooLong);
    }
    if !digits.iter().all(u8::is_ascii_hexdigit)
        || (digits_end < partial.len() && digits.is_empty())
    {
        return Err(ParseError::InvalidChunkSize);
    }
    Ok(())
}

/// `chunk-size [ chunk-ext ]`, CRLF removed.
fn parse_size_line(line: &[u8]) -> Result<u64, ParseError> {
    let digits_end = line.iter().position(|&b| b == b';').unwrap_or(line.len());
    let (digits, ext) = line.split_at(digits_end);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err(ParseError::InvalidChunkSize);
    }
    if digits.len() > MAX_SIZE_DIGITS {
        return Err(ParseError::ChunkSizeTooLong);
    }
    let mut size: u64 = 0;
    for &d in digits {
        let v = (d as char)
            .to_digit(16)
            .ok_or(ParseError::InvalidChunkSize)?;
        // 16 digits cannot overflow, but checked math costs nothing and proves it.
        size = size
            .checked_mul(16)
            .and_then(|s| s.checked_add(u64::from(v)))
            .ok_or(ParseError::ChunkSizeTooLong)?;
    }
    if ext.len() > MAX_CHUNK_EXTENSION {
        return Err(ParseError::ChunkExtensionTooLong);
    }
    check_extensions(ext)?;
    Ok(size)
}

/// `*( ";" token [ "=" ( token / quoted-string ) ] )`, no whitespace around the
/// separators.
fn check_extensions(mut ext: &[u8]) -> Result<(), ParseError> {
    while let Some(rest) = ext.strip_prefix(b";") {
        let name_len = rest.iter().take_while(|&&b| is_tchar(b)).count();
        if name_len == 0 {
            return Err(ParseError::InvalidChunkExtension);
        }
        ext = &rest[name_len..];
        if let Some(value) = ext.strip_prefix(b"=") {
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
    if ext.is_empty() {
        Ok(())
    } else {
        Err(ParseError::InvalidChunkExtension)
    }
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
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Result<(Vec<u8>, usize, DecodeProgress), ParseError> {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let (n, p) = d.decode(input, &mut out)?;
        Ok((out, n, p))
    }

    fn decode_bytewise(input: &[u8]) -> Result<(Vec<u8>, usize, DecodeProgress), ParseError> {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let mut consumed = 0;
        for b in input {
            let (n, p) = d.decode(std::slice::from_ref(b), &mut out)?;
            consumed += n;
            if p == DecodeProgress::Done {
                return Ok((out, consumed, p));
            }
            assert_eq!(n, 1, "a single byte before Done is always consumed");
        }
        Ok((out, consumed, DecodeProgress::NeedMore))
    }

    #[test]
    fn simple_body() {
        let input = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        let (out, n, p) = decode_all(input).unwrap();
        assert_eq!(out, b"hello world");
        assert_eq!(n, input.len());
        assert_eq!(p, DecodeProgress::Done);
    }

    #[test]
    fn byte_at_a_time_matches_whole() {
        let input = b"5;a=b;c=\"x y\"\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n";
        let whole = decode_all(input).unwrap();
        let bytewise = decode_bytewise(input).unwrap();
        assert_eq!(whole, bytewise);
        assert_eq!(whole.0, b"hello0123456789");
        assert_eq!(whole.2, DecodeProgress::Done);
    }

    #[test]
    fn pipelined_leftover_is_not_consumed() {
        let input = b"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
        let (out, n, p) = decode_all(input).unwrap();
        assert_eq!(out, b"abc");
        assert_eq!(p, DecodeProgress::Done);
        assert_eq!(&input[n..], b"GET / HTTP/1.1\r\n");
        // Once done, more input is left alone.
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        d.decode(b"0\r\n\r\n", &mut out).unwrap();
        assert_eq!(
            d.decode(b"xyz", &mut out).unwrap(),
            (0, DecodeProgress::Done)
        );
    }

    #[test]
    fn trailers_are_kept() {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let (_, p) = d
            .decode(b"1\r\na\r\n0\r\nX-Sum: 9\r\nY: z\r\n\r\n", &mut out)
            .unwrap();
        assert_eq!(p, DecodeProgress::Done);
        assert_eq!(d.trailers().len(), 2);
        assert_eq!(d.trailers()[0].name, "X-Sum");
        assert_eq!(d.trailers()[0].value, b"9");
    }

    #[test]
    fn output_cap_is_respected() {
        let input = b"a\r\n0123456789\r\n0\r\n\r\n";
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let mut pos = 0;
        loop {
            let (n, p) = d.decode_capped(&input[pos..], &mut out, 4).unwrap();
            pos += n;
            assert!(out.len() <= 12);
            if p == DecodeProgress::Done {
                break;
            }
            out.clear();
        }
        assert_eq!(pos, input.len());
    }

    #[test]
    fn strict_chunk_sizes() {
        let cases: &[(&[u8], ParseError)] = &[
            (b"0x5\r\nhello\r\n0\r\n\r\n", ParseError::InvalidChunkSize),
            (b" 5\r\nhello\r\n0\r\n\r\n", ParseError::InvalidChunkSize),
            (b"5 \r\nhello\r\n0\r\n\r\n", ParseError::InvalidChunkSize),
            (b"+5\r\nhello\r\n0\r\n\r\n", ParseError::InvalidChunkSize),
            (b"-1\r\n", ParseError::InvalidChunkSize),
            (b"\r\n", ParseError::InvalidChunkSize),
            (b"10000000000000000\r\n", ParseError::ChunkSizeTooLong),
            (b"5\nhello\r\n0\r\n\r\n", ParseError::BareLineFeed),
            (b"5\rhello\r\n", ParseError::BareCarriageReturn),
            (
                b"5\r\nhelloX\r\n0\r\n\r\n",
                ParseError::InvalidChunkTerminator,
            ),
            (b"5\r\nhello\n0\r\n\r\n", ParseError::InvalidChunkTerminator),
            (b"5 ;a=b\r\nhello\r\n", ParseError::InvalidChunkSize),
            (b"5; a=b\r\nhello\r\n", ParseError::InvalidChunkExtension),
            (b"5;a=\r\nhello\r\n", ParseError::InvalidChunkExtension),
            (b"5;a=\"x\r\nhello\r\n", ParseError::InvalidChunkExtension),
            (b"5;=b\r\nhello\r\n", ParseError::InvalidChunkExtension),
            (b"0\r\nbad trailer\r\n\r\n", ParseError::HeaderWithoutColon),
            (b"0\r\n folded: x\r\n\r\n", ParseError::ObsoleteLineFolding),
            (b"0\r\nX: 1\n\r\n", ParseError::BareLineFeed),
        ];
        for (input, want) in cases {
            assert_eq!(
                decode_all(input).err(),
                Some(*want),
                "whole: {:?}",
                String::from_utf8_lossy(input)
            );
            assert_eq!(
                decode_bytewise(input).err(),
                Some(*want),
                "bytewise: {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn early_rejection_before_line_end() {
        let mut d = ChunkedDecoder::new();
        assert_eq!(
            d.decode(b"zz", &mut Vec::new()).err(),
            Some(ParseError::InvalidChunkSize)
        );
        let mut d = ChunkedDecoder::new();
        assert_eq!(
            d.decode(&[b'f'; 17], &mut Vec::new()).err(),
            Some(ParseError::ChunkSizeTooLong)
        );
    }

    #[test]
    fn sixteen_digit_size_is_accepted() {
        let mut d = ChunkedDecoder::new();
        let (n, p) = d
            .decode(b"ffffffffffffffff\r\nab", &mut Vec::new())
            .unwrap();
        assert_eq!((n, p), (20, DecodeProgress::NeedMore));
    }

    #[test]
    fn bounded_lines() {
        let mut long_ext = b"1;a=".to_vec();
        long_ext.extend(std::iter::repeat(b'x').take(MAX_CHUNK_EXTENSION + 100));
        let mut d = ChunkedDecoder::new();
        assert_eq!(
            d.decode(&long_ext, &mut Vec::new()).err(),
            Some(ParseError::ChunkExtensionTooLong)
        );

        let limits = Limits {
            request_line: 100,
            fields: 2,
            field_size: 20,
        };
        let mut d = ChunkedDecoder::with_limits(&limits);
        let input = b"0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        assert_eq!(
            d.decode(input, &mut Vec::new()).err(),
            Some(ParseError::TooManyTrailerFields)
        );
        let mut d = ChunkedDecoder::with_limits(&limits);
        let input = b"0\r\nA: 123456789012345678901234567890\r\n\r\n";
        assert_eq!(
            d.decode(input, &mut Vec::new()).err(),
            Some(ParseError::TrailerFieldTooLong)
        );
    }
}
