//! The tunnel's HTTP/2 settings, built in one place for both ends: the proxy runs the HTTP/2
//! client, the origin the server, and the limits each enforces must agree with what the other
//! may send (see [`crate::tuning`]).

use crate::tuning;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// The settings both ends share. hyper's client and server builders have no common trait,
/// so this applies the same calls to either.
macro_rules! shared_settings {
    ($builder:expr) => {
        $builder
            .timer(TokioTimer::new())
            .initial_stream_window_size(tuning::STREAM_WINDOW)
            .initial_connection_window_size(tuning::CONNECTION_WINDOW)
            .max_frame_size(tuning::MAX_FRAME_SIZE)
            .max_send_buf_size(tuning::MAX_SEND_BUFFER)
            .max_header_list_size(tuning::MAX_HEADER_LIST_SIZE)
            .max_local_error_reset_streams(None)
            .keep_alive_interval(tuning::KEEPALIVE_INTERVAL)
            .keep_alive_timeout(tuning::KEEPALIVE_TIMEOUT)
    };
}

/// The proxy's end: an HTTP/2 client over the upgraded tunnel connection.
pub fn client_builder() -> hyper::client::conn::http2::Builder<TokioExecutor> {
    let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
    shared_settings!(builder).max_concurrent_reset_streams(tuning::MAX_REMEMBERED_RESETS).keep_alive_while_idle(true);
    builder
}

/// The origin's end: an HTTP/2 server over its side of the tunnel.
pub fn server_builder() -> hyper::server::conn::http2::Builder<TokioExecutor> {
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    shared_settings!(builder)
        .max_concurrent_streams(tuning::MAX_CONCURRENT_STREAMS)
        .max_pending_accept_reset_streams(tuning::MAX_PENDING_ACCEPT_RESETS);
    builder
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bytes::Bytes;
    use http::{Request, Response};
    use http_body_util::{BodyExt, Empty, Full};
    use hyper_util::rt::TokioIo;
    use std::convert::Infallible;

    /// A client and server with the tunnel's settings over an in-memory pipe.
    async fn pair() -> hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                let size: usize = req.headers().values().map(|v| v.len()).sum();
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(size.to_string()))))
            });
            let _ = server_builder().serve_connection(TokioIo::new(server_io), service).await;
        });
        let (sender, conn) = client_builder().handshake(TokioIo::new(client_io)).await.unwrap();
        tokio::spawn(conn);
        sender
    }

    #[tokio::test]
    async fn the_largest_head_the_front_end_admits_crosses_even_in_the_worst_encoding() {
        let mut sender = pair().await;
        // Bytes 0x80-0xff take up to 30 bits each in HPACK's Huffman code.
        let worst = http::HeaderValue::from_bytes(&vec![0xff; tuning::MAX_REQUEST_HEAD - 100]).unwrap();
        let req = Request::get("http://origin/").header("x-worst", worst).body(Empty::new()).unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        // And the connection is still fine for the next request.
        let resp = sender.send_request(Request::get("http://origin/").body(Empty::new()).unwrap()).await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"0");
    }

    #[tokio::test]
    async fn thousands_of_abandoned_streams_do_not_end_the_connection() {
        let mut sender = pair().await;
        for _ in 0..3000 {
            let req = Request::get("http://origin/").body(Empty::new()).unwrap();
            let pending = tokio::spawn(sender.send_request(req));
            tokio::task::yield_now().await;
            pending.abort();
        }
        sender.ready().await.unwrap();
        let resp = sender.send_request(Request::get("http://origin/").body(Empty::new()).unwrap()).await.unwrap();
        assert_eq!(resp.status(), 200);
    }
}
