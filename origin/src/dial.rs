//! Opening a tunnel: TCP to the proxy, TLS with the proxy's certificate verified, the `PUT` +
//! `Upgrade` request, and the `101` that hands the connection over to HTTP/2. Every step has
//! its own timeout and its own error.

use crate::config::{ProxyAddr, Settings};
use bytes::Bytes;
use common::protocol;
use common::tuning::HANDSHAKE_TIMEOUT;
use http::{header, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use std::future::Future;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Why a tunnel could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("cannot connect to the proxy at {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("TLS handshake with the proxy failed: {0}")]
    Tls(std::io::Error),
    #[error("{step} timed out after {HANDSHAKE_TIMEOUT:?}")]
    Timeout { step: &'static str },
    #[error("tunnel request failed: {0}")]
    Http(#[from] hyper::Error),
    #[error("cannot build the tunnel request: {0}")]
    Request(#[from] http::Error),
    /// The proxy answered, but not with 101: a configuration problem the user must fix.
    #[error("proxy rejected the tunnel: {status}: {reason}")]
    Rejected { status: StatusCode, reason: String },
    #[error("proxy answered 101 for a different protocol {0:?}")]
    WrongProtocol(String),
}

impl DialError {
    /// True when retrying will not help until someone changes the configuration.
    pub fn is_rejection(&self) -> bool {
        matches!(self, DialError::Rejected { .. } | DialError::WrongProtocol(_))
    }
}

async fn step<T, E>(step: &'static str, fut: impl Future<Output = Result<T, E>>) -> Result<T, DialError>
where
    DialError: From<E>,
{
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, fut).await {
        Ok(r) => r.map_err(DialError::from),
        Err(_) => Err(DialError::Timeout { step }),
    }
}

/// Open one tunnel and return the upgraded connection, ready for the HTTP/2 server.
pub async fn open_tunnel(settings: &Settings, tls: &Arc<ClientConfig>) -> Result<Upgraded, DialError> {
    let ProxyAddr { authority, host } = &settings.proxy;
    let tcp = match tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(authority.as_str())).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(source)) => return Err(DialError::Connect { addr: authority.clone(), source }),
        Err(_) => return Err(DialError::Timeout { step: "TCP connect" }),
    };
    let _ = tcp.set_nodelay(true);
    let server_name = ServerName::try_from(host.clone())
        .map_err(|e| DialError::Tls(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{host:?}: {e}"))))?;
    let tls_stream = match tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        TlsConnector::from(tls.clone()).connect(server_name, tcp),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(DialError::Tls(e)),
        Err(_) => return Err(DialError::Timeout { step: "TLS handshake" }),
    };
    let hello = Hello { authority, name: &settings.name, instance: Some(&settings.instance), token: &settings.token };
    handshake(tls_stream, &hello).await
}

/// What the origin says about itself when it asks for a tunnel.
#[derive(Debug, Clone, Copy)]
pub struct Hello<'a> {
    /// The proxy's `host:port`, for the `Host` header.
    pub authority: &'a str,
    pub name: &'a str,
    /// `None` only to behave like an origin from before instance ids.
    pub instance: Option<&'a str>,
    pub token: &'a common::Secret,
}

/// Ask for a tunnel over any byte stream (TLS in production, an in-memory pipe in tests): the
/// `PUT`, the answer, and on `101` the upgraded connection, ready for the HTTP/2 server.
pub async fn handshake<T>(io: T, hello: &Hello<'_>) -> Result<Upgraded, DialError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        step("HTTP handshake", hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(io))).await?;
    // The connection task runs until the upgrade hands the socket over (or fails).
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "tunnel request connection ended");
        }
    });
    let req =
        protocol::tunnel_request(hello.authority, hello.name, hello.instance, hello.token)?.map(|()| Empty::new());
    let resp = step("tunnel request", sender.send_request(req)).await?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = resp.status();
        // The reason is one short line; read at most 1 KiB of it, and not forever.
        let body = Limited::new(resp.into_body(), 1024);
        let reason = match tokio::time::timeout(HANDSHAKE_TIMEOUT, body.collect()).await {
            Ok(Ok(b)) => String::from_utf8_lossy(&b.to_bytes()).trim().to_owned(),
            _ => String::new(),
        };
        let reason = if reason.is_empty() { "no reason given".to_owned() } else { reason };
        return Err(DialError::Rejected { status, reason });
    }
    let offered = resp.headers().get(header::UPGRADE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !offered.eq_ignore_ascii_case(protocol::UPGRADE_TOKEN) {
        return Err(DialError::WrongProtocol(offered.to_owned()));
    }
    step("upgrade", hyper::upgrade::on(resp)).await
}
