//! Routers that read files (the image store, the HTTP boot server) go through tokio's blocking
//! pool, whose threads finish in wall-clock time: called directly from a paused-clock simulation,
//! their completions would interleave with simulated tasks differently on every run. The bridge
//! calls such a router *synchronously*, blocking the simulation's thread inside a helper runtime's
//! context (whose blocking pool does `tokio::fs`'s file work; what goes through
//! [`ferric_types::blocking::run`] runs on the calling thread): while one request is served, no simulated
//! task runs and virtual time stands still, so the result is the same on every run. The router,
//! its status codes, headers and bytes are the real ones.

use axum::Router;
use axum::body::Body;
use ferric_types::clock::Clock;
use http_body_util::BodyExt;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Largest request or response body carried across (images in a simulation are scaled down).
pub const MAX_BODY: usize = 256 << 20;

type Reply = Result<(http::response::Parts, bytes::Bytes), String>;

/// A runtime whose context simulated calls block in (see the module docs). It may be dropped
/// anywhere, the simulation's async context included (a plain `Runtime` panics when dropped
/// there): it shuts down in the background.
pub(super) struct HelperRuntime(Option<tokio::runtime::Runtime>);

impl HelperRuntime {
    pub(super) fn new(name: &str) -> std::io::Result<HelperRuntime> {
        // Calls run on the caller's thread; one long-lived worker drives the timers and sockets
        // they use, and the blocking pool takes their file work.
        let rt =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name(name).enable_all().build()?;
        Ok(HelperRuntime(Some(rt)))
    }

    /// Runs `f` to completion on this thread, blocking it, inside the helper's context: the
    /// simulation's runtime (which cannot be re-entered here) makes no progress meanwhile.
    /// Blocking work that `f` hands to [`ferric_types::blocking::run`] runs right here.
    pub(super) fn block_here<T>(&self, f: impl Future<Output = T>) -> T {
        let _context = self.0.as_ref().map(|rt| rt.enter());
        ferric_types::blocking::inline_within(|| futures::executor::block_on(f))
    }
}

impl Drop for HelperRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Serves bridged routers. Cheap to share.
pub struct Bridge {
    rt: HelperRuntime,
    clock: Clock,
}

/// Errors starting the bridge.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("cannot start the bridge runtime: {0}")]
    Thread(std::io::Error),
}

impl Bridge {
    /// Starts the helper runtime. `clock` is the simulation's clock; the bridge publishes the
    /// virtual time on it before each request, since inside the helper's context tokio's clock
    /// is not the simulation's.
    pub fn start(clock: Clock) -> Result<Arc<Bridge>, BridgeError> {
        let rt = HelperRuntime::new("sim-bridge").map_err(BridgeError::Thread)?;
        Ok(Arc::new(Bridge { rt, clock }))
    }

    /// A tower service that calls `router` through the bridge (register it with `TowerHttp`).
    pub fn service(self: &Arc<Self>, router: Router) -> Bridged {
        Bridged { bridge: self.clone(), router }
    }

    fn call(&self, router: Router, request: http::Request<Body>) -> Reply {
        let _published = self.clock.publish();
        self.rt.block_here(async move {
            use tower::ServiceExt;
            let resp = match router.oneshot(request).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            let (parts, body) = resp.into_parts();
            match http_body_util::Limited::new(body, MAX_BODY).collect().await {
                Ok(b) => Ok((parts, b.to_bytes())),
                Err(e) => Err(e.to_string()),
            }
        })
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
