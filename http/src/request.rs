//! Strict parsing of one request head (request line and header fields) with httparse,
//! plus the framing checks where request smuggling lives.
//!
//! Owns: [`parse_request_head`], the [`RequestHead`] it returns, [`Limits`] and the
//! [`ParseError`] every HTTP/1.1 check of this crate reports (with its status). The
//! chunked body lives in [`super::chunked`], field-line grammar in `super::fields`.
//!
//! The worker and the TLS front both call this, so they agree on framing byte for byte.
//! Where RFC 9110/9112 leave room, gunicorn 22/23 decides; where gunicorn is lenient in a
//! way that could desync a proxy and us, we are stricter (see the notes on each check).
//!
//! Decisions worth knowing:
//! - Every line ends in CRLF; a bare LF or bare CR anywhere in the head is a 400.
//! - Empty lines (CRLF only) before the request line are skipped, as RFC 9112 2.2
//!   recommends (clients used to send a CRLF after a POST body); they count toward
//!   `head_len` and toward the head size bound. gunicorn refuses them; being tolerant is
//!   safe because the front and the worker share this code.
//! - A well-formed `HTTP/x.y` other than 1.0/1.1 is 505; gunicorn answers 400.
//! - Any transfer coding other than `chunked` (including `identity` and `gzip, chunked`)
//!   is 501, a coding after `chunked` (or `chunked` twice) is 400. gunicorn accepts
//!   `identity` and `gzip, chunked`; we do not decode them, so refusing is the honest answer.
//!   Transfer-Encoding of any kind on HTTP/1.0 is 400.
//! - The target is visible ASCII only: raw non-ASCII, `#` fragments and malformed `%XX` in
//!   the path are 400 (gunicorn lets urlsplit cope). A stray `%` in the query is kept.
//! - Header names keep their case; headers with `_` in the name are kept here, dropping
//!   them (gunicorn's `header_map = drop`) is the environ builder's job.

use crate::fields::{
    authority_valid, is_tchar, is_token, list_contains, list_elements, percent_escapes_valid,
    split_field_line, trim_ows,
};

/// gunicorn's MAX_REQUEST_LINE: the ceiling, and what `limit_request_line = 0` means.
const MAX_REQUEST_LINE: usize = 8190;
/// gunicorn's MAX_HEADERS.
const MAX_FIELDS: usize = 32768;
/// gunicorn's DEFAULT_MAX_HEADERFIELD_SIZE; also our meaning of `field_size = 0`, since
/// "unlimited" would make memory unbounded.
const MAX_FIELD_SIZE: usize = 8190;

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

impl Limits {
    /// The limits as enforced: 0 and out-of-range values become gunicorn's maxima.
    pub fn normalized(&self) -> Limits {
        let clamp = |v: usize, max: usize| if v == 0 || v > max { max } else { v };
        Limits {
            request_line: clamp(self.request_line, MAX_REQUEST_LINE),
            fields: clamp(self.fields, MAX_FIELDS),
            field_size: clamp(self.field_size, MAX_FIELD_SIZE),
        }
    }

