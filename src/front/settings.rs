//! The `[front]` table: what the user typed (read by serde, unknown keys refused), then
//! validated into [`FrontSettings`].
//!
//! Durations and sizes use nginx's notation (`10m`, `1m30s`, `500ms`; `1m`, `64k`), plain
//! integers mean seconds and bytes. Every error is one line naming the setting
//! (`front.session_timeout`), the value and what is allowed. Certificates are checked by
//! [`super::tls`], sockets are bound by [`super::bind`].

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use rgunicorn_http::{Limit, Limits};
use serde::Deserialize;

/// Where the front forwards requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamAddr {
    /// `unix:PATH`: the workers' unix socket (the default deployment).
    Unix(PathBuf),
    /// `HOST:PORT`, resolved once at start (and on reload).
    Tcp(SocketAddr),
}

impl std::fmt::Display for UpstreamAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamAddr::Unix(path) => write!(f, "unix:{}", path.display()),
            UpstreamAddr::Tcp(addr) => write!(f, "{addr}"),
        }
    }
}

/// Where a log goes: `-` (stdout for the access log, stderr for the error log), `stderr`,
/// `stdout`, a file path (appended to, reopened on USR1), or `off`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stdout,
    Stderr,
    File(PathBuf),
    Off,
}

/// The `[front]` table of the config file, validated.
#[derive(Debug, Clone)]
pub struct FrontSettings {
    /// `listen`: the TLS address (default `0.0.0.0:443`).
    pub listen: SocketAddr,
    /// `redirect_http`: a plain HTTP address answering 301 to https (off by default).
    pub redirect_http: Option<SocketAddr>,
    /// `https_port`: the port clients use to reach `listen`, for redirects (default: the
    /// port of `listen`). Set it when a container maps another public port (`-p 5000:443`
    /// → `https_port = 5000`). Omitted from the `Location` when it is 443.
    pub https_port: u16,
    /// `certfile` and `keyfile`, then each `[[front.certificate]]`: the client's SNI name
    /// picks among them by the names they hold; the first is the default.
    pub certificates: Vec<CertificatePaths>,
    /// `upstream`: `unix:PATH` or `HOST:PORT`.
    pub upstream: UpstreamAddr,
    /// `session_timeout`: how long a TLS session (cache entry or ticket) may be resumed.
    pub session_timeout: Duration,
    /// `session_cache_size`: sessions kept in the server-side cache (per front process).
    pub session_cache_size: usize,
    /// `server_name`: used in redirects when the client sent no usable `Host`.
    pub server_name: Option<String>,
    /// `hsts`: the `Strict-Transport-Security` value added to every response (off by default).
    pub hsts: Option<String>,
    /// `client_max_body_size`: larger request bodies get 413 (default 1m as nginx; 0 = no limit).
    pub client_max_body_size: u64,
    /// `max_temp_file_size`: how much of one answer may go to a temp file (in `TMPDIR`)
    /// for a client slower than it while other clients' answers wait behind it on the
    /// same upstream connection (nginx's `proxy_max_temp_file_size`, default 1024m; 0 =
    /// none: those answers wait for the slow client).
    pub max_temp_file_size: usize,
    /// `client_header_timeout`: the TLS handshake plus the whole request head (408 beyond).
    pub client_header_timeout: Duration,
    /// `client_body_timeout`: longest pause between two reads of a request body (408).
    pub client_body_timeout: Duration,
    /// `client_body_min_rate`: bytes per second a request body must average after its
    /// first [`MIN_RATE_GRACE`] (0 = off). The default is the workers' own minimum
    /// (1 KiB/s), so the front answers a slow body's 408 itself, before they would.
    pub client_body_min_rate: u64,
    /// `keepalive_timeout`: how long an idle client connection is kept.
    pub keepalive_timeout: Duration,
    /// `send_timeout`: longest pause of a client that does not read its response.
    pub send_timeout: Duration,
    /// `upstream_connect_timeout`: 504 beyond.
    pub upstream_connect_timeout: Duration,
    /// `upstream_read_timeout`: longest wait for the upstream's next bytes (504 before the head).
    pub upstream_read_timeout: Duration,
    /// `upstream_keepalive`: idle upstream connections kept per event loop (0 = no reuse).
    pub upstream_keepalive: usize,
    /// `upstream_keepalive_timeout`: an idle upstream connection older than this is not
    /// reused. Keep it below the workers' `keepalive` (gunicorn's default is 2 s).
    pub upstream_keepalive_timeout: Duration,
    /// `graceful_timeout`: how long TERM lets in-flight requests finish.
    pub graceful_timeout: Duration,
    /// `worker_connections`: client connections per event loop; accepting pauses beyond.
    pub worker_connections: usize,
    /// `threads`: event loops (default: half the cores, at least one).
    pub threads: usize,
    /// `server_header`: the `Server` the client sees (`""` to send none).
    pub server_header: Option<String>,
    pub access_log: LogTarget,
    /// `access_log_buffer`: bytes of access lines each event loop keeps before writing
    /// them (nginx's `buffer=`; 64k by default, 0 = each line at once). Kept lines are
    /// written at the latest a fifth of a second later.
    pub access_log_buffer: usize,
    /// Whether the access log has the responses the workers gave, or only those the
    /// front gave itself (its error pages, redirects, requests cut short). The master sets
    /// false when the workers keep an access log and `access_log` was not given, so each
    /// request is logged once.
    pub log_upstream_answers: bool,
    /// Whether the workers run their app on app threads, answering each connection's
    /// requests one after another: the front then sends them short batches (see
    /// `relay::dispatch::THREADED_BATCH`). The master sets it for a Python APP, or from
    /// the mode of the app a program embeds;
    /// `rgunicorn-front -c FILE` alone for a Python `wsgi_app` in FILE (`config::front_alone`).
    pub upstream_app_threads: bool,
    pub error_log: LogTarget,
    /// `user`: drop to this user (and its group) after binding, when started as root.
    pub user: Option<String>,
    /// `limit_request_line`, `limit_request_fields`, `limit_request_field_size`: the
    /// workers' limits, so both refuse the same requests.
    pub limits: Limits,
}

