//! A trigger's state as operators see it: the admin listener's
//! `GET /triggers` lists every trigger that is not HTTP (an MQTT trigger's
//! broker connection, messages in flight, dead letters).

/// Something that can say how a trigger is doing.
pub trait Status: Send + Sync {
    /// One JSON object describing the trigger now.
    fn json(&self) -> String;
}
