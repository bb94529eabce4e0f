//! The config file (`--config revmux.toml`): origins' tokens and the route table. It is parsed
//! and validated whole into a [`Compiled`] table and credentials, or refused with one
//! `file:line: key: message`; nothing is half-applied. See the README for the format.

use crate::credentials::{Credentials, Names};
use crate::policy::{BasicAuth, Policy};
use crate::route::{Handler, HostMatch, OriginRef, Route, Table, Target};
use common::{certs, protocol, Secret};
use http::header::{HeaderName, HeaderValue};
use http::StatusCode;
use ipnet::IpNet;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use toml::Spanned;

/// A config file that cannot be used, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {key}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub key: String,
    pub message: String,
}

/// What a config file compiles to.
#[derive(Debug)]
pub struct Compiled {
    pub table: Table,
    pub credentials: Credentials,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    trusted_proxies: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    origin: Vec<Spanned<RawOrigin>>,
    #[serde(default)]
    route: Vec<Spanned<RawRoute>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrigin {
    name: Spanned<String>,
    token: Option<Spanned<String>>,
    token_file: Option<Spanned<String>>,
    max_waiting: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    host: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
    origin: Option<Spanned<String>>,
    service: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    handler: Option<Spanned<String>>,
    redirect: Option<Spanned<String>>,
    respond: Option<Spanned<RawRespond>>,
    request_headers: Option<Spanned<RawHeaders>>,
    response_headers: Option<Spanned<RawHeaders>>,
    host_header: Option<Spanned<String>>,
    strip_prefix: Option<Spanned<bool>>,
    basic_auth: Option<Spanned<Vec<String>>>,
    allow: Option<Spanned<Vec<String>>>,
    timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRespond {
    status: u16,
    #[serde(default)]
    body: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeaders {
    #[serde(default)]
    set: BTreeMap<String, String>,
    #[serde(default)]
    remove: Vec<String>,
}

/// Read and compile a config file. `default_token` is the proxy's own token (from `--token`,
/// `--token-file` or the certs directory): an `[[origin]]` without a token of its own uses it.
pub fn load(path: &Path, default_token: &Secret) -> Result<Compiled, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: file.clone(),
        line: 0,
        key: "file".into(),
        message: format!("cannot read: {e}"),
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    compile(&file, &text, base, default_token)
}

/// Compile config text (`file` names it in errors; relative token files are under `base`).
pub fn compile(file: &str, text: &str, base: &Path, default_token: &Secret) -> Result<Compiled, ConfigError> {
    let at = |span: Range<usize>, key: &str, message: String| ConfigError {
        file: file.to_owned(),
        line: line_of(text, span.start),
        key: key.to_owned(),
        message,
    };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let key = key_at(text, span.start);
        at(span, &key, e.message().trim().to_owned())
    })?;

    let mut trusted = Vec::new();
    if let Some(list) = &raw.trusted_proxies {
        for p in list.get_ref() {
            trusted.push(parse_net(p).map_err(|m| at(list.span(), "trusted_proxies", m))?);
        }
    }

    let mut entries = Vec::new();
    let mut max_waiting = std::collections::HashMap::new();
    for (i, o) in raw.origin.iter().enumerate() {
        let o = o.get_ref();
        let key = format!("origin[{}]", i + 1);
        let name = o.name.get_ref();
        let names = if name == "*" {
            Names::Any
        } else {
            protocol::validate_origin_name(name).map_err(|m| at(o.name.span(), &format!("{key}.name"), m))?;
            Names::Only(vec![name.clone()])
        };
        let token = match (&o.token, &o.token_file) {
            (Some(_), Some(t)) => {
                return Err(at(t.span(), &format!("{key}.token_file"), "give token or token_file, not both".into()))
            }
            (Some(t), None) if t.get_ref().trim().is_empty() => {
                return Err(at(t.span(), &format!("{key}.token"), "the token is empty".into()))
            }
            (Some(t), None) => Secret::new(t.get_ref().trim()),
            (None, Some(f)) => certs::read_token_file(&base.join(f.get_ref()))
                .map_err(|m| at(f.span(), &format!("{key}.token_file"), m.to_string()))?,
            (None, None) => default_token.clone(),
        };
        if let Some(m) = &o.max_waiting {
            let n = usize::try_from(*m.get_ref()).ok().filter(|n| *n >= 1).ok_or_else(|| {
                at(m.span(), &format!("{key}.max_waiting"), "must be a whole number of at least 1".into())
            })?;
            if name == "*" {
                return Err(at(m.span(), &format!("{key}.max_waiting"), "give it for a named origin".into()));
            }
            max_waiting.insert(name.clone(), n);
        }
        entries.push((token, names));
    }
    let credentials =
        if entries.is_empty() { Credentials::single(default_token.clone()) } else { Credentials::new(entries) };

