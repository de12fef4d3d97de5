//! The real `rgunicorn` binary's configuration behaviour: `--version`, `--check-config`,
//! `--print-config`, `-c` files, `RGUNICORN_CMD_ARGS`, and the one-line, exit-2 errors for
//! bad values. Nothing here binds a socket: every run stops after loading the settings.
//! Parsing details are unit-tested beside the code (src/config/tests.rs).

use std::io::Write;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_rgunicorn");

/// Variables that change defaults: cleared so the host's environment cannot leak in.
const ENV_INPUTS: &[&str] = &[
    "PORT",
    "WEB_CONCURRENCY",
    "FORWARDED_ALLOW_IPS",
    "RGUNICORN_CMD_ARGS",
];

fn run_env(args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    for var in ENV_INPUTS {
        cmd.env_remove(var);
    }
    cmd.args(args).envs(vars.iter().copied());
    cmd.output().expect("run rgunicorn")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A successful run that prints nothing on stderr.
fn ok(args: &[&str], vars: &[(&str, &str)]) -> String {
    let out = run_env(args, vars);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    assert_eq!(stderr(&out), "", "{args:?}");
    stdout(&out)
}

/// A refused start: exit 2, nothing on stdout, exactly one line on stderr, returned.
fn refused(args: &[&str], vars: &[(&str, &str)]) -> String {
    let out = run_env(args, vars);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert_eq!(stdout(&out), "", "{args:?}");
    assert_eq!(
        err.lines().count(),
        1,
        "{args:?}: one line expected: {err:?}"
    );
    assert!(err.starts_with("rgunicorn: error: "), "{err}");
    err.trim_end().to_string()
}

fn toml_file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("temp file");
    f.write_all(text.as_bytes()).expect("write temp file");
    f
}