    /// Most bytes a head may take (gunicorn's max_buffer_headers plus the request line):
    /// past this an incomplete head is refused, so a connection's buffer stays bounded.
    pub fn max_head_len(&self) -> usize {
        let l = self.normalized();
        (l.request_line + 2)
            .saturating_add(l.fields.saturating_mul(l.field_size + 2))
            .saturating_add(2)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    /// As written on the wire and in SERVER_PROTOCOL.
    pub fn as_str(&self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
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

/// The four request-target forms of RFC 9112 3.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetForm {
    /// `/path?query`
    Origin,
    /// `http://host/path?query` (what a forward proxy receives)
    Absolute,
    /// `host:port`, CONNECT only
    Authority,
    /// `*`, OPTIONS only
    Asterisk,
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

impl RequestHead {
    /// Value of the first header named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_slice())
    }

    /// Values of every header named `name`, in order received.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_slice())
    }

    /// Which form the (already validated) target has.
    pub fn target_form(&self) -> TargetForm {
        target_form_of(self.target.as_bytes())
    }

    /// (path, query) of the target, both still percent-encoded; query excludes the `?`.
    /// Absolute-form yields the path after the authority (possibly empty, as gunicorn's
    /// urlsplit does); `*` yields ("*", ""); authority-form yields ("", "").
    pub fn split_target(&self) -> (&str, &str) {
        let t = self.target.as_str();
        let rest = match self.target_form() {
            TargetForm::Origin => t,
            TargetForm::Asterisk => return (t, ""),
            TargetForm::Authority => return ("", ""),
            TargetForm::Absolute => {
                let after_scheme = t.find("://").map_or("", |i| &t[i + 3..]);
                let path_start = after_scheme.find(['/', '?']).unwrap_or(after_scheme.len());
                &after_scheme[path_start..]
            }
        };
        match rest.split_once('?') {
            Some((path, query)) => (path, query),
            None => (rest, ""),
        }
    }

    /// PATH_INFO as gunicorn builds it: the percent-decoded path read as latin-1.
    pub fn path_info(&self) -> String {
        percent_decode_latin1(self.split_target().0)
    }

    /// The Content-Length the body is framed by, if any.
    pub fn content_length(&self) -> Option<u64> {
        match self.body {
            BodyKind::Length(n) => Some(n),
            _ => None,
        }
    }
}

/// Decodes `%XX` escapes and maps each resulting byte to the char of the same code point
/// (latin-1), like Python's `unquote_to_bytes(path).decode("latin-1")` that gunicorn uses
/// for PATH_INFO (PEP 3333 "bytes as latin-1 str"). Malformed escapes stay as they are.
pub fn percent_decode_latin1(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            if let Some([h, l]) = bytes.get(i + 1..i + 3) {
                if let (Some(h), Some(l)) = (hex_val(*h), hex_val(*l)) {
                    out.push(char::from(h * 16 + l));
                    i += 3;
                    continue;
                }
            }
        }
        out.push(char::from(b));
        i += 1;
    }
    out
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// Everything that can make a request unacceptable, named after the check that failed.
/// [`ParseError::status`] gives the response status; the caller closes the connection
/// after answering, since the framing of what follows cannot be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    // --- limits
    #[error("request line longer than limit_request_line")]
    RequestLineTooLong,
    #[error("more header fields than limit_request_fields")]
    TooManyHeaders,
    #[error("header field line longer than limit_request_field_size")]
    HeaderFieldTooLong,
    #[error("request head larger than the header buffer bound")]
    HeadTooLarge,
    // --- line structure
    #[error("NUL byte in request head")]
    NulInHead,
    #[error("line terminated by a bare LF instead of CRLF")]
    BareLineFeed,
    #[error("bare CR not followed by LF")]
    BareCarriageReturn,
    // --- request line
    #[error("request line is not `method SP target SP version`")]
    InvalidRequestLine,
    #[error("invalid method (uppercase token of 3 to 20 characters expected)")]
    InvalidMethod,
    #[error("invalid request target")]
    InvalidTarget,
    #[error("`*` target is only allowed with OPTIONS")]
    AsteriskTargetWithoutOptions,
    #[error("authority-form target is only allowed with CONNECT")]
    AuthorityTargetWithoutConnect,
    #[error("CONNECT requires an authority-form target (host:port)")]
    ConnectWithoutAuthority,
    #[error("malformed HTTP version")]
    InvalidVersion,
    #[error("HTTP version not supported (only HTTP/1.0 and HTTP/1.1)")]
    UnsupportedVersion,
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
    #[error("request head rejected by httparse: {0}")]
    HeadSyntax(&'static str),
    // --- semantics of particular fields
    #[error("HTTP/1.1 request without Host")]
    MissingHost,
    #[error("more than one Host header")]
    DuplicateHost,
    #[error("invalid Host value")]
    InvalidHost,
    #[error("Content-Length is not a plain decimal number")]
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
    /// The response status this error earns.
    pub fn status(&self) -> u16 {
        match self {
            ParseError::RequestLineTooLong => 414,
            ParseError::TooManyHeaders
            | ParseError::HeaderFieldTooLong
            | ParseError::HeadTooLarge => 431,
            ParseError::UnsupportedVersion => 505,
            ParseError::UnsupportedTransferCoding => 501,
            _ => 400,
        }
    }
}

/// Where the lines of a complete head are.
struct HeadScan {
    /// Offset of the request line (after skipped empty lines).
    start: usize,
    /// Length of the request line, CRLF excluded.
    line_len: usize,
    /// Number of header field lines.
    fields: usize,
    /// End of the head, blank line included.
    head_len: usize,
}

