//! The tunnel handshake over in-memory pipes with 8-byte buffers on both sides: code that
//! assumes one read returns a whole message fails here at once. Also the rejections each end
//! sees (401, 403) and origins that send no instance id.
//!
//! A whole tunnel (HTTP/2 after the upgrade) cannot run over an 8-byte *buffer*: both h2 ends
//! flush their opening SETTINGS before reading anything, so each waits for the other to read
//! (TCP's kernel buffers hide this). The end-to-end test therefore moves at most 8 bytes per
//! read and per write over a pipe with room for those frames.

#![allow(clippy::unwrap_used)]

mod kit;

use common::Secret;
use http::StatusCode;
use kit::*;
use origin::dial::{handshake, DialError, Hello};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio_util::sync::CancellationToken;

/// Run the proxy's side of one handshake over an 8-byte pipe; return the origin's end.
fn pipe(p: &TestProxy) -> DuplexStream {
    let (ours, theirs) = tokio::io::duplex(8);
    let peer = "127.0.0.1:9".parse().unwrap();
    tokio::spawn(proxy::tunnel::serve_handshake(p.proxy.clone(), theirs, peer, p.shutdown.clone()));
    ours
}

/// Moves at most 8 bytes per read and per write.
struct Trickle(DuplexStream);

impl AsyncRead for Trickle {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let mut small = [0u8; 8];
        let mut limited = ReadBuf::new(&mut small[..buf.remaining().min(8)]);
        let polled = Pin::new(&mut self.0).poll_read(cx, &mut limited);
        if let Poll::Ready(Ok(())) = polled {
            buf.put_slice(limited.filled());
        }
        polled
    }
}

impl AsyncWrite for Trickle {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, &data[..data.len().min(8)])
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// A whole tunnel over a trickling pipe; return the origin's end.
fn trickle(p: &TestProxy) -> Trickle {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let peer = "127.0.0.1:9".parse().unwrap();
    tokio::spawn(proxy::tunnel::serve_handshake(p.proxy.clone(), Trickle(theirs), peer, p.shutdown.clone()));
    Trickle(ours)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_over_a_pipe_moving_eight_bytes_at_a_time_carries_requests() {
    let p = start_proxy().await;
    let media = media_dir();
    let hello = Hello { authority: "proxy", name: "media", instance: Some("inst-1"), token: &p.token };
    let upgraded = handshake(trickle(&p), &hello).await.unwrap();
    let shutdown = CancellationToken::new();
    let app = files(media.path());
    tokio::spawn(async move { origin::serve_tunnel(upgraded, app, &shutdown).await });
    connected(&p, "media").await;
    assert_eq!(p.proxy.origins.tunnels_of("media")[0].instance, "inst-1");
    let (status, _, body) = get(p.front, "/small.txt").await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"hello through the tunnel\n"[..]));
    p.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upgrade_completes_over_an_eight_byte_pipe() {
    let p = start_proxy().await;
    let hello = Hello { authority: "proxy", name: "media", instance: Some("inst-1"), token: &p.token };
    // The PUT, the 101 and the hand-over of the connection, 8 bytes of buffer each way.
    let upgraded = tokio::time::timeout(std::time::Duration::from_secs(5), handshake(pipe(&p), &hello)).await;
    assert!(matches!(upgraded, Ok(Ok(_))), "upgraded");
    p.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_over_a_pipe_name_their_reason() {
    let p =
        start_proxy_config("[[origin]]\nname = \"media\"\n\n[[origin]]\nname = \"photos\"\ntoken = \"photos-token\"\n")
            .await;
    let wrong = Secret::new("nope");
    let cases = [
        (
            Hello { authority: "proxy", name: "media", instance: None, token: &wrong },
            StatusCode::UNAUTHORIZED,
            "wrong token",
        ),
        (
            Hello { authority: "proxy", name: "photos", instance: None, token: &p.token },
            StatusCode::FORBIDDEN,
            "this token does not admit the origin name \"photos\"",
        ),
    ];
    for (hello, status, reason) in cases {
        match handshake(pipe(&p), &hello).await {
            Err(e @ DialError::Rejected { .. }) => {
                assert!(e.is_rejection());
                let DialError::Rejected { status: got, reason: why } = e else { unreachable!() };
                assert_eq!((got, why.as_str()), (status, reason));
            }
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("{} must be rejected", hello.name),
        }
    }
    assert!(p.proxy.origins.is_empty());
    let rejections = p.proxy.counters.tunnel_rejections();
    assert!(
        rejections.contains(&("name_not_allowed", 1)) && rejections.contains(&("wrong_token", 1)),
        "{rejections:?}"
    );
    p.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origins_without_an_instance_id_are_each_their_own_instance() {
    let p = start_proxy().await;
    let media = media_dir();
    for _ in 0..2 {
        let hello = Hello { authority: "proxy", name: "media", instance: None, token: &p.token };
        let upgraded = handshake(trickle(&p), &hello).await.unwrap();
        let app = files(media.path());
        tokio::spawn(async move { origin::serve_tunnel(upgraded, app, &CancellationToken::new()).await });
    }
    wait_for("two tunnels", || p.proxy.origins.tunnels_of("media").len() == 2).await;
    let instances: Vec<String> = p.proxy.origins.tunnels_of("media").iter().map(|t| t.instance.clone()).collect();
    assert_ne!(instances[0], instances[1], "{instances:?}");
    p.shutdown.cancel();
}

/// A proxy (or a box in between) that completes the upgrade and then never speaks HTTP/2: the
/// origin gives the tunnel up after the handshake timeout, saying why, instead of waiting on it
/// forever (hyper's server has no timer of its own for the preface).
#[tokio::test(start_paused = true)]
async fn an_origin_drops_a_tunnel_whose_proxy_never_speaks_http2() {
    let media = media_dir();
    let (ours, _silent) = tokio::io::duplex(64 * 1024);
    let limit = common::tuning::HANDSHAKE_TIMEOUT;
    let shutdown = CancellationToken::new();
    let started = tokio::time::Instant::now();
    let served = origin::serve_tunnel(hyper_util::rt::TokioIo::new(ours), files(media.path()), &shutdown);
    let err = tokio::time::timeout(limit * 2, served).await.expect("gave up within twice the limit").unwrap_err();
    assert_eq!(started.elapsed(), limit);
    let chain = format!("{:#}", anyhow::Error::new(err));
    assert!(chain.contains("no HTTP/2 preface"), "{chain}");
}
