//! In-process attacks on the proxy: each asserts that one hostile front-end client hurts only
//! itself -- other clients' requests complete and the tunnel survives (same id).

#![allow(clippy::unwrap_used)]

mod kit;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper_util::rt::{TokioExecutor, TokioIo};
use kit::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_head_gets_431_from_the_proxy_and_the_tunnel_stays() {
    let (p, _media) = proxy_with_media_origin().await;
    let id = tunnel_id(&p, "media");
    // A download in flight meanwhile must get every byte.
    let victim = tokio::spawn(get(p.front, "/big.bin"));
    for value in ["~".repeat(200_000), "a".repeat(262_000), "\u{ff}".repeat(40_000)] {
        let head = format!("GET /small.txt HTTP/1.1\r\nhost: x\r\nx-big: {value}\r\n\r\n");
        let answer = raw_exchange(p.front, head.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 431"), "{}", &answer[..answer.len().min(80)]);
    }
    // HTTP/2: a header list over the front end's limit is refused on that stream only.
    let (mut sender, _conn) = h2(p.front).await;
    let req = Request::get(format!("http://{}/small.txt", p.front))
        .header("x-big", "~".repeat(40_000))
        .body(Empty::<Bytes>::new())
        .unwrap();
    match sender.send_request(req).await {
        Ok(resp) => assert_eq!(resp.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
        Err(e) => assert!(e.to_string().contains("refused") || e.to_string().contains("stream"), "{e}"),
    }
    // The largest head that is allowed, of the bytes HPACK encodes worst, crosses the tunnel.
    let mut sender = h1(p.front).await;
    let worst = http::HeaderValue::from_bytes(&[0xff; 30_000]).unwrap();
    let req = Request::get("/small.txt").header("host", "x").header("x-worst", worst).body(Full::default()).unwrap();
    assert_eq!(sender.send_request(req).await.unwrap().status(), StatusCode::OK);

    let (status, _, body) = victim.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(body == pattern(24 * 1024 * 1024), "the download in flight is intact");
    assert_eq!(tunnel_id(&p, "media"), id, "the tunnel survived");
    p.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_window_client_cannot_stall_anybody_else() {
    let (p, _media) = proxy_with_media_origin().await;
    let id = tunnel_id(&p, "media");
    // One HTTP/2 client that grants no window opens 70 downloads and never reads.
    let tcp = connect_from(p.front, "127.0.0.2").await;
    let (mut sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(0)
        .handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut held = Vec::new();
    for _ in 0..70 {
        let req = Request::get(format!("http://{}/big.bin", p.front)).body(Empty::<Bytes>::new()).unwrap();
        held.push(tokio::spawn(sender.send_request(req)));
    }
    // And a hundred HTTP/1.1 downloads from another address that are never read.
    let mut socks = Vec::new();
    for _ in 0..100 {
        let mut tcp = connect_from(p.front, "127.0.0.3").await;
        tcp.write_all(b"GET /big.bin HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        socks.push(tcp);
    }
    // Let them fill whatever they can.
    wait_for("the attackers' streams", || p.proxy.stalls.len() >= 40).await;
    for _ in 0..5 {
        let started = Instant::now();
        let (status, _, body) = tokio::time::timeout(Duration::from_secs(5), get(p.front, "/small.txt")).await.unwrap();
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"hello through the tunnel\n"[..]));
        // The release binaries are held to 1 s by abuse case 04; this is a debug build on a
        // machine that also runs the attacker, so it gets twice that.
        assert!(started.elapsed() < Duration::from_secs(2), "small GET took {:?}", started.elapsed());
    }
    let (status, _, body) = tokio::time::timeout(Duration::from_secs(20), get(p.front, "/big.bin")).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(body == pattern(24 * 1024 * 1024), "a download still flows");
    assert_eq!(tunnel_id(&p, "media"), id);
    drop(socks);
    for h in held {
        h.abort();
    }
    p.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_abandoned_downloads_never_end_the_tunnel() {
    let (p, _media) = proxy_with_media_origin().await;
    let id = tunnel_id(&p, "media");
    // 1,500 HTTP/1.1 downloads dropped right after their heads, 100 at a time.
    for wave in 0..15 {
        let mut tasks = Vec::new();
        for i in 0..100 {
            let front = p.front;
            let from = format!("127.0.1.{}", (wave * 100 + i) % 250 + 1);
            tasks.push(tokio::spawn(async move {
                let mut tcp = connect_from(front, &from).await;
                tcp.write_all(b"GET /big.bin HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
                let mut first = [0u8; 64];
                let _ = tcp.read(&mut first).await;
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }
    // And HTTP/2 streams reset right after their HEADERS, on many connections.
    for _ in 0..20 {
        let (mut sender, conn) = h2(p.front).await;
        for _ in 0..100 {
            let req = Request::get(format!("http://{}/big.bin", p.front)).body(Empty::<Bytes>::new()).unwrap();
            let pending = tokio::spawn(sender.send_request(req));
            tokio::task::yield_now().await;
            pending.abort();
        }
        conn.abort();
    }
    for _ in 0..10 {
        let (status, _, _) = get(p.front, "/small.txt").await;
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(tunnel_id(&p, "media"), id, "the tunnel must survive abandoned downloads");
    p.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_hosts_and_upgrades_get_a_clear_status() {
    let (p, _media) = proxy_with_media_origin().await;
    let cases: [(&str, &str); 5] = [
        ("GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n", "HTTP/1.1 400"),
        ("GET / HTTP/1.1\r\nhost: user:pw@example.test\r\n\r\n", "HTTP/1.1 400"),
        ("GET / HTTP/1.1\r\nhost: example.test:99999\r\n\r\n", "HTTP/1.1 400"),
        ("GET / HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n", "HTTP/1.1 501"),
        ("CONNECT example.test:443 HTTP/1.1\r\nhost: example.test:443\r\n\r\n", "HTTP/1.1 501"),
    ];
    for (request, expected) in cases {
        let answer =
            raw_exchange(p.front, request.replace("\r\n\r\n", "\r\nconnection: close\r\n\r\n").as_bytes()).await;
        assert!(answer.starts_with(expected), "{request:?} -> {}", &answer[..answer.len().min(120)]);
    }
    let answer =
        raw_exchange(p.front, b"GET / HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n").await;
    assert!(answer.contains("WebSocket"), "names what is unsupported: {answer}");
    p.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_that_never_answers_gets_504_after_the_response_timeout() {
    let limits = proxy::Limits { response_timeout: Duration::from_millis(500), ..Default::default() };
    let p = start_proxy_with(limits).await;
    silent_upstream_origin(&p, "app").await;
    let started = Instant::now();
    let (status, _, body) = get(p.front, "/").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert!(String::from_utf8_lossy(&body).contains("origin app did not start answering"), "{body:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    p.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_origin_waits_for_its_service_as_long_as_the_route_does() {
    // The origin's own response timeout is 100 ms and the route allows 1.5 s. Told the route's
    // deadline with the request, the origin waits 1.6 s, so the 504 is the proxy's, after
    // 1.5 s and naming the origin; untold, it would be the origin's after 100 ms.
    let config = "[[route]]\npath = \"/\"\norigin = \"app\"\ntimeout = \"1500ms\"\n";
    let p = start_proxy_full(Default::default(), Some(config)).await;
    let service = format!("http://{}", silent_service().await);
    let own = Duration::from_millis(100);
    let upstream = origin::upstream::Upstream::with_timeouts(&service, origin::upstream::POOL_IDLE_TIMEOUT, own);
    upstream_origin_with(&p, "app", upstream.unwrap()).await;
    // A front-end client's own value changes nothing.
    let req = Request::get("/report").header("host", "example.test").header("revmux-response-timeout", "1");
    let started = Instant::now();
    let (status, _, body) = get_with(p.front, req.body(Full::default()).unwrap()).await;
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{text}");
    assert!(text.contains("origin app did not start answering"), "{text}");
    assert!(started.elapsed() >= Duration::from_millis(1500), "504 after {:?}", started.elapsed());
    p.shutdown.cancel();
}

/// PUT `path` with a body of `pieces` 1 KiB frames, one every `every`; with `stall` the body
/// then neither goes on nor ends. The answer's status and text.
async fn upload_in_pieces(
    addr: std::net::SocketAddr,
    path: &str,
    (pieces, every): (usize, Duration),
    stall: bool,
) -> (StatusCode, String) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let frames = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|d| d.map(|d| Ok::<_, std::convert::Infallible>(Frame::data(d))))
    });
    let feeder = tokio::spawn(async move {
        for _ in 0..pieces {
            tokio::time::sleep(every).await;
            if tx.send(Bytes::from(vec![b'u'; 1024])).await.is_err() {
                return;
            }
        }
        if stall {
            std::future::pending::<()>().await;
        }
    });
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let req = Request::put(path).header("host", "example.test").body(StreamBody::new(frames)).unwrap();
    let resp =
        tokio::time::timeout(Duration::from_secs(20), sender.send_request(req)).await.expect("answered").unwrap();
    let status = resp.status();
    let text = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    feeder.abort();
    (status, String::from_utf8_lossy(&text).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_that_keeps_moving_outlasts_the_response_timeout() {
    let service = counting_upstream().await;
    let limits = proxy::Limits { response_timeout: Duration::from_millis(400), ..Default::default() };
    let config = format!(
        "[[route]]\npath = \"/direct\"\nurl = \"http://{service}\"\n\n[[route]]\npath = \"/\"\norigin = \"app\"\n"
    );
    let p = start_proxy_full(limits, Some(&config)).await;
    upstream_origin(&p, "app", service).await;
    // Ten pieces 150 ms apart: the upload takes almost four response timeouts.
    for path in ["/through-the-tunnel", "/direct/to-a-url-target"] {
        let started = Instant::now();
        let answer = upload_in_pieces(p.front, path, (10, Duration::from_millis(150)), false).await;
        assert_eq!(answer, (StatusCode::OK, "10240".to_owned()), "{path}");
        assert!(started.elapsed() >= Duration::from_millis(1500), "{path}: the whole upload was sent");
    }
    p.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_that_stops_gets_408_and_one_nobody_reads_504() {
    let service = counting_upstream().await;
    let limits = proxy::Limits { response_timeout: Duration::from_millis(400), ..Default::default() };
    let config = "[[route]]\npath = \"/quiet\"\norigin = \"quiet\"\n\n[[route]]\npath = \"/\"\norigin = \"app\"\n";
    let p = start_proxy_full(limits, Some(config)).await;
    upstream_origin(&p, "app", service).await;
    silent_upstream_origin(&p, "quiet").await;

    // The client stops sending: its fault, 408, one timeout after its last piece.
    let started = Instant::now();
    let (status, text) = upload_in_pieces(p.front, "/stops", (3, Duration::from_millis(100)), true).await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{text}");
    assert!(text.contains("request body stopped"), "{text}");
    assert!(started.elapsed() >= Duration::from_millis(700), "not before the last piece and a timeout");

    // A service that reads nothing: once the windows and buffers are full, 504 naming the origin.
    let big =
        Request::put("/quiet/upload").header("host", "example.test").body(Full::new(Bytes::from(vec![0u8; 64 << 20])));
    let (status, _, text) = get_with(p.front, big.unwrap()).await;
    let text = String::from_utf8_lossy(&text);
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{text}");
    assert!(text.contains("origin quiet took nothing more of the request body"), "{text}");

    // Neither took the tunnel down.
    let answer = upload_in_pieces(p.front, "/after", (1, Duration::ZERO), false).await;
    assert_eq!(answer, (StatusCode::OK, "1024".to_owned()));
    p.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_preface_is_closed_at_the_first_bytes_deadline() {
    let (p, _media) = proxy_with_media_origin().await;
    // Half a preface, then nothing: closed once the first-bytes deadline passes (10 s).
    let mut tcp = tokio::net::TcpStream::connect(p.front).await.unwrap();
    tcp.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(15), tcp.read(&mut buf)).await.expect("closed in time");
    assert!(matches!(n, Ok(0) | Err(_)), "closed, not answered");
    assert!(started.elapsed() >= Duration::from_secs(9), "not before the deadline");
    p.shutdown.cancel();
}
