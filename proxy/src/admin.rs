//! The admin endpoint (`GET /status` as JSON, `GET /` as HTML, `GET /metrics` in Prometheus text) and the
//! `p status` command that prints the same status as a table, once or every few seconds.

use crate::state::Proxy;
use crate::status::{self, ProxyInfo, Status};
use bytes::Bytes;
use common::body::{self, BoxBody};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The status document of a running proxy.
pub fn status(proxy: &Proxy) -> Status {
    let mut status = Status::build(&proxy.origins.snapshot(), &proxy.table.load());
    status.proxy = ProxyInfo::collect(&proxy.counters, &proxy.latencies);
    status
}

/// Answer one admin request.
pub async fn handle(proxy: &Proxy, req: Request<Incoming>) -> Response<BoxBody> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "405 method not allowed: use GET\n");
    }
    match req.uri().path() {
        "/status" => {
            let status = status(proxy);
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
        "/" => with_type(Response::new(body::full(status::html(&status(proxy)))), "text/html; charset=utf-8"),
        _ => text(StatusCode::NOT_FOUND, "404 not found: try /, /status or /metrics\n"),
    }
}

fn metrics_text(proxy: &Proxy) -> Result<String, std::fmt::Error> {
    type Labels = Vec<(&'static str, String)>;
    let mut root = prometheus_client::registry::Registry::default();
    register_process(&mut root);
    let registry = root.sub_registry_with_prefix("revmux");
    let build = Family::<Labels, Gauge>::default();
    let (version, commit) = status::version_and_commit(common::VERSION);
    build.get_or_create(&vec![("version", version.to_owned()), ("commit", commit.to_owned())]).set(1);
    registry.register("build_info", "The running build: its version and git commit (always 1)", build);
    registry.register(
        "request_duration_seconds",
        "Time from a front-end request's arrival to its response head, per origin (empty: answered by the proxy) and status class",
        crate::metrics::latency_family(&proxy.latencies),
    );
    let tunnels = Family::<Labels, Gauge>::default();
    let open = Family::<Labels, Gauge>::default();
    let requests = Family::<Labels, Counter>::default();
    let to_origin = Family::<Labels, Counter>::default();
    let from_origin = Family::<Labels, Counter>::default();
    let instances = Family::<Labels, Gauge>::default();
    for o in proxy.origins.snapshot() {
        let labels = vec![("origin", o.name.clone())];
        instances.get_or_create(&labels).set(o.instances.len() as i64);
        // Counters keep counting across reconnects: tunnels that are gone left their share.
        requests.get_or_create(&labels).inc_by(o.retired.requests);
        to_origin.get_or_create(&labels).inc_by(o.retired.bytes_to_origin);
        from_origin.get_or_create(&labels).inc_by(o.retired.bytes_from_origin);
        for t in o.tunnels() {
            tunnels.get_or_create(&labels).inc();
            open.get_or_create(&labels).inc_by(t.open_streams as i64);
            requests.get_or_create(&labels).inc_by(t.requests);
            to_origin.get_or_create(&labels).inc_by(t.bytes_to_origin);
            from_origin.get_or_create(&labels).inc_by(t.bytes_from_origin);
        }
    }
    registry.register("instances", "Connected origin processes per origin name (a pool)", instances);
    registry.register("tunnels", "Connected tunnels per origin", tunnels);
    registry.register("open_streams", "Streams in flight per origin", open);
    registry.register(
        "requests",
        "Requests forwarded per origin (since the proxy started, across reconnects)",
        requests,
    );
    registry.register("bytes_to_origin", "Request body bytes sent to the origin", to_origin);
    registry.register("bytes_from_origin", "Response body bytes received from the origin", from_origin);
    let failed = Family::<Vec<(&'static str, &'static str)>, Counter>::default();
    let c = &proxy.counters;
    for (reason, n) in c.failures() {
        failed.get_or_create(&vec![("reason", reason)]).inc_by(n);
    }
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

    let drained = Counter::<u64>::default();
    drained.inc_by(stalls.drained_frames.load(Ordering::Relaxed));
    registry.register(
        "frames_drained",
        "Response DATA frames the proxy moved out of HTTP/2's buffers while their front-end client was away",
        drained,
    );

    let in_flight = Gauge::<i64>::default();
    in_flight.set(stalls.len() as i64);
    registry.register("responses_in_flight", "Responses streaming from origins to front-end clients", in_flight);

    let suppressed = Counter::<u64>::default();
    suppressed.inc_by(crate::logs::suppressed_total());
    let reloads = Family::<Vec<(&'static str, &'static str)>, Counter>::default();
    reloads.get_or_create(&vec![("result", "applied")]).inc_by(c.reloads.load(Ordering::Relaxed));
    reloads.get_or_create(&vec![("result", "refused")]).inc_by(c.reloads_failed.load(Ordering::Relaxed));
    registry.register("config_reloads", "Configuration reloads, applied or refused (bad file)", reloads);
    registry.register("log_suppressed", "Repeated warning lines left out of the log by rate limiting", suppressed);
    let dropped = Counter::<u64>::default();
    dropped.inc_by(common::logging::access_lines_dropped());
    registry.register("access_log_dropped", "Access-log lines dropped because their writer fell behind", dropped);
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &root)?;
    Ok(out)
}

