//! End-to-end tests of [`FileServer::handle`] over a temporary directory tree.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::PathBuf;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;

use super::FileServer;

const SECRET: &[u8] = b"TOP-SECRET-CONTENTS";
const HELLO: &[u8] = b"hello, world\n";

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    server: FileServer,
}

/// A tree with a secret file next to (not inside) the root, and links that try to reach it.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let outer = dir.path();
    let root = outer.join("root");
    fs::create_dir(&root).unwrap();
    fs::write(outer.join("secret.txt"), SECRET).unwrap();
    fs::create_dir(outer.join("outside_dir")).unwrap();
    fs::write(outer.join("outside_dir/secret.txt"), SECRET).unwrap();
    fs::write(root.join("hello.txt"), HELLO).unwrap();
    fs::write(root.join("digits.bin"), digits(100)).unwrap();
    fs::write(root.join("empty.bin"), b"").unwrap();
    fs::create_dir(root.join("sub dir")).unwrap();
    fs::write(root.join("sub dir/inner.txt"), b"inner\n").unwrap();
    symlink("../secret.txt", root.join("link_out")).unwrap();
    symlink(outer.join("secret.txt"), root.join("link_out_abs")).unwrap();
    symlink("../outside_dir", root.join("linkdir_out")).unwrap();
    symlink("hello.txt", root.join("link_in")).unwrap();
    symlink(root.join("hello.txt"), root.join("link_in_abs")).unwrap();
    symlink("sub dir", root.join("linkdir_in")).unwrap();
    symlink("../hello.txt", root.join("sub dir/up")).unwrap();
    symlink("loop_b", root.join("loop_a")).unwrap();
    symlink("loop_a", root.join("loop_b")).unwrap();
    let server = FileServer::new(&root).unwrap();
    Fixture { _dir: dir, root, server }
}

fn digits(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'0' + (i % 10) as u8).collect()
}

/// Deterministic bytes that do not repeat with any short period.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }
}

async fn send(server: &FileServer, method: Method, uri: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let response = server.handle(req.body(()).unwrap()).await;
    let (parts, body) = response.into_parts();
    Reply { status: parts.status, headers: parts.headers, body: body.collect().await.unwrap().to_bytes() }
}

async fn get(server: &FileServer, uri: &str, headers: &[(&str, &str)]) -> Reply {
    send(server, Method::GET, uri, headers).await
}

#[tokio::test]
async fn small_file_with_validators() {
    let f = fixture();
    let r = get(&f.server, "/hello.txt", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, HELLO);
    assert_eq!(r.header("content-length"), HELLO.len().to_string());
    assert_eq!(r.header("content-type"), "text/plain; charset=utf-8");
    assert_eq!(r.header("accept-ranges"), "bytes");
    let etag = r.header("etag");
    assert!(etag.starts_with('"') && etag.ends_with('"') && !etag.starts_with("W/"));
    httpdate::parse_http_date(r.header("last-modified")).unwrap();
    // The query string plays no part.
    let q = get(&f.server, "/hello.txt?x=../../secret.txt", &[]).await;
    assert_eq!(q.status, StatusCode::OK);
    assert_eq!(q.body, HELLO);
    // An empty file.
    let e = get(&f.server, "/empty.bin", &[]).await;
    assert_eq!(e.status, StatusCode::OK);
    assert_eq!(e.header("content-length"), "0");
    assert!(e.body.is_empty());
}

