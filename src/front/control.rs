//! The front process's main thread: loads the certificate, drops privileges, starts one
//! event loop per thread, then waits for signals and for the loops to end.
//!
//! Signals (`rgunicorn_process::Signals`, as the master and the workers: handlers only
//! record them): TERM drains gracefully within `graceful_timeout`; INT and QUIT stop at
//! once (QUIT is also what the kernel sends when the master dies, and the loop checks its
//! parent every second besides); HUP reloads the settings and the certificate (refused
//! with a log line if the new one is bad; established connections keep theirs); USR1
//! reopens the log files. Exit codes: 0 after a stop, 1 when an event loop died, 3 when
//! the front could not boot (the master's protocol: do not respawn).

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Sender};
use mio::{Events, Interest, Poll, Token, Waker};
use nix::sys::signal::Signal;
use rgunicorn_process::privileges::{self, Account};
use rgunicorn_process::{parent, signals as roles, Signals};

use super::context::WAKER;
use super::event_loop::{Control, EventLoop, Exit};
use super::log::Logger;
use super::relay::THREADED_BATCH;
use super::settings::FrontSettings;
use super::{tls, FrontListeners, Runtime};

pub const EXIT_OK: i32 = rgunicorn_process::exit::OK;
pub const EXIT_LOOP_DIED: i32 = 1;
pub const EXIT_BOOT: i32 = rgunicorn_process::exit::BOOT_ERROR;

const SIGNALS: Token = Token(0);
/// The loops' "I ended" waker.
const LOOP_ENDED: Token = Token(100);

struct LoopHandle {
    sender: Sender<Control>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<Exit>>,
}

