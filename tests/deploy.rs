//! The deployment files (issue 13): `deploy/k8s/` validated offline against the
//! Kubernetes schemas (kubernetes-validate, from PyPI) and checked to agree with the
//! rgunicorn config it ships; `deploy/systemd/` verified by systemd's own parser, and
//! socket activation serving through `systemd-socket-activate` with the service's own
//! command line, while the master tells systemd READY, RELOADING and STOPPING.
//! `.ci/run` installs the tools.

mod common;

use std::io::Read;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{rgunicorn_bin, Reader, Resp, WELCOME, WELCOME_PATH};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo("deploy/k8s"))
        .expect("deploy/k8s")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn run(cmd: &mut Command, what: &str) -> std::process::Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {what} ({e})"))
}

#[test]
fn the_kubernetes_manifests_validate_and_agree_with_the_config_they_ship() {
    let files = manifests();
    assert!(files.len() >= 5, "{files:?}");
    let out = run(
        Command::new(common::tools::python())
            .args(["-m", "kubernetes_validate", "--strict"])
            .arg("--quiet")
            .args(&files),
        "kubernetes-validate",
    );
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Every document as JSON, by kind (PyYAML comes with kubernetes-validate).
    let out = run(
        Command::new(common::tools::python())
            .arg("-c")
            .arg("import json, sys, yaml; print(json.dumps([d for f in sys.argv[1:] for d in yaml.safe_load_all(open(f)) if d]))")
            .args(&files),
        "python3 with PyYAML",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    let kind = |k: &str| {
        docs.iter()
            .find(|d| d["kind"] == k)
            .unwrap_or_else(|| panic!("no {k} in deploy/k8s"))
    };
    for k in [
        "Deployment",
        "Service",
        "Secret",
        "ConfigMap",
        "HorizontalPodAutoscaler",
    ] {
        kind(k);
    }

    // The shipped config is one rgunicorn accepts.
    let config_text = kind("ConfigMap")["data"]["rgunicorn.toml"]
        .as_str()
        .expect("rgunicorn.toml in the ConfigMap");
    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = dir.path().join("rgunicorn.toml");
    std::fs::write(&config_path, config_text).expect("write config");
    let out = run(
        Command::new(rgunicorn_bin())
            .arg("--check-config")
            .arg("-c")
            .arg(&config_path),
        "rgunicorn",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config: toml::Table = config_text.parse().expect("TOML");
    let port_of = |addr: &str| -> i64 {
        addr.rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port")
    };
    let metrics_port = port_of(config["metrics_bind"].as_str().expect("metrics_bind"));
    let https_port = port_of(config["front"]["listen"].as_str().expect("front.listen"));
    let graceful = config["graceful_timeout"]
        .as_integer()
        .expect("graceful_timeout");

    let pod = &kind("Deployment")["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let port = |name: &str| {
        container["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["containerPort"].as_i64())
            .unwrap_or_else(|| panic!("no container port {name}"))
    };
    assert_eq!(port("metrics"), metrics_port, "probes reach metrics_bind");
    assert_eq!(port("https"), https_port, "the https port is the front's");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["readinessProbe"]["httpGet"]["port"], "metrics");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["livenessProbe"]["httpGet"]["port"], "metrics");
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let pause: i64 = container["lifecycle"]["preStop"]["exec"]["command"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("a preStop sleep");
    let grace = pod["terminationGracePeriodSeconds"]
        .as_i64()
        .expect("terminationGracePeriodSeconds");
    assert!(
        grace > pause + graceful + 1,
        "the grace period ({grace} s) must cover the pause ({pause} s) and graceful_timeout ({graceful} s)"
    );
    let service = &kind("Service")["spec"];
    let targets: Vec<&str> = service["ports"]
        .as_array()
        .expect("service ports")
        .iter()
        .filter_map(|p| p["targetPort"].as_str())
        .collect();
    assert!(targets.contains(&"https") && !targets.contains(&"metrics"));
    assert_eq!(
        kind("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"],
        kind("Deployment")["metadata"]["name"]
    );
}

/// The units as they would be installed, with ExecStart pointing at this build.
fn installed_units(dir: &Path) -> (PathBuf, PathBuf) {
    let service = std::fs::read_to_string(repo("deploy/systemd/rgunicorn.service"))
        .expect("rgunicorn.service")
        .replace(
            "/usr/local/bin/rgunicorn",
            rgunicorn_bin().to_str().expect("utf8"),
        );
    let socket =
        std::fs::read_to_string(repo("deploy/systemd/rgunicorn.socket")).expect("rgunicorn.socket");
    let (s, v) = (dir.join("rgunicorn.socket"), dir.join("rgunicorn.service"));
    std::fs::write(&s, socket).expect("write");
    std::fs::write(&v, service).expect("write");
    (s, v)
}

#[test]
fn the_systemd_units_pass_systemds_own_checks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (socket, service) = installed_units(dir.path());
    let out = run(
        Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&socket)
            .arg(&service),
        "systemd-analyze (apt-get install systemd)",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Unknown keys and bad values are only warnings to systemd: none allowed here.
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("rgunicorn."))
        .collect();
    assert!(warnings.is_empty(), "{stderr}");
    let text = std::fs::read_to_string(&service).expect("read");
    assert!(text.contains("\nType=notify\n") && text.contains("\nKillMode=mixed\n"));
}

