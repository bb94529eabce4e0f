//! The tunnel handshake: how an origin asks the proxy for a tunnel (an HTTP/1.1 `PUT` with
//! `Upgrade`) and how the proxy checks that request, with one precise reason per rejection.
//! Pure functions over request heads: no sockets, so both sides are tested over any byte stream.

use crate::secret::Secret;
use http::{header, request, HeaderMap, HeaderValue, Method, Request, StatusCode};
use std::time::Duration;

/// Protocol name carried in `Upgrade`. The version follows a slash: `revmux/1`.
pub const PROTOCOL_NAME: &str = "revmux";
/// The one version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// `Upgrade` value for the version this build speaks.
pub const UPGRADE_TOKEN: &str = "revmux/1";
/// Path the origin `PUT`s to on the proxy's tunnel port.
pub const TUNNEL_PATH: &str = "/revmux/tunnel";
/// Header naming the origin that asks for a tunnel.
pub const ORIGIN_NAME_HEADER: &str = "revmux-origin";
/// Header carrying the origin process's random instance id: several processes with one name
/// form a pool, and a reconnect of the same process replaces its own tunnel only.
pub const INSTANCE_HEADER: &str = "revmux-instance";
/// Header on a tunnel stream naming which of the origin's services a route chose. The proxy
/// sets it (and removes any a front-end client sent); absent means the origin's default one.
pub const SERVICE_HEADER: &str = "revmux-service";
/// Header on a tunnel stream carrying how long the proxy waits for its answer (the route's
/// `timeout`, else `--response-timeout`), in whole milliseconds. The origin waits for its local
/// service that long and its own response timeout more, so a route that allows a slow report an
/// hour is not cut short at the origin, and the proxy's own 504 comes first. The proxy sets it
/// and removes any a front-end client sent; absent (an older proxy), the origin keeps its own
/// default.
pub const RESPONSE_TIMEOUT_HEADER: &str = "revmux-response-timeout";
/// The name of an origin's one service today (its `--root` or `--upstream`).
pub const DEFAULT_SERVICE: &str = "default";
/// Header of the `101` answer, one per URL: where front-end clients reach the origin that asked
/// (from the proxy's front-end address and its routes). A URL whose host is `0.0.0.0` or `[::]`
/// means "the host you dialed": the proxy listens on every address.
pub const URL_HEADER: &str = "revmux-url";
/// Most `revmux-url` values the proxy sends.
pub const MAX_URLS: usize = 8;
/// Longest instance id accepted.
pub const MAX_INSTANCE_LEN: usize = 64;
/// Longest origin name accepted (a DNS label's limit, so a name can become a host name later).
pub const MAX_NAME_LEN: usize = 63;

/// What the proxy learned from an accepted tunnel request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelHello {
    pub origin_name: String,
    /// The origin process's instance id; `None` for origins that do not send one (each such
    /// tunnel is then its own instance).
    pub instance: Option<String>,
}

/// What the proxy knows about tokens: which exist, and which names each admits.
pub trait Credentials {
    /// `None` when no credential has this token; otherwise whether it admits `name`.
    fn admits(&self, token: &[u8], name: &str) -> Option<bool>;
}

/// A single token admits every name (the zero-config proxy).
impl Credentials for Secret {
    fn admits(&self, token: &[u8], _name: &str) -> Option<bool> {
        self.matches(token).then_some(true)
    }
}

/// Why the proxy refused a tunnel request. Each has one status and a one-line reason that both
/// sides log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("not found: tunnels are requested with PUT {TUNNEL_PATH}")]
    NotFound,
    #[error("method {0} not allowed: tunnels are requested with PUT")]
    MethodNotAllowed(String),
    #[error("malformed tunnel request: {0}")]
    Malformed(&'static str),
    #[error("unsupported protocol {0:?}: this proxy speaks {UPGRADE_TOKEN}")]
    UnsupportedProtocol(String),
    #[error("missing token: send Authorization: Bearer <token>")]
    MissingToken,
    #[error("wrong token")]
    WrongToken,
    #[error("this token does not admit the origin name {0:?}")]
    NameNotAllowed(String),
    #[error("invalid origin name: {0}")]
    InvalidName(String),
}

