//! The app thread pool: `--threads` threads that run apps which may block, and only
//! that: the event loop frames the responses. Jobs arrive over a bounded channel;
//! everything a thread has to tell the event loop (an answer, a streamed chunk ready, a
//! stream finished) goes back as a [`Msg`] on one channel, with a `mio::Waker` wake-up
//! sent only when the loop is not already awake.
//!
//! An app may start its answer before it returns (WSGI's `write()`): while it runs, its
//! thread's [`Reply`] sends the head at once and the body through the same bounded
//! channel as a streamed body, with the same back-pressure.
//!
//! The connection state machine ([`crate::conn`]) decides what becomes a [`Job`]; the
//! loop ([`crate::worker`]) submits it and routes each [`Msg`] to its connection by
//! [`Ticket`].

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use crate::app::{App, Body, ChunkStream, Environ, Idle, Input, Response};
use crate::respond::{cut_short, error_response, try_call_app};
use rgunicorn_metrics::Recorder;

/// Chunks of a streamed body an app thread may produce ahead of the client.
const STREAM_AHEAD: usize = 4;

/// The shortest pause worth taking ([`Pool::pace`]): when the threads answer so often
/// that the pause would be shorter, the loop is busy anyway and keeps waking for each
/// event.
const PACE_MIN: Duration = Duration::from_micros(50);
/// The longest pause between the loop's turns while jobs wait for a thread. Threads
/// that answer less often than this keep waking the loop for each answer: it wakes
/// rarely then, and a pause would only add latency.
const PACE_MAX: Duration = Duration::from_millis(1);

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
    /// Marked when a thread takes the job.
    pub taken: Taken,
    /// The front may have the request back while no thread has taken it
    /// ([`Pool::take_queued`]).
    pub resendable: bool,
}

/// When an app thread took a connection's current job: marked by the thread, read by the
/// loop for `--request-timeout`, which counts the app's time from there, not the time the
/// job waited for a free thread. One per connection, reset for each of its requests
/// (they reach the threads one at a time).
#[derive(Clone, Default)]
pub struct Taken(Arc<AtomicU64>);

impl Taken {
    /// A new job of the connection, not taken yet.
    pub fn reset(&self) {
        self.0.store(0, Ordering::Relaxed);
    }

    /// The job is taken now.
    pub fn mark(&self) {
        let nanos = nanos_since_epoch(Instant::now()).min(u64::MAX - 1);
        self.0.store(nanos + 1, Ordering::Release);
    }

    /// When the job was taken, if it was.
    pub fn at(&self) -> Option<Instant> {
        match self.0.load(Ordering::Acquire) {
            0 => None,
            n => Some(epoch() + Duration::from_nanos(n - 1)),
        }
    }
}

/// What [`Taken`] and [`AnswerGap`] count from: the first use in this process.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// `at` in nanoseconds from [`epoch`] (0 before it), for an atomic cell.
fn nanos_since_epoch(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch()).as_nanos()).unwrap_or(u64::MAX)
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
    shared: Arc<Shared>,
    /// The threads' ends of the two channels, for threads started later
    /// ([`Pool::replace_stuck`]).
    job_rx: Receiver<Job>,
    msg_tx: Sender<Msg>,
    /// How many threads the pool started with.
    size: usize,
}

/// Shared by every app thread.
struct Shared {
    app: Arc<dyn App>,
    wake: Arc<Wake>,
    /// Where busy and idle threads are counted (utilisation), when metrics are on.
    metrics: Option<Recorder>,
    /// How often the threads answer while jobs wait for them.
    pace: AnswerGap,
}

/// The time between two answers of the pool (any threads) while jobs wait in the
/// queue: how fast the threads get through it, GIL and all. A moving average (an eighth
/// of each new gap), in nanoseconds. It is not the time one job takes: with the GIL,
/// a thread that took a job may wait milliseconds for its turn while another thread
/// answers job after job. Threads update it without a lock; a lost update between two
/// threads only delays the average by one answer.
#[derive(Default)]
struct AnswerGap {
    /// When the last answer was ready (nanoseconds from [`epoch`], 0 for never).
    last: AtomicU64,
    gap: AtomicU64,
}

