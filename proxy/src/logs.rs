//! The proxy's rate-limited log lines, in one place so that metrics can count what they left
//! out without depending on the modules that write them.

use common::ratelimit::LogLimiter;

/// Stray or failed connections on the tunnel port.
pub static STRAY: LogLimiter = LogLimiter::standard();
/// Tunnel requests refused (wrong token, name not admitted, …).
pub static REJECTED: LogLimiter = LogLimiter::standard();
/// Failed `accept` calls.
pub static ACCEPT_FAILED: LogLimiter = LogLimiter::standard();
/// Connections refused at a per-client limit.
pub static REFUSED: LogLimiter = LogLimiter::standard();
/// Front-end requests the proxy answered itself with an error.
pub static NOT_FORWARDED: LogLimiter = LogLimiter::standard();
/// Origin responses aborted mid-stream.
pub static ABORTED: LogLimiter = LogLimiter::standard();

/// Lines left out by every limiter since start.
pub fn suppressed_total() -> u64 {
    [&STRAY, &REJECTED, &ACCEPT_FAILED, &REFUSED, &NOT_FORWARDED, &ABORTED].iter().map(|l| l.suppressed_total()).sum()
}