/// How long a request body may run before `client_body_min_rate` applies (the workers').
pub const MIN_RATE_GRACE: Duration = Duration::from_secs(5);

impl Default for FrontSettings {
    fn default() -> Self {
        FrontSettings {
            listen: SocketAddr::from(([0, 0, 0, 0], 443)),
            redirect_http: None,
            https_port: 443,
            certificates: Vec::new(),
            upstream: UpstreamAddr::Unix(PathBuf::from("/run/rgunicorn/rgunicorn.sock")),
            session_timeout: Duration::from_secs(600),
            session_cache_size: 20_000,
            server_name: None,
            hsts: None,
            client_max_body_size: 1024 * 1024,
            max_temp_file_size: 1024 * 1024 * 1024,
            client_header_timeout: Duration::from_secs(60),
            client_body_timeout: Duration::from_secs(60),
            client_body_min_rate: 1024,
            keepalive_timeout: Duration::from_secs(75),
            send_timeout: Duration::from_secs(60),
            upstream_connect_timeout: Duration::from_secs(10),
            upstream_read_timeout: Duration::from_secs(60),
            upstream_keepalive: 32,
            upstream_keepalive_timeout: Duration::from_secs(1),
            graceful_timeout: Duration::from_secs(30),
            worker_connections: 1024,
            threads: default_threads(),
            server_header: Some("rgunicorn-front".to_string()),
            access_log: LogTarget::Stdout,
            access_log_buffer: 64 * 1024,
            log_upstream_answers: true,
            upstream_app_threads: false,
            error_log: LogTarget::Stderr,
            user: None,
            limits: Limits::default(),
        }
    }
}