/// Parses the request head at the start of `buf`.
///
/// `Ok(None)`: the head is incomplete and nothing seen so far is wrong; read more and call
/// again with the grown buffer (the whole head is rescanned: it is small and bounded).
/// `Ok(Some(head))`: `head.head_len` bytes are the head; the body (per `head.body`) and
/// any pipelined request follow. `Err(e)`: answer `e.status()` and close.
pub fn parse_request_head(buf: &[u8], limits: &Limits) -> Result<Option<RequestHead>, ParseError> {
    let limits = limits.normalized();
    let Some(scan) = scan_head(buf, &limits)? else {
        return Ok(None);
    };
    let line = &buf[scan.start..scan.start + scan.line_len];
    let (method, target, version) = parse_request_line(line)?;

    // httparse re-reads the head: the checks above are stricter than it is, but a second,
    // well-fuzzed parser agreeing on where everything is costs little on heads this small.
    let head = &buf[scan.start..scan.head_len];
    let headers = parse_fields_with_httparse(head, scan.fields)?;

    let framing = check_fields(&headers, version)?;
    Ok(Some(RequestHead {
        method: method.to_owned(),
        target: target.to_owned(),
        version,
        headers,
        body: framing.body,
        keep_alive: framing.keep_alive,
        expect_continue: framing.expect_continue,
        head_len: scan.head_len,
    }))
}

/// Finds the end of the head, enforcing CRLF line endings, the NUL ban and every size
/// limit, on complete and incomplete heads alike.
fn scan_head(buf: &[u8], limits: &Limits) -> Result<Option<HeadScan>, ParseError> {
    let max_head = limits.max_head_len();
    let mut pos = 0;
    while buf[pos..].starts_with(b"\r\n") {
        pos += 2;
        if pos > max_head {
            return Err(ParseError::HeadTooLarge);
        }
    }
    let start = pos;
    let mut line_len = 0;
    let mut fields = 0;
    loop {
        let rest = &buf[pos..];
        let first_line = pos == start;
        let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
            // Incomplete line: refuse early what can already be refused, so a slow or
            // hostile client cannot make us buffer past the limits.
            let partial = rest.strip_suffix(b"\r").unwrap_or(rest);
            check_line_bytes(partial)?;
            if first_line && partial.len() > limits.request_line {
                return Err(ParseError::RequestLineTooLong);
            }
            if !first_line && partial.len() > limits.field_size {
                return Err(ParseError::HeaderFieldTooLong);
            }
            if buf.len() > max_head {
                return Err(ParseError::HeadTooLarge);
            }
            return Ok(None);
        };
        let Some(line) = rest[..lf].strip_suffix(b"\r") else {
            return Err(ParseError::BareLineFeed);
        };
        check_line_bytes(line)?;
        if first_line {
            if line.len() > limits.request_line {
                return Err(ParseError::RequestLineTooLong);
            }
            line_len = line.len();
        } else if line.is_empty() {
            return Ok(Some(HeadScan {
                start,
                line_len,
                fields,
                head_len: pos + lf + 1,
            }));
        } else {
            fields += 1;
            if fields > limits.fields {
                return Err(ParseError::TooManyHeaders);
            }
            if line.len() > limits.field_size {
                return Err(ParseError::HeaderFieldTooLong);
            }
            split_field_line(line)?;
        }
        pos += lf + 1;
    }
}

/// A line's content (CRLF excluded) may hold neither NUL nor CR.
fn check_line_bytes(line: &[u8]) -> Result<(), ParseError> {
    for &b in line {
        match b {
            0 => return Err(ParseError::NulInHead),
            b'\r' => return Err(ParseError::BareCarriageReturn),
            _ => {}
        }
    }
    Ok(())
}

