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
    pub task: tokio::task::JoinHandle<()>,
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
        },
        trigger,
        table,
        pipeline,
        publisher: Publisher::default(),
        acks: Mutex::new(None),
        order: Mutex::new(Order::default()),
        connected: AtomicBool::new(false),
    });
    tokio::spawn(crate::connection::publishing(context.clone()));
    let task = tokio::spawn(crate::consumer::consuming(context.clone()));
    Handle { context, task }
}
