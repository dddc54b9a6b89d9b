//! Where `wedge serve`'s start-up time goes: phases timed from `main` to
//! listening, printed as one line so that a slow start says why.

use std::time::{Duration, Instant};

/// Where `wedge serve`'s start-up time went, from `main` to listening.
pub struct Startup {
    begun: Instant,
    last: Instant,
    phases: Vec<(&'static str, Duration)>,
}

impl Startup {
    pub fn new() -> Self {
        let now = Instant::now();
        Startup {
            begun: now,
            last: now,
            phases: Vec::new(),
        }
    }

    /// Ends the phase called `name`.
    pub fn mark(&mut self, name: &'static str) {
        let now = Instant::now();
        self.phases.push((name, now - self.last));
        self.last = now;
    }

    /// `ready in 3.10 ms (manifest 0.20, engine 0.90, ...)`.
    pub fn finish(mut self) -> String {
        self.mark("serving");
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let phases: Vec<String> = self
            .phases
            .iter()
            .map(|(name, d)| format!("{name} {:.2}", ms(*d)))
            .collect();
        format!(
            "ready in {:.2} ms ({} ms)",
            ms(self.begun.elapsed()),
            phases.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Startup;

    #[test]
    fn names_each_phase_in_order_and_the_total() {
        let mut s = Startup::new();
        s.mark("engine");
        std::thread::sleep(std::time::Duration::from_millis(2));
        s.mark("functions");
        let line = s.finish();
        assert!(line.starts_with("ready in "), "{line}");
        let engine = line.find("engine ").unwrap();
        let functions = line.find("functions ").unwrap();
        let serving = line.find("serving ").unwrap();
        assert!(engine < functions && functions < serving, "{line}");
        // The total covers the sleep, and so does the functions phase.
        let ms = |after: &str| -> f64 {
            let rest = &line[line.find(after).unwrap() + after.len()..];
            rest.split([' ', ',']).next().unwrap().parse().unwrap()
        };
        assert!(ms("ready in ") >= 2.0, "{line}");
        assert!(ms("functions ") >= 2.0, "{line}");
    }
}
