//! MQTT triggers (`[[trigger.mqtt]]`): a broker, the topics to subscribe to,
//! the function each message goes to, and how delivery is retried and
//! dead-lettered.

use crate::units::{Dur, Size};
use serde::Deserialize;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// The most messages a trigger may have in flight (MQTT's Receive Maximum is
/// 16 bits; far fewer is sensible on an edge node).
pub const MAX_IN_FLIGHT_LIMIT: u16 = 4096;
/// The most delivery attempts a retry policy may ask for.
pub const MAX_ATTEMPTS: u32 = 100;

/// One MQTT trigger, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttTrigger {
    pub broker: Broker,
    /// Stable, so the broker keeps the session (and its unacknowledged
    /// messages) across restarts.
    pub client_id: String,
    /// Topic filters, wildcards and `$share/GROUP/…` allowed.
    pub topics: Vec<String>,
    /// 0 (at most once) or 1 (at least once).
    pub qos: u8,
    pub function: String,
    /// Messages being handled or waiting for their acknowledgement at once;
    /// sent to the broker as MQTT 5's Receive Maximum.
    pub max_in_flight: u16,
    pub retry: Retry,
    pub dead_letter_topic: Option<String>,
    /// Where the function's response is published (a message's own MQTT 5
    /// Response Topic wins).
    pub reply_topic: Option<String>,
    /// The `ce-type` of events built from messages.
    pub event_type: String,
    /// The content type of a message that does not say (MQTT 5's Content Type).
    pub content_type: String,
    /// Largest message accepted (MQTT 5's Maximum Packet Size).
    pub max_message_size: u32,
    pub keep_alive: Duration,
    /// How long the broker keeps the session while wedge is away.
    pub session_expiry: Duration,
    pub username: Option<String>,
    pub password: Option<Secret>,
}

/// Where a broker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub host: String,
    pub port: u16,
    /// `mqtts://`: TLS, verified against the system's roots or `ca_file`.
    pub tls: bool,
    pub ca_file: Option<PathBuf>,
}

/// `mqtt BROKER as CLIENT_ID: TOPICS -> FUNCTION`, as `wedge check` and
/// `wedge serve` list a trigger.
impl std::fmt::Display for MqttTrigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "mqtt {} as {}: {} -> {}",
            self.broker,
            self.client_id,
            self.topics.join(" "),
            self.function
        )
    }
}

impl std::fmt::Display for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

/// A password, read when the trigger connects (so a rotated file is picked up
/// at the next connection).
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Env(String),
    File(PathBuf),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Env(v) => write!(f, "env {v}"),
            Secret::File(p) => write!(f, "file {}", p.display()),
        }
    }
}

impl Secret {
    pub fn read(&self) -> Result<String, String> {
        match self {
            Secret::Env(var) => std::env::var(var)
                .map_err(|_| format!("the environment variable {var} (password_env) is not set")),
            Secret::File(path) => std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
                .map_err(|e| format!("cannot read {} (password_file): {e}", path.display())),
        }
    }
}

