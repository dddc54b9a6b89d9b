//! Process metrics read from `/proc/self` (Linux).

use std::sync::OnceLock;

/// Resident set size in bytes.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// User plus system CPU seconds.
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Number of open file descriptors.
pub fn open_fds() -> Option<u64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64)
}

static START: OnceLock<f64> = OnceLock::new();

/// Seconds since the epoch when this was first called (call it at start).
pub fn start_time() -> f64 {
    *START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        assert!(super::resident_bytes().unwrap() > 0);
        assert!(super::cpu_seconds().unwrap() >= 0.0);
        assert!(super::open_fds().unwrap() >= 3);
        assert!(super::start_time() > 1.6e9);
    }
}
