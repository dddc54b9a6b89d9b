//! Request ids: the client's `x-request-id` when it sends a sane one,
//! otherwise a process-unique id (random prefix + counter, no syscalls).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);
static PREFIX: OnceLock<u32> = OnceLock::new();

fn prefix() -> u32 {
    *PREFIX.get_or_init(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        (t.subsec_nanos() ^ (t.as_secs() as u32).rotate_left(16))
            ^ std::process::id().rotate_left(8)
    })
}

/// A new id such as `5f3a9c01-000000000000002a`.
pub fn generate() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:08x}-{n:016x}", prefix())
}

/// The id to use: the client's if it is printable and short, else a new one.
pub fn from_header(value: Option<&[u8]>) -> String {
    match value {
        Some(v) if !v.is_empty() && v.len() <= 128 && v.iter().all(|b| b.is_ascii_graphic()) => {
            String::from_utf8_lossy(v).into_owned()
        }
        _ => generate(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_sane_client_ids_and_generates_unique_ones() {
        assert_eq!(from_header(Some(b"abc-123")), "abc-123");
        let a = from_header(Some(b"bad id with spaces"));
        let b = from_header(None);
        assert_ne!(a, b);
        assert_eq!(a.len(), 25);
        assert_ne!(from_header(Some(&[b'x'; 500])), "x".repeat(500));
    }
}
