//! Routing, pools, policy, reload and admission, in process: a real proxy with a config file
//! and real origins over loopback TLS.

#![allow(clippy::unwrap_used)]

mod kit;

use base64::Engine as _;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use kit::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn body_of(b: &Bytes) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_keeps_serving_when_one_instance_dies() {
    let p = start_proxy().await;
    let (a, b) = (labelled_dir("a\n"), labelled_dir("b\n"));
    let first = start_origin(origin_settings(&p, "media", p.token.clone(), files(a.path())));
    connected(&p, "media").await;
    let _second = start_origin(origin_settings(&p, "media", p.token.clone(), files(b.path())));
    wait_for("a pool of two", || p.proxy.origins.tunnels_of("media").len() == 2).await;
    let status = proxy::admin::status(&p.proxy);
    assert_eq!(status.origins.len(), 1);
    assert_eq!(status.origins[0].instances.len(), 2, "grouped by instance");
    first.abort();
    // Every request is answered by the remaining instance, never with an error.
    wait_for("the dead instance to go", || p.proxy.origins.tunnels_of("media").len() == 1).await;
    for _ in 0..10 {
        let (status, _, body) = get(p.front, "/who.txt").await;
        assert_eq!((status, body_of(&body).as_str()), (StatusCode::OK, "b\n"));
    }
    p.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_and_fallback_never_crosses_origins() {
    let config =
        "[[route]]\nhost = \"a.test\"\norigin = \"alpha\"\n\n[[route]]\nhost = \"*.b.test\"\norigin = \"beta\"\n";
    let p = start_proxy_config(config).await;
    let (a, b) = (labelled_dir("alpha\n"), labelled_dir("beta\n"));
    let alpha = start_origin(origin_settings(&p, "alpha", p.token.clone(), files(a.path())));
    let _beta = start_origin(origin_settings(&p, "beta", p.token.clone(), files(b.path())));
    connected(&p, "alpha").await;
    connected(&p, "beta").await;
    let (s, _, body) = get_host(p.front, "a.test", "/who.txt").await;
    assert_eq!((s, body_of(&body).as_str()), (StatusCode::OK, "alpha\n"));
    let (s, _, body) = get_host(p.front, "www.b.test:8080", "/who.txt").await;
    assert_eq!((s, body_of(&body).as_str()), (StatusCode::OK, "beta\n"));
    let (s, _, body) = get_host(p.front, "c.test", "/who.txt").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(body_of(&body).contains("no route for c.test/who.txt"), "{body:?}");
    // alpha goes away: its host gets 502 naming it, never beta's site.
    alpha.abort();
    wait_for("alpha to go", || p.proxy.origins.tunnels_of("alpha").is_empty()).await;
    let (s, _, body) = get_host(p.front, "a.test", "/who.txt").await;
    assert_eq!(s, StatusCode::BAD_GATEWAY);
    assert!(body_of(&body).contains("origin alpha is not connected"), "{body:?}");
    p.shutdown.cancel();
}

/// A local HTTP service that answers every request with its method, path, Host, `x-from` and
/// the names of any `revmux-` headers it was sent (the proxy's words to origins, never to it).
async fn echo_service() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let internal: Vec<&str> =
                        req.headers().keys().map(|k| k.as_str()).filter(|k| k.starts_with("revmux-")).collect();
                    let text = format!(
                        "{} {} host={} x-from={}{}\n",
                        req.method(),
                        req.uri(),
                        req.headers().get("host").and_then(|v| v.to_str().ok()).unwrap_or("-"),
                        req.headers().get("x-from").and_then(|v| v.to_str().ok()).unwrap_or("-"),
                        if internal.is_empty() { String::new() } else { format!(" revmux={}", internal.join(",")) },
                    );
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(text))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_and_policy() {
    let svc = echo_service().await;
    let hash = proxy::policy::hash_password("s3cret").unwrap();
    let config = format!(
        r#"
[[route]]
path = "/api"
url = "http://{svc}/base"
strip_prefix = true
host_header = "internal.test"
request_headers = {{ set = {{ x-from = "revmux" }} }}
response_headers = {{ set = {{ cache-control = "no-store" }} }}

[[route]]
path = "/private"
respond = {{ status = 200, body = "secret page\n" }}
basic_auth = ["alice:{hash}"]

[[route]]
path = "/lan"
respond = {{ status = 200 }}
allow = ["192.168.0.0/16"]

[[route]]
path = "/old"
redirect = "https://new.example/"

[[route]]
path = "/status"
handler = "status"

[[route]]
path = "/healthz"
handler = "health"

[[route]]
respond = {{ status = 204 }}
"#
    );
    let p = start_proxy_config(&config).await;
    let (s, headers, body) = get(p.front, "/api/v1?x=1").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(body_of(&body), "GET /base/v1?x=1 host=internal.test x-from=revmux\n");
    // What a front-end client says in the proxy's own headers goes nowhere.
    let req = Request::get("/api/v1").header("host", "x").header("revmux-response-timeout", "1");
    let req = req.header("revmux-service", "other").body(Full::default()).unwrap();
    let (s, _, body) = get_with(p.front, req).await;
    assert_eq!((s, body_of(&body).as_str()), (StatusCode::OK, "GET /base/v1 host=internal.test x-from=revmux\n"));

    let (s, headers, _) = get(p.front, "/private").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["www-authenticate"], "Basic realm=\"revmux\", charset=\"UTF-8\"");
    let auth = |pw: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("alice:{pw}")));
    let req = |pw: &str| {
        Request::get("/private").header("host", "x").header("authorization", auth(pw)).body(Full::default()).unwrap()
    };
    assert_eq!(get_with(p.front, req("wrong")).await.0, StatusCode::UNAUTHORIZED);
    let (s, _, body) = get_with(p.front, req("s3cret")).await;
    assert_eq!((s, body_of(&body).as_str()), (StatusCode::OK, "secret page\n"));

    assert_eq!(get(p.front, "/lan").await.0, StatusCode::FORBIDDEN, "127.0.0.1 is not in 192.168.0.0/16");
    let (s, headers, _) = get(p.front, "/old/page?q=1").await;
    assert_eq!((s, headers["location"].to_str().unwrap()), (StatusCode::PERMANENT_REDIRECT, "https://new.example/"));
    let (s, headers, body) = get(p.front, "/status").await;
    assert_eq!((s, headers["content-type"].to_str().unwrap()), (StatusCode::OK, "text/html; charset=utf-8"));
    assert!(body_of(&body).contains("<h1>revmux status</h1>") && body_of(&body).contains("respond 204"));
    let (s, _, body) = get(p.front, "/healthz").await;
    assert_eq!((s, body_of(&body).as_str()), (StatusCode::OK, "ok\n"));
    let (s, _, body) = get(p.front, "/anything").await;
    assert_eq!((s, body.len()), (StatusCode::NO_CONTENT, 0));
    p.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_reloads_under_load_fail_no_request() {
    let config = |n: usize| format!("[[route]]\npath = \"/\"\norigin = \"media\"\ntimeout = \"{}s\"\n", 30 + n);
    let p = start_proxy_config(&config(0)).await;
    let media = media_dir();
    start_origin(origin_settings(&p, "media", p.token.clone(), files(media.path())));
    connected(&p, "media").await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (front, stop, done) = (p.front, stop.clone(), done.clone());
        load.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let (s, _, body) = get(front, "/small.txt").await;
                if s != StatusCode::OK || &body[..] != b"hello through the tunnel\n" {
                    failures.push(s);
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            failures
        }));
    }
    for n in 1..=20 {
        assert_eq!(p.reconfigure(&config(n)), 0, "nothing revoked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A bad file in between changes nothing.
    std::fs::write(p.config_path(), "[[route]]\nhost = \"bad host\"\norigin = \"media\"\n").unwrap();
    let e = proxy::reload::reload(&p.proxy, &p.sources).unwrap_err();
    assert!(
        e.to_string().ends_with("revmux.toml:2: route[1].host: \"bad host\" is not a host name or *.domain pattern"),
        "{e}"
    );
    stop.store(true, Ordering::Relaxed);
    for task in load {
        assert_eq!(task.await.unwrap(), Vec::<StatusCode>::new(), "no request failed during the reloads");
    }
    assert!(done.load(Ordering::Relaxed) >= 20);
    assert_eq!(p.proxy.counters.reloads.load(Ordering::Relaxed), 20);
    assert_eq!(p.proxy.table.load().routes[0].policy.timeout, Some(Duration::from_secs(50)), "the last good one");
    p.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_revokes_a_token_closes_its_tunnels() {
    let p = start_proxy_config("[[origin]]\nname = \"media\"\ntoken = \"old-token\"\n").await;
    let media = media_dir();
    start_origin(origin_settings(&p, "media", common::Secret::new("old-token"), files(media.path())));
    connected(&p, "media").await;
    assert_eq!(p.reconfigure("[[origin]]\nname = \"media\"\ntoken = \"new-token\"\n"), 1);
    assert!(p.proxy.origins.is_empty(), "the revoked tunnel is gone at once");
    let (s, _, _) = get(p.front, "/small.txt").await;
    assert_eq!(s, StatusCode::BAD_GATEWAY);
    p.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_an_origins_waiting_bound_get_503_at_once() {
    // One stream per tunnel and one more may wait: the third request is refused.
    let limits = proxy::Limits { tunnel_streams: 1, max_waiting_per_origin: 1, ..Default::default() };
    let p = start_proxy_full(limits, None).await;
    silent_upstream_origin(&p, "app").await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let front = p.front;
        held.push(tokio::spawn(async move { get(front, "/hang").await }));
    }
    wait_for("two streams in flight", || {
        p.proxy.origins.tunnels_of("app")[0].stats.open_streams.load(Ordering::Relaxed) == 2
    })
    .await;
    let started = std::time::Instant::now();
    let (s, headers, body) = get(p.front, "/one-too-many").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "1");
    assert!(body_of(&body).contains("origin app already has 1 requests waiting"), "{body:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "refused at once");
    for h in held {
        h.abort();
    }
    p.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_origin_totals_survive_reconnects() {
    let p = start_proxy().await;
    let dir = labelled_dir("a\n");
    let first = start_origin(origin_settings(&p, "media", p.token.clone(), files(dir.path())));
    connected(&p, "media").await;
    for _ in 0..3 {
        assert_eq!(get(p.front, "/who.txt").await.0, StatusCode::OK);
    }
    first.abort();
    wait_for("the tunnel to go", || p.proxy.origins.tunnels_of("media").is_empty()).await;
    let _second = start_origin(origin_settings(&p, "media", p.token.clone(), files(dir.path())));
    connected(&p, "media").await;
    assert_eq!(get(p.front, "/who.txt").await.0, StatusCode::OK);
    let status = proxy::admin::status(&p.proxy);
    let media = &status.origins[0];
    assert_eq!(media.requests, 4, "three before the reconnect, one after");
    assert_eq!(media.bytes_from_origin, 4 * 2);
    assert_eq!(media.tunnels_connected, 2);
    assert_eq!(media.routes, vec![status.routes[0].name.clone()], "the default route points at it");
    let latency = status.proxy.responses.iter().find(|r| r.origin == "media" && r.class == "2xx");
    assert_eq!(latency.map(|r| r.count), Some(4), "latency is kept per origin name, across reconnects too");
    p.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_names_an_origins_service_and_clients_cannot() {
    let config = "[[route]]\npath = \"/other\"\norigin = \"media\"\nservice = \"other\"\n\n\
                  [[route]]\norigin = \"media\"\nservice = \"default\"\n";
    let p = start_proxy_config(config).await;
    let dir = labelled_dir("a\n");
    start_origin(origin_settings(&p, "media", p.token.clone(), files(dir.path())));
    connected(&p, "media").await;
    let (s, _, body) = get(p.front, "/who.txt").await;
    assert_eq!((s, body_of(&body).as_str()), (StatusCode::OK, "a\n"), "the default service");
    let (s, _, body) = get(p.front, "/other/who.txt").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(body_of(&body).contains("no service \"other\""), "{body:?}");
    // A front-end client cannot pick a service by sending the header itself.
    let mut sender = h1(p.front).await;
    let req =
        Request::get("/who.txt").header("host", "x").header("revmux-service", "other").body(Full::default()).unwrap();
    assert_eq!(sender.send_request(req).await.unwrap().status(), StatusCode::OK);
    p.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_tells_an_origin_the_urls_it_is_reachable_at() {
    let config =
        "[[route]]\nhost = \"a.test\"\norigin = \"alpha\"\n\n[[route]]\npath = \"/beta\"\norigin = \"beta\"\n\n\
                  [[route]]\npath = \"/\"\norigin = \"alpha\"\n";
    let p = start_proxy_config(config).await;
    let dir = labelled_dir("alpha\n");
    let settings = origin_settings(&p, "alpha", p.token.clone(), files(dir.path()));
    let tls = common::tls::client_config(&settings.trust, common::tls::ALPN_TUNNEL).unwrap();
    let (_upgraded, urls) = origin::dial::open_tunnel(&settings, &tls).await.unwrap();
    let port = p.front.port();
    assert_eq!(urls, [format!("http://a.test:{port}/"), format!("http://127.0.0.1:{port}/")]);
    p.shutdown.cancel();
}
