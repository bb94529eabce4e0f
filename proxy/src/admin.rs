//! The admin endpoint (`GET /status` as JSON, `GET /metrics` in Prometheus text format) and the
//! `p status` command that prints the same status as a table.

use crate::forward::ForwardError;
use crate::registry::TunnelSnapshot;
use crate::Proxy;
use bytes::Bytes;
use common::body::{self, BoxBody};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Proxy-wide counters of requests that never reached an origin.
#[derive(Debug, Default)]
pub struct Counters {
    pub no_origin: AtomicU64,
    pub origin_failed: AtomicU64,
    pub bad_request: AtomicU64,
    pub response_timeout: AtomicU64,
    pub client_busy: AtomicU64,
    /// Tunnel-port connections that did not become a tunnel, by reason.
    tunnel_rejections: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
}

impl Counters {
    pub fn tunnel_rejected(&self, reason: &'static str) {
        let mut map = self.tunnel_rejections.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry(reason).or_insert(0) += 1;
    }

    pub fn tunnel_rejections(&self) -> Vec<(&'static str, u64)> {
        let map = self.tunnel_rejections.lock().unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(k, v)| (*k, *v)).collect()
    }

    pub fn record_failure(&self, e: &ForwardError) {
        let counter = match e {
            ForwardError::NoOrigin => &self.no_origin,
            ForwardError::Origin { .. } | ForwardError::TunnelsClosed => &self.origin_failed,
            ForwardError::ResponseTimeout { .. } => &self.response_timeout,
            ForwardError::ClientBusy(_) => &self.client_busy,
            ForwardError::NoHost | ForwardError::BadHost(_) | ForwardError::Unsupported(_) => &self.bad_request,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The JSON document served at `/status`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Status {
    pub origins: Vec<TunnelSnapshot>,
}

/// Answer one admin request.
pub async fn handle(proxy: &Proxy, req: Request<Incoming>) -> Response<BoxBody> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "405 method not allowed: use GET\n");
    }
    match req.uri().path() {
        "/status" => {
            let status = Status { origins: proxy.registry.snapshot() };
            match serde_json::to_vec_pretty(&status) {
                Ok(mut json) => {
                    json.push(b'\n');
                    with_type(Response::new(body::full(json)), "application/json")
                }
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("500 cannot encode status: {e}\n")),
            }
        }
        "/metrics" => match metrics_text(proxy) {
            Ok(text) => with_type(Response::new(body::full(text)), "text/plain; version=0.0.4; charset=utf-8"),
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("500 cannot encode metrics: {e}\n")),
        },
        _ => text(StatusCode::NOT_FOUND, "404 not found: try /status or /metrics\n"),
    }
}

