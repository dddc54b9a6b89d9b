//! Sizes and durations: parsing (shared with the manifest), pages, and formatting for humans.

use std::time::Duration;

/// Size of one WebAssembly page.
pub const WASM_PAGE: u64 = 64 * 1024;

pub use wedge_manifest::units::{parse_duration, parse_size};

/// Rounds a byte count up to whole WebAssembly pages.
pub fn bytes_to_pages(bytes: u64) -> u64 {
    bytes.div_ceil(WASM_PAGE)
}

/// Formats a byte count for humans (`1.5 MiB`).
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Formats a duration for humans with a sensible unit (`412 µs`, `3.2 ms`).
pub fn format_duration(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 1e6 {
        format!("{} ms", trim(format!("{:.2}", us / 1e3)))
    } else {
        format!("{} s", trim(format!("{:.3}", us / 1e6)))
    }
}

fn trim(s: String) -> String {
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_round_up() {
        assert_eq!(bytes_to_pages(0), 0);
        assert_eq!(bytes_to_pages(1), 1);
        assert_eq!(bytes_to_pages(WASM_PAGE), 1);
        assert_eq!(bytes_to_pages(WASM_PAGE + 1), 2);
        assert_eq!(bytes_to_pages(2 << 20), 32);
    }

    #[test]
    fn formatting() {
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(2 << 20), "2.0 MiB");
        assert_eq!(format_duration(Duration::from_micros(412)), "412 µs");
        assert_eq!(format_duration(Duration::from_micros(3200)), "3.2 ms");
        assert_eq!(format_duration(Duration::from_millis(200)), "200 ms");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5 s");
    }
}