/// How failed deliveries are retried before a message is dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// Deliveries at most, the first included.
    pub attempts: u32,
    pub backoff: Backoff,
    pub delay: Duration,
    pub max_delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 3,
            backoff: Backoff::Exponential,
            delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl Retry {
    /// The wait before delivery `attempt` (2 for the first retry), before
    /// jitter.
    pub fn delay_before(&self, attempt: u32) -> Duration {
        let n = attempt.saturating_sub(1).max(1);
        let d = match self.backoff {
            Backoff::Constant => self.delay,
            Backoff::Linear => self.delay.saturating_mul(n),
            Backoff::Exponential => self.delay.saturating_mul(1u32 << (n - 1).min(20)),
        };
        d.min(self.max_delay)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backoff {
    Constant,
    Linear,
    Exponential,
}

/// `[trigger]`: the triggers besides HTTP routes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTriggers {
    #[serde(default)]
    pub mqtt: Vec<Spanned<RawMqtt>>,
}

/// A `[[trigger.mqtt]]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMqtt {
    pub broker: Option<Spanned<String>>,
    pub client_id: Option<Spanned<String>>,
    pub topics: Option<Vec<Spanned<String>>>,
    pub qos: Option<Spanned<u8>>,
    pub function: Option<Spanned<String>>,
    pub max_in_flight: Option<Spanned<u32>>,
    pub retry: Option<Spanned<RawRetry>>,
    pub dead_letter_topic: Option<Spanned<String>>,
    pub reply_topic: Option<Spanned<String>>,
    pub event_type: Option<Spanned<String>>,
    pub content_type: Option<Spanned<String>>,
    pub max_message_size: Option<Spanned<Size>>,
    pub keep_alive: Option<Spanned<Dur>>,
    pub session_expiry: Option<Spanned<Dur>>,
    pub ca_file: Option<Spanned<String>>,
    pub username: Option<Spanned<String>>,
    pub password_env: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    pub attempts: Option<u32>,
    pub backoff: Option<Backoff>,
    pub delay: Option<Dur>,
    pub max_delay: Option<Dur>,
}

pub type Error = (Range<usize>, String);

