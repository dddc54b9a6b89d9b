//! A trigger's state as operators see it: the admin listener's
//! `GET /triggers` lists every trigger that is not HTTP (an MQTT trigger's
//! broker connection, messages in flight, dead letters).

/// Something that can say how triggers are doing.
pub trait Status: Send + Sync {
    /// JSON describing the trigger now (an object for one trigger, an
    /// array for a set of them).
    fn json(&self) -> String;
}
