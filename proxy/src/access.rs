//! The access log: one line per front-end request on the target `revmux::access`, written
//! when its response body ends, fails or is dropped (so a long download is logged at its end
//! with the bytes really sent, and one cut short says so), or when the request is dropped
//! before any answer. Bodies are counted with plain integers as they stream (the request
//! body's count is shared with the task that sends it on, hence one atomic per request).

use crate::origins::Tunnel;
use crate::route::Route;
use bytes::Bytes;
use common::body::{BoxBody, BoxError};
use common::logging::ACCESS_TARGET;
use common::ratelimit::truncate_for_log;
use http::{header, Method, Request, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

/// Longest host, path or instance written to an access line.
pub const FIELD_MAX: usize = 256;

/// Who answered a request, filled in as it is routed and forwarded.
#[derive(Debug, Default)]
pub struct Served {
    pub route: Option<Arc<Route>>,
    /// The origin's name, or a `url` target's URL.
    pub origin: Option<String>,
    /// The tunnel that carried the request to its origin.
    pub tunnel: Option<Arc<Tunnel>>,
    /// Request body bytes received from the front-end client so far.
    pub bytes_in: Arc<AtomicU64>,
}

/// How a request ended, as its access line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The whole response was sent (or it had no body to send).
    Complete,
    /// The response body failed mid-way: its origin aborted it, or the proxy reset it.
    Aborted,
    /// The front-end client went away before the response was complete.
    ClientGone,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Complete => "complete",
            Outcome::Aborted => "aborted",
            Outcome::ClientGone => "client_gone",
        }
    }
}

/// One front-end request on its way; writes its access line once, when it is finished.
#[derive(Debug)]
pub struct Record {
    start: Instant,
    client: SocketAddr,
    method: Method,
    uri: Uri,
    host: Option<http::HeaderValue>,
    version: Version,
    pub served: Served,
    status: Option<StatusCode>,
    head_after: Option<Duration>,
    bytes_out: u64,
    /// The response has no body to wait for (HEAD, 204, 304).
    bodyless: bool,
    outcome: Option<Outcome>,
}

impl Record {
    pub fn begin<B>(req: &Request<B>, client: SocketAddr) -> Self {
        Record {
            start: Instant::now(),
            client,
            method: req.method().clone(),
            uri: req.uri().clone(),
            host: if req.uri().authority().is_none() { req.headers().get(header::HOST).cloned() } else { None },
            version: req.version(),
            served: Served::default(),
            status: None,
            head_after: None,
            bytes_out: 0,
            bodyless: false,
            outcome: None,
        }
    }

    pub fn method(&self) -> &Method {
        &self.method
    }

    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// The response head is ready; returns how long it took.
    pub fn responded(&mut self, status: StatusCode) -> Duration {
        let after = self.start.elapsed();
        self.status = Some(status);
        self.head_after = Some(after);
        self.bodyless = self.method == Method::HEAD
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        after
    }

    /// The label of the origin that answered, or the empty label when the proxy did.
    pub fn origin_label(&self) -> &str {
        self.served.origin.as_deref().unwrap_or(crate::metrics::NO_ORIGIN)
    }

    /// Write the line now (only the first call writes).
    fn finish(&mut self, outcome: Outcome) {
        if self.outcome.is_some() {
            return;
        }
        self.outcome = Some(outcome);
        self.write();
    }

    fn write(&self) {
        if !enabled() {
            return;
        }
        let host = match (self.uri.authority(), &self.host) {
            (Some(a), _) => a.as_str(),
            (None, Some(h)) => h.to_str().unwrap_or("(not text)"),
            (None, None) => "",
        };
        // A Host header may hold spaces and quotes (such a request gets 400, but is logged):
        // quoted, it cannot pass for other fields of the line.
        let host = truncate_for_log(host, FIELD_MAX);
        let quoted;
        let host: &str = if host.bytes().all(|b| b.is_ascii_graphic() && b != b'"') {
            &host
        } else {
            quoted = format!("{host:?}");
            &quoted
        };
        let ms = |d: Duration| d.as_micros() as f64 / 1000.0;
        tracing::info!(
            target: ACCESS_TARGET,
            client = %self.client,
            method = %truncate_for_log(self.method.as_str(), 32),
            host = %host,
            path = %truncate_for_log(self.uri.path(), FIELD_MAX),
            proto = ?self.version,
            status = self.status.map(|s| s.as_u16()),
            bytes_in = self.served.bytes_in.load(Ordering::Relaxed),
            bytes_out = self.bytes_out,
            duration_ms = ms(self.start.elapsed()),
            head_ms = self.head_after.map(ms),
            origin = self.served.origin.as_deref().map(|o| display(truncate_for_log(o, FIELD_MAX))),
            // Text that may hold spaces: quoted in the human format.
            instance = self.served.tunnel.as_ref().map(|t| truncate_for_log(&t.instance, 64)).as_deref(),
            route = self.served.route.as_ref().map(|r| r.name.as_str()),
            outcome = %self.outcome.map_or("", Outcome::label),
        );
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        // Dropped before an answer, or with its body unfinished: the client left.
        let outcome = if self.status.is_some() && self.bodyless { Outcome::Complete } else { Outcome::ClientGone };
        self.finish(outcome);
    }
}

