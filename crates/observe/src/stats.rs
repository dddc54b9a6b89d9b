//! What one guest call cost: time, memory and fuel, as logs, spans and the
//! `x-wedge-stats` header report it.

/// What one guest call cost.
#[derive(Clone, Copy, Debug, Default)]
pub struct GuestStats {
    /// Instantiation and execution.
    pub guest: std::time::Duration,
    /// Peak linear memory, when known by the time the response is ready.
    pub peak_memory: Option<u64>,
    /// Instantiation alone, when measured separately.
    pub instantiate: Option<std::time::Duration>,
    /// Fuel consumed, when metering is on.
    pub fuel: Option<u64>,
    /// On-CPU time of the guest's own code, when its function has a
    /// `cpu_time` budget (only then is it metered).
    pub cpu: Option<std::time::Duration>,
}

impl GuestStats {
    /// The `x-wedge-stats` header value: `instantiate=12us;exec=80us;mem=65536;fuel=1234`.
    pub fn header(&self) -> String {
        let mut parts = Vec::with_capacity(4);
        let total = self.guest.as_micros();
        if let Some(i) = self.instantiate {
            let i = i.as_micros();
            parts.push(format!("instantiate={i}us"));
            parts.push(format!("exec={}us", total.saturating_sub(i)));
        } else {
            parts.push(format!("guest={total}us"));
        }
        if let Some(m) = self.peak_memory {
            parts.push(format!("mem={m}"));
        }
        if let Some(f) = self.fuel {
            parts.push(format!("fuel={f}"));
        }
        if let Some(c) = self.cpu {
            parts.push(format!("cpu={}us", c.as_micros()));
        }
        parts.join(";")
    }
}
