//! The routing decision, pure: a table of routes built from the configuration (never changed
//! once built; a reload builds a new one) and the lookup of the first route whose host and path
//! match a request. A route's [`Target`] says what answers; its policy says what is checked and
//! rewritten on the way.

use crate::policy::Policy;
use bytes::Bytes;
use http::StatusCode;
use ipnet::IpNet;
use std::sync::Arc;

/// What answers the requests of a route.
#[derive(Debug, Clone)]
pub enum Target {
    /// The tunnels of an origin (any instance of it); never another origin's. `service`
    /// names one of the origin's services (sent to it in `revmux-service`); `None` is its
    /// default one.
    Origin { origin: OriginRef, service: Option<String> },
    /// A plain `http://` service reached from the proxy itself; `base` is prefixed to the path.
    Url { authority: http::uri::Authority, base: String, text: String },
    /// Something the proxy answers itself.
    Handler(Handler),
    /// A redirect (308) to `location`.
    Redirect { location: String, status: StatusCode },
    /// A fixed answer.
    Respond { status: StatusCode, body: Bytes },
}

/// Which origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginRef {
    Named(String),
    /// Whichever origin connected last (the zero-config route).
    MostRecent,
}

/// Pages the proxy serves itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// An HTML page of the connected origins (put it behind `basic_auth` or `allow`).
    Status,
    /// `200 ok`, for load balancers and uptime checks.
    Health,
}

/// Which hosts a route is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    Any,
    /// One host name, lower-case, without port.
    Exact(String),
    /// `*.example.com`: any name ending in `.example.com` (stored with the leading dot).
    Suffix(String),
}

impl HostMatch {
    pub fn parse(pattern: &str) -> Result<Self, String> {
        let p = pattern.trim().to_ascii_lowercase();
        if p.is_empty() || p == "*" {
            return Ok(HostMatch::Any);
        }
        let (suffix, name) = match p.strip_prefix("*.") {
            Some(rest) => (true, rest.to_owned()),
            None => (false, p.clone()),
        };
        let ok = !name.is_empty()
            && name
                .split('.')
                .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        if !ok {
            return Err(format!("{pattern:?} is not a host name or *.domain pattern"));
        }
        Ok(if suffix { HostMatch::Suffix(format!(".{name}")) } else { HostMatch::Exact(name) })
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Any => true,
            HostMatch::Exact(name) => host.eq_ignore_ascii_case(name),
            HostMatch::Suffix(suffix) => {
                host.len() > suffix.len()
                    && host.get(host.len() - suffix.len()..).is_some_and(|end| end.eq_ignore_ascii_case(suffix))
            }
        }
    }
}

/// One route: which requests (host, path prefix), what answers them, and the policy.
#[derive(Debug, Clone)]
pub struct Route {
    /// How logs and errors name it: "route 2 (revmux.toml:14)", or "default route".
    pub name: String,
    pub host: HostMatch,
    /// Path prefix, matched on whole segments ("/api" matches "/api" and "/api/x", not "/apix").
    pub path: String,
    pub target: Target,
    pub policy: Policy,
}

impl Route {
    fn matches(&self, host: &str, path: &str) -> bool {
        self.host.matches(host) && path_has_prefix(path, &self.path)
    }
}

