//! [`ParseError`]: every way a message can be unacceptable, named after the check that
//! failed, for request heads ([`crate::request`]), bodies ([`crate::chunked`],
//! [`crate::body`]) and upstream response heads ([`crate::response`]) alike.

/// Everything that can make a message unacceptable. [`ParseError::status`] gives the
/// status a client earns for a bad request; the caller closes the connection after
/// answering, since the framing of what follows cannot be trusted. For an upstream
/// response any variant means the front answers its client 502.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    // --- limits
    #[error("request line longer than limit_request_line")]
    RequestLineTooLong,
    #[error("more header fields than limit_request_fields")]
    TooManyHeaders,
    #[error("header field line longer than limit_request_field_size")]
    HeaderFieldTooLong,
    #[error("message head larger than its buffer bound")]
    HeadTooLarge,
    #[error("request body larger than the configured limit")]
    BodyTooLarge,
    // --- line structure
    #[error("NUL byte in message head")]
    NulInHead,
    #[error("line terminated by a bare LF instead of CRLF")]
    BareLineFeed,
    #[error("bare CR not followed by LF")]
    BareCarriageReturn,
    // --- request line
    #[error("request line is not `method SP target SP version`")]
    InvalidRequestLine,
    #[error("request line without an HTTP version (HTTP/0.9 is not supported)")]
    MissingVersion,
    #[error("invalid method (uppercase token of 3 to 20 characters expected)")]
    InvalidMethod,
    #[error("CONNECT is not supported: no tunnels through this server")]
    ConnectNotSupported,
    #[error("invalid request target")]
    InvalidTarget,
    #[error("`*` target is only allowed with OPTIONS")]
    AsteriskTargetWithoutOptions,
    #[error("authority-form target is only allowed with CONNECT")]
    AuthorityTargetWithoutConnect,
    #[error("malformed HTTP version")]
    InvalidVersion,
    #[error("HTTP version not supported (only HTTP/1.0 and HTTP/1.1)")]
    UnsupportedVersion,
    // --- status line (responses)
    #[error("status line is not `version SP 3DIGIT SP reason`")]
    InvalidStatusLine,
    // --- field lines (headers and trailers)
    #[error("obsolete line folding")]
    ObsoleteLineFolding,
    #[error("header line without a colon")]
    HeaderWithoutColon,
    #[error("empty header name")]
    EmptyHeaderName,
    #[error("whitespace between header name and colon")]
    WhitespaceBeforeColon,
    #[error("header name is not a token")]
    InvalidHeaderName,
    #[error("control character in header value")]
    InvalidHeaderValue,
    // --- semantics of particular fields
    #[error("HTTP/1.1 request without Host")]
    MissingHost,
    #[error("more than one Host header")]
    DuplicateHost,
    #[error("invalid Host value")]
    InvalidHost,
    #[error("Content-Length is not a plain decimal number below 2^63")]
    InvalidContentLength,
    #[error("more than one Content-Length")]
    DuplicateContentLength,
    #[error("both Content-Length and Transfer-Encoding")]
    ContentLengthWithTransferEncoding,
    #[error("Transfer-Encoding in an HTTP/1.0 request")]
    TransferEncodingOnHttp10,
    #[error("malformed Transfer-Encoding list")]
    InvalidTransferEncoding,
    #[error("transfer coding after chunked")]
    ChunkedNotLast,
    #[error("chunked applied more than once")]
    ChunkedRepeated,
    #[error("unsupported transfer coding")]
    UnsupportedTransferCoding,
    // --- chunked body
    #[error("invalid chunk size")]
    InvalidChunkSize,
    #[error("chunk size has more than 16 hex digits")]
    ChunkSizeTooLong,
    #[error("chunk sizes add up to more than 2^63-1 bytes")]
    ChunkSizeTooLarge,
    #[error("invalid chunk extension")]
    InvalidChunkExtension,
    #[error("chunk extension too long")]
    ChunkExtensionTooLong,
    #[error("chunk data not followed by CRLF")]
    InvalidChunkTerminator,
    #[error("trailer field line too long")]
    TrailerFieldTooLong,
    #[error("too many trailer fields")]
    TooManyTrailerFields,
}

impl ParseError {
    /// The response status this error earns a client (for a request).
    pub fn status(&self) -> u16 {
        match self {
            ParseError::RequestLineTooLong => 414,
            ParseError::TooManyHeaders
            | ParseError::HeaderFieldTooLong
            | ParseError::HeadTooLarge => 431,
            ParseError::BodyTooLarge => 413,
            // nginx's answer to CONNECT (it sends no Allow header either).
            ParseError::ConnectNotSupported => 405,
            ParseError::UnsupportedVersion => 505,
            ParseError::UnsupportedTransferCoding => 501,
            _ => 400,
        }
    }
}
