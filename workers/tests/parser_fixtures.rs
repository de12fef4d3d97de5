//! Data-driven tests of the request parser: every `NAME.http` in
//! tests/fixtures/requests is parsed with `Limits::default()` (its body decoded too, for
//! a Content-Length or chunked body) and the outcome compared with `NAME.expect`.
//!
//! `.expect` format (kept this simple so the same files can be replayed against the real
//! server): the first line is `ok` or the status the request must earn (400, 414, 431,
//! 501, 505). After `ok`, optional `key: value` lines, each checked exactly:
//! `method`, `target`, `version` (HTTP/1.1), `body` (`none`, `chunked` or the length),
//! `keep_alive`, `expect_continue` (true/false), `decoded` (the body as UTF-8),
//! `path`, `query` (the target's parts), `authority` (the target's, else Host),
//! `path_info` (percent-decoded latin-1), `headers` (count), `header.NAME` (first value,
//! UTF-8), `trailers` (count), `leftover` (bytes after the request: the next pipelined
//! one). Fixtures are written by generate.py. Bodies are read with the same
//! `BodyDecoder` the worker and the front read them with.

use std::fs;
use std::path::{Path, PathBuf};

use rgunicorn_http::{parse_request_head, BodyDecoder, Framing, Limits, RequestHead};
use rgunicorn_workers::environ::path_info;

/// What parsing one fixture produced.
enum Outcome<'b> {
    Rejected(u16),
    /// The parser wants more bytes: never right for a fixture.
    Incomplete(&'static str),
    Accepted(Box<Accepted<'b>>),
}

struct Accepted<'b> {
    head: RequestHead<'b>,
    decoded: Vec<u8>,
    trailers: usize,
    leftover: usize,
}

fn run(raw: &[u8]) -> Outcome<'_> {
    let limits = Limits::default();
    let head = match parse_request_head(raw, &limits) {
        Err(e) => return Outcome::Rejected(e.status()),
        Ok(None) => return Outcome::Incomplete("head"),
        Ok(Some(head)) => head,
    };
    let rest = &raw[head.head_len..];
    let mut body = match BodyDecoder::request(head.body, &limits, 0) {
        Ok(body) => body,
        Err(e) => return Outcome::Rejected(e.status()),
    };
    let mut decoded = Vec::new();
    let mut used = 0;
    loop {
        match body.next(&rest[used..]) {
            Err(e) => return Outcome::Rejected(e.status()),
            Ok(step) => {
                decoded.extend_from_slice(step.data);
                used += step.consumed;
                if step.done {
                    break;
                }
                if step.consumed == 0 {
                    return Outcome::Incomplete("body");
                }
            }
        }
    }
    Outcome::Accepted(Box::new(Accepted {
        leftover: rest.len() - used,
        trailers: body.chunked().map_or(0, |c| c.trailers().len()),
        head,
        decoded,
    }))
}

/// The value `key` names in an accepted request, rendered as in `.expect` files.
fn actual(acc: &Accepted, key: &str) -> Option<String> {
    let h = &acc.head;
    let s = match key {
        "method" => h.method.to_owned(),
        "target" => h.target.raw().to_owned(),
        "version" => h.version.as_str().to_owned(),
        "body" => match h.body {
            Framing::NoBody | Framing::UntilClose => "none".to_owned(),
            Framing::Chunked => "chunked".to_owned(),
            Framing::Length(n) => n.to_string(),
        },
        "keep_alive" => h.keep_alive.to_string(),
        "expect_continue" => h.expect_continue.to_string(),
        "decoded" => String::from_utf8_lossy(&acc.decoded).into_owned(),
        "path" => h.target.path().to_owned(),
        "query" => h.target.query().to_owned(),
        "authority" => h.authority().unwrap_or("<absent>").to_owned(),
        "path_info" => path_info(h.target.path()),
        "headers" => h.fields.len().to_string(),
        "trailers" => acc.trailers.to_string(),
        "leftover" => acc.leftover.to_string(),
        _ => {
            let name = key.strip_prefix("header.")?;
            return Some(h.header(name).map_or("<absent>".to_owned(), |v| {
                String::from_utf8_lossy(v).into_owned()
            }));
        }
    };
    Some(s)
}

