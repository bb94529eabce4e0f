//! Timeouts, limits and HTTP/2 window sizes, in one place with the reasons for each value.
//!
//! # How one front-end client is kept from hurting the others
//!
//! Every front-end request is one stream on its origin's tunnel, and the streams of a tunnel
//! share three things: the HTTP/2 connection window, the origin's stream slots and the
//! proxy's memory. HTTP/2 counts a stream's received-but-unread data against the connection
//! window until the front-end client takes it, so a client that stops reading holds up to one
//! [`STREAM_WINDOW`] of it. The defence has four layers:
//!
//! 1. **Headroom.** The connection window ([`CONNECTION_WINDOW`], 128 streams' worth) is far
//!    larger than what any one client address may hold: at most [`MAX_STREAMS_PER_CLIENT`]
//!    streams in flight per address (32 MiB, a quarter). Further requests from that address
//!    wait for one of its own streams to finish, and first evict its own longest-stalled one.
//! 2. **Eviction of stalled streams.** A stream whose front-end client has not taken the data
//!    offered to it for [`STALL_AFTER`] counts as stalled. Across all addresses, stalled
//!    streams may hold at most [`MAX_STALLED_BYTES_PER_TUNNEL`] of a tunnel's window (another
//!    quarter), counted in the bytes each actually holds; past that the longest-stalled are
//!    reset, which returns their window at once. A stalled stream holding little (a blocked
//!    event stream, a long-poll) costs little and is not reset to make room.
//!    A paused video player is only evicted under that pressure; it re-requests with a range
//!    when it resumes, as players do after any dropped connection.
//! 3. **Send timeout.** A stream stalled for the send timeout (60 s, as nginx's `send_timeout`)
//!    is reset regardless, and a front-end connection whose writes make no progress for that
//!    long, or whose every request has been evicted, is closed.
//! 4. **A memory budget that follows from it.** The proxy never holds more response data per
//!    tunnel than the connection window (128 MiB), and holds per front-end connection at most
//!    [`FRONTEND_BUFFER`] of request head and queued response.
//!
//! So at any moment at least half of every tunnel's window is free for clients that read.
//! Per-stream proxy-side buffering would not help on its own: h2 releases stream and connection
//! window together, so data a stalled client has not taken pins the shared window wherever it
//! is buffered; only resetting the stream gives it back.

use std::time::Duration;

/// Per-stream receive window on the tunnel (both directions).
///
/// A stream can have at most this much unread data in flight, so one stream reaches at most
/// `STREAM_WINDOW / RTT`: 1 MiB over a 40 ms path is ~25 MiB/s (~200 Mbit/s), more than a
/// home uplink carries. It is also what a stalled front-end client pins, per stream.
pub const STREAM_WINDOW: u32 = 1024 * 1024;

/// Connection-level receive window on the tunnel: 128 stream windows. Only used while data is
/// in flight; see the module documentation for why it must be much larger than the share any
/// one client or the stalled streams together may hold. We do not use h2's adaptive (BDP)
/// window: it raises every stream's window to the connection's size, so a single stalled reader
/// could stop the whole tunnel.
pub const CONNECTION_WINDOW: u32 = 128 * STREAM_WINDOW;

/// Largest DATA frame we accept. Twice h2's 16 KiB default, to halve per-frame work on bulk
/// transfers, but no more: each received frame is read into a fresh buffer (the previous one
/// is still queued for the front-end client), and at 64 KiB those buffers crossed glibc's
/// mmap threshold, so every frame cost a map, page faults and an unmap -- 15% of the proxy's
/// CPU on 64 KiB responses, and ~20% fewer of them per second.
pub const MAX_FRAME_SIZE: u32 = 32 * 1024;

/// How much a sender may queue per stream before waiting for the peer (h2's send buffer). Two
/// of the origin's 128 KiB file chunks: enough to keep a stream's data flowing while the
/// connection writes, small enough that 1,000 downloads do not queue a gigabyte.
pub const MAX_SEND_BUFFER: usize = 256 * 1024;

/// Concurrent streams the origin accepts on one tunnel; further requests wait at the proxy.
/// Large enough for 10,000 idle long-polls (chat, notifications, event streams) on one tunnel:
/// an idle stream costs a few hundred bytes of HTTP/2 state at each end, and the bytes in
/// flight stay bounded by the connection window whatever the number of streams.
pub const MAX_CONCURRENT_STREAMS: u32 = 16 * 1024;

/// Streams the proxy may reset before the origin has accepted them, before the origin treats
/// it as a flood and closes the tunnel. h2's default (20) guards a public server against
/// "rapid reset" attacks; on the tunnel the peer is the authenticated proxy, and every
/// front-end client that disconnects with requests in flight makes it reset those streams.
pub const MAX_PENDING_ACCEPT_RESETS: usize = 4 * MAX_CONCURRENT_STREAMS as usize;

/// Recently reset streams each tunnel end remembers (h2's default is 50). DATA still arriving
/// for a stream reset a moment ago is then recognised and dropped quietly; for a forgotten one
/// h2 answers with another reset. Abandoned downloads make such resets routine, so both ends
/// also lift h2's cap on resets they send themselves (`max_local_error_reset_streams`, 1024 a
/// connection by default, never decremented): past it h2 ends the connection, which would let
/// front-end clients that hang up take a tunnel down.
pub const MAX_REMEMBERED_RESETS: usize = MAX_CONCURRENT_STREAMS as usize;

