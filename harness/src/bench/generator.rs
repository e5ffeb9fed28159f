//! The load generator: one keep-alive HTTP/1.1 connection per worker, each writing a request
//! made once (its bytes, one per key) and reading the answer back to back, timing every answer.
//!
//! Why not hyper's client: it measured 0.82 of `wrk -t1` on bare hyper here (two tasks and a
//! channel per connection), too close to being the bottleneck; `reqwest` reached 0.77. This is
//! what `wrk` does: a write of ready bytes, then the answer framed with `httparse` (the parser
//! hyper uses), by `Content-Length` or chunked encoding, in one task per connection.
//!
//! It runs on a tokio runtime of its own (one thread by default, as `wrk -t1`), in a thread of
//! its own, so it never shares a scheduler with a service started in this process.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::{Buf as _, Bytes, BytesMut};
use hyper::Method;
use serde::Serialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// One kind of request to repeat. With several keys, connection `c` sends its `k`-th request
/// with key `(c + k * connections) % keys`: every key gets the same share, spread over every
/// connection (round-robin).
#[derive(Clone)]
pub struct Probe {
    pub name: String,
    pub method: Method,
    pub path: String,
    /// Keys sent as `Authorization: Bearer <key>` in turn (empty: no credential).
    keys: Vec<String>,
    /// A JSON body, sent with `content-type: application/json`.
    pub body: Option<Bytes>,
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys.
        f.debug_struct("Probe")
            .field("name", &self.name)
            .field("method", &self.method)
            .field("path", &self.path)
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl Probe {
    pub fn new(name: &str, method: Method, path: &str) -> Self {
        Self {
            name: name.to_owned(),
            method,
            path: path.to_owned(),
            keys: Vec::new(),
            body: None,
        }
    }

    /// Sends each request with `Bearer <key>`, the keys taken in turn.
    pub fn keys<S: AsRef<str>>(mut self, keys: &[S]) -> anyhow::Result<Self> {
        for k in keys {
            let k = k.as_ref();
            if k.bytes().any(|b| !b.is_ascii_graphic()) {
                anyhow::bail!("a key with a character that cannot go in a header");
            }
            self.keys.push(k.to_owned());
        }
        Ok(self)
    }

    pub fn json(mut self, body: &serde_json::Value) -> Self {
        self.body = Some(Bytes::from(body.to_string()));
        self
    }

    /// Distinct keys the requests are spread over.
    pub fn tenants(&self) -> usize {
        self.keys.len()
    }

    /// The bytes of every request this probe sends, one per key, made once.
    fn wire(&self, host: &str) -> Vec<Bytes> {
        let one = |key: Option<&str>| {
            let mut r = format!("{} {} HTTP/1.1\r\nHost: {host}\r\n", self.method, self.path);
            if let Some(k) = key {
                r.push_str(&format!("Authorization: Bearer {k}\r\n"));
            }
            match &self.body {
                Some(b) => r.push_str(&format!(
                    "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    b.len()
                )),
                None => r.push_str("\r\n"),
            }
            let mut bytes = r.into_bytes();
            bytes.extend_from_slice(self.body.as_deref().unwrap_or_default());
            Bytes::from(bytes)
        };
        if self.keys.is_empty() {
            vec![one(None)]
        } else {
            self.keys.iter().map(|k| one(Some(k))).collect()
        }
    }
}

/// What one timed run gave.
#[derive(Debug, Default)]
pub struct RunFigures {
    pub rps: f64,
    /// Latency of every answered request, in microseconds (its count is the throughput).
    pub latencies_us: Vec<u32>,
    /// Status code counts; 0 counts requests that got no answer (connection error), which are
    /// left out of the throughput and latencies.
    pub statuses: BTreeMap<u16, u64>,
}

/// Figures of one probe at one load: the median run by requests/s, and every run's figure.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct EndpointFigures {
    pub name: String,
    pub method: String,
    pub path: String,
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub runs_rps: Vec<f64>,
    pub statuses: Vec<(u16, u64)>,
    pub ratio_to_hyper: Option<f64>,
    /// Connections kept busy.
    #[serde(default)]
    pub connections: usize,
    /// Distinct keys (one per tenant) the requests were spread over.
    #[serde(default)]
    pub tenants: usize,
}

/// How hard and how long to drive each probe.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub connections: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub runs: usize,
    /// Threads of the generator's own runtime.
    pub threads: usize,
}

/// The `p` quantile (0..=1) of sorted latencies in µs, in milliseconds (nearest rank).
pub fn percentile(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let idx = ((sorted_us.len() as f64 * p).ceil() as usize).clamp(1, sorted_us.len()) - 1;
    f64::from(sorted_us[idx]) / 1000.0
}

