//! Timeouts, limits and HTTP/2 window sizes for the tunnel, in one place with the reasons for each value.

use std::time::Duration;

/// Per-stream receive window on the tunnel (both directions).
///
/// A stream can have at most this much unread data in flight, so one stream reaches at most
/// `STREAM_WINDOW / RTT`: 1 MiB over a 40 ms path is ~25 MiB/s (~200 Mbit/s), more than a
/// home uplink carries. It is also what a stalled front-end client (a paused video player)
/// pins per stream, in memory and in the shared connection window.
pub const STREAM_WINDOW: u32 = 1024 * 1024;

/// Connection-level receive window on the tunnel.
///
/// Every stream shares it, and a stream whose front-end client stopped reading keeps its
/// unread data -- up to a stream window -- counted against it. So it is sized by how many
/// readers may stall at once: 64 stream windows, so 63 paused players still leave a full
/// window for everybody else (the memory is only used while clients are stalled). We do not
/// use h2's adaptive (BDP) window: it raises every stream's window to the connection's size,
/// so a single stalled reader could stop the whole tunnel.
pub const CONNECTION_WINDOW: u32 = 64 * STREAM_WINDOW;

/// Largest DATA frame we accept. Twice h2's 16 KiB default, to halve per-frame work on bulk
/// transfers, but no more: each received frame is read into a fresh buffer (the previous one
/// is still queued for the front-end client), and at 64 KiB those buffers crossed glibc's
/// mmap threshold, so every frame cost a map, page faults and an unmap -- 15% of the proxy's
/// CPU on 64 KiB responses, and ~20% fewer of them per second.
pub const MAX_FRAME_SIZE: u32 = 32 * 1024;

/// How much a sender may queue per stream before waiting for the peer (h2's send buffer).
pub const MAX_SEND_BUFFER: usize = 1024 * 1024;

/// Concurrent streams the origin accepts on one tunnel; further requests wait at the proxy.
pub const MAX_CONCURRENT_STREAMS: u32 = 1024;

/// Streams the proxy may reset before the origin has accepted them, before the origin treats
/// it as a flood and closes the tunnel. h2's default (20) guards a public server against
/// "rapid reset" attacks; on the tunnel the peer is the authenticated proxy, and every
/// front-end client that disconnects with requests in flight makes it reset those streams.
/// With the default, one impatient client could take the tunnel down for everyone.
pub const MAX_PENDING_ACCEPT_RESETS: usize = 4 * MAX_CONCURRENT_STREAMS as usize;

/// Threads for blocking file I/O in the origin. Enough to keep a disk array busy; few enough
/// that a burst of requests cannot grow hundreds of threads that then fight for two cores.
pub const MAX_BLOCKING_THREADS: usize = 32;

/// HTTP/2 PING interval on an idle or busy tunnel; with [`KEEPALIVE_TIMEOUT`] a dead peer is
/// noticed within about ten seconds even when the TCP connection never reports an error.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// How long a PING may go unanswered before the tunnel is declared dead.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Each step of establishing a tunnel (TCP connect, TLS handshake, PUT/101 exchange, HTTP/2
/// preface) must finish within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A front-end client must send its request headers within this.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest header block (HTTP/2) we accept from a front-end client or over the tunnel.
pub const MAX_HEADER_LIST_SIZE: u32 = 64 * 1024;

/// How long shutdown waits for in-flight requests before closing anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
