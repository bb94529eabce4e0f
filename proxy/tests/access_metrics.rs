//! The access log and the latency metrics through a real proxy and origins: one access line
//! per request with the bytes really sent each way, downloads cut short say so, and /metrics
//! and /status carry the histograms, build and process numbers afterwards.

#![allow(clippy::unwrap_used)]

mod kit;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use kit::*;
use std::sync::{Arc, Mutex, OnceLock};

/// Every access line written in this test binary, as JSON.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Install (once) a subscriber writing access lines as JSON into a buffer, the way `p
/// --log-format json` writes them; return the buffer.
fn access_lines() -> Lines {
    static LINES: OnceLock<Lines> = OnceLock::new();
    LINES
        .get_or_init(|| {
            use tracing_subscriber::layer::SubscriberExt;
            let lines = Lines::default();
            let writer = lines.clone();
            let layer = common::logging::access_layer(common::logging::LogFormat::Json, move || writer.clone(), false);
            tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer)).unwrap();
            lines
        })
        .clone()
}

/// The access lines whose path is `path`, parsed.
fn lines_for(lines: &Lines, path: &str) -> Vec<serde_json::Value> {
    let text = String::from_utf8_lossy(&lines.0.lock().unwrap()).into_owned();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["fields"]["path"] == path)
        .collect()
}

async fn one_line(lines: &Lines, path: &str) -> serde_json::Value {
    wait_for(&format!("the access line of {path}"), || !lines_for(lines, path).is_empty()).await;
    let found = lines_for(lines, path);
    assert_eq!(found.len(), 1, "exactly one access line for {path}: {found:?}");
    found[0]["fields"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_writes_one_access_line_with_its_bytes_and_metrics_follow() {
    let lines = access_lines();
    let p = start_proxy().await;
    let dir = labelled_dir("who");
    std::fs::write(dir.path().join("file.bin"), pattern(100_000)).unwrap();
    start_origin(origin_settings(&p, "media", p.token.clone(), files(dir.path())));
    connected(&p, "media").await;

    let (status, _, body) = get(p.front, "/file.bin").await;
    assert_eq!((status, body.len()), (StatusCode::OK, 100_000));
    let line = one_line(&lines, "/file.bin").await;
    assert_eq!(line["status"], 200);
    assert_eq!(line["bytes_out"], 100_000);
    assert_eq!(line["bytes_in"], 0);
    assert_eq!(line["method"], "GET");
    assert_eq!(line["host"], "example.test");
    assert_eq!(line["origin"], "media");
    assert_eq!(line["outcome"], "complete");
    assert!(line["client"].as_str().unwrap().starts_with("127.0.0.1:"), "{line}");
    assert!(line["instance"].as_str().is_some_and(|i| !i.is_empty()), "{line}");
    assert!(line["duration_ms"].as_f64().is_some_and(|d| d > 0.0), "{line}");

    // A request the proxy answers itself (no route for the host is not possible with the
    // zero-config route, so a missing file answered by the origin, and a bad Host by the proxy).
    let (status, _, _) = get(p.front, "/missing.txt").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(one_line(&lines, "/missing.txt").await["status"], 404);
    let (status, _, _) = get_host(p.front, "bad host", "/bad-host").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let line = one_line(&lines, "/bad-host").await;
    assert_eq!(line["status"], 400);
    assert!(line["origin"].is_null(), "the proxy answered: {line}");

    let (status, _, metrics) = get(p.admin, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let metrics = String::from_utf8_lossy(&metrics);
    for needle in [
        "revmux_request_duration_seconds_bucket{le=\"+Inf\",origin=\"media\",class=\"2xx\"} 1",
        "revmux_request_duration_seconds_count{origin=\"media\",class=\"4xx\"} 1",
        "revmux_request_duration_seconds_count{origin=\"\",class=\"4xx\"} 1",
        "# TYPE revmux_request_duration_seconds histogram",
        "revmux_build_info{version=\"",
        "# TYPE process_cpu_seconds counter",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "revmux_requests_total{origin=\"media\"} 2",
    ] {
        assert!(metrics.contains(needle), "{needle} in:\n{metrics}");
    }
    let (_, _, status) = get(p.admin, "/status").await;
    let status: serde_json::Value = serde_json::from_slice(&status).unwrap();
    let responses = status["proxy"]["responses"].as_array().unwrap();
    assert!(responses.iter().any(|r| r["origin"] == "media" && r["class"] == "2xx" && r["count"] == 1), "{status}");
    assert!(status["proxy"]["process"]["open_fds"].as_u64().is_some_and(|n| n > 3), "{status}");
    p.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_count_bytes_in_and_cut_downloads_say_so() {
    let lines = access_lines();
    let p = start_proxy_config(&format!(
        "[[route]]\npath = \"/up\"\nurl = \"http://{}\"\n\n[[route]]\npath = \"/\"\norigin = \"media\"\n",
        counting_upstream().await
    ))
    .await;
    let dir = labelled_dir("who");
    std::fs::write(dir.path().join("big.bin"), pattern(32 * 1024 * 1024)).unwrap();
    start_origin(origin_settings(&p, "media", p.token.clone(), files(dir.path())));
    connected(&p, "media").await;

    let upload =
        Request::post("/up/post").header("host", "example.test").body(Full::new(Bytes::from(vec![7u8; 12345])));
    let (status, _, body) = get_with(p.front, upload.unwrap()).await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"12345"[..]));
    let line = one_line(&lines, "/up/post").await;
    assert_eq!(line["bytes_in"], 12345);
    assert_eq!(line["bytes_out"], 5);
    assert!(line["route"].as_str().unwrap().starts_with("route 1 ("), "{line}");
    assert_eq!(line["outcome"], "complete");

    // Read the head and one frame of a 32 MiB download (more than loopback buffers hold),
    // then hang up.
    let mut sender = h1(p.front).await;
    let resp = sender
        .send_request(Request::get("/big.bin").header("host", "example.test").body(Full::default()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let _ = body.frame().await;
    drop(body);
    drop(sender);
    let line = one_line(&lines, "/big.bin").await;
    assert_eq!(line["status"], 200);
    assert_eq!(line["outcome"], "client_gone");
    assert!(line["route"].as_str().unwrap().starts_with("route 2 ("), "{line}");
    let out = line["bytes_out"].as_u64().unwrap();
    assert!(out < 32 * 1024 * 1024, "only what was sent is counted: {line}");
    p.shutdown.cancel();
}
