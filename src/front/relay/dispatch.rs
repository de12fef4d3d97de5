//! Which upstream connection a request takes: its client's current one (so one client's
//! responses come back in order), else one filling in this pass (requests of one pass share
//! connections, up to a batch size learnt from how the workers answer), else an idle pooled
//! one, else a new one; and the request body that follows it.

use super::failure::Why;
use super::{Entry, Relay};
use crate::front::buffer::BUF_CAP;
use crate::front::context::{Ctx, Key};
use crate::front::http1::{Exchange, RequestBody};
use crate::front::upstream::{Batch, InFlight, Phase, Upstream, MAX_DEPTH};
use rgunicorn_http::resend;

impl Relay {
    /// Hand the client's unsent exchanges to upstream connections, in order.
    pub(super) fn dispatch(&mut self, key: Key, ctx: &Ctx<'_>) {
        loop {
            let Some(c) = self.client(key) else {
                return;
            };
            let Some(i) = c.session.exchanges.iter().position(Exchange::unsent) else {
                return;
            };
            // Responses of one client come back in order: its requests share a connection.
            let previous = c
                .session
                .exchanges
                .iter()
                .take(i)
                .rev()
                .find_map(|x| x.upstream);
            let fresh = c.session.exchanges[i].attempts > 0;
            // A client not keeping up with its answers shares no connection: nobody's
            // answer waits behind one that is slow to leave.
            let alone = fresh || c.transport.backed_up();
            let target = match previous {
                Some(up) if self.upstream(up).is_some_and(|u| u.accepts()) => up,
                // Wait until the connection in use has answered.
                Some(_) => return,
                None => match self.joinable(alone) {
                    Some(up) => up,
                    None => match self.pick_upstream(fresh, ctx) {
                        Ok(Some(up)) => {
                            if !alone {
                                self.start_batch(up, ctx);
                            }
                            up
                        }
                        // The workers' backlog is full: the sweep tries again.
                        Ok(None) => return,
                        Err(err) => {
                            self.refuse_exchange(key, i, Why::Connect(err), ctx);
                            continue;
                        }
                    },
                },
            };
            let Some((Entry::Client(c), Entry::Upstream(up))) =
                self.entries.get2_mut(key.0, target.0)
            else {
                return;
            };
            let x = &mut c.session.exchanges[i];
            x.attempts += 1;
            x.upstream = Some(target);
            if let Phase::Idle { .. } = up.phase {
                up.unpark(ctx.now);
            }
            if matches!(x.body, RequestBody::Done) && !x.body_out.is_empty() {
                // The whole body has arrived: it goes with the head and stays with it, so
                // the request can be sent again whole (`Exchange::replayable`).
                x.head.extend_from_slice(x.body_out.as_slice());
                x.body_out.clear();
            }
            // A worker on app threads may hand a whole request without a body back,
            // once, when its threads are all held up (`rgunicorn_http::resend`).
            let offer = (x.attempts == 1
                && ctx.rt.settings.upstream_app_threads
                && matches!(x.body, RequestBody::Done)
                && x.body_received == 0)
                .then(|| x.head.strip_suffix(b"\r\n"))
                .flatten();
            let offered = offer.is_some();
            match offer {
                Some(fields) => {
                    up.out.extend(fields);
                    up.out.extend(resend::OFFER_LINE);
                    up.out.extend(b"\r\n");
                }
                None => up.out.extend(&x.head),
            }
            if !matches!(x.body, RequestBody::Done) {
                // A body still coming goes out as it arrives: the request cannot be sent
                // again whole, so its head is not kept.
                x.head = Vec::new();
            }
            up.inflight.push_back(InFlight {
                client: key,
                id: x.id,
                head_request: x.head_request,
                body_done: !x.body.in_progress() && x.body_out.is_empty(),
                answered: false,
                offered,
            });
            up.batch.requests += 1;
            self.push_dirty(target);
        }
    }

    /// A connection filling in this pass with room for one more request, unless the
    /// request goes `alone` (sent again, or for a client that is backed up).
    pub(super) fn joinable(&self, alone: bool) -> Option<Key> {
        if alone {
            return None;
        }
        self.filling.iter().copied().find(|k| {
            matches!(self.entries.get(k.0), Some(Entry::Upstream(u))
                if u.accepts() && u.batch.requests < u.batch.limit)
        })
    }

    /// `up` takes its first request of this pass: others of the pass may join it.
    pub(super) fn start_batch(&mut self, up: Key, ctx: &Ctx<'_>) {
        let mut limit = self.batch.min(batch_bound(ctx));
        if limit == 1 {
            // Now and then, two: to learn whether the workers answer batches at once.
            self.probes = self.probes.wrapping_add(1);
            if self.probes.is_multiple_of(64) {
                limit = 2;
            }
        }
        if let Some(u) = self.upstream(up) {
            if u.inflight.is_empty() {
                u.batch = Batch {
                    requests: 0,
                    reads: 0,
                    limit,
                };
                self.filling.push(up);
            }
        }
    }