/// Checks one fixture; returns a description of each mismatch.
fn check(http: &Path) -> Result<bool, Vec<String>> {
    let name = http
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    let fail = |msg: String| vec![format!("{name}: {msg}")];
    let raw = fs::read(http).map_err(|e| fail(format!("cannot read .http: {e}")))?;
    let expect_path = http.with_extension("expect");
    let expect =
        fs::read_to_string(&expect_path).map_err(|e| fail(format!("cannot read .expect: {e}")))?;
    let mut lines = expect.lines();
    let first = lines.next().unwrap_or("").trim();

    let outcome = run(&raw);
    if first != "ok" {
        let want: u16 = first
            .parse()
            .map_err(|_| fail(format!("bad first line {first:?}")))?;
        return match outcome {
            Outcome::Rejected(got) if got == want => Ok(false),
            Outcome::Rejected(got) => Err(fail(format!("expected {want}, got {got}"))),
            Outcome::Incomplete(what) => {
                Err(fail(format!("expected {want}, got incomplete {what}")))
            }
            Outcome::Accepted(_) => Err(fail(format!("expected {want}, request was accepted"))),
        };
    }
    let acc = match outcome {
        Outcome::Accepted(acc) => acc,
        Outcome::Rejected(got) => return Err(fail(format!("expected ok, got {got}"))),
        Outcome::Incomplete(what) => {
            return Err(fail(format!("expected ok, got incomplete {what}")))
        }
    };
    let mut errors = Vec::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let Some((key, value)) = line.split_once(':') else {
            errors.push(format!("{name}: malformed expectation {line:?}"));
            continue;
        };
        // One space after the colon separates; anything else is part of the value.
        let want = value.strip_prefix(' ').unwrap_or(value);
        match actual(&acc, key) {
            None => errors.push(format!("{name}: unknown key {key:?}")),
            Some(got) if got != want => {
                errors.push(format!("{name}: {key}: expected {want:?}, got {got:?}"))
            }
            Some(_) => {}
        }
    }
    if errors.is_empty() {
        Ok(true)
    } else {
        Err(errors)
    }
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/requests")
}

#[test]
fn request_fixtures() {
    let mut files: Vec<PathBuf> = fs::read_dir(fixtures_dir())
        .expect("fixtures directory is readable")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "http"))
        .collect();
    files.sort();

    let (mut valid, mut invalid, mut failures) = (0, 0, Vec::new());
    for file in &files {
        match check(file) {
            Ok(true) => valid += 1,
            Ok(false) => invalid += 1,
            Err(errs) => failures.extend(errs),
        }
    }
    assert!(
        failures.is_empty(),
        "{} fixture mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(valid >= 15, "only {valid} valid fixtures found");
    assert!(invalid >= 40, "only {invalid} invalid fixtures found");
}

/// Every fixture has its `.expect`, and no `.expect` is orphaned.
#[test]
fn fixtures_are_paired() {
    for entry in fs::read_dir(fixtures_dir()).expect("fixtures directory is readable") {
        let path = entry.expect("directory entry").path();
        let other = match path.extension().and_then(|x| x.to_str()) {
            Some("http") => "expect",
            Some("expect") => "http",
            _ => continue,
        };
        assert!(
            path.with_extension(other).exists(),
            "{} has no .{other}",
            path.display()
        );
    }
}

/// Feeding the fixtures' bytes one at a time must reach the same verdict: the event loop
/// calls the parser on every partial read.
#[test]
fn fixtures_parse_the_same_incrementally() {
    let limits = Limits::default();
    for entry in fs::read_dir(fixtures_dir()).expect("fixtures directory is readable") {
        let path = entry.expect("directory entry").path();
        if path.extension().is_none_or(|x| x != "http") {
            continue;
        }
        let raw = fs::read(&path).expect("fixture is readable");
        let whole = parse_request_head(&raw, &limits);
        let mut incremental = Ok(None);
        // Every prefix of ordinary fixtures; long ones (the limit tests) are sampled so
        // the quadratic rescan stays cheap in a debug build.
        let ends = (1..=raw.len()).filter(|&end| end <= 1024 || end % 61 == 0 || end == raw.len());
        for end in ends {
            incremental = parse_request_head(&raw[..end], &limits);
            if !matches!(incremental, Ok(None)) {
                break;
            }
        }
        match (&whole, &incremental) {
            (Ok(Some(a)), Ok(Some(b))) => assert_eq!(a, b, "{}", path.display()),
            (Err(a), Err(b)) => {
                assert_eq!(a.status(), b.status(), "{}: {a} vs {b}", path.display())
            }
            _ => panic!(
                "{}: whole {whole:?} vs incremental {incremental:?}",
                path.display()
            ),
        }
    }
}
