//! Field lines, shared by request heads ([`crate::request`]), response heads
//! ([`crate::response`]) and chunked trailers ([`crate::chunked`]): the byte grammar
//! (tokens, field values, OWS, comma lists), the one scanner that checks each byte of a
//! field line once, the borrowed [`Fields`] of a parsed head, and which fields are
//! hop-by-hop. Request targets and authorities live in [`crate::target`].

use crate::ParseError;

/// Byte classes, looked up once per byte by the scanners.
const TCHAR: u8 = 1;
const VALUE: u8 = 2;
const TARGET: u8 = 4;
const REG_NAME: u8 = 8;

const fn classes() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let mut class = 0;
        // RFC 9110 5.6.2 tchar.
        if b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            )
        {
            class |= TCHAR;
        }
        // Field value: HTAB, SP, VCHAR and obs-text. Every other control (NUL, CR, LF,
        // DEL...) is refused: RFC 9110 5.5 lets a recipient reject them, and a proxy that
        // strips or rewrites them would frame differently than we do.
        if b == b'\t' || (b >= b' ' && b != 0x7f) {
            class |= VALUE;
        }
        // Request target: visible ASCII except `#` (a fragment is never sent).
        if b >= b'!' && b <= b'~' && b != b'#' {
            class |= TARGET;
        }
        // RFC 3986 reg-name: unreserved, pct-encoded (its `%`) and sub-delims.
        if b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
            )
        {
            class |= REG_NAME;
        }
        table[i] = class;
        i += 1;
    }
    table
}

static CLASSES: [u8; 256] = classes();

/// RFC 9110 5.6.2 `tchar`.
pub(crate) fn is_tchar(b: u8) -> bool {
    CLASSES[usize::from(b)] & TCHAR != 0
}

/// A non-empty run of `tchar`.
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// A byte a field value may hold.
pub(crate) fn is_field_value_byte(b: u8) -> bool {
    CLASSES[usize::from(b)] & VALUE != 0
}

/// A byte a request target may hold.
pub(crate) fn is_target_byte(b: u8) -> bool {
    CLASSES[usize::from(b)] & TARGET != 0
}

/// A byte a URI reg-name (a host name) may hold.
pub(crate) fn is_reg_name_byte(b: u8) -> bool {
    CLASSES[usize::from(b)] & REG_NAME != 0
}

/// Strips optional whitespace (SP / HTAB) from both ends.
pub fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Elements of a comma-separated list value, OWS-trimmed. Empty elements are yielded
/// (as empty slices) so callers decide whether `a,,b` is acceptable.
pub fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim_ows)
}

/// Whether the list `value` contains the token `token` (ASCII case-insensitive).
pub fn list_contains(value: &[u8], token: &str) -> bool {
    list_elements(value).any(|e| e.eq_ignore_ascii_case(token.as_bytes()))
}

/// One scanned field line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FieldLine {
    /// Where `name` and the (OWS-trimmed) value lie, and the offset past the CRLF.
    Field {
        name: std::ops::Range<usize>,
        value: std::ops::Range<usize>,
        next: usize,
    },
    /// The empty line that ends a block of fields, and the offset past it.
    End(usize),
    /// The line is not complete yet, and nothing in it so far is wrong.
    Incomplete,
}

