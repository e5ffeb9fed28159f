//! The abuse test: the levers a caller without a credential had on the native host (issue 14,
//! observations 1, 2, 3, 4, 6 and 8), repeated at a small, bounded scale on 127.0.0.1 against
//! a service with short timeouts, and the limits that now hold asserted.
//!
//! Bounds stated here (generous on purpose: 2 busy cores; a limit check, not a speed test;
//! the tests run one at a time):
//! - a slow socket is closed within its timeout plus [`SLACK`];
//! - a key-less large body is answered before it is sent (within [`SLACK`]);
//! - `/health` p50 stays under [`HEALTH_P50_BOUND`] and p99 under [`HEALTH_P99_BOUND`] during
//!   a 16-client login flood;
//! - the process grows by less than [`RSS_GROWTH_BOUND_MB`] under the flood and the uploads.

mod support;

use std::ops::Deref;
use std::time::{Duration, Instant};

use auth_service::{Extras, Limits};
use futures::SinkExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use support::{Frame, Service, Setup, Ws};

const SECRET: &str = "abuse-test-jwt-secret-0123456789abcdefghij";
const HEADER_TIMEOUT: Duration = Duration::from_secs(1);
const BODY_TIMEOUT: Duration = Duration::from_secs(2);
/// Long, so that it cannot be what closes the slow sockets below.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Added to every timeout before a test gives up on the server closing a socket.
const SLACK: Duration = Duration::from_secs(3);
const HEALTH_P99_BOUND: Duration = Duration::from_millis(500);
/// Argon2 runs off the shared database lock: `/health` need not wait for a hash at all (it
/// answers in about 0.3 ms during the flood, 120 ms when hashes held the lock).
const HEALTH_P50_BOUND: Duration = Duration::from_millis(50);

/// The tests of this file run one at a time: each loads the machine on purpose, and a flood in
/// one must not be what another measures.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const RSS_GROWTH_BOUND_MB: u64 = 200;
const MAX_CSV: usize = 8 * 1024 * 1024;

fn limits() -> Limits {
    let mut l = Limits {
        header_read_timeout: HEADER_TIMEOUT,
        body_read_timeout: BODY_TIMEOUT,
        idle_timeout: IDLE_TIMEOUT,
        max_connections: 64,
        password_workers: 2,
        password_queue: 64,
        password_wait: Duration::from_secs(10),
        ..Limits::default()
    };
    l.core.sockets_per_key = 2;
    l.core.sockets_per_tenant = 3;
    l
}

/// The service under this file's limits, where a 503 `service_busy` is an accepted answer.
struct Svc {
    svc: Service,
}

impl Deref for Svc {
    type Target = Service;

    fn deref(&self) -> &Service {
        &self.svc
    }
}

impl Svc {
    async fn start() -> Self {
        Self::start_with(limits()).await
    }

    async fn start_with(limits: Limits) -> Self {
        let extras = Extras {
            jwt_secret: SECRET.into(),
            jwt_secret_previous: None,
            mail: None,
        };
        let setup = Setup {
            limits: Some(limits),
            busy_ok: true,
            timeout: Duration::from_secs(60),
            ..Setup::local(extras, false)
        };
        Self {
            svc: setup.start().await,
        }
    }

    /// A tenant with `requests` per minute: `(id, secret key)`.
    async fn tenant(&self, slug: &str, requests: u32, extra: Value) -> (String, String) {
        let mut spec = json!({"slug": slug, "name": slug,
                              "rateLimit": {"requests": requests, "windowSeconds": 60}});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        let r = self.new_tenant(spec).await;
        let (status, b) = (r.status, r.body);
        assert_eq!(status, 201, "{b}");
        (
            b["tenant"]["id"].as_str().unwrap().into(),
            b["credentials"]["secretKey"].as_str().unwrap().into(),
        )
    }

    async fn register(&self, tenant: &str, email: &str) {
        let body = json!({"email": email, "password": "Correct-horse-1"});
        let r = self.post_user(tenant, "register", body).await;
        assert_eq!(r.status, 201, "{}", r.body);
    }