/// Largest header block (HTTP/2) either end of a tunnel accepts. h2 ends the whole connection
/// when a block decodes to more than four times this or needs more CONTINUATION frames than
/// `max(5, this / MAX_FRAME_SIZE * 1.25)`; so everything that can reach the tunnel is limited
/// well below it, at the front end ([`MAX_REQUEST_HEAD`]) and at the origin's upstream client.
pub const MAX_HEADER_LIST_SIZE: u32 = 64 * 1024;

/// Largest request head a front-end client may send: HTTP/1.1 request line and headers in
/// bytes, or an HTTP/2 header list as h2 counts it. Larger gets 431 from the proxy and never
/// reaches a tunnel. Half the tunnel's limit, leaving room for the `X-Forwarded-*` headers the
/// proxy adds, and small enough that even a head of the worst bytes for HPACK's Huffman code
/// (30 bits each) fits in four 32 KiB frames.
pub const MAX_REQUEST_HEAD: usize = 32 * 1024;

/// Read and write buffer limit of an HTTP/1.1 front-end connection: bounds what an unfinished
/// request head costs (hyper would otherwise buffer ~400 KB) and how much response it queues.
pub const FRONTEND_BUFFER: usize = 48 * 1024;

/// Receive window of an HTTP/2 front-end connection: the most request body (uploads) the proxy
/// buffers for one connection while the origin is not reading yet. Each stream still gets a
/// full [`STREAM_WINDOW`], so one upload runs at full speed.
pub const FRONTEND_H2_CONNECTION_WINDOW: u32 = 2 * STREAM_WINDOW;

/// Most streams one HTTP/2 front-end connection may open at once (nginx: 128).
pub const FRONTEND_MAX_CONCURRENT_STREAMS: u32 = 128;

/// Threads for blocking file I/O in the origin. Enough to keep a disk array busy; few enough
/// that a burst of requests cannot grow hundreds of threads that then fight for two cores.
pub const MAX_BLOCKING_THREADS: usize = 32;

/// A tunnel end that has heard nothing from the other for this long sends an HTTP/2 PING; with
/// [`KEEPALIVE_TIMEOUT`] a dead peer is noticed within ten to fifteen seconds even when the TCP
/// connection never reports an error (`tunnel::keepalive`).
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// How long nothing at all may arrive after a PING before the tunnel is declared dead.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Each step of establishing a tunnel (TCP connect, TLS handshake, PUT/101 exchange, HTTP/2
/// preface) must finish within this; so must a front-end client's TLS handshake and its first
/// bytes (which decide between HTTP/1.1 and HTTP/2).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A front-end client must send each request head within this (default of `--header-timeout`).
/// For HTTP/1.1 it also bounds the wait for the next request on a kept-alive connection.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A front-end connection with no request in flight is closed after this (`--idle-timeout`).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A front-end client that takes no data for this long is dropped (`--send-timeout`).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// An origin must start answering (response headers) within this of the request's end; an
/// upload may take as long as it keeps moving (`--response-timeout`, `common::upload`).
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// A stream whose front-end client has not taken what was offered for this long is stalled.
/// Long enough that a reading client on a congested link is never taken for one; short enough
/// that stalled streams over the budget are reclaimed before anybody waits a second.
pub const STALL_AFTER: Duration = Duration::from_millis(500);

/// Window that stalled streams on one tunnel may hold, all together, before the
/// longest-stalled are reset: a quarter of the connection window (32 streams' full windows).
pub const MAX_STALLED_BYTES_PER_TUNNEL: u64 = CONNECTION_WINDOW as u64 / 4;

/// Requests one client address may have in flight at once (`--max-streams-per-client`):
/// a quarter of a tunnel's window. A browser's page of thumbnails fits; more wait.
pub const MAX_STREAMS_PER_CLIENT: usize = 32;

/// Front-end connections one client address may hold (`--max-connections-per-client`).
pub const MAX_CONNECTIONS_PER_CLIENT: usize = 128;

/// Connections on the tunnel port one address may hold at once. Origins hold one each; a
/// pool behind one NAT address a few.
pub const MAX_TUNNEL_CONNECTIONS_PER_CLIENT: usize = 16;

/// Connections on the admin port one address may hold at once.
pub const MAX_ADMIN_CONNECTIONS_PER_CLIENT: usize = 8;

/// Requests that may wait at the proxy for a stream of one origin, beyond what its tunnels
/// carry at once (tunnels × [`MAX_CONCURRENT_STREAMS`]); past it, `503` with `Retry-After`.
/// h2 itself would queue without limit (`SendRequest::poll_ready` is ready unless closed).
/// A burst is absorbed, a flood is refused at once instead of piling up.
pub const MAX_WAITING_PER_ORIGIN: usize = 1024;

/// How often the proxy looks at its config file's modification time (reload on change).
pub const CONFIG_POLL: Duration = Duration::from_secs(1);

/// How long a request may wait for one of its client's stream slots before 503
/// (`--client-queue-timeout`).
pub const CLIENT_QUEUE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long shutdown waits for in-flight requests before closing anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

// The limits must agree end to end: what the front end admits must fit through the tunnel.
const _: () = assert!(MAX_REQUEST_HEAD * 2 <= MAX_HEADER_LIST_SIZE as usize);
const _: () = assert!(MAX_REQUEST_HEAD < FRONTEND_BUFFER);
const _: () = assert!(MAX_STREAMS_PER_CLIENT as u32 * STREAM_WINDOW <= CONNECTION_WINDOW / 4);
const _: () = assert!(MAX_STALLED_BYTES_PER_TUNNEL <= CONNECTION_WINDOW as u64 / 4);
