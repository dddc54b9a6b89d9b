//! Leader election on a `coordination.k8s.io/v1` Lease, so that two
//! replicas of the operator are safe: only the holder reconciles. kube-rs
//! has no leader election of its own; this is the client-go protocol in
//! brief: take the Lease when it is free, expired or already ours, with
//! the API server's optimistic concurrency (`resourceVersion`) deciding
//! races, and renew it well within its duration.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};

/// One candidate for the Lease.
pub struct Elector {
    pub api: Api<Lease>,
    pub name: String,
    pub identity: String,
    /// How long a Lease not renewed stays its holder's.
    pub duration_secs: i32,
}

/// Whether a Lease held by `holder`, renewed at `renewed` for `duration`
/// seconds, may be taken by `me` at `now`.
pub fn may_take(
    holder: Option<&str>,
    renewed: Option<Timestamp>,
    duration: i32,
    me: &str,
    now: Timestamp,
) -> bool {
    match (holder, renewed) {
        (None, _) | (Some(""), _) => true,
        (Some(h), _) if h == me => true,
        (Some(_), None) => true,
        (Some(_), Some(at)) => at + SignedDuration::from_secs(duration as i64) < now,
    }
}

impl Elector {
    /// Takes or renews the Lease; `Ok(false)` while another holds it.
    pub async fn try_acquire(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let conflict = |e: &kube::Error| matches!(e, kube::Error::Api(s) if s.code == 409);
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(self.duration_secs),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(e) if conflict(&e) => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone();
        let renewed = spec.renew_time.as_ref().map(|t| t.0);
        let duration = spec.lease_duration_seconds.unwrap_or(self.duration_secs);
        if !may_take(holder.as_deref(), renewed, duration, &self.identity, now) {
            return Ok(false);
        }
        if holder.as_deref() != Some(self.identity.as_str()) {
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            spec.holder_identity = Some(self.identity.clone());
        }
        spec.renew_time = Some(MicroTime(now));
        spec.lease_duration_seconds = Some(self.duration_secs);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_taken_when_free_expired_or_ours() {
        let now = Timestamp::from_second(1_000_000).unwrap();
        let ago = |s: i64| Some(now - SignedDuration::from_secs(s));
        assert!(may_take(None, None, 15, "a", now));
        assert!(may_take(Some("a"), ago(1), 15, "a", now));
        assert!(!may_take(Some("b"), ago(10), 15, "a", now));
        assert!(may_take(Some("b"), ago(16), 15, "a", now));
        assert!(may_take(Some("b"), None, 15, "a", now));
    }
}