/// Scans the field line that starts at `buf[start]`, checking every byte once, and
/// refusing everything RFC 9112 5 lets a server refuse (obs-fold, whitespace before the
/// colon, controls in the value, bare CR or LF). Its content (CRLF excluded) must end
/// before the absolute offset `cap`, else `too_long`.
///
/// Errors are positional: the first offending byte decides, and a byte past `cap` is
/// offending. So a head fed a byte at a time meets the same error as the whole head.
pub(crate) fn scan_field_line(
    buf: &[u8],
    start: usize,
    cap: usize,
    too_long: ParseError,
) -> Result<FieldLine, ParseError> {
    let end = buf.len().min(cap);
    let mut i = start;
    while i < end && is_tchar(buf[i]) {
        i += 1;
    }
    let name = start..i;
    let Some(&c) = buf.get(i) else {
        return Ok(FieldLine::Incomplete);
    };
    match c {
        b'\r' | b'\n' => {
            return match line_end(buf, i)? {
                None => Ok(FieldLine::Incomplete),
                Some(next) if name.is_empty() => Ok(FieldLine::End(next)),
                Some(_) => Err(ParseError::HeaderWithoutColon),
            }
        }
        _ if i >= cap => return Err(too_long),
        b':' if name.is_empty() => return Err(ParseError::EmptyHeaderName),
        b':' => {}
        // A line starting with whitespace continues the previous field (obs-fold): RFC
        // 9112 5.2 allows rejecting it, and gunicorn 22+ does by default.
        b' ' | b'\t' if name.is_empty() => return Err(ParseError::ObsoleteLineFolding),
        // `Transfer-Encoding : chunked` is the classic desync: some peers trim, some do not.
        b' ' | b'\t' => return whitespace_after_name(buf, i, end),
        0 => return Err(ParseError::NulInHead),
        _ => return Err(ParseError::InvalidHeaderName),
    }
    i += 1;
    while i < end && matches!(buf[i], b' ' | b'\t') {
        i += 1;
    }
    let value_start = i;
    i = skip_plain(buf, i, end);
    while i < end && is_field_value_byte(buf[i]) {
        i += 1;
    }
    let Some(&c) = buf.get(i) else {
        return Ok(FieldLine::Incomplete);
    };
    match c {
        b'\r' | b'\n' => Ok(match line_end(buf, i)? {
            None => FieldLine::Incomplete,
            Some(next) => {
                let mut value_end = i;
                while value_end > value_start && matches!(buf[value_end - 1], b' ' | b'\t') {
                    value_end -= 1;
                }
                FieldLine::Field {
                    name,
                    value: value_start..value_end,
                    next,
                }
            }
        }),
        _ if i >= cap => Err(too_long),
        0 => Err(ParseError::NulInHead),
        _ => Err(ParseError::InvalidHeaderValue),
    }
}

/// Whitespace after a field name: the line is bad either way; say why once its colon
/// (or its end) shows.
fn whitespace_after_name(buf: &[u8], mut i: usize, end: usize) -> Result<FieldLine, ParseError> {
    while i < end && !matches!(buf[i], b':' | b'\r' | b'\n') {
        i += 1;
    }
    match buf.get(i) {
        Some(b':') => Err(ParseError::WhitespaceBeforeColon),
        Some(_) => Err(ParseError::InvalidHeaderName),
        None => Ok(FieldLine::Incomplete),
    }
}

/// Skips, eight at a time, bytes that are neither controls nor DEL (so SP, VCHAR and
/// obs-text), up to `end`: where most of a head's bytes go. Returns where a byte-by-byte
/// loop must take over (at the latest 8 bytes before the first byte it stops at).
fn skip_plain(buf: &[u8], mut i: usize, end: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while i + 8 <= end {
        let Ok(word) = <[u8; 8]>::try_from(&buf[i..i + 8]) else {
            break;
        };
        let word = u64::from_le_bytes(word);
        // Some byte is below 0x20 (any control, HTAB included: the byte loop judges it),
        // or some byte is 0x7f. Both tests are exact about whether such a byte exists.
        let control = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
        let del = word ^ (ONES * 0x7f);
        let del = del.wrapping_sub(ONES) & !del & HIGH;
        if control | del != 0 {
            break;
        }
        i += 8;
    }
    i
}

/// At a CR or LF: the offset past a CRLF, `None` when the LF has not arrived yet.
pub(crate) fn line_end(buf: &[u8], i: usize) -> Result<Option<usize>, ParseError> {
    match (buf[i], buf.get(i + 1)) {
        (b'\n', _) => Err(ParseError::BareLineFeed),
        (_, None) => Ok(None),
        (_, Some(b'\n')) => Ok(Some(i + 2)),
        (_, Some(_)) => Err(ParseError::BareCarriageReturn),
    }
}

/// One field of a parsed head, borrowed from the buffer it was parsed from. The name is a
/// token (so ASCII) with its case as sent; the value is OWS-trimmed bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'b> {
    pub name: &'b str,
    pub value: &'b [u8],
}

impl Field<'_> {
    /// The value as text, when it is UTF-8 (header values usually are ASCII).
    pub fn value_str(&self) -> Option<&str> {
        std::str::from_utf8(self.value).ok()
    }
}

/// An owned field: what outlives the buffer it came from (chunked trailers, which arrive
/// over several reads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: Vec<u8>,
}

/// Where one field lies in its buffer: four offsets instead of two fat pointers, so a
/// head with its fields in place stays small to move.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Span {
    name: u32,
    name_len: u32,
    value: u32,
    value_len: u32,
}

/// Fields kept in place up to this many; more spill to one heap allocation.
const INLINE_FIELDS: usize = 24;

/// The fields of one head, in order, borrowed from its buffer. Parsing a head with up to
/// 24 fields allocates nothing.
#[derive(Clone)]
pub struct Fields<'b> {
    buf: &'b [u8],
    len: usize,
    inline: [Span; INLINE_FIELDS],
    spill: Vec<Span>,
}

