//! Publishing with the broker's confirmation: a dead letter or a reply is
//! safe only once the broker has acknowledged it (PUBACK), and only then may
//! the message it came from be acknowledged.
//!
//! rumqttc reports an outgoing publish's packet id when it sends it
//! (`Outgoing::Publish(pkid)`) and the broker's PUBACK by packet id, but not
//! which request got which id. Requests leave its channel in the order they
//! were queued, so waiters are queued in that same order (under one lock) and
//! matched to packet ids as they are sent. Retransmissions after a reconnect
//! reuse an id already matched; a collision (`AwaitAck`) holds its waiter
//! until the id is free. rumqttc silently drops queued requests when a
//! reconnect finds no session, so the publishing connection is never
//! reconnected: after any failure its client is replaced whole (see
//! `connection.rs`), failing every waiter. The caller publishes again, so a
//! dead letter may arrive twice but never not at all.

use bytes::Bytes;
use rumqttc::v5::AsyncClient;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{PubAck, PubAckReason, PublishProperties};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::oneshot;

type Waiter = oneshot::Sender<Result<(), String>>;

/// How long a publish may wait for the broker before the caller tries again.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// Publishes and waits for the broker's acknowledgement.
pub struct Publisher {
    /// The current connection's client; `None` before the first one.
    client: Mutex<Option<AsyncClient>>,
    /// Orders queueing a waiter with sending its request.
    order: tokio::sync::Mutex<()>,
    pending: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    /// Requests queued to rumqttc and not yet given a packet id.
    queued: VecDeque<(QoS, Waiter)>,
    /// Sent, waiting for their PUBACK, by packet id.
    sent: HashMap<u16, Waiter>,
    /// A request whose packet id was still taken when it was due.
    collided: Option<(u16, Waiter)>,
}

impl Default for Publisher {
    fn default() -> Self {
        Publisher {
            client: Mutex::new(None),
            order: tokio::sync::Mutex::new(()),
            pending: Mutex::new(Pending::default()),
        }
    }
}

impl Publisher {
    /// Starts using `client` (a new connection).
    pub fn replace(&self, client: AsyncClient) {
        self.disconnect();
        *self.client.lock().expect("client lock") = Some(client);
    }

    /// The connection failed: publishing waits for the next one, and every
    /// waiter fails, since its request died with the connection.
    pub fn disconnect(&self) {
        *self.client.lock().expect("client lock") = None;
        let old = std::mem::take(&mut *self.pending.lock().expect("pending lock"));
        let fail = |w: Waiter| {
            let _ = w.send(Err("the connection to the broker failed".into()));
        };
        old.queued.into_iter().for_each(|(_, w)| fail(w));
        old.sent.into_values().for_each(fail);
        old.collided.into_iter().for_each(|(_, w)| fail(w));
    }

    fn client(&self) -> Option<AsyncClient> {
        self.client.lock().expect("client lock").clone()
    }

    /// Publishes `payload` to `topic`; with QoS 1, returns once the broker
    /// has acknowledged it.
    pub async fn publish(
        &self,
        topic: &str,
        qos: QoS,
        payload: Bytes,
        properties: PublishProperties,
    ) -> Result<(), String> {
        let client = self.client().ok_or("not connected yet")?;
        let (tx, rx) = oneshot::channel();
        {
            let _turn = self.order.lock().await;
            self.pending
                .lock()
                .expect("pending lock")
                .queued
                .push_back((qos, tx));
            if let Err(e) = client
                .publish_with_properties(topic, qos, false, payload, properties)
                .await
            {
                // Not queued after all (a bad topic, or the client is gone).
                self.pending.lock().expect("pending lock").queued.pop_back();
                return Err(format!("cannot publish to {topic}: {e}"));
            }
        }
        match tokio::time::timeout(CONFIRM_TIMEOUT, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err("the connection was replaced".into()),
            Err(_) => Err(format!(
                "the broker did not acknowledge within {}s",
                CONFIRM_TIMEOUT.as_secs()
            )),
        }
    }

    /// rumqttc sent a publish with this packet id (0: QoS 0).
    pub fn sent(&self, pkid: u16) {
        let mut p = self.pending.lock().expect("pending lock");
        if pkid != 0 && p.sent.contains_key(&pkid) {
            return; // a retransmission after a reconnect
        }
        if let Some((collided, _)) = &p.collided
            && *collided == pkid
        {
            let (_, w) = p.collided.take().expect("checked");
            p.sent.insert(pkid, w);
            return;
        }
        match p.queued.pop_front() {
            Some((QoS::AtMostOnce, w)) => {
                let _ = w.send(Ok(()));
            }
            Some((_, w)) => {
                p.sent.insert(pkid, w);
            }
            None => {}
        }
    }

    /// rumqttc holds the next publish until `pkid` is acknowledged.
    pub fn collided(&self, pkid: u16) {
        let mut p = self.pending.lock().expect("pending lock");
        if let Some((_, w)) = p.queued.pop_front() {
            p.collided = Some((pkid, w));
        }
    }

    /// The broker acknowledged a publish.
    pub fn acknowledged(&self, ack: &PubAck) {
        let waiter = self
            .pending
            .lock()
            .expect("pending lock")
            .sent
            .remove(&ack.pkid);
        if let Some(w) = waiter {
            let result = match ack.reason {
                PubAckReason::Success | PubAckReason::NoMatchingSubscribers => Ok(()),
                other => Err(format!("the broker refused the publish: {other:?}")),
            };
            let _ = w.send(result);
        }
    }
}
