//! The origin's command line (every flag also read from a `REVMUX_…` environment variable) and
//! its resolution: where the proxy is, how to trust it, the token, and what to serve.

use crate::files::{FileOptions, FileServer};
use crate::upstream::Upstream;
use clap::Parser;
use common::certs;
use common::logging::LogFormat;
use common::protocol;
use common::tls::Trust;
use common::Secret;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "c",
    version = common::VERSION,
    about = "revmux origin: makes this machine's files or a local app reachable through a revmux proxy",
    long_about = "revmux origin: makes this machine's files or a local app reachable through a revmux proxy.\n\n\
        It dials OUT to the proxy's tunnel port over TLS (so it works behind NAT and firewalls), \
        authenticates with the token, and answers every front-end request the proxy forwards: \
        from a directory (--root, the default) or by passing it to a local HTTP service \
        (--upstream). It reconnects by itself whenever the tunnel drops."
)]
pub struct Cli {
    /// The proxy's tunnel address, HOST:PORT.
    #[arg(long, env = "REVMUX_PROXY", value_name = "HOST:PORT", default_value = "localhost:1444")]
    pub proxy: String,

    /// Directory to serve (listings, media types, ranges, conditional requests).
    #[arg(long, env = "REVMUX_ROOT", value_name = "DIR", default_value = ".", conflicts_with = "upstream")]
    pub root: PathBuf,

    /// Also serve and list dot-files and dot-directories (.git, .env, …), which are 404 by
    /// default. Directories holding key material (a file named token or *-key.pem) stay hidden.
    #[arg(long, env = "REVMUX_SHOW_HIDDEN", conflicts_with = "upstream")]
    pub show_hidden: bool,

    /// Instead of a directory, forward every request to this local HTTP service, e.g. http://127.0.0.1:8096.
    #[arg(long, env = "REVMUX_UPSTREAM", value_name = "URL")]
    pub upstream: Option<String>,

    /// This origin's name at the proxy (default: the host name, lower-cased).
    #[arg(long, env = "REVMUX_NAME", value_name = "NAME")]
    pub name: Option<String>,

    /// Token the proxy expects. Prefer --token-file: a command line is visible to other users.
    #[arg(long, env = "REVMUX_TOKEN", value_name = "TOKEN", hide_env_values = true, conflicts_with = "token_file")]
    pub token: Option<String>,

    /// File holding the token. Default: <certs-dir>/token if it exists.
    #[arg(long, env = "REVMUX_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// CA certificate (PEM) to verify the proxy with. Default: <certs-dir>/ca.pem if it exists,
    /// else the system's trusted roots (for a proxy with a real certificate).
    #[arg(long, env = "REVMUX_CA", value_name = "PEM", conflicts_with = "insecure")]
    pub ca: Option<PathBuf>,

    /// Do not verify the proxy's certificate. Anyone on the network path can then read and
    /// change everything; for experiments only.
    #[arg(long, env = "REVMUX_INSECURE")]
    pub insecure: bool,

    /// Where to look for the proxy's ca.pem and token when --ca / --token are not given.
    #[arg(long, env = "REVMUX_CERTS_DIR", value_name = "DIR", default_value = "certs")]
    pub certs_dir: PathBuf,

    /// Worker threads (0: one per two CPU cores, at least one; see BENCHMARKS.md). One worker
    /// runs a single-threaded scheduler. Compression runs on threads of its own (one per core,
    /// started with the first compressed answer), listings and file reads on a blocking pool.
    #[arg(long, env = "REVMUX_THREADS", value_name = "N", default_value_t = 0)]
    pub threads: usize,

    /// Log line format.
    #[arg(long, env = "REVMUX_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
}

/// What the origin answers tunnel streams with.
#[derive(Clone, Debug)]
pub enum App {
    Files(FileServer),
    Upstream(Box<Upstream>),
}

/// Where the proxy is.
#[derive(Debug, Clone)]
pub struct ProxyAddr {
    /// `host:port` as given, for connecting and for the `Host` header.
    pub authority: String,
    /// The host part, as the TLS server name (brackets removed from IPv6 literals).
    pub host: String,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub proxy: ProxyAddr,
    pub trust: Trust,
    pub token: Secret,
    pub name: String,
    /// This process's random instance id, sent with every tunnel request: the proxy tells a
    /// reconnect of this process from another process with the same name (a pool).
    pub instance: String,
    pub app: App,
    pub notes: Vec<String>,
}

use common::cli::usage;
pub use common::cli::UsageError;

