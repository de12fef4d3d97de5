//! The operations settings (issue 13): the metrics and health listener, statsd, and the
//! pause between "not ready" and closing the listeners on a graceful stop. Kept in one
//! struct so the rest of the configuration does not grow a field per setting.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::BindAddr;

/// Where statsd datagrams go (`--statsd-host`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatsdTarget {
    /// `HOST[:PORT]`, UDP; the port defaults to 8125 as in gunicorn.
    Udp { host: String, port: u16 },
    /// `unix:PATH` (or gunicorn's `unix://PATH`): a unix datagram socket.
    Unix(PathBuf),
}

impl fmt::Display for StatsdTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatsdTarget::Udp { host, port } if host.contains(':') => {
                write!(f, "[{host}]:{port}")
            }
            StatsdTarget::Udp { host, port } => write!(f, "{host}:{port}"),
            StatsdTarget::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpsSettings {
    /// `--metrics-bind`: where `/metrics`, `/healthz` and `/readyz` are served; off if `None`.
    pub metrics_bind: Option<BindAddr>,
    /// `--statsd-host`: where the master sends gunicorn's statsd metrics; off if `None`.
    pub statsd_host: Option<StatsdTarget>,
    /// `--statsd-prefix`, as given (normalized when sent).
    pub statsd_prefix: String,
    /// `--shutdown-delay`: on TERM, how long `/readyz` says 503 while everything still
    /// serves, before the listeners close.
    pub shutdown_delay: Duration,
}

impl OpsSettings {
    /// Whether the workers, the front and the master keep the shared counters.
    pub fn counting(&self) -> bool {
        self.metrics_bind.is_some() || self.statsd_host.is_some()
    }
}

pub(crate) const METRICS_BIND: &str = "HOST:PORT, [IPV6]:PORT or unix:PATH";
pub(crate) const STATSD_HOST: &str = "HOST, HOST:PORT, [IPV6]:PORT or unix:PATH";

/// A `--metrics-bind` value: a `--bind` address other than an inherited `fd://`.
pub(crate) fn parse_metrics_bind(text: &str) -> Option<BindAddr> {
    match super::apply::parse_bind(text)? {
        BindAddr::Fd(_) => None,
        bind => Some(bind),
    }
}

/// A `--statsd-host` value, gunicorn's rules: `unix:PATH` or `unix://PATH`, else an
/// address whose port defaults to 8125.
pub(crate) fn parse_statsd_host(text: &str) -> Option<StatsdTarget> {
    let text = text.trim();
    if let Some(path) = text
        .strip_prefix("unix://")
        .or_else(|| text.strip_prefix("unix:"))
    {
        return (!path.is_empty()).then(|| StatsdTarget::Unix(PathBuf::from(path)));
    }
    if text.is_empty() || text.starts_with("fd://") {
        return None;
    }
    let with_port = if text.starts_with('[') && !text.contains("]:") || !text.contains(':') {
        format!("{text}:8125")
    } else {
        text.to_string()
    };
    match super::apply::parse_bind(&with_port)? {
        BindAddr::Tcp { host, port } => Some(StatsdTarget::Udp { host, port }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statsd_hosts_as_gunicorn_reads_them() {
        let udp = |host: &str, port| StatsdTarget::Udp {
            host: host.into(),
            port,
        };
        assert_eq!(parse_statsd_host("localhost"), Some(udp("localhost", 8125)));
        assert_eq!(
            parse_statsd_host("10.0.0.1:9125"),
            Some(udp("10.0.0.1", 9125))
        );
        assert_eq!(parse_statsd_host("[::1]"), Some(udp("::1", 8125)));
        assert_eq!(parse_statsd_host("[::1]:1"), Some(udp("::1", 1)));
        assert_eq!(
            parse_statsd_host("unix:///run/statsd.sock"),
            Some(StatsdTarget::Unix("/run/statsd.sock".into()))
        );
        assert_eq!(parse_statsd_host("host:notaport"), None);
        assert_eq!(parse_statsd_host(""), None);
        assert_eq!(parse_statsd_host("fd://3"), None);
    }

    #[test]
    fn the_metrics_listener_is_an_address_not_an_inherited_fd() {
        assert!(parse_metrics_bind("127.0.0.1:9100").is_some());
        assert!(parse_metrics_bind("unix:/run/m.sock").is_some());
        assert_eq!(parse_metrics_bind("fd://3"), None);
    }
}