/// Half the cores, at least one. A loop that is kept busy finds many clients ready in each
/// pass, and the requests of one pass cross to the workers in one `send`; spread over as many
/// loops as cores, each loop idles between single requests and pays the hop, a wake-up and
/// a context switch for each (DESIGN.md, "The TLS front": 1.5-2x the throughput on 2
/// cores with one loop). The workers, on the other half, need the cores more.
fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// The `[front]` table as written: types checked by serde, every key known
/// (`deny_unknown_fields`); meaning and ranges are checked by [`FrontSettings::from_table`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    listen: Option<String>,
    redirect_http: Option<String>,
    https_port: Option<i64>,
    certfile: Option<String>,
    keyfile: Option<String>,
    /// `[[front.certificate]]`: more certificates, chosen by the name the client asks
    /// for (SNI).
    #[serde(default)]
    certificate: Vec<RawCertificate>,
    upstream: Option<String>,
    session_timeout: Option<Nginx<Duration>>,
    session_cache_size: Option<i64>,
    server_name: Option<String>,
    hsts: Option<String>,
    client_max_body_size: Option<Nginx<u64>>,
    max_temp_file_size: Option<Nginx<u64>>,
    client_header_timeout: Option<Nginx<Duration>>,
    client_body_timeout: Option<Nginx<Duration>>,
    client_body_min_rate: Option<Nginx<u64>>,
    keepalive_timeout: Option<Nginx<Duration>>,
    send_timeout: Option<Nginx<Duration>>,
    upstream_connect_timeout: Option<Nginx<Duration>>,
    upstream_read_timeout: Option<Nginx<Duration>>,
    upstream_keepalive: Option<i64>,
    upstream_keepalive_timeout: Option<Nginx<Duration>>,
    graceful_timeout: Option<Nginx<Duration>>,
    worker_connections: Option<i64>,
    threads: Option<i64>,
    server_header: Option<String>,
    server_tokens: Option<bool>,
    access_log: Option<String>,
    access_log_buffer: Option<Nginx<u64>>,
    error_log: Option<String>,
    user: Option<String>,
    limit_request_line: Option<i64>,
    limit_request_fields: Option<i64>,
    limit_request_field_size: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCertificate {
    certfile: String,
    keyfile: String,
}

/// A certificate chain and its key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificatePaths {
    pub certfile: PathBuf,
    pub keyfile: PathBuf,
}

/// A value in nginx's notation: a duration (`10m`, `1m30s`, `500ms`; an integer is
/// seconds) or a size (`64k`, `1m`; an integer is bytes).
#[derive(Debug, Clone, Copy)]
struct Nginx<T>(T);

impl<'de> Deserialize<'de> for Nginx<Duration> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NginxVisitor {
            what: "a duration (like 30s, 10m, 1h, 500ms, 1m30s)",
            parse: parse_duration,
            from_int: Duration::from_secs,
        })
        .map(Nginx)
    }
}

impl<'de> Deserialize<'de> for Nginx<u64> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NginxVisitor {
            what: "a size (like 512, 64k, 1m, 1g)",
            parse: parse_size,
            from_int: |n| n,
        })
        .map(Nginx)
    }
}

struct NginxVisitor<T> {
    what: &'static str,
    parse: fn(&str) -> Option<T>,
    from_int: fn(u64) -> T,
}

impl<T> serde::de::Visitor<'_> for NginxVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.what)
    }

    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<T, E> {
        u64::try_from(n)
            .map(self.from_int)
            .map_err(|_| E::custom(format!("{n} is not {}", self.what)))
    }

    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<T, E> {
        Ok((self.from_int)(n))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
        (self.parse)(v).ok_or_else(|| E::custom(format!("{v:?} is not {}", self.what)))
    }
}

/// serde's message for the `[front]` table as one line naming the key:
/// `front.KEY: what is wrong`.
fn one_line(err: &toml::de::Error) -> String {
    let text = err.to_string();
    let mut lines = text.lines();
    let message = lines.next().unwrap_or("invalid [front] table").trim();
    let key = lines
        .filter_map(|l| l.trim().strip_prefix("in `"))
        .filter_map(|l| l.strip_suffix('`'))
        .next();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (field, allowed) = rest.split_once('`').unwrap_or((rest, ""));
        let at = key.map(|k| format!("{k}.")).unwrap_or_default();
        let allowed = allowed.trim_start_matches(", expected ").replace('`', "");
        return format!("front.{at}{field}: unknown setting (allowed: {allowed})");
    }
    match key {
        Some(key) => format!("front.{key}: {message}"),
        None => format!("front: {message}"),
    }
}