impl AnswerGap {
    /// An answer is ready at `now`; `queued`: jobs still wait for a thread, so the
    /// pool was most likely busy since the answer before. A gap counts as at most twice
    /// [`PACE_MAX`]: enough to stop pacing threads that answer rarely, while the first
    /// answer of a burst after a quiet minute moves the average no further.
    fn note(&self, now: Instant, queued: bool) {
        let now = nanos_since_epoch(now);
        let last = self.last.swap(now, Ordering::Relaxed);
        if !queued || last == 0 || now <= last {
            return;
        }
        let longest = u64::try_from((2 * PACE_MAX).as_nanos()).unwrap_or(u64::MAX);
        let gap = (now - last).min(longest);
        let old = self.gap.load(Ordering::Relaxed);
        let new = if old == 0 {
            gap
        } else {
            old - old / 8 + gap / 8
        };
        self.gap.store(new, Ordering::Relaxed);
    }

    fn get(&self) -> Duration {
        Duration::from_nanos(self.gap.load(Ordering::Relaxed))
    }
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
        let shared = Arc::new(Shared {
            app,
            wake,
            metrics,
            pace: AnswerGap::default(),
        });
        let mut pool = Pool {
            jobs: Some(job_tx),
            msgs: msg_rx,
            threads: Vec::with_capacity(threads),
            shared,
            job_rx,
            msg_tx,
            size: threads,
        };
        for _ in 0..threads {
            pool.spawn_thread()?;
        }
        Ok(pool)
    }

    fn spawn_thread(&mut self) -> io::Result<()> {
        let rx = self.job_rx.clone();
        let tx = self.msg_tx.clone();
        let shared = Arc::clone(&self.shared);
        let handle = thread::Builder::new()
            .name(format!("app-{}", self.threads.len()))
            .spawn(move || app_thread(rx, tx, shared))?;
        self.threads.push(handle);
        Ok(())
    }

    /// Start a thread in place of each of `stuck` threads the loop gave up on (their
    /// requests answered 504, the worker retiring), so that the requests queued behind
    /// them are still served, as gunicorn's next worker would serve them from the
    /// backlog. At most as many as the pool started with, over its life: a worker whose
    /// every request gets stuck does not pile up threads. Returns how many it started.
    pub fn replace_stuck(&mut self, stuck: usize) -> usize {
        let room = (2 * self.size).saturating_sub(self.threads.len());
        let mut started = 0;
        for _ in 0..stuck.min(room) {
            if let Err(err) = self.spawn_thread() {
                crate::log_error!("could not start an app thread in place of a stuck one: {err}");
                break;
            }
            started += 1;
        }
        started
    }

    /// How long the loop may pause before its next turn instead of waking for each
    /// event; `None` to wake for each.
    ///
    /// While at least twice as many jobs wait in the queue as there are threads, an
    /// answer or a new request the loop takes at once makes no job start sooner. With
    /// jobs of a few hundred microseconds (a Flask view), waking for each answer and
    /// again for each client's next request costs the loop about two sleeps and wake-ups
    /// per request, each a context switch (often across cores) that costs more than the
    /// work it wakes for. Pausing takes
    /// them in batches instead: for half the time the threads need to empty the queue
    /// (`queued × the time between two answers / 2`, see [`AnswerGap`]), so they are
    /// still busy when the loop looks again, and at most [`PACE_MAX`]. Short pauses are
    /// not worth it: with short jobs the loop is busy anyway; nor is pacing threads that
    /// answer less often than [`PACE_MAX`]: the loop wakes rarely then. Nor is a shallow
    /// queue: threads hand the GIL to each other and answer in bunches, so a short queue
    /// empties sooner than the average gap says, and a pause then leaves them idle with
    /// their answers unsent (measured over HTTPS at c=8 with 4 threads: a sixth fewer
    /// requests when pausing for any queued job, still a few percent fewer when pausing
    /// for as many as there are threads).
    pub fn pace(&self) -> Option<Duration> {
        let queued = self.jobs.as_ref().map_or(0, Sender::len);
        pace_for(queued, self.size, self.shared.pace.get())
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

    /// The jobs no thread has taken yet, out of the queue (the loop hands back those the
    /// front may have back and queues the others again).
    pub fn take_queued(&self) -> Vec<Job> {
        let waiting = self.job_rx.len();
        self.job_rx.try_iter().take(waiting).collect()
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

fn app_thread(jobs: Receiver<Job>, msgs: Sender<Msg>, shared: Arc<Shared>) {
    let app = Arc::clone(&shared.app);
    app.run_thread(&mut |idle| serve_jobs(&jobs, &msgs, &shared, idle));
}

/// The loop is gone (its end of the message channel closed): the thread stops.
struct LoopGone;

/// Take jobs until the pool stops; every blocking wait runs inside `idle.during`.
fn serve_jobs(jobs: &Receiver<Job>, msgs: &Sender<Msg>, shared: &Shared, idle: &dyn Idle) {
    loop {
        // A job already queued is taken before letting go (a Python thread keeps the GIL),
        // so a busy thread runs request after request without handing the GIL over.
        let mut next = jobs.try_recv().ok();
        if next.is_none() {
            idle.during(&mut || next = jobs.recv().ok());
        }
        let Some(job) = next else {
            return;
        };
        job.taken.mark();
        let busy = shared.metrics.map(Busy::new);
        let Job {
            ticket,
            environ,
            input,
            taken: _,
            resendable: _,
        } = job;
        let link = Link {
            ticket,
            msgs,
            wake: &shared.wake,
            idle,
        };
        let mut reply = Reply {
            link,
            environ: &environ,
            stream: None,
        };
        let answered = {
            let _current = Current::enter(&mut reply);
            try_call_app(shared.app.as_ref(), &environ, input)
        };
        shared.pace.note(Instant::now(), !jobs.is_empty());
        let early = reply.stream.take();
        let response = match answered {
            Some(response) => response,
            // A panic after the head went out: the body is cut short, the connection closed.
            None if early.is_some() => cut_short(),
            None => error_response(500),
        };
        if link.finish(early, response, environ, busy).is_err() {
            return;
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

/// One request's way back to the event loop from the app thread that runs it. The pool
/// answers with what the app returns; an app that must send before it returns (WSGI's
/// `write()`) reaches its request's `Reply` through [`Reply::with_current`] and calls
/// [`Reply::start`], then [`Reply::send`]: the head goes out at once, the body chunk by
/// chunk through the same bounded channel a streamed body uses (a slow client makes
/// `send` wait), and what the app returns afterwards is the rest of that body.
pub struct Reply<'a> {
    link: Link<'a>,
    /// The request, for the loop's log line when the head goes out early.
    environ: &'a Environ,
    /// Set once a head went out: where the body goes.
    stream: Option<Sender<io::Result<Vec<u8>>>>,
}

thread_local! {
    /// The [`Reply`] of the request this app thread is running: see [`Current`].
    static CURRENT: Cell<*mut Reply<'static>> = const { Cell::new(std::ptr::null_mut()) };
}

/// Makes a [`Reply`] this thread's current one while the app runs, and no longer once
/// it returns (or panics). It holds the reply's exclusive borrow for that long, so the
/// pool cannot touch the reply meanwhile; [`Reply::with_current`] is the only way in.
struct Current<'r>(std::marker::PhantomData<&'r mut ()>);

impl<'r> Current<'r> {
    fn enter(reply: &'r mut Reply<'_>) -> Current<'r> {
        let ptr: *mut Reply<'_> = reply;
        CURRENT.with(|c| c.set(ptr.cast::<Reply<'static>>()));
        Current(std::marker::PhantomData)
    }
}

impl Drop for Current<'_> {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(std::ptr::null_mut()));
    }
}

/// The client has gone (or the loop no longer takes this body).
fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the client has gone")
}

impl Reply<'_> {
    /// Run `f` with the reply of the request the app on this thread is running; `None`
    /// outside an app call on an app thread (an inline app, another thread, or after the
    /// app returned).
    pub fn with_current<R>(f: impl FnOnce(&mut Reply<'_>) -> R) -> Option<R> {
        // Taken out of the slot while `f` runs, so a nested call finds none.
        let ptr = CURRENT.with(|c| c.replace(std::ptr::null_mut()));
        if ptr.is_null() {
            return None;
        }
        struct PutBack(*mut Reply<'static>);
        impl Drop for PutBack {
            fn drop(&mut self) {
                CURRENT.with(|c| c.set(self.0));
            }
        }
        let _put_back = PutBack(ptr);
        // SAFETY: `ptr` was set by `Current::enter` from an exclusive borrow that `Current`
        // holds until it clears the slot, on this thread (the slot is thread-local), and
        // the pool does not touch the reply meanwhile. It is out of the slot while `f`
        // runs, so this is the only reference to it. `f` cannot keep it: the reference's
        // lifetime ends with the call, and nothing in `Reply` lends out its borrowed parts.
        Some(f(unsafe { &mut *ptr }))
    }

    /// The request this reply answers.
    pub fn ticket(&self) -> Ticket {
        self.link.ticket
    }

    /// Whether the head went out already.
    pub fn started(&self) -> bool {
        self.stream.is_some()
    }

    /// Send `head`'s status and headers now; its body is ignored: what [`Reply::send`]
    /// sends follows, then the body of the response the app returns. Once per request.
    pub fn start(&mut self, mut head: Response) -> io::Result<()> {
        if self.started() {
            return Err(io::Error::other("the response has started already"));
        }
        let (tx, rx) = crossbeam_channel::bounded(STREAM_AHEAD);
        head.body = Body::Stream(Box::new(Pulled(rx)));
        let done = Msg::Done {
            ticket: self.link.ticket,
            environ: self.environ.clone(),
            response: head,
        };
        self.link.msgs.send(done).map_err(|_| gone())?;
        self.link.wake.wake();
        self.stream = Some(tx);
        Ok(())
    }

    /// One piece of the body, after [`Reply::start`]. Waits (in `Idle::during`) while the
    /// client is behind; an error means the client has gone.
    pub fn send(&mut self, chunk: Vec<u8>) -> io::Result<()> {
        let Some(tx) = &self.stream else {
            return Err(io::Error::other("send before start"));
        };
        if self.link.pass_on(tx, Ok(chunk)) {
            Ok(())
        } else {
            Err(gone())
        }
    }
}

/// What an app thread needs to talk to the loop about one request.
#[derive(Clone, Copy)]
struct Link<'a> {
    ticket: Ticket,
    msgs: &'a Sender<Msg>,
    wake: &'a Wake,
    idle: &'a dyn Idle,
}

impl Link<'_> {
    /// The app returned `response`: hand it to the loop (a streamed body pulled here, on
    /// this thread), or, when the head went out `early`, send its body as the rest.
    fn finish(
        self,
        early: Option<Sender<io::Result<Vec<u8>>>>,
        mut response: Response,
        environ: Environ,
        mut busy: Option<Busy>,
    ) -> Result<(), LoopGone> {
        let (rest, tx) = match early {
            Some(tx) => (into_chunks(response.body), tx),
            None => {
                // A stream must be pulled here, where the app's code may block; the loop
                // takes the chunks from a small bounded channel as the client reads them.
                let stream = match &mut response.body {
                    Body::Stream(stream) => {
                        let (tx, rx) = crossbeam_channel::bounded(STREAM_AHEAD);
                        let pulled: ChunkStream = Box::new(Pulled(rx));
                        Some((std::mem::replace(stream, pulled), tx))
                    }
                    _ => None,
                };
                let done = Msg::Done {
                    ticket: self.ticket,
                    environ,
                    response,
                };
                if stream.is_none() {
                    // Idle before the answer leaves: once the client has it, the count is right.
                    drop(busy.take());
                }
                self.msgs.send(done).map_err(|_| LoopGone)?;
                self.wake.wake();
                let Some((stream, tx)) = stream else {
                    return Ok(());
                };
                (Some(stream), tx)
            }
        };
        for chunk in rest.into_iter().flatten() {
            let failed = chunk.is_err();
            if !self.pass_on(&tx, chunk) {
                break;
            }
            if failed {
                break;
            }
        }
        drop(tx);
        self.msgs
            .send(Msg::StreamEnd(self.ticket))
            .map_err(|_| LoopGone)?;
        self.wake.wake();
        Ok(())
    }

    /// Put one chunk in a body's channel, waiting while it is full, and tell the loop.
    /// False when the loop no longer takes it (client gone, deadline passed): the caller
    /// lets go of the app's body at once, on this thread (a Python iterable's close()
    /// runs).
    fn pass_on(&self, tx: &Sender<io::Result<Vec<u8>>>, chunk: io::Result<Vec<u8>>) -> bool {
        let mut chunk = Some(chunk);
        let mut sent = false;
        self.idle.during(&mut || {
            if let Some(chunk) = chunk.take() {
                sent = tx.send(chunk).is_ok();
            }
        });
        if !sent {
            crate::log_debug!("streamed response abandoned: the connection is gone");
            return false;
        }
        if self.msgs.send(Msg::StreamReady(self.ticket)).is_err() {
            return false;
        }
        self.wake.wake();
        true
    }
}

