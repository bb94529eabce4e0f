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
pub mod headers;
pub mod logging;
pub mod protocol;
pub mod ratelimit;
pub mod runtime;
pub mod secret;
pub mod shutdown;
pub mod tls;
pub mod tuning;
pub mod tunnel;

pub use secret::Secret;
