//! The proxy's command line (every flag also read from a `REVMUX_…` environment variable) and
//! its resolution into [`Sources`]: where the certificate, the token and the config file come
//! from, read once at start and again at every reload.

use clap::{Parser, Subcommand};
use common::certs;
use common::logging::{AccessLog, LogFormat};
use common::tls;
use common::tuning;
use common::Secret;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "p",
    version = common::VERSION,
    about = "revmux proxy: the public side of a reverse tunnel",
    long_about = "revmux proxy: the public side of a reverse tunnel.\n\n\
        Origins (`c`) dial in on the tunnel port over TLS; front-end clients (browsers, media \
        players, curl) connect to the front-end port and each request is forwarded as an HTTP/2 \
        stream to a connected origin. On first start, with no --cert/--key and no token given, \
        a local CA, a server certificate and a random origin token are created in --certs-dir."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Config file (TOML): per-origin tokens and routes by host and path with their policy.
    /// Reloaded on SIGHUP and when the file changes; a bad file changes nothing.
    #[arg(long, env = "REVMUX_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Front-end address, where browsers, media players and curl connect. Listen addresses take
    /// PORT or :PORT (127.0.0.1), HOST:PORT (names resolved), IP:PORT or [IPv6]:PORT;
    /// 0.0.0.0:PORT or [::]:PORT for every interface.
    #[arg(long, env = "REVMUX_LISTEN", value_name = "ADDR", default_value = "127.0.0.1:1443", value_parser = common::cli::listen_addr)]
    pub listen: SocketAddr,

    /// Tunnel address, where origins dial in over TLS.
    #[arg(long, env = "REVMUX_TUNNEL_LISTEN", value_name = "ADDR", default_value = "127.0.0.1:1444", value_parser = common::cli::listen_addr)]
    pub tunnel_listen: SocketAddr,

    /// Admin address serving GET /status (JSON) and GET /metrics (Prometheus). Keep it private.
    #[arg(long, env = "REVMUX_ADMIN_LISTEN", value_name = "ADDR", default_value = "127.0.0.1:1445", global = true, value_parser = common::cli::listen_addr)]
    pub admin_listen: SocketAddr,

    /// Serve the front end over TLS (ALPN h2 and http/1.1) with the same certificate as the tunnel port.
    #[arg(long, env = "REVMUX_TLS")]
    pub tls: bool,

    /// Certificate chain (PEM) for the tunnel port and the TLS front end, e.g. from Let's Encrypt.
    /// Without it a certificate signed by the local CA in --certs-dir is used.
    #[arg(long, env = "REVMUX_CERT", value_name = "PEM", requires = "key")]
    pub cert: Option<PathBuf>,

    /// Private key (PEM) for --cert.
    #[arg(long, env = "REVMUX_KEY", value_name = "PEM", requires = "cert")]
    pub key: Option<PathBuf>,

    /// Extra name or IP address for the generated certificate (repeatable, or comma-separated);
    /// localhost, 127.0.0.1 and ::1 are always included.
    #[arg(long = "hostname", env = "REVMUX_HOSTNAME", value_name = "NAME", value_delimiter = ',')]
    pub hostnames: Vec<String>,

    /// Token origins must present. Prefer --token-file: a command line is visible to other users.
    #[arg(long, env = "REVMUX_TOKEN", value_name = "TOKEN", hide_env_values = true, conflicts_with = "token_file")]
    pub token: Option<String>,

    /// File holding the origin token. Default: <certs-dir>/token, created on first start.
    #[arg(long, env = "REVMUX_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Where the generated CA, server certificate and token live.
    #[arg(long, env = "REVMUX_CERTS_DIR", value_name = "DIR", default_value = "certs")]
    pub certs_dir: PathBuf,

    /// Worker threads (0: one per two CPU cores, at least one; see BENCHMARKS.md). One worker
    /// runs a single-threaded scheduler.
    #[arg(long, env = "REVMUX_THREADS", value_name = "N", default_value_t = 0)]
    pub threads: usize,

    /// Log line format (the access log's too).
    #[arg(long, env = "REVMUX_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// Access log, one line per front-end request (client, method, host, path, status, bytes
    /// each way, duration, origin): `stderr` (with the normal log), `off`, or a file to append
    /// to (written by a thread of its own; lines are dropped and counted if it falls behind;
    /// SIGHUP opens the file again, for logrotate).
    #[arg(long, env = "REVMUX_ACCESS_LOG", value_name = "stderr|off|FILE", default_value = "stderr")]
    pub access_log: AccessLog,

    /// A front-end client must send each request head within this (e.g. 30s, 1m).
    #[arg(long, env = "REVMUX_HEADER_TIMEOUT", value_name = "DURATION", default_value = "30s", value_parser = duration)]
    pub header_timeout: Duration,

    /// A front-end connection with no request in flight is closed after this.
    #[arg(long, env = "REVMUX_IDLE_TIMEOUT", value_name = "DURATION", default_value = "60s", value_parser = duration)]
    pub idle_timeout: Duration,

    /// A front-end client that takes no response data for this long is dropped.
    #[arg(long, env = "REVMUX_SEND_TIMEOUT", value_name = "DURATION", default_value = "60s", value_parser = duration)]
    pub send_timeout: Duration,

    /// An origin must start answering (send response headers) within this of the request's
    /// end, else 504. An upload may take as long as it keeps moving; one that stops this long
    /// gets 408 (the client sent nothing more) or 504 (the origin took nothing more).
    #[arg(long, env = "REVMUX_RESPONSE_TIMEOUT", value_name = "DURATION", default_value = "60s", value_parser = duration)]
    pub response_timeout: Duration,

    /// Front-end connections one client address (IPv4, or IPv6 /64) may hold at once.
    #[arg(long, env = "REVMUX_MAX_CONNECTIONS_PER_CLIENT", value_name = "N", default_value_t = tuning::MAX_CONNECTIONS_PER_CLIENT, value_parser = at_least_one)]
    pub max_connections_per_client: usize,

    /// Requests one client address may have in flight at once; more wait for one of its own
    /// to finish (503 after --client-queue-timeout).
    #[arg(long, env = "REVMUX_MAX_STREAMS_PER_CLIENT", value_name = "N", default_value_t = tuning::MAX_STREAMS_PER_CLIENT, value_parser = at_least_one)]
    pub max_streams_per_client: usize,

    /// How long a request may wait for one of its client's stream slots before 503.
    #[arg(long, env = "REVMUX_CLIENT_QUEUE_TIMEOUT", value_name = "DURATION", default_value = "30s", value_parser = duration)]
    pub client_queue_timeout: Duration,

    /// Requests that may wait for a stream of one origin beyond what its tunnels carry at
    /// once (1,024 streams per tunnel); more get 503 with Retry-After at once.
    #[arg(long, env = "REVMUX_MAX_WAITING_PER_ORIGIN", value_name = "N", default_value_t = tuning::MAX_WAITING_PER_ORIGIN, value_parser = at_least_one)]
    pub max_waiting_per_origin: usize,
}

