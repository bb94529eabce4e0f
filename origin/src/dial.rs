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

/// Why a tunnel could not be opened. Each message says what to do when there is something to do.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("cannot connect to the proxy at {addr}: {source}{}", connect_hint(.source))]
    Connect { addr: String, source: std::io::Error },
    #[error("TLS handshake with the proxy at {addr} failed: {source}{}", tls_hint(.problem, .addr, .trust))]
    Tls { addr: String, source: std::io::Error, problem: TlsProblem, trust: String },
    #[error("{step} timed out after {HANDSHAKE_TIMEOUT:?}")]
    Timeout { step: &'static str },
    #[error("tunnel request failed: {0}")]
    Http(#[from] hyper::Error),
    #[error("cannot build the tunnel request: {0}")]
    Request(#[from] http::Error),
    /// The proxy answered, but not with 101: a configuration problem the user must fix.
    #[error("proxy rejected the tunnel: {status}: {reason}{}", rejection_hint(*.status))]
    Rejected { status: StatusCode, reason: String },
    #[error("proxy answered 101 for a different protocol {0:?}")]
    WrongProtocol(String),
}

/// What a failed TLS handshake means for the person running `c`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsProblem {
    /// Signed by a CA `c` does not trust: another proxy's ca.pem, or an older CA.
    UnknownIssuer,
    /// The certificate does not cover the host name in `--proxy`.
    WrongName,
    /// Expired or not yet valid.
    Dates,
    /// The port answered something that is not TLS (plain HTTP: the front end).
    NotTls,
    /// The peer closed the connection during the handshake.
    Closed,
    Other,
}

impl TlsProblem {
    /// Classify the error a TLS connect returned.
    pub fn of(e: &std::io::Error) -> Self {
        use rustls::{CertificateError as C, Error as R, InvalidMessage};
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            return TlsProblem::Closed;
        }
        match e.get_ref().and_then(|inner| inner.downcast_ref::<R>()) {
            Some(R::InvalidCertificate(C::UnknownIssuer | C::BadSignature)) => TlsProblem::UnknownIssuer,
            Some(R::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. })) => TlsProblem::WrongName,
            Some(R::InvalidCertificate(
                C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. },
            )) => TlsProblem::Dates,
            Some(R::InvalidMessage(InvalidMessage::InvalidContentType)) => TlsProblem::NotTls,
            _ => TlsProblem::Other,
        }
    }
}

const TUNNEL_PORT_HINT: &str =
    "the tunnel port is p's --tunnel-listen (default 1444); point c's --proxy (or REVMUX_PROXY) at it";

fn connect_hint(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => {
            format!("; nothing listens there: is p running? Start p first; {TUNNEL_PORT_HINT}")
        }
        _ => String::new(),
    }
}

fn tls_hint(problem: &TlsProblem, addr: &str, trust: &str) -> String {
    let host = addr.rsplit_once(':').map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']')).unwrap_or(addr);
    match problem {
        TlsProblem::UnknownIssuer => format!(
            "; the proxy's certificate is not signed by {trust}: that CA belongs to another proxy (or an earlier \
             CA of this one). Copy this proxy's current ca.pem (in p's --certs-dir) and pass it with --ca"
        ),
        TlsProblem::WrongName => format!(
            "; the proxy's certificate does not cover {host:?}: restart p with --hostname {host} (it issues a new \
             certificate at each start), or point --proxy at a name the certificate covers (p logs them at start)"
        ),
        TlsProblem::Dates => {
            "; the proxy's certificate is expired or not yet valid: check both machines' clocks (a generated \
             certificate is renewed at each p start)"
                .to_owned()
        }
        TlsProblem::NotTls => {
            format!("; this port answered plain HTTP, not TLS: is it the front end? {TUNNEL_PORT_HINT}")
        }
        TlsProblem::Closed => format!(
            "; the peer closed the connection during the handshake: is it a revmux tunnel port? {TUNNEL_PORT_HINT}"
        ),
        TlsProblem::Other => String::new(),
    }
}

fn rejection_hint(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => {
            "; c's token differs from the proxy's: use a copy of p's current token file (--token-file), or the \
             token of this origin's [[origin]] entry in p's config"
        }
        StatusCode::FORBIDDEN => "; this token does not admit this --name: check the [[origin]] entries of p's config",
        StatusCode::UPGRADE_REQUIRED => {
            "; p and c speak different protocol versions: run the same revmux version on both"
        }
        _ => "",
    }
}

impl DialError {
    /// True when retrying will not help until someone changes the configuration.
    pub fn is_rejection(&self) -> bool {
        matches!(self, DialError::Rejected { .. } | DialError::WrongProtocol(_))
    }