impl Rejection {
    /// A short name for metrics labels.
    pub fn label(&self) -> &'static str {
        match self {
            Rejection::NotFound => "not_found",
            Rejection::MethodNotAllowed(_) => "method",
            Rejection::Malformed(_) => "malformed",
            Rejection::UnsupportedProtocol(_) => "protocol_version",
            Rejection::MissingToken => "missing_token",
            Rejection::WrongToken => "wrong_token",
            Rejection::NameNotAllowed(_) => "name_not_allowed",
            Rejection::InvalidName(_) => "invalid_name",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::NotFound => StatusCode::NOT_FOUND,
            Rejection::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Rejection::Malformed(_) | Rejection::InvalidName(_) => StatusCode::BAD_REQUEST,
            Rejection::UnsupportedProtocol(_) => StatusCode::UPGRADE_REQUIRED,
            Rejection::MissingToken | Rejection::WrongToken => StatusCode::UNAUTHORIZED,
            Rejection::NameNotAllowed(_) => StatusCode::FORBIDDEN,
        }
    }
}

/// Check an origin name: 1 to 63 characters of `a-z`, `0-9`, `-`, `_`, `.`, starting with a
/// letter or digit.
pub fn validate_origin_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!("must be 1 to {MAX_NAME_LEN} characters, got {}", name.len()));
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(format!("{name:?}: use lower-case letters, digits, '-', '_' and '.', starting with a letter or digit"))
    }
}

/// Turn a host name into a valid origin name (lower-cased, other characters replaced by `-`).
pub fn origin_name_from_host(host: &str) -> String {
    let mut name: String = host
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(MAX_NAME_LEN)
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        name.insert(0, 'o');
        name.truncate(MAX_NAME_LEN);
    }
    name
}

/// The origin's side: the `PUT` that asks for a tunnel.
pub fn tunnel_request(
    authority: &str,
    origin_name: &str,
    instance: Option<&str>,
    token: &Secret,
) -> http::Result<Request<()>> {
    let mut builder = Request::builder();
    if let Some(instance) = instance {
        builder = builder.header(INSTANCE_HEADER, instance);
    }
    builder
        .method(Method::PUT)
        .uri(TUNNEL_PATH)
        .header(header::HOST, authority)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, UPGRADE_TOKEN)
        .header(header::AUTHORIZATION, format!("Bearer {}", token.expose()))
        .header(ORIGIN_NAME_HEADER, origin_name)
        .header(header::CONTENT_LENGTH, "0")
        .body(())
}

/// The proxy's side: check a tunnel request against the credentials it knows.
///
/// Checks run from the cheapest and least sensitive to the token: path, method, upgrade
/// headers and version, the shape of the token, the origin's name and instance, then whether
/// the token exists (401) and admits that name (403).
pub fn check_tunnel_request(req: &request::Parts, credentials: &dyn Credentials) -> Result<TunnelHello, Rejection> {
    if req.uri.path() != TUNNEL_PATH {
        return Err(Rejection::NotFound);
    }
    if req.method != Method::PUT {
        return Err(Rejection::MethodNotAllowed(req.method.to_string()));
    }
    if !header_has_token(req.headers.get_all(header::CONNECTION), "upgrade") {
        return Err(Rejection::Malformed("Connection: upgrade is missing"));
    }
    let upgrade = req
        .headers
        .get(header::UPGRADE)
        .ok_or(Rejection::Malformed("Upgrade header is missing"))?
        .to_str()
        .map_err(|_| Rejection::Malformed("Upgrade header is not text"))?;
    if !upgrade.split(',').any(|p| p.trim().eq_ignore_ascii_case(UPGRADE_TOKEN)) {
        return Err(Rejection::UnsupportedProtocol(upgrade.to_owned()));
    }
    let presented = match req.headers.get(header::AUTHORIZATION) {
        None => return Err(Rejection::MissingToken),
        Some(v) => bearer_token(v).ok_or(Rejection::Malformed("Authorization is not 'Bearer <token>'"))?,
    };
    let name = req
        .headers
        .get(ORIGIN_NAME_HEADER)
        .ok_or(Rejection::Malformed("revmux-origin header is missing"))?
        .to_str()
        .map_err(|_| Rejection::InvalidName("not text".into()))?;
    validate_origin_name(name).map_err(Rejection::InvalidName)?;
    let instance = match req.headers.get(INSTANCE_HEADER) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .filter(|s| valid_instance(s))
                .ok_or(Rejection::Malformed("revmux-instance is not 1 to 64 of a-z A-Z 0-9 - _"))?
                .to_owned(),
        ),
    };
    match credentials.admits(presented, name) {
        None => Err(Rejection::WrongToken),
        Some(false) => Err(Rejection::NameNotAllowed(name.to_owned())),
        Some(true) => Ok(TunnelHello { origin_name: name.to_owned(), instance }),
    }
}

