//! `--reload` (development): a thread in the worker looks at the modification time of every
//! loaded module's file once a second; when one changes, the worker stops gracefully (it
//! sends itself TERM) and the master starts a fresh one, which imports the code again.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use pyo3::prelude::*;

use super::import::Loader;
use super::interpreter::USABLE;

const EVERY: Duration = Duration::from_secs(1);

pub(super) fn watch(loader: Arc<Loader>) {
    let spawned = std::thread::Builder::new()
        .name("py-reload".into())
        .spawn(move || {
            let mut seen: HashMap<PathBuf, SystemTime> = HashMap::new();
            loop {
                let Some(files) = module_files(&loader) else {
                    return; // the interpreter is finishing
                };
                for file in files {
                    let Ok(modified) = std::fs::metadata(&file).and_then(|m| m.modified()) else {
                        continue;
                    };
                    match seen.insert(file.clone(), modified) {
                        Some(before) if before != modified => {
                            crate::log_info!("Worker reloading: {} modified", file.display());
                            // To the process: this thread has the stop signals blocked.
                            let _ = nix::sys::signal::kill(
                                nix::unistd::getpid(),
                                nix::sys::signal::Signal::SIGTERM,
                            );
                            return;
                        }
                        _ => {}
                    }
                }
                std::thread::sleep(EVERY);
            }
        });
    if let Err(err) = spawned {
        crate::log_error!("cannot start the --reload watcher: {err}");
    }
}

/// The loaded modules' files, or `None` once the interpreter is being finalized.
fn module_files(loader: &Loader) -> Option<Vec<PathBuf>> {
    let usable = USABLE.lock().unwrap_or_else(|e| e.into_inner());
    if !*usable {
        return None;
    }
    Some(Python::attach(|py| loader.module_files(py)))
}
