//! The JSON access log (`--access-logformat json`): one JSON object per line, with
//! gunicorn's access-log atoms as its fields, so a log pipeline parses it without a
//! pattern. The text format is [`crate::log`]'s; it calls [`render`] for this one.
//!
//! Every value a client chose (the request line, the path, the query, the Referer and
//! User-Agent headers) is escaped as JSON requires (`"`, `\`, and every control
//! character), so no header value can end a string or a line early. gunicorn users who
//! write a JSON-looking `access_log_format` get broken lines as soon as a header holds a
//! quote; this format cannot.
//!
//! Fields: `h` remote address, `l` and `u` (`-`), `t` the time as gunicorn writes it,
//! `r` request line, `m` method, `U` path, `q` query, `H` protocol, `s` status, `B` and
//! `b` response body bytes (`b` is `null` when the length was not known in advance),
//! `f` referer, `a` user agent, `T`, `M`, `D` and `L` the duration in seconds,
//! milliseconds, microseconds and decimal seconds, `p` the worker's pid.

use std::fmt::Write;

use crate::clock::Civil;
use crate::log::AccessRecord;

/// Append `s` to `out` as a JSON string, quotes included.
pub fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// One access-log record as a JSON object (no newline).
pub fn render(rec: &AccessRecord, out: &mut String) {
    let env = rec.environ;
    let field = |out: &mut String, key: &str, value: &str| {
        if out.len() > 1 {
            out.push(',');
        }
        push_str(out, key);
        out.push(':');
        push_str(out, value);
    };
    // Built apart: `field` puts a comma before every field but the first.
    let mut obj = String::with_capacity(256);
    obj.push('{');
    field(&mut obj, "h", or_dash(&env.remote_addr));
    field(&mut obj, "l", "-");
    field(&mut obj, "u", "-");
    field(&mut obj, "t", &Civil::now().access_log_time());
    field(
        &mut obj,
        "r",
        &format!("{} {} {}", env.method, env.raw_uri, env.server_protocol),
    );
    field(&mut obj, "m", &env.method);
    field(&mut obj, "U", &env.path_info);
    field(&mut obj, "q", &env.query_string);
    field(&mut obj, "H", &env.server_protocol);
    field(&mut obj, "f", or_dash(env.header("referer").unwrap_or("")));
    field(
        &mut obj,
        "a",
        or_dash(env.header("user-agent").unwrap_or("")),
    );
    field(&mut obj, "p", &format!("<{}>", std::process::id()));
    let d = rec.duration;
    let b = match rec.length {
        Some(n) => n.to_string(),
        None => "null".to_string(),
    };
    let _ = write!(
        obj,
        ",\"s\":{},\"B\":{},\"b\":{b},\"T\":{},\"M\":{},\"D\":{},\"L\":{:.6}}}",
        rec.status,
        rec.length.unwrap_or(0),
        d.as_secs(),
        d.as_millis(),
        d.as_micros(),
        d.as_secs_f64()
    );
    out.push_str(&obj);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::Environ;

    #[test]
    fn every_control_character_quote_and_backslash_is_escaped() {
        let mut out = String::new();
        push_str(&mut out, "a\"b\\c\nd\re\tf\u{1}g\u{7f}h é");
        assert_eq!(out, r#""a\"b\\c\nd\re\tf\u0001g\u007fh é""#);
    }

    #[test]
    fn a_record_is_one_json_object_with_gunicorns_atoms() {
        let mut environ = Environ {
            method: "GET".into(),
            raw_uri: "/p?q=\"x\"".into(),
            path_info: "/p".into(),
            query_string: "q=\"x\"".into(),
            server_protocol: "HTTP/1.1".into(),
            remote_addr: "10.0.0.1".into(),
            ..Environ::default()
        };
        environ
            .headers
            .push(("user-agent".into(), "evil\"},\"s\":999,\"x\":\"\\".into()));
        let headers = Vec::new();
        let rec = AccessRecord {
            environ: &environ,
            status: 200,
            response_headers: &headers,
            length: None,
            duration: std::time::Duration::from_micros(1500),
        };
        let mut out = String::new();
        render(&rec, &mut out);
        let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
        assert_eq!(v["s"], 200);
        assert_eq!(v["a"], "evil\"},\"s\":999,\"x\":\"\\");
        assert_eq!(v["r"], "GET /p?q=\"x\" HTTP/1.1");
        assert_eq!(v["b"], serde_json::Value::Null);
        assert_eq!(v["B"], 0);
        assert_eq!(v["D"], 1500);
        assert_eq!(v["M"], 1);
        assert_eq!(v["f"], "-");
        assert!(!out.contains('\n'));
    }
}