    async fn login(&self, tenant: &str, email: &str, password: &str) -> u16 {
        let body = json!({"email": email, "password": password});
        self.post_user(tenant, "login", body).await.status
    }

    async fn raw(&self) -> TcpStream {
        TcpStream::connect(self.running().local_addr).await.unwrap()
    }
}

fn rss_mb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

/// Reads until the server closes the connection; answers what it sent, or `None` when it
/// was still open after `within`.
async fn closed_within(mut s: TcpStream, within: Duration) -> Option<String> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read).await.ok()?;
    Some(String::from_utf8_lossy(&got).into_owned())
}

/// A login whose head promises 100 bytes of body and whose body stops after 10.
const WITHHELD_BODY: &[u8] = b"POST /v1/auth/login HTTP/1.1\r\nhost: x\r\n\
    content-type: application/json\r\ncontent-length: 100\r\n\r\n{\"email\":";

/// Observation 1: half-sent heads, trickled headers, silent sockets, idle kept-alive
/// connections and withheld bodies are closed within their timeouts (all open at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_sockets_are_closed_within_the_timeouts() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let svc = Svc::start().await;
    let started = Instant::now();
    let silent = svc.raw().await;
    let mut half_line = svc.raw().await;
    half_line.write_all(b"GET /hea").await.unwrap();
    let mut withheld = svc.raw().await;
    withheld.write_all(WITHHELD_BODY).await.unwrap();
    let mut trickled = svc.raw().await;
    let trickle = tokio::spawn(async move {
        for b in b"GET /health HTTP/1.1\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n" {
            if trickled.write_all(&[*b]).await.is_err() {
                return Some(trickled);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Some(trickled)
    });
    for (what, s, timeout) in [
        ("silent socket", silent, HEADER_TIMEOUT),
        ("half request line", half_line, HEADER_TIMEOUT),
    ] {
        assert!(
            closed_within(s, timeout + SLACK).await.is_some(),
            "{what} still open after {:?}",
            started.elapsed()
        );
    }
    let answer = closed_within(withheld, BODY_TIMEOUT + SLACK)
        .await
        .expect("a withheld body is given up on");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let trickled = trickle.await.unwrap().unwrap();
    assert!(
        closed_within(trickled, HEADER_TIMEOUT + SLACK)
            .await
            .is_some(),
        "trickled headers still open after {:?}",
        started.elapsed()
    );
    // An idle kept-alive connection is closed too: waiting for the next request head counts
    // against the header timeout.
    let mut idle = svc.raw().await;
    idle.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = closed_within(idle, HEADER_TIMEOUT + SLACK)
        .await
        .expect("an idle connection is closed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Observation 1, the connection cap: past it (64) with silent sockets, /health is still
/// answered: new clients wait in the backlog while the cap is reached, and silent sockets then
/// get 1 s, not the header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_cap_new_clients_wait_not_fail() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let svc = Svc::start_with(Limits {
        header_read_timeout: Duration::from_secs(30),
        ..limits()
    })
    .await;
    let mut hold = Vec::new();
    for _ in 0..80 {
        hold.push(svc.raw().await);
    }
    let t = Instant::now();
    let status = tokio::time::timeout(SLACK, svc.status(None, "GET", "/health", None))
        .await
        .expect("/health answers past the connection cap");
    assert_eq!(status, 200);
    assert!(t.elapsed() < SLACK);
    drop(hold);
}