/// Warm-up, then `load.runs` timed runs; the median run by throughput stands for the probe.
/// Runs on a runtime of its own in a thread of its own (see the module's comment).
pub fn measure(addr: SocketAddr, probe: &Probe, load: Load) -> anyhow::Result<EndpointFigures> {
    let probe = probe.clone();
    std::thread::spawn(move || -> anyhow::Result<EndpointFigures> {
        // One thread: everything on it, as `wrk -t1`; more: a pool of that size.
        let rt = if load.threads <= 1 {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(load.threads)
                .enable_all()
                .build()?
        };
        rt.block_on(async {
            if !load.warmup.is_zero() {
                drive(addr, &probe, load.connections, load.warmup).await?;
            }
            let mut runs = Vec::new();
            for _ in 0..load.runs.max(1) {
                runs.push(drive(addr, &probe, load.connections, load.duration).await?);
            }
            Ok(summarise(&probe, runs, load))
        })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the load generator's thread panicked"))?
}

/// The median run by requests/s, with its latency percentiles and every run's throughput.
fn summarise(probe: &Probe, mut runs: Vec<RunFigures>, load: Load) -> EndpointFigures {
    let runs_rps: Vec<f64> = runs.iter().map(|r| r.rps).collect();
    let mut order: Vec<usize> = (0..runs.len()).collect();
    order.sort_by(|a, b| runs[*a].rps.total_cmp(&runs[*b].rps));
    let median = &mut runs[order[order.len() / 2]];
    median.latencies_us.sort_unstable();
    EndpointFigures {
        name: probe.name.clone(),
        method: probe.method.to_string(),
        path: probe.path.clone(),
        requests_per_second: median.rps,
        p50_ms: percentile(&median.latencies_us, 0.50),
        p95_ms: percentile(&median.latencies_us, 0.95),
        p99_ms: percentile(&median.latencies_us, 0.99),
        runs_rps,
        statuses: median.statuses.iter().map(|(k, v)| (*k, *v)).collect(),
        ratio_to_hyper: None,
        connections: load.connections,
        tenants: probe.tenants(),
    }
}

/// Drives `probe` over `connections` keep-alive connections for `duration`. A connection that
/// fails counts a status 0 and is opened again.
pub async fn drive(
    addr: SocketAddr,
    probe: &Probe,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<RunFigures> {
    let wire = std::sync::Arc::new(probe.wire(&addr.to_string()));
    let mut conns = Vec::new();
    for _ in 0..connections.max(1) {
        conns.push(Connection::open(addr).await?);
    }
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for (c, mut conn) in conns.into_iter().enumerate() {
        let wire = wire.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(1 << 14);
            let mut statuses = BTreeMap::<u16, u64>::new();
            let mut nth = c;
            let mut t = Instant::now();
            while t < deadline {
                let req = &wire[nth % wire.len()];
                nth += connections;
                let status = match conn.round_trip(req).await {
                    Ok(s) => s,
                    Err(_) => {
                        match Connection::open(addr).await {
                            Ok(fresh) => conn = fresh,
                            // Not a busy loop of failures counted as throughput.
                            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                        }
                        0
                    }
                };
                let now = Instant::now();
                // Only answers count towards throughput and latency; failures only as status 0.
                if status != 0 {
                    lat.push(u32::try_from((now - t).as_micros()).unwrap_or(u32::MAX));
                }
                *statuses.entry(status).or_default() += 1;
                t = now;
            }
            (lat, statuses)
        }));
    }
    let mut figures = RunFigures::default();
    for t in tasks {
        let (lat, st) = t.await?;
        figures.latencies_us.extend(lat);
        for (k, v) in st {
            *figures.statuses.entry(k).or_default() += v;
        }
    }
    let secs = started.elapsed().as_secs_f64().max(duration.as_secs_f64());
    figures.rps = figures.latencies_us.len() as f64 / secs;
    Ok(figures)
}

/// One keep-alive connection and what it has read past the last answer.
struct Connection {
    stream: TcpStream,
    buf: BytesMut,
}

/// Where an answer's body ends, as far as the bytes read so far tell.
#[derive(Debug, PartialEq)]
enum Framing {
    /// The whole answer is this many bytes (head and body).
    Complete(usize),
    /// More bytes are needed.
    Partial,
}

impl Connection {
    async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: BytesMut::with_capacity(16 * 1024),
        })
    }

    /// Writes a request and reads its whole answer; answers its status.
    async fn round_trip(&mut self, req: &[u8]) -> anyhow::Result<u16> {
        self.stream.write_all(req).await?;
        loop {
            if let Some((status, len)) = frame(&self.buf)? {
                self.buf.advance(len);
                return Ok(status);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                anyhow::bail!("the server closed the connection");
            }
        }
    }
}