/// Whether access lines are written at all (not with `--access-log off`): when not, responses
/// are not wrapped to count their bytes.
pub fn enabled() -> bool {
    tracing::enabled!(target: ACCESS_TARGET, tracing::Level::INFO)
}

/// A response body that counts what it sends and finishes its request's [`Record`].
pub struct Logged {
    inner: BoxBody,
    record: Record,
}

impl Logged {
    /// `record` must have been told the response's status ([`Record::responded`]).
    pub fn new(inner: BoxBody, record: Record) -> Self {
        Logged { inner, record }
    }
}

impl Body for Logged {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let Some(data) = f.data_ref() {
                    this.record.bytes_out += data.len() as u64;
                }
            }
            Some(Err(_)) => this.record.finish(Outcome::Aborted),
            None => this.record.finish(Outcome::Complete),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        // A body that was never polled to its end may still have been complete (an empty
        // body the server did not poll).
        if self.inner.is_end_stream() {
            self.record.finish(Outcome::Complete);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Captures what a layer writes.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Capture {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
        }
    }

    fn capture(format: common::logging::LogFormat, work: impl FnOnce()) -> String {
        use tracing_subscriber::layer::SubscriberExt;
        let out = Capture::default();
        let writer = out.clone();
        let layer = common::logging::access_layer(format, move || writer.clone(), false);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, work);
        out.text()
    }

    fn request(method: Method, path: &str) -> Request<()> {
        Request::builder().method(method).uri(path).header("host", "media.example").body(()).unwrap_or_default()
    }

    fn client() -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 7], 40000))
    }

    #[test]
    fn a_host_with_spaces_cannot_forge_fields() {
        let out = capture(common::logging::LogFormat::Human, || {
            let req = Request::builder()
                .uri("/")
                .header("host", "x status=200 outcome=complete")
                .body(())
                .unwrap_or_default();
            let mut record = Record::begin(&req, client());
            record.responded(StatusCode::BAD_REQUEST);
            drop(Logged::new(common::body::empty(), record));
        });
        assert!(out.contains(r#"host="x status=200 outcome=complete""#), "{out}");
        assert!(out.contains("status=400"), "{out}");
    }

    #[test]
    fn a_finished_request_writes_one_line_with_its_fields() {
        let out = capture(common::logging::LogFormat::Human, || {
            let mut record = Record::begin(&request(Method::GET, "/films/a.mp4?secret=1"), client());
            record.served.origin = Some("media".into());
            record.served.bytes_in.store(12, Ordering::Relaxed);
            record.responded(StatusCode::OK);
            let mut body = Logged::new(common::body::full(vec![0u8; 1000]), record);
            let waker = futures_util::task::noop_waker();
            let mut cx = Context::from_waker(&waker);
            while let Poll::Ready(Some(_)) = Pin::new(&mut body).poll_frame(&mut cx) {}
            drop(body);
            tracing::info!("not an access line");
        });
        assert_eq!(out.lines().count(), 1, "{out}");
        for field in [
            "revmux::access",
            "client=192.0.2.7:40000",
            "method=GET",
            "host=media.example",
            "path=/films/a.mp4 ",
            "status=200",
            "bytes_in=12",
            "bytes_out=1000",
            "duration_ms=",
            "head_ms=",
            "origin=media",
            "outcome=complete",
        ] {
            assert!(out.contains(field), "{field} in {out}");
        }
        assert!(!out.contains("secret"), "the query is not logged: {out}");
        assert!(!out.contains("route="), "absent fields are left out: {out}");
    }

    #[test]
    fn dropped_bodies_and_unanswered_requests_say_so_in_json() {
        let out = capture(common::logging::LogFormat::Json, || {
            let mut record = Record::begin(&request(Method::GET, &format!("/{}", "x".repeat(1000))), client());
            record.responded(StatusCode::OK);
            let body = Logged::new(common::body::full(vec![0u8; 10]), record);
            drop(body); // the client went away before reading
            let record = Record::begin(&request(Method::GET, "/slow"), client());
            drop(record); // never answered
            let mut record = Record::begin(&request(Method::HEAD, "/a"), client());
            record.responded(StatusCode::OK);
            drop(Logged::new(common::body::empty(), record));
        });
        let lines: Vec<serde_json::Value> =
            out.lines().map(|l| serde_json::from_str(l).unwrap_or(serde_json::Value::Null)).collect();
        assert_eq!(lines.len(), 3, "{out}");
        let field = |i: usize, name: &str| lines[i]["fields"][name].clone();
        assert_eq!(lines[0]["target"], "revmux::access");
        assert_eq!(field(0, "outcome"), "client_gone");
        assert_eq!(field(0, "bytes_out"), 0);
        assert_eq!(field(0, "status"), 200);
        assert!(field(0, "path").as_str().is_some_and(|p| p.len() < 300 && p.ends_with("(1001 bytes)")), "{out}");
        assert_eq!(field(1, "outcome"), "client_gone");
        assert!(field(1, "status").is_null(), "no status when none was sent: {out}");
        assert_eq!(field(2, "outcome"), "complete");
        assert_eq!(field(2, "method"), "HEAD");
    }
}