/// Observation 2: a large body without a valid key is refused before it is read, and a body
/// over the ordinary budget is refused from its declared length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_large_bodies_are_refused_before_they_are_read() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let svc = Svc::start().await;
    for auth in [
        "",
        "authorization: Bearer sk_live_not_a_real_key_0000000000000000\r\n",
    ] {
        let mut s = svc.raw().await;
        let head = format!(
            "PUT /v1/graph/csv HTTP/1.1\r\nhost: x\r\ncontent-type: text/csv\r\n{auth}\
             content-length: {}\r\n\r\n",
            MAX_CSV + 1
        );
        s.write_all(head.as_bytes()).await.unwrap();
        // Not a byte of the body is sent: the answer must come anyway.
        let answer = closed_within(s, SLACK)
            .await
            .expect("answered without the body");
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    }
    let mut s = svc.raw().await;
    s.write_all(
        b"POST /v1/auth/login HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
          content-length: 8388609\r\n\r\n",
    )
    .await
    .unwrap();
    let answer = closed_within(s, SLACK).await.expect("answered at once");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // 24 key-less uploads that send all but the last byte hold no body memory.
    let before = rss_mb();
    let mut uploads = Vec::new();
    for _ in 0..24 {
        let mut s = svc.raw().await;
        uploads.push(tokio::spawn(async move {
            let head = format!(
                "PUT /v1/graph/csv HTTP/1.1\r\nhost: x\r\ncontent-type: text/csv\r\n\
                 content-length: {}\r\n\r\n",
                MAX_CSV + 1
            );
            let _ = s.write_all(head.as_bytes()).await;
            let chunk = vec![b'a'; 64 * 1024];
            for _ in 0..(MAX_CSV / chunk.len()) {
                if s.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            s
        }));
    }
    let mut held = Vec::new();
    for u in uploads {
        held.push(u.await.unwrap());
    }
    let grown = rss_mb().saturating_sub(before);
    assert!(
        grown < RSS_GROWTH_BOUND_MB / 2,
        "24 withheld key-less uploads grew RSS by {grown} MB"
    );
}

/// Observations 3 and 4: argon2 runs on a bounded pool, off the shared lock: `/health` stays
/// responsive and memory bounded under a login flood; every login failure costs exactly one
/// hash; a bogus reset token costs none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_floods_are_bounded_and_failures_cost_the_same() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let svc = Svc::start().await;
    let (tid, _) = svc
        .tenant(
            "acme",
            1_000_000,
            json!({"onboarding": {"adminEmail": "admin@acme.io", "template": "rbac"}}),
        )
        .await;
    svc.register(&tid, "ann@acme.io").await;

    // One hash per failure, whatever the reason.
    let long = format!("Ab1{}", "x".repeat(200));
    for (what, email, password) in [
        ("unknown address", "nobody@acme.io", "Wrong-horse-1"),
        ("wrong password", "ann@acme.io", "Wrong-horse-1"),
        ("over-long password", "ann@acme.io", long.as_str()),
        (
            "account without a password",
            "admin@acme.io",
            "Wrong-horse-1",
        ),
    ] {
        let before = svc.running().password_hashes();
        assert_eq!(svc.login(&tid, email, password).await, 401, "{what}");
        assert_eq!(svc.running().password_hashes() - before, 1, "{what}");
    }
    // A bogus reset token is refused before the new password is hashed.
    let before = svc.running().password_hashes();
    let bogus = json!({"token": "pr_bogus", "newPassword": "Correct-horse-2"});
    let r = svc.post_user(&tid, "reset-password", bogus).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        svc.running().password_hashes(),
        before,
        "no hash for a bogus token"
    );

    // The flood: 16 clients, 8 tenants, wrong passwords, for 4 s; /health sampled meanwhile.
    let mut tenants = Vec::new();
    for i in 0..8 {
        let (t, _) = svc.tenant(&format!("flood{i}"), 1_000_000, json!({})).await;
        tenants.push(t);
    }
    let rss_before = rss_mb();
    let until = Instant::now() + Duration::from_secs(4);
    let svc = std::sync::Arc::new(svc);
    let mut clients = Vec::new();
    for c in 0..16 {
        let svc = std::sync::Arc::clone(&svc);
        let t = tenants[c % tenants.len()].clone();
        clients.push(tokio::spawn(async move {
            let mut n = 0u32;
            while Instant::now() < until {
                let s = svc.login(&t, "nobody@x.io", "Wrong-horse-1").await;
                assert!(s == 401 || s == 503 || s == 429, "{s}");
                n += 1;
            }
            n
        }));
    }
    let mut health = Vec::new();
    while Instant::now() < until {
        let t = Instant::now();
        assert_eq!(svc.status(None, "GET", "/health", None).await, 200);
        health.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut logins = 0;
    for c in clients {
        logins += c.await.unwrap();
    }
    health.sort();
    let p99 = health[(health.len() * 99 / 100).min(health.len() - 1)];
    let p50 = health[health.len() / 2];
    let grown = rss_mb().saturating_sub(rss_before);
    eprintln!(
        "login flood: {logins} logins in 4 s, /health p50 {:?} p99 {p99:?} ({} samples), RSS +{grown} MB",
        health[health.len() / 2],
        health.len()
    );
    assert!(
        p50 < HEALTH_P50_BOUND,
        "/health p50 {p50:?} under the flood"
    );
    assert!(
        p99 < HEALTH_P99_BOUND,
        "/health p99 {p99:?} under the flood"
    );
    assert!(
        grown < RSS_GROWTH_BOUND_MB,
        "the login flood grew RSS by {grown} MB"
    );
}