fn metrics_text(proxy: &Proxy) -> Result<String, std::fmt::Error> {
    type Labels = Vec<(&'static str, String)>;
    let mut registry = prometheus_client::registry::Registry::with_prefix("revmux");
    let tunnels = Family::<Labels, Gauge>::default();
    let open = Family::<Labels, Gauge>::default();
    let requests = Family::<Labels, Counter>::default();
    let to_origin = Family::<Labels, Counter>::default();
    let from_origin = Family::<Labels, Counter>::default();
    for t in proxy.registry.snapshot() {
        let labels = vec![("origin", t.name.clone())];
        tunnels.get_or_create(&labels).inc();
        open.get_or_create(&labels).inc_by(t.open_streams as i64);
        requests.get_or_create(&labels).inc_by(t.requests);
        to_origin.get_or_create(&labels).inc_by(t.bytes_to_origin);
        from_origin.get_or_create(&labels).inc_by(t.bytes_from_origin);
    }
    registry.register("tunnels", "Connected tunnels per origin", tunnels);
    registry.register("open_streams", "Streams in flight per origin", open);
    registry.register("requests", "Requests forwarded per origin (on current tunnels)", requests);
    registry.register("bytes_to_origin", "Request body bytes sent to the origin", to_origin);
    registry.register("bytes_from_origin", "Response body bytes received from the origin", from_origin);
    let failed = Family::<Vec<(&'static str, &'static str)>, Counter>::default();
    let c = &proxy.counters;
    failed.get_or_create(&vec![("reason", "no_origin")]).inc_by(c.no_origin.load(Ordering::Relaxed));
    failed.get_or_create(&vec![("reason", "origin_failed")]).inc_by(c.origin_failed.load(Ordering::Relaxed));
    failed.get_or_create(&vec![("reason", "bad_request")]).inc_by(c.bad_request.load(Ordering::Relaxed));
    failed.get_or_create(&vec![("reason", "response_timeout")]).inc_by(c.response_timeout.load(Ordering::Relaxed));
    failed.get_or_create(&vec![("reason", "client_busy")]).inc_by(c.client_busy.load(Ordering::Relaxed));
    registry.register("failed_requests", "Front-end requests answered by the proxy itself with an error", failed);

    let rejections = Family::<Vec<(&'static str, &'static str)>, Counter>::default();
    for (reason, n) in c.tunnel_rejections() {
        rejections.get_or_create(&vec![("reason", reason)]).inc_by(n);
    }
    registry.register(
        "tunnel_rejections",
        "Tunnel-port connections that did not become a tunnel, by reason",
        rejections,
    );

    let refused = Family::<Vec<(&'static str, &'static str)>, Counter>::default();
    let per_client = &proxy.per_client;
    for (listener, limiter) in
        [("frontend", &per_client.frontend), ("tunnel", &per_client.tunnel), ("admin", &per_client.admin)]
    {
        refused.get_or_create(&vec![("listener", listener)]).inc_by(limiter.refused.load(Ordering::Relaxed));
    }
    registry.register(
        "connections_refused",
        "Connections closed at once because their client address held its limit, by listener",
        refused,
    );

    let evicted = Family::<Vec<(&'static str, &'static str)>, Counter>::default();
    let stalls = &proxy.stalls;
    evicted.get_or_create(&vec![("reason", "stalled")]).inc_by(stalls.evicted_pressure.load(Ordering::Relaxed));
    evicted
        .get_or_create(&vec![("reason", "send_timeout")])
        .inc_by(stalls.evicted_send_timeout.load(Ordering::Relaxed));
    registry.register(
        "streams_evicted",
        "Streams the proxy reset because their front-end client stopped reading",
        evicted,
    );

    let in_flight = Gauge::<i64>::default();
    in_flight.set(stalls.len() as i64);
    registry.register("responses_in_flight", "Responses streaming from origins to front-end clients", in_flight);

    let suppressed = Counter::<u64>::default();
    suppressed.inc_by(
        crate::server::log_suppressed()
            + crate::frontend::log_suppressed()
            + crate::forward::log_suppressed()
            + crate::tunnel::log_suppressed(),
    );
    registry.register("log_suppressed", "Repeated warning lines left out of the log by rate limiting", suppressed);
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

fn text(status: StatusCode, message: &str) -> Response<BoxBody> {
    let mut resp = with_type(Response::new(body::full(message.to_owned())), "text/plain; charset=utf-8");
    *resp.status_mut() = status;
    resp
}

fn with_type(mut resp: Response<BoxBody>, content_type: &'static str) -> Response<BoxBody> {
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// Fetch `/status` from a running proxy's admin endpoint.
pub async fn fetch_status(admin: SocketAddr) -> anyhow::Result<Status> {
    use anyhow::Context as _;
    let work = async {
        let tcp = tokio::net::TcpStream::connect(admin).await.context("connect")?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake::<_, http_body_util::Empty<Bytes>>(hyper_util::rt::TokioIo::new(tcp))
                .await
                .context("HTTP handshake")?;
        tokio::spawn(conn);
        let req = Request::get("/status").header(header::HOST, admin.to_string()).body(http_body_util::Empty::new())?;
        let resp = sender.send_request(req).await.context("request")?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await.context("reading the answer")?.to_bytes();
        anyhow::ensure!(status.is_success(), "answered {status}: {}", String::from_utf8_lossy(&bytes).trim());
        serde_json::from_slice::<Status>(&bytes).context("not a status document")
    };
    tokio::time::timeout(Duration::from_secs(5), work)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within 5 s"))?
        .with_context(|| format!("cannot get status from the admin endpoint {admin}"))
}

/// Render the status as an aligned table.
pub fn status_table(status: &Status) -> String {
    if status.origins.is_empty() {
        return "no origin is connected\n".to_owned();
    }
    let header = ["ORIGIN", "PEER", "CONNECTED SINCE", "UPTIME", "STREAMS", "REQUESTS", "TO ORIGIN", "FROM ORIGIN"];
    let rows: Vec<[String; 8]> = status
        .origins
        .iter()
        .map(|o| {
            [
                o.name.clone(),
                o.peer.clone(),
                o.connected_since.clone(),
                humantime::format_duration(Duration::from_secs(o.connected_secs)).to_string(),
                o.open_streams.to_string(),
                o.requests.to_string(),
                human_bytes(o.bytes_to_origin),
                human_bytes(o.bytes_from_origin),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let parts: Vec<String> = cells.zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in &rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lists_each_origin() {
        let status = Status {
            origins: vec![TunnelSnapshot {
                name: "media".into(),
                tunnel_id: 1,
                peer: "127.0.0.1:5000".into(),
                connected_since: "2026-01-01T00:00:00Z".into(),
                connected_secs: 65,
                open_streams: 2,
                requests: 10,
                bytes_to_origin: 100,
                bytes_from_origin: 3 * 1024 * 1024,
            }],
        };
        let table = status_table(&status);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("ORIGIN"));
        assert!(lines[1].contains("media") && lines[1].contains("1m 5s") && lines[1].contains("3.0 MiB"), "{table}");
        assert_eq!(status_table(&Status { origins: vec![] }), "no origin is connected\n");
    }
}