/// A count flag: a whole number of at least 1.
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{s:?} is not a whole number of at least 1")),
    }
}

/// `p status --interval`: seconds (`2`, `0.5`) or a duration (`2s`, `500ms`); 100ms at least.
fn interval(s: &str) -> Result<Duration, String> {
    let d = match s.trim().parse::<f64>() {
        Ok(secs) if (0.0..1e9).contains(&secs) => Duration::from_secs_f64(secs),
        Ok(_) => return Err(format!("{s:?} is not a number of seconds")),
        Err(_) => duration(s)?,
    };
    if d < Duration::from_millis(100) {
        return Err("must be at least 100ms".into());
    }
    Ok(d)
}

/// A duration flag: `30s`, `1m`, `500ms`; at least one millisecond.
fn duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (write it like 30s, 2m or 500ms)"))?;
    if d < Duration::from_millis(1) {
        return Err("must be at least 1ms".into());
    }
    Ok(d)
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the connected origins of a running proxy as a table (asks its --admin-listen).
    Status {
        /// Print it again every --interval until Ctrl-C (redrawn in place on a terminal).
        #[arg(long)]
        watch: bool,
        /// How often --watch refreshes (e.g. 2s, 500ms).
        #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = interval, requires = "watch")]
        interval: Duration,
    },
    /// Check a config file: exit 0 when it is good, 64 with `file:line: key: message` when not.
    CheckConfig {
        /// The config file to check.
        file: PathBuf,
    },
    /// Read a password (from the terminal without echo, or one line of standard input) and
    /// print its Argon2 hash for a route's `basic_auth`.
    HashPassword,
}

use common::cli::usage;
pub use common::cli::UsageError;

