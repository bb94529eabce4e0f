//! What the proxy reports about itself: counters of requests it answered with an error, and
//! the status document (origins grouped into instances and tunnels, the routes in force, the
//! process, latency by origin and status class, refused tunnels), rendered as JSON
//! (`/status`), a table (`p status`) or an HTML page (`handler = "status"`). Built from
//! snapshots only.

use crate::error::Error;
use crate::metrics::{Latencies, CLASSES};
use crate::origins::{OriginView, TunnelView};
use crate::process::ProcessStats;
use crate::route::{Handler, OriginRef, Table, Target};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Proxy-wide counters.
#[derive(Debug, Default)]
pub struct Counters {
    /// Requests answered by the proxy itself with an error, by [`Error::label`].
    failures: [AtomicU64; Error::LABELS.len()],
    /// Tunnel-port connections that did not become a tunnel, by reason.
    tunnel_rejections: Mutex<BTreeMap<&'static str, u64>>,
    /// Configuration reloads that took effect / that were refused.
    pub reloads: AtomicU64,
    pub reloads_failed: AtomicU64,
}

impl Counters {
    pub fn tunnel_rejected(&self, reason: &'static str) {
        let mut map = self.tunnel_rejections.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry(reason).or_insert(0) += 1;
    }

    pub fn tunnel_rejections(&self) -> Vec<(&'static str, u64)> {
        let map = self.tunnel_rejections.lock().unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(k, v)| (*k, *v)).collect()
    }

    pub fn record_failure(&self, e: &Error) {
        if let Some(i) = Error::LABELS.iter().position(|l| *l == e.label()) {
            self.failures[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Every failure label with its count.
    pub fn failures(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Error::LABELS.iter().zip(&self.failures).map(|(l, c)| (*l, c.load(Ordering::Relaxed)))
    }
}

/// The JSON document served at `/status`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Status {
    pub origins: Vec<OriginStatus>,
    #[serde(default)]
    pub routes: Vec<RouteStatus>,
    #[serde(default)]
    pub config: String,
    /// The proxy process itself; absent from proxies that predate it.
    #[serde(default)]
    pub proxy: ProxyInfo,
}

/// The proxy process: build, resource use and proxy-wide counters.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ProxyInfo {
    pub version: String,
    pub commit: String,
    #[serde(default)]
    pub uptime_secs: Option<u64>,
    #[serde(default)]
    pub process: ProcessStats,
    /// Tunnel-port connections that did not become a tunnel, by reason.
    #[serde(default)]
    pub tunnel_rejections: BTreeMap<String, u64>,
    /// Front-end requests the proxy answered itself with an error, by reason (non-zero only).
    #[serde(default)]
    pub failed_requests: BTreeMap<String, u64>,
    /// Access-log lines dropped because their writer fell behind.
    #[serde(default)]
    pub access_log_dropped: u64,
    /// Time to the response head by origin and status class (classes with requests only).
    #[serde(default)]
    pub responses: Vec<ResponseClass>,
}

/// Requests of one origin answered with one status class, and how soon their heads came.
/// Quantiles are the upper bound of the histogram bucket holding them (`null`: past the last).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ResponseClass {
    /// Empty for requests the proxy answered itself.
    pub origin: String,
    pub class: String,
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms_at_most: Option<f64>,
    pub p99_ms_at_most: Option<f64>,
}

impl ProxyInfo {
    /// Gather it from the proxy-wide counters and the latency histograms.
    pub fn collect(counters: &Counters, latencies: &Latencies) -> Self {
        let (version, commit) = version_and_commit(common::VERSION);
        let process = crate::process::recent();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        let mut responses = Vec::new();
        for (origin, classes) in latencies.snapshot() {
            for (class, h) in CLASSES.iter().zip(classes) {
                if h.count == 0 {
                    continue;
                }
                let ms = |q: f64| h.quantile_at_most(q).filter(|s| s.is_finite()).map(|s| s * 1000.0);
                responses.push(ResponseClass {
                    origin: origin.clone(),
                    class: (*class).to_owned(),
                    count: h.count,
                    mean_ms: (h.sum_seconds * 1000.0 / h.count as f64 * 1000.0).round() / 1000.0,
                    p50_ms_at_most: ms(0.5),
                    p99_ms_at_most: ms(0.99),
                });
            }
        }
        ProxyInfo {
            version: version.to_owned(),
            commit: commit.to_owned(),
            uptime_secs: process.start_time_seconds.map(|t| (now - t).max(0.0) as u64),
            process,
            tunnel_rejections: counters.tunnel_rejections().into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            failed_requests: counters.failures().filter(|(_, n)| *n > 0).map(|(k, v)| (k.to_owned(), v)).collect(),
            access_log_dropped: common::logging::access_lines_dropped(),
            responses,
        }
    }
}

