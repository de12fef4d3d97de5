//! When an upstream connection fails: which of its requests are sent again (what is safe
//! to repeat), which get an error page (with one error line), which clients must close
//! because their response was cut short; and requests that found no connection in time.

use super::{Entry, Relay};
use crate::front::context::{Ctx, Key};
use crate::front::http1::Exchange;

/// Why an upstream connection is given up, and so what its requests deserve.
#[derive(Debug)]
pub(super) enum Why {
    Connect(std::io::Error),
    ConnectTimedOut,
    /// The worker closed (or reset) before answering.
    Closed(Option<std::io::Error>),
    Invalid(crate::front::upstream::BadResponse),
    TimedOut,
    /// The worker answered an earlier request with `Connection: close`: the ones after
    /// it were never processed (RFC 9112 9.6).
    NotProcessed,
}

impl Why {
    /// Whether `x` may be sent again on another connection.
    fn retry(&self, x: &Exchange) -> bool {
        x.replayable()
            && match self {
                Why::Connect(_) | Why::NotProcessed => true,
                Why::Closed(_) => x.idempotent,
                Why::ConnectTimedOut | Why::Invalid(_) | Why::TimedOut => false,
            }
    }

    fn status(&self) -> u16 {
        match self {
            Why::ConnectTimedOut | Why::TimedOut => 504,
            _ => 502,
        }
    }

    fn describe(&self, upstream: &str, client: std::net::IpAddr) -> String {
        match self {
            Why::Connect(err) => format!("connect() to {upstream} failed: {err}, client: {client}"),
            Why::ConnectTimedOut => {
                format!("upstream {upstream} timed out connecting, client: {client}")
            }
            Why::Closed(None) => format!(
                "upstream {upstream} prematurely closed the connection while reading the response header, client: {client}"
            ),
            Why::Closed(Some(err)) => format!(
                "upstream {upstream}: {err} while reading the response header, client: {client}"
            ),
            Why::Invalid(err) => {
                format!("upstream {upstream} sent an invalid response: {err}, client: {client}")
            }
            Why::TimedOut => format!(
                "upstream {upstream} timed out reading the response, client: {client}"
            ),
            Why::NotProcessed => format!(
                "upstream {upstream} closed the connection before taking the request, client: {client}"
            ),
        }
    }
}

impl Relay {
    /// An exchange that got no connection: answer `why`'s status, or try again later.
    pub(super) fn refuse_exchange(&mut self, key: Key, index: usize, why: Why, ctx: &Ctx<'_>) {
        let upstream = ctx.rt.settings.upstream.to_string();
        let Some(c) = self.client(key) else {
            return;
        };
        let Some(x) = c.session.exchanges.get(index) else {
            return;
        };
        ctx.log.error(&why.describe(&upstream, c.peer.ip()));
        let id = x.id;
        crate::front::metrics::upstream_error(why.status());
        let _ = c.session.fail(id, why.status());
    }

    /// Exchanges waiting for a connection longer than the connect timeout get 504.
    pub(super) fn expire_unsent(&mut self, key: Key, ctx: &Ctx<'_>) {
        let limit = ctx.rt.settings.upstream_connect_timeout;
        let Some(c) = self.client(key) else {
            return;
        };
        let late = c
            .session
            .exchanges
            .iter()
            .position(|x| x.unsent() && ctx.now.saturating_duration_since(x.started) > limit);
        if let Some(i) = late {
            self.refuse_exchange(key, i, Why::ConnectTimedOut, ctx);
        }
    }

    /// Give up an upstream connection: each request it carried is sent again, answered
    /// with an error page, or (when its response had begun) ends its client connection.
    pub(super) fn fail_upstream(&mut self, key: Key, why: Why, ctx: &Ctx<'_>) {
        let Some(Entry::Upstream(mut up)) = self.take_entry(key) else {
            return;
        };
        let upstream = ctx.rt.settings.upstream.to_string();
        for item in up.inflight.drain(..) {
            let Some(Entry::Client(c)) = self.entries.get_mut(item.client.0) else {
                continue;
            };
            let Some(x) = c.session.exchanges.iter_mut().find(|x| x.id == item.id) else {
                continue;
            };
            if item.answered {
                ctx.log.error(&format!(
                    "upstream {upstream} closed the connection while sending the response, client: {}",
                    c.peer.ip()
                ));
                c.session.cut_short(ctx.log);
            } else if why.retry(x) {
                x.upstream = None;
            } else {
                ctx.log.error(&why.describe(&upstream, c.peer.ip()));
                crate::front::metrics::upstream_error(why.status());
                if c.session.fail(item.id, why.status()).is_err() {
                    c.session.cut_short(ctx.log);
                }
            }
            self.push_work(item.client);
        }
    }
}
