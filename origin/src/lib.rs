//! revmux origin `c`: dials the proxy, upgrades to a tunnel and serves files or a local app over it.

pub mod backoff;
pub mod config;
pub mod dial;
pub mod files;
pub mod logs;
pub mod preface;
pub mod serve;
pub mod upstream;

use backoff::Backoff;
use common::body::BoxBody;
use config::{App, Settings};
use http::{Request, Response};
pub use serve::{serve_tunnel, RequestBody};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, info_span, warn, Instrument};

/// First reconnect delay; doubles per failed attempt up to [`MAX_BACKOFF`].
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(500);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A tunnel that stayed up this long resets the backoff.
pub const HEALTHY_AFTER: Duration = Duration::from_secs(30);
/// Cap of the reconnect delay after a failure only a person can fix (the CA, the port, the
/// token): c keeps trying, so a fix on the proxy's side is picked up, but slowly and at ERROR.
pub const MAX_BACKOFF_NEEDS_A_PERSON: Duration = Duration::from_secs(300);

impl App {
    /// Drop what the origin keeps only to be faster once a burst is over (`common::memory`):
    /// the kept file-chunk buffers and the small files no request may be answered from. True
    /// while cached small files are left that a later call will free.
    pub fn release_kept_memory(&self) -> bool {
        files::release_kept_buffers();
        match self {
            App::Files(files) => files.forget_unusable(),
            App::Upstream(_) => false,
        }
    }

    /// Answer one stream from the tunnel.
    pub async fn handle(&self, mut req: Request<RequestBody>) -> Response<BoxBody> {
        common::memory::worked();
        // A route may name one of this origin's services; today it has one, the default.
        if let Some(service) = req.headers_mut().remove(common::protocol::SERVICE_HEADER) {
            if service.as_bytes() != common::protocol::DEFAULT_SERVICE.as_bytes() {
                let name = String::from_utf8_lossy(service.as_bytes()).into_owned();
                return no_such_service(&name);
            }
        }
        // How long the proxy waits for this answer: an --upstream service gets that long and
        // its own response timeout more (upstream::RESPONSE_HEADER_TIMEOUT).
        let timeout = common::protocol::take_response_timeout(req.headers_mut());
        match self {
            App::Files(files) => files.handle(req).await,
            App::Upstream(upstream) => upstream.handle(req, timeout).await,
        }
    }
}

/// 404 for a route that names a service this origin does not have.
fn no_such_service(name: &str) -> Response<BoxBody> {
    let text = format!(
        "404 not found: this origin has no service {name:?}; it has one, {:?} (its --root or --upstream)\n",
        common::protocol::DEFAULT_SERVICE
    );
    let mut resp = Response::new(common::body::full(text));
    *resp.status_mut() = http::StatusCode::NOT_FOUND;
    resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

/// Keep a tunnel to the proxy open until `shutdown`: dial, serve, and on any failure wait a
/// jittered, growing delay and dial again. Returns only on shutdown.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let tls = common::tls::client_config(&settings.trust, common::tls::ALPN_TUNNEL)?;
    let mut backoff = Backoff::new(INITIAL_BACKOFF, MAX_BACKOFF);
    let mut stuck = Backoff::new(INITIAL_BACKOFF, MAX_BACKOFF_NEEDS_A_PERSON);
    let span =
        info_span!("tunnel", origin = %settings.name, instance = %settings.instance, proxy = %settings.proxy.authority);
    async {
        loop {
            let attempt = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                r = dial::open_tunnel(&settings, &tls) => r,
            };
            match attempt {
                Ok((upgraded, urls)) => {
                    stuck.reset();
                    if urls.is_empty() {
                        info!("tunnel up");
                    } else {
                        info!(urls = %urls.join(" "), "tunnel up; front-end clients reach this origin at these URLs");
                    }
                    let started = Instant::now();
                    let outcome = serve_tunnel(upgraded, settings.app.clone(), &shutdown).await;
                    if shutdown.is_cancelled() {
                        return Ok(());
                    }
                    if started.elapsed() >= HEALTHY_AFTER {
                        backoff.reset();
                    }
                    let delay = backoff.next_delay();
                    match outcome {
                        Ok(()) => info!(retry_in = ?delay, "tunnel closed by the proxy; reconnecting"),
                        // hyper's own text is only the kind ("connection error"); the cause says which.
                        Err(e) => warn!(error = %format!("{:#}", anyhow::Error::new(e)), retry_in = ?delay, "tunnel lost; reconnecting"),
                    }
                    if sleep_or_shutdown(delay, &shutdown).await {
                        return Ok(());
                    }
                }
                Err(e) => {
                    let delay = if e.needs_a_person() { stuck.next_delay() } else { backoff.next_delay() };
                    if e.is_rejection() {
                        // Never hidden at a lower level: someone has to fix the token, name or version.
                        error!(error = %e, retry_in = ?delay, "proxy rejected the tunnel; the error says why and what to change");
                    } else if e.needs_a_person() {
                        error!(error = %e, retry_in = ?delay, "cannot open the tunnel until this is fixed");
                    } else {
                        warn!(error = %e, retry_in = ?delay, "cannot open the tunnel");
                    }
                    if sleep_or_shutdown(delay, &shutdown).await {
                        return Ok(());
                    }
                }
            }
        }
    }
    .instrument(span)
    .await
}

/// Sleep for `delay`; true if shutdown came first.
async fn sleep_or_shutdown(delay: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => true,
        _ = tokio::time::sleep(delay) => false,
    }
}
