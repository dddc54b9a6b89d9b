//! The publishing connection (rumqttc; a clean session, replaced whole after
//! any failure, so that no publish it held is silently dropped: see
//! [`confirm`](crate::confirm)), and what both connections share: options,
//! TLS, reconnect backoff and the logging of failures. The consuming
//! connection is in `consumer.rs`.

use crate::context::Context;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use rumqttc::{Outgoing, TlsConfiguration, Transport};
use std::sync::Arc;
use std::time::Duration;
use wedge_manifest::mqtt::MqttTrigger;
use wedge_observe::log;

/// The publishing connection: a clean session of its own.
fn publisher_options(t: &MqttTrigger) -> Result<MqttOptions, String> {
    let mut o = common(t, &format!("{}-out", t.client_id))?;
    o.set_clean_start(true);
    Ok(o)
}

/// Broker, keep-alive, credentials (read at each connection, so a rotated
/// password file is picked up) and TLS.
fn common(t: &MqttTrigger, client_id: &str) -> Result<MqttOptions, String> {
    let mut o = MqttOptions::new(client_id, &t.broker.host, t.broker.port);
    o.set_keep_alive(t.keep_alive).set_connection_timeout(10);
    if let Some(user) = &t.username {
        let password = match &t.password {
            Some(p) => p.read()?,
            None => String::new(),
        };
        o.set_credentials(user, password);
    }
    if t.broker.tls {
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls(
            t,
        )?)));
    }
    Ok(o)
}

/// TLS with rustls (ring): the system's roots, or only `ca_file`'s.
pub(crate) fn tls(t: &MqttTrigger) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match &t.broker.ca_file {
        Some(path) => {
            let bad = |e: &dyn std::fmt::Display| format!("ca_file {}: {e}", path.display());
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))? {
                roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    if roots.is_empty() {
        return Err("no CA certificates to verify the broker with (give ca_file)".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Reconnect waits: 100 ms doubling to 30 s, less up to a fifth of jitter.
pub(crate) fn backoff(failures: u32) -> Duration {
    let base = Duration::from_millis(100) * (1 << (failures.clamp(1, 10) - 1));
    let base = base.min(Duration::from_secs(30));
    base - base.mul_f64(fastrand::f64() * 0.2)
}

/// Logs a connection failure: every loss, and the 1st, 2nd, 4th, 8th...
/// failed attempt in a row, so an outage does not flood the log.
pub(crate) fn failed(
    ctx: &Context,
    which: &str,
    client_id: &str,
    up: bool,
    failures: u32,
    e: &dyn std::fmt::Display,
) {
    let t = &ctx.trigger;
    if up {
        ctx.series.connections(which, "lost").inc();
        let msg = format!(
            "mqtt connection {client_id} to {} lost: {e}; reconnecting",
            t.broker
        );
        log::line("warn", "-", &t.function, &msg);
    } else {
        ctx.series.connections(which, "failed").inc();
        if failures.is_power_of_two() {
            let msg = format!(
                "mqtt connection {client_id} to {} failed ({failures}x): {e}",
                t.broker
            );
            log::line("warn", "-", &t.function, &msg);
        }
    }
}

/// Keeps the publishing connection up. After any failure the client is
/// replaced: the publishes it held fail and their callers publish again.
pub async fn publishing(ctx: Arc<Context>) {
    let t = &ctx.trigger;
    let id = format!("{}-out", t.client_id);
    let mut failures = 0u32;
    loop {
        let options = match publisher_options(t) {
            Ok(o) => o,
            Err(e) => {
                log::line(
                    "error",
                    "-",
                    &t.function,
                    &format!("mqtt trigger {id}: {e}"),
                );
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        let (client, mut events) = AsyncClient::new(options, usize::from(t.max_in_flight) * 2 + 16);
        ctx.publisher.replace(client);
        let mut up = false;
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    (up, failures) = (true, 0);
                    ctx.series.connections("out", "ok").inc();
                }
                Ok(Event::Incoming(Packet::PubAck(ack))) => ctx.publisher.acknowledged(&ack),
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => ctx.publisher.sent(pkid),
                Ok(Event::Outgoing(Outgoing::AwaitAck(pkid))) => ctx.publisher.collided(pkid),
                Ok(_) => {}
                Err(e) => {
                    failures += 1;
                    failed(&ctx, "out", &id, up, failures, &e);
                    break;
                }
            }
        }
        ctx.publisher.disconnect();
        tokio::time::sleep(backoff(failures)).await;
    }
}