/// The status and total length of the first answer in `buf`, once it is all there. An answer
/// framed by neither `Content-Length` nor chunked encoding (nor bodiless by its status) is an
/// error: it would need the connection closed to end, which a keep-alive benchmark cannot use.
pub fn frame(buf: &[u8]) -> anyhow::Result<Option<(u16, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let head = match resp.parse(buf)? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let status = resp.code.unwrap_or(0);
    let mut length = None;
    let mut chunked = false;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            length = Some(std::str::from_utf8(h.value)?.trim().parse::<usize>()?);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = std::str::from_utf8(h.value)?
                .to_ascii_lowercase()
                .contains("chunked");
        }
    }
    let body = &buf[head..];
    let framing = if chunked {
        chunked_length(body)?
    } else if let Some(n) = length {
        if body.len() >= n {
            Framing::Complete(n)
        } else {
            Framing::Partial
        }
    } else if status == 204 || status == 304 || (100..200).contains(&status) {
        Framing::Complete(0)
    } else {
        anyhow::bail!("an answer with neither Content-Length nor chunked encoding");
    };
    Ok(match framing {
        Framing::Complete(n) => Some((status, head + n)),
        Framing::Partial => None,
    })
}

/// The length of a chunked body (chunks, the last empty one and the final CRLF; trailers are
/// not expected from these servers and are refused).
fn chunked_length(body: &[u8]) -> anyhow::Result<Framing> {
    let mut at = 0;
    loop {
        let Some(eol) = body[at..].windows(2).position(|w| w == b"\r\n") else {
            return Ok(Framing::Partial);
        };
        let line = std::str::from_utf8(&body[at..at + eol])?;
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            .context("a chunk size that is not hexadecimal")?;
        at += eol + 2;
        if size == 0 {
            return Ok(if body.len() < at + 2 {
                Framing::Partial
            } else if &body[at..at + 2] == b"\r\n" {
                Framing::Complete(at + 2)
            } else {
                anyhow::bail!("trailers after a chunked body")
            });
        }
        if body.len() < at + size + 2 {
            return Ok(Framing::Partial);
        }
        at += size + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let us: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile(&us, 0.50), 50.0);
        assert_eq!(percentile(&us, 0.99), 99.0);
        assert_eq!(percentile(&us, 1.0), 100.0);
        assert_eq!(percentile(&us, 0.0), 1.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
        assert_eq!(percentile(&[1500], 0.99), 1.5);
    }

    #[test]
    fn every_key_has_its_request_made_once() {
        let probe = Probe::new("p", Method::POST, "/v1/x")
            .keys(&["a", "b"])
            .unwrap()
            .json(&serde_json::json!({"n": 1}));
        let wire = probe.wire("127.0.0.1:9");
        assert_eq!(wire.len(), 2);
        assert_eq!(
            &wire[1][..],
            b"POST /v1/x HTTP/1.1\r\nHost: 127.0.0.1:9\r\nAuthorization: Bearer b\r\n\
              Content-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"n\":1}"
        );
        let bare = Probe::new("p", Method::GET, "/").wire("h");
        assert_eq!(&bare[0][..], b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert!(Probe::new("p", Method::GET, "/")
            .keys(&["a\r\nX: y"])
            .is_err());
        assert!(!format!("{probe:?}").contains("Bearer"));
    }

    #[test]
    fn answers_are_framed_by_length_or_chunks() {
        let fixed = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhelloHTTP/1.1";
        assert_eq!(frame(fixed).unwrap(), Some((200, 43)));
        assert_eq!(frame(&fixed[..40]).unwrap(), None);
        assert_eq!(frame(b"HTTP/1.1 200 OK\r\ncontent-le").unwrap(), None);
        let chunked = b"HTTP/1.1 429 Too Many Requests\r\ntransfer-encoding: chunked\r\n\r\n\
                        3\r\nabc\r\n0\r\n\r\n";
        assert_eq!(frame(chunked).unwrap(), Some((429, chunked.len())));
        assert_eq!(frame(&chunked[..chunked.len() - 1]).unwrap(), None);
        assert_eq!(
            frame(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap(),
            Some((204, 27))
        );
        assert!(frame(b"HTTP/1.1 200 OK\r\n\r\nuntil close").is_err());
    }

    #[test]
    fn the_median_run_stands_for_the_probe() {
        let run = |rps: f64, lat: Vec<u32>| RunFigures {
            rps,
            latencies_us: lat,
            statuses: BTreeMap::from([(200, 3)]),
        };
        let load = Load {
            connections: 4,
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            runs: 3,
            threads: 1,
        };
        let probe = Probe::new("p", Method::GET, "/");
        let f = summarise(
            &probe,
            vec![
                run(10.0, vec![9000]),
                run(30.0, vec![1000]),
                run(20.0, vec![3000, 1000, 2000]),
            ],
            load,
        );
        assert_eq!(f.requests_per_second, 20.0);
        assert_eq!(f.runs_rps, vec![10.0, 30.0, 20.0]);
        assert_eq!(f.p50_ms, 2.0);
        assert_eq!(f.p99_ms, 3.0);
        assert_eq!(f.connections, 4);
    }
}
