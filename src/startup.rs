//! What happens between validated settings and the master loop: the checks that need
//! the outside world (the APP exists, log files open and owned by the workers' user),
//! the environment (`--chdir`, `-e`), all before a socket is bound, so a bad start fails
//! fast with one line.

use rgunicorn_workers::app;
use rgunicorn_workers::config::LogTarget;

use crate::config::Settings;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    App(#[from] app::AppError),
    #[error("cannot open error log {path}: {source}")]
    ErrorLog {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot open access log {path}: {source}")]
    AccessLog {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot change directory to {path} (chdir): {source}")]
    Chdir {
        path: String,
        source: std::io::Error,
    },
}

impl StartError {
    /// An APP that cannot load is gunicorn's APP_LOAD_ERROR (4); the rest are start errors.
    pub fn exit_code(&self) -> i32 {
        match self {
            StartError::App(_) => rgunicorn_workers::worker::EXIT_APP_LOAD_ERROR,
            _ => 1,
        }
    }
}

/// `--check-config`: everything `prepare` would verify, changing nothing.
pub fn check(settings: &Settings) -> Result<(), StartError> {
    app::load(&settings.worker.app)?;
    Ok(())
}

/// Set up the process for the master: chdir, raw_env, the error log. The caller then
/// verifies the app loads once, so a bad APP is reported once rather than by every worker.
pub fn prepare(settings: &Settings) -> Result<(), StartError> {
    if let Some(dir) = &settings.chdir {
        std::env::set_current_dir(dir).map_err(|source| StartError::Chdir {
            path: dir.display().to_string(),
            source,
        })?;
    }
    for (key, value) in &settings.raw_env {
        // The master is still single-threaded: nothing reads the environment concurrently.
        std::env::set_var(key, value);
    }
    let worker = &settings.worker;
    rgunicorn_workers::log::init(&worker.error_log, worker.log_level).map_err(|source| {
        StartError::ErrorLog {
            path: target_name(&worker.error_log),
            source,
        }
    })?;
    open_log_files(settings)
}

/// Create the access log file if needed, then give both log files to `--user`/`--group`
/// (gunicorn chowns them too): workers open the access log and reopen both on USR1
/// after they dropped privileges, and must not fail there (a worker that cannot open
/// its access log exits 3 and halts the master). The master calls this at start, on
/// HUP and on USR1 before it signals the workers, so a file logrotate moved away is
/// created here, owned right, rather than in a worker that may not be allowed to.
pub fn open_log_files(settings: &Settings) -> Result<(), StartError> {
    let worker = &settings.worker;
    if let Some(LogTarget::File(path)) = &worker.access_log {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| StartError::AccessLog {
                path: path.display().to_string(),
                source,
            })?;
    }
    if settings.uid.is_none() && settings.gid.is_none() {
        return Ok(());
    }
    for target in [Some(&worker.error_log), worker.access_log.as_ref()] {
        if let Some(LogTarget::File(path)) = target {
            if let Err(err) = std::os::unix::fs::chown(path, settings.uid, settings.gid) {
                // Not fatal here: a worker that then cannot open it says so and exits 3.
                rgunicorn_workers::log_warning!(
                    "cannot give {} to the workers' user (chown): {err}",
                    path.display()
                );
            }
        }
    }
    Ok(())
}

fn target_name(target: &LogTarget) -> String {
    match target {
        LogTarget::Stdout => "-".into(),
        LogTarget::Stderr => "-".into(),
        LogTarget::File(p) => p.display().to_string(),
    }
}