/// Poll `uri` (small files are cached for up to a second) until `done` holds; bounded.
async fn poll_until(server: &FileServer, uri: &str, done: impl Fn(&Reply) -> bool) -> Reply {
    for _ in 0..100 {
        let r = get(server, uri, &[]).await;
        if done(&r) {
            return r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{uri} never reached the expected state");
}

#[tokio::test]
async fn etag_changes_with_the_file() {
    let f = fixture();
    let before = get(&f.server, "/hello.txt", &[]).await;
    fs::write(f.root.join("hello.txt"), b"hello, there\n").unwrap();
    let after = poll_until(&f.server, "/hello.txt", |r| r.body.as_ref() == b"hello, there\n").await;
    assert_ne!(before.header("etag"), after.header("etag"));
    assert_eq!(after.header("content-length"), "13");
}

#[tokio::test]
async fn small_files_are_answered_from_memory_briefly() {
    let f = fixture();
    let first = get(&f.server, "/hello.txt", &[]).await;
    assert_eq!(first.status, StatusCode::OK);
    // Within the freshness window the cached copy answers (ranges and conditionals included)...
    let r = get(&f.server, "/hello.txt", &[("range", "bytes=0-4")]).await;
    assert_eq!((r.status, &r.body[..]), (StatusCode::PARTIAL_CONTENT, &HELLO[..5]));
    let r = get(&f.server, "/hello.txt", &[("if-none-match", first.header("etag"))]).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    // ...and a deleted file is gone once the window has passed.
    fs::remove_file(f.root.join("hello.txt")).unwrap();
    poll_until(&f.server, "/hello.txt", |r| r.status == StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn ranges_are_byte_exact() {
    let f = fixture();
    let data = digits(100);
    for (range, start, end) in [
        ("bytes=10-19", 10, 19),
        ("bytes=90-", 90, 99),
        ("bytes=-5", 95, 99),
        ("bytes=-500", 0, 99),
        ("bytes=95-200", 95, 99),
        ("bytes=0-0", 0, 0),
    ] {
        let r = get(&f.server, "/digits.bin", &[("range", range)]).await;
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(r.header("content-range"), format!("bytes {start}-{end}/100"));
        assert_eq!(r.header("content-length"), (end - start + 1).to_string());
        assert_eq!(r.body, &data[start..=end], "{range}");
        assert_eq!(r.header("accept-ranges"), "bytes");
    }
}

#[tokio::test]
async fn unsatisfiable_ranges() {
    let f = fixture();
    for (uri, range, size) in [
        ("/digits.bin", "bytes=100-", 100),
        ("/digits.bin", "bytes=100-200", 100),
        ("/digits.bin", "bytes=-0", 100),
        ("/empty.bin", "bytes=0-", 0),
        ("/empty.bin", "bytes=-1", 0),
    ] {
        let r = get(&f.server, uri, &[("range", range)]).await;
        assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(r.header("content-range"), format!("bytes */{size}"));
        assert_eq!(r.body, "416 range not satisfiable\n");
    }
}

#[tokio::test]
async fn odd_ranges_get_the_whole_file() {
    let f = fixture();
    for range in ["bytes=5-2", "items=0-1", "bytes=a-", "bytes=0-1,5-6", "bytes=0-1, -3"] {
        let r = get(&f.server, "/digits.bin", &[("range", range)]).await;
        assert_eq!(r.status, StatusCode::OK, "{range}");
        assert_eq!(r.body, digits(100), "{range}");
        assert!(r.headers.get("content-range").is_none());
    }
}

#[tokio::test]
async fn not_modified() {
    let f = fixture();
    let first = get(&f.server, "/hello.txt", &[]).await;
    let etag = first.header("etag").to_owned();
    let modified = first.header("last-modified").to_owned();
    let weak = format!("W/{etag}");
    let listed = format!("\"a\", W/\"b\",{etag}");
    for headers in [
        vec![("if-none-match", etag.as_str())],
        vec![("if-none-match", weak.as_str())],
        vec![("if-none-match", listed.as_str())],
        vec![("if-none-match", "*")],
        vec![("if-modified-since", modified.as_str())],
    ] {
        for method in [Method::GET, Method::HEAD] {
            let r = send(&f.server, method.clone(), "/hello.txt", &headers).await;
            assert_eq!(r.status, StatusCode::NOT_MODIFIED, "{method} {headers:?}");
            assert_eq!(r.header("etag"), etag);
            assert_eq!(r.header("last-modified"), modified);
            assert!(r.headers.get("content-length").is_none());
            assert!(r.body.is_empty());
        }
    }
    for headers in [
        vec![("if-none-match", "\"other\"")],
        vec![("if-modified-since", "Mon, 01 Jan 1990 00:00:00 GMT")],
        // If-None-Match is present, so If-Modified-Since is not consulted.
        vec![("if-none-match", "\"other\""), ("if-modified-since", modified.as_str())],
    ] {
        let r = get(&f.server, "/hello.txt", &headers).await;
        assert_eq!(r.status, StatusCode::OK, "{headers:?}");
        assert_eq!(r.body, HELLO);
    }
}

#[tokio::test]
async fn if_range() {
    let f = fixture();
    let first = get(&f.server, "/digits.bin", &[]).await;
    let etag = first.header("etag").to_owned();
    let modified = first.header("last-modified").to_owned();
    let weak = format!("W/{etag}");
    for (if_range, partial) in [
        (etag.as_str(), true),
        (modified.as_str(), true),
        ("\"stale\"", false),
        (weak.as_str(), false),
        ("Mon, 01 Jan 1990 00:00:00 GMT", false),
    ] {
        let r = get(&f.server, "/digits.bin", &[("range", "bytes=0-9"), ("if-range", if_range)]).await;
        if partial {
            assert_eq!(r.status, StatusCode::PARTIAL_CONTENT, "{if_range}");
            assert_eq!(r.body, &digits(100)[..10]);
        } else {
            assert_eq!(r.status, StatusCode::OK, "{if_range}");
            assert_eq!(r.body, digits(100));
        }
    }
}

#[tokio::test]
async fn precondition_failed() {
    let f = fixture();
    let etag = get(&f.server, "/hello.txt", &[]).await.header("etag").to_owned();
    for headers in [
        vec![("if-match", "\"other\"")],
        vec![("if-match", "W/\"x\"")],
        vec![("if-unmodified-since", "Mon, 01 Jan 1990 00:00:00 GMT")],
    ] {
        let r = get(&f.server, "/hello.txt", &headers).await;
        assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{headers:?}");
        assert_eq!(r.body, "412 precondition failed\n");
    }
    for headers in [vec![("if-match", etag.as_str())], vec![("if-match", "*")]] {
        let r = get(&f.server, "/hello.txt", &headers).await;
        assert_eq!(r.status, StatusCode::OK, "{headers:?}");
    }
}

#[tokio::test]
async fn other_methods_are_not_allowed() {
    let f = fixture();
    for method in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS, Method::PATCH] {
        let r = send(&f.server, method.clone(), "/hello.txt", &[]).await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(r.header("allow"), "GET, HEAD");
        assert_eq!(r.header("content-type"), "text/plain; charset=utf-8");
        assert!(r.body.starts_with(b"405 "));
    }
}

#[tokio::test]
async fn head_has_the_headers_of_get() {
    let f = fixture();
    fs::write(f.root.join("big.mp4"), noise(300_000)).unwrap();
    for (uri, range) in
        [("/hello.txt", None), ("/big.mp4", None), ("/big.mp4", Some("bytes=1000-")), ("/", None), ("/nope", None)]
    {
        let headers: Vec<(&str, &str)> = range.map(|r| ("range", r)).into_iter().collect();
        let g = get(&f.server, uri, &headers).await;
        let h = send(&f.server, Method::HEAD, uri, &headers).await;
        assert_eq!(g.status, h.status, "{uri}");
        assert_eq!(g.headers, h.headers, "{uri}");
        assert_eq!(g.header("content-length"), g.body.len().to_string());
        assert!(h.body.is_empty());
    }
}

#[tokio::test]
async fn large_file_streams_byte_exact() {
    let f = fixture();
    let data = noise(5 * 1024 * 1024 + 17);
    fs::write(f.root.join("movie.mkv"), &data).unwrap();
    let req = Request::get("/movie.mkv").body(()).unwrap();
    let response = f.server.handle(req).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "video/x-matroska");
    assert_eq!(response.headers()["content-length"], data.len().to_string());
    assert_eq!(response.body().size_hint().exact(), Some(data.len() as u64));
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), data.len());
    assert!(body == data, "streamed bytes differ");

    // A range across several chunks.
    let r = get(&f.server, "/movie.mkv", &[("range", "bytes=100000-3000000")]).await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.header("content-range"), format!("bytes 100000-3000000/{}", data.len()));
    assert!(r.body == data[100_000..=3_000_000]);
    // The tail through a suffix range.
    let r = get(&f.server, "/movie.mkv", &[("range", "bytes=-200000")]).await;
    assert!(r.body == data[data.len() - 200_000..]);
}

