//! Who may read the ledger's HTTP surface, decided the way kube-rbac-proxy decides it: the
//! caller's bearer token goes to a `TokenReview` (authentication), the user it names to a
//! `SubjectAccessReview` on the request's non-resource path with verb `get` (authorization,
//! RBAC `nonResourceURLs`). [`AccessReviewer`] is the decision; [`KubeAccessReviewer`] asks the
//! API server; [`CachedReviewer`] keeps decisions for a short, bounded while so a scrape every
//! 15 s costs no API calls.

use async_trait::async_trait;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the reviews decided for one token and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessDecision {
    /// The token names `user`, and RBAC lets that user `get` the path.
    Allowed {
        /// The user name the token belongs to.
        user: String,
    },
    /// The token names `user`, who may not `get` the path (HTTP 403).
    Denied {
        /// The user name the token belongs to.
        user: String,
        /// RBAC's reason, when it gives one.
        reason: String,
    },
    /// The API server does not accept the token (HTTP 401).
    Unauthenticated {
        /// The TokenReview's error, when it gives one.
        reason: String,
    },
}

/// The API server could not be asked (a network error, a 4xx/5xx answer): no decision, the
/// request is refused with 503 and nothing is cached.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The TokenReview request failed.
    #[error("TokenReview failed: {0}")]
    TokenReview(#[source] kube::Error),
    /// The SubjectAccessReview request failed.
    #[error("SubjectAccessReview failed: {0}")]
    AccessReview(#[source] kube::Error),
    /// The named review came back without a status.
    #[error("the API server answered a {0} without a status")]
    NoStatus(&'static str),
}

/// Decides whether the holder of `token` may `get` the non-resource `path`.
#[async_trait]
pub trait AccessReviewer: Send + Sync {
    /// Reviews `token` for a `get` on the non-resource URL `path`.
    async fn review(&self, token: &str, path: &str) -> Result<AccessDecision, ReviewError>;
}

/// The real reviewer: `TokenReview` then `SubjectAccessReview` against the API server. The
/// ledger's service account needs `create` on `tokenreviews` (authentication.k8s.io) and
/// `subjectaccessreviews` (authorization.k8s.io).
#[derive(Clone)]
pub struct KubeAccessReviewer {
    client: kube::Client,
}

impl KubeAccessReviewer {
    /// A reviewer asking the API server through `client`.
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }

    /// The user a token names, or why the API server refused it.
    async fn authenticate(&self, token: &str) -> Result<Result<UserSpec, String>, ReviewError> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: None,
            },
            ..TokenReview::default()
        };
        let answer = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(ReviewError::TokenReview)?;
        let status = answer.status.ok_or(ReviewError::NoStatus("TokenReview"))?;
        if status.authenticated != Some(true) {
            let reason = status
                .error
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| "token not authenticated".to_owned());
            return Ok(Err(reason));
        }
        let user = status.user.unwrap_or_default();
        match user.username.filter(|u| !u.is_empty()) {
            Some(username) => Ok(Ok(UserSpec {
                username,
                uid: user.uid,
                groups: user.groups,
                extra: user.extra,
            })),
            None => Ok(Err("the token names no user".to_owned())),
        }
    }

    async fn authorize(&self, user: UserSpec, path: &str) -> Result<AccessDecision, ReviewError> {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.username.clone()),
                uid: user.uid,
                groups: user.groups,
                extra: user.extra,
                non_resource_attributes: Some(NonResourceAttributes {
                    path: Some(path.to_owned()),
                    verb: Some("get".to_owned()),
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let answer = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(ReviewError::AccessReview)?;
        let status = answer
            .status
            .ok_or(ReviewError::NoStatus("SubjectAccessReview"))?;
        Ok(if status.allowed && status.denied != Some(true) {
            AccessDecision::Allowed {
                user: user.username,
            }
        } else {
            let reason = status
                .reason
                .or(status.evaluation_error)
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| "no RBAC rule allows it".to_owned());
            AccessDecision::Denied {
                user: user.username,
                reason,
            }
        })
    }
}

type Extra = std::collections::BTreeMap<String, Vec<String>>;

/// The authenticated user as the `SubjectAccessReview` must name it.
struct UserSpec {
    username: String,
    uid: Option<String>,
    groups: Option<Vec<String>>,
    extra: Option<Extra>,
}

#[async_trait]
impl AccessReviewer for KubeAccessReviewer {
    async fn review(&self, token: &str, path: &str) -> Result<AccessDecision, ReviewError> {
        match self.authenticate(token).await? {
            Ok(user) => self.authorize(user, path).await,
            Err(reason) => Ok(AccessDecision::Unauthenticated { reason }),
        }
    }
}

