//! Header rules for forwarding: which headers are hop-by-hop and must not cross a hop.

use http::header::{self, HeaderMap, HeaderName};
use http::StatusCode;

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), plus the ones
/// HTTP/2 forbids. `te: trailers` is the single value allowed through, and only to HTTP/2.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("keep-alive"),
];

/// A copy of a request's head (method, target, version, headers; not its extensions), for
/// sending the same request again when the connection it was meant for turned out closed.
pub fn copy_head<B>(req: &http::Request<B>) -> http::Request<()> {
    let mut copy = http::Request::new(());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    copy
}

/// Remove hop-by-hop headers, including every header that `Connection` names.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Names listed in Connection go first, while we can still read it.
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    let keeps_trailers = headers.get(header::TE).is_some_and(|te| te.as_bytes().eq_ignore_ascii_case(b"trailers"));
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove("proxy-connection");
    if keeps_trailers {
        headers.insert(header::TE, http::HeaderValue::from_static("trailers"));
    }
}

/// A service's response that cannot be forwarded faithfully: its body is transfer-coded with
/// something other than `chunked` (`gzip`, say), which hop-by-hop rules would strip and leave
/// the client holding coded bytes with nothing saying so. The value is the header as sent
/// (its first three lines, each cut to 64 characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnforwardableCoding(pub String);

impl std::error::Error for UnforwardableCoding {}

impl std::fmt::Display for UnforwardableCoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Transfer-Encoding {:?} cannot be forwarded (only chunked alone can; have the service send \
             Content-Encoding instead)",
            self.0
        )
    }
}

/// Make the head of a response read from an HTTP/1.1 service fit to forward. `bodyless`: the
/// response is known to have no body (an answer to HEAD, a 204 or 304, a zero length).
/// - A `Transfer-Encoding` other than exactly `chunked` on a response with a body is refused,
///   as nginx refuses it. On a bodyless one it only says what a GET would have used
///   (RFC 9112 §6.1): nothing is coded, and it goes like any hop-by-hop header.
/// - With `Transfer-Encoding`, a `Content-Length` is stale ([`drop_stale_length`]).
/// - Hop-by-hop headers go ([`remove_hop_by_hop`]).
/// - A response that has no content drops its `Content-Length` ([`drop_length_without_content`]).
pub fn forwardable_response(
    status: StatusCode,
    headers: &mut HeaderMap,
    bodyless: bool,
) -> Result<(), UnforwardableCoding> {
    let mut codings = headers.get_all(header::TRANSFER_ENCODING).iter();
    let chunked_alone = match (codings.next(), codings.next()) {
        (None, _) => true,
        (Some(only), None) => only.as_bytes().trim_ascii().eq_ignore_ascii_case(b"chunked"),
        _ => false,
    };
    if !chunked_alone && !bodyless {
        let sent: Vec<String> = headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .take(3)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).chars().take(64).collect())
            .collect();
        return Err(UnforwardableCoding(sent.join(", ")));
    }
    drop_stale_length(headers);
    remove_hop_by_hop(headers);
    drop_length_without_content(status, headers);
    Ok(())
}

/// A message with `Transfer-Encoding` is delimited by it, so a `Content-Length` next to it is
/// stale (RFC 9112 §6.3) and would be wrong once the coding is gone: it goes, before
/// [`remove_hop_by_hop`] removes the coding.
pub fn drop_stale_length(headers: &mut HeaderMap) {
    if headers.contains_key(header::TRANSFER_ENCODING) {
        headers.remove(header::CONTENT_LENGTH);
    }
}