fn parse_request_line(line: &[u8]) -> Result<(&str, &str, Version), ParseError> {
    // Exactly one SP between the three parts: method SP target SP version. Splitting at
    // the first and last SP leaves any stray SP inside the target, where it is refused.
    let (Some(first), Some(last)) = (
        line.iter().position(|&b| b == b' '),
        line.iter().rposition(|&b| b == b' '),
    ) else {
        return Err(ParseError::InvalidRequestLine);
    };
    if first == last || first == 0 || last == first + 1 {
        return Err(ParseError::InvalidRequestLine);
    }
    let method = &line[..first];
    let target = &line[first + 1..last];
    let version = parse_version(&line[last + 1..])?;

    // gunicorn's default: tchars, no lowercase and no '#', 3 to 20 characters.
    let method_ok = (3..=20).contains(&method.len())
        && method
            .iter()
            .all(|&b| is_tchar(b) && !b.is_ascii_lowercase() && b != b'#');
    if !method_ok {
        return Err(ParseError::InvalidMethod);
    }
    check_target(method, target)?;
    // Both are ASCII by now, so these conversions cannot fail; map rather than unwrap.
    let method = std::str::from_utf8(method).map_err(|_| ParseError::InvalidMethod)?;
    let target = std::str::from_utf8(target).map_err(|_| ParseError::InvalidTarget)?;
    Ok((method, target, version))
}

fn parse_version(v: &[u8]) -> Result<Version, ParseError> {
    match v {
        b"HTTP/1.1" => Ok(Version::Http11),
        b"HTTP/1.0" => Ok(Version::Http10),
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            Err(ParseError::UnsupportedVersion)
        }
        _ => Err(ParseError::InvalidVersion),
    }
}

fn target_form_of(t: &[u8]) -> TargetForm {
    if t == b"*" {
        TargetForm::Asterisk
    } else if t.first() == Some(&b'/') {
        TargetForm::Origin
    } else if scheme_len(t).is_some() {
        TargetForm::Absolute
    } else {
        TargetForm::Authority
    }
}

/// Length of a leading `http://` or `https://` (case-insensitive).
fn scheme_len(t: &[u8]) -> Option<usize> {
    for scheme in [&b"http://"[..], b"https://"] {
        if t.len() >= scheme.len() && t[..scheme.len()].eq_ignore_ascii_case(scheme) {
            return Some(scheme.len());
        }
    }
    None
}

fn check_target(method: &[u8], t: &[u8]) -> Result<(), ParseError> {
    // Visible ASCII only: whitespace and CTLs would be read differently by other parsers,
    // and raw non-ASCII is not a URI (clients percent-encode it). A fragment is never
    // part of a request target (RFC 9112 3.2).
    if !t.iter().all(|&b| (b'!'..=b'~').contains(&b) && b != b'#') {
        return Err(ParseError::InvalidTarget);
    }
    let is_connect = method == b"CONNECT";
    match target_form_of(t) {
        TargetForm::Asterisk if method != b"OPTIONS" => {
            Err(ParseError::AsteriskTargetWithoutOptions)
        }
        TargetForm::Asterisk => Ok(()),
        _ if is_connect => {
            if target_form_of(t) == TargetForm::Authority && authority_valid(t, true, true) {
                Ok(())
            } else {
                Err(ParseError::ConnectWithoutAuthority)
            }
        }
        TargetForm::Origin => check_path_query(t),
        TargetForm::Absolute => {
            let rest = &t[scheme_len(t).unwrap_or(0)..];
            let end = rest
                .iter()
                .position(|&b| b == b'/' || b == b'?')
                .unwrap_or(rest.len());
            if !authority_valid(&rest[..end], true, false) {
                return Err(ParseError::InvalidTarget);
            }
            check_path_query(&rest[end..])
        }
        TargetForm::Authority => {
            if authority_valid(t, true, true) {
                Err(ParseError::AuthorityTargetWithoutConnect)
            } else {
                Err(ParseError::InvalidTarget)
            }
        }
    }
}

/// The path is what gets percent-decoded into PATH_INFO, so its escapes must be well
/// formed; the query is handed to the app raw (QUERY_STRING), so a stray `%` there is
/// tolerated as browsers send it.
fn check_path_query(pq: &[u8]) -> Result<(), ParseError> {
    let path_end = pq.iter().position(|&b| b == b'?').unwrap_or(pq.len());
    if percent_escapes_valid(&pq[..path_end]) {
        Ok(())
    } else {
        Err(ParseError::InvalidTarget)
    }
}