    let mut routes = Vec::new();
    for (i, r) in raw.route.iter().enumerate() {
        let line = line_of(text, r.span().start);
        let key = format!("route[{}]", i + 1);
        routes.push(Arc::new(route(r.get_ref(), r.span(), &key, &format!("route {} ({file}:{line})", i + 1), &at)?));
    }
    let mut table = if routes.is_empty() { Table::zero_config() } else { Table { routes, ..Table::zero_config() } };
    table.trusted_proxies = trusted;
    table.max_waiting = max_waiting;
    table.source = file.to_owned();
    Ok(Compiled { table, credentials })
}

fn route(
    r: &RawRoute,
    span: Range<usize>,
    key: &str,
    name: &str,
    at: &dyn Fn(Range<usize>, &str, String) -> ConfigError,
) -> Result<Route, ConfigError> {
    let k = |field: &str| format!("{key}.{field}");
    let host = match &r.host {
        Some(h) => HostMatch::parse(h.get_ref()).map_err(|m| at(h.span(), &k("host"), m))?,
        None => HostMatch::Any,
    };
    let path = match &r.path {
        Some(p) if !p.get_ref().starts_with('/') => {
            return Err(at(p.span(), &k("path"), format!("{:?} must start with /", p.get_ref())))
        }
        Some(p) => p.get_ref().clone(),
        None => "/".to_owned(),
    };
    if r.service.is_some() && r.origin.is_none() {
        return Err(at(span, key, "service names a service of an origin: give origin too".into()));
    }
    let targets = [r.origin.is_some(), r.url.is_some(), r.handler.is_some(), r.redirect.is_some(), r.respond.is_some()];
    if targets.iter().filter(|t| **t).count() != 1 {
        return Err(at(span, key, "give exactly one target: origin, url, handler, redirect or respond".into()));
    }
    let target = if let Some(o) = &r.origin {
        protocol::validate_origin_name(o.get_ref()).map_err(|m| at(o.span(), &k("origin"), m))?;
        let service = match &r.service {
            Some(s) => {
                protocol::validate_origin_name(s.get_ref()).map_err(|m| at(s.span(), &k("service"), m))?;
                Some(s.get_ref().clone())
            }
            None => None,
        };
        Target::Origin { origin: OriginRef::Named(o.get_ref().clone()), service }
    } else if let Some(u) = &r.url {
        let (authority, base) = parse_url(u.get_ref()).map_err(|m| at(u.span(), &k("url"), m))?;
        Target::Url { authority, base, text: u.get_ref().clone() }
    } else if let Some(h) = &r.handler {
        match h.get_ref().as_str() {
            "status" => Target::Handler(Handler::Status),
            "health" => Target::Handler(Handler::Health),
            other => {
                return Err(at(
                    h.span(),
                    &k("handler"),
                    format!("unknown handler {other:?}; there are: health, status"),
                ))
            }
        }
    } else if let Some(to) = &r.redirect {
        if to.get_ref().is_empty() || HeaderValue::try_from(to.get_ref().as_str()).is_err() {
            return Err(at(to.span(), &k("redirect"), "not a usable Location".into()));
        }
        Target::Redirect { location: to.get_ref().clone(), status: StatusCode::PERMANENT_REDIRECT }
    } else if let Some(respond) = &r.respond {
        let raw = respond.get_ref();
        let status = StatusCode::from_u16(raw.status)
            .ok()
            .filter(|c| c.as_u16() >= 200)
            .ok_or_else(|| at(respond.span(), &k("respond.status"), format!("{} is not a final status", raw.status)))?;
        Target::Respond { status, body: raw.body.clone().into() }
    } else {
        return Err(at(span, key, "no target".into()));
    };

    let mut policy = Policy::default();
    if let Some(h) = &r.request_headers {
        policy.headers = header_edits(h.get_ref()).map_err(|m| at(h.span(), &k("request_headers"), m))?;
    }
    if let Some(h) = &r.response_headers {
        policy.response_headers = header_edits(h.get_ref()).map_err(|m| at(h.span(), &k("response_headers"), m))?;
    }
    if let Some(h) = &r.host_header {
        policy.host_header = Some(
            h.get_ref()
                .parse()
                .map_err(|e| at(h.span(), &k("host_header"), format!("{:?} is not a host: {e}", h.get_ref())))?,
        );
    }
    if let Some(s) = &r.strip_prefix {
        if *s.get_ref() {
            if path == "/" {
                return Err(at(s.span(), &k("strip_prefix"), "the route has no path prefix to strip".into()));
            }
            policy.strip_prefix = Some(path.clone());
        }
    }
    if let Some(a) = &r.basic_auth {
        let mut users = std::collections::HashMap::new();
        for entry in a.get_ref() {
            let (user, hash) = entry
                .split_once(':')
                .ok_or_else(|| at(a.span(), &k("basic_auth"), "write each entry as \"user:$argon2id$...\"".into()))?;
            users.insert(user.to_owned(), hash.to_owned());
        }
        if users.is_empty() {
            return Err(at(a.span(), &k("basic_auth"), "no users".into()));
        }
        let auth = BasicAuth::new("revmux".into(), users).map_err(|m| at(a.span(), &k("basic_auth"), m))?;
        policy.basic_auth = Some(Arc::new(auth));
    }
    if let Some(list) = &r.allow {
        let mut nets = Vec::new();
        for entry in list.get_ref() {
            nets.push(parse_net(entry).map_err(|m| at(list.span(), &k("allow"), m))?);
        }
        policy.allow = Some(nets);
    }
    if let Some(t) = &r.timeout {
        let d = humantime::parse_duration(t.get_ref())
            .map_err(|e| at(t.span(), &k("timeout"), format!("{e} (write it like 30s, 2m or 500ms)")))?;
        if d.is_zero() {
            return Err(at(t.span(), &k("timeout"), "must be more than 0".into()));
        }
        policy.timeout = Some(d);
    }
    Ok(Route { name: name.to_owned(), host, path, target, policy })
}

