//! The stateless part of the front: what a host can decide about a request at its edge,
//! without the shared database, so that a keyed tenant request can go straight to the tenant's
//! object (the Worker: no directory object on a tenant's path, issue #15).
//!
//! [`Service::edge`] runs the same checks, in the same order, as the front's tenant routes
//! ([`Service::front`]) up to the point where the front would look the key up: so a refusal
//! here is the very refusal the front gives, and a key whose hash this answers goes wherever
//! the key's owner is found. Whether the key is usable (revoked, expired, its tenant suspended
//! or deleted) is never decided here: the tenant's object decides, as it does after the front.

use crate::auth::{bearer, refuse_keys_in_query};
use crate::users::UserRoute;
use crate::{http as h, ApiError, Request, Service};

/// What the edge makes of a request.
#[derive(Debug)]
pub enum Edge {
    /// The front would refuse the request whatever its storage holds: this refusal (the host
    /// finishes it with a request id, as [`crate::finish`] does).
    Refuse(ApiError),
    /// A keyed tenant route: the hash of the key it carries. The host finds the key's tenant
    /// (an index, or the front on a miss) and runs the request in that tenant's object.
    /// `user_route` is set for an end-user auth route (`/v1/auth/*`) that carries a tenant key.
    Keyed {
        key_hash: String,
        user_route: Option<UserRoute>,
    },
    /// Everything else (meta, admin, keyless or access-token end-user routes, test controls,
    /// paths the front answers 404): the front decides.
    Front,
}

impl Service {
    /// The stateless part of the front for `req` (see the module comment).
    pub fn edge(&self, req: &Request) -> Edge {
        let path = req.uri().path();
        // As in the front: every route refuses an oversized body; CSV uploads have their own
        // limit, which the host applies when it reads the body.
        if req.body().len() > h::MAX_BODY_BYTES && path != "/v1/graph/csv" {
            return Edge::Refuse(ApiError::PayloadTooLarge);
        }
        let Some(segments) = h::path_segments(path) else {
            return Edge::Front;
        };
        let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
        let query = h::query_pairs(req.uri().query());
        let method = req.method();
        let auth = self.authenticator();
        match segs.as_slice() {
            ["v1", "auth", leaf] => {
                let Some(route) = UserRoute::parse(leaf) else {
                    return Edge::Front;
                };
                // Access-token routes name their tenant in the token, keyless ones by the
                // routing sources: both need the front. Only a tenant key is hashed here.
                if route.uses_access_token() || bearer(req).is_none() {
                    return Edge::Front;
                }
                let (allowed, allow_header) = route.methods();
                let checked = h::allow(method, allowed, allow_header)
                    .and_then(|()| refuse_keys_in_query(&query))
                    .and_then(|()| auth.key_hash(req));
                match checked {
                    Ok(key_hash) => Edge::Keyed {
                        key_hash,
                        user_route: Some(route),
                    },
                    Err(e) => Edge::Refuse(e),
                }
            }
            ["v1", rest @ ..] => {
                let Some((allowed, allow_header)) = crate::tenant_route_methods(rest) else {
                    return Edge::Refuse(ApiError::NotFound);
                };
                let checked = h::allow(method, allowed, allow_header)
                    .and_then(|()| refuse_keys_in_query(&query))
                    .and_then(|()| auth.key_hash(req));
                match checked {
                    Ok(key_hash) => Edge::Keyed {
                        key_hash,
                        user_route: None,
                    },
                    Err(e) => Edge::Refuse(e),
                }
            }
            _ => Edge::Front,
        }
    }
}