/// Lets httparse parse the (already line-checked) head and copies the fields out.
fn parse_fields_with_httparse(head: &[u8], fields: usize) -> Result<Vec<Header>, ParseError> {
    // A stack array covers ordinary requests; only unusually many fields allocate.
    let mut small = [httparse::EMPTY_HEADER; 32];
    let mut large;
    let slots: &mut [httparse::Header] = if fields <= small.len() {
        &mut small
    } else {
        large = vec![httparse::EMPTY_HEADER; fields];
        &mut large
    };
    let mut req = httparse::Request::new(slots);
    match req.parse(head) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        Ok(_) => return Err(ParseError::HeadSyntax("head length disagrees")),
        Err(e) => return Err(map_httparse_error(e)),
    }
    let mut headers = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        headers.push(Header {
            name: h.name.to_owned(),
            value: trim_ows(h.value).to_vec(),
        });
    }
    Ok(headers)
}

fn map_httparse_error(e: httparse::Error) -> ParseError {
    match e {
        httparse::Error::HeaderName => ParseError::InvalidHeaderName,
        httparse::Error::HeaderValue => ParseError::InvalidHeaderValue,
        httparse::Error::NewLine => ParseError::BareLineFeed,
        httparse::Error::Token => ParseError::InvalidMethod,
        httparse::Error::Version => ParseError::InvalidVersion,
        httparse::Error::TooManyHeaders => ParseError::TooManyHeaders,
        httparse::Error::Status => ParseError::HeadSyntax("invalid status"),
    }
}

/// What the fields decide about the message.
struct Framing {
    body: BodyKind,
    keep_alive: bool,
    expect_continue: bool,
}

fn check_fields(headers: &[Header], version: Version) -> Result<Framing, ParseError> {
    let mut hosts = 0;
    let mut content_length = None;
    let mut te_seen = false;
    let mut chunked = false;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut expect_continue = false;

    for h in headers {
        let name = h.name.as_bytes();
        let value = h.value.as_slice();
        if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
            if hosts > 1 {
                return Err(ParseError::DuplicateHost);
            }
            if !authority_valid(value, false, false) {
                return Err(ParseError::InvalidHost);
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            // Even an identical repeat is refused: a peer that joins them as "5, 5" or
            // takes the last one could frame differently (gunicorn refuses it too).
            if content_length.is_some() {
                return Err(ParseError::DuplicateContentLength);
            }
            content_length = Some(parse_content_length(value)?);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // RFC 9112 6.1: a 1.0 message with Transfer-Encoding has unreliable framing,
            // whatever the coding; say so before judging the codings.
            if version == Version::Http10 {
                return Err(ParseError::TransferEncodingOnHttp10);
            }
            te_seen = true;
            for coding in list_elements(value) {
                if coding.eq_ignore_ascii_case(b"chunked") {
                    if chunked {
                        return Err(ParseError::ChunkedRepeated);
                    }
                    chunked = true;
                } else if chunked {
                    // RFC 9112 6.3: chunked must be the final coding of a request.
                    return Err(ParseError::ChunkedNotLast);
                } else if is_token(coding) {
                    return Err(ParseError::UnsupportedTransferCoding);
                } else {
                    return Err(ParseError::InvalidTransferEncoding);
                }
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            close |= list_contains(value, "close");
            keep_alive_token |= list_contains(value, "keep-alive");
        } else if name.eq_ignore_ascii_case(b"expect") {
            expect_continue |= value.eq_ignore_ascii_case(b"100-continue");
        }
    }

    if version == Version::Http11 && hosts == 0 {
        return Err(ParseError::MissingHost);
    }
    let body = if te_seen {
        if !chunked {
            return Err(ParseError::InvalidTransferEncoding);
        }
        // RFC 9112 6.3 lets TE override CL, but a peer that picked CL would desync.
        if content_length.is_some() {
            return Err(ParseError::ContentLengthWithTransferEncoding);
        }
        BodyKind::Chunked
    } else {
        match content_length {
            Some(n) => BodyKind::Length(n),
            None => BodyKind::None,
        }
    };
    let keep_alive = match version {
        Version::Http11 => !close,
        Version::Http10 => keep_alive_token && !close,
    };
    Ok(Framing {
        body,
        keep_alive,
        expect_continue: expect_continue && version == Version::Http11,
    })
}

/// `1*DIGIT` and nothing else: no sign, no spaces inside, no list, no overflow.
fn parse_content_length(value: &[u8]) -> Result<u64, ParseError> {
    if value.is_empty() {
        return Err(ParseError::InvalidContentLength);
    }
    let mut n: u64 = 0;
    for &b in value {
        if !b.is_ascii_digit() {
            return Err(ParseError::InvalidContentLength);
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or(ParseError::InvalidContentLength)?;
    }
    Ok(n)
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
