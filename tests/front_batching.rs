//! How the front shares upstream connections between clients (issue 12): requests that
//! arrive in one pass of an event loop cross to the workers together, on one connection,
//! yet no client's answer waits behind another client's: not behind a slow app request,
//! not behind a large answer its client does not read.
//!
//! To put requests of several clients into one pass, a test stops the front (SIGSTOP),
//! writes every client's request, and lets it go on (SIGCONT): the loop's next poll then
//! reports them all at once. The scripted upstream ([`front_support::TestUpstream`]) says
//! which connection each request came on, and in which place.

mod front_support;

use std::io::{BufReader, Write};
use std::time::{Duration, Instant};

use front_support::*;

/// Write each `(client, request)` while the front is stopped, so one pass takes them all.
fn in_one_pass(front: &Front, writes: Vec<(&mut Tls, String)>) {
    let ports: Vec<u16> = writes
        .iter()
        .map(|(tls, _)| tls.sock.local_addr().expect("client address").port())
        .collect();
    // Whatever the front still had to read (the end of a handshake) is read first.
    wait_unread(front.addr.port(), &ports, |n| n == 0);
    front.proc.signal(libc::SIGSTOP);
    wait_stopped(front.proc.child.id());
    for (tls, request) in writes {
        tls.write_all(request.as_bytes()).expect("write");
        tls.flush().expect("flush");
    }
    // The kernel may hand loopback segments over a moment after `write` returns.
    wait_unread(front.addr.port(), &ports, |n| n > 0);
    front.proc.signal(libc::SIGCONT);
}

/// Wait until the bytes the front has not read yet on each connection from a client port
/// in `ports` (the receive queue of its side, in /proc/net/tcp) satisfy `ready`.
fn wait_unread(front_port: u16, ports: &[u16], ready: impl Fn(usize) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let port = |addr: &str| {
        addr.rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok())
    };
    loop {
        let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
        let done = table
            .lines()
            .skip(1)
            .filter(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let unread = fields
                    .get(4)
                    .and_then(|q| q.split(':').nth(1))
                    .and_then(|n| usize::from_str_radix(n, 16).ok());
                fields.len() > 4
                    && port(fields[1]) == Some(front_port)
                    && port(fields[2]).is_some_and(|p| ports.contains(&p))
                    && unread.is_some_and(&ready)
            })
            .count();
        if done == ports.len() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the front's receive queues never settled"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn request(target: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n")
}

/// One GET on an open connection, and its answer.
fn get_on(tls: &mut Tls, target: &str) -> Resp {
    tls.write_all(request(target).as_bytes()).expect("write");
    tls.flush().expect("flush");
    read_response(tls, false).expect("answer")
}

/// Wait until every thread of `pid` is stopped (a signal takes effect a moment after
/// `kill` returns).
fn wait_stopped(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the front's threads");
        let running = tasks.filter_map(Result::ok).any(|task| {
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            // The state follows the command name in parentheses.
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next());
            state != Some("T") && state != Some("t")
        });
        if !running {
            return;
        }
        assert!(Instant::now() < deadline, "the front did not stop");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The request `target`, once the upstream has taken it.
fn wait_seen(upstream: &TestUpstream, target: &str) -> Seen {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(seen) = upstream.find(target) {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "{target} never reached the upstream"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Add a Python `wsgi_app` to the front's file and have it read on HUP: `rgunicorn-front`
/// alone then knows its workers run their app on app threads.
fn tell_app_threads(front: &Front) {
    let text = std::fs::read_to_string(&front.config).expect("read config");
    std::fs::write(
        &front.config,
        format!("wsgi_app = \"myproject.app:app\"\n{text}"),
    )
    .expect("write config");
    front.proc.signal(libc::SIGHUP);
    assert!(front
        .proc
        .wait_line("HUP: reloaded", Duration::from_secs(10))
        .is_some());
}

/// Files of process `pid` that are deleted yet open: the front's temp files.
fn temp_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the front's descriptors")
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().ends_with("(deleted)"))
        .count()
}

/// Read a large answer whole, and nothing after it (buffered: what follows is dropped).
fn read_big(tls: &mut Tls) -> Resp {
    read_response(&mut BufReader::with_capacity(256 * 1024, tls), false).expect("big answer")
}

/// Larger than the socket buffers between the front and a client that does not read, so
/// the answer cannot all leave the upstream connection without the front keeping it.
const BIG: usize = 16 << 20;

