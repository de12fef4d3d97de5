//! The engine of one event loop: its entries (client connections, redirect connections
//! and upstream connections, in a slab under [`Key`]s), the pool of idle upstream
//! connections, and how requests and responses move between clients and upstreams.
//!
//! - Which upstream connection a request takes, and batching a pass's requests of
//!   several clients on one: [`dispatch`].
//! - Bytes for the workers are written once per loop pass and connection, after every
//!   client of the pass has queued its own ([`Relay::run`]).
//! - Responses go from an upstream connection to the clients they are for (`deliver`).
//! - When a worker closes a connection before answering a request: [`failure`].

mod dispatch;
pub use dispatch::THREADED_BATCH;
mod failure;

use std::net::SocketAddr;
use std::sync::Arc;

use mio::net::TcpStream;
use rgunicorn_http::ResponseHead;
use rustls::ServerConfig;
use slab::Slab;

use super::buffer::BUF_CAP;
use super::client::Client;
use super::context::{Ctx, Key, Outcome};
use super::output::{Output, MEM_CAP};
use super::redirect::Redirect;
use super::settings::FrontSettings;
use super::upstream::{Delivered, Discard, Phase, ResponseSink, Upstream, MAX_DEPTH};
use failure::Why;

pub enum Entry {
    Client(Box<Client>),
    Redirect(Box<Redirect>),
    Upstream(Box<Upstream>),
}

pub struct Relay {
    entries: Slab<Entry>,
    /// Idle upstream connections, newest last (reused first: the least likely to have
    /// been closed by the worker's keep-alive timer).
    pool: Vec<Key>,
    /// Client and redirect connections: what `worker_connections` bounds.
    connections: usize,
    /// Numbers exchanges, so an upstream connection can name the one it answers.
    ids: u64,
    /// Entries to drive before this pass ends.
    work: Vec<Key>,
    /// Upstream connections with bytes to write once the pass has queued them all.
    dirty: Vec<Key>,
    /// Upstream connections that took their first request in this pass: requests of other
    /// clients ready in the same pass join them (up to `batch`), so a pass's requests
    /// cross in few sends and their answers come back in few reads. A connection whose
    /// requests are from an earlier pass takes no one else's: nothing queues behind a
    /// request the worker is already running.
    filling: Vec<Key>,
    /// Requests of one pass that share a connection, learnt from how the workers answer
    /// (see [`Relay::learn`]): many for apps answered inline, one for apps that take their
    /// time on app threads (which answer a connection's requests one after the other).
    batch: usize,
    /// Batches started since `batch` last fell to 1 (to try 2 again now and then).
    probes: u32,
}

impl Default for Relay {
    fn default() -> Self {
        Relay {
            entries: Slab::with_capacity(256),
            pool: Vec::new(),
            connections: 0,
            ids: 0,
            work: Vec::new(),
            dirty: Vec::new(),
            filling: Vec::new(),
            batch: MAX_DEPTH / 2,
            probes: 0,
        }
    }
}

impl Relay {
    pub fn connections(&self) -> usize {
        self.connections
    }

    pub fn add_client(
        &mut self,
        sock: TcpStream,
        peer: SocketAddr,
        config: Arc<ServerConfig>,
        ctx: &Ctx<'_>,
    ) -> std::io::Result<()> {
        let key = Key(self.entries.vacant_key());
        let client = Client::new(sock, peer, key, config, ctx)?;
        self.entries.insert(Entry::Client(Box::new(client)));
        self.connections += 1;
        crate::front::metrics::connection_opened();
        // The ClientHello may be there already.
        self.push_work(key);
        Ok(())
    }

    pub fn add_redirect(
        &mut self,
        sock: TcpStream,
        peer: SocketAddr,
        ctx: &Ctx<'_>,
    ) -> std::io::Result<()> {
        let key = Key(self.entries.vacant_key());
        let redirect = Redirect::new(sock, peer, key, ctx)?;
        self.entries.insert(Entry::Redirect(Box::new(redirect)));
        self.connections += 1;
        crate::front::metrics::connection_opened();
        self.push_work(key);
        Ok(())
    }

    /// What poll said about `key`. Called for every event of a pass before [`Relay::run`],
    /// so a pooled connection the worker has begun to close leaves the pool before any
    /// request of the pass could be sent on it.
    pub fn note(&mut self, key: Key, event: &mio::event::Event) {
        match self.entries.get_mut(key.0) {
            Some(Entry::Client(c)) => c.note(event),
            Some(Entry::Redirect(_)) => {}
            Some(Entry::Upstream(up)) => {
                up.note(event);
                if matches!(up.phase, Phase::Idle { .. }) && up.stirred() {
                    self.close_upstream(key);
                    return;
                }
            }
            None => return,
        }
        self.push_work(key);
    }