/// Observation 6: key-less end-user auth has its own window, so the tenant's key keeps working
/// after a flood of forgot-password calls; and the flood queues one reset mail, not 110.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_auth_cannot_spend_the_tenants_quota() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let svc = Svc::start().await;
    let (tid, sk) = svc.tenant("quota", 100, json!({})).await;
    svc.register(&tid, "ann@quota.io").await;
    let mut limited = 0;
    for _ in 0..110 {
        let forgot = json!({"email": "ann@quota.io"});
        let status = svc.post_user(&tid, "forgot-password", forgot).await.status;
        assert!(status == 200 || status == 429, "{status}");
        limited += u32::from(status == 429);
    }
    assert!(
        limited >= 110 - 60,
        "the key-less window is capped: {limited} refused"
    );
    let r = svc.use_key(&sk).await;
    assert_eq!(r.status, 200, "the tenant's key still works: {}", r.body);
    // The outbox holds the verification mail and one reset mail.
    let db = svc.db();
    let mails: i64 = db
        .query_row("SELECT COUNT(*) FROM mail_outbox", [], |r| r.get(0))
        .unwrap();
    assert!(mails <= 2, "{mails} mails queued by the flood");
}

/// Reads until the server closes; answers the close code (`None` if still open after `SLACK`).
async fn close_code(ws: &mut Ws) -> Option<u16> {
    let deadline = Instant::now() + SLACK;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match ws.next_frame(left).await {
            Frame::Close(code) => return Some(code.unwrap_or(1005)),
            Frame::Ended => return Some(1006),
            Frame::Silent => return None,
            Frame::Json(_) => continue,
        }
    }
}

/// Observation 8: inbound frames (pings included) spend the quota and end at it; messages
/// are small; sockets per key and per tenant are capped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_frames_are_metered_and_sockets_capped() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let svc = Svc::start().await;
    let (_, sk) = svc.tenant("sockets", 100, json!({})).await;
    let mut a = svc.ws(Some(&sk)).await.expect("first socket");
    for _ in 0..150 {
        if a.stream.send(Message::Ping(b"x".to_vec())).await.is_err() {
            break;
        }
    }
    assert_eq!(close_code(&mut a).await, Some(1008), "pings past the quota");
    let status = svc.status(Some(&sk), "GET", "/v1/tenant", None).await;
    assert_eq!(status, 429, "the pings spent the tenant's quota");

    let (_, sk) = svc.tenant("sockets2", 1_000, json!({})).await;
    let mut big = svc.ws(Some(&sk)).await.expect("socket");
    let _ = big.stream.send(Message::Text("x".repeat(64 * 1024))).await;
    assert!(
        matches!(close_code(&mut big).await, Some(1009) | Some(1006)),
        "a 64 KiB message closes the socket"
    );
    // Two sockets per key.
    let _k1 = svc.ws(Some(&sk)).await.expect("socket 1");
    let _k2 = svc.ws(Some(&sk)).await.expect("socket 2");
    let third = svc.ws(Some(&sk)).await;
    assert!(
        matches!(&third, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 429),
        "a third socket for one key: {third:?}"
    );
}
