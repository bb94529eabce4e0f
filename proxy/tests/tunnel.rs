//! In-process end-to-end tests: a real proxy and a real origin in one process, on port 0,
//! talking TLS and HTTP/2 over loopback. Readiness is polled, never slept for.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use common::certs;
use common::tls::Trust;
use common::Secret;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use origin::config::App;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;

mod kit;
use kit::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_origin_is_a_prompt_502() {
    let p = start_proxy().await;
    let (status, _, body) = tokio::time::timeout(Duration::from_secs(5), get(p.front, "/")).await.unwrap();
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(String::from_utf8_lossy(&body).contains("no origin is connected"), "{body:?}");
    p.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_cross_the_tunnel_byte_exact() {
    let (p, _media) = proxy_with_media_origin().await;

    let (status, headers, body) = get(p.front, "/small.txt").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"hello through the tunnel\n");
    assert_eq!(headers["content-length"], "25");

    let (status, _, body) = get(p.front, "/big.bin").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body == pattern(24 * 1024 * 1024), "24 MiB body differs");

    let stats = &p.proxy.origins.tunnels_of("media")[0].stats;
    assert!(stats.bytes_from_origin.load(std::sync::atomic::Ordering::Relaxed) >= 24 * 1024 * 1024);
    p.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_front_end_with_prior_knowledge() {
    let (p, _media) = proxy_with_media_origin().await;
    let (mut sender, _conn) = h2(p.front).await;
    let mut pending = Vec::new();
    for _ in 0..16 {
        let req = Request::get(format!("http://{}/small.txt", p.front)).body(Empty::<Bytes>::new()).unwrap();
        pending.push(sender.send_request(req));
    }
    for resp in pending {
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(&resp.into_body().collect().await.unwrap().to_bytes()[..], b"hello through the tunnel\n");
    }
    p.shutdown.cancel();
}

