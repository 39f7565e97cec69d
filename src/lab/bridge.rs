//! Routers that read files (the image store, the HTTP boot server) go through tokio's blocking
//! pool, whose threads finish in wall-clock time: called directly from a paused-clock simulation,
//! their completions would interleave with simulated tasks differently on every run. The bridge
//! serves such a router on a helper thread (its own runtime) and calls it *synchronously*: while
//! one request is served, no simulated task runs and virtual time stands still, so the result is
//! the same on every run. The router, its status codes, headers and bytes are the real ones.

use axum::Router;
use axum::body::Body;
use http_body_util::BodyExt;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, mpsc};
use std::task::{Context, Poll};
use std::thread::ThreadId;

/// Largest request or response body carried across (images in a simulation are scaled down).
pub const MAX_BODY: usize = 256 << 20;

type Reply = Result<(http::response::Parts, bytes::Bytes), String>;

struct Job {
    router: Router,
    request: http::Request<Body>,
    reply: mpsc::SyncSender<Reply>,
}

/// A helper thread serving bridged routers. Dropping every handle ends the thread.
pub struct Bridge {
    jobs: mpsc::SyncSender<Job>,
    clock: Arc<SimUnixClock>,
}

/// Errors starting the bridge.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("cannot start the bridge thread: {0}")]
    Thread(std::io::Error),
}

impl Bridge {
    /// Starts the helper thread. `clock` is the simulation's Unix clock; the bridge publishes the
    /// virtual time to it before each request so routers read simulated time on the helper thread.
    pub fn start(clock: Arc<SimUnixClock>) -> Result<Arc<Bridge>, BridgeError> {
        let (jobs, rx) = mpsc::sync_channel::<Job>(1);
        std::thread::Builder::new()
            .name("sim-bridge".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "bridge runtime");
                        return;
                    }
                };
                while let Ok(job) = rx.recv() {
                    let out = rt.block_on(async move {
                        use tower::ServiceExt;
                        let resp = match job.router.oneshot(job.request).await {
                            Ok(r) => r,
                            Err(never) => match never {},
                        };
                        let (parts, body) = resp.into_parts();
                        match http_body_util::Limited::new(body, MAX_BODY).collect().await {
                            Ok(b) => Ok((parts, b.to_bytes())),
                            Err(e) => Err(e.to_string()),
                        }
                    });
                    let _ = job.reply.send(out);
                }
            })
            .map_err(BridgeError::Thread)?;
        Ok(Arc::new(Bridge { jobs, clock }))
    }

    /// A tower service that calls `router` through the bridge (register it with `TowerHttp`).
    pub fn service(self: &Arc<Self>, router: Router) -> Bridged {
        Bridged { bridge: self.clone(), router }
    }

    fn call(&self, router: Router, request: http::Request<Body>) -> Reply {
        self.clock.publish();
        let (tx, rx) = mpsc::sync_channel(1);
        self.jobs.send(Job { router, request, reply: tx }).map_err(|_| "bridge stopped".to_string())?;
        rx.recv().map_err(|_| "bridge stopped".to_string())?
    }
}

/// A bridged router as a tower service.
#[derive(Clone)]
pub struct Bridged {
    bridge: Arc<Bridge>,
    router: Router,
}

impl tower::Service<http::Request<Body>> for Bridged {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let bridge = self.bridge.clone();
        let router = self.router.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            // In-process request bodies are already in memory: collecting them does not wait.
            let body = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => return Ok(error(http::StatusCode::PAYLOAD_TOO_LARGE, e.to_string())),
            };
            let request = http::Request::from_parts(parts, Body::from(body));
            Ok(match bridge.call(router, request) {
                Ok((parts, bytes)) => http::Response::from_parts(parts, Body::from(bytes)),
                Err(e) => error(http::StatusCode::BAD_GATEWAY, e),
            })
        })
    }
}

fn error(status: http::StatusCode, msg: String) -> http::Response<Body> {
    let mut r = http::Response::new(Body::from(msg));
    *r.status_mut() = status;
    r
}

/// Unix seconds following the simulation's virtual time, readable from the bridge thread too
/// (which has its own, real-time, runtime): on the simulation's thread it reads tokio's clock;
/// elsewhere it returns what the simulation last published.
pub struct SimUnixClock {
    base_unix: u64,
    start: tokio::time::Instant,
    sim_thread: ThreadId,
    published: AtomicU64,
}

impl SimUnixClock {
    /// Must be created on the simulation's thread, inside its runtime.
    pub fn new(base_unix: u64) -> Arc<Self> {
        Arc::new(Self {
            base_unix,
            start: tokio::time::Instant::now(),
            sim_thread: std::thread::current().id(),
            published: AtomicU64::new(base_unix),
        })
    }

    fn publish(&self) {
        if std::thread::current().id() == self.sim_thread {
            self.published.store(self.base_unix + self.start.elapsed().as_secs(), Relaxed);
        }
    }
}

impl crate::images::clock::Clock for SimUnixClock {
    fn now_unix(&self) -> u64 {
        if std::thread::current().id() == self.sim_thread {
            self.base_unix + self.start.elapsed().as_secs()
        } else {
            self.published.load(Relaxed)
        }
    }
}
