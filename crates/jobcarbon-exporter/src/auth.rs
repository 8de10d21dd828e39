//! The HTTP side of `--auth`: a bearer token is required on every path but `/healthz` and
//! `/readyz`, and the decision is the [`AccessReviewer`]'s (TokenReview, then
//! SubjectAccessReview on the request path with verb `get`, as kube-rbac-proxy does).
//! 401 for a missing, malformed or unknown token; 403 for a user RBAC does not allow;
//! 503 when the API server cannot be asked.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jobcarbon_kube::auth::{AccessDecision, AccessReviewer};
use std::sync::Arc;

/// Paths any caller may read: the kubelet's probes carry no token.
pub const OPEN_PATHS: [&str; 2] = ["/healthz", "/readyz"];

/// Longest token accepted (a service-account JWT is about 1 KiB).
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// `router` with every path but [`OPEN_PATHS`] behind `reviewer`.
pub fn protect(router: Router, reviewer: Arc<dyn AccessReviewer>) -> Router {
    router.layer(axum::middleware::from_fn_with_state(reviewer, check))
}

async fn check(
    State(reviewer): State<Arc<dyn AccessReviewer>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    if OPEN_PATHS.contains(&path.as_str()) {
        return next.run(request).await;
    }
    let token = match bearer_token(request.headers()) {
        Ok(token) => token.to_owned(),
        Err(reason) => return unauthorized(reason),
    };
    match reviewer.review(&token, &path).await {
        Ok(AccessDecision::Allowed { .. }) => next.run(request).await,
        Ok(AccessDecision::Unauthenticated { reason }) => {
            tracing::debug!(%path, %reason, "token refused by TokenReview");
            unauthorized("the token is not valid")
        }
        Ok(AccessDecision::Denied { user, reason }) => {
            tracing::debug!(%path, %user, %reason, "denied by SubjectAccessReview");
            (
                StatusCode::FORBIDDEN,
                format!("forbidden: user {user:?} may not get {path}\n"),
            )
                .into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot review a caller's access");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "5")],
                "cannot check the caller's access with the Kubernetes API\n",
            )
                .into_response()
        }
    }
}

/// The token of `Authorization: Bearer <token>`, or why there is none.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, &'static str> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or("an Authorization: Bearer token is required")?;
    let value = value
        .to_str()
        .map_err(|_| "the Authorization header is not ASCII")?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or("the Authorization header is not `Bearer <token>`")?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err("the Authorization header is not `Bearer <token>`");
    }
    let token = token.trim();
    if token.is_empty()
        || token.len() > MAX_TOKEN_BYTES
        || !token.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err("the bearer token is empty, too long or not printable");
    }
    Ok(token)
}

fn unauthorized(reason: &str) -> Response {
    let mut response = (
        StatusCode::UNAUTHORIZED,
        format!("unauthorized: {reason}\n"),
    )
        .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"jobcarbon\""),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(header::AUTHORIZATION, v);
        }
        h
    }

    #[test]
    fn bearer_tokens_are_parsed_and_malformed_ones_refused() {
        assert_eq!(bearer_token(&with("Bearer abc.def")), Ok("abc.def"));
        assert_eq!(bearer_token(&with("bearer abc")), Ok("abc"));
        assert!(bearer_token(&HeaderMap::new()).is_err());
        for bad in [
            "Basic dXNlcjpwdw==",
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "abc",
        ] {
            assert!(bearer_token(&with(bad)).is_err(), "{bad:?}");
        }
        let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 1));
        assert!(bearer_token(&with(&long)).is_err());
    }
}
