//! The tunnel's HTTP/2 settings, built in one place for both ends: the proxy runs the HTTP/2
//! client (with `h2` directly), the origin the server (hyper's), and the limits each enforces
//! must agree with what the other may send (see [`crate::tuning`]).

use crate::tuning;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// The proxy's end: an `h2` client over the upgraded tunnel connection. Keep-alive pings are
/// the caller's to send ([`tuning::KEEPALIVE_INTERVAL`]); hyper's server answers them.
pub fn client_builder() -> h2::client::Builder {
    let mut builder = h2::client::Builder::new();
    builder
        .initial_window_size(tuning::STREAM_WINDOW)
        .initial_connection_window_size(tuning::CONNECTION_WINDOW)
        .max_frame_size(tuning::MAX_FRAME_SIZE)
        .max_send_buffer_size(tuning::MAX_SEND_BUFFER)
        .max_header_list_size(tuning::MAX_HEADER_LIST_SIZE)
        .max_local_error_reset_streams(None)
        .max_concurrent_reset_streams(tuning::MAX_REMEMBERED_RESETS)
        // Until the origin's SETTINGS arrive, as many streams as any server allows.
        .initial_max_send_streams(100)
        .enable_push(false);
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
        .max_header_list_size(tuning::MAX_HEADER_LIST_SIZE)
        .max_local_error_reset_streams(None)
        .keep_alive_interval(tuning::KEEPALIVE_INTERVAL)
        .keep_alive_timeout(tuning::KEEPALIVE_TIMEOUT)
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
    use http_body_util::Full;
    use hyper_util::rt::TokioIo;
    use std::convert::Infallible;

    /// A client and server with the tunnel's settings over an in-memory pipe.
    async fn pair() -> h2::client::SendRequest<Bytes> {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                let size: usize = req.headers().values().map(|v| v.len()).sum();
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(size.to_string()))))
            });
            let _ = server_builder().serve_connection(TokioIo::new(server_io), service).await;
        });
        let (sender, conn) = client_builder().handshake(client_io).await.unwrap();
        tokio::spawn(conn);
        sender
    }

    async fn get(sender: &h2::client::SendRequest<Bytes>, req: Request<()>) -> (http::StatusCode, Bytes) {
        let mut sender = sender.clone().ready().await.unwrap();
        let (response, _) = sender.send_request(req, true).unwrap();
        let resp = response.await.unwrap();
        let status = resp.status();
        let mut body = resp.into_body();
        let mut all = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
            all.extend_from_slice(&chunk);
        }
        (status, Bytes::from(all))
    }

    #[tokio::test]
    async fn the_largest_head_the_front_end_admits_crosses_even_in_the_worst_encoding() {
        let sender = pair().await;
        // Bytes 0x80-0xff take up to 30 bits each in HPACK's Huffman code.
        let worst = http::HeaderValue::from_bytes(&vec![0xff; tuning::MAX_REQUEST_HEAD - 100]).unwrap();
        let req = Request::get("http://origin/").header("x-worst", worst).body(()).unwrap();
        assert_eq!(get(&sender, req).await.0, 200);
        // And the connection is still fine for the next request.
        let (status, body) = get(&sender, Request::get("http://origin/").body(()).unwrap()).await;
        assert_eq!(status, 200);
        assert_eq!(&body[..], b"0");
    }

    #[tokio::test]
    async fn thousands_of_abandoned_streams_do_not_end_the_connection() {
        let sender = pair().await;
        for _ in 0..3000 {
            let mut ready = sender.clone().ready().await.unwrap();
            let (response, _) = ready.send_request(Request::get("http://origin/").body(()).unwrap(), true).unwrap();
            let pending = tokio::spawn(response);
            tokio::task::yield_now().await;
            pending.abort();
        }
        let (status, _) = get(&sender, Request::get("http://origin/").body(()).unwrap()).await;
        assert_eq!(status, 200);
    }
}
