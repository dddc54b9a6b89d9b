//! The consuming connection, written by hand over rumqttc's MQTT 5 codec.
//!
//! Why not rumqttc's event loop: it reads and writes in one task, so a
//! consumer that stops reading (to hold a broker back) also stops writing its
//! acknowledgements, and while it reads it writes one queued acknowledgement
//! per turn against up to ten messages read. With a broker that ignores the
//! Receive Maximum (Debian's mosquitto 2.0.11 does) the acknowledgements fell
//! far behind the handling: thousands of handled messages were unacknowledged
//! at any moment, so a crash handled them again and a burst slowed the next
//! minute (bench/results/mqtt-2026-11-30.md). Here reading and writing are
//! apart: the reader stops while `max_in_flight` messages are being handled,
//! and the writer sends every acknowledgement as soon as it is due, and the
//! keep-alive pings, whatever the reader is doing.

use crate::connection::{backoff, failed, tls};
use crate::context::{Acks, Context};
use crate::dispatch::dispatch;
use bytes::BytesMut;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{
    ConnAck, Connect, ConnectProperties, ConnectReturnCode, Disconnect, DisconnectReasonCode,
    Filter, Login, Packet, PingReq, PubAck, RetainForwardRule, Subscribe, SubscribeReasonCode,
    Unsubscribe,
};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use wedge_manifest::mqtt::MqttTrigger;
use wedge_observe::log;

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

type Conn = Box<dyn Stream>;

/// Largest packet wedge accepts: the message plus room for its topic and
/// properties.
fn max_packet(t: &MqttTrigger) -> u32 {
    t.max_message_size.saturating_add(64 << 10)
}

/// Keeps the consuming connection up and hands its messages to [`dispatch`].
pub async fn consuming(ctx: Arc<Context>) {
    let t = &ctx.trigger;
    let mut failures = 0u32;
    let mut had_session = false;
    let mut stop = ctx.stop.subscribe();
    loop {
        let connected = tokio::select! {
            c = connect(t) => c,
            _ = stop.wait_for(Option::is_some) => return,
        };
        let (conn, ack, buf) = match connected {
            Ok(c) => c,
            Err(e) => {
                failures += 1;
                failed(&ctx, "in", &t.client_id, false, failures, &e);
                tokio::select! {
                    _ = tokio::time::sleep(backoff(failures)) => continue,
                    _ = stop.wait_for(Option::is_some) => return,
                }
            }
        };
        ctx.series.connections("in", "ok").inc();
        ctx.series.connected.set(1);
        ctx.connected.store(true, Ordering::Relaxed);
        let session = if ack.session_present {
            "session resumed"
        } else {
            "new session"
        };
        let msg = format!(
            "mqtt trigger connected to {} as {} ({session})",
            t.broker, t.client_id
        );
        log::line("info", "-", &t.function, &msg);
        if had_session && !ack.session_present {
            let msg = format!(
                "broker {} had lost the session of {}: messages it held for wedge are gone; \
                 give the broker persistence to keep them across its restarts",
                t.broker, t.client_id
            );
            log::line("warn", "-", &t.function, &msg);
        }
        had_session = true;
        let ended = serve(&ctx, conn, buf).await;
        *ctx.acks.lock().expect("acks lock") = None;
        ctx.series.connected.set(0);
        ctx.connected.store(false, Ordering::Relaxed);
        let Err(e) = ended else {
            return; // stopped
        };
        failures = 1;
        failed(&ctx, "in", &t.client_id, true, failures, &e);
        tokio::select! {
            _ = tokio::time::sleep(backoff(failures)) => {}
            _ = stop.wait_for(Option::is_some) => return,
        }
    }
}

