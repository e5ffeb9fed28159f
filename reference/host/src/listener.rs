//! The accept loop: hyper with a timer, so a connection that trickles or withholds its request
//! head is closed (`header_read_timeout`), idle connections are closed (`idle_timeout`), at
//! most `max_connections` are served at once (the rest wait in the listen backlog, so the
//! process never runs out of file descriptors and `/health` is answered as soon as a slot
//! frees), and HTTP/2 only when asked for.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tower::Service;

use crate::settings::Limits;

/// The client's address, put in every request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

/// Serves `app` on `listener` until `shutdown` completes, then lets connections finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    if limits.http2 {
        builder.http2().timer(TokioTimer::new());
    } else {
        builder = builder.http1_only();
    }
    let builder = Arc::new(builder);
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            s = Arc::clone(&slots).acquire_owned() => s.expect("the semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: wait instead of spinning on the error.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(
            Arc::clone(&builder),
            stream,
            peer,
            app.clone(),
            Deadlines {
                first_request: limits.header_read_timeout,
                idle: limits.idle_timeout,
            },
            stop_rx.clone(),
            Slot {
                _held: slot,
                all: Arc::clone(&slots),
            },
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a slot until it ends: all slots back means all done.
    let _ = slots.acquire_many(limits.max_connections as u32).await;
    Ok(())
}

/// How long a connection may stay without a request in flight: before its first request
/// (hyper's own header timer starts only once it knows the protocol, so a socket that never
/// sends a byte is closed here), and between requests. While every slot is taken, both shrink
/// to [`UNDER_PRESSURE`]: idle and silent sockets make room for clients with a request.
#[derive(Debug, Clone, Copy)]
struct Deadlines {
    first_request: Duration,
    idle: Duration,
}

/// A connection's place under the cap (given back when the connection ends), and the cap's
/// semaphore, to tell when every place is taken.
struct Slot {
    _held: OwnedSemaphorePermit,
    all: Arc<Semaphore>,
}

/// The longest a connection may go without a request while the connection cap is reached. A
/// real client sends its request head at once.
const UNDER_PRESSURE: Duration = Duration::from_secs(1);

/// Requests in flight on one connection and when the last one ended.
struct Activity {
    since: Instant,
    started: AtomicUsize,
    in_flight: AtomicUsize,
    last_ms: AtomicI64,
}

impl Activity {
    fn touch(&self) {
        self.last_ms
            .store(self.since.elapsed().as_millis() as i64, Ordering::Relaxed);
    }
    /// Whether the connection has been without a request for longer than it may.
    fn overdue(&self, limits: Deadlines, full: bool) -> bool {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return false;
        }
        let mut allowed = if self.started.load(Ordering::Relaxed) == 0 {
            limits.first_request
        } else {
            limits.idle
        };
        if full {
            allowed = allowed.min(UNDER_PRESSURE);
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed).max(0) as u64);
        self.since.elapsed().saturating_sub(last) >= allowed
    }
}

struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn connection(
    builder: Arc<auto::Builder<TokioExecutor>>,
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    deadlines: Deadlines,
    mut stop: watch::Receiver<bool>,
    slot: Slot,
) {
    let activity = Arc::new(Activity {
        since: Instant::now(),
        started: AtomicUsize::new(0),
        in_flight: AtomicUsize::new(0),
        last_ms: AtomicI64::new(0),
    });
    let seen = Arc::clone(&activity);
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        seen.started.fetch_add(1, Ordering::Relaxed);
        seen.in_flight.fetch_add(1, Ordering::Relaxed);
        let guard = InFlight(Arc::clone(&seen));
        let mut app = app.clone();
        async move {
            let mut req = req.map(Body::new);
            req.extensions_mut().insert(ClientAddr(peer.ip()));
            let resp: Result<_, Infallible> = app.call(req).await;
            drop(guard);
            resp
        }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        let check = deadlines
            .first_request
            .min(deadlines.idle)
            .min(UNDER_PRESSURE);
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            changed = stop.changed(), if !closing => {
                let _ = changed;
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            // A connection asked to close that does not (a client not reading its answer) is
            // dropped.
            _ = tokio::time::sleep(Duration::from_secs(5)), if closing => return,
            _ = tokio::time::sleep(check), if !closing => {
                if activity.overdue(deadlines, slot.all.available_permits() == 0) {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