/// `--print-config` output without its leading comment lines (which name the file).
fn settings_lines(text: &str) -> Vec<String> {
    text.lines()
        .skip_while(|l| l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[test]
fn version_and_help_exit_zero() {
    for flag in ["-v", "--version"] {
        let out = ok(&[flag], &[]);
        assert_eq!(out.trim(), concat!("rgunicorn ", env!("CARGO_PKG_VERSION")));
    }
    let help = ok(&["--help"], &[]);
    for flag in [
        "--bind",
        "--workers",
        "--limit-request-field_size",
        "--check-config",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn check_config_is_silent_on_success() {
    assert_eq!(ok(&["--check-config"], &[]), "");
    assert_eq!(
        ok(
            &[
                "--check-config",
                "-w",
                "3",
                "-b",
                "unix:/tmp/x.sock",
                "echo"
            ],
            &[]
        ),
        ""
    );
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/rgunicorn.toml");
    assert_eq!(ok(&["--check-config", "-c", shipped], &[]), "");
}

#[test]
fn bad_values_stop_the_start_with_one_line() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["-w", "abc"],
            r#"rgunicorn: error: invalid value "abc" for --workers (workers): expected a whole number >= 1"#,
        ),
        (&["--threads", "0"], "--threads (threads)"),
        (&["-t", "-5"], "--timeout (timeout)"),
        (
            &["-b", "localhost:http"],
            r#""localhost:http" for --bind (bind)"#,
        ),
        (&["--log-level", "loud"], "--log-level (loglevel)"),
        (&["-k", "gevent"], "expected one of mio, sync, gthread"),
        (
            &["--limit-request-line", "9000"],
            "--limit-request-line (limit_request_line)",
        ),
        (&["--umask", "0o1777"], "--umask (umask)"),
        (&["-e", "=x"], "--env (raw_env)"),
        (
            &["--max-worker-memory", "lots"],
            "--max-worker-memory (max_worker_memory)",
        ),
        (&["not-an-app"], "APP (wsgi_app)"),
        (&["--check-config", "-w", "0"], "--workers (workers)"),
        (&["--no-such-flag"], "--no-such-flag"),
        (
            &["-c", "nope.toml"],
            r#"rgunicorn: error: cannot read config file "nope.toml": No such file or directory"#,
        ),
    ];
    for (args, expected) in cases {
        let err = refused(args, &[]);
        assert!(
            err.contains(expected),
            "{args:?}: {err:?} lacks {expected:?}"
        );
    }
}

#[test]
fn config_file_values_and_errors() {
    let f = toml_file("workers = 3\nbind = [\"127.0.0.1:5000\", \"unix:/tmp/a.sock\"]\n");
    let path = f.path().to_str().expect("utf-8 temp path");
    let printed = ok(&["-c", path, "--print-config"], &[]);
    assert!(printed.contains("\nworkers = 3\n"), "{printed}");
    assert!(printed.contains(r#"bind = ["127.0.0.1:5000", "unix:/tmp/a.sock"]"#));

    let f = toml_file("wrokers = 2\n");
    let path = f.path().to_str().expect("utf-8 temp path");
    assert_eq!(
        refused(&["-c", path], &[]),
        format!("rgunicorn: error: {path}: unknown setting \"wrokers\"")
    );
    let f = toml_file("timeout = \"30\"\n");
    let path = f.path().to_str().expect("utf-8 temp path");
    assert_eq!(
        refused(&["--check-config", "-c", path], &[]),
        format!(
            "rgunicorn: error: {path}: invalid value \"30\" for timeout: \
             expected a whole number of seconds from 0 to 31536000 (0 disables), \
             written without quotes: timeout = 30"
        )
    );
    let f = toml_file("workers = = 1\n");
    let err = refused(&["-c", f.path().to_str().expect("utf-8 temp path")], &[]);
    assert!(err.contains("line 1"), "{err}");
}

#[test]
fn precedence_and_environment() {
    let f = toml_file("workers = 2\nthreads = 2\ntimeout = 10\n");
    let path = f.path().to_str().expect("utf-8 temp path");
    let printed = ok(
        &["-c", path, "--print-config", "--timeout", "12"],
        &[
            ("RGUNICORN_CMD_ARGS", "--threads 6 --timeout 11"),
            ("WEB_CONCURRENCY", "9"),
        ],
    );
    assert!(
        printed.contains("\nworkers = 2\n"),
        "the file beats WEB_CONCURRENCY"
    );
    assert!(
        printed.contains("\nthreads = 6\n"),
        "RGUNICORN_CMD_ARGS beats the file"
    );
    assert!(
        printed.contains("\ntimeout = 12\n"),
        "the command line beats all"
    );

    let printed = ok(
        &["--print-config"],
        &[("PORT", "5000"), ("WEB_CONCURRENCY", "3")],
    );
    assert!(printed.contains("bind = [\"0.0.0.0:5000\"]"), "{printed}");
    assert!(printed.contains("\nworkers = 3\n"));

    // The config file may be named by RGUNICORN_CMD_ARGS.
    let cmd_args = format!("-c '{path}'");
    let printed = ok(&["--print-config"], &[("RGUNICORN_CMD_ARGS", &cmd_args)]);
    assert!(printed.contains("\nworkers = 2\n"));

    let err = refused(&[], &[("RGUNICORN_CMD_ARGS", "-w none")]);
    assert!(
        err.contains("RGUNICORN_CMD_ARGS: invalid value \"none\" for --workers"),
        "{err}"
    );
    let err = refused(&[], &[("WEB_CONCURRENCY", "lots")]);
    assert!(err.contains("WEB_CONCURRENCY (workers)"), "{err}");
}

#[test]
fn print_config_round_trips_through_c() {
    let first = ok(
        &[
            "--print-config",
            "-b",
            "[::1]:9000",
            "-b",
            "unix:/tmp/rt.sock",
            "-w",
            "3",
            "--threads",
            "2",
            "--umask",
            "022",
            "-e",
            "GREETING=hello world",
            "--access-logfile",
            "-",
            "--forwarded-allow-ips",
            "10.0.0.1,10.0.0.2",
            "--limit-request-body",
            "1M",
            "--max-requests",
            "500",
            "--max-requests-jitter",
            "50",
            "--reuse-port",
            "-k",
            "gthread",
            "-n",
            "site",
            "--pid",
            "/tmp/rt.pid",
            "echo",
        ],
        &[],
    );
    let f = toml_file(&first);
    let second = ok(
        &["--print-config", "-c", f.path().to_str().expect("utf-8")],
        &[],
    );
    assert_eq!(settings_lines(&second), settings_lines(&first), "{first}");
    assert!(first.contains("umask = 0o022"), "{first}");
    assert!(first.contains("limit_request_body = 1048576"), "{first}");
}

#[test]
fn shipped_config_files_load() {
    let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/conf");
    let mut seen = 0;
    for entry in std::fs::read_dir(conf).expect("conf/") {
        let path = entry.expect("conf/ entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let path = path.to_str().expect("utf-8 path");
            let printed = ok(&["--print-config", "-c", path], &[]);
            assert!(printed.contains("\nworkers = "), "{path}");
            seen += 1;
        }
    }
    assert!(seen >= 1, "no conf/*.toml found");
}

/// start.sh relies on this: `-b` replaces the file's whole bind list (gunicorn's
/// precedence), it does not add to it.
#[test]
fn command_line_bind_replaces_the_files_list() {
    let f = toml_file("bind = [\"unix:/tmp/f.sock\", \"0.0.0.0:5000\"]\n");
    let path = f.path().to_str().expect("utf-8 temp path");
    let printed = ok(&["--print-config", "-c", path, "-b", "127.0.0.1:6000"], &[]);
    assert!(
        printed.contains("\nbind = [\"127.0.0.1:6000\"]\n"),
        "{printed}"
    );
}
