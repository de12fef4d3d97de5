//! The app thread pool: `--threads` threads that run apps which may block, and only
//! that: the event loop frames the responses. Jobs arrive over a bounded channel;
//! everything a thread has to tell the event loop (an answer, a streamed chunk ready, a
//! stream finished) goes back as a [`Msg`] on one channel, with a `mio::Waker` wake-up
//! sent only when the loop is not already awake.
//!
//! The connection state machine ([`crate::conn`]) decides what becomes a [`Job`]; the
//! loop ([`crate::worker`]) submits it and routes each [`Msg`] to its connection by
//! [`Ticket`].

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use crate::app::{App, Body, ChunkStream, Environ, Idle, Input, Response};
use crate::respond::call_app;
use rgunicorn_metrics::Recorder;

/// Chunks of a streamed body an app thread may produce ahead of the client.
const STREAM_AHEAD: usize = 4;

/// Wakes the event loop at most once per sleep: the loop clears `awake` just before it
/// blocks in poll, and whoever flips it back sends the one eventfd write.
pub struct Wake {
    waker: mio::Waker,
    awake: AtomicBool,
}

impl Wake {
    pub fn new(waker: mio::Waker) -> Wake {
        Wake {
            waker,
            awake: AtomicBool::new(true),
        }
    }

    pub fn wake(&self) {
        if !self.awake.swap(true, Ordering::SeqCst) {
            let _ = self.waker.wake();
        }
    }

    /// Called by the loop before it blocks.
    pub fn going_to_sleep(&self) {
        self.awake.store(false, Ordering::SeqCst);
    }

    /// Called by the loop when poll returns.
    pub fn woke_up(&self) {
        self.awake.store(true, Ordering::SeqCst);
    }
}

/// Names one request handed to the app threads: the connection's slab key and the
/// worker's request number. A connection closed meanwhile may have its key reused; the
/// number tells its successor's requests from the late answers of the old one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub key: usize,
    pub seq: u64,
}

/// One request for an app thread.
pub struct Job {
    pub ticket: Ticket,
    pub environ: Environ,
    pub input: Input,
}

/// What an app thread tells the event loop.
// An answer moves once per request; boxing it would add an allocation per request.
#[allow(clippy::large_enum_variant)]
pub enum Msg {
    /// The app answered. The loop frames the response (it alone knows whether the
    /// connection stays open). A streamed body is pulled by the thread: the response
    /// carries a [`Pulled`] stream fed from it, and the thread stays busy until
    /// [`Msg::StreamEnd`].
    Done {
        ticket: Ticket,
        environ: Environ,
        response: Response,
    },
    /// A streamed body has a chunk waiting in its channel.
    StreamReady(Ticket),
    /// A streamed body ended (or was abandoned): its channel is closed and the thread is
    /// free again.
    StreamEnd(Ticket),
}

impl Msg {
    pub fn ticket(&self) -> Ticket {
        match self {
            Msg::Done { ticket, .. } | Msg::StreamReady(ticket) | Msg::StreamEnd(ticket) => *ticket,
        }
    }

    /// Whether the thread that sent this has let go of its job.
    pub fn frees_thread(&self) -> bool {
        match self {
            Msg::Done { response, .. } => !matches!(response.body, Body::Stream(_)),
            Msg::StreamReady(_) => false,
            Msg::StreamEnd(_) => true,
        }
    }
}

/// The loop's end of a streamed body an app thread pulls: `WouldBlock` while the next
/// chunk is not there yet (a [`Msg::StreamReady`] says when it is), the end when the
/// thread closed the channel.
pub struct Pulled(Receiver<io::Result<Vec<u8>>>);

impl Iterator for Pulled {
    type Item = io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.0.try_recv() {
            Ok(chunk) => Some(chunk),
            Err(TryRecvError::Empty) => Some(Err(io::ErrorKind::WouldBlock.into())),
            Err(TryRecvError::Disconnected) => None,
        }
    }
}

/// The app threads cannot take the job (they have all died).
#[derive(Debug)]
pub struct PoolGone;

pub struct Pool {
    jobs: Option<Sender<Job>>,
    msgs: Receiver<Msg>,
    threads: Vec<JoinHandle<()>>,
}

/// Shared by every app thread.
struct Shared {
    app: Arc<dyn App>,
    wake: Arc<Wake>,
    /// Where busy and idle threads are counted (utilisation), when metrics are on.
    metrics: Option<Recorder>,
}