    /// Drive every entry that has something to do, then write the pass's bytes for the
    /// workers, until nothing moves.
    pub fn run(&mut self, ctx: &Ctx<'_>) {
        self.filling.clear();
        loop {
            while let Some(key) = self.work.pop() {
                self.drive(key, ctx);
            }
            if self.dirty.is_empty() {
                return;
            }
            for key in std::mem::take(&mut self.dirty) {
                self.flush_upstream(key, ctx);
            }
            if self.work.is_empty() {
                return;
            }
        }
    }

    /// Enforce every entry's deadlines (the loop's periodic sweep), retry requests that
    /// found no connection, and expire idle upstream connections.
    pub fn sweep(&mut self, ctx: &Ctx<'_>) {
        let keys: Vec<Key> = self.entries.iter().map(|(k, _)| Key(k)).collect();
        let s = &ctx.rt.settings;
        for key in keys {
            match self.entries.get_mut(key.0) {
                Some(Entry::Client(c)) => {
                    if c.check_deadlines(ctx).is_err() {
                        self.close_client(key, ctx);
                        continue;
                    }
                    self.expire_unsent(key, ctx);
                    self.push_work(key);
                }
                Some(Entry::Redirect(r)) if r.check_timeouts(ctx) == Outcome::Closed => {
                    self.remove_connection(key);
                }
                Some(Entry::Redirect(_)) => {}
                Some(Entry::Upstream(up)) => {
                    let now = ctx.now;
                    match up.phase {
                        Phase::Idle { since }
                            if now.saturating_duration_since(since)
                                >= s.upstream_keepalive_timeout =>
                        {
                            self.close_upstream(key);
                        }
                        Phase::Connecting { since }
                            if now.saturating_duration_since(since)
                                > s.upstream_connect_timeout =>
                        {
                            self.fail_upstream(key, Why::ConnectTimedOut, ctx);
                        }
                        // Only the workers' silence counts: not a request body still
                        // arriving, nor a client too slow to take the response.
                        Phase::Open
                            if up.inflight.front().is_some_and(|i| i.body_done)
                                && !up.held_by_client()
                                && now.saturating_duration_since(up.last_progress)
                                    > s.upstream_read_timeout =>
                        {
                            self.fail_upstream(key, Why::TimedOut, ctx);
                        }
                        _ => {}
                    }
                }
                None => {}
            }
        }
        self.run(ctx);
    }

    /// Close every idle upstream connection (a drain, or new settings).
    pub fn clear_pool(&mut self) {
        for key in std::mem::take(&mut self.pool) {
            self.close_upstream(key);
        }
    }

    fn push_work(&mut self, key: Key) {
        if !self.work.contains(&key) {
            self.work.push(key);
        }
    }

    fn push_dirty(&mut self, key: Key) {
        if !self.dirty.contains(&key) {
            self.dirty.push(key);
        }
    }

    fn drive(&mut self, key: Key, ctx: &Ctx<'_>) {
        match self.entries.get_mut(key.0) {
            Some(Entry::Client(_)) => self.drive_client(key, ctx),
            Some(Entry::Redirect(r)) => {
                let outcome = r.drive(ctx);
                if outcome == Outcome::Closed {
                    self.remove_connection(key);
                }
            }
            Some(Entry::Upstream(_)) => self.drive_upstream(key, ctx),
            None => {}
        }
    }

    fn client(&mut self, key: Key) -> Option<&mut Client> {
        match self.entries.get_mut(key.0) {
            Some(Entry::Client(c)) => Some(c),
            _ => None,
        }
    }

    fn upstream(&mut self, key: Key) -> Option<&mut Upstream> {
        match self.entries.get_mut(key.0) {
            Some(Entry::Upstream(up)) => Some(up),
            _ => None,
        }
    }

