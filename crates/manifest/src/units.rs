//! Sizes (`2MiB`) and durations (`500ms`) as manifest values. Parsing errors
//! surface through serde, so the TOML error carries the value's location.

use serde::de::{self, Deserializer, Visitor};
use std::fmt;
use std::time::Duration;

/// A byte size: a string with a unit (`"16MiB"`) or a plain integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

/// A duration: a string with a unit (`"500ms"`, `"2s"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

fn split(s: &str) -> (&str, &str) {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(s.len());
    (&s[..end], s[end..].trim())
}

/// Parses `2MiB`, `512KiB`, `1GB`, `65536`.
pub fn parse_size(input: &str) -> Result<u64, String> {
    let (num, unit) = split(input.trim());
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "ki" | "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mi" | "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gi" | "gib" => 1 << 30,
        _ => {
            return Err(format!(
                "invalid size `{input}`: unknown unit `{unit}` (allowed: B, KiB, MiB, GiB, KB, MB, GB)"
            ));
        }
    };
    let value: f64 = num.replace('_', "").parse().map_err(|_| {
        format!("invalid size `{input}`: expected a number and a unit, like \"16MiB\"")
    })?;
    Ok((value * mult as f64).round() as u64)
}

/// Parses `250us`, `100ms`, `2s`, `1.5s`, `1m`.
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let (num, unit) = split(input.trim());
    let secs = match unit {
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "" => {
            return Err(format!(
                "invalid duration `{input}`: missing unit (allowed: us, ms, s, m, h), like \"500ms\""
            ));
        }
        _ => {
            return Err(format!(
                "invalid duration `{input}`: unknown unit `{unit}` (allowed: us, ms, s, m, h)"
            ));
        }
    };
    let value: f64 = num.replace('_', "").parse().map_err(|_| {
        format!("invalid duration `{input}`: expected a number and a unit, like \"500ms\"")
    })?;
    Duration::try_from_secs_f64(value * secs).map_err(|_| format!("invalid duration `{input}`"))
}

impl<'de> serde::Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as \"16MiB\" or a number of bytes")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                parse_size(v).map(Size).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> serde::Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as \"500ms\" or \"2s\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                parse_duration(v).map(Dur).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("16MiB").unwrap(), 16 << 20);
        assert_eq!(parse_size("1_000").unwrap(), 1000);
        assert!(
            parse_size("3 parsecs")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("5").unwrap_err().contains("missing unit"));
    }
}