    /// True when only a person can fix it (the trust, the port, the token): logged at ERROR
    /// with the fix, and retried slowly rather than at the usual pace.
    pub fn needs_a_person(&self) -> bool {
        match self {
            DialError::Tls { problem, .. } => {
                matches!(
                    problem,
                    TlsProblem::UnknownIssuer | TlsProblem::WrongName | TlsProblem::Dates | TlsProblem::NotTls
                )
            }
            // A 4xx is the proxy's verdict on this origin (token, name, port); anything else
            // (a 502 from a load balancer while p restarts) is retried at the usual pace.
            DialError::Rejected { status, .. } => status.is_client_error(),
            _ => self.is_rejection(),
        }
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

/// Open one tunnel and return the upgraded connection, ready for the HTTP/2 server, and the
/// URLs the proxy says front-end clients reach this origin at.
pub async fn open_tunnel(settings: &Settings, tls: &Arc<ClientConfig>) -> Result<(Upgraded, Vec<String>), DialError> {
    let ProxyAddr { authority, host } = &settings.proxy;
    let tcp = match tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(authority.as_str())).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(source)) => return Err(DialError::Connect { addr: authority.clone(), source }),
        Err(_) => return Err(DialError::Timeout { step: "TCP connect" }),
    };
    let _ = tcp.set_nodelay(true);
    let server_name = ServerName::try_from(host.clone()).map_err(|e| DialError::Tls {
        addr: authority.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{host:?}: {e}")),
        problem: TlsProblem::Other,
        trust: trust_text(&settings.trust),
    })?;
    let tls_stream = match tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        TlsConnector::from(tls.clone()).connect(server_name, tcp),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(source)) => {
            let problem = TlsProblem::of(&source);
            return Err(DialError::Tls {
                addr: authority.clone(),
                source,
                problem,
                trust: trust_text(&settings.trust),
            });
        }
        Err(_) => return Err(DialError::Timeout { step: "TLS handshake" }),
    };
    let hello = Hello { authority, name: &settings.name, instance: Some(&settings.instance), token: &settings.token };
    let (upgraded, urls) = handshake_with_urls(tls_stream, &hello).await?;
    Ok((upgraded, reachable_urls(&urls, host)))
}

/// The proxy's `revmux-url` values as URLs to print: at most [`protocol::MAX_URLS`], printable
/// and short, with an unspecified host (`0.0.0.0`, `[::]`: the proxy listens on every address)
/// replaced by the host this origin dialed.
pub fn reachable_urls(values: &[String], dialed_host: &str) -> Vec<String> {
    let host = if dialed_host.contains(':') { format!("[{dialed_host}]") } else { dialed_host.to_owned() };
    values
        .iter()
        .filter(|v| v.len() <= 512 && v.bytes().all(|b| b.is_ascii_graphic()))
        .take(protocol::MAX_URLS)
        .map(|v| {
            for any in ["://0.0.0.0:", "://0.0.0.0/", "://[::]:", "://[::]/"] {
                if let Some(at) = v.find(any) {
                    let keep = &any[any.len() - 1..];
                    return format!("{}://{host}{keep}{}", &v[..at], &v[at + any.len()..]);
                }
            }
            v.clone()
        })
        .collect()
}

/// How c trusts the proxy, in words.
fn trust_text(trust: &common::tls::Trust) -> String {
    match trust {
        common::tls::Trust::CaFile(path) => format!("the CA in {}", path.display()),
        common::tls::Trust::SystemRoots => {
            "a CA this system trusts (no --ca given and no ca.pem in --certs-dir)".into()
        }
        common::tls::Trust::Insecure => "anything (--insecure)".into(),
    }
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
    handshake_with_urls(io, hello).await.map(|(upgraded, _)| upgraded)
}

/// [`handshake`], also returning the proxy's `revmux-url` values (as sent).
pub async fn handshake_with_urls<T>(io: T, hello: &Hello<'_>) -> Result<(Upgraded, Vec<String>), DialError>
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
    let urls = resp
        .headers()
        .get_all(protocol::URL_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect();
    Ok((step("upgrade", hyper::upgrade::on(resp)).await?, urls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_of_a_proxy_on_every_address_use_the_host_dialed() {
        let sent = [
            "http://0.0.0.0:1443/".to_owned(),
            "https://media.example.com/".to_owned(),
            "http://[::]:8080/photos".to_owned(),
            "http://bad url/".to_owned(),
        ];
        assert_eq!(
            reachable_urls(&sent, "proxy.example.com"),
            ["http://proxy.example.com:1443/", "https://media.example.com/", "http://proxy.example.com:8080/photos"]
        );
        assert_eq!(reachable_urls(&sent[..1], "::1"), ["http://[::1]:1443/"]);
    }

    #[test]
    fn tls_failures_say_what_to_do() {
        let wrong_ca = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert_eq!(TlsProblem::of(&wrong_ca), TlsProblem::UnknownIssuer);
        let plain = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
        );
        assert_eq!(TlsProblem::of(&plain), TlsProblem::NotTls);
        let e = DialError::Tls {
            addr: "localhost:1443".into(),
            source: plain,
            problem: TlsProblem::NotTls,
            trust: "the CA in certs/ca.pem".into(),
        };
        assert!(e.needs_a_person());
        let text = e.to_string();
        assert!(text.contains("answered plain HTTP") && text.contains("--tunnel-listen (default 1444)"), "{text}");
        let e = DialError::Tls {
            addr: "localhost:1444".into(),
            source: wrong_ca,
            problem: TlsProblem::UnknownIssuer,
            trust: "the CA in other/ca.pem".into(),
        };
        assert!(e.to_string().contains("not signed by the CA in other/ca.pem"), "{e}");
        let refused =
            DialError::Connect { addr: "localhost:1444".into(), source: std::io::ErrorKind::ConnectionRefused.into() };
        assert!(!refused.needs_a_person());
        assert!(refused.to_string().contains("Start p first"), "{refused}");
        let wrong = DialError::Rejected { status: StatusCode::UNAUTHORIZED, reason: "wrong token".into() };
        assert!(wrong.needs_a_person() && wrong.to_string().contains("--token-file"));
        let restarting = DialError::Rejected { status: StatusCode::BAD_GATEWAY, reason: "bad gateway".into() };
        assert!(restarting.is_rejection() && !restarting.needs_a_person(), "a 502 is retried at the usual pace");
    }
}