    fn drive_client(&mut self, key: Key, ctx: &Ctx<'_>) {
        let ids = &mut self.ids;
        let Some(Entry::Client(c)) = self.entries.get_mut(key.0) else {
            return;
        };
        if c.pump(ctx, ids).is_err() {
            return self.close_client(key, ctx);
        }
        self.detach(key);
        self.dispatch(key, ctx);
        self.feed_body(key);
        let Some(c) = self.client(key) else {
            return;
        };
        if c.flush(ctx).is_err() {
            return self.close_client(key, ctx);
        }
        // Room again for the response being answered: its upstream may go on.
        let waiting = c.transport.output.len() < BUF_CAP;
        let next = c.session.exchanges.front().and_then(|x| x.upstream);
        if let (true, Some(up)) = (waiting, next) {
            if self
                .upstream(up)
                .is_some_and(|u| u.has_buffered() || u.wants_read())
            {
                self.push_work(up);
            }
        }
    }

    /// Upstreams of exchanges the client answered itself (a body that stalled) forget
    /// them: the request is cut in the middle, so the connection cannot be reused.
    fn detach(&mut self, key: Key) {
        let Some(c) = self.client(key) else {
            return;
        };
        for (up, id) in std::mem::take(&mut c.session.detached) {
            let Some(u) = self.upstream(up) else {
                continue;
            };
            u.closing = true;
            if u.inflight.front().is_some_and(|i| i.id == id) {
                self.close_upstream(up);
            }
        }
    }

    fn drive_upstream(&mut self, key: Key, ctx: &Ctx<'_>) {
        let Some(up) = self.upstream(key) else {
            return;
        };
        match up.check_connected() {
            Ok(true) => {}
            Ok(false) => return,
            Err(err) => return self.fail_upstream(key, Why::Connect(err), ctx),
        }
        if !up.out.is_empty() {
            self.push_dirty(key);
        }
        loop {
            let Some(up) = self.upstream(key) else {
                return;
            };
            if let Err(err) = up.receive(ctx.now) {
                return self.fail_upstream(key, Why::Closed(Some(err)), ctx);
            }
            let Some(step) = self.deliver(key, ctx) else {
                return;
            };
            let Some(up) = self.upstream(key) else {
                return;
            };
            // Reading stopped at a full buffer that the clients have since emptied.
            if step == Delivered::Blocked || !up.wants_read() {
                break;
            }
        }
        let Some(up) = self.upstream(key) else {
            return;
        };
        if up.eof && !up.has_buffered() {
            if up.inflight.is_empty() {
                self.close_upstream(key);
            } else {
                self.fail_upstream(key, Why::Closed(None), ctx);
            }
        } else if up.inflight.is_empty() && !matches!(up.phase, Phase::Idle { .. }) {
            let done = std::mem::take(&mut up.batch);
            self.learn(done, ctx);
            self.park(key, ctx);
        }
    }

    /// Hand what the upstream has read to the clients it is for. `None` when the
    /// connection was given up.
    fn deliver(&mut self, key: Key, ctx: &Ctx<'_>) -> Option<Delivered> {
        loop {
            let Some(item) = self.upstream(key).and_then(|u| u.inflight.front().copied()) else {
                return self.upstream(key).map(|_| Delivered::NeedBytes);
            };
            let (step, moved) = match self.entries.get2_mut(key.0, item.client.0) {
                Some((Entry::Upstream(up), Entry::Client(c))) if c.session.knows(item.id) => {
                    // Others' answers wait behind this one: the client's output takes the
                    // rest of it (into its temp file), so a slow reader holds up no one.
                    let shared = up.inflight.iter().skip(1).any(|i| i.client != item.client);
                    let limit = room_for(shared, &c.transport.output, &ctx.rt.settings);
                    if !c.session.can_take(item.id, &c.transport.output, limit) {
                        (Ok(Delivered::Blocked), false)
                    } else {
                        let mut sink = ClientSink {
                            client: c,
                            id: item.id,
                            limit,
                            ctx,
                            moved: false,
                        };
                        let step = up.deliver(&mut sink);
                        (step, sink.moved)
                    }
                }
                _ => match self.entries.get_mut(key.0) {
                    Some(Entry::Upstream(up)) => (up.deliver(&mut Discard), false),
                    _ => return None,
                },
            };
            if moved {
                self.push_work(item.client);
            }
            match step {
                Ok(Delivered::Ended) => {
                    let closing = self
                        .upstream(key)
                        .is_some_and(|u| u.closing && !u.inflight.is_empty());
                    if closing {
                        self.fail_upstream(key, Why::NotProcessed, ctx);
                        return None;
                    }
                }
                Ok(step) => return Some(step),
                Err(err) => {
                    self.fail_upstream(key, Why::Invalid(err), ctx);
                    return None;
                }
            }
        }
    }