    /// A batch is answered: answers that began in fewer reads than half the requests mean
    /// the workers answer a batch at once (inline apps): batch more. Otherwise they answer
    /// one by one (app threads, one request of a connection at a time): batch less.
    pub(super) fn learn(&mut self, done: Batch, ctx: &Ctx<'_>) {
        self.batch = next_batch(self.batch, done, batch_bound(ctx));
    }

    /// A pooled connection, or a new one; `Ok(None)` when the workers' backlog is full.
    pub(super) fn pick_upstream(
        &mut self,
        fresh: bool,
        ctx: &Ctx<'_>,
    ) -> std::io::Result<Option<Key>> {
        if !fresh {
            while let Some(up) = self.pool.pop() {
                if self.upstream(up).is_some_and(|u| !u.stirred()) {
                    return Ok(Some(up));
                }
                self.close_upstream(up);
            }
        }
        let key = Key(self.entries.vacant_key());
        match Upstream::connect(
            &ctx.rt.settings.upstream,
            ctx.registry,
            key.token(),
            ctx.now,
        ) {
            Ok(up) => {
                self.entries.insert(Entry::Upstream(Box::new(up)));
                Ok(Some(key))
            }
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// The request body the client sent since, from its exchange to its connection.
    pub(super) fn feed_body(&mut self, key: Key) {
        let Some(c) = self.client(key) else {
            return;
        };
        let Some((Some(target), id)) = c.session.exchanges.back().map(|x| (x.upstream, x.id))
        else {
            return;
        };
        let Some((Entry::Client(c), Entry::Upstream(up))) = self.entries.get2_mut(key.0, target.0)
        else {
            return;
        };
        let Some(x) = c.session.exchanges.back_mut() else {
            return;
        };
        let n = x.body_out.len().min(BUF_CAP.saturating_sub(up.out.len()));
        if n > 0 {
            up.out.extend(&x.body_out.as_slice()[..n]);
            x.body_out.consume(n);
        }
        if !x.body.in_progress() && x.body_out.is_empty() {
            if let Some(item) = up.inflight.iter_mut().rev().find(|i| i.id == id) {
                item.body_done = true;
            }
        }
        if n > 0 {
            self.push_dirty(target);
        }
    }
}

/// The most requests of one pass on one connection for workers that run their app on app
/// threads. They answer a connection's requests one after another, so a request in a
/// batch waits for those before it, possibly while other threads are idle. A slow app's
/// answers, coming one by one, teach [`next_batch`] to send one request per connection,
/// but a loaded front reads late and finds several answers at once, which looks like an
/// inline app: it then learnt batches of 8 and more, and the requests at their ends made
/// the tail. Four keeps most of the sends a fast app's batches save; two cost such an app
/// a quarter of its throughput (DESIGN.md, "Batches for app threads").
pub const THREADED_BATCH: usize = 4;

/// How many requests of one pass may share a connection, at most.
fn batch_bound(ctx: &Ctx<'_>) -> usize {
    if ctx.rt.settings.upstream_app_threads {
        THREADED_BATCH
    } else {
        MAX_DEPTH
    }
}

/// The batch size after `done` was answered (see [`Relay::learn`]), at most `bound`.
fn next_batch(current: usize, done: Batch, bound: usize) -> usize {
    if done.requests < 2 {
        current.min(bound)
    } else if done.reads * 2 <= done.requests {
        (current * 2).min(bound)
    } else {
        (current / 2).clamp(1, bound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(requests: usize, reads: usize) -> Batch {
        Batch {
            requests,
            reads,
            limit: 0,
        }
    }

    #[test]
    fn batches_grow_when_answered_at_once_and_shrink_when_answered_one_by_one() {
        // An inline app: 8 answers in one read.
        assert_eq!(next_batch(8, answered(8, 1), MAX_DEPTH), 16);
        assert_eq!(next_batch(MAX_DEPTH, answered(8, 2), MAX_DEPTH), MAX_DEPTH);
        // App threads: one read per answer.
        assert_eq!(next_batch(8, answered(8, 8), MAX_DEPTH), 4);
        assert_eq!(next_batch(1, answered(2, 2), MAX_DEPTH), 1);
        // A lone request says nothing either way.
        assert_eq!(next_batch(4, answered(1, 1), MAX_DEPTH), 4);
    }

    #[test]
    fn workers_on_app_threads_get_short_batches_however_their_answers_come() {
        // Four answers read at once, as a late front finds them: no longer batches.
        assert_eq!(next_batch(4, answered(4, 1), THREADED_BATCH), 4);
        // The learner's starting size is brought down at once.
        assert_eq!(next_batch(MAX_DEPTH / 2, answered(1, 1), THREADED_BATCH), 4);
        assert_eq!(next_batch(MAX_DEPTH / 2, answered(4, 4), THREADED_BATCH), 4);
        // Answers one by one still bring it to one.
        assert_eq!(next_batch(4, answered(4, 4), THREADED_BATCH), 2);
        assert_eq!(next_batch(2, answered(2, 2), THREADED_BATCH), 1);
    }
}