/// Resolves one trigger; `base` is the manifest's folder, `functions` the
/// names of the app's functions.
pub fn resolve(
    raw: &Spanned<RawMqtt>,
    base: &Path,
    functions: &[&str],
) -> Result<MqttTrigger, Error> {
    let table = raw.span();
    let r = raw.get_ref();
    let err = |span: Range<usize>, msg: String| (span, msg);
    let function = r.function.as_ref().ok_or_else(|| {
        err(
            table.clone(),
            "this [[trigger.mqtt]] has no `function` (the function each message goes to)".into(),
        )
    })?;
    if !functions.contains(&function.get_ref().as_str()) {
        return Err(err(
            function.span(),
            format!(
                "no function named `{}`: the trigger's `function` must name a [[function]] (have: {})",
                function.get_ref(),
                functions.join(", ")
            ),
        ));
    }
    let broker_text = r.broker.as_ref().ok_or_else(|| {
        err(
            table.clone(),
            "this [[trigger.mqtt]] has no `broker`: add e.g. broker = \"mqtt://127.0.0.1:1883\""
                .into(),
        )
    })?;
    let mut broker = parse_broker(broker_text.get_ref()).map_err(|e| err(broker_text.span(), e))?;
    if let Some(ca) = &r.ca_file {
        if !broker.tls {
            return Err(err(
                ca.span(),
                "ca_file needs a TLS broker: write mqtts://".into(),
            ));
        }
        let path = base.join(ca.get_ref());
        if !path.is_file() {
            return Err(err(
                ca.span(),
                format!(
                    "`{}` not found (looked for {}; paths are relative to the manifest)",
                    ca.get_ref(),
                    path.display()
                ),
            ));
        }
        broker.ca_file = Some(path);
    }
    let topics = r.topics.as_ref().filter(|t| !t.is_empty()).ok_or_else(|| {
        err(
            table.clone(),
            "this [[trigger.mqtt]] has no `topics`: add e.g. topics = [\"sensors/+/reading\"]"
                .into(),
        )
    })?;
    let mut filters = Vec::new();
    for t in topics {
        check_filter(t.get_ref()).map_err(|e| err(t.span(), e))?;
        if filters.contains(t.get_ref()) {
            return Err(err(
                t.span(),
                format!("topic `{}` is listed twice", t.get_ref()),
            ));
        }
        filters.push(t.get_ref().clone());
    }
    let qos = match &r.qos {
        None => 1,
        Some(q) if *q.get_ref() <= 1 => *q.get_ref(),
        Some(q) => {
            return Err(err(
                q.span(),
                format!(
                    "qos {} is not supported: use 1 (at least once: a message is acknowledged only after it \
                     was handled or dead-lettered) or 0 (at most once)",
                    q.get_ref()
                ),
            ));
        }
    };
    let max_in_flight = match &r.max_in_flight {
        None => 16,
        Some(m) if (1..=u32::from(MAX_IN_FLIGHT_LIMIT)).contains(m.get_ref()) => {
            *m.get_ref() as u16
        }
        Some(m) => {
            return Err(err(
                m.span(),
                format!(
                    "max_in_flight must be 1 to {MAX_IN_FLIGHT_LIMIT}, not {}",
                    m.get_ref()
                ),
            ));
        }
    };
    let retry = match &r.retry {
        Some(rr) => resolve_retry(rr)?,
        None => Retry::default(),
    };
    let publish_topic = |t: &Option<Spanned<String>>, key: &str| -> Result<Option<String>, Error> {
        match t {
            None => Ok(None),
            Some(t) => {
                check_topic(t.get_ref()).map_err(|e| err(t.span(), format!("{key}: {e}")))?;
                if filters.iter().any(|f| matches(f, t.get_ref())) {
                    return Err(err(
                        t.span(),
                        format!(
                            "{key} `{}` matches the trigger's own topics: its messages would come back to it",
                            t.get_ref()
                        ),
                    ));
                }
                Ok(Some(t.get_ref().clone()))
            }
        }
    };
    let dead_letter_topic = publish_topic(&r.dead_letter_topic, "dead_letter_topic")?;
    let reply_topic = publish_topic(&r.reply_topic, "reply_topic")?;
    let client_id = match &r.client_id {
        Some(c) => {
            let v = c.get_ref();
            if v.is_empty()
                || v.len() > 128
                || !v
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                return Err(err(
                    c.span(),
                    format!(
                        "invalid client_id `{v}`: use 1 to 128 letters, digits, `-`, `_` and `.`"
                    ),
                ));
            }
            v.clone()
        }
        None => default_client_id(function.get_ref()),
    };
    let header_value =
        |v: &Option<Spanned<String>>, key: &str, default: &str| -> Result<String, Error> {
            match v {
                None => Ok(default.to_string()),
                Some(s)
                    if !s.get_ref().is_empty()
                        && s.get_ref().len() <= 256
                        && s.get_ref().bytes().all(|b| b.is_ascii_graphic()) =>
                {
                    Ok(s.get_ref().clone())
                }
                Some(s) => Err(err(
                    s.span(),
                    format!(
                        "invalid {key} `{}`: use up to 256 visible ASCII characters, no spaces",
                        s.get_ref()
                    ),
                )),
            }
        };
    let event_type = header_value(&r.event_type, "event_type", "dev.wedge.mqtt.message")?;
    let content_type = header_value(&r.content_type, "content_type", "application/octet-stream")?;
    let max_message_size = match &r.max_message_size {
        None => 1 << 20,
        Some(s) if (1024..=256 << 20).contains(&s.get_ref().0) => s.get_ref().0 as u32,
        Some(s) => {
            return Err(err(
                s.span(),
                "max_message_size must be 1KiB to 256MiB".into(),
            ));
        }
    };
    let keep_alive = match &r.keep_alive {
        None => Duration::from_secs(30),
        Some(k)
            if k.get_ref().0 >= Duration::from_secs(5)
                && k.get_ref().0 <= Duration::from_secs(65535) =>
        {
            k.get_ref().0
        }
        Some(k) => return Err(err(k.span(), "keep_alive must be 5s to 65535s".into())),
    };
    let session_expiry = match &r.session_expiry {
        None => Duration::from_secs(7 * 24 * 3600),
        Some(s)
            if s.get_ref().0 >= Duration::from_secs(1)
                && s.get_ref().0.as_secs() < u64::from(u32::MAX) =>
        {
            s.get_ref().0
        }
        Some(s) => {
            return Err(err(
                s.span(),
                "session_expiry must be at least 1s (the broker keeps unacknowledged messages that long while wedge is away)".into(),
            ));
        }
    };
    let username = r.username.as_ref().map(|u| u.get_ref().clone());
    let password = match (&r.password_env, &r.password_file) {
        (Some(a), Some(_)) => {
            return Err(err(
                a.span(),
                "give password_env or password_file, not both".into(),
            ));
        }
        (Some(v), None) => Some(Secret::Env(v.get_ref().clone())),
        (None, Some(f)) => Some(Secret::File(base.join(f.get_ref()))),
        (None, None) => None,
    };
    if password.is_some() && username.is_none() {
        let span = r
            .password_env
            .as_ref()
            .or(r.password_file.as_ref())
            .map(Spanned::span)
            .unwrap_or(table);
        return Err(err(span, "a password needs a `username`".into()));
    }
    Ok(MqttTrigger {
        broker,
        client_id,
        topics: filters,
        qos,
        function: function.get_ref().clone(),
        max_in_flight,
        retry,
        dead_letter_topic,
        reply_topic,
        event_type,
        content_type,
        max_message_size,
        keep_alive,
        session_expiry,
        username,
        password,
    })
}

