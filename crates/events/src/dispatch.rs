//! From arrival to acknowledgement: each message gets a slot and a task
//! that runs [`deliver`]; acknowledgements leave in arrival order.

use crate::context::{Acks, Context};
use crate::deliver::deliver;
use crate::event::Message;
use crate::order::Arrival;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Publish;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};
use wedge_observe::log;

/// Messages held for their in-order acknowledgement, per `max_in_flight`,
/// before the consumer stops reading (a message at the head may be slow
/// while those behind it finish).
const HELD_PER_SLOT: usize = 16;

/// Hands a message to its own task once a slot is free. Waiting here stops
/// the consuming connection from reading, which holds the broker back.
pub(crate) async fn dispatch(ctx: &Arc<Context>, acks: &Acks, p: Publish) {
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
                let _ = acks.send(p.pkid);
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
        let waited = SystemTime::now()
            .duration_since(msg.received)
            .unwrap_or_default();
        ctx.series.lag.observe(waited.as_secs_f64());
        ctx.series.in_flight.inc();
        let end = deliver(&ctx, &msg).await;
        ctx.series.ended(end, start.elapsed());
        drop(permit);
        if let Some(seq) = seq {
            acknowledge(&ctx, seq);
        }
        // Only now: a stopping trigger waits for this before it closes the
        // acknowledgements.
        ctx.series.in_flight.dec();
        ctx.idle.notify_waiters();
    });
}

/// Marks message `seq` handled and acknowledges every message that is now
/// first in arrival order.
fn acknowledge(ctx: &Context, seq: u64) {
    let acks = ctx.acks();
    // Sent under the lock, so that two tasks ending at once cannot swap
    // their acknowledgements.
    let mut order = ctx.order.lock().expect("order lock");
    let ready = order.done(seq);
    if ready.is_empty() {
        return;
    }
    // On the current connection: the session keeps packet ids.
    if let Some(acks) = acks {
        for p in &ready {
            let _ = acks.send(p.pkid);
        }
    }
    drop(order);
    ctx.room.notify_one();
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
