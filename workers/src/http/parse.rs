//! Strict parsing of one request head (request line and header fields) with httparse,
//! plus the framing checks where request smuggling lives.
//!
//! IMPLEMENTATION IN PROGRESS (parser helper): the types below are the agreed interface.

/// Size limits, gunicorn's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// limit_request_line: longest request line in bytes (414 beyond).
    pub request_line: usize,
    /// limit_request_fields: most header fields (431 beyond).
    pub fields: usize,
    /// limit_request_field_size: longest header field line (431 beyond).
    pub field_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_line: 4094,
            fields: 100,
            field_size: 8190,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: Vec<u8>,
}

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    None,
    Length(u64),
    Chunked,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    /// The request target exactly as received.
    pub target: String,
    pub version: Version,
    pub headers: Vec<Header>,
    pub body: BodyKind,
    /// Whether the connection may stay open after this request (version + Connection).
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
    /// Bytes of the buffer the head took, including the blank line.
    pub head_len: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("request line too long")]
    RequestLineTooLong,
}

impl ParseError {
    pub fn status(&self) -> u16 {
        414
    }
}

pub fn parse_request_head(_buf: &[u8], _limits: &Limits) -> Result<Option<RequestHead>, ParseError> {
    Ok(None)
}
