//! Logging setup shared by `p` and `c`: human-readable or JSON lines on stderr, filtered by
//! `RUST_LOG`; and the proxy's access log, its own target ([`ACCESS_TARGET`]) written with the
//! normal log, to a file through a bounded writer thread, or not at all (`--access-log`).

use std::fs::File;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use tracing::level_filters::LevelFilter;
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// The tracing target of access-log lines, one per front-end request.
pub const ACCESS_TARGET: &str = "revmux::access";

/// Access-log lines that may wait for their writer thread; past it, lines are dropped and
/// counted ([`access_lines_dropped`]) rather than held in memory.
pub const ACCESS_LOG_QUEUE: usize = 16 * 1024;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Where access-log lines go (`--access-log`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AccessLog {
    /// None are written.
    Off,
    /// With the normal log on stderr, whatever `RUST_LOG` says.
    #[default]
    Stderr,
    /// Appended to this file.
    File(PathBuf),
}

impl std::str::FromStr for AccessLog {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "" => Err("empty: give off, stderr or a file path (e.g. /var/log/revmux/access.log)".into()),
            "off" | "none" => Ok(AccessLog::Off),
            "stderr" | "on" | "-" => Ok(AccessLog::Stderr),
            path => Ok(AccessLog::File(PathBuf::from(path))),
        }
    }
}

impl std::fmt::Display for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccessLog::Off => f.write_str("off"),
            AccessLog::Stderr => f.write_str("stderr"),
            AccessLog::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Keeps the access-log writer thread alive; dropping it writes out what is queued (for up
/// to a second).
#[derive(Debug, Default)]
#[must_use = "dropping the guard stops the access-log writer"]
pub struct LogGuard {
    _worker: Option<WorkerGuard>,
}

static ACCESS_DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Access-log lines dropped because their queue was full.
pub fn access_lines_dropped() -> u64 {
    ACCESS_DROPPED.get().map_or(0, |c| c.dropped_lines() as u64)
}

/// Install the global subscriber with no access log (the origin). `RUST_LOG` overrides the
/// default level (`info`).
pub fn init(format: LogFormat) {
    // Nothing is opened without a file, so this cannot fail.
    let _ = init_with_access(format, &AccessLog::Off);
}

/// Install the global subscriber: the normal log on stderr as `RUST_LOG` says (`info` by
/// default), access-log lines where `access` says. Fails only when the access-log file cannot
/// be opened.
pub fn init_with_access(format: LogFormat, access: &AccessLog) -> std::io::Result<LogGuard> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let (filter, unreadable) = log_filter(rust_log.as_deref());
    // Access lines are the access layer's alone, so RUST_LOG neither hides nor doubles them.
    let filter = filter.with_target(ACCESS_TARGET, LevelFilter::OFF);
    let ansi = std::io::stderr().is_terminal();
    let main = match format {
        LogFormat::Human => tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .boxed(),
    }
    .with_filter(filter);
    // A flood of requests is a flood of access lines: they are written by a thread of their
    // own from a bounded queue, so neither a slow disk nor a stalled stderr reader (a full
    // pipe) holds up the runtime, and a queue that is full drops lines (counted).
    let sink: Option<(Box<dyn std::io::Write + Send>, bool)> = match access {
        AccessLog::Off => None,
        AccessLog::Stderr => Some((Box::new(std::io::stderr()), ansi)),
        AccessLog::File(path) => Some((Box::new(ReopenableFile::open(path, &REOPEN_ACCESS_LOG)?), false)),
    };
    let (access_layer, guard) = match sink {
        None => (None, None),
        Some((out, ansi)) => {
            let (writer, guard) = NonBlockingBuilder::default()
                .buffered_lines_limit(ACCESS_LOG_QUEUE)
                .lossy(true)
                .thread_name("revmux-access-log")
                .finish(out);
            let _ = ACCESS_DROPPED.set(writer.error_counter());
            (Some(access_layer(format, writer, ansi)), Some(guard))
        }
    };
    // A second init (tests) keeps the first subscriber; that is not an error worth reporting.
    let _ = tracing_subscriber::registry().with(main).with(access_layer).try_init();
    if let Some(e) = unreadable {
        tracing::warn!(
            "RUST_LOG={:?} is not understood ({e}); logging at info. Give a level (debug) or \
             target=level pairs separated by commas (info,h2=debug)",
            rust_log.unwrap_or_default()
        );
    }
    Ok(LogGuard { _worker: guard })
}

/// What the normal log shows: `RUST_LOG`'s `level` and `target=level` directives (`info` when
/// it is unset or empty), or `info` and why when it cannot be read. Targets match by module
/// path prefix, the most specific winning, as `RUST_LOG` does everywhere; span and field
/// directives (`target[span{field}]`) are not supported.
fn log_filter(rust_log: Option<&str>) -> (Targets, Option<String>) {
    let info = || Targets::new().with_default(LevelFilter::INFO);
    match rust_log.map(str::trim) {
        None | Some("") => (info(), None),
        Some(directives) => match directives.parse::<Targets>() {
            Ok(targets) => (targets, None),
            Err(e) => (info(), Some(e.to_string())),
        },
    }
}

static REOPEN_ACCESS_LOG: AtomicU64 = AtomicU64::new(0);

