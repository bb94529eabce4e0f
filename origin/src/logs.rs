//! The origin's rate-limited log lines: every warning a front-end client can cause once per
//! request (a local service that is down or misbehaves, a file that cannot be read) goes
//! through one of these, so a flood of requests cannot flood the log.

use common::ratelimit::LogLimiter;

/// Requests the local service (`--upstream`) failed, timed out or answered unusably.
pub static UPSTREAM: LogLimiter = LogLimiter::standard();
/// Files and folders under `--root` that could not be opened, read or listed.
pub static FILES: LogLimiter = LogLimiter::standard();
