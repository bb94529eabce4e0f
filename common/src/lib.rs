//! Shared pieces of revmux used by both the proxy (`p`) and the origin (`c`).
//!
//! Glossary, used the same way everywhere: the **proxy** is the public process `p`; an
//! **origin** is a process `c` that dials out to it; a **tunnel** is the one TLS connection an
//! origin keeps to the proxy, carrying HTTP/2; a **stream** is one HTTP/2 stream on a tunnel,
//! one per front-end request; a **front-end client** is whatever connects to the proxy's public
//! port (a browser, a media player, curl); a **route** is an entry of the proxy's routing
//! table and its **target** what answers it. An origin may run as several **instances** (a
//! pool). `docs/internals.md` has the whole glossary.

pub mod body;
pub mod certs;
pub mod cli;
pub mod coalesce;
pub mod h2body;
pub mod headers;
pub mod logging;
pub mod memory;
pub mod protocol;
pub mod ratelimit;
pub mod runtime;
pub mod secret;
pub mod shutdown;
pub mod tls;
pub mod tuning;
pub mod tunnel;
pub mod upload;

pub use secret::Secret;

/// The version both `--version`s print: the crate version, then the commit and its date when
/// built from a git checkout, e.g. "0.1.0 (abc1234 2026-11-22)" (see `common/build.rs`).
pub const VERSION: &str = env!("REVMUX_VERSION");

#[cfg(test)]
mod version_tests {
    #[test]
    fn version_starts_with_the_crate_version() {
        assert!(super::VERSION.starts_with(concat!(env!("CARGO_PKG_VERSION"), " (")), "{}", super::VERSION);
        assert!(super::VERSION.ends_with(')'), "{}", super::VERSION);
    }
}