/// How long and how many decisions [`CachedReviewer`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// An allowed decision is reused this long (a revoked binding takes effect after it).
    pub allowed_ttl: Duration,
    /// A denial or an unknown token is reused this long (a new binding takes effect after it).
    pub refused_ttl: Duration,
    /// Decisions kept at most; when full, expired ones go, then everything.
    pub capacity: usize,
}

impl Default for CacheLimits {
    fn default() -> Self {
        Self {
            allowed_ttl: Duration::from_secs(60),
            refused_ttl: Duration::from_secs(10),
            capacity: 4096,
        }
    }
}

/// An [`AccessReviewer`] that remembers decisions by SHA-256 of (token, path) — the tokens
/// themselves are not kept — for [`CacheLimits`]. Errors are never cached.
pub struct CachedReviewer<R> {
    inner: R,
    limits: CacheLimits,
    entries: Mutex<HashMap<[u8; 32], (Instant, AccessDecision)>>,
}

impl<R: AccessReviewer> CachedReviewer<R> {
    /// Caches the decisions of `inner` within `limits`.
    pub fn new(inner: R, limits: CacheLimits) -> Self {
        Self {
            inner,
            limits,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Decisions held now (expired ones included until they are swept).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no decision is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (Instant, AccessDecision)>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn store(&self, key: [u8; 32], decision: &AccessDecision, now: Instant) {
        let ttl = match decision {
            AccessDecision::Allowed { .. } => self.limits.allowed_ttl,
            _ => self.limits.refused_ttl,
        };
        let mut entries = self.lock();
        if entries.len() >= self.limits.capacity {
            entries.retain(|_, (expires, _)| *expires > now);
            if entries.len() >= self.limits.capacity {
                entries.clear();
            }
        }
        if self.limits.capacity > 0 {
            entries.insert(key, (now + ttl, decision.clone()));
        }
    }
}

fn cache_key(token: &str, path: &str) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(token.as_bytes());
    hash.update([0u8]);
    hash.update(path.as_bytes());
    hash.finalize().into()
}

#[async_trait]
impl<R: AccessReviewer> AccessReviewer for CachedReviewer<R> {
    async fn review(&self, token: &str, path: &str) -> Result<AccessDecision, ReviewError> {
        let key = cache_key(token, path);
        let now = Instant::now();
        if let Some((expires, decision)) = self.lock().get(&key)
            && *expires > now
        {
            return Ok(decision.clone());
        }
        let decision = self.inner.review(token, path).await?;
        self.store(key, &decision, now);
        Ok(decision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts the reviews that reach it; allows the token "good".
    struct Counting(AtomicUsize);

    #[async_trait]
    impl AccessReviewer for Counting {
        async fn review(&self, token: &str, _path: &str) -> Result<AccessDecision, ReviewError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(if token == "good" {
                AccessDecision::Allowed { user: "u".into() }
            } else {
                AccessDecision::Unauthenticated {
                    reason: "no".into(),
                }
            })
        }
    }

    #[tokio::test]
    async fn decisions_are_reused_per_token_and_path_and_bounded() {
        let limits = CacheLimits {
            capacity: 3,
            ..CacheLimits::default()
        };
        let cached = CachedReviewer::new(Counting(AtomicUsize::new(0)), limits);
        for _ in 0..3 {
            let d = cached.review("good", "/metrics").await;
            assert!(matches!(d, Ok(AccessDecision::Allowed { .. })));
        }
        assert_eq!(cached.inner.0.load(Ordering::SeqCst), 1);
        // Another path is another decision.
        let _ = cached.review("good", "/api/v1/products").await;
        assert_eq!(cached.inner.0.load(Ordering::SeqCst), 2);
        // A flood of distinct tokens never holds more than the capacity.
        for i in 0..50 {
            let _ = cached.review(&format!("bad-{i}"), "/metrics").await;
            assert!(cached.len() <= 3, "{}", cached.len());
        }
    }

    #[tokio::test]
    async fn expired_decisions_are_asked_again() {
        let limits = CacheLimits {
            allowed_ttl: Duration::ZERO,
            refused_ttl: Duration::ZERO,
            capacity: 10,
        };
        let cached = CachedReviewer::new(Counting(AtomicUsize::new(0)), limits);
        let _ = cached.review("good", "/metrics").await;
        let _ = cached.review("good", "/metrics").await;
        assert_eq!(cached.inner.0.load(Ordering::SeqCst), 2);
    }
}
