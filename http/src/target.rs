//! The request target, decoded once by RFC 9112 3.2 into its parts, and the authority
//! grammar it shares with the Host field. Every consumer (the worker's environ and access
//! log, the front's forwarded head and redirects) reads these parts instead of splitting
//! the raw target itself. Percent-decoding the path is the app interface's business (the
//! worker's environ does it for PATH_INFO); here escapes are only checked.

use crate::fields::{ascii_str, is_reg_name_byte, is_target_byte};
use crate::ParseError;

/// The four request-target forms of RFC 9112 3.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetForm {
    /// `/path?query`
    Origin,
    /// `http://host/path?query` (what a forward proxy receives; servers must accept it)
    Absolute,
    /// `host:port`, CONNECT only (which this server refuses, so no parsed request has it)
    Authority,
    /// `*`, OPTIONS only
    Asterisk,
}

/// A validated request target and its parts, borrowed from the request line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'b> {
    raw: &'b str,
    form: TargetForm,
    authority: Option<&'b str>,
    path: &'b str,
    query: Option<&'b str>,
}

impl<'b> Target<'b> {
    /// Validates `raw` as the target of a `method` request: visible ASCII, no fragment,
    /// the form the method allows, well-formed `%XX` escapes in the path, and for the
    /// absolute form an authority without userinfo.
    pub fn parse(method: &str, raw: &'b [u8]) -> Result<Target<'b>, ParseError> {
        let query_at = scan_target(raw)?;
        let raw = ascii_str(raw);
        let (before_query, query) = match query_at {
            Some(q) => (&raw[..q], Some(&raw[q + 1..])),
            None => (raw, None),
        };
        if raw == "*" {
            if method != "OPTIONS" {
                return Err(ParseError::AsteriskTargetWithoutOptions);
            }
            return Ok(Target {
                raw,
                form: TargetForm::Asterisk,
                authority: None,
                path: "*",
                query: None,
            });
        }
        if raw.starts_with('/') {
            return Ok(Target {
                raw,
                form: TargetForm::Origin,
                authority: None,
                path: before_query,
                query,
            });
        }
        if let Some(scheme) = scheme_len(raw) {
            let rest = &before_query[scheme..];
            let end = rest.find('/').unwrap_or(rest.len());
            let authority = &rest[..end];
            if !authority_valid(authority.as_bytes(), true, false) {
                return Err(ParseError::InvalidTarget);
            }
            let path = &rest[end..];
            return Ok(Target {
                raw,
                form: TargetForm::Absolute,
                authority: Some(authority),
                // An empty path is the root (RFC 9110 4.2.3): `http://h?x` asks for `/?x`.
                path: if path.is_empty() { "/" } else { path },
                query,
            });
        }
        if authority_valid(raw.as_bytes(), true, true) {
            Err(ParseError::AuthorityTargetWithoutConnect)
        } else {
            Err(ParseError::InvalidTarget)
        }
    }

    /// The target exactly as received (RAW_URI, the access log's request line).
    pub fn raw(&self) -> &'b str {
        self.raw
    }

    pub fn form(&self) -> TargetForm {
        self.form
    }

    /// `host[:port]` of an absolute-form target: it, not the Host field, names the
    /// server the request is for (RFC 9112 3.2.2).
    pub fn authority(&self) -> Option<&'b str> {
        self.authority
    }

    /// The path, still percent-encoded: `/` for an absolute form without one, `*` for
    /// the asterisk form.
    pub fn path(&self) -> &'b str {
        self.path
    }

    /// The query without its `?`, still encoded ("" when there is none).
    pub fn query(&self) -> &'b str {
        self.query.unwrap_or("")
    }

    /// Whether the target had a `?` (possibly followed by nothing).
    pub fn has_query(&self) -> bool {
        self.query.is_some()
    }

    /// Appends the origin form (`path[?query]`) a proxy forwards to an origin server,
    /// whatever form was received (RFC 9112 3.2.1); `*` stays `*`.
    pub fn write_origin_form(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.path.as_bytes());
        if let Some(query) = self.query {
            out.push(b'?');
            out.extend_from_slice(query.as_bytes());
        }
    }
}

/// One pass over a target: every byte visible ASCII but `#`, every `%` before the query
/// a `%XX` escape. Returns where the `?` is. The path is what gets percent-decoded into
/// PATH_INFO, so its escapes must be well formed (an absolute form's authority is checked
/// again on its own); the query is handed to the app raw, so a stray `%` there is
/// tolerated as browsers send it.
fn scan_target(raw: &[u8]) -> Result<Option<usize>, ParseError> {
    if raw.is_empty() {
        return Err(ParseError::InvalidTarget);
    }
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'?' => {
                return if raw[i..].iter().all(|&b| is_target_byte(b)) {
                    Ok(Some(i))
                } else {
                    Err(ParseError::InvalidTarget)
                }
            }
            b'%' => match raw.get(i + 1..i + 3) {
                Some([h, l]) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => i += 3,
                _ => return Err(ParseError::InvalidTarget),
            },
            b if is_target_byte(b) => i += 1,
            _ => return Err(ParseError::InvalidTarget),
        }
    }
    Ok(None)
}

