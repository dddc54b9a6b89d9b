//! Acknowledgements in arrival order. MQTT requires a client to send PUBACKs
//! in the order the QoS 1 messages arrived, so a message handled early waits
//! for those before it. A message that arrives again (the broker resends what
//! was not acknowledged when a connection dropped) while its first copy is
//! still being handled is not handled twice: the copy waits with it.

use rumqttc::v5::mqttbytes::v5::Publish;
use std::collections::VecDeque;

/// The QoS 1 messages not yet acknowledged, oldest first.
#[derive(Default)]
pub struct Order {
    /// Sequence number of `slots[0]`.
    first: u64,
    slots: VecDeque<Slot>,
    /// Packet ids and fingerprints of the last messages acknowledged, for
    /// a resend whose acknowledgement was lost with the connection.
    recent: VecDeque<(u16, u64)>,
}

struct Slot {
    publish: Publish,
    fingerprint: u64,
    done: bool,
}

/// What to do with a message that just arrived.
#[derive(Debug, PartialEq, Eq)]
pub enum Arrival {
    /// New: handle it, then call [`Order::done`] with this number.
    Handle(u64),
    /// A resend of a message still being handled: nothing to do.
    Joined,
    /// A resend of a message already handled whose acknowledgement was lost:
    /// acknowledge it again.
    AckAgain,
}

/// How many acknowledged messages are remembered for resends.
const RECENT: usize = 4096;

impl Order {
    pub fn arrive(&mut self, publish: Publish) -> Arrival {
        let fingerprint = fingerprint(&publish);
        if publish.dup {
            let pkid = publish.pkid;
            if let Some(slot) = self
                .slots
                .iter_mut()
                .find(|s| s.publish.pkid == pkid && s.fingerprint == fingerprint)
            {
                slot.publish = publish;
                return Arrival::Joined;
            }
            if self.recent.contains(&(pkid, fingerprint)) {
                return Arrival::AckAgain;
            }
        }
        self.slots.push_back(Slot {
            publish,
            fingerprint,
            done: false,
        });
        Arrival::Handle(self.first + self.slots.len() as u64 - 1)
    }

    /// Marks message `seq` handled; returns the messages that may now be
    /// acknowledged, in order.
    pub fn done(&mut self, seq: u64) -> Vec<Publish> {
        if let Some(i) = seq.checked_sub(self.first)
            && let Some(slot) = self.slots.get_mut(i as usize)
        {
            slot.done = true;
        }
        let mut ready = Vec::new();
        while self.slots.front().is_some_and(|s| s.done) {
            let slot = self.slots.pop_front().expect("checked");
            self.first += 1;
            if self.recent.len() == RECENT {
                self.recent.pop_front();
            }
            self.recent.push_back((slot.publish.pkid, slot.fingerprint));
            ready.push(slot.publish);
        }
        ready
    }

    /// Messages not yet acknowledged.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

/// Topic and payload, hashed: tells a resend from a new message that reuses
/// a packet id.
fn fingerprint(p: &Publish) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    p.topic.hash(&mut h);
    p.payload.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::v5::mqttbytes::QoS;

    fn publish(pkid: u16, payload: &'static str, dup: bool) -> Publish {
        let mut p = Publish::new("t", QoS::AtLeastOnce, payload, None);
        p.pkid = pkid;
        p.dup = dup;
        p
    }

    fn pkids(v: Vec<Publish>) -> Vec<u16> {
        v.iter().map(|p| p.pkid).collect()
    }

    #[test]
    fn acknowledgements_leave_in_arrival_order() {
        let mut o = Order::default();
        let seqs: Vec<u64> = (1..=3)
            .map(|i| match o.arrive(publish(i, "x", false)) {
                Arrival::Handle(s) => s,
                other => panic!("{other:?}"),
            })
            .collect();
        assert!(o.done(seqs[2]).is_empty(), "3 waits for 1 and 2");
        assert!(o.done(seqs[1]).is_empty());
        assert_eq!(pkids(o.done(seqs[0])), [1, 2, 3]);
        assert!(o.is_empty());
    }

    #[test]
    fn a_resend_joins_its_first_copy_or_is_acknowledged_again() {
        let mut o = Order::default();
        let Arrival::Handle(seq) = o.arrive(publish(7, "a", false)) else {
            panic!()
        };
        assert_eq!(o.arrive(publish(7, "a", true)), Arrival::Joined);
        assert_eq!(o.len(), 1);
        assert_eq!(pkids(o.done(seq)), [7]);
        assert_eq!(o.arrive(publish(7, "a", true)), Arrival::AckAgain);
        // The same packet id with other content is a new message.
        assert!(matches!(
            o.arrive(publish(7, "b", true)),
            Arrival::Handle(_)
        ));
        // And without the DUP flag, identical content is a new message too.
        assert!(matches!(
            o.arrive(publish(7, "a", false)),
            Arrival::Handle(_)
        ));
    }
}