/// Open the access-log file again at its path before the next line is written (SIGHUP):
/// after logrotate has renamed it, lines go to a new file instead of the renamed one.
pub fn reopen_access_log() {
    REOPEN_ACCESS_LOG.fetch_add(1, Ordering::Relaxed);
}

/// A file appended to, opened again at its path whenever `asks` has moved since it was
/// opened. Only the access-log writer thread writes to it, so a reopen never splits a line.
struct ReopenableFile {
    path: PathBuf,
    file: File,
    asks: &'static AtomicU64,
    opened_at: u64,
}

impl ReopenableFile {
    fn open(path: &Path, asks: &'static AtomicU64) -> std::io::Result<Self> {
        let opened_at = asks.load(Ordering::Relaxed);
        Ok(ReopenableFile { path: path.to_owned(), file: append_to(path)?, asks, opened_at })
    }
}

fn append_to(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new().create(true).append(true).open(path)
}

impl std::io::Write for ReopenableFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let asked = self.asks.load(Ordering::Relaxed);
        if asked != self.opened_at {
            self.opened_at = asked;
            match append_to(&self.path) {
                Ok(file) => self.file = file,
                // Lines keep going to the file already open (the renamed one): nothing is lost.
                Err(e) => tracing::warn!(
                    path = %self.path.display(), error = %e,
                    "cannot open the access log again; still writing to the file opened before"
                ),
            }
        }
        self.file.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// A layer writing only access-log lines, in `format`, to `writer` (also used by tests to
/// capture them).
pub fn access_layer<S, W>(format: LogFormat, writer: W, ansi: bool) -> Box<dyn Layer<S> + Send + Sync + 'static>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let only_access = Targets::new().with_target(ACCESS_TARGET, LevelFilter::INFO);
    match format {
        LogFormat::Human => {
            tracing_subscriber::fmt::layer().with_writer(writer).with_ansi(ansi).with_filter(only_access).boxed()
        }
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(writer)
            .with_filter(only_access)
            .boxed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_directives() {
        use tracing::Level;
        let (default, e) = log_filter(None);
        assert!(e.is_none());
        assert!(default.would_enable("proxy::forward", &Level::INFO));
        assert!(!default.would_enable("proxy::forward", &Level::DEBUG));
        assert!(log_filter(Some("  ")).0.would_enable("h2", &Level::INFO));

        let (f, e) = log_filter(Some("warn,proxy=debug,h2::codec=trace"));
        assert!(e.is_none());
        assert!(f.would_enable("proxy::forward", &Level::DEBUG), "a module under a target");
        assert!(!f.would_enable("proxy::forward", &Level::TRACE));
        assert!(f.would_enable("h2::codec::framed_read", &Level::TRACE), "the most specific wins");
        assert!(!f.would_enable("h2::proto", &Level::INFO), "the default level");
        assert!(f.would_enable("h2::proto", &Level::WARN));
        assert!(log_filter(Some("debug")).0.would_enable("origin", &Level::DEBUG));

        let (f, e) = log_filter(Some("info,proxy=loud"));
        assert!(e.is_some(), "an unknown level is reported");
        assert!(f.would_enable("proxy", &Level::INFO) && !f.would_enable("proxy", &Level::DEBUG), "info instead");

        // The access target is switched off in the normal log whatever RUST_LOG says.
        let f = log_filter(Some("trace,revmux::access=trace")).0.with_target(ACCESS_TARGET, LevelFilter::OFF);
        assert!(!f.would_enable(ACCESS_TARGET, &Level::ERROR));
        assert!(f.would_enable("revmux::other", &Level::TRACE));
    }

    #[test]
    fn access_log_values() {
        assert_eq!("off".parse::<AccessLog>(), Ok(AccessLog::Off));
        assert_eq!("stderr".parse::<AccessLog>(), Ok(AccessLog::Stderr));
        assert_eq!("/var/log/a.log".parse::<AccessLog>(), Ok(AccessLog::File("/var/log/a.log".into())));
        assert!("".parse::<AccessLog>().expect_err("empty").contains("off, stderr or a file"));
    }

    #[test]
    fn the_access_log_file_is_opened_again_when_asked() {
        use std::io::Write;
        static ASKS: AtomicU64 = AtomicU64::new(0);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("access.log");
        let rotated = dir.path().join("access.log.1");
        let mut log = ReopenableFile::open(&path, &ASKS).expect("open");
        log.write_all(b"one\n").expect("write");
        std::fs::rename(&path, &rotated).expect("rotate");
        log.write_all(b"two\n").expect("write");
        ASKS.fetch_add(1, Ordering::Relaxed);
        log.write_all(b"three\n").expect("write");
        log.write_all(b"four\n").expect("write");
        let read = |p: &Path| std::fs::read_to_string(p).expect("read");
        assert_eq!(read(&rotated), "one\ntwo\n", "until asked, the renamed file");
        assert_eq!(read(&path), "three\nfour\n", "then a new file at the path");

        // A path that cannot be opened any more: lines go on to the file already open.
        std::fs::rename(&path, &rotated).expect("rotate");
        std::fs::remove_dir_all(dir.path()).expect("remove");
        ASKS.fetch_add(1, Ordering::Relaxed);
        log.write_all(b"five\n").expect("still written");
    }
}
