//! The front's counters in the master's shared table (`--metrics-bind`, `--statsd-host`):
//! TLS handshakes (full, resumed, failed), open client connections, TLS bytes each way,
//! and the 502s and 504s the front answers itself. The master that forks the front gives
//! it its cells once, before it serves ([`install`]); every event loop then adds to them
//! with one relaxed atomic add, no syscall. A standalone `rgunicorn-front`, or one whose
//! master does not count, installs nothing, and each call here is one load and a branch.

use std::sync::OnceLock;

use rgunicorn_metrics::record::Handshake;
use rgunicorn_metrics::FrontRecorder;

static RECORDER: OnceLock<FrontRecorder> = OnceLock::new();

/// Count into `recorder` from now on (in the forked front, before it serves).
pub fn install(recorder: FrontRecorder) {
    let _ = RECORDER.set(recorder);
}

fn with(f: impl FnOnce(&FrontRecorder)) {
    if let Some(recorder) = RECORDER.get() {
        f(recorder);
    }
}

pub(crate) fn connection_opened() {
    with(FrontRecorder::connection_opened);
}

pub(crate) fn connection_closed() {
    with(FrontRecorder::connection_closed);
}

pub(crate) fn handshake(how: Handshake) {
    with(|r| r.handshake(how));
}

pub(crate) fn received(n: usize) {
    with(|r| r.received(n));
}

pub(crate) fn sent(n: usize) {
    with(|r| r.sent(n));
}

/// The front answered `status` (502 or 504) because the workers could not.
pub(crate) fn upstream_error(status: u16) {
    with(|r| r.upstream_error(status));
}
