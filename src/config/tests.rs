//! Unit tests of `load`: parsing, validation messages and precedence, with a fake
//! environment and temp config files (no process state is read except the files).

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Write;
use std::net::IpAddr;
use std::time::Duration;

use rgunicorn_workers::config::{ForwardedAllow, LogLevel, LogTarget};

use super::spec::SPECS;
use super::*;

fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

fn args(list: &[&str]) -> Vec<OsString> {
    std::iter::once("rgunicorn")
        .chain(list.iter().copied())
        .map(OsString::from)
        .collect()
}

fn load_with(list: &[&str], vars: &[(&str, &str)]) -> Result<Command, ConfigError> {
    load(&args(list), &env_of(vars))
}

fn settings(list: &[&str], vars: &[(&str, &str)]) -> Settings {
    match load_with(list, vars) {
        Ok(Command::Run(s)) | Ok(Command::CheckConfig(s)) | Ok(Command::PrintConfig(s)) => s,
        Err(e) => panic!("load failed: {e}"),
    }
}

fn error(list: &[&str], vars: &[(&str, &str)]) -> String {
    match load_with(list, vars) {
        Ok(_) => panic!("{list:?} should fail"),
        Err(e) => {
            assert_eq!(e.exit_code(), 2, "{e}");
            let text = e.to_string();
            assert!(!text.contains('\n'), "one line: {text}");
            text
        }
    }
}

fn config_file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("temp file");
    f.write_all(text.as_bytes()).expect("write temp file");
    f
}

fn tcp(host: &str, port: u16) -> BindAddr {
    BindAddr::Tcp {
        host: host.to_string(),
        port,
    }
}

#[test]
fn defaults_are_gunicorns() {
    let s = settings(&[], &[]);
    assert_eq!(s.binds, [tcp("127.0.0.1", 8000)]);
    assert_eq!(s.workers, 1);
    assert_eq!(s.backlog, 2048);
    assert_eq!(s.umask, None);
    assert!(!s.reuse_port);
    let w = &s.worker;
    assert_eq!(w.app, "welcome");
    assert_eq!(w.threads, 1);
    assert!(!w.python.multithread);
    assert_eq!(w.worker_connections, 1000);
    assert_eq!(w.timeout, Duration::from_secs(30));
    assert_eq!(w.graceful_timeout, Duration::from_secs(30));
    assert_eq!(w.keepalive, Duration::from_secs(2));
    assert_eq!(w.header_timeout, Duration::from_secs(30));
    assert_eq!(w.limits.request_line, 4094);
    assert_eq!(w.limits.fields, 100);
    assert_eq!(w.limits.field_size, 8190);
    assert_eq!(w.limit_request_body, 0);
    assert_eq!(w.access_log, None);
    assert_eq!(w.error_log, LogTarget::Stderr);
    assert_eq!(w.log_level, LogLevel::Info);
    assert_eq!(
        w.forwarded_allow,
        ForwardedAllow::Ips(vec![
            "127.0.0.1".parse::<IpAddr>().unwrap(),
            "::1".parse().unwrap()
        ])
    );
    assert!(matches!(load_with(&[], &[]), Ok(Command::Run(_))));
}

