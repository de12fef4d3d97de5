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
pub(crate) enum FieldLine<'b> {
    /// `name: value` (value OWS-trimmed) and the offset just past its CRLF.
    Field(&'b [u8], &'b [u8], usize),
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
) -> Result<FieldLine<'_>, ParseError> {
    let end = buf.len().min(cap);
    let mut i = start;
    while i < end && is_tchar(buf[i]) {
        i += 1;
    }
    let name = &buf[start..i];
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
    while i < end && is_field_value_byte(buf[i]) {
        i += 1;
    }
    let Some(&c) = buf.get(i) else {
        return Ok(FieldLine::Incomplete);
    };
    match c {
        b'\r' | b'\n' => Ok(match line_end(buf, i)? {
            None => FieldLine::Incomplete,
            Some(next) => FieldLine::Field(name, trim_ows(&buf[value_start..i]), next),
        }),
        _ if i >= cap => Err(too_long),
        0 => Err(ParseError::NulInHead),
        _ => Err(ParseError::InvalidHeaderValue),
    }
}

/// Whitespace after a field name: the line is bad either way; say why once its colon
/// (or its end) shows.
fn whitespace_after_name(
    buf: &[u8],
    mut i: usize,
    end: usize,
) -> Result<FieldLine<'_>, ParseError> {
    while i < end && !matches!(buf[i], b':' | b'\r' | b'\n') {
        i += 1;
    }
    match buf.get(i) {
        Some(b':') => Err(ParseError::WhitespaceBeforeColon),
        Some(_) => Err(ParseError::InvalidHeaderName),
        None => Ok(FieldLine::Incomplete),
    }
}

/// Finds the CRLF of a request or status line starting at `buf[start]`: its content
/// length, `None` while it has not arrived. Positional like field lines: NUL, a bare CR
/// or LF, or a byte past `max` content bytes (`too_long`), whichever comes first, decides.
pub(crate) fn scan_start_line(
    buf: &[u8],
    start: usize,
    max: usize,
    too_long: ParseError,
) -> Result<Option<usize>, ParseError> {
    let cap = start.saturating_add(max);
    let end = buf.len().min(cap);
    let mut i = start;
    while i < end && !matches!(buf[i], b'\r' | b'\n' | 0) {
        i += 1;
    }
    let Some(&c) = buf.get(i) else {
        return Ok(None);
    };
    match c {
        b'\r' | b'\n' => Ok(line_end(buf, i)?.map(|_| i - start)),
        _ if i >= cap => Err(too_long),
        _ => Err(ParseError::NulInHead),
    }
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
    const EMPTY: Field<'static> = Field {
        name: "",
        value: b"",
    };

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

/// Fields kept in place up to this many; more spill to one heap allocation.
const INLINE_FIELDS: usize = 24;

/// The fields of one head, in order, borrowed from its buffer. Parsing a head with up to
/// 24 fields allocates nothing.
#[derive(Clone)]
pub struct Fields<'b> {
    len: usize,
    inline: [Field<'b>; INLINE_FIELDS],
    spill: Vec<Field<'b>>,
}

impl<'b> Fields<'b> {
    pub(crate) fn new() -> Fields<'b> {
        Fields {
            len: 0,
            inline: [Field::EMPTY; INLINE_FIELDS],
            spill: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, field: Field<'b>) {
        if self.len < INLINE_FIELDS {
            self.inline[self.len] = field;
        } else {
            if self.spill.is_empty() {
                self.spill.reserve(self.len * 2);
                self.spill.extend_from_slice(&self.inline);
            }
            self.spill.push(field);
        }
        self.len += 1;
    }

    pub fn as_slice(&self) -> &[Field<'b>] {
        if self.len <= INLINE_FIELDS {
            &self.inline[..self.len]
        } else {
            &self.spill
        }
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Field<'b>> {
        self.as_slice().iter()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value of the first field named `name` (ASCII case-insensitive).
    pub fn get(&self, name: &str) -> Option<&'b [u8]> {
        self.iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
            .map(|f| f.value)
    }

    /// The values of every field named `name`, in order received.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'b [u8]> + 'a {
        self.iter()
            .filter(move |f| f.name.eq_ignore_ascii_case(name))
            .map(|f| f.value)
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

impl<'a, 'b> IntoIterator for &'a Fields<'b> {
    type Item = &'a Field<'b>;
    type IntoIter = std::slice::Iter<'a, Field<'b>>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl std::fmt::Debug for Fields<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq for Fields<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Fields<'_> {}

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

    fn scan(line: &[u8]) -> Result<FieldLine<'_>, ParseError> {
        scan_field_line(line, 0, 64, ParseError::HeaderFieldTooLong)
    }

    #[test]
    fn field_line_rules() {
        assert_eq!(
            scan(b"Host: a \r\n"),
            Ok(FieldLine::Field(b"Host", b"a", 10))
        );
        assert_eq!(scan(b"X:\r\n"), Ok(FieldLine::Field(b"X", b"", 4)));
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
            Ok(FieldLine::Field(..))
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
        fn cap(line: &[u8], cap: usize) -> Result<FieldLine<'_>, ParseError> {
            scan_field_line(line, 0, cap, ParseError::HeadTooLarge)
        }
        assert!(matches!(cap(b"X: ab\r\n", 5), Ok(FieldLine::Field(..))));
        assert_eq!(cap(b"X: abc\r\n", 5), Err(ParseError::HeadTooLarge));
        assert_eq!(cap(b"X: ab\0", 5), Err(ParseError::HeadTooLarge));
        assert_eq!(cap(b"X: a\0", 5), Err(ParseError::NulInHead));
        assert_eq!(cap(b"X: ab", 5), Ok(FieldLine::Incomplete));
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
        let mut fields = Fields::new();
        for name in &names {
            fields.push(Field { name, value: b"v" });
        }
        assert_eq!(fields.len(), 40);
        assert_eq!(fields.iter().map(|f| f.name).collect::<Vec<_>>(), names);
        assert_eq!(fields.get("x-39"), Some(&b"v"[..]));
    }
}