/// The usual `process_*` metrics (no prefix), from `/proc/self`; those unknown are left out.
fn register_process(root: &mut prometheus_client::registry::Registry) {
    use prometheus_client::metrics::gauge::Gauge as G;
    let p = crate::process::recent();
    if let Some(cpu) = p.cpu_seconds {
        let c = Counter::<f64, std::sync::atomic::AtomicU64>::default();
        c.inc_by(cpu);
        root.register("process_cpu_seconds", "User and system CPU time spent, in seconds", c);
    }
    let gauges: [(&str, &str, Option<f64>); 5] = [
        ("process_resident_memory_bytes", "Resident memory size in bytes", p.resident_memory_bytes.map(|v| v as f64)),
        ("process_open_fds", "Open file descriptors", p.open_fds.map(|v| v as f64)),
        ("process_max_fds", "The limit on open file descriptors", p.max_fds.map(|v| v as f64)),
        ("process_threads", "Operating-system threads", p.threads.map(|v| v as f64)),
        (
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, in seconds",
            p.start_time_seconds,
        ),
    ];
    for (name, help, value) in gauges {
        if let Some(v) = value {
            let g = G::<f64, std::sync::atomic::AtomicU64>::default();
            g.set(v);
            root.register(name, help, g);
        }
    }
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
        .with_context(|| format!("cannot get status from http://{admin}/status"))
}

/// What `p status` says when it cannot ask: where it tried and how to point it elsewhere.
pub fn status_hint(admin: SocketAddr) -> String {
    format!(
        "is p running, with its admin port at {admin} (--admin-listen, default 127.0.0.1:1445)? If it \
         listens elsewhere, point p status at it with --admin-listen ADDR or REVMUX_ADMIN_LISTEN=ADDR, \
         e.g. p status --admin-listen 127.0.0.1:9445"
    )
}

/// `p status`: print the table once (exit 1 when the proxy cannot be asked), or with `watch`
/// every that often until SIGINT or SIGTERM (exit 0), redrawn in place when standard output is
/// a terminal and printed one after another when it is not.
pub async fn status_command(admin: SocketAddr, watch: Option<Duration>) -> i32 {
    use std::io::{IsTerminal, Write};
    let Some(every) = watch else {
        return match fetch_status(admin).await {
            Ok(status) => match std::io::stdout().write_all(status::table(&status).as_bytes()) {
                Ok(()) => 0,
                Err(_) => 1,
            },
            Err(e) => {
                eprintln!("error: {e:#}\n  hint: {}", status_hint(admin));
                1
            }
        };
    };
    let terminal = std::io::stdout().is_terminal();
    let stop = common::shutdown::signal();
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => return 0,
            _ = tick.tick() => {}
        }
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
        let fetched = tokio::select! {
            _ = &mut stop => return 0,
            fetched = fetch_status(admin) => fetched,
        };
        let body = match fetched {
            Ok(status) => status::table(&status),
            Err(e) => format!("error: {e:#}\n  hint: {}\n", status_hint(admin)),
        };
        let clear = if terminal { "\x1b[H\x1b[2J" } else { "" };
        let text = format!(
            "{clear}revmux status from {admin} at {now} (every {}; Ctrl-C to stop)\n\n{body}\n",
            humantime::format_duration(every)
        );
        let mut out = std::io::stdout().lock();
        // Standard output closed (the reader went away): nothing left to do.
        if out.write_all(text.as_bytes()).and_then(|()| out.flush()).is_err() {
            return 0;
        }
    }
}
