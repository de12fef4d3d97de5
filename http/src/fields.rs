//! Byte-level grammar shared by the head parser ([`super::parse`]) and the chunked
//! decoder ([`super::chunked`]): token characters, OWS trimming, comma lists and the
//! strict checks of one field line, so header fields and trailer fields obey the same rules.

use crate::ParseError;

/// RFC 9110 5.6.2 `tchar`.
pub(crate) fn is_tchar(b: u8) -> bool {
    matches!(b,
        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9'
        | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+'
        | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~')
}

/// A non-empty run of `tchar`.
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// Bytes allowed in a field value: HTAB, visible ASCII, SP and obs-text. Every other
/// control (NUL, CR, LF, DEL, ...) is refused: RFC 9110 5.5 lets a recipient reject them,
/// and a proxy that strips or rewrites them would frame differently than we do.
pub(crate) fn is_field_value_byte(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

/// Strips optional whitespace (SP / HTAB) from both ends.
pub(crate) fn trim_ows(mut s: &[u8]) -> &[u8] {
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
pub(crate) fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim_ows)
}

/// Whether `s` contains the token `token` as a list element (ASCII case-insensitive).
pub(crate) fn list_contains(value: &[u8], token: &str) -> bool {
    list_elements(value).any(|e| e.eq_ignore_ascii_case(token.as_bytes()))
}

/// Splits one field line (without its CRLF) into name and OWS-trimmed value, refusing
/// everything RFC 9112 5 lets a server refuse. Used for header fields and trailer fields.
pub(crate) fn split_field_line(line: &[u8]) -> Result<(&[u8], &[u8]), ParseError> {
    // A line starting with whitespace continues the previous field (obs-fold): RFC 9112
    // 5.2 allows rejecting it, and gunicorn 22+ does by default.
    if let Some(b' ' | b'\t') = line.first() {
        return Err(ParseError::ObsoleteLineFolding);
    }
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(ParseError::HeaderWithoutColon)?;
    let (name, rest) = line.split_at(colon);
    if name.is_empty() {
        return Err(ParseError::EmptyHeaderName);
    }
    // `Transfer-Encoding : chunked` is the classic desync: some peers trim, some do not.
    if let Some(b' ' | b'\t') = name.last() {
        return Err(ParseError::WhitespaceBeforeColon);
    }
    if !is_token(name) {
        return Err(ParseError::InvalidHeaderName);
    }
    let value = trim_ows(&rest[1..]);
    if !value.iter().all(|&b| is_field_value_byte(b)) {
        return Err(ParseError::InvalidHeaderValue);
    }
    Ok((name, value))
}

pub(crate) fn is_hex(b: u8) -> bool {
    b.is_ascii_hexdigit()
}

/// Every `%` in `s` starts a `%XX` escape.
pub(crate) fn percent_escapes_valid(s: &[u8]) -> bool {
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            match s.get(i + 1..i + 3) {
                Some([a, b]) if is_hex(*a) && is_hex(*b) => i += 3,
                _ => return false,
            }
        } else {
            i += 1;
        }
    }
    true
}

/// RFC 3986 `authority` without userinfo: `host [":" port]`, where host is a reg-name
/// (unreserved / pct-encoded / sub-delims), an IPv4 address (a reg-name syntactically) or
/// a bracketed IP literal. `require_host` / `require_port` tighten it for absolute-form and
/// CONNECT targets; a Host header may be empty (RFC 9112 3.2).
pub(crate) fn authority_valid(s: &[u8], require_host: bool, require_port: bool) -> bool {
    let (host, port) = if let Some(rest) = s.strip_prefix(b"[") {
        let Some(close) = rest.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &rest[..close];
        let literal_ok = !literal.is_empty()
            && literal
                .iter()
                .all(|&b| is_hex(b) || matches!(b, b':' | b'.' | b'v' | b'V'));
        if !literal_ok {
            return false;
        }
        match &rest[close + 1..] {
            [] => (s, None),
            [b':', port @ ..] => (s, Some(port)),
            _ => return false,
        }
    } else {
        match s.iter().position(|&b| b == b':') {
            Some(i) => (&s[..i], Some(&s[i + 1..])),
            None => (s, None),
        }
    };
    let reg_name_ok = host.first() == Some(&b'[')
        || (host.iter().all(|&b| {
            b.is_ascii_alphanumeric()
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
        }) && percent_escapes_valid(host));
    if !reg_name_ok || (require_host && host.is_empty()) {
        return false;
    }
    match port {
        None => !require_port,
        Some(p) => {
            p.iter().all(u8::is_ascii_digit) && (!require_port || !p.is_empty()) && p.len() <= 5
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_line_rules() {
        assert_eq!(split_field_line(b"Host: a "), Ok((&b"Host"[..], &b"a"[..])));
        assert_eq!(split_field_line(b"X:"), Ok((&b"X"[..], &b""[..])));
        assert_eq!(
            split_field_line(b" X: a"),
            Err(ParseError::ObsoleteLineFolding)
        );
        assert_eq!(
            split_field_line(b"X a"),
            Err(ParseError::HeaderWithoutColon)
        );
        assert_eq!(split_field_line(b": a"), Err(ParseError::EmptyHeaderName));
        assert_eq!(
            split_field_line(b"X : a"),
            Err(ParseError::WhitespaceBeforeColon)
        );
        assert_eq!(
            split_field_line(b"X Y: a"),
            Err(ParseError::InvalidHeaderName)
        );
        assert_eq!(
            split_field_line(b"X: a\x01b"),
            Err(ParseError::InvalidHeaderValue)
        );
        assert_eq!(
            split_field_line(b"X: a\x7f"),
            Err(ParseError::InvalidHeaderValue)
        );
        assert!(split_field_line(b"X: caf\xc3\xa9\tok").is_ok());
    }

    #[test]
    fn authority_rules() {
        assert!(authority_valid(b"example.com", true, false));
        assert!(authority_valid(b"example.com:8080", true, false));
        assert!(authority_valid(b"[::1]:443", true, true));
        assert!(authority_valid(b"", false, false));
        assert!(!authority_valid(b"", true, false));
        assert!(!authority_valid(b"a b", false, false));
        assert!(!authority_valid(b"user@host", false, false));
        assert!(!authority_valid(b"host:x", false, false));
        assert!(!authority_valid(b"host", true, true));
        assert!(!authority_valid(b"a/b", false, false));
        assert!(!authority_valid(b"[::1", false, false));
    }

    #[test]
    fn lists_and_escapes() {
        let v: Vec<&[u8]> = list_elements(b" a , b,,").collect();
        assert_eq!(v, vec![&b"a"[..], b"b", b"", b""]);
        assert!(list_contains(b"keep-alive, Close", "close"));
        assert!(percent_escapes_valid(b"/a%20b"));
        assert!(!percent_escapes_valid(b"/a%2"));
        assert!(!percent_escapes_valid(b"/a%zz"));
    }
}