impl LoopHandle {
    fn send(&self, message: Control) {
        if self.sender.send(message).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

/// Load the certificate and build the runtime for `settings`.
pub fn runtime(settings: FrontSettings, log: &Logger) -> Result<Arc<Runtime>, String> {
    let loaded = tls::load_all(&settings.certificates).map_err(|e| e.to_string())?;
    for warning in &loaded.warnings {
        log.warn(warning);
    }
    let config = tls::server_config(&settings, &loaded).map_err(|e| e.to_string())?;
    Ok(Arc::new(Runtime {
        settings,
        tls: config,
        certificates: loaded.summary(),
    }))
}

pub fn serve(
    settings: FrontSettings,
    listeners: FrontListeners,
    reload: &dyn Fn() -> Result<FrontSettings, String>,
) -> i32 {
    let log = match Logger::open(
        &settings.access_log,
        &settings.error_log,
        settings.log_upstream_answers,
        settings.access_log_buffer,
    ) {
        Ok(log) => Arc::new(log),
        Err(err) => {
            eprintln!("rgunicorn-front: cannot open the logs: {err}");
            return EXIT_BOOT;
        }
    };
    let runtime = match runtime(settings, &log) {
        Ok(rt) => rt,
        Err(err) => {
            log.error(&err);
            return EXIT_BOOT;
        }
    };
    if let Some(user) = &runtime.settings.user {
        // As root only: a front started as someone else stays who it is.
        let switched = if nix::unistd::geteuid().is_root() {
            Account::named(user).and_then(|account| privileges::switch(&account))
        } else {
            Ok(())
        };
        if let Err(err) = switched {
            log.error(&format!("front.user: cannot switch to {user:?}: {err}"));
            return EXIT_BOOT;
        }
    }
    match run(runtime, listeners, &log, reload) {
        Ok(code) => code,
        Err(err) => {
            log.error(&format!("cannot start the front: {err}"));
            EXIT_BOOT
        }
    }
}

fn run(
    runtime: Arc<Runtime>,
    listeners: FrontListeners,
    log: &Arc<Logger>,
    reload: &dyn Fn() -> Result<FrontSettings, String>,
) -> std::io::Result<i32> {
    let mut poll = Poll::new()?;
    let mut signals = Signals::install(&roles::FRONT)?;
    poll.registry()
        .register(&mut signals, SIGNALS, Interest::READABLE)?;
    let ended = Arc::new(Waker::new(poll.registry(), LOOP_ENDED)?);

    let (tls_addr, redirect_addr) = (listeners.tls_addr(), listeners.redirect_addr());
    let FrontListeners { tls, mut redirect } = listeners;
    let mut loops = Vec::new();
    for (i, listener) in tls.into_iter().enumerate() {
        let loop_poll = Poll::new()?;
        let waker = Arc::new(Waker::new(loop_poll.registry(), WAKER)?);
        let (sender, receiver) = bounded(16);
        let event_loop = EventLoop::new(
            loop_poll,
            listener,
            if i == 0 { redirect.take() } else { None },
            runtime.clone(),
            log.clone(),
            receiver,
        )?;
        let ended = ended.clone();
        let loop_log = log.clone();
        let thread = std::thread::Builder::new()
            .name(format!("front-{i}"))
            .spawn(move || {
                if let Err(err) = rgunicorn_process::sched::batch_this_thread() {
                    if i == 0 {
                        loop_log.info(&format!(
                            "event loops keep the normal scheduling policy: {err}"
                        ));
                    }
                }
                let exit = event_loop.run();
                let _ = ended.wake();
                exit
            })?;
        loops.push(LoopHandle {
            sender,
            waker,
            thread: Some(thread),
        });
    }
    log.info(&format!(
        "front listening on {} ({} event loop{}), {}, upstream {}{}{}",
        tls_addr.map_or_else(|| runtime.settings.listen.to_string(), |a| a.to_string()),
        loops.len(),
        if loops.len() == 1 { "" } else { "s" },
        runtime.certificates,
        runtime.settings.upstream,
        if runtime.settings.upstream_app_threads {
            format!(" (app threads: batches of at most {THREADED_BATCH})")
        } else {
            String::new()
        },
        redirect_addr
            .map(|a| format!(", redirecting http on {a}"))
            .unwrap_or_default()
    ));

    let mut current = runtime;
    let mut stopping = false;
    let mut events = Events::with_capacity(16);
    loop {
        if let Err(err) = poll.poll(&mut events, Some(Duration::from_secs(1))) {
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
        let mut arrived = Vec::new();
        if events.iter().any(|e| e.token() == SIGNALS) {
            arrived = signals.pending();
        }
        if parent::is_gone() && !stopping {
            log.info("the master is gone: stopping now");
            arrived.push(Signal::SIGQUIT);
        }
        for signal in arrived {
            match signal {
                Signal::SIGTERM => {
                    log.info("TERM: draining connections");
                    stopping = true;
                    let deadline = Instant::now() + current.settings.graceful_timeout;
                    loops
                        .iter()
                        .for_each(|l| l.send(Control::Drain { deadline }));
                }
                Signal::SIGINT | Signal::SIGQUIT => {
                    log.info("INT/QUIT: stopping now");
                    stopping = true;
                    loops.iter().for_each(|l| l.send(Control::Stop));
                }
                Signal::SIGHUP => match reload().and_then(|s| {
                    keep_unreloadable(&current.settings, s, log).and_then(|s| self::runtime(s, log))
                }) {
                    Ok(rt) => {
                        log.info(&format!("HUP: reloaded, {}", rt.certificates));
                        current = rt;
                        loops
                            .iter()
                            .for_each(|l| l.send(Control::Reload(current.clone())));
                    }
                    Err(err) => log.error(&format!(
                        "HUP: reload refused, keeping the running configuration: {err}"
                    )),
                },
                Signal::SIGUSR1 => log.reopen(),
                _ => {}
            }
        }
        // Reap loops that ended.
        let mut died = false;
        for l in &mut loops {
            if l.thread.as_ref().is_some_and(|t| t.is_finished()) {
                if let Some(thread) = l.thread.take() {
                    died |= !stopping || thread.join().is_err();
                }
            }
        }
        if died && !stopping {
            log.error("an event loop ended unexpectedly; stopping the front");
            loops.iter().for_each(|l| l.send(Control::Stop));
            for l in &mut loops {
                if let Some(thread) = l.thread.take() {
                    let _ = thread.join();
                }
            }
            return Ok(EXIT_LOOP_DIED);
        }
        if loops.iter().all(|l| l.thread.is_none()) {
            log.report_unreported();
            log.info("front stopped");
            return Ok(EXIT_OK);
        }
    }
}

/// Listen addresses and thread counts stay as bound; say so when a reload changed them.
fn keep_unreloadable(
    old: &FrontSettings,
    mut new: FrontSettings,
    log: &Logger,
) -> Result<FrontSettings, String> {
    if new.listen != old.listen
        || new.redirect_http != old.redirect_http
        || new.threads != old.threads
    {
        log.warn(
            "HUP: listen, redirect_http and threads need a restart; keeping the bound sockets",
        );
    }
    if new.access_log != old.access_log
        || new.access_log_buffer != old.access_log_buffer
        || new.error_log != old.error_log
        || new.user != old.user
    {
        log.warn(
            "HUP: access_log, access_log_buffer, error_log and user need a restart; keeping the current ones",
        );
    }
    new.listen = old.listen;
    new.redirect_http = old.redirect_http;
    new.threads = old.threads;
    new.access_log = old.access_log.clone();
    new.access_log_buffer = old.access_log_buffer;
    new.error_log = old.error_log.clone();
    new.user = old.user.clone();
    Ok(new)
}