/// `path` starts with `prefix` on a segment boundary.
pub fn path_has_prefix(path: &str, prefix: &str) -> bool {
    if prefix.is_empty() || prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// The compiled routing table: routes in order (first match wins) and the proxies trusted to
/// say who the client is.
#[derive(Debug, Clone)]
pub struct Table {
    pub routes: Vec<Arc<Route>>,
    /// Peers whose `X-Forwarded-For` is believed when deciding a client's address for `allow`.
    pub trusted_proxies: Vec<IpNet>,
    /// Where the table came from, for the status page and logs.
    pub source: String,
    /// Origins whose bound on requests waiting for a stream differs from
    /// `--max-waiting-per-origin` (`max_waiting` of an `[[origin]]`).
    pub max_waiting: std::collections::HashMap<String, usize>,
}

impl Table {
    /// No configuration: every request goes to the most recently connected origin.
    pub fn zero_config() -> Self {
        Table {
            routes: vec![Arc::new(Route {
                name: "default route".into(),
                host: HostMatch::Any,
                path: "/".into(),
                target: Target::Origin { origin: OriginRef::MostRecent, service: None },
                policy: Policy::default(),
            })],
            trusted_proxies: Vec::new(),
            source: "built-in (no --config)".into(),
            max_waiting: Default::default(),
        }
    }

    /// The URLs at which front-end clients reach `origin`, for the proxy's front end at `front`
    /// speaking `scheme`: one per route whose target is that origin (or the most recently
    /// connected one), at most `max`. A route for any host gets the front-end address itself
    /// (`0.0.0.0`/`[::]` when the proxy listens on every address); a `*.domain` route has no
    /// single URL and is left out.
    pub fn urls_for(&self, origin: &str, scheme: &str, front: std::net::SocketAddr, max: usize) -> Vec<String> {
        let default_port = if scheme == "https" { 443 } else { 80 };
        let port = if front.port() == default_port { String::new() } else { format!(":{}", front.port()) };
        let mut urls = Vec::new();
        for (index, route) in self.routes.iter().enumerate() {
            let ours = match &route.target {
                Target::Origin { origin: OriginRef::Named(name), .. } => name == origin,
                Target::Origin { origin: OriginRef::MostRecent, .. } => true,
                _ => false,
            };
            let host = match &route.host {
                HostMatch::Any if front.is_ipv6() => format!("[{}]", front.ip()),
                HostMatch::Any => front.ip().to_string(),
                HostMatch::Exact(name) => name.clone(),
                HostMatch::Suffix(_) => continue,
            };
            let path = if route.path.starts_with('/') { route.path.clone() } else { format!("/{}", route.path) };
            // A route hidden behind an earlier one (first match wins) is not reached by its URL.
            let reached = self.lookup(host.trim_start_matches('[').trim_end_matches(']'), &path).map(|(i, _)| i);
            let url = format!("{scheme}://{host}{port}{path}");
            if ours && reached == Some(index) && !urls.contains(&url) {
                urls.push(url);
            }
            if urls.len() >= max {
                break;
            }
        }
        urls
    }

    /// The first route for `host` (without port) and `path`, with its index.
    pub fn lookup(&self, host: &str, path: &str) -> Option<(usize, &Arc<Route>)> {
        self.routes.iter().enumerate().find(|(_, r)| r.matches(host, path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(host: &str, path: &str, origin: &str) -> Arc<Route> {
        Arc::new(Route {
            name: origin.into(),
            host: HostMatch::parse(host).expect("host"),
            path: path.into(),
            target: Target::Origin { origin: OriginRef::Named(origin.into()), service: None },
            policy: Policy::default(),
        })
    }

    fn table(routes: Vec<Arc<Route>>) -> Table {
        Table { routes, trusted_proxies: vec![], source: "test".into(), max_waiting: Default::default() }
    }

    #[test]
    fn urls_of_an_origin_come_from_its_routes_and_the_front_end() {
        let table = table(vec![
            route("media.example.com", "/", "media"),
            route("*.example.com", "/", "media"),
            route("", "/photos", "media"),
            route("", "/", "other"),
        ]);
        let front = "0.0.0.0:443".parse().expect("address");
        assert_eq!(
            table.urls_for("media", "https", front, 8),
            ["https://media.example.com/", "https://0.0.0.0/photos"]
        );
        assert_eq!(table.urls_for("media", "https", front, 1), ["https://media.example.com/"]);
        assert!(table.urls_for("nobody", "https", front, 8).is_empty());
        // A route behind an earlier one that catches the same URL is not advertised.
        let hidden = self::table(vec![route("", "/", "other"), route("", "/photos", "media")]);
        assert!(hidden.urls_for("media", "https", front, 8).is_empty());
        let local = "127.0.0.1:1443".parse().expect("address");
        assert_eq!(Table::zero_config().urls_for("any", "http", local, 8), ["http://127.0.0.1:1443/"]);
        let v6 = "[::1]:8080".parse().expect("address");
        assert_eq!(Table::zero_config().urls_for("any", "http", v6, 8), ["http://[::1]:8080/"]);
    }

    #[test]
    fn first_matching_route_wins_on_host_and_whole_segments() {
        let table = table(vec![
            route("media.example.com", "/api", "api"),
            route("media.example.com", "/", "media"),
            route("*.example.com", "/", "wild"),
            route("", "/", "rest"),
        ]);
        let pick = |h: &str, p: &str| table.lookup(h, p).map(|(i, r)| (i, r.name.clone()));
        assert_eq!(pick("media.example.com", "/api/x"), Some((0, "api".into())));
        assert_eq!(pick("MEDIA.example.com", "/api"), Some((0, "api".into())));
        assert_eq!(pick("media.example.com", "/apix"), Some((1, "media".into())));
        assert_eq!(pick("a.b.example.com", "/"), Some((2, "wild".into())));
        assert_eq!(pick("example.com", "/"), Some((3, "rest".into())));
        assert!(HostMatch::parse("bad host").is_err());
        assert!(HostMatch::parse("*.").is_err());
    }
}
