//! How a guest run ended, and the exit status each ending maps to. Every
//! status wedge itself chooses is defined here and nowhere else.

use crate::limits::{MemoryGrowFailed, MemoryLimitExceeded};
use std::time::Duration;
use wasmtime::{Trap, WasmBacktrace};

/// Exit status when wedge itself fails (bad input, link error).
pub const EXIT_ERROR: i32 = 1;
/// Exit status of a usage error (bad flag); clap uses it too.
pub const EXIT_USAGE: i32 = 2;
/// Exit status when `--timeout` stopped the guest, as `timeout(1)` uses.
pub const EXIT_TIMEOUT: i32 = 124;
/// Exit status of a trap: 128 + SIGABRT, as Wasmtime's CLI uses.
pub const EXIT_TRAP: i32 = 134;
/// Exit status when `--fuel` ran out: 128 + SIGXCPU, the signal the kernel
/// sends a process that used up its CPU-time limit.
pub const EXIT_FUEL: i32 = 152;

/// The end of a guest's run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The guest exited (returned from `_start`/`run`, or called `proc_exit`).
    Exited(i32),
    /// The guest trapped.
    Trapped {
        message: String,
        backtrace: Vec<String>,
    },
    /// The guest trapped because it outgrew its memory limit
    /// (`--trap-on-grow-failure`).
    MemoryLimit {
        message: String,
        backtrace: Vec<String>,
    },
    /// The wall-clock deadline passed.
    TimedOut(Duration),
    /// The fuel budget ran out.
    OutOfFuel(u64),
}

impl Outcome {
    /// The process exit status this outcome maps to.
    pub fn exit_status(&self) -> i32 {
        match self {
            Outcome::Exited(code) => *code,
            Outcome::Trapped { .. } | Outcome::MemoryLimit { .. } => EXIT_TRAP,
            Outcome::TimedOut(_) => EXIT_TIMEOUT,
            Outcome::OutOfFuel(_) => EXIT_FUEL,
        }
    }

    /// A short machine-readable name, used in statistics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Exited(_) => "exit",
            Outcome::Trapped { .. } => "trap",
            Outcome::MemoryLimit { .. } => "memory-limit",
            Outcome::TimedOut(_) => "timeout",
            Outcome::OutOfFuel(_) => "fuel",
        }
    }

    /// What the guest did wrong, in one line, if it did.
    pub fn message(&self) -> Option<String> {
        match self {
            Outcome::Exited(_) => None,
            Outcome::Trapped { message, .. } | Outcome::MemoryLimit { message, .. } => {
                Some(message.clone())
            }
            Outcome::TimedOut(d) => Some(format!(
                "timed out: the guest was stopped after {}",
                crate::units::format_duration(*d)
            )),
            Outcome::OutOfFuel(n) => Some(format!(
                "out of fuel: the guest used up its budget of {n} units"
            )),
        }
    }

    /// The wasm backtrace of a trap, one frame per line.
    pub fn backtrace(&self) -> &[String] {
        match self {
            Outcome::Trapped { backtrace, .. } | Outcome::MemoryLimit { backtrace, .. } => {
                backtrace
            }
            _ => &[],
        }
    }

    /// Classifies the error a guest call returned. Errors that are not about
    /// the guest (host failures) come back as `Err`.
    /// `module` names frames of a module that carries no name of its own.
    pub fn from_error(
        err: wasmtime::Error,
        module: &str,
        timeout: Option<Duration>,
        fuel: Option<u64>,
    ) -> Result<Outcome, wasmtime::Error> {
        if let Some(exit) = err.downcast_ref::<wasmtime_wasi::I32Exit>() {
            return Ok(Outcome::Exited(exit.0));
        }
        let backtrace = err
            .downcast_ref::<WasmBacktrace>()
            .map(|bt| format_backtrace(bt, module))
            .unwrap_or_default();
        if err.is::<MemoryLimitExceeded>() || err.is::<MemoryGrowFailed>() {
            let message = err
                .chain()
                .find(|e| e.is::<MemoryLimitExceeded>() || e.is::<MemoryGrowFailed>())
                .map(|e| e.to_string())
                .unwrap_or_else(|| err.to_string());
            return Ok(Outcome::MemoryLimit { message, backtrace });
        }
        match err.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => Ok(Outcome::TimedOut(timeout.unwrap_or_default())),
            Some(Trap::OutOfFuel) => Ok(Outcome::OutOfFuel(fuel.unwrap_or_default())),
            Some(trap) => Ok(Outcome::Trapped {
                message: trap.to_string(),
                backtrace,
            }),
            None if !backtrace.is_empty() => Ok(Outcome::Trapped {
                message: format!("{err:#}")
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
                backtrace,
            }),
            None => Err(err),
        }
    }
}

/// Formats each frame as `#N 0xOFFSET module!function`.
/// At most this many frames are kept; deep recursion would print thousands.
const MAX_FRAMES: usize = 32;

fn format_backtrace(bt: &WasmBacktrace, default_module: &str) -> Vec<String> {
    let frames = bt.frames();
    let mut out: Vec<String> = frames
        .iter()
        .take(MAX_FRAMES)
        .enumerate()
        .map(|(i, frame)| {
            let module = frame.module().name().unwrap_or(default_module);
            let func = match frame.func_name() {
                Some(name) => name.to_string(),
                None => format!("<func {}>", frame.func_index()),
            };
            match frame.module_offset() {
                Some(off) => format!("#{i} 0x{off:x} {module}!{func}"),
                None => format!("#{i} {module}!{func}"),
            }
        })
        .collect();
    if frames.len() > MAX_FRAMES {
        out.push(format!("... {} more frames", frames.len() - MAX_FRAMES));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_distinct() {
        let all = [
            Outcome::Trapped {
                message: String::new(),
                backtrace: vec![],
            }
            .exit_status(),
            Outcome::TimedOut(Duration::ZERO).exit_status(),
            Outcome::OutOfFuel(0).exit_status(),
            EXIT_ERROR,
            EXIT_USAGE,
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(Outcome::Exited(7).exit_status(), 7);
    }

    #[test]
    fn classifies_wasi_exit_and_traps() {
        let exit = wasmtime::Error::new(wasmtime_wasi::I32Exit(3));
        assert_eq!(
            Outcome::from_error(exit, "m", None, None).unwrap(),
            Outcome::Exited(3)
        );
        let fuel = wasmtime::Error::new(Trap::OutOfFuel);
        assert_eq!(
            Outcome::from_error(fuel, "m", None, Some(10)).unwrap(),
            Outcome::OutOfFuel(10)
        );
        let host = wasmtime::format_err!("disk on fire");
        assert!(Outcome::from_error(host, "m", None, None).is_err());
    }
}
