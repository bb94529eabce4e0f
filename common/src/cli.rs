//! Command-line conventions shared by `p` and `c`: usage errors exit with status 64 (EX_USAGE)
//! and name the flag at fault; listen addresses written the ways people write them.

use clap::Parser;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

/// Exit status for a bad command line or a bad flag value (sysexits.h EX_USAGE).
pub const EX_USAGE: i32 = 64;

/// Parse the command line; `--help` and `--version` exit 0, anything wrong exits 64.
pub fn parse_or_exit<T: Parser>() -> T {
    match T::try_parse() {
        Ok(args) => args,
        Err(err) => {
            let code = if err.use_stderr() { EX_USAGE } else { 0 };
            // Printing can only fail if stderr is gone; the exit status still says what happened.
            let _ = err.print();
            std::process::exit(code);
        }
    }
}

/// Report a flag whose value parsed but cannot be used, and exit 64.
/// A [`UsageError`] with no flag to blame (see [`missing`]) prints its message alone.
pub fn usage_error(flag: &str, message: impl std::fmt::Display) -> ! {
    if flag.is_empty() {
        eprintln!("error: {message}");
    } else {
        eprintln!("error: invalid value for {flag}: {message}");
    }
    std::process::exit(EX_USAGE);
}

/// A flag whose value cannot be used, and why; `main` reports it and exits 64.
#[derive(Debug)]
pub struct UsageError {
    pub flag: &'static str,
    pub message: String,
}

pub fn usage(flag: &'static str, message: impl std::fmt::Display) -> UsageError {
    UsageError { flag, message: message.to_string() }
}

/// Something missing that no single flag is wrong about (e.g. the proxy has not created its
/// files yet); the message says what to do.
pub fn missing(message: impl std::fmt::Display) -> UsageError {
    UsageError { flag: "", message: message.to_string() }
}

/// The token given explicitly with `--token` or `--token-file`, if either was.
pub fn explicit_token(
    token: Option<&str>,
    token_file: Option<&std::path::Path>,
) -> Result<Option<crate::Secret>, UsageError> {
    match (token, token_file) {
        (Some(t), _) if t.trim().is_empty() => Err(usage("--token", "the token is empty")),
        (Some(t), _) => Ok(Some(crate::Secret::new(t.trim()))),
        (None, Some(path)) => crate::certs::read_token_file(path).map(Some).map_err(|e| usage("--token-file", e)),
        (None, None) => Ok(None),
    }
}

/// How a listen flag may be written, for error messages.
pub const LISTEN_EXAMPLES: &str =
    "write it like 8080 or :8080 (127.0.0.1), localhost:8080, 0.0.0.0:8080 (every IPv4 interface), [::]:8080 or [::1]:8080";

/// Parse a listen address (the value parser of `--listen`, `--tunnel-listen`, `--admin-listen`):
///
/// - `PORT` or `:PORT`: the loopback address 127.0.0.1. A bare port never opens a port to
///   the network by accident; write `0.0.0.0:PORT` or `[::]:PORT` for every interface.
/// - `IP:PORT`, `[IPv6]:PORT`: as written.
/// - `NAME:PORT`: the name resolved now (e.g. `localhost`); its first IPv4 address, else its
///   first address.
pub fn listen_addr(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    let bad = |why: String| format!("{why}; {LISTEN_EXAMPLES}");
    if s.is_empty() {
        return Err(bad("empty address".into()));
    }
    let port_only = s.strip_prefix(':').unwrap_or(s);
    if port_only.bytes().all(|b| b.is_ascii_digit()) {
        let port = port(port_only).map_err(bad)?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let Some((host, port_text)) = s.rsplit_once(':') else {
        return Err(bad(format!("{s:?} has no port")));
    };
    let port = port(port_text).map_err(bad)?;
    if host.starts_with('[') || host.contains(':') {
        return Err(bad(format!("{host:?} is not an IPv6 address in brackets")));
    }
    if host.is_empty() || !host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_') {
        return Err(bad(format!("{host:?} is not a host name or IP address")));
    }
    let found: Vec<SocketAddr> =
        (host, port).to_socket_addrs().map_err(|e| bad(format!("cannot resolve {host:?}: {e}")))?.collect();
    found
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| found.first())
        .copied()
        .ok_or_else(|| bad(format!("{host:?} resolves to no address")))
}

fn port(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(p) => Ok(p),
        Err(_) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
            Err(format!("port {text} is out of range (0-65535)"))
        }
        Err(_) => Err(format!("{text:?} is not a port number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> String {
        listen_addr(s).unwrap_or_else(|e| panic!("{s}: {e}")).to_string()
    }

    #[test]
    fn listen_addresses_people_write() {
        assert_eq!(ok("8080"), "127.0.0.1:8080");
        assert_eq!(ok(":8080"), "127.0.0.1:8080");
        assert_eq!(ok(" 0 "), "127.0.0.1:0");
        assert_eq!(ok("0.0.0.0:443"), "0.0.0.0:443");
        assert_eq!(ok("192.0.2.7:1444"), "192.0.2.7:1444");
        assert_eq!(ok("[::]:1443"), "[::]:1443");
        assert_eq!(ok("[::1]:1445"), "[::1]:1445");
        let local = listen_addr("localhost:8080").expect("localhost resolves");
        assert!(local.ip().is_loopback() && local.port() == 8080, "{local}");
    }

    #[test]
    fn bad_listen_addresses_say_how_to_write_one() {
        for bad in ["", "http", "localhost", "host:http", "1.2.3.4:", "70000", ":70000", "::1:80", "[::1]", "a b:80"] {
            let err = listen_addr(bad).expect_err(bad);
            assert!(err.contains("write it like 8080"), "{bad:?}: {err}");
        }
        assert!(listen_addr("70000").expect_err("range").contains("out of range"));
        assert!(listen_addr("no-such-host.invalid:80").expect_err("unknown").contains("cannot resolve"));
    }
}
