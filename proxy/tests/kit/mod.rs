//! A small kit for in-process tests: a real proxy and real origins in one process, on port 0,
//! talking TLS and HTTP/2 over loopback, and front-end clients. Readiness is polled, never
//! slept for.

#![allow(clippy::unwrap_used, dead_code)]

use bytes::Bytes;
use common::certs;
use common::tls::Trust;
use common::Secret;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use origin::config::{App, ProxyAddr, Settings};
use origin::files::FileServer;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct TestProxy {
    pub proxy: Arc<proxy::Proxy>,
    pub front: SocketAddr,
    pub tunnel: SocketAddr,
    pub admin: SocketAddr,
    pub ca: PathBuf,
    pub token: Secret,
    /// Where a reload reads from (the config file is `config` in the same directory).
    pub sources: proxy::config::Sources,
    pub shutdown: CancellationToken,
    pub _dir: tempfile::TempDir,
}

impl TestProxy {
    /// The config file this proxy reads on reload.
    pub fn config_path(&self) -> PathBuf {
        self._dir.path().join("revmux.toml")
    }

    /// Write a new config file and reload; panics when the proxy refuses it.
    pub fn reconfigure(&self, text: &str) -> usize {
        std::fs::write(self.config_path(), text).unwrap();
        proxy::reload::reload(&self.proxy, &self.sources).unwrap()
    }
}

pub async fn start_proxy() -> TestProxy {
    start_proxy_with(proxy::Limits::default()).await
}

/// A proxy with these front-end limits.
pub async fn start_proxy_with(limits: proxy::Limits) -> TestProxy {
    start_proxy_full(limits, None).await
}

/// A proxy reading this config file (default limits).
pub async fn start_proxy_config(config: &str) -> TestProxy {
    start_proxy_full(proxy::Limits::default(), Some(config)).await
}

pub async fn start_proxy_full(limits: proxy::Limits, config: Option<&str>) -> TestProxy {
    common::tls::install_default_provider();
    let dir = tempfile::tempdir().unwrap();
    let issued = certs::ensure_server_cert(dir.path(), &[]).unwrap();
    let (token, token_path, _) = certs::ensure_token(dir.path()).unwrap();
    let config_path = dir.path().join("revmux.toml");
    if let Some(text) = config {
        std::fs::write(&config_path, text).unwrap();
    }
    let sources = proxy::config::Sources {
        cert_flag: "--certs-dir",
        cert: issued.cert.clone(),
        key: issued.key.clone(),
        frontend_tls: false,
        token: proxy::config::TokenSource::File(token_path),
        config: config.map(|_| config_path),
    };
    let loaded = sources.load().unwrap();
    let listeners = proxy::Listeners {
        frontend: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        tunnel: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        admin: TcpListener::bind("127.0.0.1:0").await.unwrap(),
    };
    let front = listeners.frontend.local_addr().unwrap();
    let tunnel = listeners.tunnel.local_addr().unwrap();
    let admin = listeners.admin.local_addr().unwrap();
    let proxy = proxy::Proxy::with_config(loaded.credentials, loaded.table, limits);
    let shutdown = CancellationToken::new();
    tokio::spawn(proxy::run(proxy.clone(), listeners, loaded.tls, shutdown.clone()));
    TestProxy { proxy, front, tunnel, admin, ca: issued.ca, token, sources, shutdown, _dir: dir }
}

pub fn origin_settings(p: &TestProxy, name: &str, token: Secret, app: App) -> Settings {
    Settings {
        proxy: ProxyAddr { authority: format!("localhost:{}", p.tunnel.port()), host: "localhost".into() },
        trust: Trust::CaFile(p.ca.clone()),
        token,
        name: name.into(),
        instance: common::protocol::new_instance_id(),
        app,
        notes: vec![],
    }
}

pub fn start_origin(settings: Settings) -> JoinHandle<()> {
    tokio::spawn(async move {
        origin::run(settings, CancellationToken::new()).await.unwrap();
    })
}

/// Poll `cond` every 10 ms for up to 10 s.
pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

pub async fn connected(p: &TestProxy, name: &str) {
    wait_for(&format!("origin {name} to connect"), || !p.proxy.origins.tunnels_of(name).is_empty()).await;
}