impl FrontSettings {
    /// Validate the `[front]` table. The error is one line naming the setting
    /// (`front.certfile`), the value and what is allowed.
    pub fn from_table(table: &toml::Table) -> Result<FrontSettings, String> {
        let raw = Raw::deserialize(table.clone()).map_err(|e| one_line(&e))?;
        let mut s = FrontSettings::default();
        if let Some(v) = &raw.listen {
            s.listen = socket_addr("listen", v)?;
        }
        s.https_port = s.listen.port();
        if let Some(v) = &raw.redirect_http {
            s.redirect_http = Some(socket_addr("redirect_http", v)?);
        }
        if let Some(port) = integer("https_port", raw.https_port, 1, u16::MAX.into())? {
            s.https_port = port as u16;
        }
        s.certificates = certificates(&raw)?;
        if let Some(v) = &raw.upstream {
            s.upstream = upstream_addr(v)?;
        }
        if let Some(Nginx(d)) = raw.session_timeout {
            s.session_timeout = d;
        }
        if let Some(n) = integer("session_cache_size", raw.session_cache_size, 0, 10_000_000)? {
            s.session_cache_size = n as usize;
        }
        s.server_name = raw.server_name.clone().filter(|v| !v.is_empty());
        if let Some(v) = &s.server_name {
            if !v
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
            {
                return Err(format!("front.server_name: {v:?} is not a host name"));
            }
        }
        s.hsts = raw.hsts.clone().filter(|v| !v.is_empty() && v != "off");
        if let Some(v) = &s.hsts {
            header_value("hsts", v)?;
        }
        if let Some(Nginx(n)) = raw.client_max_body_size {
            s.client_max_body_size = n;
        }
        if let Some(Nginx(n)) = raw.max_temp_file_size {
            s.max_temp_file_size = usize::try_from(n)
                .map_err(|_| format!("front.max_temp_file_size: {n} is too large"))?;
        }
        let durations = [
            (
                "client_header_timeout",
                raw.client_header_timeout,
                &mut s.client_header_timeout,
            ),
            (
                "client_body_timeout",
                raw.client_body_timeout,
                &mut s.client_body_timeout,
            ),
            (
                "keepalive_timeout",
                raw.keepalive_timeout,
                &mut s.keepalive_timeout,
            ),
            ("send_timeout", raw.send_timeout, &mut s.send_timeout),
            (
                "upstream_connect_timeout",
                raw.upstream_connect_timeout,
                &mut s.upstream_connect_timeout,
            ),
            (
                "upstream_read_timeout",
                raw.upstream_read_timeout,
                &mut s.upstream_read_timeout,
            ),
            (
                "upstream_keepalive_timeout",
                raw.upstream_keepalive_timeout,
                &mut s.upstream_keepalive_timeout,
            ),
            (
                "graceful_timeout",
                raw.graceful_timeout,
                &mut s.graceful_timeout,
            ),
        ];
        for (key, value, slot) in durations {
            if let Some(Nginx(d)) = value {
                if d.is_zero() && key != "upstream_keepalive_timeout" {
                    return Err(format!("front.{key}: must be more than 0"));
                }
                *slot = d;
            }
        }
        if let Some(Nginx(n)) = raw.client_body_min_rate {
            s.client_body_min_rate = n;
        }
        if let Some(n) = integer("upstream_keepalive", raw.upstream_keepalive, 0, 100_000)? {
            s.upstream_keepalive = n as usize;
        }
        if let Some(n) = integer("worker_connections", raw.worker_connections, 1, 1_000_000)? {
            s.worker_connections = n as usize;
        }
        if let Some(n) = integer("threads", raw.threads, 1, 1024)? {
            s.threads = n as usize;
        }
        // nginx's switch: off hides the product name entirely here (no version is ever sent).
        if raw.server_tokens == Some(false) {
            s.server_header = None;
        }
        if let Some(v) = &raw.server_header {
            if v.is_empty() {
                s.server_header = None;
            } else {
                header_value("server_header", v)?;
                s.server_header = Some(v.clone());
            }
        }
        if let Some(v) = &raw.access_log {
            s.access_log = log_target(v, LogTarget::Stdout);
        }
        if let Some(Nginx(n)) = raw.access_log_buffer {
            if n > 16 * 1024 * 1024 {
                return Err(format!("front.access_log_buffer: {n} is more than 16m"));
            }
            s.access_log_buffer = n as usize;
        }
        if let Some(v) = &raw.error_log {
            s.error_log = log_target(v, LogTarget::Stderr);
        }
        s.user = raw.user.clone().filter(|v| !v.is_empty());
        // The workers' table of limits: the same meaning, maxima and messages.
        for (limit, value) in [
            (Limit::RequestLine, raw.limit_request_line),
            (Limit::Fields, raw.limit_request_fields),
            (Limit::FieldSize, raw.limit_request_field_size),
        ] {
            let Some(n) = value else {
                continue;
            };
            let n = u64::try_from(n).unwrap_or(u64::MAX);
            s.limits
                .set(limit, n)
                .map_err(|err| format!("front.{err}"))?;
        }
        Ok(s)
    }
}

