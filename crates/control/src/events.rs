//! Events accepted asynchronously: stored durably before the client hears
//! 202, delivered from the store (again after a crash), and, when every
//! attempt failed, kept as dead letters to list, replay or discard.

use crate::store::{Error, Store, now};
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

/// Sequence number → [`Stored`] (JSON head, then the body).
const QUEUED: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// Sequence number → [`Stored`] with its [`Failure`].
const DEAD: TableDefinition<u64, &[u8]> = TableDefinition::new("dead_letters");

/// `next` → the next sequence number (numbers are never reused).
const META: TableDefinition<&str, u64> = TableDefinition::new("events_meta");

/// Dead letters kept at most; the oldest go first.
pub const KEEP_DEAD_LETTERS: usize = 10_000;

/// An event to store: its binary-mode headers, in order, and its data.
pub type NewEvent = (Vec<(String, String)>, Vec<u8>);

/// One accepted event: the function it is for, its binary-mode headers and
/// its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub seq: u64,
    pub head: Head,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub function: String,
    /// The `ce-*` and `content-type` headers, in order.
    pub headers: Vec<(String, String)>,
    /// Unix seconds when it was accepted.
    pub accepted: u64,
    /// Unix milliseconds when it was accepted (for the delivery lag).
    #[serde(default)]
    pub accepted_ms: u64,
    /// Set on a dead letter: why its last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub reason: String,
    pub detail: String,
    pub attempts: u32,
    pub at: u64,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn encode(head: &Head, body: &[u8]) -> Vec<u8> {
    let json = serde_json::to_vec(head).expect("a head serialises");
    let mut out = Vec::with_capacity(4 + json.len() + body.len());
    out.extend((json.len() as u32).to_be_bytes());
    out.extend(json);
    out.extend(body);
    out
}

fn decode(seq: u64, bytes: &[u8]) -> Option<Stored> {
    let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let head = serde_json::from_slice(bytes.get(4..4 + len)?).ok()?;
    Some(Stored {
        seq,
        head,
        body: bytes[4 + len..].to_vec(),
    })
}

/// Takes `count` sequence numbers; returns the first. Numbers are never
/// reused, so a dead letter's number names it alone, whatever came before.
fn take_seqs(tx: &redb::WriteTransaction, count: u64) -> Result<u64, redb::Error> {
    let mut meta = tx.open_table(META)?;
    let first = meta.get("next")?.map_or(1, |v| v.value());
    meta.insert("next", first + count)?;
    Ok(first)
}

impl Store {
    /// Stores events for `function` in one durable transaction; returns
    /// their sequence numbers.
    pub fn accept_events(&self, function: &str, events: &[NewEvent]) -> Result<Vec<Stored>, Error> {
        self.write(|tx| {
            let first = take_seqs(tx, events.len() as u64)?;
            let mut table = tx.open_table(QUEUED)?;
            let mut out = Vec::with_capacity(events.len());
            for (seq, (headers, body)) in (first..).zip(events) {
                let head = Head {
                    function: function.to_string(),
                    headers: headers.clone(),
                    accepted: now(),
                    accepted_ms: now_ms(),
                    failure: None,
                };
                table.insert(seq, encode(&head, body).as_slice())?;
                out.push(Stored {
                    seq,
                    head,
                    body: body.clone(),
                });
            }
            Ok(out)
        })
    }

    /// Every event accepted and not yet delivered, oldest first.
    pub fn queued_events(&self) -> Result<Vec<Stored>, Error> {
        self.read(QUEUED, usize::MAX, |_| true)
    }

    /// The event was delivered: forget it.
    pub fn delivered(&self, seq: u64) -> Result<(), Error> {
        self.write(|tx| {
            tx.open_table(QUEUED)?.remove(seq)?;
            Ok(())
        })
    }

    /// Every attempt failed: the event becomes a dead letter (the oldest
    /// dead letters go beyond [`KEEP_DEAD_LETTERS`]).
    pub fn dead_letter(&self, seq: u64, failure: Failure) -> Result<(), Error> {
        self.write(|tx| {
            let mut queued = tx.open_table(QUEUED)?;
            let Some(bytes) = queued.remove(seq)? else {
                return Ok(());
            };
            let Some(mut event) = decode(seq, bytes.value()) else {
                return Ok(());
            };
            drop(bytes);
            event.head.failure = Some(failure);
            let mut dead = tx.open_table(DEAD)?;
            dead.insert(seq, encode(&event.head, &event.body).as_slice())?;
            while dead.len()? as usize > KEEP_DEAD_LETTERS {
                dead.pop_first()?;
            }
            Ok(())
        })
    }