/// A front-end HTTP/1.1 connection.
pub async fn h1(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    sender
}

/// A front-end HTTP/2 connection with prior knowledge (h2c), and its connection task (abort it
/// to make the client vanish).
pub async fn h2(
    addr: SocketAddr,
) -> (hyper::client::conn::http2::SendRequest<Empty<Bytes>>, JoinHandle<Result<(), hyper::Error>>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await.unwrap();
    (sender, tokio::spawn(conn))
}

pub async fn get(addr: SocketAddr, path: &str) -> (StatusCode, http::HeaderMap, Bytes) {
    get_host(addr, "example.test", path).await
}

/// GET `path` with this `Host`.
pub async fn get_host(addr: SocketAddr, host: &str, path: &str) -> (StatusCode, http::HeaderMap, Bytes) {
    get_with(addr, Request::get(path).header("host", host).body(Full::default()).unwrap()).await
}

/// Send one request on a new HTTP/1.1 connection and read the whole answer.
pub async fn get_with(addr: SocketAddr, req: Request<Full<Bytes>>) -> (StatusCode, http::HeaderMap, Bytes) {
    let mut sender = h1(addr).await;
    let resp = sender.send_request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    (parts.status, parts.headers, body.collect().await.unwrap().to_bytes())
}

pub fn media_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("small.txt"), b"hello through the tunnel\n").unwrap();
    std::fs::write(dir.path().join("big.bin"), pattern(24 * 1024 * 1024)).unwrap();
    dir
}

pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

pub fn files(root: &Path) -> App {
    App::Files(FileServer::new(root).unwrap())
}

/// A directory with one file `who.txt` holding `text`: tells origins apart in tests.
pub fn labelled_dir(text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("who.txt"), text).unwrap();
    dir
}

/// A proxy with one origin named `media` serving [`media_dir`], connected.
pub async fn proxy_with_media_origin() -> (TestProxy, tempfile::TempDir) {
    let p = start_proxy().await;
    let media = media_dir();
    start_origin(origin_settings(&p, "media", p.token.clone(), files(media.path())));
    connected(&p, "media").await;
    (p, media)
}

/// A TCP connection to `addr` from the loopback address `from` (127.0.0.x): per-client
/// limits count by address, so an attacker in a test must not share the victim's.
pub async fn connect_from(addr: SocketAddr, from: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    tcp
}

/// A front-end HTTP/1.1 connection from the loopback address `from`.
pub async fn h1_from(addr: SocketAddr, from: &str) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let (sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(connect_from(addr, from).await)).await.unwrap();
    tokio::spawn(conn);
    sender
}

/// The id of `origin`'s one tunnel.
pub fn tunnel_id(p: &TestProxy, origin: &str) -> u64 {
    let tunnels = p.proxy.origins.tunnels_of(origin);
    assert_eq!(tunnels.len(), 1, "one tunnel for {origin}");
    tunnels[0].id
}

/// Send raw bytes on a new connection and read the answer until the peer closes (or 10 s).
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let _ = tcp.write_all(request).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// A local service that accepts connections and never answers.
pub async fn silent_service() -> SocketAddr {
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = silent.accept().await {
            held.push(tcp);
        }
    });
    addr
}

/// A [`silent_service`] and an origin `name` that forwards to it (`--upstream`), connected to `p`.
pub async fn silent_upstream_origin(p: &TestProxy, name: &str) {
    upstream_origin(p, name, silent_service().await).await;
}

/// An origin `name` forwarding to the local service at `service` (`--upstream`), connected to `p`.
pub async fn upstream_origin(p: &TestProxy, name: &str, service: SocketAddr) {
    upstream_origin_with(p, name, origin::upstream::Upstream::new(&format!("http://{service}")).unwrap()).await;
}

/// An origin `name` forwarding with `upstream`, connected to `p`.
pub async fn upstream_origin_with(p: &TestProxy, name: &str, upstream: origin::upstream::Upstream) {
    start_origin(origin_settings(p, name, p.token.clone(), App::Upstream(Box::new(upstream))));
    connected(p, name).await;
}

/// A local HTTP/1.1 service that reads each request body whole and answers with its length.
pub async fn counting_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let n = req.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(n.to_string()))))
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
            });
        }
    });
    addr
}