#[tokio::test]
async fn listing_escapes_and_encodes() {
    let f = fixture();
    let names = ["a b.txt", "été.txt", "<b>&\".txt", "#?%.mp4", "it's.txt"];
    for name in names {
        fs::write(f.root.join(name), name.as_bytes()).unwrap();
    }
    fs::create_dir(f.root.join("ünï dir")).unwrap();
    let r = get(&f.server, "/", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), "text/html; charset=utf-8");
    assert_eq!(r.header("content-length"), r.body.len().to_string());
    let html = std::str::from_utf8(&r.body).unwrap();
    for needle in [
        "<a href=\"a%20b.txt\">a b.txt</a>",
        "<a href=\"%C3%A9t%C3%A9.txt\">été.txt</a>",
        "<a href=\"%3Cb%3E%26%22.txt\">&lt;b&gt;&amp;&quot;.txt</a>",
        "<a href=\"%23%3F%25.mp4\">#?%.mp4</a>",
        "<a href=\"it%27s.txt\">it&#39;s.txt</a>",
        "<a href=\"%C3%BCn%C3%AF%20dir/\">ünï dir/</a>",
        "<a href=\"sub%20dir/\">sub dir/</a>",
        "<a href=\"linkdir_in/\">linkdir_in/</a>",
        "<a href=\"link_in\">link_in</a>",
        "<title>Index of /</title>",
    ] {
        assert!(html.contains(needle), "missing {needle} in\n{html}");
    }
    assert!(!html.contains("<b>"));
    assert!(!html.contains("href=\"../\""), "no parent link at the root");
    // Links that leave the root, or lead nowhere, are not listed.
    for hidden in ["link_out", "linkdir_out", "loop_a"] {
        assert!(!html.contains(hidden), "{hidden} listed");
    }
    // Directories first, then files, each by name.
    let at = |s: &str| html.find(s).unwrap();
    assert!(at(">linkdir_in/<") < at(">sub dir/<"));
    assert!(at(">sub dir/<") < at(">ünï dir/<"));
    assert!(at(">ünï dir/<") < at(">#?%.mp4<"));
    assert!(at(">#?%.mp4<") < at(">a b.txt<"));
    assert!(at(">a b.txt<") < at(">hello.txt<"));
    // Every link leads back to the file it names.
    for name in names {
        let href = percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
        let r = get(&f.server, &format!("/{href}"), &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{name}");
        assert_eq!(r.body, name.as_bytes());
    }
    let sub = get(&f.server, "/sub%20dir/", &[]).await;
    let html = std::str::from_utf8(&sub.body).unwrap();
    assert!(html.contains("<a href=\"../\">../</a>"));
    assert!(html.contains("<a href=\"inner.txt\">inner.txt</a>"));
    assert!(html.contains("<a href=\"up\">up</a>"));
    assert!(html.contains("<title>Index of /sub dir/</title>"));
}

