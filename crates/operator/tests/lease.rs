//! Leader election against the mocked API server (`fake/`): one holder at
//! a time, renewals, takeover after expiry, and a lost race.

mod fake;

use fake::fake;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use serde_json::json;
use wedge_operator::lease::Elector;

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/wedge-system/leases/wedge-operator";

fn elector(client: &kube::Client, identity: &str) -> Elector {
    Elector {
        api: Api::<Lease>::namespaced(client.clone(), "wedge-system"),
        name: "wedge-operator".into(),
        identity: identity.into(),
        duration_secs: 15,
    }
}

#[tokio::test]
async fn one_replica_leads_until_its_lease_expires() {
    let (client, state) = fake();
    let (a, b) = (elector(&client, "a"), elector(&client, "b"));
    assert!(a.try_acquire().await.unwrap(), "a creates the Lease");
    assert!(!b.try_acquire().await.unwrap(), "b waits while a holds it");
    assert!(a.try_acquire().await.unwrap(), "a renews");
    let lease = state.lock().unwrap().objects[LEASE].clone();
    assert_eq!(lease["spec"]["holderIdentity"], "a");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 15);

    // a stops renewing: 20 s later the Lease is b's, one transition on.
    state.lock().unwrap().objects.get_mut(LEASE).unwrap()["spec"]["renewTime"] =
        json!("2020-01-01T00:00:00.000000Z");
    assert!(b.try_acquire().await.unwrap(), "b takes the expired Lease");
    let lease = state.lock().unwrap().objects[LEASE].clone();
    assert_eq!(lease["spec"]["holderIdentity"], "b");
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
    assert!(!a.try_acquire().await.unwrap(), "a has lost it");
}

#[tokio::test]
async fn a_lost_race_is_not_leadership() {
    let (client, state) = fake();
    let (a, b) = (elector(&client, "a"), elector(&client, "b"));
    assert!(a.try_acquire().await.unwrap());
    state.lock().unwrap().objects.get_mut(LEASE).unwrap()["spec"]["renewTime"] =
        json!("2020-01-01T00:00:00.000000Z");
    // b reads an expired Lease, but another writer's update lands before
    // b's: the API server answers 409, and b does not lead.
    state.lock().unwrap().conflict_next_put = true;
    assert!(!b.try_acquire().await.unwrap());
    assert_eq!(
        state.lock().unwrap().objects[LEASE]["spec"]["holderIdentity"],
        "a"
    );
    // Next round b reads afresh and takes it.
    assert!(b.try_acquire().await.unwrap());
}