/// `certfile`/`keyfile` (the default certificate) and the `[[front.certificate]]`
/// entries, in that order: the first is served when no name matches.
fn certificates(raw: &Raw) -> Result<Vec<CertificatePaths>, String> {
    let mut all = Vec::new();
    match (&raw.certfile, &raw.keyfile) {
        (Some(certfile), Some(keyfile)) => all.push(CertificatePaths {
            certfile: PathBuf::from(certfile),
            keyfile: PathBuf::from(keyfile),
        }),
        (Some(_), None) => {
            return Err("front.keyfile: missing (the PEM private key of front.certfile)".into())
        }
        (None, Some(_)) => {
            return Err(
                "front.certfile: missing (the PEM certificate chain the front serves)".into(),
            )
        }
        (None, None) => {}
    }
    all.extend(raw.certificate.iter().map(|c| CertificatePaths {
        certfile: PathBuf::from(&c.certfile),
        keyfile: PathBuf::from(&c.keyfile),
    }));
    if all.is_empty() {
        return Err(
            "front.certfile: missing (the PEM certificate chain the front serves, or [[front.certificate]] entries)"
                .into(),
        );
    }
    Ok(all)
}

/// An integer setting within `min..=max`.
fn integer(key: &str, value: Option<i64>, min: i64, max: i64) -> Result<Option<i64>, String> {
    match value {
        Some(n) if !(min..=max).contains(&n) => Err(format!(
            "front.{key}: {n} is not an integer from {min} to {max}"
        )),
        other => Ok(other),
    }
}

fn socket_addr(key: &str, value: &str) -> Result<SocketAddr, String> {
    value
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| {
            format!("front.{key}: {value:?} is not an address (HOST:PORT, like 0.0.0.0:443)")
        })
}

fn upstream_addr(value: &str) -> Result<UpstreamAddr, String> {
    if let Some(path) = value.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(
                "front.upstream: \"unix:\" needs a path (unix:/run/rgunicorn/rgunicorn.sock)"
                    .into(),
            );
        }
        return Ok(UpstreamAddr::Unix(PathBuf::from(path)));
    }
    let addr = value.strip_prefix("http://").unwrap_or(value);
    addr.to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .map(UpstreamAddr::Tcp)
        .ok_or_else(|| format!("front.upstream: {value:?} is neither unix:PATH nor HOST:PORT"))
}

fn header_value(key: &str, value: &str) -> Result<(), String> {
    if value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        Ok(())
    } else {
        Err(format!(
            "front.{key}: {value:?} is not a valid header value (printable ASCII)"
        ))
    }
}

fn log_target(value: &str, dash: LogTarget) -> LogTarget {
    match value {
        "-" => dash,
        "stdout" => LogTarget::Stdout,
        "stderr" => LogTarget::Stderr,
        "off" | "" => LogTarget::Off,
        path => LogTarget::File(PathBuf::from(path)),
    }
}

/// nginx durations: a sequence of NUMBER UNIT with units ms, s, m, h, d, w (a bare number
/// is seconds): `10m`, `1m30s`, `500ms`, `60`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let millis = match &rest[..unit] {
            "ms" => 1,
            "s" | "" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            _ => return None,
        };
        rest = &rest[unit..];
        total = total.checked_add(Duration::from_millis(n.checked_mul(millis)?))?;
    }
    Some(total)
}