impl<'b> Fields<'b> {
    /// Fields that will be pushed from `buf` (heads are far below 4 GiB: the limits
    /// bound them to a few MiB).
    pub(crate) fn new(buf: &'b [u8]) -> Fields<'b> {
        Fields {
            buf,
            len: 0,
            inline: [Span::default(); INLINE_FIELDS],
            spill: Vec::new(),
        }
    }

    /// Adds the field whose name is `buf[name]` and value `buf[value]`; the name must
    /// be a token (checked by the scanner).
    pub(crate) fn push(&mut self, name: std::ops::Range<usize>, value: std::ops::Range<usize>) {
        let offset = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let span = Span {
            name: offset(name.start),
            name_len: offset(name.len()),
            value: offset(value.start),
            value_len: offset(value.len()),
        };
        if self.len < INLINE_FIELDS {
            self.inline[self.len] = span;
        } else {
            if self.spill.is_empty() {
                self.spill.reserve(self.len * 2);
                self.spill.extend_from_slice(&self.inline);
            }
            self.spill.push(span);
        }
        self.len += 1;
    }

    fn spans(&self) -> &[Span] {
        if self.len <= INLINE_FIELDS {
            &self.inline[..self.len]
        } else {
            &self.spill
        }
    }

    fn field(&self, span: &Span) -> Field<'b> {
        let buf = self.buf;
        let slice = |start: u32, len: u32| {
            let start = start as usize;
            buf.get(start..start + len as usize).unwrap_or_default()
        };
        Field {
            name: ascii_str(slice(span.name, span.name_len)),
            value: slice(span.value, span.value_len),
        }
    }

    /// The fields in order received.
    pub fn iter(&self) -> impl Iterator<Item = Field<'b>> + '_ {
        self.spans().iter().map(|span| self.field(span))
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value of the first field named `name` (ASCII case-insensitive).
    pub fn get(&self, name: &str) -> Option<&'b [u8]> {
        self.get_all(name).next()
    }

    /// The values of every field named `name`, in order received.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'b [u8]> + 'a {
        let buf = self.buf;
        let slice = move |start: u32, len: u32| {
            let start = start as usize;
            buf.get(start..start + len as usize).unwrap_or_default()
        };
        self.spans()
            .iter()
            .filter(move |span| {
                span.name_len as usize == name.len()
                    && slice(span.name, span.name_len).eq_ignore_ascii_case(name.as_bytes())
            })
            .map(move |span| slice(span.value, span.value_len))
    }

    /// Whether a `Connection` field lists `name`: such a field is hop-by-hop too
    /// (RFC 9110 7.6.1), and a proxy must not forward it.
    pub fn connection_lists(&self, name: &str) -> bool {
        self.get_all("connection")
            .any(|value| list_contains(value, name))
    }

    /// Whether a proxy must drop `name` when forwarding this message: hop-by-hop by
    /// definition, or named in its `Connection` field.
    pub fn is_hop_by_hop(&self, name: &str) -> bool {
        is_hop_by_hop(name) || self.connection_lists(name)
    }
}

impl std::fmt::Debug for Fields<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq for Fields<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Fields<'_> {}

/// Bytes the scanners have checked to be ASCII (tokens, targets, request lines), as
/// text, without the cost of a UTF-8 validation call per slice. Not ASCII (which the
/// scanners never let through) gives "".
pub(crate) fn ascii_str(bytes: &[u8]) -> &str {
    if bytes.is_ascii() {
        // SAFETY: ASCII is valid UTF-8, and `is_ascii` has just checked every byte.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    } else {
        ""
    }
}