/// `{ set = { name = value }, remove = [name] }`: removals first, then the values set.
fn header_edits(raw: &RawHeaders) -> Result<Vec<(HeaderName, Option<HeaderValue>)>, String> {
    let mut edits = Vec::new();
    for name in &raw.remove {
        edits.push((HeaderName::try_from(name.as_str()).map_err(|e| format!("{name:?}: {e}"))?, None));
    }
    for (name, value) in &raw.set {
        let n = HeaderName::try_from(name.as_str()).map_err(|e| format!("{name:?}: {e}"))?;
        let v = HeaderValue::try_from(value.as_str()).map_err(|e| format!("{name:?}: {e}"))?;
        edits.push((n, Some(v)));
    }
    Ok(edits)
}

/// `10.0.0.0/8`, or a single address.
fn parse_net(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not an address or CIDR network"))
}

/// `http://host:port[/base]`.
fn parse_url(s: &str) -> Result<(http::uri::Authority, String), String> {
    let uri: http::Uri = s.parse().map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("{s:?}: only http:// services are supported"));
    }
    let authority = uri.authority().cloned().ok_or_else(|| format!("{s:?} has no host"))?;
    if uri.query().is_some() {
        return Err(format!("{s:?}: a query is not allowed"));
    }
    Ok((authority, uri.path().trim_end_matches('/').to_owned()))
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).unwrap_or(text).matches('\n').count() + 1
}