/// Resolves a written retry policy.
pub fn resolve_retry(rr: &Spanned<RawRetry>) -> Result<Retry, Error> {
    let v = rr.get_ref();
    let d = Retry::default();
    let retry = Retry {
        attempts: v.attempts.unwrap_or(d.attempts),
        backoff: v.backoff.unwrap_or(d.backoff),
        delay: v.delay.map_or(d.delay, |x| x.0),
        max_delay: v.max_delay.map_or(d.max_delay, |x| x.0),
    };
    if !(1..=MAX_ATTEMPTS).contains(&retry.attempts) {
        return Err((
            rr.span(),
            format!(
                "retry attempts must be 1 to {MAX_ATTEMPTS} (deliveries, the first included), not {}",
                retry.attempts
            ),
        ));
    }
    if retry.max_delay < retry.delay {
        return Err((rr.span(), "retry max_delay must be at least delay".into()));
    }
    Ok(retry)
}

/// `wedge-HOST-FUNCTION`: stable across restarts of one node, distinct
/// between nodes.
fn default_client_id(function: &str) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into());
    let clean: String = format!("wedge-{host}-{function}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    clean.chars().take(128).collect()
}

fn parse_broker(s: &str) -> Result<Broker, String> {
    let bad = |why: &str| {
        format!(
            "invalid broker `{s}`: {why}; expected e.g. \"mqtt://127.0.0.1:1883\" or \"mqtts://broker.example:8883\""
        )
    };
    let (tls, rest) = if let Some(r) = s.strip_prefix("mqtt://") {
        (false, r)
    } else if let Some(r) = s.strip_prefix("mqtts://") {
        (true, r)
    } else {
        return Err(bad("the scheme must be mqtt:// or mqtts://"));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '@', '?', '#']) {
        return Err(bad(
            "give only host and port (credentials go in username and password_env or password_file)",
        ));
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| bad("an IPv6 address needs its closing `]`"))?;
        (h, after.strip_prefix(':'))
    } else if rest.matches(':').count() > 1 {
        return Err(bad(
            "write an IPv6 address in brackets, e.g. mqtt://[::1]:1883",
        ));
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| bad("the port must be a number from 1 to 65535"))?,
        None => {
            if tls {
                8883
            } else {
                1883
            }
        }
    };
    let host = host.to_string();
    if host.is_empty() {
        return Err(bad("no host"));
    }
    Ok(Broker {
        host,
        port,
        tls,
        ca_file: None,
    })
}

