//! The tunnel's HTTP/2 settings, built in one place for both ends: the proxy runs the HTTP/2
//! client, the origin the server, and the limits each enforces must agree with what the other
//! may send (see [`crate::tuning`]).

use crate::tuning;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// The proxy's end: an HTTP/2 client over the upgraded tunnel connection.
pub fn client_builder() -> hyper::client::conn::http2::Builder<TokioExecutor> {
    let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .initial_stream_window_size(tuning::STREAM_WINDOW)
        .initial_connection_window_size(tuning::CONNECTION_WINDOW)
        .max_frame_size(tuning::MAX_FRAME_SIZE)
        .max_send_buf_size(tuning::MAX_SEND_BUFFER)
        .max_header_list_size(tuning::MAX_HEADER_LIST_SIZE)
        .max_concurrent_reset_streams(tuning::MAX_REMEMBERED_RESETS)
        .max_local_error_reset_streams(None)
        .keep_alive_interval(tuning::KEEPALIVE_INTERVAL)
        .keep_alive_timeout(tuning::KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    builder
}

/// The origin's end: an HTTP/2 server over its side of the tunnel.
pub fn server_builder() -> hyper::server::conn::http2::Builder<TokioExecutor> {
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .initial_stream_window_size(tuning::STREAM_WINDOW)
        .initial_connection_window_size(tuning::CONNECTION_WINDOW)
        .max_frame_size(tuning::MAX_FRAME_SIZE)
        .max_send_buf_size(tuning::MAX_SEND_BUFFER)
        .max_concurrent_streams(tuning::MAX_CONCURRENT_STREAMS)
        .max_pending_accept_reset_streams(tuning::MAX_PENDING_ACCEPT_RESETS)
        .max_local_error_reset_streams(None)
        .max_header_list_size(tuning::MAX_HEADER_LIST_SIZE)
        .keep_alive_interval(tuning::KEEPALIVE_INTERVAL)
        .keep_alive_timeout(tuning::KEEPALIVE_TIMEOUT);
    builder
}
