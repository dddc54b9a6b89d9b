//! Parsing of human-written sizes (`2MiB`, `512KiB`) and durations (`100ms`, `2s`).

use std::time::Duration;

/// Size of one WebAssembly page.
pub const WASM_PAGE: u64 = 64 * 1024;

/// A size or duration flag that could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid {what} `{input}`: {reason} (examples: {examples})")]
pub struct UnitError {
    pub what: &'static str,
    pub input: String,
    pub reason: String,
    pub examples: &'static str,
}

fn split_number(s: &str) -> (&str, &str) {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(s.len());
    (&s[..end], s[end..].trim())
}

/// Parses a byte size such as `2MiB`, `512KiB`, `1GiB`, `65536` or `64KB`.
///
/// Binary (`KiB`, `MiB`, `GiB`) and decimal (`KB`, `MB`, `GB`) suffixes are
/// accepted, case-insensitively; a bare number is bytes.
pub fn parse_size(input: &str) -> Result<u64, UnitError> {
    let err = |reason: &str| UnitError {
        what: "size",
        input: input.to_string(),
        reason: reason.to_string(),
        examples: "65536, 512KiB, 2MiB, 1GiB",
    };
    let s = input.trim();
    let (num, unit) = split_number(s);
    if num.is_empty() {
        return Err(err("expected a number followed by an optional unit"));
    }
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "ki" | "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mi" | "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gi" | "gib" => 1 << 30,
        _ => return Err(err(&format!("unknown unit `{unit}`"))),
    };
    let value: f64 = num
        .replace('_', "")
        .parse()
        .map_err(|_| err("not a number"))?;
    let bytes = value * mult as f64;
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(err("too large"));
    }
    Ok(bytes.round() as u64)
}

/// Rounds a byte count up to whole WebAssembly pages.
pub fn bytes_to_pages(bytes: u64) -> u64 {
    bytes.div_ceil(WASM_PAGE)
}

/// Parses a duration such as `100ms`, `2s`, `1.5s`, `1m`, `250us`.
pub fn parse_duration(input: &str) -> Result<Duration, UnitError> {
    let err = |reason: &str| UnitError {
        what: "duration",
        input: input.to_string(),
        reason: reason.to_string(),
        examples: "250us, 100ms, 2s, 1.5s, 1m",
    };
    let s = input.trim();
    let (num, unit) = split_number(s);
    if num.is_empty() {
        return Err(err("expected a number followed by a unit"));
    }
    let value: f64 = num
        .replace('_', "")
        .parse()
        .map_err(|_| err("not a number"))?;
    let secs_per_unit = match unit {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "" => return Err(err("missing unit (ns, us, ms, s, m, h)")),
        _ => return Err(err(&format!("unknown unit `{unit}`"))),
    };
    Duration::try_from_secs_f64(value * secs_per_unit).map_err(|_| err("out of range"))
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
    fn sizes() {
        assert_eq!(parse_size("2MiB").unwrap(), 2 * 1024 * 1024);
        assert_eq!(parse_size("512KiB").unwrap(), 512 * 1024);
        assert_eq!(parse_size("512kib").unwrap(), 512 * 1024);
        assert_eq!(parse_size("65536").unwrap(), 65536);
        assert_eq!(parse_size("1.5KiB").unwrap(), 1536);
        assert_eq!(parse_size("1GB").unwrap(), 1_000_000_000);
        assert_eq!(parse_size("16_MiB").unwrap(), 16 << 20);
        assert!(
            parse_size("2XB")
                .unwrap_err()
                .to_string()
                .contains("unknown unit `XB`")
        );
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn pages_round_up() {
        assert_eq!(bytes_to_pages(0), 0);
        assert_eq!(bytes_to_pages(1), 1);
        assert_eq!(bytes_to_pages(WASM_PAGE), 1);
        assert_eq!(bytes_to_pages(WASM_PAGE + 1), 2);
        assert_eq!(bytes_to_pages(2 << 20), 32);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("100ms").unwrap(), Duration::from_millis(100));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        let e = parse_duration("10").unwrap_err();
        assert!(e.to_string().contains("missing unit"), "{e}");
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
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
