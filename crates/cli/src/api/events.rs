//! `/v1/events/dead-letters`: the asynchronous CloudEvents that no attempt
//! delivered, to list, replay (queued for delivery again) or discard.

use super::{Api, Reply, error, reply};
use base64::Engine;
use http::StatusCode;
use serde_json::json;

/// Dead letters one listing returns at most (`?limit=N`, default this).
const MAX_LIST: usize = 100;

impl Api {
    pub(super) fn dead_letters(&self, query: &str) -> Reply {
        let Some(ingress) = &self.ingress else {
            return reply(StatusCode::OK, json!({ "dead_letters": [] }));
        };
        let function = super::param(query, "function");
        let limit = match super::param(query, "limit").map(str::parse::<usize>) {
            None => MAX_LIST,
            Some(Ok(n)) if (1..=MAX_LIST).contains(&n) => n,
            Some(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("limit must be a number from 1 to {MAX_LIST}"),
                );
            }
        };
        let all = match ingress.dead_letters(function, limit) {
            Ok(all) => all,
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
        };
        let items: Vec<_> = all
            .iter()
            .map(|d| {
                let headers: serde_json::Map<_, _> = d
                    .head
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), json!(v)))
                    .collect();
                json!({
                    "seq": d.seq,
                    "function": d.head.function,
                    "accepted": d.head.accepted,
                    "headers": headers,
                    "data_base64": base64::engine::general_purpose::STANDARD.encode(&d.body),
                    "failure": d.head.failure,
                })
            })
            .collect();
        reply(StatusCode::OK, json!({ "dead_letters": items }))
    }

    pub(super) fn replay(&self, seq: &str) -> Reply {
        let Some(seq) = parse_seq(seq) else {
            return error(
                StatusCode::BAD_REQUEST,
                format!("`{seq}` is not a dead letter's number"),
            );
        };
        match self.ingress.as_ref().map(|i| i.replay(seq)) {
            Some(Ok(Some(new))) => {
                reply(StatusCode::ACCEPTED, json!({ "replayed": seq, "seq": new }))
            }
            Some(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
            _ => error(StatusCode::NOT_FOUND, format!("no dead letter #{seq}")),
        }
    }

    pub(super) fn discard(&self, seq: &str) -> Reply {
        let Some(seq) = parse_seq(seq) else {
            return error(
                StatusCode::BAD_REQUEST,
                format!("`{seq}` is not a dead letter's number"),
            );
        };
        match self.ingress.as_ref().map(|i| i.discard(seq)) {
            Some(Ok(true)) => reply(StatusCode::OK, json!({ "discarded": seq })),
            Some(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
            _ => error(StatusCode::NOT_FOUND, format!("no dead letter #{seq}")),
        }
    }
}

fn parse_seq(s: &str) -> Option<u64> {
    s.parse().ok().filter(|n| *n > 0)
}
