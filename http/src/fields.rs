//! Field lines, shared by request heads ([`crate::request`]), response heads
//! ([`crate::response`]) and chunked trailers ([`crate::chunked`]), all three tokenised by
//! httparse: the byte classes our own rules need (tokens, targets, host names), comma
//! lists, the borrowed [`Fields`] of a parsed head, and which fields are hop-by-hop.
//! Request targets and authorities live in [`crate::target`].

/// Byte classes, looked up once per byte by our own checks.
const TCHAR: u8 = 1;
const TARGET: u8 = 2;
const REG_NAME: u8 = 4;

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
    /// be a token (httparse has checked it).
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

/// Bytes checked to be ASCII (targets, request lines), as text, without the cost of a
/// UTF-8 validation call per slice. Not ASCII (which the checks never let through)
/// gives "".
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
