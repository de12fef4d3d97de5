//! Strict parsing of what the workers answer: the response head (httparse), its framing
//! (no body / Content-Length / chunked / until close) and a chunked decoder. The
//! connection that reads it is [`super::Upstream`]; what reaches the client is decided by
//! [`crate::front::http1`].

/// Largest response head the front accepts from the workers.
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;
const MAX_RESPONSE_HEADERS: usize = 128;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UpstreamError {
    #[error("malformed response head: {0}")]
    MalformedHead(String),
    #[error("response head larger than {MAX_RESPONSE_HEAD} bytes")]
    HeadTooLarge,
    #[error("conflicting Content-Length values")]
    ConflictingLength,
    #[error("malformed chunked response body")]
    MalformedChunk,
    #[error("unexpected 101 Switching Protocols")]
    Upgrade,
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// HEAD, 1xx, 204, 304.
    None,
    Length(u64),
    Chunked,
    /// HTTP/1.0 style: the body ends when the worker closes.
    UntilClose,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub reason: String,
    /// Every header as received, names as sent.
    pub headers: Vec<(String, Vec<u8>)>,
    pub framing: Framing,
    /// The Content-Length the worker announced (also for HEAD and 304).
    pub content_length: Option<u64>,
    /// The worker will close after this response (HTTP/1.0 or `Connection: close`).
    pub close: bool,
    pub head_len: usize,
}

/// Parse one response head from `buf`; `Ok(None)` while incomplete.
pub fn parse_response_head(
    buf: &[u8],
    request_was_head: bool,
) -> Result<Option<ResponseHead>, UpstreamError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_RESPONSE_HEAD => {
            return Err(UpstreamError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(err) => return Err(UpstreamError::MalformedHead(err.to_string())),
    };
    let status = response.code.unwrap_or(0);
    let http10 = response.version == Some(0);
    let reason = response.reason.unwrap_or("").to_string();
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut transfer_encoding = false;
    let mut close = http10;
    let mut out = Vec::with_capacity(response.headers.len());
    for h in response.headers.iter() {
        let value = h.value;
        if h.name.eq_ignore_ascii_case("content-length") {
            let text = std::str::from_utf8(value).map_err(|_| UpstreamError::ConflictingLength)?;
            for part in text.split(',') {
                let part = part.trim();
                if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(UpstreamError::MalformedHead(format!(
                        "Content-Length {text:?}"
                    )));
                }
                let n: u64 = part.parse().map_err(|_| UpstreamError::ConflictingLength)?;
                if content_length.is_some_and(|old| old != n) {
                    return Err(UpstreamError::ConflictingLength);
                }
                content_length = Some(n);
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
            // Only a final `chunked` delimits the body; anything else runs until close.
            let last = value.rsplit(|b| *b == b',').next().unwrap_or(b"");
            chunked = trim(last).eq_ignore_ascii_case(b"chunked");
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in value.split(|b| *b == b',') {
                let token = trim(token);
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && http10 {
                    close = false;
                }
            }
        }
        out.push((h.name.to_string(), value.to_vec()));
    }
    if status == 101 {
        return Err(UpstreamError::Upgrade);
    }
    let framing =
        if request_was_head || (100..200).contains(&status) || status == 204 || status == 304 {
            Framing::None
        } else if transfer_encoding {
            // RFC 9112 6.3: Transfer-Encoding overrides Content-Length; such a message must
            // not be reused (it may be a smuggling attempt).
            if content_length.is_some() {
                close = true;
            }
            if chunked {
                Framing::Chunked
            } else {
                close = true;
                Framing::UntilClose
            }
        } else if let Some(n) = content_length {
            Framing::Length(n)
        } else {
            close = true;
            Framing::UntilClose
        };
    if transfer_encoding {
        content_length = None;
    }
    Ok(Some(ResponseHead {
        status,
        reason,
        headers: out,
        framing,
        content_length,
        close,
        head_len,
    }))
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &bytes[start..end.max(start)]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading hex digits of a chunk size.
    Size {
        value: u64,
        digits: u8,
    },
    /// Skipping a chunk extension (or whitespace) up to the end of the size line.
    Extension {
        value: u64,
    },
    /// In a chunk's data, this many bytes left.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd {
        seen_cr: bool,
    },
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer line (discarded).
    TrailerLine,
    FinalLf,
    Done,
}

/// Decoder for chunked response bodies: yields the data, drops extensions and trailers.
#[derive(Debug, Clone)]
pub struct ChunkDecoder {
    state: ChunkState,
}

impl Default for ChunkDecoder {
    fn default() -> Self {
        ChunkDecoder {
            state: ChunkState::Size {
                value: 0,
                digits: 0,
            },
        }
    }
}