/// The crate version and the commit out of a [`common::VERSION`] such as
/// "0.1.0 (abc1234 2026-11-22)"; the commit is "unknown" when it was not built from git.
pub fn version_and_commit(full: &str) -> (&str, &str) {
    let (version, rest) = full.split_once(' ').unwrap_or((full, ""));
    let commit = rest.trim_start_matches('(').split([' ', ')']).next().unwrap_or("");
    let commit = if commit.is_empty() || commit == "unknown" { "unknown" } else { commit };
    (version, commit)
}

/// One origin: totals over its pool, and the pool itself.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct OriginStatus {
    pub name: String,
    /// The most recently connected tunnel's id, peer and start.
    pub tunnel_id: u64,
    pub peer: String,
    pub connected_since: String,
    pub connected_secs: u64,
    pub open_streams: u64,
    pub requests: u64,
    pub bytes_to_origin: u64,
    pub bytes_from_origin: u64,
    /// Tunnels this origin has connected since the proxy started (reconnects included); the
    /// totals above include those tunnels' traffic.
    #[serde(default)]
    pub tunnels_connected: u64,
    /// Names of the routes that send requests to this origin.
    #[serde(default)]
    pub routes: Vec<String>,
    pub instances: Vec<InstanceStatus>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct InstanceStatus {
    pub instance: String,
    pub tunnels: Vec<TunnelStatus>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct TunnelStatus {
    pub tunnel_id: u64,
    pub peer: String,
    pub connected_since: String,
    pub connected_secs: u64,
    pub open_streams: u64,
    pub requests: u64,
    pub bytes_to_origin: u64,
    pub bytes_from_origin: u64,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct RouteStatus {
    pub name: String,
    pub host: String,
    pub path: String,
    pub target: String,
}

fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

impl TunnelStatus {
    fn of(t: &TunnelView) -> Self {
        TunnelStatus {
            tunnel_id: t.id,
            peer: t.peer.to_string(),
            connected_since: rfc3339(t.connected_since),
            connected_secs: t.connected_secs,
            open_streams: t.open_streams,
            requests: t.requests,
            bytes_to_origin: t.bytes_to_origin,
            bytes_from_origin: t.bytes_from_origin,
        }
    }
}

impl Status {
    pub fn build(origins: &[OriginView], table: &Table) -> Self {
        let origins = origins
            .iter()
            .map(|o| {
                let latest = o.tunnels().max_by_key(|t| t.id);
                let sum = |f: fn(&TunnelView) -> u64| o.tunnels().map(f).sum::<u64>();
                OriginStatus {
                    name: o.name.clone(),
                    tunnel_id: latest.map_or(0, |t| t.id),
                    peer: latest.map(|t| t.peer.to_string()).unwrap_or_default(),
                    connected_since: latest.map(|t| rfc3339(t.connected_since)).unwrap_or_default(),
                    connected_secs: latest.map_or(0, |t| t.connected_secs),
                    open_streams: sum(|t| t.open_streams),
                    requests: o.retired.requests + sum(|t| t.requests),
                    bytes_to_origin: o.retired.bytes_to_origin + sum(|t| t.bytes_to_origin),
                    bytes_from_origin: o.retired.bytes_from_origin + sum(|t| t.bytes_from_origin),
                    tunnels_connected: o.retired.tunnels,
                    routes: table
                        .routes
                        .iter()
                        .filter(|r| match &r.target {
                            Target::Origin { origin: OriginRef::Named(n), .. } => n == &o.name,
                            Target::Origin { origin: OriginRef::MostRecent, .. } => true,
                            _ => false,
                        })
                        .map(|r| r.name.clone())
                        .collect(),
                    instances: o
                        .instances
                        .iter()
                        .map(|i| InstanceStatus {
                            instance: i.instance.clone(),
                            tunnels: i.tunnels.iter().map(TunnelStatus::of).collect(),
                        })
                        .collect(),
                }
            })
            .collect();
        let routes = table
            .routes
            .iter()
            .map(|r| RouteStatus {
                name: r.name.clone(),
                host: match &r.host {
                    crate::route::HostMatch::Any => "*".into(),
                    crate::route::HostMatch::Exact(h) => h.clone(),
                    crate::route::HostMatch::Suffix(s) => format!("*{s}"),
                },
                path: r.path.clone(),
                target: describe(&r.target),
            })
            .collect();
        Status { origins, routes, config: table.source.clone(), proxy: ProxyInfo::default() }
    }
}

fn describe(target: &Target) -> String {
    match target {
        Target::Origin { origin: OriginRef::Named(n), .. } => format!("origin {n}"),
        Target::Origin { origin: OriginRef::MostRecent, .. } => "the most recently connected origin".into(),
        Target::Url { text, .. } => format!("url {text}"),
        Target::Handler(Handler::Status) => "handler status".into(),
        Target::Handler(Handler::Health) => "handler health".into(),
        Target::Redirect { location, status } => format!("redirect {} {location}", status.as_u16()),
        Target::Respond { status, .. } => format!("respond {}", status.as_u16()),
    }
}

/// The status as an aligned table: one row per tunnel, grouped by origin and instance.
pub fn table(status: &Status) -> String {
    let mut out = origins_table(status);
    out.push_str(&proxy_lines(&status.proxy));
    out
}

fn origins_table(status: &Status) -> String {
    if status.origins.is_empty() {
        return "no origin is connected\n".to_owned();
    }
    let header =
        ["ORIGIN", "INSTANCE", "PEER", "CONNECTED SINCE", "UPTIME", "STREAMS", "REQUESTS", "TO ORIGIN", "FROM ORIGIN"];
    let mut rows: Vec<Vec<String>> = vec![header.map(str::to_owned).to_vec()];
    for o in &status.origins {
        for i in &o.instances {
            for t in &i.tunnels {
                rows.push(vec![
                    o.name.clone(),
                    i.instance.chars().take(12).collect(),
                    t.peer.clone(),
                    t.connected_since.clone(),
                    humantime::format_duration(Duration::from_secs(t.connected_secs)).to_string(),
                    t.open_streams.to_string(),
                    t.requests.to_string(),
                    human_bytes(t.bytes_to_origin),
                    human_bytes(t.bytes_from_origin),
                ]);
            }
        }
    }
    columns(&rows)
}

/// Cells laid out in columns as wide as their widest cell, two spaces apart.
fn columns(rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            let n = cell.chars().count();
            match widths.get_mut(i) {
                Some(w) => *w = (*w).max(n),
                None => widths.push(n),
            }
        }
    }
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |ms| format!("{ms} ms"))
}

