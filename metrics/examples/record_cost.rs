//! What counting one request costs a worker, on its own, without the noise of a whole
//! server run: the calls a keep-alive request makes into the shared table (one read and
//! one write counted, one response recorded), timed over many requests in a table mapped
//! as the master maps it. `cargo run --release -p rgunicorn-metrics --example record_cost`
//!
//! Compare the result with a request's CPU cost in bench/ (about 17 µs for the built-in
//! app on 2 cores): the ratio bounds what metrics add per request.

use std::hint::black_box;
use std::time::{Duration, Instant};

use rgunicorn_metrics::{Method, Recorder, Table};

fn main() {
    let table = Table::map().expect("mmap");
    let slot = table.claim().expect("slot");
    let rec = Recorder::new(table.worker(slot));
    let n: u32 = 20_000_000;
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        for _ in 0..n {
            let began = Instant::now();
            rec.received(black_box(110));
            let method = Method::of(black_box("GET"));
            rec.answered(method, black_box(200), began.elapsed(), false);
            rec.sent(black_box(239));
        }
        best = best.min(start.elapsed());
    }
    let ns = best.as_nanos() as f64 / f64::from(n);
    println!("counting one request: {ns:.1} ns (best of 5 runs of {n})");
    println!(
        "against 17 µs of CPU per request (bench/, built-in app): {:.2}%",
        ns / 17_000.0 * 100.0
    );
}