/// nginx sizes: bytes, or k/K, m/M, g/G multiples of 1024.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, mult) = match text.as_bytes().last()? {
        b'k' | b'K' => (&text[..text.len() - 1], 1024),
        b'm' | b'M' => (&text[..text.len() - 1], 1024 * 1024),
        b'g' | b'G' => (&text[..text.len() - 1], 1024 * 1024 * 1024),
        _ => (text, 1),
    };
    digits.parse::<u64>().ok()?.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        text.parse().expect("test toml")
    }

    const BASE: &str = "certfile = \"c.pem\"\nkeyfile = \"k.pem\"\n";

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("60"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("10x"), None);
        assert_eq!(parse_duration("m"), None);
        assert_eq!(parse_size("1m"), Some(1 << 20));
        assert_eq!(parse_size("64k"), Some(65536));
        assert_eq!(parse_size("12"), Some(12));
        assert_eq!(parse_size("1t"), None);
    }

    #[test]
    fn defaults() {
        let s = FrontSettings::from_table(&table(BASE)).expect("valid");
        assert_eq!(s.listen.to_string(), "0.0.0.0:443");
        assert_eq!(s.https_port, 443);
        assert_eq!(s.session_timeout, Duration::from_secs(600));
        assert_eq!(s.client_max_body_size, 1 << 20);
        assert_eq!(s.max_temp_file_size, 1 << 30);
        assert_eq!(s.server_header.as_deref(), Some("rgunicorn-front"));
        assert!(s.redirect_http.is_none());
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(
            s.threads,
            (cores / 2).max(1),
            "half the cores, at least one"
        );
    }

    #[test]
    fn issue_example() {
        let s = FrontSettings::from_table(&table(
            "listen = \"0.0.0.0:8443\"\nredirect_http = \"0.0.0.0:8080\"\n\
             certfile = \"/etc/rgunicorn/cert/server.pem\"\nkeyfile = \"/etc/rgunicorn/cert/server.key\"\n\
             upstream = \"unix:/run/rgunicorn/rgunicorn.sock\"\nsession_timeout = \"10m\"\n",
        ))
        .expect("valid");
        assert_eq!(s.https_port, 8443);
        assert_eq!(
            s.upstream,
            UpstreamAddr::Unix("/run/rgunicorn/rgunicorn.sock".into())
        );
        assert_eq!(s.redirect_http.map(|a| a.port()), Some(8080));
    }

    #[test]
    fn max_temp_file_size_in_nginx_sizes() {
        let s = FrontSettings::from_table(&table(&format!("{BASE}max_temp_file_size = \"256m\"")))
            .expect("valid");
        assert_eq!(s.max_temp_file_size, 256 << 20);
        let s = FrontSettings::from_table(&table(&format!("{BASE}max_temp_file_size = 0")))
            .expect("valid");
        assert_eq!(s.max_temp_file_size, 0);
        let err =
            FrontSettings::from_table(&table(&format!("{BASE}max_temp_file_size = \"lots\"")))
                .unwrap_err();
        assert!(err.starts_with("front.max_temp_file_size:"), "{err}");
    }

    #[test]
    fn errors_name_the_setting() {
        let err = FrontSettings::from_table(&table("keyfile = \"k\"")).unwrap_err();
        assert!(err.starts_with("front.certfile:"), "{err}");
        let err = FrontSettings::from_table(&table(&format!("{BASE}session_timeout = \"ten\"")))
            .unwrap_err();
        assert!(err.starts_with("front.session_timeout: \"ten\""), "{err}");
        let err = FrontSettings::from_table(&table(&format!("{BASE}upstream = \"nowhere\"")))
            .unwrap_err();
        assert!(err.starts_with("front.upstream:"), "{err}");
        let err = FrontSettings::from_table(&table(&format!("{BASE}lisen = \"x\""))).unwrap_err();
        assert!(err.starts_with("front.lisen: unknown setting"), "{err}");
        let err = FrontSettings::from_table(&table(&format!("{BASE}threads = 0"))).unwrap_err();
        assert!(err.starts_with("front.threads: 0"), "{err}");
        let err = FrontSettings::from_table(&table(&format!("{BASE}listen = 443"))).unwrap_err();
        assert_eq!(
            err,
            "front.listen: invalid type: integer `443`, expected a string"
        );
        let err = FrontSettings::from_table(&table(&format!(
            "{BASE}[[certificate]]\ncertfile = \"a\"\nkeyfil = \"b\""
        )))
        .unwrap_err();
        assert!(
            err.starts_with(
                "front.certificate.keyfil: unknown setting (allowed: certfile or keyfile"
            ),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }

    #[test]
    fn certificates_default_first_then_the_entries() {
        let s = FrontSettings::from_table(&table(&format!(
            "{BASE}[[certificate]]\ncertfile = \"b.pem\"\nkeyfile = \"b.key\"\n"
        )))
        .expect("valid");
        let files: Vec<_> = s.certificates.iter().map(|c| c.certfile.clone()).collect();
        assert_eq!(files, [PathBuf::from("c.pem"), PathBuf::from("b.pem")]);
        let s = FrontSettings::from_table(&table(
            "[[certificate]]\ncertfile = \"b.pem\"\nkeyfile = \"b.key\"\n",
        ))
        .expect("entries alone are enough");
        assert_eq!(s.certificates.len(), 1);
    }
}