/// Whether a request looks like an origin asking for a tunnel (on whichever port it arrived):
/// the tunnel path and an `Upgrade` to any revmux version.
pub fn is_tunnel_request(req: &request::Parts) -> bool {
    req.uri.path() == TUNNEL_PATH
        && req.headers.get_all(header::UPGRADE).iter().any(|v| {
            v.to_str().is_ok_and(|v| v.split(',').any(|p| p.trim().to_ascii_lowercase().starts_with(PROTOCOL_NAME)))
        })
}

fn valid_instance(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_INSTANCE_LEN
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A fresh random instance id for an origin process (128 bits, hex).
pub fn new_instance_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn bearer_token(value: &HeaderValue) -> Option<&[u8]> {
    let bytes = value.as_bytes();
    let (scheme, rest) = bytes.split_at_checked(7)?;
    if scheme.eq_ignore_ascii_case(b"bearer ") {
        Some(rest.trim_ascii())
    } else {
        None
    }
}

fn header_has_token<'a>(values: impl IntoIterator<Item = &'a HeaderValue>, wanted: &str) -> bool {
    values
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(wanted))
}

/// The [`RESPONSE_TIMEOUT_HEADER`] value for `timeout` (at least one millisecond).
pub fn response_timeout_value(timeout: Duration) -> HeaderValue {
    HeaderValue::from(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX).max(1))
}

