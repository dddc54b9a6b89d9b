//! Guest profiling from live traffic (`POST /profile` on the admin
//! listener). While a session runs, every epoch tick of the function's
//! instances takes a sample: into Wasmtime's `GuestProfiler` (a Firefox
//! profiler document) and into folded stacks for flamegraph tools.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use wasmtime::component::Component;
use wasmtime::{AsContext, Engine, GuestProfiler, Module, WasmBacktrace};

struct Session {
    profiler: GuestProfiler,
    folded: HashMap<String, u64>,
    last: Instant,
}

/// A function's profiling state; idle unless a session runs.
#[derive(Default)]
pub struct Profiling {
    active: AtomicBool,
    session: Mutex<Option<Session>>,
}

/// What is profiled: a WAGI module or a `wasi:http` component.
#[derive(Clone, Copy)]
pub enum Code<'a> {
    Module(&'a Module),
    Component(&'a Component),
}

impl Code<'_> {
    /// The engine the code was compiled for.
    pub fn engine(&self) -> &Engine {
        match self {
            Code::Module(m) => m.engine(),
            Code::Component(c) => c.engine(),
        }
    }
}

/// What a finished session produced.
pub struct Profile {
    /// Firefox profiler (processed format) JSON.
    pub json: Vec<u8>,
    /// `frame;frame;frame count` lines, root first.
    pub folded: String,
    pub samples: u64,
}

impl Profiling {
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// Starts a session for `code`; `Err` if one is already running.
    pub fn start(
        &self,
        engine: &Engine,
        name: &str,
        code: Code<'_>,
        interval: Duration,
    ) -> Result<(), String> {
        let mut s = self.session.lock().unwrap_or_else(|e| e.into_inner());
        if s.is_some() {
            return Err(format!("a profile of `{name}` is already being taken"));
        }
        let profiler = match code {
            Code::Module(m) => {
                GuestProfiler::new(engine, name, interval, [(name.to_string(), m.clone())])
            }
            // Every core module inside the component (guest code, adapter) is profiled.
            Code::Component(c) => {
                GuestProfiler::new_component(engine, name, interval, c.clone(), [])
            }
        }
        .map_err(|e| format!("{e:#}"))?;
        *s = Some(Session {
            profiler,
            folded: HashMap::new(),
            last: Instant::now(),
        });
        self.active.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Takes one sample of the running guest.
    pub fn sample(&self, store: impl AsContext) {
        let mut guard = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let Some(s) = guard.as_mut() else { return };
        let now = Instant::now();
        let delta = now - s.last;
        s.last = now;
        s.profiler.sample(&store, delta);
        let bt = WasmBacktrace::capture(&store);
        let frames: Vec<String> = bt
            .frames()
            .iter()
            .rev()
            .map(|f| match f.func_name() {
                Some(n) => n.replace([';', ' '], "_"),
                None => format!("func{}", f.func_index()),
            })
            .collect();
        if !frames.is_empty() {
            *s.folded.entry(frames.join(";")).or_insert(0) += 1;
        }
    }

    /// Ends the session and returns what it collected.
    pub fn finish(&self) -> Option<Profile> {
        self.active.store(false, Ordering::Relaxed);
        let s = self
            .session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        let samples = s.folded.values().sum();
        let mut lines: Vec<(String, u64)> = s.folded.into_iter().collect();
        lines.sort();
        let folded = lines
            .iter()
            .map(|(stack, n)| format!("{stack} {n}\n"))
            .collect();
        let mut json = Vec::new();
        s.profiler.finish(&mut json).ok()?;
        Some(Profile {
            json,
            folded,
            samples,
        })
    }
}