pub fn parse_proxy_addr(s: &str) -> Result<ProxyAddr, String> {
    let (host, port) = s.rsplit_once(':').ok_or_else(|| format!("{s:?} has no port; use HOST:PORT"))?;
    port.parse::<u16>().map_err(|_| format!("{port:?} is not a port number"))?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if host.is_empty() {
        return Err(format!("{s:?} has no host"));
    }
    if rustls_pki_types::ServerName::try_from(host).is_err() {
        return Err(format!("{host:?} is not a host name or IP address"));
    }
    Ok(ProxyAddr { authority: s.to_owned(), host: host.to_owned() })
}

pub fn resolve(cli: &Cli) -> Result<Settings, UsageError> {
    let mut notes = Vec::new();
    let proxy = parse_proxy_addr(&cli.proxy).map_err(|e| usage("--proxy", e))?;
    let name = match &cli.name {
        Some(n) => {
            protocol::validate_origin_name(n).map_err(|e| usage("--name", e))?;
            n.clone()
        }
        None => protocol::origin_name_from_host(&gethostname::gethostname().to_string_lossy()),
    };
    let default_ca = cli.certs_dir.join(certs::CA_CERT_FILE);
    let trust = if cli.insecure {
        Trust::Insecure
    } else if let Some(ca) = &cli.ca {
        if !ca.is_file() {
            return Err(usage("--ca", format!("{} is not a readable file", ca.display())));
        }
        Trust::CaFile(ca.clone())
    } else if default_ca.is_file() {
        notes.push(format!("verifying the proxy with the CA in {}", default_ca.display()));
        Trust::CaFile(default_ca)
    } else {
        notes.push(format!("no {} found: verifying the proxy with the system's trusted roots", default_ca.display()));
        Trust::SystemRoots
    };
    let token = match common::cli::explicit_token(cli.token.as_deref(), cli.token_file.as_deref())? {
        Some(token) => token,
        None => {
            let path = cli.certs_dir.join(certs::TOKEN_FILE);
            if !path.is_file() {
                return Err(common::cli::missing(no_token_message(&cli.certs_dir, &proxy.authority)));
            }
            notes.push(format!("using the token in {}", path.display()));
            certs::read_token_file(&path).map_err(|e| usage("--certs-dir", e))?
        }
    };
    let app = match &cli.upstream {
        Some(url) => App::Upstream(Box::new(Upstream::new(url).map_err(|e| usage("--upstream", e))?)),
        None => {
            let options = FileOptions { hide: Some(cli.certs_dir.clone()), show_hidden: cli.show_hidden };
            let files = FileServer::with_options(&cli.root, &options).map_err(|e| usage("--root", e))?;
            if cli.show_hidden {
                notes.push("--show-hidden: dot-files and dot-directories are served and listed".to_owned());
            }
            App::Files(files)
        }
    };
    Ok(Settings { proxy, trust, token, name, instance: protocol::new_instance_id(), app, notes })
}

/// What to do when there is no token: p creates it (and the CA) on its first start.
pub fn no_token_message(certs_dir: &std::path::Path, proxy: &str) -> String {
    let token = certs_dir.join(certs::TOKEN_FILE);
    let ca = certs_dir.join(certs::CA_CERT_FILE);
    format!(
        "no token: c looked for {token} (from --certs-dir) and found none, and no --token-file was given.\n\
         Start p first: on its first start it creates {token} and {ca} in its --certs-dir. Run c in the same \
         directory as p, or copy both files here and pass --token-file FILE --ca FILE.\n\
         c then dials the proxy's tunnel port at {proxy} (change it with --proxy or REVMUX_PROXY).",
        token = token.display(),
        ca = ca.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_token_says_start_p_first_and_where() {
        let msg = no_token_message(std::path::Path::new("certs"), "localhost:1444");
        for part in ["Start p first", "certs/token", "certs/ca.pem", "--token-file", "localhost:1444", "--proxy"] {
            assert!(msg.contains(part), "{part:?} missing from {msg}");
        }
        assert!(!msg.contains("invalid value"));
    }

    #[test]
    fn proxy_addresses() {
        let a = parse_proxy_addr("proxy.example.com:1444").expect("valid");
        assert_eq!((a.host.as_str(), a.authority.as_str()), ("proxy.example.com", "proxy.example.com:1444"));
        assert_eq!(parse_proxy_addr("[::1]:1444").expect("valid").host, "::1");
        assert!(parse_proxy_addr("proxy.example.com").is_err());
        assert!(parse_proxy_addr("proxy:http").is_err());
        assert!(parse_proxy_addr(":1444").is_err());
    }

    #[test]
    fn show_hidden_is_a_files_flag() {
        let cli = Cli::try_parse_from(["c", "--show-hidden", "--root", "/srv"]).expect("valid");
        assert!(cli.show_hidden);
        assert!(!Cli::try_parse_from(["c"]).expect("valid").show_hidden);
        assert!(Cli::try_parse_from(["c", "--show-hidden", "--upstream", "http://127.0.0.1:8096"]).is_err());
    }
}
