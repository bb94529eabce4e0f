//! Body types shared by the proxy and the origin: one boxed, streaming body type and small constructors.

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};

/// Any error a body can fail with while streaming.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type every handler in revmux returns: streamed, boxed once per message.
pub type BoxBody = UnsyncBoxBody<Bytes, BoxError>;

/// An empty body.
pub fn empty() -> BoxBody {
    Empty::<Bytes>::new().map_err(|never| match never {}).boxed_unsync()
}

/// A body holding `data` whole (for small, generated responses only).
pub fn full(data: impl Into<Bytes>) -> BoxBody {
    Full::new(data.into()).map_err(|never| match never {}).boxed_unsync()
}

/// Box any body whose error converts into [`BoxError`].
pub fn boxed<B>(body: B) -> BoxBody
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}