/// Remove [`RESPONSE_TIMEOUT_HEADER`] from a tunnel stream's request and read it: `None` when
/// absent or not a positive whole number of milliseconds (then the origin's default applies).
pub fn take_response_timeout(headers: &mut HeaderMap) -> Option<Duration> {
    let value = headers.remove(RESPONSE_TIMEOUT_HEADER)?;
    let text = value.to_str().ok()?;
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u64>().ok().filter(|&ms| ms > 0).map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(req: Request<()>) -> request::Parts {
        req.into_parts().0
    }

    fn good() -> Request<()> {
        tunnel_request("proxy:1444", "media", Some("i1"), &Secret::new("s3cret")).expect("valid request")
    }

    #[test]
    fn accepts_a_well_formed_request() {
        let hello = check_tunnel_request(&parts(good()), &Secret::new("s3cret"));
        assert_eq!(hello, Ok(TunnelHello { origin_name: "media".into(), instance: Some("i1".into()) }));
        let old = tunnel_request("proxy:1444", "media", None, &Secret::new("s3cret")).expect("valid request");
        assert_eq!(check_tunnel_request(&parts(old), &Secret::new("s3cret")).map(|h| h.instance), Ok(None));
        let mut p = parts(good());
        p.headers.insert(INSTANCE_HEADER, HeaderValue::from_static("no spaces"));
        assert!(matches!(check_tunnel_request(&p, &Secret::new("s3cret")), Err(Rejection::Malformed(_))));
    }

    #[test]
    fn rejects_wrong_and_missing_tokens() {
        let err = check_tunnel_request(&parts(good()), &Secret::new("other"));
        assert_eq!(err, Err(Rejection::WrongToken));
        assert_eq!(Rejection::WrongToken.status(), StatusCode::UNAUTHORIZED);
        let mut p = parts(good());
        p.headers.remove(header::AUTHORIZATION);
        assert_eq!(check_tunnel_request(&p, &Secret::new("s3cret")), Err(Rejection::MissingToken));
        p.headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert!(matches!(check_tunnel_request(&p, &Secret::new("s3cret")), Err(Rejection::Malformed(_))));
    }

    /// Tokens that admit some names only.
    struct Named(&'static [(&'static str, &'static str)]);
    impl Credentials for Named {
        fn admits(&self, token: &[u8], name: &str) -> Option<bool> {
            let known: Vec<_> = self.0.iter().filter(|(t, _)| t.as_bytes() == token).collect();
            (!known.is_empty()).then(|| known.iter().any(|(_, n)| *n == name))
        }
    }

    #[test]
    fn a_token_that_does_not_admit_the_name_is_403() {
        let creds = Named(&[("s3cret", "media"), ("other", "photos")]);
        assert!(check_tunnel_request(&parts(good()), &creds).is_ok());
        let req = tunnel_request("proxy:1444", "photos", None, &Secret::new("s3cret")).expect("valid");
        let err = check_tunnel_request(&parts(req), &creds).expect_err("not admitted");
        assert_eq!(err, Rejection::NameNotAllowed("photos".into()));
        assert_eq!(err.status(), StatusCode::FORBIDDEN);
        let req = tunnel_request("proxy:1444", "media", None, &Secret::new("nobody")).expect("valid");
        assert_eq!(check_tunnel_request(&parts(req), &creds), Err(Rejection::WrongToken));
    }

    #[test]
    fn rejects_other_versions_with_426() {
        let mut p = parts(good());
        p.headers.insert(header::UPGRADE, HeaderValue::from_static("revmux/2"));
        let err = check_tunnel_request(&p, &Secret::new("s3cret")).expect_err("rejected");
        assert_eq!(err.status(), StatusCode::UPGRADE_REQUIRED);
        assert!(err.to_string().contains("revmux/2"), "{err}");
        // A client offering several versions, one of which we speak, is fine.
        p.headers.insert(header::UPGRADE, HeaderValue::from_static("revmux/2, revmux/1"));
        assert!(check_tunnel_request(&p, &Secret::new("s3cret")).is_ok());
    }

    #[test]
    fn rejects_wrong_method_path_and_name() {
        let mut p = parts(good());
        p.method = Method::GET;
        assert_eq!(
            check_tunnel_request(&p, &Secret::new("s3cret")).map_err(|e| e.status()),
            Err(StatusCode::METHOD_NOT_ALLOWED)
        );
        let mut p = parts(good());
        p.uri = "/elsewhere".parse().expect("uri");
        assert_eq!(check_tunnel_request(&p, &Secret::new("s3cret")), Err(Rejection::NotFound));
        let mut p = parts(good());
        p.headers.insert(ORIGIN_NAME_HEADER, HeaderValue::from_static("Bad Name"));
        assert!(matches!(check_tunnel_request(&p, &Secret::new("s3cret")), Err(Rejection::InvalidName(_))));
        let mut p = parts(good());
        p.headers.remove(header::CONNECTION);
        assert!(matches!(check_tunnel_request(&p, &Secret::new("s3cret")), Err(Rejection::Malformed(_))));
    }

    #[test]
    fn recognises_a_tunnel_request_on_any_port() {
        assert!(is_tunnel_request(&parts(good())));
        let get = Request::get("/revmux/tunnel").header(header::UPGRADE, "websocket").body(()).expect("request");
        assert!(!is_tunnel_request(&parts(get)));
        assert!(!is_tunnel_request(&parts(Request::get("/").body(()).expect("request"))));
    }

    #[test]
    fn names() {
        assert!(validate_origin_name("media-1.home").is_ok());
        assert!(validate_origin_name("").is_err());
        assert!(validate_origin_name("-x").is_err());
        assert!(validate_origin_name(&"a".repeat(64)).is_err());
        assert_eq!(origin_name_from_host("My_Laptop.Local"), "my_laptop.local");
        assert_eq!(origin_name_from_host("Büro PC"), "b-ro-pc");
        assert_eq!(origin_name_from_host("_x"), "o_x");
        assert!(validate_origin_name(&origin_name_from_host(&"Z".repeat(100))).is_ok());
    }

    #[test]
    fn the_response_timeout_crosses_the_tunnel_in_milliseconds() {
        let mut headers = HeaderMap::new();
        for (sent, read) in [(Duration::from_secs(3600), 3_600_000), (Duration::from_micros(10), 1)] {
            headers.insert(RESPONSE_TIMEOUT_HEADER, response_timeout_value(sent));
            assert_eq!(take_response_timeout(&mut headers), Some(Duration::from_millis(read)));
            assert!(headers.is_empty(), "taken off the request");
        }
        assert_eq!(take_response_timeout(&mut headers), None, "absent: the origin's default");
        for bad in ["", "0", "-5", "+5", "1.5", "60s", "99999999999999999999999"] {
            headers.insert(RESPONSE_TIMEOUT_HEADER, HeaderValue::from_static(bad));
            assert_eq!(take_response_timeout(&mut headers), None, "{bad:?}");
            assert!(headers.is_empty(), "{bad:?} is removed all the same");
        }
    }
}