/// A 1xx or 204 response has no content and must not carry `Content-Length` (RFC 9110 §8.6);
/// HTTP/2 clients reset the stream of a 204 that does (curl: `PROTOCOL_ERROR`), so it is
/// removed, as nginx removes it. (hyper hands on no 1xx but 101, which is refused anyway: that
/// branch is defensive.) A 304's `Content-Length` describes the representation it stands for
/// and is allowed: it stays.
pub fn drop_length_without_content(status: StatusCode, headers: &mut HeaderMap) {
    if status == StatusCode::NO_CONTENT || status.is_informational() {
        headers.remove(header::CONTENT_LENGTH);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copied_heads_keep_everything_sent() {
        let head = http::Request::post("http://origin/upload?x=1")
            .header("x-forwarded-for", "192.0.2.1")
            .header("content-length", "5")
            .body(b"hello")
            .expect("a valid request");
        let copy = copy_head(&head);
        assert_eq!((copy.method(), copy.uri(), copy.version()), (head.method(), head.uri(), head.version()));
        assert_eq!(copy.headers(), head.headers());
    }
    use http::HeaderValue;

    #[test]
    fn strips_standard_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-private"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("proxy-connection", HeaderValue::from_static("close"));
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::ACCEPT));
    }

    #[test]
    fn keeps_te_trailers_only() {
        let mut h = HeaderMap::new();
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.get(header::TE).map(|v| v.as_bytes()), Some(&b"trailers"[..]));
        let mut h = HeaderMap::new();
        h.insert(header::TE, HeaderValue::from_static("gzip"));
        remove_hop_by_hop(&mut h);
        assert!(h.get(header::TE).is_none());
    }

    fn head(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v))).collect()
    }

    #[test]
    fn chunked_alone_is_forwarded_without_its_stale_length() {
        let mut h = head(&[("transfer-encoding", "Chunked "), ("content-length", "3"), ("content-type", "text/plain")]);
        assert_eq!(forwardable_response(StatusCode::OK, &mut h, false), Ok(()));
        assert_eq!(h, head(&[("content-type", "text/plain")]));
        let mut h = head(&[("content-length", "3")]);
        assert_eq!(forwardable_response(StatusCode::OK, &mut h, false), Ok(()));
        assert_eq!(h, head(&[("content-length", "3")]));
    }

    #[test]
    fn other_transfer_codings_are_refused() {
        for sent in [
            &[("transfer-encoding", "gzip")][..],
            &[("transfer-encoding", "gzip, chunked")],
            &[("transfer-encoding", "gzip"), ("transfer-encoding", "chunked")],
        ] {
            let mut h = head(sent);
            let refused =
                forwardable_response(StatusCode::OK, &mut h, false).expect_err("a coding the client cannot see");
            assert!(refused.0.starts_with("gzip"), "{refused:?}");
            assert!(refused.to_string().contains("Content-Encoding"), "{refused}");
        }
        let mut h = head(&[("transfer-encoding", "identity")]);
        assert!(forwardable_response(StatusCode::OK, &mut h, false).is_err());
        // Hundreds of lines name at most three.
        let mut h = HeaderMap::new();
        for _ in 0..300 {
            h.append(header::TRANSFER_ENCODING, HeaderValue::from_static("gzip"));
        }
        let refused = forwardable_response(StatusCode::OK, &mut h, false).expect_err("not chunked alone");
        assert_eq!(refused.0, "gzip, gzip, gzip");
    }

    #[test]
    fn a_coding_on_a_bodyless_answer_only_describes_a_get() {
        for status in [StatusCode::NOT_MODIFIED, StatusCode::OK] {
            let mut h = head(&[("transfer-encoding", "gzip"), ("content-length", "9"), ("etag", "\"v1\"")]);
            assert_eq!(forwardable_response(status, &mut h, true), Ok(()), "{status}");
            assert_eq!(h, head(&[("etag", "\"v1\"")]), "{status}");
        }
    }

    #[test]
    fn no_content_means_no_length() {
        for (status, kept) in [(204, false), (103, false), (304, true), (200, true)] {
            let mut h = head(&[("content-length", "7"), ("etag", "\"v1\"")]);
            let status = StatusCode::from_u16(status).expect("a status");
            assert_eq!(forwardable_response(status, &mut h, false), Ok(()));
            assert_eq!(h.contains_key(header::CONTENT_LENGTH), kept, "{status}");
            assert!(h.contains_key(header::ETAG));
        }
    }
}