#[tokio::test]
async fn directories_need_a_trailing_slash() {
    let f = fixture();
    for (uri, location) in [
        ("/sub%20dir", "/sub%20dir/"),
        ("/sub%20dir?sort=name", "/sub%20dir/?sort=name"),
        ("//sub%20dir", "/sub%20dir/"),
        ("/linkdir_in", "/linkdir_in/"),
    ] {
        let r = get(&f.server, uri, &[]).await;
        assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY, "{uri}");
        assert_eq!(r.header("location"), location);
    }
    let r = get(&f.server, "/hello.txt/", &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = get(&f.server, "//sub%20dir//", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
}

async fn assert_traversal_refused(server: &FileServer) {
    for uri in [
        "/../secret.txt",
        "/..",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/sub%20dir/../../secret.txt",
        "/a%2f..%2f..%2fsecret.txt",
        "/..%2fsecret.txt",
        "/%5c..%5csecret.txt",
        "/%5c..",
        "/secret.txt%00",
        "/x%00",
        "/link_out",
        "/link_out_abs",
        "/linkdir_out/secret.txt",
        "/linkdir_out/",
        "/loop_a",
    ] {
        for method in [Method::GET, Method::HEAD] {
            let r = send(server, method, uri, &[]).await;
            assert!(r.status == StatusCode::FORBIDDEN || r.status == StatusCode::NOT_FOUND, "{uri}: {}", r.status);
            assert!(!r.body.windows(SECRET.len()).any(|w| w == SECRET), "{uri} leaked the secret");
            assert_eq!(r.header("content-type"), "text/plain; charset=utf-8");
        }
    }
    for (uri, status, line) in [
        ("/../x", 403, "403 forbidden: path contains a .. segment\n"),
        ("/link_out", 403, "403 forbidden: path leaves the root\n"),
        ("/link_out_abs", 403, "403 forbidden: path leaves the root\n"),
        ("/linkdir_out/secret.txt", 403, "403 forbidden: path leaves the root\n"),
        ("/x%00", 403, "403 forbidden: path segment contains a separator or NUL\n"),
        ("/a%zz", 400, "400 bad request: malformed percent-encoding in path\n"),
        ("/nope.txt", 404, "404 not found\n"),
    ] {
        let r = get(server, uri, &[]).await;
        assert_eq!(r.status.as_u16(), status, "{uri}");
        assert_eq!(r.body, line, "{uri}");
    }
}

async fn assert_inside_links_served(server: &FileServer) {
    for uri in ["/link_in", "/link_in_abs", "/sub%20dir/up"] {
        let r = get(server, uri, &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}");
        assert_eq!(r.body, HELLO, "{uri}");
    }
    let r = get(server, "/linkdir_in/inner.txt", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "inner\n");
    let r = get(server, "/linkdir_in/", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn traversal_is_refused() {
    let f = fixture();
    assert_traversal_refused(&f.server).await;
    assert_inside_links_served(&f.server).await;
}

#[tokio::test]
async fn traversal_is_refused_without_openat2() {
    let f = fixture();
    f.server.root.force_fallback();
    assert_traversal_refused(&f.server).await;
    assert_inside_links_served(&f.server).await;
    let r = get(&f.server, "/", &[]).await;
    let html = std::str::from_utf8(&r.body).unwrap();
    assert!(html.contains("link_in"));
    assert!(!html.contains("link_out"));
}

#[tokio::test]
async fn special_files_are_not_served() {
    use rustix::fs::{FileType, Mode, CWD};
    let f = fixture();
    let fifo = f.root.join("pipe");
    rustix::fs::mknodat(CWD, &fifo, FileType::Fifo, Mode::RUSR | Mode::WUSR, 0).unwrap();
    // Opening a FIFO for reading would block without O_NONBLOCK; this must answer at once.
    let r = tokio::time::timeout(std::time::Duration::from_secs(5), get(&f.server, "/pipe", &[]))
        .await
        .expect("a FIFO must not hang the request");
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.body, "403 forbidden: not a regular file or directory\n");
    let listing = get(&f.server, "/", &[]).await;
    assert!(!std::str::from_utf8(&listing.body).unwrap().contains("pipe"));
}

#[tokio::test]
async fn raw_byte_names() {
    let f = fixture();
    fs::write(f.root.join(OsStr::from_bytes(b"\xff\xfe.bin")), b"raw").unwrap();
    let r = get(&f.server, "/%FF%FE.bin", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "raw");
    let listing = get(&f.server, "/", &[]).await;
    let html = std::str::from_utf8(&listing.body).unwrap();
    assert!(html.contains("<a href=\"%FF%FE.bin\">\u{fffd}\u{fffd}.bin</a>"));
}

#[test]
fn new_requires_an_existing_directory() {
    let f = fixture();
    let err = FileServer::new(&f.root.join("hello.txt")).unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
    assert!(FileServer::new(&f.root.join("missing")).is_err());
    let server = FileServer::new(&f.root.join("sub dir/..")).unwrap();
    assert_eq!(server.root(), fs::canonicalize(&f.root).unwrap());
    assert!(format!("{server:?}").contains("FileServer"));
}

#[tokio::test]
async fn inline_and_streamed_sizes_agree() {
    let f = fixture();
    for len in [65_535, 65_536, 65_537, 131_072, 131_073] {
        let data = noise(len);
        // One name per size: a rewritten small file may be answered from the cache for a second.
        let name = format!("edge-{len}.bin");
        fs::write(f.root.join(&name), &data).unwrap();
        let r = get(&f.server, &format!("/{name}"), &[]).await;
        assert_eq!(r.header("content-length"), len.to_string());
        assert!(r.body == data, "{len}");
        let r = get(&f.server, &format!("/{name}"), &[("range", "bytes=1-")]).await;
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
        assert!(r.body == data[1..], "{len}");
    }
}

#[test]
fn handle_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let f = fixture();
    let future = f.server.handle(Request::new(()));
    assert_send(&future);
}

#[tokio::test]
async fn the_hidden_directory_is_never_served_or_listed() {
    let f = fixture();
    let certs = f.root.join("certs");
    fs::create_dir(&certs).unwrap();
    fs::write(certs.join("token"), b"the-secret-token\n").unwrap();
    std::os::unix::fs::symlink(&certs, f.root.join("alias")).unwrap();
    std::os::unix::fs::symlink("certs/token", f.root.join("token-link")).unwrap();
    let server = FileServer::hiding(&f.root, Some(&certs)).unwrap();
    for uri in [
        "/certs/token",
        "/certs/",
        "/certs",
        "/alias/token",
        "/token-link",
        "/./certs/token",
        "/sub%20dir/../certs/token",
    ] {
        let r = get(&server, uri, &[]).await;
        assert!(r.status.is_client_error(), "{uri}: {}", r.status);
        assert!(!String::from_utf8_lossy(&r.body).contains("secret"), "{uri} leaked");
    }
    let listing = get(&server, "/", &[]).await;
    let html = String::from_utf8_lossy(&listing.body).into_owned();
    assert!(!html.contains("certs") && !html.contains("alias"), "{html}");
    assert!(html.contains("hello.txt"));
    // The rest of the tree is served as usual. A directory holding a token is hidden even
    // without being named (see key_directories_are_never_served_or_listed).
    assert_eq!(get(&server, "/hello.txt", &[]).await.status, StatusCode::OK);
    assert_eq!(get(&f.server, "/certs/token", &[]).await.status, StatusCode::NOT_FOUND);
    // Hiding works by location, not by content: a named directory without key material.
    let public = f.root.join("public-certs");
    fs::create_dir(&public).unwrap();
    fs::write(public.join("ca.pem"), b"certificate").unwrap();
    let server = FileServer::hiding(&f.root, Some(&public)).unwrap();
    assert_eq!(get(&server, "/public-certs/ca.pem", &[]).await.status, StatusCode::NOT_FOUND);
    assert!(!String::from_utf8_lossy(&get(&server, "/", &[]).await.body).contains("public-certs"));
    assert_eq!(get(&f.server, "/public-certs/ca.pem", &[]).await.status, StatusCode::OK);
}

/// A tree with dot-files, key directories, and symlinks into both.
fn secrets_fixture(options: &super::FileOptions) -> Fixture {
    let f = fixture();
    let root = &f.root;
    fs::create_dir_all(root.join(".git")).unwrap();
    fs::write(root.join(".git/config"), b"[remote] url = secret\n").unwrap();
    fs::write(root.join(".env"), b"PASSWORD=secret\n").unwrap();
    fs::create_dir_all(root.join("a/.ssh")).unwrap();
    fs::write(root.join("a/.ssh/id_rsa"), b"secret key\n").unwrap();
    fs::write(root.join("a/visible.txt"), b"visible\n").unwrap();
    fs::create_dir_all(root.join("keys/sub")).unwrap();
    fs::write(root.join("keys/server-key.pem"), b"-----BEGIN PRIVATE KEY----- secret\n").unwrap();
    fs::write(root.join("keys/other.txt"), b"next to a key: secret\n").unwrap();
    fs::write(root.join("keys/sub/deeper.txt"), b"below a key: secret\n").unwrap();
    fs::create_dir_all(root.join("creds")).unwrap();
    fs::write(root.join("creds/token"), b"secret-token\n").unwrap();
    // A directory named `token` is not key material.
    fs::create_dir_all(root.join("band/token")).unwrap();
    fs::write(root.join("band/song.txt"), b"la la\n").unwrap();
    symlink("keys", root.join("keys-alias")).unwrap();
    symlink("keys/other.txt", root.join("other-link")).unwrap();
    symlink(".env", root.join("env-link")).unwrap();
    symlink("../creds", root.join("a/creds-link")).unwrap();
    let server = FileServer::with_options(root, options).unwrap();
    Fixture { _dir: f._dir, root: f.root, server }
}

const KEY_PATHS: [&str; 12] = [
    "/keys/server-key.pem",
    "/keys/other.txt",
    "/keys/sub/deeper.txt",
    "/keys/sub/",
    "/keys/",
    "/keys",
    "/creds/token",
    "/creds/",
    "/keys-alias/other.txt",
    "/other-link",
    "/a/creds-link/token",
    "/./keys//other.txt",
];

async fn assert_not_found(server: &FileServer, uri: &str) {
    for method in [Method::GET, Method::HEAD] {
        let r = send(server, method.clone(), uri, &[]).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{method} {uri}");
        if method == Method::GET {
            // Exactly what a missing file gets: nothing tells that it exists.
            assert_eq!(r.body, "404 not found\n", "{uri}");
        }
    }
}

async fn listing_html(server: &FileServer, uri: &str) -> String {
    let r = get(server, uri, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{uri}");
    String::from_utf8(r.body.to_vec()).unwrap()
}

#[tokio::test]
async fn dot_files_are_hidden_by_default() {
    let f = secrets_fixture(&super::FileOptions::default());
    for uri in ["/.env", "/.git/config", "/.git/", "/.git", "/a/.ssh/id_rsa", "/a/.ssh/", "/env-link", "/%2Eenv"] {
        assert_not_found(&f.server, uri).await;
    }
    let html = listing_html(&f.server, "/").await;
    for hidden in [".env", ".git", "env-link"] {
        assert!(!html.contains(hidden), "{hidden} listed:\n{html}");
    }
    let html = listing_html(&f.server, "/a/").await;
    assert!(!html.contains(".ssh") && html.contains("visible.txt"), "{html}");
    assert_eq!(get(&f.server, "/a/visible.txt", &[]).await.status, StatusCode::OK);
}

#[tokio::test]
async fn show_hidden_serves_dot_files() {
    let f = secrets_fixture(&super::FileOptions { hide: None, show_hidden: true });
    for (uri, body) in
        [("/.env", &b"PASSWORD=secret\n"[..]), ("/env-link", b"PASSWORD=secret\n"), ("/a/.ssh/id_rsa", b"secret key\n")]
    {
        let r = get(&f.server, uri, &[]).await;
        assert_eq!((r.status, &r.body[..]), (StatusCode::OK, body), "{uri}");
    }
    let html = listing_html(&f.server, "/").await;
    assert!(html.contains("<a href=\".env\">.env</a>") && html.contains("<a href=\".git/\">.git/</a>"), "{html}");
    // Key directories stay hidden.
    for uri in KEY_PATHS {
        assert_not_found(&f.server, uri).await;
    }
}

#[tokio::test]
async fn key_directories_are_never_served_or_listed() {
    let f = secrets_fixture(&super::FileOptions::default());
    for uri in KEY_PATHS {
        assert_not_found(&f.server, uri).await;
    }
    let html = listing_html(&f.server, "/").await;
    for hidden in ["keys", "creds", "other-link"] {
        assert!(!html.contains(hidden), "{hidden} listed:\n{html}");
    }
    assert!(html.contains("<a href=\"band/\">band/</a>"), "{html}");
    let html = listing_html(&f.server, "/a/").await;
    assert!(!html.contains("creds-link"), "{html}");
    // A directory merely named `token` does not hide its parent.
    assert_eq!(get(&f.server, "/band/song.txt", &[]).await.status, StatusCode::OK);
    assert!(listing_html(&f.server, "/band/").await.contains("<a href=\"token/\">token/</a>"));
}

#[tokio::test]
async fn key_material_appearing_later_hides_its_directory() {
    let f = secrets_fixture(&super::FileOptions::default());
    assert_eq!(get(&f.server, "/sub%20dir/inner.txt", &[]).await.status, StatusCode::OK);
    assert!(listing_html(&f.server, "/").await.contains("sub dir/"));
    fs::write(f.root.join("sub dir/ca-key.pem"), b"secret").unwrap();
    // Small files and key-directory answers are remembered for about a second.
    poll_until(&f.server, "/sub%20dir/inner.txt", |r| r.status == StatusCode::NOT_FOUND).await;
    assert_not_found(&f.server, "/sub%20dir/").await;
    assert!(!listing_html(&f.server, "/").await.contains("sub dir"));
    assert_not_found(&f.server, "/linkdir_in/inner.txt").await;
}

#[tokio::test]
async fn a_root_holding_keys_serves_nothing() {
    let f = fixture();
    assert!(!f.server.root_holds_keys());
    fs::write(f.root.join("token"), b"secret").unwrap();
    let server = FileServer::new(&f.root).unwrap();
    assert!(server.root_holds_keys());
    for uri in ["/", "/hello.txt", "/sub%20dir/inner.txt", "/token"] {
        assert_not_found(&server, uri).await;
    }
}

/// `n` empty files `f000.txt`… and `dirs` directories `d00`… in a fresh directory `name`.
fn populate(root: &std::path::Path, name: &str, files: usize, dirs: usize) {
    let dir = root.join(name);
    fs::create_dir(&dir).unwrap();
    for i in 0..files {
        fs::write(dir.join(format!("f{i:04}.txt")), b"").unwrap();
    }
    for i in 0..dirs {
        fs::create_dir(dir.join(format!("d{i:02}"))).unwrap();
    }
}

fn hrefs(html: &str) -> Vec<&str> {
    html.split("<td><a href=\"").skip(1).filter_map(|s| s.split('"').next()).collect()
}

#[tokio::test]
async fn listings_are_paged() {
    let f = fixture();
    populate(&f.root, "many", 7, 2);
    let server = f.server.clone().with_limits(100, 4);
    let page1 = listing_html(&server, "/many/").await;
    assert_eq!(hrefs(&page1), ["../", "d00/", "d01/", "f0000.txt", "f0001.txt"]);
    assert!(page1.contains("entries 1\u{2013}4 of 9"), "{page1}");
    assert!(page1.contains("page 1 of 3<a href=\"?page=2\" rel=\"next\">"), "{page1}");
    assert!(!page1.contains("more entries than are listed"));
    let page2 = listing_html(&server, "/many/?page=2").await;
    assert_eq!(hrefs(&page2), ["../", "f0002.txt", "f0003.txt", "f0004.txt", "f0005.txt"]);
    assert!(page2.contains("entries 5\u{2013}8 of 9"));
    assert!(page2.contains("<a href=\"?page=1\" rel=\"prev\">"));
    let page3 = listing_html(&server, "/many/?x=1&page=3").await;
    assert_eq!(hrefs(&page3), ["../", "f0006.txt"]);
    assert!(page3.contains("entries 9\u{2013}9 of 9") && !page3.contains("rel=\"next\""));
    // Past the last page (or page 0): 404; not a number: 400.
    for uri in ["/many/?page=4", "/many/?page=0", "/many/?page=99999999999999999999999"] {
        let r = get(&server, uri, &[]).await;
        assert_eq!(
            (r.status, &r.body[..]),
            (StatusCode::NOT_FOUND, &b"404 not found: this listing has no such page\n"[..])
        );
    }
    for uri in ["/many/?page=abc", "/many/?page=", "/many/?page=-1", "/many/?page=1.0"] {
        let r = get(&server, uri, &[]).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(r.body, "400 bad request: the page parameter must be a whole number\n");
        assert_eq!(send(&server, Method::HEAD, uri, &[]).await.status, StatusCode::BAD_REQUEST);
    }
    // Files ignore the parameter; an empty directory has exactly one page.
    assert_eq!(get(&server, "/hello.txt?page=abc", &[]).await.status, StatusCode::OK);
    populate(&f.root, "none", 0, 0);
    assert!(listing_html(&server, "/none/?page=1").await.contains("no entries"));
    assert_eq!(get(&server, "/none/?page=2", &[]).await.status, StatusCode::NOT_FOUND);
    // HEAD agrees with GET on a page.
    let g = get(&server, "/many/?page=2", &[]).await;
    let h = send(&server, Method::HEAD, "/many/?page=2", &[]).await;
    assert_eq!((g.status, &g.headers), (h.status, &h.headers));
}

#[tokio::test]
async fn listings_read_a_bounded_number_of_names() {
    let f = fixture();
    populate(&f.root, "many", 7, 2);
    let server = f.server.clone().with_limits(5, 100);
    let html = listing_html(&server, "/many/").await;
    assert!(html.contains("This folder has more entries than are listed: only the first 5 names"), "{html}");
    assert!(html.contains("of 5</p>"), "{html}");
    assert_eq!(hrefs(&html).len(), 1 + 5);
    let exact = f.server.clone().with_limits(9, 100);
    let html = listing_html(&exact, "/many/").await;
    assert!(!html.contains("more entries than are listed") && html.contains("entries 1\u{2013}9 of 9"), "{html}");
}

#[tokio::test]
async fn listing_pages_of_the_default_size() {
    let f = fixture();
    populate(&f.root, "big", super::listing::PAGE_SIZE + 1, 0);
    let page1 = listing_html(&f.server, "/big/").await;
    assert_eq!(hrefs(&page1).len(), 1 + super::listing::PAGE_SIZE);
    assert!(page1.contains("entries 1\u{2013}1000 of 1001") && page1.contains("page 1 of 2"), "{page1}");
    let page2 = listing_html(&f.server, "/big/?page=2").await;
    assert_eq!(hrefs(&page2), ["../", "f1000.txt"]);
    assert_eq!(get(&f.server, "/big/?page=3", &[]).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn listings_wait_for_a_permit_without_delaying_files() {
    let f = fixture();
    let held =
        std::sync::Arc::clone(&f.server.listings).acquire_many_owned(super::CONCURRENT_LISTINGS as u32).await.unwrap();
    let server = f.server.clone();
    let listing = tokio::spawn(async move { get(&server, "/", &[]).await.status });
    // Files, redirects and errors do not wait for listings.
    for (uri, status) in [("/hello.txt", 200), ("/digits.bin", 200), ("/sub%20dir", 301), ("/nope", 404)] {
        let r = tokio::time::timeout(std::time::Duration::from_secs(5), get(&f.server, uri, &[]))
            .await
            .expect("a file request must not wait for listings");
        assert_eq!(r.status.as_u16(), status, "{uri}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(!listing.is_finished(), "a listing must wait for a permit");
    drop(held);
    let status = tokio::time::timeout(std::time::Duration::from_secs(5), listing).await.unwrap().unwrap();
    assert_eq!(status, StatusCode::OK);
}

async fn gunzip(data: &[u8]) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    async_compression::tokio::bufread::GzipDecoder::new(data).read_to_end(&mut out).await.unwrap();
    out
}

async fn unbrotli(data: &[u8]) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    async_compression::tokio::bufread::BrotliDecoder::new(data).read_to_end(&mut out).await.unwrap();
    out
}

/// Subtitles long enough to gain from compression, served both small (from memory) and
/// large (streamed).
fn subtitles(cues: usize) -> Vec<u8> {
    let mut text = String::from("WEBVTT\n\n");
    for i in 0..cues {
        text.push_str(&format!(
            "{:02}:{:02}.000 --> {:02}:{:02}.500\nLine number {i} of the subtitles\n\n",
            i / 60,
            i % 60,
            i / 60,
            i % 60
        ));
    }
    text.into_bytes()
}

#[tokio::test]
async fn text_and_listings_are_compressed_as_asked() {
    let f = fixture();
    let small = subtitles(40);
    let large = subtitles(4000);
    assert!(small.len() < 64 * 1024 && large.len() > 64 * 1024);
    fs::write(f.root.join("small.vtt"), &small).unwrap();
    fs::write(f.root.join("large.vtt"), &large).unwrap();
    for (uri, data) in [("/small.vtt", &small), ("/large.vtt", &large)] {
        let plain = get(&f.server, uri, &[]).await;
        assert!(plain.headers.get("content-encoding").is_none(), "{uri}");
        assert_eq!(plain.header("vary"), "accept-encoding");
        assert_eq!(&plain.body[..], &data[..]);
        let etag = plain.header("etag").to_owned();

        let gz = get(&f.server, uri, &[("accept-encoding", "gzip")]).await;
        assert_eq!(gz.status, StatusCode::OK);
        assert_eq!(gz.header("content-encoding"), "gzip");
        assert_eq!(gz.header("vary"), "accept-encoding");
        assert_eq!(gz.header("etag"), format!("W/{etag}"));
        assert!(gz.headers.get("content-length").is_none() && gz.headers.get("accept-ranges").is_none());
        assert!(gz.body.len() < data.len() / 2, "{uri}: {} bytes", gz.body.len());
        assert_eq!(&gunzip(&gz.body).await, data);

        let br = get(&f.server, uri, &[("accept-encoding", "gzip;q=0.8, br")]).await;
        assert_eq!(br.header("content-encoding"), "br");
        assert_eq!(&unbrotli(&br.body).await, data);
        let not_br = get(&f.server, uri, &[("accept-encoding", "gzip;q=0.8, br;q=0.1")]).await;
        assert_eq!(not_br.header("content-encoding"), "gzip");

        // HEAD: the headers of GET, no body.
        let head = send(&f.server, Method::HEAD, uri, &[("accept-encoding", "br")]).await;
        assert_eq!(head.headers, br.headers, "{uri}");
        assert!(head.body.is_empty());

        // The weak tag of the compressed answer revalidates it; the 304 names it.
        let again = get(&f.server, uri, &[("accept-encoding", "gzip"), ("if-none-match", gz.header("etag"))]).await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED);
        assert_eq!(again.header("etag"), format!("W/{etag}"));
        assert_eq!(again.header("vary"), "accept-encoding");
        // ...and never satisfies If-Range, which needs the strong tag of the identity.
        let ranged = get(&f.server, uri, &[("range", "bytes=0-9"), ("if-range", gz.header("etag"))]).await;
        assert_eq!(ranged.status, StatusCode::OK);
        assert_eq!(&ranged.body[..], &data[..]);

        // Ranges are never compressed.
        let part = get(&f.server, uri, &[("accept-encoding", "gzip, br"), ("range", "bytes=8-17")]).await;
        assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
        assert!(part.headers.get("content-encoding").is_none());
        assert_eq!(&part.body[..], &data[8..18]);
        assert_eq!(part.header("etag"), etag);
    }

    // Listings.
    let listing = get(&f.server, "/", &[("accept-encoding", "br")]).await;
    assert_eq!(listing.header("content-encoding"), "br");
    let html = String::from_utf8(unbrotli(&listing.body).await).unwrap();
    assert!(html.contains("<a href=\"small.vtt\">small.vtt</a>"), "{html}");
    assert_eq!(html.as_bytes(), &get(&f.server, "/", &[]).await.body[..]);

    // Media, and tiny answers, never.
    fs::write(f.root.join("clip.mp4"), noise(100_000)).unwrap();
    let mp4 = get(&f.server, "/clip.mp4", &[("accept-encoding", "gzip, br")]).await;
    assert!(mp4.headers.get("content-encoding").is_none() && mp4.headers.get("vary").is_none());
    assert_eq!(mp4.header("content-length"), "100000");
    let hello = get(&f.server, "/hello.txt", &[("accept-encoding", "gzip")]).await;
    assert!(hello.headers.get("content-encoding").is_none());
    assert_eq!(&hello.body[..], HELLO);
    let missing = get(&f.server, "/nope.txt", &[("accept-encoding", "gzip")]).await;
    assert!(missing.headers.get("content-encoding").is_none());
}
