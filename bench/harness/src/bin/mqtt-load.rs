//! mqtt-load: publishes sensor events to an MQTT broker at a fixed rate (or
//! as fast as the broker takes them) and reads the function's replies, to
//! measure events per second and end-to-end latency (publish to reply) of an
//! MQTT trigger. Each payload carries its send time; the event guest echoes
//! the payload in its reply (`{"payload": "..."}`), or, with `--image W H`,
//! each payload is a PPM image and the reply a PGM thumbnail that carries the
//! sequence number and send time in its comment line.
//!
//! Usage: mqtt-load --port 1883 --count 20000 [--rate 5000] [--image 320 240]

use anyhow::{Context, Result, bail};
use clap::Parser;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 1883)]
    port: u16,
    /// Events to publish.
    #[arg(long, default_value_t = 10_000)]
    count: u64,
    /// Events per second (0: as fast as the broker acknowledges them).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    #[arg(long, default_value = "sensors/7/reading")]
    topic: String,
    #[arg(long, default_value = "results/#")]
    replies: String,
    /// Bytes of each JSON event (about).
    #[arg(long, default_value_t = 200)]
    size: usize,
    /// Publish W x H PPM images instead of JSON events.
    #[arg(long, num_args = 2)]
    image: Option<Vec<u32>>,
    /// Seconds to wait for the last replies.
    #[arg(long, default_value_t = 60)]
    wait: u64,
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// A sensor reading of about `size` bytes: sequence, send time, readings.
fn event(seq: u64, size: usize) -> Vec<u8> {
    let mut s = format!(
        "{{\"seq\":{seq},\"sent\":{},\"sensor\":\"s-7\",\"temperature\":21.5,\"humidity\":48.2,\"pad\":\"",
        now_nanos()
    );
    while s.len() + 2 < size {
        s.push('x');
    }
    s.push_str("\"}");
    s.into_bytes()
}

/// A W x H binary PPM with a gradient; its comment carries seq and time.
fn image(seq: u64, w: u32, h: u32) -> Vec<u8> {
    let mut out = format!("P6\n# seq={seq} sent={}\n{w} {h}\n255\n", now_nanos()).into_bytes();
    for y in 0..h {
        for x in 0..w {
            out.extend([
                (x * 255 / w) as u8,
                (y * 255 / h) as u8,
                ((x + y + seq as u32) % 256) as u8,
            ]);
        }
    }
    out
}

/// The send time in a reply: `"sent":N` (escaped inside the echo's
/// payload string) or `sent=N` in a thumbnail's comment.
fn sent_of(reply: &[u8]) -> Option<u128> {
    let text = String::from_utf8_lossy(&reply[..reply.len().min(512)]);
    let i = text.find("sent")? + 4;
    let digits: String = text[i..]
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let id = std::process::id();
    let mut sub_opts = MqttOptions::new(format!("mqtt-load-sub-{id}"), &args.host, args.port);
    sub_opts.set_max_packet_size(Some(64 << 20));
    let (sub, mut sub_loop) = AsyncClient::new(sub_opts, 64);
    sub.subscribe(&args.replies, QoS::AtLeastOnce).await?;
    // Wait for the subscription before publishing.
    loop {
        match sub_loop.poll().await.context("subscriber")? {
            Event::Incoming(Packet::SubAck(_)) => break,
            _ => continue,
        }
    }
    let total = args.count;
    let reader = tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(total as usize);
        let mut first = None;
        let mut last = Instant::now();
        let deadline = Duration::from_secs(args.wait);
        while (latencies.len() as u64) < total {
            let event = match tokio::time::timeout(deadline, sub_loop.poll()).await {
                Ok(Ok(e)) => e,
                Ok(Err(e)) => bail!("subscriber: {e}"),
                Err(_) => break,
            };
            if let Event::Incoming(Packet::Publish(p)) = event {
                let at = now_nanos();
                last = Instant::now();
                first.get_or_insert(last);
                if let Some(sent) = sent_of(&p.payload) {
                    latencies.push((at.saturating_sub(sent)) as f64 / 1e6);
                }
            }
        }
        Ok((latencies, first, last))
    });

    let mut pub_opts = MqttOptions::new(format!("mqtt-load-pub-{id}"), &args.host, args.port);
    pub_opts.set_max_packet_size(Some(64 << 20));
    let (publisher, mut pub_loop) = AsyncClient::new(pub_opts, 1024);
    let acks = tokio::spawn(async move {
        let mut acked = 0u64;
        while acked < total {
            match pub_loop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                Ok(_) => {}
                Err(e) => return Err(anyhow::anyhow!("publisher: {e}")),
            }
        }
        Ok(())
    });
    let start = Instant::now();
    for seq in 0..total {
        if args.rate > 0 {
            let due = start + Duration::from_secs_f64(seq as f64 / args.rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let payload = match &args.image {
            Some(wh) => image(seq, wh[0], wh[1]),
            None => event(seq, args.size),
        };
        publisher
            .publish(&args.topic, QoS::AtLeastOnce, false, payload)
            .await?;
    }
    let published = start.elapsed();
    acks.await??;
    let (mut lat, first, last) = reader.await??;
    lat.sort_by(|a, b| a.total_cmp(b));
    let span = first
        .map_or(Duration::ZERO, |f| last - f)
        .max(Duration::from_millis(1));
    let received = lat.len();
    println!(
        "published {total} in {:.2}s ({:.0}/s); replies {received} ({:.0}/s over {:.2}s); \
         latency ms p50 {:.1} p95 {:.1} p99 {:.1} max {:.1}",
        published.as_secs_f64(),
        total as f64 / published.as_secs_f64(),
        received as f64 / span.as_secs_f64(),
        span.as_secs_f64(),
        percentile(&lat, 0.50),
        percentile(&lat, 0.95),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN),
    );
    if (received as u64) < total {
        bail!("{} replies missing", total - received as u64);
    }
    Ok(())
}