#[test]
fn core_flags_parse() {
    let s = settings(
        &[
            "-b",
            "0.0.0.0:5000",
            "--bind",
            "unix:/tmp/x.sock",
            "-b",
            "[::1]:9000",
            "-b",
            "fd://3",
            "-b",
            "example.com",
            "-w",
            "3",
            "--threads",
            "8",
            "-t",
            "0",
            "--keep-alive",
            "5",
            "--access-logfile",
            "-",
            "--error-logfile",
            "/tmp/err.log",
            "--log-level",
            "DEBUG",
            "-e",
            "A=1",
            "-e",
            "B=x=y",
            "--umask",
            "022",
            "--reuse-port",
            "-k",
            "gthread",
            "--max-worker-memory",
            "512M",
            "--limit-request-line",
            "0",
            "--limit-request-field-size",
            "100",
            "--forwarded-allow-ips",
            "*",
            "-n",
            "site",
            "echo",
        ],
        &[],
    );
    assert_eq!(
        s.binds,
        [
            tcp("0.0.0.0", 5000),
            BindAddr::Unix("/tmp/x.sock".into()),
            tcp("::1", 9000),
            BindAddr::Fd(3),
            tcp("example.com", 8000),
        ]
    );
    assert_eq!(s.workers, 3);
    assert_eq!(s.worker.threads, 8);
    assert_eq!(s.worker.timeout, Duration::ZERO);
    assert_eq!(s.worker.keepalive, Duration::from_secs(5));
    assert_eq!(s.worker.access_log, Some(LogTarget::Stdout));
    assert_eq!(s.worker.error_log, LogTarget::File("/tmp/err.log".into()));
    assert_eq!(s.worker.log_level, LogLevel::Debug);
    assert_eq!(
        s.raw_env,
        [("A".into(), "1".into()), ("B".into(), "x=y".into())]
    );
    assert_eq!(s.umask, Some(0o22));
    assert!(s.reuse_port);
    assert_eq!(s.worker_class, WorkerClass::Gthread);
    assert_eq!(s.max_worker_memory, 512 << 20);
    assert_eq!(s.worker.limits.request_line, 8190);
    assert_eq!(s.worker.limits.field_size, 100);
    assert_eq!(s.worker.forwarded_allow, ForwardedAllow::All);
    assert_eq!(s.worker.proc_name, "site");
    assert_eq!(s.worker.app, "echo");
}

#[test]
fn gunicorn_spellings_are_accepted() {
    let s = settings(
        &[
            "--limit-request-field_size",
            "200",
            "--log-file",
            "-",
            "-m",
            "0o77",
            "--pid",
            "p",
        ],
        &[],
    );
    assert_eq!(s.worker.limits.field_size, 200);
    assert_eq!(s.worker.error_log, LogTarget::Stderr);
    assert_eq!(s.umask, Some(0o77));
    assert_eq!(s.pidfile, Some("p".into()));
    // A flag given twice keeps its last value, as argparse does.
    assert_eq!(settings(&["-w", "2", "-w", "5"], &[]).workers, 5);
}

/// One table of limits (rgunicorn_http::limits), the one the front validates with too:
/// a field size up to 65536 is kept as given (it was clamped to 8190 without a word), 0
/// means no limit per field as in gunicorn, and past the maximum is one line naming it.
#[test]
fn request_limits_follow_the_shared_table() {
    let s = settings(&["--limit-request-field-size", "65536"], &[]);
    assert_eq!(s.worker.limits.field_size, 65536);
    let s = settings(
        &[
            "--limit-request-field-size",
            "0",
            "--limit-request-line",
            "0",
        ],
        &[],
    );
    assert_eq!(
        (s.worker.limits.field_size, s.worker.limits.request_line),
        (0, 8190)
    );
    let err = error(&["--limit-request-field-size", "65537"], &[]);
    assert_eq!(
        err,
        "invalid value \"65537\" for --limit-request-field_size (limit_request_field_size): \
         expected a whole number from 0 to 65536, CRLF included (0 means no limit per field)"
    );
    assert!(!err.contains('\n'));
}