/// Opens the connection (TCP, TLS, CONNECT) and reads the CONNACK; returns
/// with it what was read past it (a resumed session's resends can follow the
/// CONNACK in the same segment).
async fn connect(t: &MqttTrigger) -> Result<(Conn, ConnAck, BytesMut), String> {
    let limit = Duration::from_secs(10);
    let addr = (t.broker.host.as_str(), t.broker.port);
    let tcp = tokio::time::timeout(limit, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| "connecting timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let mut conn: Conn = if t.broker.tls {
        let name = rustls::pki_types::ServerName::try_from(t.broker.host.clone())
            .map_err(|e| format!("broker name {}: {e}", t.broker.host))?;
        let tls = tokio_rustls::TlsConnector::from(tls(t)?);
        let stream = tokio::time::timeout(limit, tls.connect(name, tcp))
            .await
            .map_err(|_| "the TLS handshake timed out".to_string())?
            .map_err(|e| format!("TLS: {e}"))?;
        Box::new(stream)
    } else {
        Box::new(tcp)
    };
    let properties = ConnectProperties {
        session_expiry_interval: Some(
            t.session_expiry.as_secs().min(u64::from(u32::MAX - 1)) as u32
        ),
        receive_maximum: Some(t.max_in_flight),
        max_packet_size: Some(max_packet(t)),
        ..ConnectProperties::new()
    };
    let login = match &t.username {
        Some(user) => {
            let password = match &t.password {
                Some(p) => p.read()?,
                None => String::new(),
            };
            Some(Login::new(user.clone(), password))
        }
        None => None,
    };
    let connect = Connect {
        keep_alive: t.keep_alive.as_secs().min(u64::from(u16::MAX)) as u16,
        client_id: t.client_id.clone(),
        clean_start: false,
        properties: Some(properties),
    };
    write(&mut conn, &Packet::Connect(connect, None, login)).await?;
    let mut buf = BytesMut::with_capacity(4096);
    let packet = tokio::time::timeout(limit, read(&mut conn, &mut buf, max_packet(t)))
        .await
        .map_err(|_| "no CONNACK within 10s".to_string())??;
    match packet {
        Packet::ConnAck(ack) if ack.code == ConnectReturnCode::Success => Ok((conn, ack, buf)),
        Packet::ConnAck(ack) => Err(format!("the broker refused the connection: {:?}", ack.code)),
        other => Err(format!("expected CONNACK, got {other:?}")),
    }
}

/// Serves one connection until it fails (`Err`) or the trigger stops
/// (`Ok`, after draining): subscribes, then reads messages while a writer
/// task sends acknowledgements and pings.
async fn serve(ctx: &Arc<Context>, conn: Conn, buf: BytesMut) -> Result<(), String> {
    let t = &ctx.trigger;
    let (mut reader, mut writer) = tokio::io::split(conn);
    let qos = if t.qos == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    };
    let filters = t.topics.iter().map(|topic| {
        let mut f = Filter::new(topic, qos);
        // Retained messages come with a new subscription only, not again at
        // every reconnect.
        f.retain_forward_rule = RetainForwardRule::OnNewSubscribe;
        f
    });
    let mut subscribe = Subscribe::new_many(filters, None);
    subscribe.pkid = 1;
    write(&mut writer, &Packet::Subscribe(subscribe)).await?;
    let (acks, due) = mpsc::unbounded_channel();
    *ctx.acks.lock().expect("acks lock") = Some(acks.clone());
    let keep_alive = t.keep_alive;
    let mut writing = tokio::spawn(write_loop(writer, due, keep_alive, ctx.clone()));
    let reading = read_loop(ctx, &mut reader, buf, &acks);
    let mut stop = ctx.stop.subscribe();
    let grace = tokio::select! {
        e = reading => {
            writing.abort();
            return Err(e);
        }
        e = &mut writing => return Err(e.unwrap_or_else(|e| e.to_string())),
        grace = stop.wait_for(Option::is_some) => grace.map_or(Duration::ZERO, |g| g.unwrap_or_default()),
    };
    // Stopping: no more reading; the messages being handled finish within
    // the grace and are acknowledged; the rest stay with the broker.
    let deadline = tokio::time::Instant::now() + grace;
    loop {
        let idle = ctx.idle.notified();
        tokio::pin!(idle);
        idle.as_mut().enable();
        if ctx.series.in_flight_now() == 0 {
            break;
        }
        if tokio::time::timeout_at(deadline, idle).await.is_err() {
            let msg = format!(
                "mqtt trigger {}: {} message(s) still being handled after the grace of {}s; \
                 the broker will send them again",
                t.client_id,
                ctx.series.in_flight_now(),
                grace.as_secs_f64()
            );
            log::line("warn", "-", &t.function, &msg);
            break;
        }
    }
    // The writer sends what acknowledgements are left, then DISCONNECT.
    *ctx.acks.lock().expect("acks lock") = None;
    drop(acks);
    let _ = tokio::time::timeout(Duration::from_secs(5), &mut writing).await;
    writing.abort();
    // Read on until the broker closes: a socket closed with unread data is
    // reset, and a reset can discard the acknowledgements still in flight.
    let mut sink = vec![0u8; 64 << 10];
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while matches!(reader.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
    Ok(())
}