impl ChunkDecoder {
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decode from `input`, appending at most `room` data bytes to `out`. Returns the
    /// input bytes consumed.
    pub fn decode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        room: usize,
    ) -> Result<usize, UpstreamError> {
        let mut i = 0;
        let mut room = room;
        while i < input.len() {
            let b = input[i];
            self.state = match self.state {
                ChunkState::Size { value, digits } => match (b as char).to_digit(16) {
                    Some(d) if digits < 15 => ChunkState::Size {
                        value: value * 16 + u64::from(d),
                        digits: digits + 1,
                    },
                    Some(_) => return Err(UpstreamError::MalformedChunk),
                    None if digits == 0 => return Err(UpstreamError::MalformedChunk),
                    None if b == b'\n' => self.after_size(value),
                    None if matches!(b, b';' | b' ' | b'\t' | b'\r') => {
                        ChunkState::Extension { value }
                    }
                    None => return Err(UpstreamError::MalformedChunk),
                },
                ChunkState::Extension { value } => match b {
                    b'\n' => self.after_size(value),
                    _ => ChunkState::Extension { value },
                },
                ChunkState::Data(left) => {
                    if room == 0 {
                        return Ok(i);
                    }
                    let n = (input.len() - i)
                        .min(room)
                        .min(usize::try_from(left).unwrap_or(usize::MAX));
                    out.extend_from_slice(&input[i..i + n]);
                    room -= n;
                    i += n;
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        ChunkState::DataEnd { seen_cr: false }
                    } else {
                        ChunkState::Data(left)
                    };
                    continue;
                }
                ChunkState::DataEnd { seen_cr } => match b {
                    b'\r' if !seen_cr => ChunkState::DataEnd { seen_cr: true },
                    b'\n' => ChunkState::Size {
                        value: 0,
                        digits: 0,
                    },
                    _ => return Err(UpstreamError::MalformedChunk),
                },
                ChunkState::TrailerStart => match b {
                    b'\r' => ChunkState::FinalLf,
                    b'\n' => ChunkState::Done,
                    _ => ChunkState::TrailerLine,
                },
                ChunkState::TrailerLine => match b {
                    b'\n' => ChunkState::TrailerStart,
                    _ => ChunkState::TrailerLine,
                },
                ChunkState::FinalLf => match b {
                    b'\n' => ChunkState::Done,
                    _ => return Err(UpstreamError::MalformedChunk),
                },
                ChunkState::Done => return Ok(i),
            };
            i += 1;
        }
        Ok(i)
    }

    fn after_size(&self, value: u64) -> ChunkState {
        if value == 0 {
            ChunkState::TrailerStart
        } else {
            ChunkState::Data(value)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_framing() {
        let h = parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false)
            .expect("ok")
            .expect("complete");
        assert_eq!(
            (h.status, h.framing, h.close, h.head_len),
            (200, Framing::Length(5), false, 38)
        );
        let h = parse_response_head(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        )
        .expect("ok")
        .expect("complete");
        assert_eq!(h.framing, Framing::Chunked);
        let h = parse_response_head(b"HTTP/1.0 200 OK\r\n\r\n", false)
            .expect("ok")
            .expect("complete");
        assert_eq!((h.framing, h.close), (Framing::UntilClose, true));
        let h = parse_response_head(
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
            false,
        )
        .expect("ok")
        .expect("complete");
        assert_eq!((h.framing, h.content_length), (Framing::None, Some(9)));
        let h = parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true)
            .expect("ok")
            .expect("complete");
        assert_eq!(h.framing, Framing::None);
        let h = parse_response_head(
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        )
        .expect("ok")
        .expect("complete");
        assert_eq!(
            (h.framing, h.close, h.content_length),
            (Framing::Chunked, true, None)
        );
        assert_eq!(
            parse_response_head(b"HTTP/1.1 200 OK\r\nCont", false),
            Ok(None)
        );
        assert_eq!(
            parse_response_head(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                false
            ),
            Err(UpstreamError::ConflictingLength)
        );
        assert!(
            parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", false).is_err()
        );
    }

    #[test]
    fn chunks_split_anywhere() {
        let body = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n";
        for split in 0..body.len() {
            let mut dec = ChunkDecoder::default();
            let mut out = Vec::new();
            let n = dec
                .decode(&body[..split], &mut out, usize::MAX)
                .expect("ok");
            assert_eq!(n, split);
            let m = dec
                .decode(&body[split..], &mut out, usize::MAX)
                .expect("ok");
            assert_eq!(n + m, body.len());
            assert!(dec.is_done());
            assert_eq!(out, b"hello world");
        }
    }

    #[test]
    fn chunk_room_is_respected() {
        let mut dec = ChunkDecoder::default();
        let mut out = Vec::new();
        let n = dec
            .decode(b"a\r\n0123456789\r\n0\r\n\r\n", &mut out, 4)
            .expect("ok");
        assert_eq!((n, out.as_slice()), (7, &b"0123"[..]));
        assert!(ChunkDecoder::default()
            .decode(b"zz\r\n", &mut out, 9)
            .is_err());
    }
}
