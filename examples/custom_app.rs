//! A Rust program that embeds rgunicorn with its own app: the same command line, config
//! file, master and workers as the `rgunicorn` binary, serving `Demo` below.
//!
//!     cargo run --example custom_app -- -w 2 -b 127.0.0.1:8000
//!     curl http://127.0.0.1:8000/hello
//!
//! Its routes also exercise the server in the integration tests: an app that may block
//! (it runs on the app threads), a panic, a slow answer, a streamed body (which may break
//! the length it declares, or never end), and a file (`DEMO_FILE`, else Cargo.toml).

use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use rgunicorn::{App, Body, Environ, Input, Mode, Response};

struct Demo;

fn query_number(environ: &Environ, key: &str, default: u64) -> u64 {
    query_value(environ, key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn query_value<'a>(environ: &'a Environ, key: &str) -> Option<&'a str> {
    environ
        .query_string
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// The body of `/forever`.
struct Forever(Duration);

impl Iterator for Forever {
    type Item = std::io::Result<Vec<u8>>;
    fn next(&mut self) -> Option<Self::Item> {
        std::thread::sleep(self.0);
        Some(Ok(b"tick\n".to_vec()))
    }
}

impl Drop for Forever {
    fn drop(&mut self) {
        // On the app thread that pulled it: the server let go of the stream.
        eprintln!("demo stream dropped");
    }
}

fn text(status: u16, body: String) -> Response {
    Response::new(
        status,
        vec![("Content-Type".into(), "text/plain; charset=utf-8".into())],
        Body::Bytes(body.into_bytes()),
    )
}

impl App for Demo {
    fn mode(&self) -> Mode {
        // This app sleeps and reads files: it must not run on the event loop.
        Mode::Threaded
    }

    fn call(&self, environ: &Environ, input: &mut Input) -> Response {
        match environ.path_info.as_str() {
            "/hello" => text(200, format!("hello from pid {}\n", std::process::id())),
            "/panic" => panic!("the demo app panics on purpose"),
            "/slow" => {
                std::thread::sleep(Duration::from_millis(query_number(environ, "ms", 1000)));
                text(200, "slow done\n".into())
            }
            "/body" => {
                let mut body = Vec::new();
                match input.read_to_end(&mut body) {
                    Ok(n) => text(200, format!("{n}\n")),
                    Err(err) => text(500, format!("{err}\n")),
                }
            }
            "/stream" => {
                let chunks = query_number(environ, "n", 3);
                let size = query_number(environ, "size", 5) as usize;
                let mut headers = vec![("Content-Type".into(), "text/plain".into())];
                // For the tests: a declared length the body may not keep to.
                if let Some(n) = query_value(environ, "declare") {
                    headers.push(("Content-Length".into(), n.to_string().into()));
                }
                Response::new(
                    200,
                    headers,
                    Body::Stream(Box::new(
                        (0..chunks).map(move |i| Ok(vec![b'a' + (i % 26) as u8; size])),
                    )),
                )
            }
            // A body that is not as long as the Content-Length it declares.
            "/lie" => Response::new(
                200,
                vec![(
                    "Content-Length".into(),
                    query_number(environ, "declare", 10).to_string().into(),
                )],
                Body::Static(b"hello\n"),
            ),
            // A stream that never ends: a chunk every `ms`; says when it is dropped.
            "/forever" => {
                let pause = Duration::from_millis(query_number(environ, "ms", 100));
                Response::new(
                    200,
                    vec![("Content-Type".into(), "text/plain".into())],
                    Body::Stream(Box::new(Forever(pause))),
                )
            }
            "/file" => match std::fs::File::open(
                std::env::var_os("DEMO_FILE").unwrap_or_else(|| "Cargo.toml".into()),
            ) {
                Ok(file) => Response::new(
                    200,
                    vec![("Content-Type".into(), "text/plain".into())],
                    Body::File { file, len: None },
                ),
                Err(err) => text(500, format!("{err}\n")),
            },
            // For the master's tests: a request that never ends (request_timeout), and
            // memory that stays resident (max_worker_memory).
            "/spin" => loop {
                std::hint::spin_loop();
                std::thread::sleep(Duration::from_millis(1));
            },
            "/alloc" => {
                let mb = query_number(environ, "mb", 64) as usize;
                // Written, so it is resident; leaked, so it stays.
                std::hint::black_box(Box::leak(vec![1u8; mb << 20].into_boxed_slice()));
                text(200, format!("holding {mb} MiB more\n"))
            }
            _ => text(404, "not found\n".into()),
        }
    }
}

fn main() -> ExitCode {
    ExitCode::from(u8::try_from(rgunicorn::main_with(Some(Arc::new(Demo)))).unwrap_or(1))
}