fn counts(map: &BTreeMap<String, u64>) -> String {
    map.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
}

/// The proxy process, refusals and latency, under the origins table (nothing for a proxy
/// that predates them).
fn proxy_lines(p: &ProxyInfo) -> String {
    if p.version.is_empty() {
        return String::new();
    }
    let mut facts = vec![format!("revmux {} (commit {})", p.version, p.commit)];
    if let Some(up) = p.uptime_secs {
        facts.push(format!("up {}", humantime::format_duration(Duration::from_secs(up))));
    }
    let pr = &p.process;
    if let Some(cpu) = pr.cpu_seconds {
        facts.push(format!("cpu {cpu:.2} s"));
    }
    if let Some(rss) = pr.resident_memory_bytes {
        facts.push(format!("memory {}", human_bytes(rss)));
    }
    if let Some(fds) = pr.open_fds {
        facts.push(format!("{fds} open files"));
    }
    let mut out = format!("\n{}\n", facts.join(", "));
    if !p.tunnel_rejections.is_empty() {
        out.push_str(&format!("tunnels refused: {}\n", counts(&p.tunnel_rejections)));
    }
    if !p.failed_requests.is_empty() {
        out.push_str(&format!("requests failed: {}\n", counts(&p.failed_requests)));
    }
    if p.access_log_dropped > 0 {
        out.push_str(&format!("access-log lines dropped: {}\n", p.access_log_dropped));
    }
    if !p.responses.is_empty() {
        let mut rows = vec![["RESPONSES FROM", "CLASS", "COUNT", "MEAN", "P50 AT MOST", "P99 AT MOST"]
            .map(str::to_owned)
            .to_vec()];
        for r in &p.responses {
            rows.push(vec![
                if r.origin.is_empty() { "(the proxy)".to_owned() } else { r.origin.clone() },
                r.class.clone(),
                r.count.to_string(),
                format!("{} ms", r.mean_ms),
                ms(r.p50_ms_at_most),
                ms(r.p99_ms_at_most),
            ]);
        }
        out.push('\n');
        out.push_str(&columns(&rows));
    }
    out
}

