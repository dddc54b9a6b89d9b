//! The MQTT trigger: per `[[trigger.mqtt]]`, a consuming connection (MQTT 5,
//! a persistent session under the stable client id, manual
//! acknowledgements) that subscribes and hands each message to
//! [`dispatch`](crate::dispatch),
//! and a publishing connection (`CLIENT_ID-out`, a clean session) for
//! replies and dead letters ([`connection`](crate::connection)).
//!
//! At least once: a QoS 1 message is acknowledged only after its function
//! succeeded (and its reply was confirmed) or it was safely dead-lettered,
//! in arrival order. Until then the broker holds it, and sends it again when
//! wedge reconnects or restarts. Concurrency is bounded twice:
//! `max_in_flight` is sent as MQTT 5's Receive Maximum, and since brokers do
//! not all honour it (Debian's mosquitto 2.0.11 does not), the consuming
//! connection stops reading while `max_in_flight` messages are being handled,
//! so the broker keeps the rest queued. Publishing on a connection of its own
//! means a paused consumer never holds up the replies and dead letters that
//! end the messages in flight.

use crate::confirm::Publisher;
use crate::context::{Context, Series};
use crate::order::Order;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use wedge_executor::invocation::Peer;
use wedge_manifest::mqtt::MqttTrigger;
use wedge_trigger::pipeline::Pipeline;
use wedge_trigger::table::Shared;

/// A running trigger.
pub struct Handle {
    pub context: Arc<Context>,
    consumer: tokio::task::JoinHandle<()>,
    publisher: tokio::task::JoinHandle<()>,
}

impl Handle {
    /// Stops the trigger: it reads no more messages, lets those being handled
    /// finish within `grace` and acknowledges them, then disconnects. The
    /// broker keeps the session, and with it every message not acknowledged;
    /// `unsubscribe` lists filters to leave first (a reload dropped them).
    pub async fn stop(self, grace: std::time::Duration, unsubscribe: Vec<String>) {
        *self.context.unsubscribe.lock().expect("unsubscribe lock") = unsubscribe;
        let _ = self.context.stop.send(Some(grace));
        let bound = grace + std::time::Duration::from_secs(6);
        let _ = tokio::time::timeout(bound, self.consumer).await;
        self.publisher.abort();
    }
}

/// Starts `trigger`: connects (and keeps reconnecting) and delivers its
/// messages to functions of `table` through `pipeline`.
pub fn start(trigger: MqttTrigger, table: Shared, pipeline: Pipeline) -> Handle {
    let ip = trigger
        .broker
        .host
        .parse::<IpAddr>()
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let slots = usize::from(trigger.max_in_flight);
    let context = Arc::new(Context {
        series: Series::new(pipeline.metrics.clone(), &trigger),
        slots: Arc::new(tokio::sync::Semaphore::new(slots)),
        room: tokio::sync::Notify::new(),
        flooded: AtomicBool::new(false),
        peer: Peer {
            remote: SocketAddr::new(ip, trigger.broker.port),
            local: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            tls: false,
        },
        trigger,
        table,
        pipeline,
        publisher: Publisher::default(),
        acks: Mutex::new(None),
        order: Mutex::new(Order::default()),
        connected: AtomicBool::new(false),
        stop: tokio::sync::watch::Sender::new(None),
        idle: tokio::sync::Notify::new(),
        unsubscribe: Mutex::new(Vec::new()),
    });
    let publisher = tokio::spawn(crate::connection::publishing(context.clone()));
    let consumer = tokio::spawn(crate::consumer::consuming(context.clone()));
    Handle {
        context,
        consumer,
        publisher,
    }
}

/// The MQTT triggers of a server: started from the manifest, changed by a
/// reload (a trigger whose settings changed is stopped, drained, and started
/// again), and stopped with the server.
pub struct Triggers {
    table: Shared,
    pipeline: Pipeline,
    running: tokio::sync::Mutex<Vec<Handle>>,
}

impl Triggers {
    pub fn new(table: Shared, pipeline: Pipeline) -> Arc<Triggers> {
        Arc::new(Triggers {
            table,
            pipeline,
            running: tokio::sync::Mutex::new(Vec::new()),
        })
    }

    /// Runs exactly `wanted`: stops the triggers not in it (draining them
    /// within `grace`), then starts the new ones. Returns how many stopped and
    /// started.
    pub async fn apply(
        &self,
        wanted: &[MqttTrigger],
        grace: std::time::Duration,
    ) -> (usize, usize) {
        let mut running = self.running.lock().await;
        let (keep, stop): (Vec<Handle>, Vec<Handle>) = running
            .drain(..)
            .partition(|h| wanted.contains(&h.context.trigger));
        let stopped = stop.len();
        // Stopped first: a changed trigger keeps its client id, and a broker
        // allows one connection per client id. The session outlives the
        // connection, so the filters the manifest dropped are unsubscribed.
        let stops = stop.into_iter().map(|h| {
            let old = &h.context.trigger;
            let kept: &[String] = wanted
                .iter()
                .find(|t| t.client_id == old.client_id && t.broker == old.broker)
                .map_or(&[], |t| &t.topics);
            let gone = old
                .topics
                .iter()
                .filter(|f| !kept.contains(f))
                .cloned()
                .collect();
            h.stop(grace, gone)
        });
        join_all(stops).await;
        *running = keep;
        let mut started = 0;
        for t in wanted {
            if !running.iter().any(|h| h.context.trigger == *t) {
                running.push(start(t.clone(), self.table.clone(), self.pipeline.clone()));
                started += 1;
            }
        }
        (stopped, started)
    }

    /// Stops every trigger, draining each within `grace`.
    pub async fn stop_all(&self, grace: std::time::Duration) {
        let all: Vec<Handle> = self.running.lock().await.drain(..).collect();
        join_all(all.into_iter().map(|h| h.stop(grace, Vec::new()))).await;
    }
}

/// Runs the futures at once and waits for all.
async fn join_all(
    stops: impl Iterator<Item = impl std::future::Future<Output = ()> + Send + 'static>,
) {
    let mut set: tokio::task::JoinSet<()> = stops.collect();
    while set.join_next().await.is_some() {}
}

impl wedge_trigger::status::Status for Triggers {
    fn json(&self) -> String {
        let items: Vec<String> = match self.running.try_lock() {
            Ok(running) => running.iter().map(|h| h.context.json()).collect(),
            // A reload is changing them this instant.
            Err(_) => Vec::new(),
        };
        format!("[{}]", items.join(","))
    }
}