/// Length of a leading `http://` or `https://` (case-insensitive).
fn scheme_len(t: &str) -> Option<usize> {
    ["http://", "https://"].into_iter().find_map(|scheme| {
        t.get(..scheme.len())
            .filter(|s| s.eq_ignore_ascii_case(scheme))
            .map(|_| scheme.len())
    })
}

/// Every `%` in `s` starts a `%XX` escape.
pub(crate) fn percent_escapes_valid(s: &[u8]) -> bool {
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            match s.get(i + 1..i + 3) {
                Some([a, b]) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() => i += 3,
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
                .all(|&b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.' | b'v' | b'V'));
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
        || (host.iter().all(|&b| is_reg_name_byte(b))
            && (!host.contains(&b'%') || percent_escapes_valid(host)));
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

/// `host`, `host:port`, `[v6]:port` → (host, port). The brackets of an IP literal are
/// kept in `host` (`[::1]`), as a URL or a `Location` needs them; an empty port (`h:`)
/// is no port.
pub fn split_authority(authority: &str) -> (&str, Option<&str>) {
    if authority.starts_with('[') {
        if let Some(close) = authority.find(']') {
            let port = authority[close + 1..]
                .strip_prefix(':')
                .filter(|p| !p.is_empty());
            return (&authority[..=close], port);
        }
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => {
            (host, Some(port).filter(|p| !p.is_empty()))
        }
        _ => (authority, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(method: &str, raw: &str) -> Result<Target<'static>, ParseError> {
        let raw: &'static str = Box::leak(raw.to_string().into_boxed_str());
        Target::parse(method, raw.as_bytes())
    }

    #[test]
    fn origin_form() {
        let target = t("GET", "/a/b?c=d?e").unwrap();
        assert_eq!(target.form(), TargetForm::Origin);
        assert_eq!((target.path(), target.query()), ("/a/b", "c=d?e"));
        assert_eq!(target.authority(), None);
        assert_eq!(t("GET", "//x").unwrap().path(), "//x");
        assert_eq!(t("GET", "/a%2").err(), Some(ParseError::InvalidTarget));
        assert_eq!(t("GET", "/s?off=50%").unwrap().query(), "off=50%");
    }

    #[test]
    fn absolute_form_names_its_authority_and_keeps_its_query() {
        let target = t("GET", "http://h?next=/home").unwrap();
        assert_eq!(target.form(), TargetForm::Absolute);
        assert_eq!(target.authority(), Some("h"));
        assert_eq!((target.path(), target.query()), ("/", "next=/home"));
        let target = t("GET", "HTTPS://example.com:8080/x/y?z").unwrap();
        assert_eq!(target.authority(), Some("example.com:8080"));
        assert_eq!((target.path(), target.query()), ("/x/y", "z"));
        let mut origin = Vec::new();
        t("GET", "http://h?a=/b")
            .unwrap()
            .write_origin_form(&mut origin);
        assert_eq!(origin, b"/?a=/b");
        for bad in ["http://user@h/", "http:///x", "http://h/%zz", "http://h:x/"] {
            assert_eq!(
                t("GET", bad).err(),
                Some(ParseError::InvalidTarget),
                "{bad}"
            );
        }
    }

    #[test]
    fn asterisk_and_authority_forms() {
        assert_eq!(t("OPTIONS", "*").unwrap().path(), "*");
        assert_eq!(
            t("GET", "*").err(),
            Some(ParseError::AsteriskTargetWithoutOptions)
        );
        assert_eq!(
            t("GET", "example.com:80").err(),
            Some(ParseError::AuthorityTargetWithoutConnect)
        );
        assert_eq!(t("GET", "a b").err(), Some(ParseError::InvalidTarget));
        assert_eq!(t("GET", "/#frag").err(), Some(ParseError::InvalidTarget));
        assert_eq!(
            t("GET", "/caf\u{e9}").err(),
            Some(ParseError::InvalidTarget)
        );
    }

    #[test]
    fn authorities() {
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
        assert_eq!(
            split_authority("example.com:8080"),
            ("example.com", Some("8080"))
        );
        assert_eq!(split_authority("[::1]:5000"), ("[::1]", Some("5000")));
        assert_eq!(split_authority("[::1]"), ("[::1]", None));
        assert_eq!(split_authority("example.com"), ("example.com", None));
        assert_eq!(split_authority("example.com:"), ("example.com", None));
    }
}