/// Sends acknowledgements as they become due, all that are waiting at once,
/// and a ping every half keep-alive.
async fn write_loop(
    mut w: WriteHalf<Conn>,
    mut due: mpsc::UnboundedReceiver<u16>,
    keep_alive: Duration,
    ctx: Arc<Context>,
) -> String {
    let mut ping = tokio::time::interval(keep_alive / 2);
    ping.tick().await;
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        tokio::select! {
            pkid = due.recv() => {
                let Some(pkid) = pkid else {
                    // Stopping: every acknowledgement is out; drop the
                    // subscriptions the manifest no longer has, and leave
                    // cleanly (the session stays with the broker).
                    let gone = std::mem::take(&mut *ctx.unsubscribe.lock().expect("unsubscribe lock"));
                    if !gone.is_empty() {
                        let unsubscribe = Unsubscribe { pkid: 2, filters: gone, properties: None };
                        let _ = write(&mut w, &Packet::Unsubscribe(unsubscribe)).await;
                    }
                    let bye = Disconnect::new(DisconnectReasonCode::NormalDisconnection);
                    let _ = write(&mut w, &Packet::Disconnect(bye)).await;
                    let _ = w.shutdown().await;
                    return "the trigger stopped".into();
                };
                buf.clear();
                let mut next = Some(pkid);
                while let Some(pkid) = next {
                    if let Err(e) = Packet::PubAck(PubAck::new(pkid, None)).write(&mut buf, None) {
                        return format!("cannot encode PUBACK: {e:?}");
                    }
                    next = due.try_recv().ok();
                }
                if let Err(e) = w.write_all(&buf).await {
                    return e.to_string();
                }
            }
            _ = ping.tick() => {
                if let Err(e) = write(&mut w, &Packet::PingReq(PingReq)).await {
                    return e;
                }
            }
        }
    }
}

/// Reads packets and dispatches messages; waiting in [`dispatch`] for a
/// slot stops reading, which holds the broker back. Without a packet (a
/// ping's answer at least) for twice the keep-alive, the connection is dead.
async fn read_loop(
    ctx: &Arc<Context>,
    r: &mut ReadHalf<Conn>,
    mut buf: BytesMut,
    acks: &Acks,
) -> String {
    let t = &ctx.trigger;
    let silence = t.keep_alive * 2;
    loop {
        let packet = match tokio::time::timeout(silence, read(r, &mut buf, max_packet(t))).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return e,
            Err(_) => return format!("nothing from the broker for {}s", silence.as_secs()),
        };
        match packet {
            Packet::Publish(p) => dispatch(ctx, acks, p).await,
            Packet::SubAck(ack) => {
                for (code, filter) in ack.return_codes.iter().zip(&t.topics) {
                    if matches!(code, SubscribeReasonCode::Success(_)) {
                        let msg = format!("mqtt trigger {} subscribed to {filter}", t.client_id);
                        log::line("info", "-", &t.function, &msg);
                    } else {
                        let msg = format!(
                            "broker {} refused the subscription to {filter}: {code:?}",
                            t.broker
                        );
                        log::line("error", "-", &t.function, &msg);
                    }
                }
            }
            Packet::Disconnect(d) => {
                return format!("the broker disconnected: {:?}", d.reason_code);
            }
            _ => {}
        }
    }
}

async fn write(w: &mut (impl AsyncWrite + Unpin), packet: &Packet) -> Result<(), String> {
    let mut buf = BytesMut::with_capacity(256);
    packet
        .write(&mut buf, None)
        .map_err(|e| format!("cannot encode {packet:?}: {e:?}"))?;
    w.write_all(&buf).await.map_err(|e| e.to_string())
}

/// Reads one packet, at most `max` bytes.
async fn read(
    r: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
    max: u32,
) -> Result<Packet, String> {
    loop {
        match Packet::read(buf, Some(max)) {
            Ok(p) => return Ok(p),
            Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(n)) => buf.reserve(n),
            Err(e) => return Err(format!("bad packet from the broker: {e:?}")),
        }
        match r.read_buf(buf).await {
            Ok(0) => return Err("the broker closed the connection".into()),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}