/// Two clients ask for a large answer in one pass, so both ride one upstream connection.
/// Returns them in their order there: the first with what the upstream saw, the second
/// with its target (the upstream takes it once it has written the first answer whole).
fn two_on_one_connection(scripted: &Scripted) -> ((Tls, Seen), (Tls, String)) {
    let (upstream, front, config) = (&scripted.upstream, &scripted.front, &scripted.client);
    let mut x = connect(config, front.addr);
    let mut y = connect(config, front.addr);
    let (tx, ty) = (format!("/big/{BIG}?x"), format!("/big/{BIG}?y"));
    in_one_pass(front, vec![(&mut x, request(&tx)), (&mut y, request(&ty))]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(first) = upstream.find(&tx) {
            return ((x, first), (y, ty));
        }
        if let Some(first) = upstream.find(&ty) {
            return ((y, first), (x, tx));
        }
        assert!(
            Instant::now() < deadline,
            "the requests never reached the upstream"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The second request of [`two_on_one_connection`] came right behind the first.
fn assert_behind(upstream: &TestUpstream, first: &Seen, second: &str) {
    let second = wait_seen(upstream, second);
    assert_eq!(
        (second.conn, second.n),
        (first.conn, first.n + 1),
        "one pass, yet not one connection: {first:?} {second:?}"
    );
}

/// A client that does not read a large answer holds up no other client whose request rode
/// behind it on the same upstream connection: the front takes the large answer into a temp
/// file (nginx's proxy buffering), the client behind gets its whole answer and 20 more
/// while the first has read nothing, the file closes once the first has read it all, and
/// the first client's next request, while it is backed up, goes on a connection of its own.
#[test]
fn a_client_that_does_not_read_holds_up_no_other_client() {
    let scripted = Scripted::start("threads = 1");
    let (upstream, front, config) = (&scripted.upstream, &scripted.front, &scripted.client);
    let pid = front.proc.child.id();
    let ((mut slow, first), (mut quick, second)) = two_on_one_connection(&scripted);
    let answer = read_big(&mut quick);
    assert_eq!(
        answer.body.len(),
        BIG,
        "the answer behind, while the first reads nothing"
    );
    assert_behind(upstream, &first, &second);
    assert_eq!(
        temp_files(pid),
        1,
        "the first answer waits in one temp file"
    );
    for i in 0..20 {
        let again = get_on(&mut quick, &format!("/count?quick{i}"));
        assert_eq!(
            again.status, 200,
            "request {i} while the slow client reads nothing"
        );
    }
    // The slow client, backed up, asks again with two others in one pass: its request goes
    // alone, the others share a connection.
    let mut other = connect(config, front.addr);
    let (a, b, c) = ("/count?slow-next", "/count?quick-next", "/count?other-next");
    in_one_pass(
        front,
        vec![
            (&mut slow, request(a)),
            (&mut quick, request(b)),
            (&mut other, request(c)),
        ],
    );
    assert_eq!(read_response(&mut quick, false).expect("b").status, 200);
    assert_eq!(read_response(&mut other, false).expect("c").status, 200);
    let (a, b, c) = (
        wait_seen(upstream, a),
        wait_seen(upstream, b),
        wait_seen(upstream, c),
    );
    assert!(
        a.conn != b.conn && a.conn != c.conn,
        "the backed-up client shared a connection: {a:?} {b:?} {c:?}"
    );
    assert_eq!(b.conn, c.conn, "the others did not share one: {b:?} {c:?}");
    // The large answer whole, then the next one (one buffered reader for both).
    let mut reader = BufReader::with_capacity(256 * 1024, &mut slow);
    let whole = read_response(&mut reader, false).expect("the large answer");
    assert_eq!(whole.body.len(), BIG);
    assert!(
        whole.body.iter().all(|&b| b == b'x'),
        "the large answer changed"
    );
    let next = read_response(&mut reader, false).expect("the next answer");
    assert_eq!(next.text(), format!("conn={} req={}", a.conn, a.n));
    let deadline = Instant::now() + Duration::from_secs(10);
    while temp_files(pid) > 0 {
        assert!(
            Instant::now() < deadline,
            "the temp file outlived its answer"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The control for the test above: with `max_temp_file_size = 0` (no temp file), the
/// answer behind the large one comes only once the first client has read that one: the
/// scenario above is head-of-line blocking, and the temp file is what removes it.
#[test]
fn without_a_temp_file_the_answer_behind_waits_for_the_slow_client() {
    let scripted = Scripted::start("threads = 1\nmax_temp_file_size = 0");
    let ((mut slow, first), (mut quick, second)) = two_on_one_connection(&scripted);
    quick
        .sock
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let mut byte = [0u8; 1];
    let read = std::io::Read::read(&mut quick, &mut byte);
    assert!(
        read.is_err(),
        "an answer came while the large one before it was unread: {read:?}, upstream saw {:?}",
        scripted.upstream.seen.lock().expect("log")
    );
    assert!(scripted.upstream.find(&second).is_none());
    assert_eq!(read_big(&mut slow).body.len(), BIG);
    assert_behind(&scripted.upstream, &first, &second);
    quick
        .sock
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    assert_eq!(read_big(&mut quick).body.len(), BIG);
}

/// Requests pipelined by one client cross to the workers together, not one round trip
/// each: the scripted upstream sees most of them already waiting behind the previous one.
#[test]
fn pipelined_requests_cross_to_the_workers_together() {
    let scripted = Scripted::start("threads = 1");
    let (upstream, front, config) = (&scripted.upstream, &scripted.front, &scripted.client);
    let mut tls = connect(config, front.addr);
    let n = 200;
    let batch: String = (0..n).map(|_| request("/count")).collect();
    tls.write_all(batch.as_bytes()).expect("write");
    tls.flush().expect("flush");
    for i in 1..=n {
        let resp = read_response(&mut tls, false).expect("response");
        assert_eq!(resp.status, 200);
        assert_eq!(resp.text(), format!("conn=1 req={i}"), "out of order");
    }
    let waiting = upstream.pipelined.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        waiting >= n / 2,
        "only {waiting} of {n} requests were waiting behind another at the upstream"
    );
}

/// Requests of different clients that arrive in one pass share an upstream connection
/// (they reach the worker in one send).
#[test]
fn requests_of_one_pass_share_a_connection() {
    let scripted = Scripted::start("threads = 1");
    let per_conn = requests_by_connection(&scripted, 4);
    assert_eq!(
        per_conn.len(),
        1,
        "four requests of one pass used {per_conn:?}"
    );
}

/// `n` clients' requests in one pass, each answered 200: how many the upstream took on
/// each of its connections.
fn requests_by_connection(
    scripted: &Scripted,
    n: usize,
) -> std::collections::BTreeMap<usize, usize> {
    let (upstream, front, config) = (&scripted.upstream, &scripted.front, &scripted.client);
    let mut clients: Vec<Tls> = (0..n).map(|_| connect(config, front.addr)).collect();
    let writes = clients
        .iter_mut()
        .enumerate()
        .map(|(i, tls)| (tls, request(&format!("/count?c{i}"))))
        .collect();
    in_one_pass(front, writes);
    for tls in &mut clients {
        assert_eq!(read_response(tls, false).expect("answer").status, 200);
    }
    let mut per_conn = std::collections::BTreeMap::new();
    for i in 0..n {
        *per_conn
            .entry(wait_seen(upstream, &format!("/count?c{i}")).conn)
            .or_default() += 1;
    }
    per_conn
}

/// Requests of different clients may share an upstream connection, but never queue
/// behind one the worker is already running: a client that asks while another waits for a
/// slow answer gets its own answer first, on another connection.
#[test]
fn a_slow_request_holds_up_no_other_client() {
    let scripted = Scripted::start("threads = 1");
    let (front, config) = (&scripted.front, &scripted.client);
    let mut slow = connect(config, front.addr);
    write!(slow, "{}", request("/slow/1500")).expect("write");
    slow.flush().expect("flush");
    let slow_answered = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let waiter = {
        let answered = slow_answered.clone();
        std::thread::spawn(move || {
            let resp = read_response(&mut slow, false).expect("slow answer");
            answered.store(true, std::sync::atomic::Ordering::SeqCst);
            resp.text()
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let mut quick = connect(config, front.addr);
    write!(quick, "{}", request("/count")).expect("write");
    let resp = read_response(&mut quick, false).expect("quick answer");
    assert_eq!(
        resp.text(),
        "conn=2 req=1",
        "not on the slow request's connection"
    );
    assert!(
        !slow_answered.load(std::sync::atomic::Ordering::SeqCst),
        "the quick answer waited for the slow one"
    );
    assert_eq!(waiter.join().expect("waiter"), "conn=1 req=1");
}

/// Workers running a Python app answer a connection's requests one by one, on app
/// threads: a pass's requests then share a connection 4 at most, however the answers come
/// back. `rgunicorn-front` alone knows it from its file's `wsgi_app` (here added, then
/// read on HUP). With a built-in app there, the eight share one connection.
#[test]
fn workers_on_app_threads_get_batches_of_at_most_four() {
    let scripted = Scripted::start("threads = 1");
    let front = &scripted.front;
    tell_app_threads(front);
    let per_conn = requests_by_connection(&scripted, 8);
    assert_eq!(
        per_conn.values().copied().collect::<Vec<_>>(),
        [4, 4],
        "eight requests of one pass, by connection: {per_conn:?}"
    );
}

/// A worker whose app threads are all held up hands a request the front offered back,
/// unstarted (`rgunicorn_http::resend`): the front sends it again, on a new connection
/// and without the offer, and the client sees only the second answer. The front offers
/// only to workers on app threads (here known from its file's `wsgi_app`), a client
/// cannot make the offer itself, and a request with a body is never offered (the front
/// could not send it again).
#[test]
fn a_request_handed_back_by_a_stalled_worker_is_sent_again_on_a_new_connection() {
    let scripted = Scripted::start("threads = 1");
    let front = &scripted.front;
    let offers = |target: &str| -> Vec<bool> {
        let seen = scripted.upstream.seen.lock().expect("upstream log");
        seen.iter()
            .filter(|s| s.target == target)
            .map(|s| s.offered)
            .collect()
    };
    let mut tls = connect(&scripted.client, front.addr);

    // Workers with a built-in app get no offer, and a client's own is dropped.
    write!(
        tls,
        "GET /handback?client HTTP/1.1\r\nHost: localhost\r\nX-Rgunicorn-Resend: 1\r\n\r\n"
    )
    .expect("write");
    tls.flush().expect("flush");
    assert_eq!(read_response(&mut tls, false).expect("answer").status, 200);
    assert_eq!(offers("/handback?client"), [false]);

    tell_app_threads(front);
    // The event loops take the new settings on their next pass: until a request is offered.
    let mut tls = connect(&scripted.client, front.addr);
    let deadline = Instant::now() + Duration::from_secs(10);
    for probe in 0.. {
        let target = format!("/count?probe{probe}");
        assert_eq!(get_on(&mut tls, &target).status, 200);
        if offers(&target) == [true] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the front never offered after HUP"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let resp = get_on(&mut tls, "/handback?first");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen: Vec<Seen> = {
        let seen = scripted.upstream.seen.lock().expect("upstream log");
        seen.iter()
            .filter(|s| s.target == "/handback?first")
            .cloned()
            .collect()
    };
    assert_eq!(offers("/handback?first"), [true, false], "{seen:?}");
    assert_ne!(seen[0].conn, seen[1].conn, "{seen:?}");
    assert_eq!(
        resp.text(),
        format!("conn={} req={}", seen[1].conn, seen[1].n)
    );
    // The client's connection goes on as before.
    assert_eq!(get_on(&mut tls, "/count?after").status, 200);

    // A request with a body is not offered: the worker's 503 would reach the client.
    write!(
        tls,
        "POST /count?body HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\nhi"
    )
    .expect("write");
    tls.flush().expect("flush");
    assert_eq!(read_response(&mut tls, false).expect("answer").status, 200);
    assert!(!wait_seen(&scripted.upstream, "/count?body").offered);
}

/// A request the worker never took (the one before it on the connection was answered with
/// `Connection: close`) is sent again on another connection, whole: one whose body had
/// all arrived goes again with its body. (It went again with its head alone: the worker
/// then waited for a body that never came.)
#[test]
fn a_request_not_processed_is_sent_again_with_its_body() {
    let scripted = Scripted::start("threads = 1");
    let (front, config) = (&scripted.front, &scripted.client);
    // Pipelined by one client: its requests share an upstream connection, in order.
    let mut tls = connect(config, front.addr);
    let post = "POST /count?body HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello";
    write!(tls, "{}{post}", request("/close")).expect("write");
    tls.flush().expect("flush");
    assert_eq!(read_response(&mut tls, false).expect("answer").status, 200);
    let resp = read_response(&mut tls, false).expect("the POST's answer");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let closed = wait_seen(&scripted.upstream, "/close");
    let post = wait_seen(&scripted.upstream, "/count?body");
    assert_eq!(post.body, b"hello");
    // The POST had gone behind /close on its connection (it had arrived when the
    // upstream read /close), and was taken on another.
    assert!(
        scripted
            .upstream
            .pipelined
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 1
    );
    assert_ne!(post.conn, closed.conn, "{post:?} {closed:?}");
}