    /// Write the pass's bytes for the worker.
    fn flush_upstream(&mut self, key: Key, ctx: &Ctx<'_>) {
        let Some(up) = self.upstream(key) else {
            return;
        };
        if let Phase::Connecting { .. } = up.phase {
            return; // written once the connect completes (a writable event)
        }
        if up.send(ctx.now).is_err() {
            // The worker stopped reading (it answered early, or closed): what it said,
            // or its EOF, is still to be read.
            up.broken_write();
            self.push_work(key);
            return;
        }
        // A request body waiting in its client's buffer may follow now.
        let body_waiting = up
            .inflight
            .back()
            .filter(|last| !last.body_done && up.out.len() < BUF_CAP)
            .map(|last| last.client);
        if let Some(client) = body_waiting {
            self.push_work(client);
        }
    }

    /// Nothing in flight: keep the connection for the next request, or close it.
    fn park(&mut self, key: Key, ctx: &Ctx<'_>) {
        let max = ctx.rt.settings.upstream_keepalive;
        let Some(up) = self.upstream(key) else {
            return;
        };
        if !up.reusable() || max == 0 || ctx.draining {
            return self.close_upstream(key);
        }
        up.park(ctx.now);
        while self.pool.len() >= max {
            let oldest = self.pool.remove(0);
            self.close_upstream(oldest);
        }
        self.pool.push(key);
    }

    /// Dropping a socket closes it, which takes it out of the poll (no other process
    /// holds the descriptor: the front never forks), so entries are not deregistered
    /// first: that would be one more syscall per connection.
    fn close_upstream(&mut self, key: Key) {
        self.take_entry(key);
    }

    /// Release a client connection and what it had in flight.
    fn close_client(&mut self, key: Key, ctx: &Ctx<'_>) {
        let Some(Entry::Client(c)) = self.take_entry(key) else {
            return;
        };
        self.connections -= 1;
        crate::front::metrics::connection_closed();
        c.session.log_unfinished(ctx.log);
        for up in c.session.exchanges.iter().filter_map(|x| x.upstream) {
            // A connection carrying only this client's requests is closed: their answers
            // are wanted by nobody. One shared with others drops them as they come.
            let only_ours = self
                .upstream(up)
                .is_some_and(|u| u.inflight.iter().all(|i| i.client == key));
            if only_ours {
                self.close_upstream(up);
            }
        }
    }

    fn remove_connection(&mut self, key: Key) {
        if self.take_entry(key).is_some() {
            self.connections -= 1;
            crate::front::metrics::connection_closed();
        }
    }

    fn take_entry(&mut self, key: Key) -> Option<Entry> {
        let entry = self.entries.try_remove(key.0)?;
        if let Entry::Upstream(_) = entry {
            self.pool.retain(|k| *k != key);
        }
        Some(entry)
    }
}

/// The most a client's output may hold when an answer for it is delivered: a buffer's
/// worth when the upstream connection carries only its own requests (the worker waits for
/// it), but the whole answer up to `max_temp_file_size` when others' answers wait behind
/// it on the same connection (the rest goes to a temp file, as nginx's proxy buffering
/// does), unless that file was refused.
fn room_for(shared: bool, output: &Output, settings: &FrontSettings) -> usize {
    if shared && settings.max_temp_file_size > 0 && !output.spill_refused() {
        MEM_CAP.saturating_add(settings.max_temp_file_size)
    } else {
        BUF_CAP
    }
}

/// A client exchange as the receiver of its response.
struct ClientSink<'a, 'c> {
    client: &'a mut Client,
    id: u64,
    /// The most the client's output buffer may hold.
    limit: usize,
    ctx: &'a Ctx<'c>,
    moved: bool,
}

impl ResponseSink for ClientSink<'_, '_> {
    fn room(&self) -> usize {
        self.limit
            .saturating_sub(self.client.transport.output.len())
    }

    fn head(&mut self, head: &ResponseHead<'_>) {
        let c = &mut *self.client;
        c.session.on_head(
            self.id,
            head,
            &mut c.transport.output,
            &self.ctx.rt.settings,
            self.ctx.draining,
        );
        self.moved = true;
    }

    fn data(&mut self, data: &[u8]) {
        let c = &mut *self.client;
        c.session
            .on_data(self.id, data, &mut c.transport.output, self.limit);
        self.moved = true;
    }

    fn end(&mut self) {
        let c = &mut *self.client;
        c.session
            .on_end(self.id, &mut c.transport.output, self.ctx.log, self.ctx.now);
        self.moved = true;
    }

    fn handed_back(&mut self) {
        self.client.session.resend(self.id);
        self.moved = true;
    }
}
