//! The MQTT trigger: per `[[trigger.mqtt]]`, a consuming connection (MQTT 5,
//! a persistent session under the stable client id, manual
//! acknowledgements) that subscribes and hands each message to [`deliver`],
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
use crate::deliver::{End, deliver};
use crate::event::Message;
use crate::order::{Arrival, Order};
use rumqttc::v5::AsyncClient;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Publish;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use wedge_executor::invocation::Peer;
use wedge_manifest::mqtt::MqttTrigger;
use wedge_observe::log;
use wedge_observe::metrics::Metrics;
use wedge_telemetry::metric::{Counter, Gauge};
use wedge_trigger::pipeline::Pipeline;
use wedge_trigger::table::Shared;

/// Messages held for their in-order acknowledgement, per `max_in_flight`,
/// before the consumer stops reading (a message at the head may be slow
/// while those behind it finish).
const HELD_PER_SLOT: usize = 16;

/// What every message of one trigger shares.
pub struct Context {
    pub trigger: MqttTrigger,
    pub table: Shared,
    pub pipeline: Pipeline,
    pub publisher: Publisher,
    /// The consuming connection's client, for acknowledgements.
    pub(crate) consumer: Mutex<Option<AsyncClient>>,
    order: Mutex<Order>,
    /// Messages being handled at most (`max_in_flight`).
    slots: Arc<tokio::sync::Semaphore>,
    /// Signalled when acknowledgements leave the arrival order.
    room: tokio::sync::Notify,
    /// Whether the broker was seen ignoring the Receive Maximum.
    flooded: AtomicBool,
    /// The broker's end, as functions see the caller.
    pub peer: Peer,
    pub series: Series,
    /// Whether the consuming connection is up, for health.
    pub connected: AtomicBool,
}

/// A trigger's metric series, resolved once.
pub struct Series {
    metrics: Arc<Metrics>,
    labels: [String; 2],
    consumed: Arc<Counter>,
    redelivered: Arc<Counter>,
    in_flight: Arc<Gauge>,
    pub(crate) connected: Arc<Gauge>,
}

impl Series {
    fn new(metrics: Arc<Metrics>, t: &MqttTrigger) -> Series {
        let m = &metrics.messaging;
        let (id, f) = (t.client_id.as_str(), t.function.as_str());
        let broker = t.broker.to_string();
        Series {
            consumed: m.consumed.with(&["mqtt", id, f, "false"]),
            redelivered: m.consumed.with(&["mqtt", id, f, "true"]),
            in_flight: m.in_flight.with(&["mqtt", id, f]),
            connected: m.connected.with(&["mqtt", id, &broker]),
            labels: [t.client_id.clone(), t.function.clone()],
            metrics,
        }
    }

    pub fn deliveries(&self, result: &str) -> Arc<Counter> {
        let [id, f] = &self.labels;
        self.metrics
            .messaging
            .deliveries
            .with(&["mqtt", id, f, result])
    }

    pub fn dead_letter(&self, reason: &str) -> Arc<Counter> {
        let [id, f] = &self.labels;
        self.metrics
            .messaging
            .dead_letters
            .with(&["mqtt", id, f, reason])
    }

    /// Connection attempts and losses; `connection` is `in` or `out`.
    pub(crate) fn connections(&self, connection: &str, result: &str) -> Arc<Counter> {
        let [id, _] = &self.labels;
        self.metrics
            .messaging
            .connections
            .with(&["mqtt", id, connection, result])
    }

    fn ended(&self, end: End, took: Duration) {
        let [id, f] = &self.labels;
        self.metrics
            .messaging
            .process_duration
            .with(&["mqtt", id, f, end.name()])
            .observe(took.as_secs_f64());
    }
}

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
        consumer: Mutex::new(None),
        order: Mutex::new(Order::default()),
        connected: AtomicBool::new(false),
    });
    tokio::spawn(crate::connection::publishing(context.clone()));
    let task = tokio::spawn(crate::connection::consuming(context.clone()));
    Handle { context, task }
}

/// Hands a message to its own task once a slot is free. Waiting here stops
/// the consuming connection from reading, which holds the broker back.
pub(crate) async fn dispatch(ctx: &Arc<Context>, client: &AsyncClient, p: Publish) {
    let msg = message(&p);
    if p.dup {
        &ctx.series.redelivered
    } else {
        &ctx.series.consumed
    }
    .inc();
    let seq = if p.qos == QoS::AtMostOnce {
        None
    } else {
        let arrival = ctx.order.lock().expect("order lock").arrive(p.clone());
        match arrival {
            Arrival::Handle(seq) => Some(seq),
            Arrival::Joined => return,
            Arrival::AckAgain => {
                let _ = client.ack(&p).await;
                return;
            }
        }
    };
    let max = usize::from(ctx.trigger.max_in_flight);
    let held = ctx.order.lock().expect("order lock").len();
    if held > max && !ctx.flooded.swap(true, Ordering::Relaxed) {
        log::line(
            "warn",
            "-",
            &ctx.trigger.function,
            &format!(
                "broker {} sends more unacknowledged messages than the Receive Maximum ({max}) of {}; \
                 wedge reads from it more slowly instead, so the rest stay queued at the broker",
                ctx.trigger.broker, ctx.trigger.client_id
            ),
        );
    }
    // A slow message at the head holds the acknowledgements behind it: stop
    // reading while too many wait.
    while ctx.order.lock().expect("order lock").len() > max * HELD_PER_SLOT {
        ctx.room.notified().await;
    }
    let Ok(permit) = ctx.slots.clone().acquire_owned().await else {
        return;
    };
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let start = Instant::now();
        ctx.series.in_flight.inc();
        let end = deliver(&ctx, &msg).await;
        ctx.series.ended(end, start.elapsed());
        ctx.series.in_flight.dec();
        drop(permit);
        if let Some(seq) = seq {
            acknowledge(&ctx, seq).await;
        }
    });
}

/// Marks message `seq` handled and acknowledges every message that is now
/// first in arrival order.
async fn acknowledge(ctx: &Context, seq: u64) {
    let ready = ctx.order.lock().expect("order lock").done(seq);
    if ready.is_empty() {
        return;
    }
    ctx.room.notify_one();
    if let Some(client) = ctx.consumer() {
        for p in &ready {
            // On the current connection: the session keeps packet ids.
            let _ = client.ack(p).await;
        }
    }
}

impl Context {
    /// The consuming connection's client.
    fn consumer(&self) -> Option<AsyncClient> {
        self.consumer.lock().expect("consumer lock").clone()
    }
}

fn message(p: &Publish) -> Message {
    let props = p.properties.as_ref();
    Message {
        topic: String::from_utf8_lossy(&p.topic).into_owned(),
        payload: p.payload.clone(),
        user_properties: props.map(|p| p.user_properties.clone()).unwrap_or_default(),
        content_type: props.and_then(|p| p.content_type.clone()),
        response_topic: props.and_then(|p| p.response_topic.clone()),
        correlation_data: props.and_then(|p| p.correlation_data.clone()),
        received: SystemTime::now(),
    }
}