/// A body that follows a head sent early, as chunks.
fn into_chunks(body: Body) -> Option<ChunkStream> {
    match body {
        Body::Empty => None,
        Body::Static(bytes) => Some(Box::new(std::iter::once(Ok(bytes.to_vec())))),
        Body::Bytes(bytes) if bytes.is_empty() => None,
        Body::Bytes(bytes) => Some(Box::new(std::iter::once(Ok(bytes)))),
        Body::Stream(stream) => Some(stream),
        Body::File { file, len } => Some(Box::new(FileChunks {
            file: file.take(len.unwrap_or(u64::MAX)),
        })),
    }
}

/// A file read in chunks on the app thread.
struct FileChunks {
    file: std::io::Take<File>,
}

impl Iterator for FileChunks {
    type Item = io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut buf = vec![0; 64 * 1024];
        match self.file.read(&mut buf) {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some(Ok(buf))
            }
            Err(e) => Some(Err(e)),
        }
    }
}

/// [`Pool::pace`] with `queued` jobs waiting for `threads` threads that answer every
/// `between_answers`.
fn pace_for(queued: usize, threads: usize, between_answers: Duration) -> Option<Duration> {
    if queued == 0 || queued < 2 * threads || between_answers > PACE_MAX {
        return None;
    }
    let queued = u32::try_from(queued).unwrap_or(u32::MAX);
    let pause = between_answers.saturating_mul(queued) / 2;
    (pause >= PACE_MIN).then(|| pause.min(PACE_MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Flask view's answers on a busy pool.
    const FLASK: Duration = Duration::from_micros(150);

    #[test]
    fn the_loop_pauses_for_half_the_time_the_threads_need_for_the_queue() {
        assert_eq!(pace_for(2, 1, FLASK), Some(Duration::from_micros(150)));
        assert_eq!(pace_for(8, 4, FLASK), Some(Duration::from_micros(600)));
        assert_eq!(pace_for(9, 4, FLASK), Some(Duration::from_micros(675)));
    }

    #[test]
    fn a_queue_of_less_than_two_jobs_per_thread_keeps_the_loop_waking_for_each_event() {
        assert_eq!(pace_for(0, 0, FLASK), None);
        assert_eq!(pace_for(1, 1, FLASK), None);
        assert_eq!(pace_for(7, 4, FLASK), None);
    }

    #[test]
    fn short_jobs_keep_the_loop_waking_for_each_event() {
        assert_eq!(pace_for(2, 1, Duration::from_micros(49)), None);
        assert_eq!(pace_for(8, 4, Duration::from_micros(10)), None);
        assert_eq!(pace_for(64, 4, Duration::ZERO), None);
    }

    #[test]
    fn the_pause_is_at_most_a_millisecond() {
        assert_eq!(pace_for(64, 4, FLASK), Some(PACE_MAX));
        assert_eq!(pace_for(usize::MAX, 4, PACE_MAX), Some(PACE_MAX));
    }

    #[test]
    fn threads_that_answer_rarely_keep_the_loop_waking_for_each_answer() {
        assert_eq!(pace_for(64, 4, PACE_MAX + Duration::from_nanos(1)), None);
        assert_eq!(pace_for(64, 1, Duration::from_millis(100)), None);
    }

    #[test]
    fn the_gap_counts_only_answers_given_while_jobs_waited() {
        let gap = AnswerGap::default();
        let t0 = epoch() + Duration::from_secs(1);
        gap.note(t0, true);
        assert_eq!(gap.get(), Duration::ZERO, "one answer is no gap yet");
        gap.note(t0 + Duration::from_micros(800), true);
        assert_eq!(gap.get(), Duration::from_micros(800));
        // Idle between these two: the gap is not the threads' pace.
        gap.note(t0 + Duration::from_secs(5), false);
        assert_eq!(gap.get(), Duration::from_micros(800));
        // An eighth of the way to each new gap.
        gap.note(
            t0 + Duration::from_secs(5) + Duration::from_micros(1600),
            true,
        );
        assert_eq!(gap.get(), Duration::from_micros(900));
        // A burst after a quiet minute counts as two milliseconds.
        gap.note(t0 + Duration::from_secs(65), true);
        assert_eq!(gap.get(), Duration::from_nanos(900_000 - 112_500 + 250_000));
    }
}