#[test]
fn bad_values_name_the_setting_and_what_is_allowed() {
    assert_eq!(
        error(&["-w", "abc"], &[]),
        r#"invalid value "abc" for --workers (workers): expected a whole number >= 1"#
    );
    assert_eq!(
        error(&["--workers", "0"], &[]),
        r#"invalid value "0" for --workers (workers): expected a whole number >= 1"#
    );
    assert!(error(&["--threads", "0"], &[]).contains("--threads (threads)"));
    assert!(error(&["--limit-request-line", "8191"], &[]).contains("0 to 8190"));
    assert!(error(&["--limit-request-fields", "40000"], &[]).contains("limit_request_fields"));
    assert!(error(&["--log-level", "loud"], &[]).contains("debug, info, warning"));
    assert!(error(&["-b", "host:99999"], &[]).contains(r#""host:99999" for --bind (bind)"#));
    assert!(error(&["-b", "::1:80"], &[]).contains("[IPV6]:PORT"));
    assert!(error(&["-e", "NOEQUALS"], &[]).contains("KEY=VALUE"));
    assert!(error(&["--umask", "0o1000"], &[]).contains("--umask (umask)"));
    assert!(error(&["--forwarded-allow-ips", "1.2.3.4,nope"], &[]).contains(r#""nope""#));
    assert!(error(&["--max-worker-memory", "12X"], &[]).contains("K, M, G or T"));
    assert!(error(&["-t", "-1"], &[]).contains("--timeout (timeout)"));
    assert!(error(&["--header-timeout", "0"], &[]).contains("from 1"));
    assert!(error(&["--chdir", "/definitely/not/here"], &[]).contains("existing directory"));
    assert!(error(&["--user", "no-such-user-rgunicorn"], &[]).contains("--user (user)"));
    assert_eq!(
        error(&["-k", "gevent"], &[]),
        r#"invalid value "gevent" for --worker-class (worker_class): expected one of mio, sync, gthread"#
    );
    assert!(error(&["my-app"], &[]).contains("APP (wsgi_app)"));
    assert!(error(&["app:create_app("], &[]).contains("APP (wsgi_app)"));
    assert!(error(&["--wrokers", "2"], &[]).contains("--wrokers"));
}

#[test]
fn bind_forms() {
    use apply::parse_bind;
    assert_eq!(parse_bind(":5000"), Some(tcp("0.0.0.0", 5000)));
    assert_eq!(parse_bind("[::]"), Some(tcp("::", 8000)));
    assert_eq!(parse_bind("tcp://h:1"), Some(tcp("h", 1)));
    assert_eq!(
        parse_bind("unix://rel.sock"),
        Some(BindAddr::Unix("rel.sock".into()))
    );
    assert_eq!(parse_bind("unix:"), None);
    assert_eq!(parse_bind("fd://-1"), None);
    assert_eq!(parse_bind("[nothex]:80"), None);
    assert_eq!(parse_bind("a b:80"), None);
}

#[test]
fn environment_defaults() {
    let s = settings(&[], &[("PORT", "5000"), ("WEB_CONCURRENCY", "3")]);
    assert_eq!(s.binds, [tcp("0.0.0.0", 5000)]);
    assert_eq!(s.workers, 3);
    // An explicit setting wins, and a bad variable it overrides is ignored.
    let s = settings(
        &["-w", "2", "-b", ":1"],
        &[("PORT", "x"), ("WEB_CONCURRENCY", "x")],
    );
    assert_eq!((s.workers, s.binds.clone()), (2, vec![tcp("0.0.0.0", 1)]));
    assert_eq!(
        error(&[], &[("WEB_CONCURRENCY", "many")]),
        r#"invalid value "many" for WEB_CONCURRENCY (workers): expected a whole number >= 1"#
    );
    assert!(error(&[], &[("PORT", "http")]).contains("PORT (bind)"));
    let s = settings(&[], &[("FORWARDED_ALLOW_IPS", "10.0.0.1")]);
    assert_eq!(
        s.worker.forwarded_allow,
        ForwardedAllow::Ips(vec!["10.0.0.1".parse().unwrap()])
    );
}

#[test]
fn precedence_file_then_env_args_then_command_line() {
    let f = config_file("workers = 2\nthreads = 3\ntimeout = 7\nbind = \"unix:/tmp/f.sock\"\n");
    let path = f.path().to_str().unwrap();
    let vars = [
        ("RGUNICORN_CMD_ARGS", "--threads 5 --timeout 9"),
        ("WEB_CONCURRENCY", "8"),
    ];
    let s = settings(&["-c", path, "--timeout", "11"], &vars);
    assert_eq!(s.workers, 2, "file beats WEB_CONCURRENCY");
    assert_eq!(s.worker.threads, 5, "RGUNICORN_CMD_ARGS beats the file");
    assert_eq!(
        s.worker.timeout,
        Duration::from_secs(11),
        "command line beats all"
    );
    assert_eq!(s.binds, [BindAddr::Unix("/tmp/f.sock".into())]);
    assert_eq!(s.config_file.as_deref(), Some(f.path()));

    // The file may come from RGUNICORN_CMD_ARGS too.
    let cmd_args = format!("-c '{path}' --check-config");
    let got = load_with(&[], &[("RGUNICORN_CMD_ARGS", &cmd_args)]);
    assert!(matches!(got, Ok(Command::CheckConfig(ref s)) if s.workers == 2));
    assert!(error(&[], &[("RGUNICORN_CMD_ARGS", "-w zero")])
        .starts_with("RGUNICORN_CMD_ARGS: invalid value \"zero\" for --workers (workers)"));
    assert!(error(&[], &[("RGUNICORN_CMD_ARGS", "-n 'open")]).contains("unterminated"));
}

#[test]
fn config_file_errors() {
    let f = config_file("wrokers = 2\n");
    let path = f.path().to_str().unwrap();
    assert_eq!(
        error(&["-c", path], &[]),
        format!("{path}: unknown setting \"wrokers\"")
    );
    let f = config_file("workers = \"2\"\n");
    let path = f.path().to_str().unwrap();
    assert_eq!(
        error(&["-c", path], &[]),
        format!("{path}: invalid value \"2\" for workers: expected a whole number >= 1, written without quotes: workers = 2")
    );
    // Overridden on the command line, a bad file value is still an error.
    let f = config_file("threads = 0\n");
    let path = f.path().to_str().unwrap();
    assert!(error(&["-c", path, "--threads", "2"], &[]).contains("for threads:"));
    let f = config_file("workers = [\n");
    let e = error(&["-c", f.path().to_str().unwrap()], &[]);
    assert!(e.contains("line 2"), "{e}");
    assert_eq!(
        error(&["-c", "nope.toml"], &[]),
        "cannot read config file \"nope.toml\": No such file or directory"
    );
    let f = config_file("front = 1\n");
    assert!(error(&["-c", f.path().to_str().unwrap()], &[]).contains("front"));
    let f = config_file("bind = [\"a:1\", 2]\n");
    assert!(error(&["-c", f.path().to_str().unwrap()], &[]).contains("array of strings"));
}

#[test]
fn config_file_types() {
    let front = TestFront::new();
    let f = config_file(&format!(
        "bind = [\"127.0.0.1:1\", \"unix:s\"]\nraw_env = [\"A=1\"]\numask = 0o27\nreuse_port = true\n\
         forwarded_allow_ips = [\"10.0.0.1\", \"10.0.0.2\"]\nmax_worker_memory = \"1G\"\n\
         limit_request_body = 1024\nwsgi_app = \"echo\"\nuser = 0\naccesslog = \"a.log\"\n{}",
        front.table
    ));
    let s = settings(&["-c", f.path().to_str().unwrap()], &[]);
    assert_eq!(s.binds, [tcp("127.0.0.1", 1), BindAddr::Unix("s".into())]);
    assert_eq!(s.raw_env, [("A".into(), "1".into())]);
    assert_eq!(s.umask, Some(0o27));
    assert!(s.reuse_port);
    assert_eq!(s.max_worker_memory, 1 << 30);
    assert_eq!(s.worker.limit_request_body, 1024);
    assert_eq!(s.worker.app, "echo");
    assert_eq!((s.user.as_deref(), s.uid), (Some("0"), Some(0)));
    assert_eq!(s.worker.access_log, Some(LogTarget::File("a.log".into())));
    assert!(s.front.is_some());
    assert!(s.front_table.is_some());
}

#[test]
fn help_and_version_exit_zero() {
    for flag in ["--help", "-v", "--version"] {
        match load_with(&[flag], &[]) {
            Err(e @ ConfigError::Clap(_)) => assert_eq!(e.exit_code(), 0),
            other => panic!("{flag}: {other:?}"),
        }
    }
}

#[test]
fn every_setting_is_handled_and_printed() {
    let s = settings(
        &[
            "--user",
            "0",
            "--group",
            "0",
            "-p",
            "x.pid",
            "--chdir",
            "/",
            "--access-logfile",
            "-",
            "--metrics-bind",
            "127.0.0.1:9100",
            "--statsd-host",
            "localhost",
        ],
        &[],
    );
    let text = s.to_toml();
    for spec in SPECS {
        assert!(
            text.contains(&format!("\n{} = ", spec.name)),
            "{} missing from:\n{text}",
            spec.name
        );
    }
}

#[test]
fn print_config_round_trips() {
    let front = TestFront::new();
    let f = config_file(&front.table);
    let first = settings(
        &[
            "-c",
            f.path().to_str().unwrap(),
            "-b",
            "[::1]:1",
            "-b",
            "unix:/tmp/s",
            "-w",
            "3",
            "--umask",
            "18",
            "-e",
            "K=v w",
            "--access-logfile",
            "-",
            "--forwarded-allow-ips",
            "*",
            "--max-requests",
            "10",
            "--user",
            "0",
            "--chdir",
            "/",
            "-k",
            "sync",
            "echo",
            "--print-config",
        ],
        &[("PORT", "1234")],
    );
    let text = first.to_toml();
    let g = config_file(&text);
    let second = settings(&["-c", g.path().to_str().unwrap()], &[]);
    assert_eq!(
        second.to_toml().lines().skip(2).collect::<Vec<_>>(),
        text.lines().skip(2).collect::<Vec<_>>(),
        "{text}"
    );
    assert_eq!(
        format!("{:?}", second.worker),
        format!("{:?}", first.worker)
    );
    assert_eq!(second.binds, first.binds);
    assert_eq!(second.umask, Some(18));
}

#[test]
fn shipped_config_parses_and_documents_every_default() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/rgunicorn.toml");
    let s = settings(&["-c", shipped], &[]);
    assert_eq!(
        format!("{:?}", s.worker),
        format!("{:?}", Settings::default().worker)
    );
    // Uncommenting every documented `# key = default` line must give the defaults again.
    let text = std::fs::read_to_string(shipped).expect("conf/rgunicorn.toml");
    let defaults_text = Settings::default().to_toml();
    let mut uncommented = String::new();
    for spec in SPECS {
        let prefix = format!("# {} = ", spec.name);
        let line = text.lines().find(|l| l.starts_with(&prefix));
        let line = line.unwrap_or_else(|| panic!("conf/rgunicorn.toml lacks `{prefix}...`"));
        // Settings unset by default are shown with an example value instead.
        if !defaults_text.contains(&format!("# {} is not set", spec.name)) {
            uncommented.push_str(&line[2..]);
            uncommented.push('\n');
        }
    }
    let f = config_file(&uncommented);
    let s = settings(&["-c", f.path().to_str().unwrap()], &[]);
    let defaults = Settings {
        config_file: Some(f.path().to_path_buf()),
        ..Settings::default()
    };
    assert_eq!(s.to_toml(), defaults.to_toml());
}

/// A `[front]` table whose certificate and key exist: the front checks them at load.
struct TestFront {
    _dir: tempfile::TempDir,
    table: String,
}

impl TestFront {
    fn new() -> TestFront {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
            .expect("test certificate");
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, made.cert.pem()).expect("write cert");
        std::fs::write(&key, made.key_pair.serialize_pem()).expect("write key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
        let table = format!(
            "[front]\nlisten = \"127.0.0.1:8443\"\ncertfile = \"{}\"\nkeyfile = \"{}\"\n",
            cert.display(),
            key.display()
        );
        TestFront { _dir: dir, table }
    }
}

/// With the workers' access log on, the front logs only what it answered itself, so each
/// request is logged once (issue 12: every proxied request was logged twice); an
/// explicit `access_log` in `[front]` keeps every response.
#[test]
fn the_front_leaves_the_workers_answers_to_their_access_log() {
    let front = TestFront::new();
    let both = config_file(&format!("accesslog = \"-\"\n{}", front.table));
    let s = settings(&["-c", both.path().to_str().unwrap()], &[]);
    assert!(!s.front.expect("front").log_upstream_answers);
    let only_front = config_file(&front.table);
    let s = settings(&["-c", only_front.path().to_str().unwrap()], &[]);
    assert!(s.front.expect("front").log_upstream_answers);
    let explicit = config_file(&format!(
        "accesslog = \"-\"\n{}access_log = \"-\"\n",
        front.table
    ));
    let s = settings(&["-c", explicit.path().to_str().unwrap()], &[]);
    assert!(s.front.expect("front").log_upstream_answers);
}

/// Workers running a Python app answer on app threads: the front is told, so it sends
/// them short batches. The APP may come from the command line or the file.
#[test]
fn the_front_knows_when_the_workers_run_a_python_app() {
    let front = TestFront::new();
    let file = config_file(&front.table);
    let path = file.path().to_str().unwrap();
    let s = settings(&["-c", path], &[]);
    assert!(!s.front.expect("front").upstream_app_threads);
    let s = settings(&["-c", path, "echo"], &[]);
    assert!(!s.front.expect("front").upstream_app_threads);
    let s = settings(&["-c", path, "myproject.app:app"], &[]);
    assert!(s.front.expect("front").upstream_app_threads);
    let python = config_file(&format!("wsgi_app = \"mysite.wsgi\"\n{}", front.table));
    let s = settings(&["-c", python.path().to_str().unwrap()], &[]);
    assert!(s.front.expect("front").upstream_app_threads);
    // rgunicorn-front alone, with the same files: it has only the file's wsgi_app.
    let alone = |file: &tempfile::NamedTempFile| {
        super::front_alone(file.path())
            .expect("front settings")
            .upstream_app_threads
    };
    assert!(alone(&python));
    assert!(!alone(&file));
    let builtin = config_file(&format!("wsgi_app = \"echo\"\n{}", front.table));
    assert!(!alone(&builtin));
}

#[test]
fn python_app_settings() {
    let s = settings(
        &[
            "--preload",
            "--pythonpath",
            "lib, vendor/src",
            "-w",
            "3",
            "--threads",
            "1",
            "pkg.app:create_app('x')",
        ],
        &[],
    );
    assert!(s.preload_app);
    assert_eq!(s.worker.app, "pkg.app:create_app('x')");
    assert_eq!(
        s.worker.python.pythonpath,
        [std::path::PathBuf::from("lib"), "vendor/src".into()]
    );
    assert!(s.worker.python.multiprocess);
    assert!(!s.worker.python.multithread);
    // gunicorn's `module` alone names its `application`.
    assert_eq!(settings(&["mysite.wsgi"], &[]).worker.app, "mysite.wsgi");
    let printed = settings(&["--reload", "--pythonpath", "a,b"], &[]).to_toml();
    assert!(printed.contains("reload = true"), "{printed}");
    assert!(printed.contains(r#"pythonpath = ["a", "b"]"#), "{printed}");
    assert!(error(&["--preload", "--reload"], &[]).contains("--reload (reload)"));
}

#[test]
fn a_quoted_number_in_the_config_file_says_the_quotes_are_the_problem() {
    let f = config_file("workers = \"3\"\n");
    let err = error(&["-c", f.path().to_str().expect("utf-8 path")], &[]);
    assert!(
        err.ends_with("invalid value \"3\" for workers: expected a whole number >= 1, written without quotes: workers = 3"),
        "{err}"
    );
    let f = config_file("preload_app = \"true\"\n");
    let err = error(&["-c", f.path().to_str().expect("utf-8 path")], &[]);
    assert!(
        err.contains("written without quotes: preload_app = true"),
        "{err}"
    );
    // A string that is not a number is just wrong, quotes or not.
    let f = config_file("workers = \"many\"\n");
    let err = error(&["-c", f.path().to_str().expect("utf-8 path")], &[]);
    assert!(!err.contains("without quotes"), "{err}");
}
