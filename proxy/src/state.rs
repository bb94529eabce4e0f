//! The state every connection of one proxy shares: connected origins, the routing table and
//! credentials (each swapped whole on reload), TLS settings, limits and counters.

use crate::clients::{ConnLimiter, StreamSlots};
use crate::credentials::Credentials;
use crate::metrics::Latencies;
use crate::origins::Origins;
use crate::route::Table;
use crate::stall::Stalls;
use crate::status::Counters;
use arc_swap::{ArcSwap, ArcSwapOption};
use common::{tuning, Secret};
use rustls::ServerConfig;
use std::sync::Arc;
use std::time::Duration;

/// Deadlines and shares (flags; `common::tuning` has the reasons).
#[derive(Debug, Clone)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub send_timeout: Duration,
    pub response_timeout: Duration,
    pub max_connections_per_client: usize,
    pub max_streams_per_client: usize,
    /// How long a request waits for one of its client's stream slots before `503`.
    pub client_queue_timeout: Duration,
    /// Requests that may wait for a stream of one origin beyond what its tunnels carry at
    /// once; past it, `503` with `Retry-After`.
    pub max_waiting_per_origin: usize,
    /// Streams one tunnel carries at once (what the origin grants).
    pub tunnel_streams: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: tuning::HEADER_READ_TIMEOUT,
            idle_timeout: tuning::IDLE_TIMEOUT,
            send_timeout: tuning::SEND_TIMEOUT,
            response_timeout: tuning::RESPONSE_TIMEOUT,
            max_connections_per_client: tuning::MAX_CONNECTIONS_PER_CLIENT,
            max_streams_per_client: tuning::MAX_STREAMS_PER_CLIENT,
            client_queue_timeout: tuning::CLIENT_QUEUE_TIMEOUT,
            max_waiting_per_origin: tuning::MAX_WAITING_PER_ORIGIN,
            tunnel_streams: tuning::MAX_CONCURRENT_STREAMS as usize,
        }
    }
}

/// TLS settings of the listeners (re-read on reload).
#[derive(Debug, Clone)]
pub struct Tls {
    pub tunnel: Arc<ServerConfig>,
    pub frontend: Option<Arc<ServerConfig>>,
}

/// State shared by every connection of one proxy.
#[derive(Debug)]
pub struct Proxy {
    pub origins: Origins,
    pub credentials: ArcSwap<Credentials>,
    pub table: ArcSwap<Table>,
    pub tls: ArcSwapOption<Tls>,
    pub counters: Counters,
    /// Time to the response head, per origin and status class.
    pub latencies: Latencies,
    pub limits: Limits,
    /// Requests in flight per client address.
    pub slots: Arc<StreamSlots>,
    /// Responses in flight, watched for stalled front-end clients.
    pub stalls: Arc<Stalls>,
    /// Connections per client address on each listener.
    pub per_client: PerClient,
    /// The front end's bound address and scheme (`http`/`https`), once it listens: origins
    /// are told the URLs they are reachable at.
    pub front_end: std::sync::OnceLock<(std::net::SocketAddr, &'static str)>,
}

/// The per-client connection limiters of the three listeners.
#[derive(Debug)]
pub struct PerClient {
    pub frontend: Arc<ConnLimiter>,
    pub tunnel: Arc<ConnLimiter>,
    pub admin: Arc<ConnLimiter>,
}

impl Proxy {
    /// Zero-config: one token for every origin name, the default route.
    pub fn new(token: Secret) -> Arc<Self> {
        Self::with_limits(token, Limits::default())
    }

    pub fn with_limits(token: Secret, limits: Limits) -> Arc<Self> {
        Self::with_config(Credentials::single(token), Table::zero_config(), limits)
    }

    pub fn with_config(credentials: Credentials, table: Table, limits: Limits) -> Arc<Self> {
        Arc::new(Proxy {
            origins: Origins::new(),
            credentials: ArcSwap::from_pointee(credentials),
            table: ArcSwap::from_pointee(table),
            tls: ArcSwapOption::empty(),
            counters: Counters::default(),
            latencies: Latencies::default(),
            slots: StreamSlots::new(limits.max_streams_per_client),
            stalls: Stalls::new(limits.send_timeout),
            per_client: PerClient {
                frontend: ConnLimiter::new(limits.max_connections_per_client),
                tunnel: ConnLimiter::new(tuning::MAX_TUNNEL_CONNECTIONS_PER_CLIENT),
                admin: ConnLimiter::new(tuning::MAX_ADMIN_CONNECTIONS_PER_CLIENT),
            },
            front_end: std::sync::OnceLock::new(),
            limits,
        })
    }
}