/// Where the proxy's certificate, token and config come from; read at start and re-read at
/// every reload.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The flag to blame when the certificate or key cannot be used.
    pub cert_flag: &'static str,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub frontend_tls: bool,
    pub token: TokenSource,
    pub config: Option<PathBuf>,
}

/// The proxy's default token.
#[derive(Debug, Clone)]
pub enum TokenSource {
    /// `--token`: fixed for the life of the process.
    Given(Secret),
    /// `--token-file` or `<certs-dir>/token`: re-read at reload.
    File(PathBuf),
}

/// Everything the sources say, ready to be put in place.
#[derive(Debug)]
pub struct Loaded {
    pub tls: crate::Tls,
    pub credentials: crate::credentials::Credentials,
    pub table: crate::route::Table,
}

/// Why loading failed: a flag's file (exit 64 naming the flag) or the config file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("invalid value for {}: {}", .0.flag, .0.message)]
    Flag(UsageError),
    #[error("{0}")]
    Config(#[from] crate::config_file::ConfigError),
}

impl From<UsageError> for LoadError {
    fn from(e: UsageError) -> Self {
        LoadError::Flag(e)
    }
}

impl Sources {
    /// Read everything: certificate and key, the default token, the config file.
    pub fn load(&self) -> Result<Loaded, LoadError> {
        let flag = self.cert_flag;
        let certs = tls::load_certs(&self.cert).map_err(|e| usage(flag, e))?;
        let key = tls::load_key(&self.key).map_err(|e| usage(if flag == "--cert" { "--key" } else { flag }, e))?;
        let tunnel =
            tls::server_config(certs.clone(), key.clone_key(), tls::ALPN_TUNNEL).map_err(|e| usage(flag, e))?;
        let frontend = if self.frontend_tls {
            Some(tls::server_config(certs, key, tls::ALPN_FRONTEND).map_err(|e| usage(flag, e))?)
        } else {
            None
        };
        let token = match &self.token {
            TokenSource::Given(t) => t.clone(),
            TokenSource::File(path) => certs::read_token_file(path).map_err(|e| usage("--token-file", e))?,
        };
        let (credentials, table) = match &self.config {
            None => (crate::credentials::Credentials::single(token), crate::route::Table::zero_config()),
            Some(path) => {
                let compiled = crate::config_file::load(path, &token)?;
                (compiled.credentials, compiled.table)
            }
        };
        Ok(Loaded { tls: crate::Tls { tunnel, frontend }, credentials, table })
    }
}

/// Everything the proxy needs beyond its listeners.
#[derive(Debug)]
pub struct Settings {
    pub sources: Sources,
    pub loaded: Loaded,
    /// What was set up, for the start-up log: (what, where).
    pub notes: Vec<String>,
    pub limits: crate::Limits,
    /// The generated CA origins trust (none with --cert).
    pub ca: Option<PathBuf>,
    /// The names the generated certificate covers (none with --cert).
    pub cert_names: Vec<String>,
}