/// Fields that describe one connection, never the message (RFC 9110 7.6.1, plus the
/// proxy authentication pair of 11.7): an app may not set them, a proxy does not forward
/// them. `Content-Length` is not among them; see [`is_framing_field`].
pub const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether `name` is one of [`HOP_BY_HOP`] (ASCII case-insensitive).
pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// `Content-Length` and `Transfer-Encoding`: whoever re-frames a message (the front, the
/// worker's response writer) states these itself and drops the ones it received.
pub fn is_framing_field(name: &str) -> bool {
    name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("transfer-encoding")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(line: &[u8]) -> Result<FieldLine, ParseError> {
        scan_field_line(line, 0, 64, ParseError::HeaderFieldTooLong)
    }

    #[test]
    fn field_line_rules() {
        assert_eq!(
            scan(b"Host: a \r\n"),
            Ok(FieldLine::Field {
                name: 0..4,
                value: 6..7,
                next: 10
            })
        );
        assert_eq!(
            scan(b"X:\r\n"),
            Ok(FieldLine::Field {
                name: 0..1,
                value: 2..2,
                next: 4
            })
        );
        assert_eq!(scan(b"\r\n"), Ok(FieldLine::End(2)));
        assert_eq!(scan(b" X: a\r\n"), Err(ParseError::ObsoleteLineFolding));
        assert_eq!(scan(b"X a\r\n"), Err(ParseError::InvalidHeaderName));
        assert_eq!(scan(b"Xa\r\n"), Err(ParseError::HeaderWithoutColon));
        assert_eq!(scan(b": a\r\n"), Err(ParseError::EmptyHeaderName));
        assert_eq!(scan(b"X : a\r\n"), Err(ParseError::WhitespaceBeforeColon));
        assert_eq!(scan(b"X Y: a\r\n"), Err(ParseError::WhitespaceBeforeColon));
        assert_eq!(scan(b"X: a\x01b\r\n"), Err(ParseError::InvalidHeaderValue));
        assert_eq!(scan(b"X: a\x7f\r\n"), Err(ParseError::InvalidHeaderValue));
        assert_eq!(scan(b"X: a\0\r\n"), Err(ParseError::NulInHead));
        assert_eq!(scan(b"X: a\n"), Err(ParseError::BareLineFeed));
        assert_eq!(scan(b"X: a\rb\r\n"), Err(ParseError::BareCarriageReturn));
        assert!(matches!(
            scan(b"X: caf\xc3\xa9\tok\r\n"),
            Ok(FieldLine::Field { .. })
        ));
    }

    #[test]
    fn incomplete_lines_and_the_cap() {
        for partial in [
            &b"Ho"[..],
            b"Host",
            b"Host:",
            b"Host: a",
            b"Host: a\r",
            b"X ",
            b"\r",
        ] {
            assert_eq!(scan(partial), Ok(FieldLine::Incomplete), "{partial:?}");
        }
        // Content may end exactly at the cap; one byte more is too long, whatever it is.
        fn cap(line: &[u8], cap: usize) -> Result<FieldLine, ParseError> {
            scan_field_line(line, 0, cap, ParseError::HeadTooLarge)
        }
        assert!(matches!(cap(b"X: ab\r\n", 5), Ok(FieldLine::Field { .. })));
        assert_eq!(cap(b"X: abc\r\n", 5), Err(ParseError::HeadTooLarge));
        assert_eq!(cap(b"X: ab\0", 5), Err(ParseError::HeadTooLarge));
        assert_eq!(cap(b"X: a\0", 5), Err(ParseError::NulInHead));
        assert_eq!(cap(b"X: ab", 5), Ok(FieldLine::Incomplete));
    }

    #[test]
    fn skip_plain_stops_before_every_control_and_del() {
        let mut line = vec![b'a'; 40];
        assert_eq!(skip_plain(&line, 0, 40), 40);
        for bad in [0u8, b'\t', b'\r', b'\n', 0x1f, 0x7f] {
            for at in 0..40 {
                line[at] = bad;
                let stop = skip_plain(&line, 0, 40);
                assert!(
                    stop <= at && at - stop < 8,
                    "{bad:#x} at {at}: stopped at {stop}"
                );
                line[at] = b'a';
            }
        }
        let high = vec![0xe9u8; 24];
        assert_eq!(skip_plain(&high, 0, 24), 24);
    }

    #[test]
    fn lists_and_hop_by_hop() {
        let v: Vec<&[u8]> = list_elements(b" a , b,,").collect();
        assert_eq!(v, vec![&b"a"[..], b"b", b"", b""]);
        assert!(list_contains(b"keep-alive, Close", "close"));
        assert!(is_hop_by_hop("Transfer-Encoding") && is_hop_by_hop("trailer"));
        assert!(!is_hop_by_hop("content-length") && is_framing_field("Content-Length"));
    }

    #[test]
    fn fields_spill_past_the_inline_array() {
        let names: Vec<String> = (0..40).map(|i| format!("X-{i}")).collect();
        let mut buf = Vec::new();
        let mut ranges = Vec::new();
        for name in &names {
            let start = buf.len();
            buf.extend_from_slice(name.as_bytes());
            ranges.push((start..buf.len(), buf.len()..buf.len() + 1));
            buf.push(b'v');
        }
        let mut fields = Fields::new(&buf);
        for (name, value) in ranges {
            fields.push(name, value);
        }
        assert_eq!(fields.len(), 40);
        assert_eq!(fields.iter().map(|f| f.name).collect::<Vec<_>>(), names);
        assert_eq!(fields.get("x-39"), Some(&b"v"[..]));
    }
}