/// The proxy gathers the small responses ready at once on an HTTP/2 connection into one write
/// and lets large frames pass behind them: small and large answers interleaved on one
/// connection must all arrive whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_front_end_small_and_large_answers_at_once_arrive_whole() {
    let (p, _media) = proxy_with_media_origin().await;
    let (mut sender, _conn) = h2(p.front).await;
    // Every body is read as it comes (as a browser does): one left unread would hold the
    // client's own connection window and stall the rest.
    let mut pending = Vec::new();
    for i in 0..64 {
        let path = if i % 16 == 5 { "/big.bin" } else { "/small.txt" };
        let req = Request::get(format!("http://{}{path}", p.front)).body(Empty::<Bytes>::new()).unwrap();
        let resp = sender.send_request(req);
        pending.push((
            path,
            tokio::spawn(async move {
                let resp = resp.await.unwrap();
                (resp.status(), resp.into_body().collect().await.unwrap().to_bytes())
            }),
        ));
    }
    let big = pattern(24 * 1024 * 1024);
    for (path, answer) in pending {
        let (status, body) = answer.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{path}");
        if path == "/big.bin" {
            assert!(body == big, "a 24 MiB body differs");
        } else {
            assert_eq!(&body[..], b"hello through the tunnel\n");
        }
    }
    p.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_is_rejected_with_the_reason() {
    let p = start_proxy().await;
    let media = media_dir();
    let settings = origin_settings(&p, "intruder", Secret::new("not-the-token"), files(media.path()));
    let tls = common::tls::client_config(&settings.trust, common::tls::ALPN_TUNNEL).unwrap();
    let err = origin::dial::open_tunnel(&settings, &tls).await.expect_err("must be rejected");
    match &err {
        origin::dial::DialError::Rejected { status, reason } => {
            assert_eq!(*status, StatusCode::UNAUTHORIZED);
            assert_eq!(reason, "wrong token");
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(err.is_rejection());
    assert!(p.proxy.origins.is_empty());
    // /status (and so p status) counts it by reason, as /metrics does.
    let status = proxy::admin::status(&p.proxy);
    assert_eq!(status.proxy.tunnel_rejections.get("wrong_token"), Some(&1), "{:?}", status.proxy);
    p.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_proxy_certificate_is_refused() {
    let p = start_proxy().await;
    let media = media_dir();
    let other_ca = tempfile::tempdir().unwrap();
    let other = certs::ensure_server_cert(other_ca.path(), &[]).unwrap();
    let mut settings = origin_settings(&p, "media", p.token.clone(), files(media.path()));
    settings.trust = Trust::CaFile(other.ca);
    let tls = common::tls::client_config(&settings.trust, common::tls::ALPN_TUNNEL).unwrap();
    let err = origin::dial::open_tunnel(&settings, &tls).await.expect_err("must not trust another CA");
    // Each generated CA has its own subject: another proxy's CA is an unknown issuer.
    assert!(
        matches!(err, origin::dial::DialError::Tls { problem: origin::dial::TlsProblem::UnknownIssuer, .. }),
        "{err}"
    );
    assert!(err.needs_a_person());
    p.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_readers_do_not_stall_other_streams() {
    let (p, _media) = proxy_with_media_origin().await;
    // Twelve paused players: 24 MiB downloads whose bodies are never read, so their stream
    // windows fill and stay full, pinning part of the tunnel's connection window.
    let mut held = Vec::new();
    for _ in 0..12 {
        let mut stalled = h1(p.front).await;
        let req = Request::get("/big.bin").header("host", "x").body(Full::default()).unwrap();
        let resp = stalled.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        held.push(resp);
    }
    // Meanwhile other requests on the same tunnel complete, including bulk ones.
    for _ in 0..3 {
        let (status, _, body) = tokio::time::timeout(Duration::from_secs(20), get(p.front, "/big.bin")).await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body.len(), 24 * 1024 * 1024);
    }
    for _ in 0..20 {
        let (status, _, _) = tokio::time::timeout(Duration::from_secs(5), get(p.front, "/small.txt")).await.unwrap();
        assert_eq!(status, StatusCode::OK);
    }
    // And a stalled one still completes, byte-exact, once it is read.
    let body = held.pop().unwrap().into_body().collect().await.unwrap().to_bytes();
    assert!(body == pattern(24 * 1024 * 1024));
    p.shutdown.cancel();
}

/// A local service that sends one chunk, then never finishes.
async fn hanging_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut tcp = tcp;
                let mut buf = [0u8; 4096];
                let _ = tcp.read(&mut buf).await;
                let _ =
                    tcp.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\nfirst part of the body").await;
                tokio::time::sleep(Duration::from_secs(3600)).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_vanishing_mid_response_aborts_the_front_end_response() {
    let p = start_proxy().await;
    let upstream = hanging_upstream().await;
    let app = App::Upstream(Box::new(origin::upstream::Upstream::new(&format!("http://{upstream}")).unwrap()));
    let origin_task = start_origin(origin_settings(&p, "app", p.token.clone(), app));
    connected(&p, "app").await;
    let mut sender = h1(p.front).await;
    let req = Request::get("/stream").header("host", "x").body(Full::default()).unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b"first part of the body");
    // The origin process disappears: its tunnel task (and socket) is dropped.
    origin_task.abort();
    let rest = tokio::time::timeout(Duration::from_secs(15), body.collect()).await.expect("no hang");
    assert!(rest.is_err(), "a truncated response must end in an error, not look complete");
    // And the next request is a prompt 502, not a hang.
    wait_for("tunnel removal", || p.proxy.origins.is_empty()).await;
    let (status, _, _) = get(p.front, "/").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    p.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_of_the_same_instance_replaces_its_tunnel_and_another_instance_joins_the_pool() {
    let p = start_proxy().await;
    let media = media_dir();
    let settings = origin_settings(&p, "media", p.token.clone(), files(media.path()));
    let first = start_origin(settings.clone());
    connected(&p, "media").await;
    let first_id = p.proxy.origins.tunnels_of("media")[0].id;
    // The same process reconnecting (same instance id): its old tunnel is replaced.
    let _again = start_origin(settings.clone());
    wait_for("the new tunnel", || p.proxy.origins.tunnels_of("media").first().is_some_and(|t| t.id != first_id)).await;
    assert_eq!(p.proxy.origins.tunnels_of("media").len(), 1, "one tunnel per instance");
    first.abort();
    // Another process with the same name (another instance): both stay, as a pool.
    let _other = start_origin(origin_settings(&p, "media", p.token.clone(), files(media.path())));
    wait_for("a pool of two", || p.proxy.origins.tunnels_of("media").len() == 2).await;
    let (status, _, _) = get(p.front, "/small.txt").await;
    assert_eq!(status, StatusCode::OK);
    p.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_vanishing_with_many_requests_in_flight_keeps_the_tunnel() {
    let (p, _media) = proxy_with_media_origin().await;
    let tunnel_id = p.proxy.origins.tunnels_of("media")[0].id;
    // Several HTTP/2 front-end connections each open 200 streams and vanish at once, so the
    // proxy resets hundreds of tunnel streams, many before the origin has accepted them.
    for _ in 0..10 {
        let (mut sender, conn) = h2(p.front).await;
        let mut pending = Vec::new();
        for _ in 0..200 {
            let req = Request::get(format!("http://{}/small.txt", p.front)).body(Empty::<Bytes>::new()).unwrap();
            pending.push(tokio::spawn(sender.send_request(req)));
        }
        tokio::task::yield_now().await;
        conn.abort();
        for f in pending {
            f.abort();
        }
    }
    for _ in 0..20 {
        let (status, _, _) = get(p.front, "/small.txt").await;
        assert_eq!(status, StatusCode::OK);
    }
    let now = p.proxy.origins.tunnels_of("media");
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].id, tunnel_id, "the tunnel must survive front-end clients that vanish");
    p.shutdown.cancel();
}
