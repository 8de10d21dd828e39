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

/// How long a silent leader keeps the Lease, how long it keeps acting as leader without a
/// successful renewal, and how often candidates try (client-go's defaults: 15 s, 10 s, 2 s).
pub const LEASE_DURATION: Seconds = Seconds(15.0);
pub const RENEW_DEADLINE: Seconds = Seconds(10.0);
pub const RETRY_PERIOD: std::time::Duration = std::time::Duration::from_secs(2);

/// Leader election asked for, but the pod's identity is missing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "JOBCARBON_LEADER_ELECTION_LEASE={lease} needs {missing} (the chart sets it from the pod's metadata)"
)]
pub struct ElectionConfigError {
    /// The Lease name that asked for the election.
    pub lease: String,
    /// The environment variable that is missing or empty.
    pub missing: &'static str,
}

/// Leader election as the chart configures it for `replicas > 1` (docs/deploy.md).
#[derive(Debug, Clone, PartialEq)]
pub struct Election {
    /// Name of the `coordination.k8s.io` Lease the replicas compete for.
    pub lease: String,
    /// This replica's holder identity (its pod name).
    pub identity: String,
    /// Namespace of the Lease (the pod's own).
    pub namespace: String,
}

impl Election {
    /// `JOBCARBON_LEADER_ELECTION_LEASE` turns it on; the pod's name and namespace then must be
    /// set too. Without it there is no election (one replica).
    pub fn from_env() -> Result<Option<Self>, ElectionConfigError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// As [`Election::from_env`], over any variable lookup.
    pub fn from_vars(
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, ElectionConfigError> {
        let Some(lease) = var("JOBCARBON_LEADER_ELECTION_LEASE").filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        let required = |name: &'static str| {
            var(name)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| ElectionConfigError {
                    lease: lease.clone(),
                    missing: name,
                })
        };
        Ok(Some(Self {
            identity: required("JOBCARBON_POD_NAME")?,
            namespace: required("JOBCARBON_POD_NAMESPACE")?,
            lease,
        }))
    }

    /// The candidate for this election's Lease.
    pub fn elector(&self, client: kube::Client) -> LeaderElector {
        LeaderElector::new(
            client,
            &self.namespace,
            &self.lease,
            &self.identity,
            LEASE_DURATION,
        )
    }

    /// Start the election rounds in the background. `on_round` sees the leadership after
    /// every round (e.g. to publish it as a gauge); the handle's receiver follows it too.
    pub fn start(
        &self,
        client: kube::Client,
        on_round: impl Fn(bool) + Send + 'static,
    ) -> Leadership {
        tracing::info!(lease = %self.lease, identity = %self.identity, "leader election on");
        let (tx, receiver) = tokio::sync::watch::channel(false);
        let elector = std::sync::Arc::new(self.elector(client));
        let rounds = tokio::spawn(run_rounds(elector.clone(), tx, on_round));
        Leadership {
            receiver,
            elector,
            rounds,
        }
    }
}

/// A running election: whether this replica leads now, and the release on shutdown.
#[derive(Debug)]
pub struct Leadership {
    receiver: tokio::sync::watch::Receiver<bool>,
    elector: std::sync::Arc<LeaderElector>,
    rounds: tokio::task::JoinHandle<()>,
}

impl Leadership {
    /// Follows leadership: `true` while this replica holds the Lease.
    pub fn receiver(&self) -> tokio::sync::watch::Receiver<bool> {
        self.receiver.clone()
    }

    /// Stop the rounds and hand the Lease over now rather than after it expires (a rolling
    /// update's old pod). Without stopping first, a round could take the Lease back.
    pub async fn release(self) {
        self.rounds.abort();
        match self.elector.release(wall_clock()).await {
            Ok(true) => tracing::info!("released the leader Lease"),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "could not release the leader Lease"),
        }
    }
}

/// Now on the wall clock, in seconds since the Unix epoch.
fn wall_clock() -> Seconds {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Seconds(since.as_secs_f64())
}

/// Runs election rounds forever, publishing leadership to `tx` and `on_round`. A leader that
/// cannot renew steps down after [`RENEW_DEADLINE`], before its Lease expires for others.
async fn run_rounds(
    elector: std::sync::Arc<LeaderElector>,
    tx: tokio::sync::watch::Sender<bool>,
    on_round: impl Fn(bool),
) {
    let mut renewed: Option<Seconds> = None;
    let mut ticker = tokio::time::interval(RETRY_PERIOD);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = wall_clock();
        let leading = match elector.try_acquire_or_renew(now).await {
            Ok(true) => {
                renewed = Some(now);
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::warn!(error = %e, "leader election round failed");
                renewed.is_some_and(|r| now - r < RENEW_DEADLINE)
            }
        };
        if !leading {
            renewed = None;
        }
        if *tx.borrow() != leading {
            tracing::info!(leader = leading, "leadership changed");
        }
        tx.send_replace(leading);
        on_round(leading);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn election(vars: &[(&str, &str)]) -> Result<Option<Election>, ElectionConfigError> {
        let vars: std::collections::HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Election::from_vars(|name| vars.get(name).cloned())
    }

    #[test]
    fn election_only_with_the_lease_variable() {
        assert!(matches!(election(&[]), Ok(None)));
        assert!(matches!(
            election(&[("JOBCARBON_LEADER_ELECTION_LEASE", "")]),
            Ok(None)
        ));
        let on = election(&[
            ("JOBCARBON_LEADER_ELECTION_LEASE", "jc-leader"),
            ("JOBCARBON_POD_NAME", "jc-ledger-7d9f-abcde"),
            ("JOBCARBON_POD_NAMESPACE", "jobcarbon"),
        ]);
        assert_eq!(
            on.ok().flatten(),
            Some(Election {
                lease: "jc-leader".into(),
                identity: "jc-ledger-7d9f-abcde".into(),
                namespace: "jobcarbon".into(),
            })
        );
        let missing = election(&[
            ("JOBCARBON_LEADER_ELECTION_LEASE", "jc-leader"),
            ("JOBCARBON_POD_NAMESPACE", "jobcarbon"),
        ]);
        let message = match missing {
            Err(e) => e.to_string(),
            Ok(_) => panic!("a missing JOBCARBON_POD_NAME must be an error"),
        };
        assert!(message.contains("JOBCARBON_POD_NAME"), "{message}");
    }

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