/// Load or create certificates and the token as the flags say, then read the config file.
pub fn resolve(cli: &Cli) -> Result<Settings, LoadError> {
    for name in &cli.hostnames {
        if rustls_pki_types::ServerName::try_from(name.as_str()).is_err() {
            return Err(usage("--hostname", format!("{name:?} is not a DNS name or IP address")).into());
        }
    }
    let mut notes = Vec::new();
    let mut cert_names = Vec::new();
    let mut ca = None;
    let token = match (&cli.token, &cli.token_file) {
        (Some(_), _) => match common::cli::explicit_token(cli.token.as_deref(), None)? {
            Some(t) => TokenSource::Given(t),
            None => return Err(usage("--token", "the token is empty").into()),
        },
        (None, Some(path)) => {
            common::cli::explicit_token(None, Some(path))?;
            TokenSource::File(path.clone())
        }
        (None, None) => {
            let (_, path, created) = certs::ensure_token(&cli.certs_dir).map_err(|e| usage("--certs-dir", e))?;
            let verb = if created { "created" } else { "using" };
            notes.push(format!("{verb} the origin token in {} (mode 0600; never logged)", path.display()));
            TokenSource::File(path)
        }
    };
    if let Some(config) = &cli.config {
        notes.push(format!("routes and origin tokens from {} (reloaded on SIGHUP and on change)", config.display()));
        // Checked before the certificate is issued: a proxy that will not start on a bad
        // config file must not have rewritten anything in --certs-dir.
        let default_token = match &token {
            TokenSource::Given(t) => t.clone(),
            TokenSource::File(path) => certs::read_token_file(path).map_err(|e| usage("--token-file", e))?,
        };
        crate::config_file::load(config, &default_token)?;
    }
    let (cert_flag, cert, key) = match (&cli.cert, &cli.key) {
        (Some(cert), Some(key)) => ("--cert", cert.clone(), key.clone()),
        _ => {
            let issued =
                certs::ensure_server_cert(&cli.certs_dir, &cli.hostnames).map_err(|e| usage("--certs-dir", e))?;
            if issued.created_ca {
                notes.push(format!("created a local CA at {}", issued.ca.display()));
            }
            notes.push(format!(
                "server certificate {} covers {} (more names with --hostname); signed by {}, which origins trust",
                issued.cert.display(),
                issued.names.join(", "),
                issued.ca.display()
            ));
            cert_names = issued.names.clone();
            ca = Some(issued.ca.clone());
            ("--certs-dir", issued.cert, issued.key)
        }
    };
    let sources = Sources { cert_flag, cert, key, frontend_tls: cli.tls, token, config: cli.config.clone() };
    let loaded = sources.load()?;
    let limits = crate::Limits {
        header_timeout: cli.header_timeout,
        idle_timeout: cli.idle_timeout,
        send_timeout: cli.send_timeout,
        response_timeout: cli.response_timeout,
        max_connections_per_client: cli.max_connections_per_client,
        max_streams_per_client: cli.max_streams_per_client,
        client_queue_timeout: cli.client_queue_timeout,
        max_waiting_per_origin: cli.max_waiting_per_origin,
        tunnel_streams: tuning::MAX_CONCURRENT_STREAMS as usize,
    };
    Ok(Settings { sources, loaded, notes, limits, ca, cert_names })
}

/// The `c` command line that connects an origin to this proxy, for the start-up log: the
/// tunnel address as an origin can dial it (a name the certificate covers), the CA file and
/// the token file.
pub fn origin_command(
    tunnel: SocketAddr,
    cert_names: &[String],
    ca: Option<&std::path::Path>,
    token: &TokenSource,
) -> String {
    let port = tunnel.port();
    let host = if tunnel.ip().is_loopback() {
        "localhost".to_owned()
    } else if tunnel.ip().is_unspecified() {
        // Any address of this machine: the first name given with --hostname, if any.
        let default = |n: &&String| certs::DEFAULT_NAMES.contains(&n.as_str());
        cert_names.iter().find(|n| !default(n)).cloned().unwrap_or_else(|| "THIS-HOST".to_owned())
    } else if tunnel.is_ipv6() {
        format!("[{}]", tunnel.ip())
    } else {
        tunnel.ip().to_string()
    };
    let mut cmd = format!("c --proxy {host}:{port}");
    if let Some(ca) = ca {
        cmd.push_str(&format!(" --ca {}", shell_word(&ca.display().to_string())));
    }
    match token {
        TokenSource::File(path) => cmd.push_str(&format!(" --token-file {}", shell_word(&path.display().to_string()))),
        TokenSource::Given(_) => cmd.push_str(" --token-file FILE-WITH-THE-TOKEN"),
    }
    cmd.push_str(" --root DIR");
    cmd
}

/// A path quoted for a POSIX shell when it needs it.
fn shell_word(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+=:@%,".contains(&b)) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn the_next_command_names_address_ca_and_token() {
        let names: Vec<String> = ["localhost", "127.0.0.1", "::1", "proxy.example.com"].map(String::from).to_vec();
        let token = TokenSource::File("certs/token".into());
        let ca = Some(Path::new("certs/ca.pem"));
        assert_eq!(
            origin_command("127.0.0.1:1444".parse().expect("address"), &names, ca, &token),
            "c --proxy localhost:1444 --ca certs/ca.pem --token-file certs/token --root DIR"
        );
        let any: SocketAddr = "0.0.0.0:1444".parse().expect("address");
        assert!(origin_command(any, &names, ca, &token).starts_with("c --proxy proxy.example.com:1444 "));
        assert!(origin_command(any, &names[..3], None, &token).starts_with("c --proxy THIS-HOST:1444 --token-file"));
        let odd = TokenSource::File("my certs/token".into());
        assert!(origin_command(any, &names, None, &odd).contains("--token-file 'my certs/token'"));
    }
}
