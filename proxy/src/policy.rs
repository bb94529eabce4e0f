//! A route's policy: who may use it (`allow`, `basic_auth`), how the request is rewritten on
//! its way (`headers`, `host_header`, `strip_prefix`) and how long the target may take to
//! answer (`timeout`). Checks come before any rewrite; a refusal is an [`Error`].

use crate::error::Error;
use base64::Engine as _;
use http::header::{self, HeaderName, HeaderValue};
use http::HeaderMap;
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Everything a route may check or change.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Request headers set (replacing any the client sent) or, with `None`, removed.
    pub headers: Vec<(HeaderName, Option<HeaderValue>)>,
    /// The same for the response on its way back to the client.
    pub response_headers: Vec<(HeaderName, Option<HeaderValue>)>,
    /// The `Host` (and `:authority`) the target sees instead of the client's.
    pub host_header: Option<http::uri::Authority>,
    /// Remove the route's path prefix before forwarding.
    pub strip_prefix: Option<String>,
    pub basic_auth: Option<Arc<BasicAuth>>,
    /// Client addresses that may use the route; `None`: everybody.
    pub allow: Option<Vec<IpNet>>,
    /// Overrides `--response-timeout` for this route.
    pub timeout: Option<Duration>,
}

/// The client's address: the peer's, or, when the peer is a trusted proxy, the right-most
/// address in `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| is_trusted(*ip, trusted);
    if !is_trusted(&peer) {
        return peer;
    }
    let mut chain: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .collect();
    while let Some(ip) = chain.pop() {
        if !is_trusted(&ip) {
            return ip;
        }
    }
    peer
}

/// Whether `ip` is one of the `trusted_proxies`.
pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&canonical(ip)))
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl Policy {
    /// The checks: the allow-list, then the password.
    pub async fn admit(&self, client: IpAddr, headers: &HeaderMap) -> Result<(), Error> {
        if let Some(allow) = &self.allow {
            if !allow.iter().any(|net| net.contains(&canonical(client))) {
                return Err(Error::Forbidden(client));
            }
        }
        if let Some(auth) = &self.basic_auth {
            auth.check(headers).await?;
        }
        Ok(())
    }

    /// The rewrites, on a request head about to be forwarded. `authority` is what the target
    /// will see as the host.
    pub fn rewrite(&self, parts: &mut http::request::Parts, authority: &mut http::uri::Authority) {
        if let Some(prefix) = &self.strip_prefix {
            if let Some(pq) = parts.uri.path_and_query() {
                let rest = pq.path().strip_prefix(prefix.trim_end_matches('/')).unwrap_or(pq.path());
                let path = if rest.starts_with('/') { rest.to_owned() } else { format!("/{rest}") };
                let new = match pq.query() {
                    Some(q) => format!("{path}?{q}"),
                    None => path,
                };
                if let Ok(uri) = http::Uri::builder().path_and_query(new).build() {
                    parts.uri = uri;
                }
            }
        }
        if let Some(host) = &self.host_header {
            *authority = host.clone();
        }
        edit(&mut parts.headers, &self.headers);
    }

    /// The rewrites of the response.
    pub fn rewrite_response(&self, headers: &mut HeaderMap) {
        edit(headers, &self.response_headers);
    }
}

fn edit(headers: &mut HeaderMap, edits: &[(HeaderName, Option<HeaderValue>)]) {
    for (name, value) in edits {
        match value {
            Some(v) => {
                headers.insert(name.clone(), v.clone());
            }
            None => {
                headers.remove(name);
            }
        }
    }
}

/// Verified passwords remembered (as salted digests), so a browser sending the same
/// `Authorization` with every request costs one Argon2 verification, not one per request.
const VERIFIED_CACHE: usize = 256;
/// Argon2 verifications at once, proxy-wide: each takes ~20 MiB and tens of milliseconds, so a
/// flood of wrong passwords waits here instead of exhausting memory and CPU.
static VERIFYING: Semaphore = Semaphore::const_new(2);

/// HTTP Basic authentication against Argon2 password hashes (PHC strings, from `p hash-password`).
#[derive(Debug)]
pub struct BasicAuth {
    pub realm: String,
    users: HashMap<String, String>,
    salt: [u8; 16],
    verified: Mutex<std::collections::HashSet<[u8; 32]>>,
}

impl BasicAuth {
    /// Users and their PHC hashes; every hash is parsed here so a bad one is a config error.
    pub fn new(realm: String, users: HashMap<String, String>) -> Result<Self, String> {
        for (user, hash) in &users {
            if user.is_empty() || user.contains(':') {
                return Err(format!("user name {user:?} must be non-empty and without ':'"));
            }
            argon2::PasswordHash::new(hash)
                .map_err(|e| format!("user {user:?}: not a password hash from `p hash-password` ({e})"))?;
        }
        Ok(BasicAuth { realm, users, salt: rand::random(), verified: Mutex::new(Default::default()) })
    }