    /// The oldest `limit` dead letters (of `function`, when given).
    pub fn dead_letters(&self, function: Option<&str>, limit: usize) -> Result<Vec<Stored>, Error> {
        self.read(DEAD, limit, |e| {
            function.is_none_or(|f| e.head.function == f)
        })
    }

    /// Queues dead letter `seq` again (under a new sequence number, its
    /// failure cleared); `None` when there is no such dead letter.
    pub fn replay(&self, seq: u64) -> Result<Option<Stored>, Error> {
        self.write(|tx| {
            let event = {
                let mut dead = tx.open_table(DEAD)?;
                let Some(bytes) = dead.remove(seq)? else {
                    return Ok(None);
                };
                decode(seq, bytes.value())
            };
            let Some(mut event) = event else {
                return Ok(None);
            };
            event.seq = take_seqs(tx, 1)?;
            event.head.failure = None;
            event.head.accepted = now();
            event.head.accepted_ms = now_ms();
            tx.open_table(QUEUED)?
                .insert(event.seq, encode(&event.head, &event.body).as_slice())?;
            Ok(Some(event))
        })
    }

    /// Forgets dead letter `seq`; false when there is none.
    pub fn discard(&self, seq: u64) -> Result<bool, Error> {
        self.write(|tx| Ok(tx.open_table(DEAD)?.remove(seq)?.is_some()))
    }

    /// The first `limit` rows of `table` that `keep` takes, oldest first.
    fn read(
        &self,
        table: TableDefinition<u64, &[u8]>,
        limit: usize,
        keep: impl Fn(&Stored) -> bool,
    ) -> Result<Vec<Stored>, Error> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = match tx.open_table(table) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(self.err(e)),
        };
        let mut out = Vec::new();
        for row in t.iter().map_err(|e| self.err(e))? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = row.map_err(|e| self.err(e))?;
            if let Some(event) = decode(k.value(), v.value()).filter(|e| keep(e)) {
                out.push(event);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str) -> (Vec<(String, String)>, Vec<u8>) {
        (
            vec![("ce-id".into(), id.into())],
            format!("data {id}").into_bytes(),
        )
    }

    #[test]
    fn accepted_events_survive_reopening_until_delivered_or_dead_lettered() {
        let dir = tempfile::tempdir().unwrap();
        let seqs: Vec<u64> = {
            let s = Store::open(dir.path()).unwrap();
            let stored = s
                .accept_events("f", &[event("a"), event("b"), event("c")])
                .unwrap();
            stored.iter().map(|e| e.seq).collect()
        };
        assert_eq!(seqs, [1, 2, 3]);
        let s = Store::open(dir.path()).unwrap();
        let queued = s.queued_events().unwrap();
        assert_eq!(queued.len(), 3);
        assert_eq!(queued[1].body, b"data b");
        assert_eq!(queued[1].head.headers[0].1, "b");
        s.delivered(1).unwrap();
        let failure = Failure {
            reason: "status-400".into(),
            detail: "the function answered 400".into(),
            attempts: 1,
            at: 7,
        };
        s.dead_letter(2, failure.clone()).unwrap();
        assert_eq!(s.queued_events().unwrap().len(), 1);
        let dead = s.dead_letters(None, 10).unwrap();
        assert!(s.dead_letters(Some("g"), 10).unwrap().is_empty());
        assert_eq!(
            (dead[0].seq, dead[0].head.failure.as_ref()),
            (2, Some(&failure))
        );
        // Replayed under a new number, after every other.
        let again = s.replay(2).unwrap().unwrap();
        assert_eq!(again.seq, 4);
        assert_eq!(again.head.failure, None);
        assert!(s.dead_letters(None, 10).unwrap().is_empty());
        assert_eq!(s.replay(2).unwrap(), None);
        s.dead_letter(4, failure).unwrap();
        assert!(s.discard(4).unwrap());
        assert!(!s.discard(4).unwrap());
        let next = s.accept_events("f", &[event("d")]).unwrap();
        assert_eq!(next[0].seq, 5, "numbers are never reused");
    }
}
