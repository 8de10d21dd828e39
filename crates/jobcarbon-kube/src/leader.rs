//! Leader election over a `coordination.k8s.io/v1` Lease, for `jobcarbon ledger` with
//! `replicas > 1`: one replica books, the others stand by.
//!
//! The protocol is client-go's: the holder renews `renewTime` every round; a candidate takes
//! the Lease over only when `renewTime + leaseDurationSeconds` has passed (or nobody holds
//! it), incrementing `leaseTransitions`. Writes are `PUT`s at the read `resourceVersion`, so
//! when two candidates race the API server accepts one and answers 409 to the other.
//! [`decide`] is the pure rule; [`LeaderElector`] does the I/O.

use jobcarbon_core::Seconds;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;

/// What the Lease says, in our units.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseView {
    pub holder: Option<String>,
    pub duration: Option<Seconds>,
    pub renewed: Option<Seconds>,
    pub transitions: i32,
}

/// What a candidate should do with the Lease it read.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// We hold it: write a fresh `renewTime`.
    Renew,
    /// Nobody holds it or the holder's lease expired: take it (a transition if someone held it).
    Acquire { transitions: i32 },
    /// Someone else holds a live lease.
    Follow { holder: String },
}

/// The election rule. A lease without `renewTime` or duration counts as expired; so does one
/// renewed in the future beyond its duration (a clock jump), since otherwise it never expires.
pub fn decide(lease: &LeaseView, me: &str, now: Seconds) -> Decision {
    let holder = lease.holder.as_deref().filter(|h| !h.is_empty());
    match holder {
        Some(h) if h == me => Decision::Renew,
        None => Decision::Acquire {
            transitions: lease.transitions,
        },
        Some(h) => {
            let live = match (lease.renewed, lease.duration) {
                (Some(renewed), Some(duration)) => {
                    now < renewed + duration && renewed < now + duration
                }
                _ => false,
            };
            if live {
                Decision::Follow {
                    holder: h.to_owned(),
                }
            } else {
                Decision::Acquire {
                    transitions: lease.transitions.saturating_add(1),
                }
            }
        }
    }
}

/// Why a round of the election could not talk to the API server (a 409 is not an error: it
/// means another candidate won the race).
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("Lease {namespace}/{name}: {source}")]
    Api {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// One candidate for one Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    namespace: String,
    name: String,
    identity: String,
    duration: Seconds,
}

impl std::fmt::Debug for LeaderElector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderElector")
            .field("lease", &format!("{}/{}", self.namespace, self.name))
            .field("identity", &self.identity)
            .finish()
    }
}

fn to_time(at: Seconds) -> MicroTime {
    let micros = (at.value() * 1e6).round() as i64;
    MicroTime(Timestamp::from_microsecond(micros).unwrap_or(Timestamp::UNIX_EPOCH))
}

fn from_time(t: &MicroTime) -> Seconds {
    Seconds(t.0.as_microsecond() as f64 / 1e6)
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

impl LeaderElector {
    /// `duration` is `leaseDurationSeconds`: how long a silent leader keeps the Lease.
    /// Renew well within it (client-go: renew every ~2/3, retry every ~1/8 of it).
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Seconds,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration,
        }
    }

    fn err(&self, source: kube::Error) -> LeaderError {
        LeaderError::Api {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            source,
        }
    }

    fn spec(&self, now: Seconds, acquired: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.value().ceil().max(1.0) as i32),
            acquire_time: acquired,
            renew_time: Some(to_time(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// One round: read the Lease, create, renew or take it over as `decide` says. `Ok(true)`
    /// when this candidate holds the Lease afterwards.
    pub async fn try_acquire_or_renew(&self, now: Seconds) -> Result<bool, LeaderError> {
        let Some(mut lease) = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.err(e))?
        else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    namespace: Some(self.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now, Some(to_time(now)), 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(e) if is_conflict(&e) => Ok(false),
                Err(e) => Err(self.err(e)),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let view = LeaseView {
            holder: spec.holder_identity.clone(),
            duration: spec.lease_duration_seconds.map(|d| Seconds(f64::from(d))),
            renewed: spec.renew_time.as_ref().map(from_time),
            transitions: spec.lease_transitions.unwrap_or(0),
        };
        let next = match decide(&view, &self.identity, now) {
            Decision::Follow { .. } => return Ok(false),
            Decision::Renew => self.spec(
                now,
                spec.acquire_time.clone().or(Some(to_time(now))),
                view.transitions,
            ),
            Decision::Acquire { transitions } => self.spec(now, Some(to_time(now)), transitions),
        };
        lease.spec = Some(next);
        self.replace(&lease).await
    }

    /// `PUT` at the read resourceVersion: `Ok(false)` when a concurrent writer got a 409 for us.
    async fn replace(&self, lease: &Lease) -> Result<bool, LeaderError> {
        match self
            .api
            .replace(&self.name, &PostParams::default(), lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Give the Lease up (on shutdown) so a standby takes over at its next round instead of
    /// waiting for the lease to expire. `Ok(false)`: we did not hold it, or lost a race.
    pub async fn release(&self, now: Seconds) -> Result<bool, LeaderError> {
        let Some(mut lease) = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.err(e))?
        else {
            return Ok(false);
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(false);
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(false);
        }
        spec.holder_identity = None;
        spec.renew_time = Some(to_time(now));
        self.replace(&lease).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(holder: Option<&str>, renewed: Option<f64>, transitions: i32) -> LeaseView {
        LeaseView {
            holder: holder.map(str::to_owned),
            duration: Some(Seconds(15.0)),
            renewed: renewed.map(Seconds),
            transitions,
        }
    }

    #[test]
    fn holder_renews_others_follow_until_expiry() {
        let now = Seconds(1000.0);
        assert_eq!(
            decide(&view(Some("a"), Some(990.0), 2), "a", now),
            Decision::Renew
        );
        // Our own expired lease is still ours to renew (no transition).
        assert_eq!(
            decide(&view(Some("a"), Some(900.0), 2), "a", now),
            Decision::Renew
        );
        assert_eq!(
            decide(&view(Some("a"), Some(990.0), 2), "b", now),
            Decision::Follow { holder: "a".into() }
        );
        // Expired at exactly renewTime + duration.
        assert_eq!(
            decide(&view(Some("a"), Some(985.0), 2), "b", now),
            Decision::Acquire { transitions: 3 }
        );
        assert_eq!(
            decide(&view(Some("a"), Some(984.9), 2), "b", now),
            Decision::Acquire { transitions: 3 }
        );
        assert_eq!(
            decide(&view(Some("a"), Some(985.1), 2), "b", now),
            Decision::Follow { holder: "a".into() }
        );
    }

    #[test]
    fn empty_or_broken_leases_are_free() {
        let now = Seconds(1000.0);
        // Released (empty holder): acquiring is not a transition.
        assert_eq!(
            decide(&view(Some(""), Some(999.0), 4), "b", now),
            Decision::Acquire { transitions: 4 }
        );
        assert_eq!(
            decide(&view(None, None, 0), "b", now),
            Decision::Acquire { transitions: 0 }
        );
        // A holder that never renewed, or renewed far in the future, cannot block forever.
        assert_eq!(
            decide(&view(Some("a"), None, 1), "b", now),
            Decision::Acquire { transitions: 2 }
        );
        assert_eq!(
            decide(&view(Some("a"), Some(5000.0), 1), "b", now),
            Decision::Acquire { transitions: 2 }
        );
    }
}