/// The status as a small, self-contained HTML page.
pub fn html(status: &Status) -> String {
    let mut out = String::from(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"5\"><title>revmux status</title>\
         <style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}\
         td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}</style></head><body>\n<h1>revmux status</h1>\n",
    );
    if status.origins.is_empty() {
        out.push_str("<p>No origin is connected.</p>\n");
    }
    for o in &status.origins {
        out.push_str(&format!(
            "<h2>{}</h2>\n<p>{} instance(s), {} request(s), {} stream(s) open</p>\n<table><tr><th>instance</th><th>peer</th><th>connected since</th><th>streams</th><th>requests</th><th>to origin</th><th>from origin</th></tr>\n",
            esc(&o.name),
            o.instances.len(),
            o.requests,
            o.open_streams
        ));
        for i in &o.instances {
            for t in &i.tunnels {
                out.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                    esc(&i.instance),
                    esc(&t.peer),
                    esc(&t.connected_since),
                    t.open_streams,
                    t.requests,
                    human_bytes(t.bytes_to_origin),
                    human_bytes(t.bytes_from_origin)
                ));
            }
        }
        out.push_str("</table>\n");
    }
    out.push_str(&format!(
        "<h2>Routes</h2>\n<p>from {}</p>\n<table><tr><th>route</th><th>host</th><th>path</th><th>target</th></tr>\n",
        esc(&status.config)
    ));
    for r in &status.routes {
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            esc(&r.name),
            esc(&r.host),
            esc(&r.path),
            esc(&r.target)
        ));
    }
    out.push_str("</table>\n");
    out.push_str(&proxy_html(&status.proxy));
    out.push_str("</body></html>\n");
    out
}