impl Pool {
    pub fn start(
        threads: usize,
        capacity: usize,
        app: Arc<dyn App>,
        wake: Arc<Wake>,
        metrics: Option<Recorder>,
    ) -> io::Result<Pool> {
        let (job_tx, job_rx) = crossbeam_channel::bounded::<Job>(capacity);
        // Unbounded, yet bounded by construction: each job in flight has at most one
        // `Done`, one `StreamReady` per chunk its stream channel holds, and one `StreamEnd`.
        let (msg_tx, msg_rx) = crossbeam_channel::unbounded::<Msg>();
        let shared = Arc::new(Shared { app, wake, metrics });
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads {
            let rx = job_rx.clone();
            let tx = msg_tx.clone();
            let shared = Arc::clone(&shared);
            handles.push(
                thread::Builder::new()
                    .name(format!("app-{i}"))
                    .spawn(move || app_thread(rx, tx, shared))?,
            );
        }
        Ok(Pool {
            jobs: Some(job_tx),
            msgs: msg_rx,
            threads: handles,
        })
    }

    /// How many app threads there are.
    pub fn threads(&self) -> usize {
        self.threads.len()
    }

    /// Hand a job to the threads. The channel holds as many jobs as the worker holds
    /// connections (each has at most one in flight), so this only fails if every thread
    /// has died.
    pub fn submit(&self, job: Job) -> Result<(), PoolGone> {
        match &self.jobs {
            Some(tx) => tx.try_send(job).map_err(|_| PoolGone),
            None => Err(PoolGone),
        }
    }

    /// The next message from the threads, if one is waiting.
    pub fn next_msg(&self) -> Option<Msg> {
        self.msgs.try_recv().ok()
    }

    /// The next message, waiting at most `within` for one.
    pub fn wait_msg(&self, within: std::time::Duration) -> Option<Msg> {
        self.msgs.recv_timeout(within).ok()
    }

    /// Whether a message waits (checked after the loop announced it goes to sleep, so a
    /// message sent before that announcement is not slept on).
    pub fn has_msgs(&self) -> bool {
        !self.msgs.is_empty()
    }

    /// Stop taking jobs and wait for the threads to finish the ones they hold.
    pub fn shutdown(mut self) {
        self.jobs = None;
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
    }
}

/// Counts an app thread busy while it lives: from taking a job until the job's answer
/// (and any stream it pulls) is handed over, whichever way the thread leaves the job.
struct Busy(Recorder);

impl Busy {
    fn new(metrics: Recorder) -> Busy {
        metrics.thread_busy();
        Busy(metrics)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.thread_idle();
    }
}

fn app_thread(jobs: Receiver<Job>, msgs: Sender<Msg>, shared: Arc<Shared>) {
    let app = Arc::clone(&shared.app);
    app.run_thread(&mut |idle| serve_jobs(&jobs, &msgs, &shared, idle));
}

/// Take jobs until the pool stops; every blocking wait runs inside `idle.during`.
fn serve_jobs(jobs: &Receiver<Job>, msgs: &Sender<Msg>, shared: &Shared, idle: &dyn Idle) {
    loop {
        let mut next = None;
        idle.during(&mut || next = jobs.recv().ok());
        let Some(job) = next else {
            return;
        };
        let mut busy = shared.metrics.map(Busy::new);
        let ticket = job.ticket;
        let mut response = call_app(shared.app.as_ref(), &job.environ, job.input);
        // A stream must be pulled here, where the app's code may block; the loop takes
        // the chunks from a small bounded channel as the client reads them.
        let stream = match &mut response.body {
            Body::Stream(stream) => {
                let (tx, rx) = crossbeam_channel::bounded(STREAM_AHEAD);
                let pulled: ChunkStream = Box::new(Pulled(rx));
                Some((std::mem::replace(stream, pulled), tx))
            }
            _ => None,
        };
        let done = Msg::Done {
            ticket,
            environ: job.environ,
            response,
        };
        if stream.is_none() {
            // Idle before the answer leaves: once the client has it, the count is right.
            drop(busy.take());
        }
        if msgs.send(done).is_err() {
            return;
        }
        shared.wake.wake();
        let Some((stream, tx)) = stream else {
            continue;
        };
        for chunk in stream {
            let failed = chunk.is_err();
            let mut chunk = Some(chunk);
            let mut sent = false;
            // Blocks while the client is slow; returns at once when the loop drops the
            // receiver (client gone, deadline passed), so the iterator is dropped here,
            // on this thread, promptly (a Python iterable's close() runs).
            idle.during(&mut || {
                if let Some(chunk) = chunk.take() {
                    sent = tx.send(chunk).is_ok();
                }
            });
            if !sent {
                crate::log_debug!("streamed response abandoned: the connection is gone");
                break;
            }
            if msgs.send(Msg::StreamReady(ticket)).is_err() {
                return;
            }
            shared.wake.wake();
            if failed {
                break;
            }
        }
        drop(tx);
        if msgs.send(Msg::StreamEnd(ticket)).is_err() {
            return;
        }
        shared.wake.wake();
    }
}
