//! The routing decision: which origin's tunnel a front-end request goes to. Kept apart from the
//! forwarding path so that later routing rules (host, path, SNI) change only this file.

use crate::registry::{Registry, Tunnel};
use http::Request;
use std::sync::Arc;

/// Candidate tunnels for a request, best first. Forwarding tries them in order when a tunnel
/// turns out to be closed before the request could be sent on it.
///
/// Today there is a single default route: every request goes to the most recently connected
/// origin, which is what a one-origin deployment needs.
pub fn candidates<B>(registry: &Registry, _request: &Request<B>) -> Vec<Arc<Tunnel>> {
    registry.tunnels()
}
