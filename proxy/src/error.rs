//! The one error type of a front-end request that the proxy answers itself: each says which
//! side failed and whether a retry is safe, and [`Error::into_response`] is the one place that
//! turns it into a status, a reason and headers. Metrics count by [`Error::label`].

use common::body::{self, BoxBody};
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use std::time::Duration;

/// Which side of the proxy a failure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The front-end client sent something the proxy will not forward.
    Client,
    /// The proxy's own configuration or limits decided.
    Proxy,
    /// The tunnel to the origin closed or broke under the request.
    Tunnel,
    /// The origin (or a `url` target) failed, was too slow, or was not there.
    Origin,
}

/// Why a request was answered by the proxy rather than by its target.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no origin is connected")]
    NoOrigin,
    #[error("origin {0} is not connected")]
    OriginDown(String),
    #[error("no route for {host}{path}")]
    NoRoute { host: String, path: String },
    #[error("request has no Host header or authority")]
    NoHost,
    #[error("invalid Host header: {0}")]
    BadHost(String),
    #[error(
        "this is the proxy's front-end port, not its tunnel port: point c's --proxy at p's --tunnel-listen \
         address (default 1444)"
    )]
    TunnelRequestOnFrontEnd,
    #[error("{0} is not supported through the tunnel yet")]
    Unsupported(&'static str),
    #[error("{0} may not use this route")]
    Forbidden(std::net::IpAddr),
    #[error("this route needs a user name and password")]
    Unauthorized { realm: String },
    #[error("origin {origin} failed before answering: {source}")]
    Origin { origin: String, source: h2::Error },
    #[error("{url} failed before answering: {reason}")]
    Url { url: String, reason: String },
    #[error("{url}: {refused}")]
    Unforwardable { url: String, refused: common::headers::UnforwardableCoding },
    #[error("every tunnel of origin {0} closed before the request could be sent")]
    TunnelsClosed(String),
    #[error("origin {origin} did not start answering within {after:?}")]
    ResponseTimeout { origin: String, after: Duration },
    #[error("the request body stopped: nothing more of it came for {after:?}")]
    UploadStalled { after: Duration },
    #[error("the request body broke off (cut short or malformed), so the request was abandoned")]
    UploadBroken,
    #[error("origin {origin} took nothing more of the request body for {after:?}")]
    UploadNotTaken { origin: String, after: Duration },
    #[error("this client already has {0} requests in flight; try again shortly")]
    ClientBusy(usize),
    #[error("origin {origin} already has {waiting} requests waiting for a stream; try again shortly")]
    OriginBusy { origin: String, waiting: usize },
}

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Error::NoHost | Error::BadHost(_) | Error::TunnelRequestOnFrontEnd | Error::UploadBroken => {
                StatusCode::BAD_REQUEST
            }
            Error::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
            Error::NoRoute { .. } => StatusCode::NOT_FOUND,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Error::NoOrigin
            | Error::OriginDown(_)
            | Error::Origin { .. }
            | Error::Url { .. }
            | Error::Unforwardable { .. }
            | Error::TunnelsClosed(_) => StatusCode::BAD_GATEWAY,
            Error::ResponseTimeout { .. } | Error::UploadNotTaken { .. } => StatusCode::GATEWAY_TIMEOUT,
            Error::UploadStalled { .. } => StatusCode::REQUEST_TIMEOUT,
            Error::ClientBusy(_) | Error::OriginBusy { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn side(&self) -> Side {
        match self {
            Error::NoHost
            | Error::BadHost(_)
            | Error::TunnelRequestOnFrontEnd
            | Error::Unsupported(_)
            | Error::ClientBusy(_)
            | Error::UploadStalled { .. }
            | Error::UploadBroken => Side::Client,
            Error::NoRoute { .. } | Error::Forbidden(_) | Error::Unauthorized { .. } | Error::OriginBusy { .. } => {
                Side::Proxy
            }
            Error::TunnelsClosed(_) => Side::Tunnel,
            // The connection itself failing (an I/O error, a GOAWAY) is the tunnel's doing; a
            // stream the origin refused or reset is the origin's.
            Error::Origin { source, .. } if source.is_io() || source.is_go_away() => Side::Tunnel,
            Error::NoOrigin
            | Error::OriginDown(_)
            | Error::Origin { .. }
            | Error::Url { .. }
            | Error::Unforwardable { .. }
            | Error::ResponseTimeout { .. }
            | Error::UploadNotTaken { .. } => Side::Origin,
        }
    }

    /// Whether the client may simply send the same request again: nothing reached an origin.
    pub fn retry_safe(&self) -> bool {
        !matches!(
            self,
            Error::Origin { .. }
                | Error::Url { .. }
                | Error::Unforwardable { .. }
                | Error::ResponseTimeout { .. }
                | Error::UploadStalled { .. }
                | Error::UploadBroken
                | Error::UploadNotTaken { .. }
        )
    }

    /// The metrics label (`revmux_failed_requests_total{reason}`).
    pub fn label(&self) -> &'static str {
        match self {
            Error::NoOrigin | Error::OriginDown(_) => "no_origin",
            Error::Origin { .. } | Error::Url { .. } | Error::Unforwardable { .. } | Error::TunnelsClosed(_) => {
                "origin_failed"
            }
            Error::NoHost
            | Error::BadHost(_)
            | Error::TunnelRequestOnFrontEnd
            | Error::Unsupported(_)
            | Error::UploadBroken => "bad_request",
            Error::ResponseTimeout { .. } | Error::UploadNotTaken { .. } => "response_timeout",
            Error::UploadStalled { .. } => "upload_stalled",
            Error::ClientBusy(_) => "client_busy",
            Error::OriginBusy { .. } => "origin_busy",
            Error::NoRoute { .. } => "no_route",
            Error::Forbidden(_) | Error::Unauthorized { .. } => "denied",
        }
    }

    /// Every label, so metrics list each one even at zero.
    pub const LABELS: [&'static str; 9] = [
        "no_origin",
        "origin_failed",
        "bad_request",
        "response_timeout",
        "upload_stalled",
        "client_busy",
        "origin_busy",
        "no_route",
        "denied",
    ];

    /// A short plain-text response naming the cause.
    pub fn into_response(self) -> Response<BoxBody> {
        let status = self.status();
        let reason = status.canonical_reason().unwrap_or("error").to_ascii_lowercase();
        let mut resp = text_response(status, format!("{} {reason}: {self}\n", status.as_u16()));
        let headers = resp.headers_mut();
        match &self {
            Error::ClientBusy(_) | Error::OriginBusy { .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Error::Unauthorized { realm } => {
                let value = format!("Basic realm=\"{}\", charset=\"UTF-8\"", realm.replace(['"', '\\'], ""));
                if let Ok(v) = HeaderValue::try_from(value) {
                    headers.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            _ => {}
        }
        resp
    }
}

/// A small `text/plain` response.
pub fn text_response(status: StatusCode, text: impl Into<bytes::Bytes>) -> Response<BoxBody> {
    let mut resp = Response::new(body::full(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_has_one_status_side_and_label() {
        let busy = Error::OriginBusy { origin: "media".into(), waiting: 3 };
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.side(), Side::Proxy);
        assert_eq!(Error::TunnelsClosed("media".into()).side(), Side::Tunnel);
        assert_eq!(Error::OriginDown("media".into()).side(), Side::Origin);
        assert_eq!(Error::BadHost("x".into()).side(), Side::Client);
        assert!(busy.retry_safe());
        let resp = busy.into_response();
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        let auth = Error::Unauthorized { realm: "my \"site\"".into() }.into_response();
        assert_eq!(auth.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(auth.headers()[header::WWW_AUTHENTICATE], "Basic realm=\"my site\", charset=\"UTF-8\"");
        let timeout = Error::ResponseTimeout { origin: "o".into(), after: Duration::from_secs(1) };
        assert!(!timeout.retry_safe());
        assert!(Error::LABELS.contains(&timeout.label()));
        let stalled = Error::UploadStalled { after: Duration::from_secs(1) };
        assert_eq!((stalled.status(), stalled.side()), (StatusCode::REQUEST_TIMEOUT, Side::Client));
        assert!(Error::LABELS.contains(&stalled.label()) && !stalled.retry_safe());
        let not_taken = Error::UploadNotTaken { origin: "o".into(), after: Duration::from_secs(1) };
        assert_eq!((not_taken.status(), not_taken.side()), (StatusCode::GATEWAY_TIMEOUT, Side::Origin));
        assert_eq!(Error::NoRoute { host: "a".into(), path: "/b".into() }.status(), StatusCode::NOT_FOUND);
    }
}
