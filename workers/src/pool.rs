//! The app thread pool: `--threads` threads that run apps which may block. Jobs arrive
//! over a bounded channel; answers go back over another, with a `mio::Waker` wake-up
//! sent only when the event loop is not already awake.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::app::{App, Environ, Idle, Input};
use crate::log::AccessLog;
use crate::respond::{call_app, write_response, Answer, BodySource, Exchange, ResponseContext};

/// Wakes the event loop at most once per sleep: the loop clears `awake` just before it
/// blocks in poll, and whoever flips it back sends the one eventfd write.
pub struct Wake {
    waker: mio::Waker,
    awake: AtomicBool,
    /// The worker is retiring: answers made from now on say `Connection: close`.
    retiring: AtomicBool,
}

impl Wake {
    pub fn new(waker: mio::Waker) -> Wake {
        Wake {
            waker,
            awake: AtomicBool::new(true),
            retiring: AtomicBool::new(false),
        }
    }

    pub fn set_retiring(&self) {
        self.retiring.store(true, Ordering::SeqCst);
    }

    pub fn is_retiring(&self) -> bool {
        self.retiring.load(Ordering::SeqCst)
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

/// One request for an app thread.
pub struct Job {
    pub key: usize,
    pub environ: Environ,
    pub input: Input,
    pub ctx: ResponseContext,
    pub started: Instant,
}

/// An app thread's answer: the framed head (and body, when it was bytes) and the rest.
pub struct Done {
    pub key: usize,
    pub out: Vec<u8>,
    pub answer: Answer,
}

/// The app threads cannot take the job (they have all died).
#[derive(Debug)]
pub struct PoolGone;

pub struct Pool {
    jobs: Option<Sender<Job>>,
    pub done: Receiver<Done>,
    threads: Vec<JoinHandle<()>>,
}

/// Shared by every app thread.
struct Shared {
    app: Arc<dyn App>,
    wake: Arc<Wake>,
    server: String,
    access: Option<AccessLog>,
    /// How long a thread waits for the loop to take a streamed chunk before giving up.
    stream_timeout: Duration,
}

impl Pool {
    pub fn start(
        threads: usize,
        capacity: usize,
        app: Arc<dyn App>,
        wake: Arc<Wake>,
        server: String,
        access: Option<AccessLog>,
        stream_timeout: Duration,
    ) -> std::io::Result<Pool> {
        let (job_tx, job_rx) = crossbeam_channel::bounded::<Job>(capacity);
        let (done_tx, done_rx) = crossbeam_channel::bounded::<Done>(capacity + threads);
        let shared = Arc::new(Shared {
            app,
            wake,
            server,
            access,
            stream_timeout,
        });
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads {
            let rx = job_rx.clone();
            let tx = done_tx.clone();
            let shared = Arc::clone(&shared);
            handles.push(
                thread::Builder::new()
                    .name(format!("app-{i}"))
                    .spawn(move || app_thread(rx, tx, shared))?,
            );
        }
        Ok(Pool {
            jobs: Some(job_tx),
            done: done_rx,
            threads: handles,
        })
    }

    /// Hand a job to the threads. The channel holds as many jobs as the worker holds
    /// connections, so this only fails if every thread has died.
    pub fn submit(&self, job: Job) -> Result<(), PoolGone> {
        match &self.jobs {
            Some(tx) => tx.try_send(job).map_err(|_| PoolGone),
            None => Err(PoolGone),
        }
    }

    /// Stop taking jobs and wait for the threads to finish the ones they hold.
    pub fn shutdown(mut self) {
        self.jobs = None;
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
    }
}

fn app_thread(jobs: Receiver<Job>, done: Sender<Done>, shared: Arc<Shared>) {
    let app = Arc::clone(&shared.app);
    app.run_thread(&mut |idle| serve_jobs(&jobs, &done, &shared, idle));
}

/// Take jobs until the pool stops; every blocking wait runs inside `idle.during`.
fn serve_jobs(jobs: &Receiver<Job>, done: &Sender<Done>, shared: &Shared, idle: &dyn Idle) {
    loop {
        let mut next = None;
        idle.during(&mut || next = jobs.recv().ok());
        let Some(job) = next else {
            return;
        };
        let response = call_app(shared.app.as_ref(), &job.environ, job.input);
        let mut ctx = job.ctx;
        // Checked after the app ran: a stop that began meanwhile must close this connection.
        if shared.wake.is_retiring() {
            ctx.keep_alive = false;
        }
        let mut out = Vec::with_capacity(512);
        let ex = Exchange {
            environ: &job.environ,
            ctx,
            server: &shared.server,
            started: job.started,
            access: shared.access.as_ref(),
        };
        let mut answer = write_response(response, &ex, &mut out);
        // A stream must be pulled here, where the app's code may block; the loop
        // takes the chunks from a small bounded channel as the client reads them.
        let stream = match answer.rest.take() {
            Some(BodySource::Iter(stream)) => {
                let (tx, rx) = crossbeam_channel::bounded(4);
                answer.rest = Some(BodySource::Channel(rx));
                Some((stream, tx))
            }
            other => {
                answer.rest = other;
                None
            }
        };
        if done
            .send(Done {
                key: job.key,
                out,
                answer,
            })
            .is_err()
        {
            return;
        }
        shared.wake.wake();
        if let Some((stream, tx)) = stream {
            for chunk in stream {
                let failed = chunk.is_err();
                let mut chunk = Some(chunk);
                let mut sent = false;
                idle.during(&mut || {
                    if let Some(chunk) = chunk.take() {
                        sent = tx.send_timeout(chunk, shared.stream_timeout).is_ok();
                    }
                });
                if !sent {
                    crate::log_warning!("client too slow to take a streamed response: abandoned");
                    break;
                }
                shared.wake.wake();
                if failed {
                    break;
                }
            }
            drop(tx);
            shared.wake.wake();
        }
    }
}