/// Checks a subscription filter: `+` and `#` take a whole level, `#` only the
/// last; `$share/GROUP/FILTER` subscribes as one of a group.
fn check_filter(f: &str) -> Result<(), String> {
    let inner = match f.strip_prefix("$share/") {
        Some(rest) => {
            let (group, filter) = rest.split_once('/').ok_or_else(|| {
                format!("invalid shared subscription `{f}`: expected $share/GROUP/FILTER")
            })?;
            if group.is_empty() || group.contains(['+', '#']) {
                return Err(format!(
                    "invalid shared subscription `{f}`: the group is a plain name"
                ));
            }
            filter
        }
        None => f,
    };
    if inner.is_empty() || inner.len() > 1024 || inner.contains('\0') {
        return Err(format!(
            "invalid topic filter `{f}`: 1 to 1024 bytes, no NUL"
        ));
    }
    let levels: Vec<&str> = inner.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        let wild = level.contains(['+', '#']);
        if wild && level.len() != 1 {
            return Err(format!(
                "invalid topic filter `{f}`: `+` and `#` must be a whole level, as in sensors/+/reading or sensors/#"
            ));
        }
        if *level == "#" && i + 1 != levels.len() {
            return Err(format!(
                "invalid topic filter `{f}`: `#` may only be the last level"
            ));
        }
    }
    Ok(())
}

/// Checks a topic to publish to: no wildcards.
fn check_topic(t: &str) -> Result<(), String> {
    if t.is_empty() || t.len() > 1024 || t.contains(['+', '#', '\0']) || t.starts_with('$') {
        return Err(format!(
            "invalid topic `{t}`: 1 to 1024 bytes, no wildcards (`+`, `#`), not starting with `$`"
        ));
    }
    Ok(())
}

/// Whether `topic` matches the subscription filter `filter`.
pub fn matches(filter: &str, topic: &str) -> bool {
    let filter = match filter.strip_prefix("$share/") {
        Some(rest) => rest.split_once('/').map_or(rest, |(_, f)| f),
        None => filter,
    };
    if topic.starts_with('$') && !filter.starts_with('$') {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brokers_parse_with_default_ports_and_reject_what_is_not_host_and_port() {
        let b = parse_broker("mqtt://127.0.0.1:1884").unwrap();
        assert_eq!((b.host.as_str(), b.port, b.tls), ("127.0.0.1", 1884, false));
        assert_eq!(parse_broker("mqtts://broker.example").unwrap().port, 8883);
        assert_eq!(parse_broker("mqtt://[::1]:9").unwrap().host, "::1");
        assert_eq!(parse_broker("mqtt://host/").unwrap().port, 1883);
        for bad in [
            "tcp://h:1",
            "mqtt://u:p@h:1",
            "mqtt://h:0",
            "mqtt://h:99999",
            "mqtt://::1",
            "mqtt://",
            "mqtt://h/x",
        ] {
            assert!(parse_broker(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_and_topics_follow_mqtt_rules() {
        for good in ["a/b", "a/+/c", "#", "a/#", "+", "$share/g/a/+", "/a"] {
            check_filter(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in ["a/b+", "a/#/c", "a#", "", "$share/g", "$share/+/a"] {
            assert!(check_filter(bad).is_err(), "{bad}");
        }
        assert!(check_topic("dlq/x").is_ok());
        for bad in ["a/+", "a/#", "", "$SYS/x"] {
            assert!(check_topic(bad).is_err(), "{bad}");
        }
        assert!(matches("sensors/+/image", "sensors/a/image"));
        assert!(!matches("sensors/+/image", "sensors/a/b/image"));
        assert!(matches("sensors/#", "sensors"));
        assert!(matches("$share/g/a/#", "a/b"));
        assert!(!matches("#", "$SYS/x"));
        assert!(!matches("a/b", "a/b/c"));
    }

    #[test]
    fn backoff_grows_as_asked_and_stops_at_max_delay() {
        let ms = Duration::from_millis;
        let mut r = Retry {
            attempts: 9,
            backoff: Backoff::Exponential,
            delay: ms(100),
            max_delay: ms(1000),
        };
        let waits: Vec<_> = (2..=7).map(|a| r.delay_before(a)).collect();
        assert_eq!(
            waits,
            [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]
        );
        r.backoff = Backoff::Linear;
        assert_eq!(r.delay_before(4), ms(300));
        r.backoff = Backoff::Constant;
        assert_eq!(r.delay_before(9), ms(100));
        assert_eq!(r.delay_before(60), ms(100));
    }
}