    fn unauthorized(&self) -> Error {
        Error::Unauthorized { realm: self.realm.clone() }
    }

    async fn check(&self, headers: &HeaderMap) -> Result<(), Error> {
        let (user, password) = basic_credentials(headers).ok_or_else(|| self.unauthorized())?;
        let Some(hash) = self.users.get(&user) else {
            return Err(self.unauthorized());
        };
        let digest = self.digest(&user, &password);
        if self.verified.lock().unwrap_or_else(|p| p.into_inner()).contains(&digest) {
            return Ok(());
        }
        let _turn = VERIFYING.acquire().await.map_err(|_| self.unauthorized())?;
        let hash = hash.clone();
        let ok = tokio::task::spawn_blocking(move || {
            use argon2::PasswordVerifier as _;
            argon2::PasswordHash::new(&hash)
                .is_ok_and(|parsed| argon2::Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
        })
        .await
        .unwrap_or(false);
        if !ok {
            return Err(self.unauthorized());
        }
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= VERIFIED_CACHE {
            verified.clear();
        }
        verified.insert(digest);
        Ok(())
    }

    fn digest(&self, user: &str, password: &str) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(&self.salt);
        ctx.update(user.as_bytes());
        ctx.update(b"\0");
        ctx.update(password.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }
}

/// `Authorization: Basic base64(user:password)`.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(rest.trim_ascii()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// Hash a password for `basic_auth` (what `p hash-password` prints).
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::PasswordHasher as _;
    let salt_bytes: [u8; 16] = rand::random();
    let salt = argon2::password_hash::SaltString::encode_b64(&salt_bytes).map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn client_address_believes_only_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("net")];
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9, 10.1.1.1"));
        assert_eq!(client_ip(ip("10.0.0.2"), &h, &trusted), ip("203.0.113.9"));
        assert_eq!(client_ip(ip("198.51.100.1"), &h, &trusted), ip("198.51.100.1"), "untrusted peer");
        assert_eq!(client_ip(ip("10.0.0.2"), &HeaderMap::new(), &trusted), ip("10.0.0.2"));
    }

    #[tokio::test]
    async fn allow_list_and_basic_auth() {
        let hash = hash_password("pw").expect("hash");
        let auth = BasicAuth::new("r".into(), HashMap::from([("alice".to_owned(), hash)])).expect("auth");
        let policy = Policy {
            allow: Some(vec!["127.0.0.0/8".parse().expect("net")]),
            basic_auth: Some(Arc::new(auth)),
            ..Default::default()
        };
        let mut h = HeaderMap::new();
        assert!(matches!(policy.admit(ip("192.0.2.1"), &h).await, Err(Error::Forbidden(_))));
        assert!(matches!(policy.admit(ip("127.0.0.1"), &h).await, Err(Error::Unauthorized { .. })));
        let good = base64::engine::general_purpose::STANDARD.encode("alice:pw");
        h.insert(header::AUTHORIZATION, HeaderValue::try_from(format!("Basic {good}")).expect("value"));
        assert!(policy.admit(ip("127.0.0.1"), &h).await.is_ok());
        assert!(policy.admit(ip("::ffff:127.0.0.1"), &h).await.is_ok(), "cached, and v4-mapped counts as v4");
        let bad = base64::engine::general_purpose::STANDARD.encode("alice:nope");
        h.insert(header::AUTHORIZATION, HeaderValue::try_from(format!("Basic {bad}")).expect("value"));
        assert!(matches!(policy.admit(ip("127.0.0.1"), &h).await, Err(Error::Unauthorized { .. })));
        assert!(BasicAuth::new("r".into(), HashMap::from([("bob".to_owned(), "plain".to_owned())])).is_err());
    }

    #[test]
    fn rewrites_path_host_and_headers() {
        let policy = Policy {
            strip_prefix: Some("/api".into()),
            host_header: Some("internal:8080".parse().expect("authority")),
            headers: vec![
                (HeaderName::from_static("x-set"), Some(HeaderValue::from_static("1"))),
                (header::COOKIE, None),
            ],
            ..Default::default()
        };
        let (mut parts, ()) =
            http::Request::get("/api/v1?q=2").header("cookie", "c").body(()).expect("req").into_parts();
        let mut authority: http::uri::Authority = "public.example".parse().expect("authority");
        policy.rewrite(&mut parts, &mut authority);
        assert_eq!(parts.uri.to_string(), "/v1?q=2");
        assert_eq!(authority.as_str(), "internal:8080");
        assert_eq!(parts.headers["x-set"], "1");
        assert!(!parts.headers.contains_key("cookie"));
    }
}
