//! Reloading: on SIGHUP, or when the config file, the certificate, the key or the token file
//! changes, everything is read and built again; only a complete, valid result is swapped in
//! (routing table, credentials, TLS settings), so a bad file changes nothing. Tunnels whose
//! token no longer admits their origin name are closed.

use crate::config::{LoadError, Loaded, Sources};
use crate::state::Proxy;
use common::tuning;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// Put a loaded configuration in place; returns how many tunnels were closed as revoked.
pub fn apply(proxy: &Proxy, loaded: Loaded) -> usize {
    let Loaded { tls, credentials, table } = loaded;
    let credentials = Arc::new(credentials);
    proxy.credentials.store(credentials.clone());
    proxy.table.store(Arc::new(table));
    proxy.tls.store(Some(Arc::new(tls)));
    let revoked = proxy.origins.revoke(|t| credentials.still_admits(t));
    for t in &revoked {
        warn!(origin = %t.origin, instance = %t.instance, peer = %t.peer, tunnel = t.id, "closing a tunnel: its token no longer admits this origin");
    }
    revoked.len()
}

/// Read the sources again and apply them; on any error nothing changes.
pub fn reload(proxy: &Proxy, sources: &Sources) -> Result<usize, LoadError> {
    match sources.load() {
        Ok(loaded) => {
            let routes = loaded.table.routes.len();
            let revoked = apply(proxy, loaded);
            proxy.counters.reloads.fetch_add(1, Ordering::Relaxed);
            info!(routes, revoked, "configuration reloaded");
            Ok(revoked)
        }
        Err(e) => {
            proxy.counters.reloads_failed.fetch_add(1, Ordering::Relaxed);
            error!(error = %e, "configuration NOT reloaded: the previous one stays in force");
            Err(e)
        }
    }
}

/// The files a reload reads, with what was last seen of each.
fn watched(sources: &Sources) -> Vec<PathBuf> {
    let mut files = vec![sources.cert.clone(), sources.key.clone()];
    if let crate::config::TokenSource::File(path) = &sources.token {
        files.push(path.clone());
    }
    files.extend(sources.config.clone());
    files
}

fn stamp(files: &[PathBuf]) -> Vec<Option<(SystemTime, u64)>> {
    files.iter().map(|f| std::fs::metadata(f).ok().and_then(|m| Some((m.modified().ok()?, m.len())))).collect()
}

/// Reload on SIGHUP and whenever a watched file's modification time or size changes (polled
/// every [`tuning::CONFIG_POLL`]: a stat per file, and no platform watcher to go wrong).
pub async fn watch(proxy: Arc<Proxy>, sources: Sources, shutdown: CancellationToken) {
    let files = watched(&sources);
    let mut seen = stamp(&files);
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGHUP; reloading on file changes only");
            None
        }
    };
    let mut tick = tokio::time::interval(tuning::CONFIG_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let why = tokio::select! {
            _ = shutdown.cancelled() => return,
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => "SIGHUP",
            _ = tick.tick() => {
                let now = stamp(&files);
                if now == seen { continue; }
                "a file changed"
            }
        };
        if why == "SIGHUP" {
            // As logrotate expects: the access-log file is opened again at its path.
            common::logging::reopen_access_log();
        }
        info!(reason = why, "reloading the configuration");
        seen = stamp(&files);
        // Whatever the outcome, the same bad file is not retried until it changes again.
        let _ = reload(&proxy, &sources);
    }
}