fn proxy_html(p: &ProxyInfo) -> String {
    if p.version.is_empty() {
        return String::new();
    }
    let pr = &p.process;
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let mut out = format!(
        "<h2>Proxy</h2>\n<table><tr><th>version</th><td>{} (commit {})</td></tr>\
         <tr><th>uptime</th><td>{}</td></tr><tr><th>CPU</th><td>{}</td></tr>\
         <tr><th>memory</th><td>{}</td></tr><tr><th>open files</th><td>{}</td></tr>\
         <tr><th>tunnels refused</th><td>{}</td></tr><tr><th>requests failed</th><td>{}</td></tr></table>\n",
        esc(&p.version),
        esc(&p.commit),
        opt(p.uptime_secs.map(|s| humantime::format_duration(Duration::from_secs(s)).to_string())),
        opt(pr.cpu_seconds.map(|c| format!("{c:.2} s"))),
        opt(pr.resident_memory_bytes.map(human_bytes)),
        opt(pr.open_fds.map(|n| n.to_string())),
        esc(&counts(&p.tunnel_rejections)),
        esc(&counts(&p.failed_requests)),
    );
    out.push_str(
        "<h2>Responses</h2>\n<table><tr><th>from</th><th>class</th><th>count</th><th>mean</th>\
         <th>p50 at most</th><th>p99 at most</th></tr>\n",
    );
    for r in &p.responses {
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} ms</td><td>{}</td><td>{}</td></tr>\n",
            if r.origin.is_empty() { "(the proxy)".to_owned() } else { esc(&r.origin) },
            esc(&r.class),
            r.count,
            r.mean_ms,
            ms(r.p50_ms_at_most),
            ms(r.p99_ms_at_most)
        ));
    }
    out.push_str("</table>\n");
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tunnel(id: u64) -> TunnelStatus {
        TunnelStatus {
            tunnel_id: id,
            peer: "127.0.0.1:5000".into(),
            connected_since: "2026-01-01T00:00:00Z".into(),
            connected_secs: 65,
            open_streams: 2,
            requests: 10,
            bytes_to_origin: 100,
            bytes_from_origin: 3 * 1024 * 1024,
        }
    }

    #[test]
    fn table_and_html_list_each_tunnel_under_its_origin() {
        let status = Status {
            origins: vec![OriginStatus {
                name: "media".into(),
                tunnel_id: 2,
                peer: "127.0.0.1:5000".into(),
                connected_since: "2026-01-01T00:00:00Z".into(),
                connected_secs: 65,
                open_streams: 4,
                requests: 20,
                bytes_to_origin: 200,
                bytes_from_origin: 6 * 1024 * 1024,
                tunnels_connected: 3,
                routes: vec!["default".into()],
                instances: vec![
                    InstanceStatus { instance: "aaaa".into(), tunnels: vec![tunnel(1)] },
                    InstanceStatus { instance: "<b>".into(), tunnels: vec![tunnel(2)] },
                ],
            }],
            routes: vec![],
            config: "test".into(),
            proxy: ProxyInfo::default(),
        };
        let table = table(&status);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("ORIGIN  INSTANCE"));
        assert!(lines[1].contains("media") && lines[1].contains("1m 5s") && lines[1].contains("3.0 MiB"), "{table}");
        let page = html(&status);
        assert!(page.contains("<h2>media</h2>") && page.contains("&lt;b&gt;") && !page.contains("<b>"), "{page}");
        let empty = Status { origins: vec![], routes: vec![], config: String::new(), proxy: ProxyInfo::default() };
        assert_eq!(super::table(&empty), "no origin is connected\n");
    }

    #[test]
    fn versions_and_commits() {
        assert_eq!(version_and_commit("0.1.0 (abc1234 2026-11-22)"), ("0.1.0", "abc1234"));
        assert_eq!(version_and_commit("0.1.0 (unknown commit)"), ("0.1.0", "unknown"));
        assert_eq!(version_and_commit("0.1.0"), ("0.1.0", "unknown"));
    }

    #[test]
    fn the_proxy_section_shows_refusals_and_latency() {
        let counters = Counters::default();
        counters.tunnel_rejected("token");
        counters.tunnel_rejected("token");
        let latencies = Latencies::default();
        latencies.observe("media", http::StatusCode::OK, Duration::from_millis(3));
        latencies.observe("", http::StatusCode::NOT_FOUND, Duration::from_micros(200));
        let info = ProxyInfo::collect(&counters, &latencies);
        assert_eq!(info.tunnel_rejections.get("token"), Some(&2));
        assert_eq!(info.responses.len(), 2);
        assert_eq!(info.responses[1].p50_ms_at_most, Some(5.0));
        let status = Status { origins: vec![], routes: vec![], config: String::new(), proxy: info };
        let text = table(&status);
        assert!(text.starts_with("no origin is connected\n\nrevmux "), "{text}");
        assert!(text.contains("tunnels refused: token 2"), "{text}");
        assert!(text.contains("(the proxy)") && text.contains("media") && text.contains("2xx"), "{text}");
        let json = serde_json::to_string(&status).unwrap_or_default();
        let back: Status = serde_json::from_str(&json).expect("round trip");
        assert_eq!(back.proxy.responses.len(), 2);
        let page = html(&status);
        assert!(page.contains("<h2>Responses</h2>") && page.contains("token 2"), "{page}");
        // A status document from an older proxy still reads, and prints no proxy section.
        let old: Status = serde_json::from_str(r#"{"origins":[]}"#).expect("old document");
        assert_eq!(table(&old), "no origin is connected\n");
    }
}