/// Wait for one sd_notify datagram.
fn notified(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).expect("an sd_notify message in time");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn socket_activation_serves_with_the_services_command_and_notifies_systemd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (socket_unit, service_unit) = installed_units(dir.path());
    let socket_text = std::fs::read_to_string(&socket_unit).expect("read");
    assert!(
        socket_text.lines().any(|l| l.starts_with("ListenStream=")),
        "{socket_text}"
    );
    // The service's own command line, with its config file here.
    let service_text = std::fs::read_to_string(&service_unit).expect("read");
    let exec = service_text
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let config = dir.path().join("rgunicorn.toml");
    std::fs::write(&config, "workers = 2\n").expect("config");
    let mut argv: Vec<String> = exec
        .split_whitespace()
        .map(|a| {
            a.replace(
                "/etc/rgunicorn/rgunicorn.toml",
                config.to_str().expect("utf8"),
            )
        })
        .collect();
    // A unix socket of this test's own in place of the unit's 0.0.0.0:8000: a "free" TCP
    // port found by binding port 0 can be taken by another process before
    // systemd-socket-activate binds it, and the test would then talk to a stranger.
    let listen = dir.path().join("activated.sock");
    let notify_path = dir.path().join("notify");
    let notify = UnixDatagram::bind(&notify_path).expect("notify socket");
    notify
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut cmd = Command::new("systemd-socket-activate");
    cmd.arg("-l")
        .arg(&listen)
        .arg("-E")
        .arg(format!("NOTIFY_SOCKET={}", notify_path.display()))
        .args(argv.drain(..))
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    // Killed however the test ends: a failed assertion must not leave a server running.
    let mut child = Kill(
        cmd.spawn()
            .expect("systemd-socket-activate (apt-get install systemd)"),
    );
    let addr = listen.clone();
    // The first connection starts the service (it waits in systemd's socket's backlog).
    let started = Instant::now();
    let first = std::thread::spawn(move || {
        // Until systemd-socket-activate has bound the port.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !addr.exists() {
            assert!(
                Instant::now() < deadline,
                "nothing listens on {}",
                addr.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        get_unix(&addr, WELCOME_PATH)
    });
    assert_eq!(notified(&notify), "READY=1");
    let resp = first.join().expect("first request");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), WELCOME);
    assert!(started.elapsed() < Duration::from_secs(20));
    for _ in 0..5 {
        if UnixStream::connect(&listen).is_err() {
            let _ = child.0.kill();
            let mut log = String::new();
            if let Some(mut err) = child.0.stderr.take() {
                let _ = err.read_to_string(&mut log);
            }
            panic!("refused after READY=1:\n{log}");
        }
        assert_eq!(get_unix(&listen, WELCOME_PATH).status, 200);
    }
    let pid = child.0.id() as i32; // systemd-socket-activate execs the service in place
                                   // SAFETY: kill(2) on the process this test started.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    assert_eq!(notified(&notify), "RELOADING=1");
    assert_eq!(notified(&notify), "READY=1");
    assert_eq!(get_unix(&listen, WELCOME_PATH).status, 200);
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(notified(&notify), "STOPPING=1");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut log = String::new();
    if let Some(mut err) = child.0.stderr.take() {
        let _ = err.read_to_string(&mut log);
    }
    drop(child);
    assert!(status.success(), "{status}\n{log}");
    assert!(
        log.contains("Using the sockets systemd passed (LISTEN_FDS)"),
        "{log}"
    );
}

/// One GET over a unix socket, `Connection: close`.
fn get_unix(path: &Path, target: &str) -> Resp {
    let mut stream = UnixStream::connect(path).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    std::io::Write::write_all(
        &mut stream,
        format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .expect("write");
    Reader::new(stream).response(false).expect("response")
}