/// The key written on the line at `offset`, for errors toml reports without one.
fn key_at(text: &str, offset: usize) -> String {
    let start = text.get(..offset).and_then(|t| t.rfind('\n')).map_or(0, |i| i + 1);
    let line = text.get(start..).and_then(|t| t.lines().next()).unwrap_or("").trim();
    if let Some((key, _)) = line.split_once('=') {
        return key.trim().trim_matches('"').to_owned();
    }
    if line.starts_with('[') {
        return line.trim_matches(|c| c == '[' || c == ']').trim().to_owned();
    }
    "file".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile_str(text: &str) -> Result<Compiled, ConfigError> {
        compile("t.toml", text, Path::new("."), &Secret::new("default"))
    }

    #[test]
    fn a_full_file_compiles() {
        let hash = crate::policy::hash_password("pw").expect("hash");
        let text = format!(
            r#"
trusted_proxies = ["10.0.0.0/8"]

[[origin]]
name = "media"
token = "media-token"

[[origin]]
name = "app"

[[route]]
host = "media.example.com"
origin = "media"
allow = ["192.168.0.0/16", "::1"]
timeout = "5s"

[[route]]
path = "/api"
url = "http://127.0.0.1:8080/base"
strip_prefix = true
host_header = "internal"
request_headers = {{ set = {{ x-from = "revmux" }}, remove = ["cookie"] }}
response_headers = {{ set = {{ cache-control = "no-store" }}, remove = ["server"] }}
basic_auth = ["alice:{hash}"]

[[route]]
path = "/status"
handler = "status"

[[route]]
path = "/old"
redirect = "https://example.com/"

[[route]]
respond = {{ status = 404, body = "nothing here\n" }}
"#
        );
        let c = compile_str(&text).expect("compiles");
        assert_eq!(c.table.routes.len(), 5);
        assert!(c.table.routes[0].name.contains("t.toml:11"), "{}", c.table.routes[0].name);
        use common::protocol::Credentials as _;
        assert_eq!(c.credentials.admits(b"media-token", "media"), Some(true));
        assert_eq!(c.credentials.admits(b"media-token", "app"), Some(false));
        assert_eq!(c.credentials.admits(b"default", "app"), Some(true));
        assert_eq!(c.credentials.admits(b"default", "media"), Some(false));
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = compile_str("[[route]]\norigin = \"media\"\nhots = \"x\"\n").expect_err("unknown key");
        assert_eq!((e.line, e.key.as_str()), (3, "hots"), "{e}");
        assert!(e.to_string().starts_with("t.toml:3: hots: "), "{e}");
        let e = compile_str("[[route]]\norigin = \"media\"\nallow = [\"10.0.0.0/33\"]\n").expect_err("bad net");
        assert_eq!(e.to_string(), "t.toml:3: route[1].allow: \"10.0.0.0/33\" is not an address or CIDR network");
        let e = compile_str("[[route]]\norigin = \"media\"\n\n[[route]]\npath = \"/x\"\n").expect_err("no target");
        assert_eq!((e.line, e.key.as_str()), (4, "route[2]"), "{e}");
        let e = compile_str("[[route]]\nurl = \"https://x\"\n").expect_err("https");
        assert_eq!(e.key, "route[1].url");
        let e = compile_str("[[route]]\norigin = \"media\"\ntimeout = \"soon\"\n").expect_err("timeout");
        assert_eq!((e.line, e.key.as_str()), (3, "route[1].timeout"));
        let e = compile_str("[[origin]]\nname = \"Bad Name\"\n").expect_err("name");
        assert_eq!((e.line, e.key.as_str()), (2, "origin[1].name"));
        let e = compile_str("[[route]\n").expect_err("syntax");
        assert_eq!(e.line, 1, "{e}");
        let e = compile_str("[[route]]\norigin = \"m\"\nbasic_auth = [\"bob:plain\"]\n").expect_err("hash");
        assert_eq!(e.key, "route[1].basic_auth");
        let e = compile_str("[[origin]]\nname = \"m\"\nmax_waiting = 0\n").expect_err("max_waiting");
        assert_eq!((e.line, e.key.as_str()), (3, "origin[1].max_waiting"), "{e}");
        let c = compile_str("[[origin]]\nname = \"m\"\nmax_waiting = 5\n").expect("compiles");
        assert_eq!(c.table.max_waiting.get("m"), Some(&5));
        let e = compile_str("[[route]]\nurl = \"http://x:1\"\nservice = \"a\"\n").expect_err("service alone");
        assert_eq!((e.line, e.key.as_str()), (1, "route[1]"), "{e}");
        let e = compile_str("[[route]]\norigin = \"m\"\nservice = \"Bad Name\"\n").expect_err("service name");
        assert_eq!((e.line, e.key.as_str()), (3, "route[1].service"), "{e}");
    }

    #[test]
    fn no_routes_keeps_the_zero_config_route() {
        let c = compile_str("trusted_proxies = [\"127.0.0.1\"]\n").expect("compiles");
        assert_eq!(c.table.routes.len(), 1);
        assert!(matches!(c.table.routes[0].target, Target::Origin { origin: OriginRef::MostRecent, .. }));
        assert_eq!(c.table.trusted_proxies.len(), 1);
    }
}
