//! The results file: every figure of every round, with its spread.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::stats::Spread;

/// Contender-wide figures use this in place of a workload.
pub const ANY: &str = "-";

#[derive(Debug, Serialize, Deserialize)]
pub struct Results {
    pub date: String,
    pub machine: Machine,
    pub config: Config,
    pub contenders: Vec<ContenderInfo>,
    pub figures: Vec<Figure>,
    pub notes: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub kernel: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Config {
    pub quick: bool,
    pub rounds: usize,
    pub connections: usize,
    pub measure_s: f64,
    pub latency_s: f64,
    pub warmup_s: f64,
    pub inflight_requests: usize,
    pub load_generator: String,
    /// Where the latency runs executed; empty in results from before 2026-12-02,
    /// whose latency runs shared every CPU with the load generator.
    #[serde(default)]
    pub latency_placement: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ContenderInfo {
    pub name: String,
    pub what: String,
    pub version: String,
}

/// One figure: its values per round and their spread.
#[derive(Debug, Serialize, Deserialize)]
pub struct Figure {
    pub contender: String,
    pub workload: String,
    pub metric: String,
    pub spread: Spread,
    pub rounds: Vec<f64>,
}

/// Collects values round after round.
#[derive(Debug, Default)]
pub struct Collector {
    values: BTreeMap<(String, String, String), Vec<f64>>,
    pub notes: Vec<String>,
}

impl Collector {
    pub fn add(&mut self, contender: &str, workload: &str, metric: &str, value: f64) {
        self.values
            .entry((contender.into(), workload.into(), metric.into()))
            .or_default()
            .push(value);
    }

    pub fn note(&mut self, text: String) {
        eprintln!("note: {text}");
        self.notes.push(text);
    }

    pub fn figures(&self) -> Vec<Figure> {
        self.values
            .iter()
            .filter_map(|((c, w, m), v)| {
                Some(Figure {
                    contender: c.clone(),
                    workload: w.clone(),
                    metric: m.clone(),
                    spread: Spread::of(v)?,
                    rounds: v.clone(),
                })
            })
            .collect()
    }
}

impl Results {
    /// The spread of one figure, if measured.
    pub fn get(&self, contender: &str, workload: &str, metric: &str) -> Option<Spread> {
        self.figures
            .iter()
            .find(|f| f.contender == contender && f.workload == workload && f.metric == metric)
            .map(|f| f.spread)
    }

    pub fn median(&self, contender: &str, workload: &str, metric: &str) -> Option<f64> {
        self.get(contender, workload, metric).map(|s| s.median)
    }
}

#[cfg(test)]
impl Results {
    /// A results document for tests: these contenders and the collected figures.
    pub fn for_test(contenders: &[&str], c: Collector) -> Results {
        Results {
            date: "2026-11-23".into(),
            machine: Machine {
                cores: 2,
                cpu: "cpu".into(),
                kernel: "6".into(),
            },
            config: Config {
                quick: false,
                rounds: 3,
                connections: 64,
                measure_s: 10.0,
                latency_s: 5.0,
                warmup_s: 1.0,
                inflight_requests: 200,
                load_generator: "wedge-bench".into(),
                latency_placement: "server on CPU 1, load generator on CPU 0".into(),
            },
            contenders: contenders
                .iter()
                .map(|&n| ContenderInfo {
                    name: n.into(),
                    what: n.into(),
                    version: "1".into(),
                })
                .collect(),
            figures: c.figures(),
            notes: c.notes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_become_spreads_and_are_found_again() {
        let mut c = Collector::default();
        for v in [10.0, 30.0, 20.0] {
            c.add("native", "hello", "rps", v);
        }
        c.add("native", ANY, "start_ms", 4.0);
        let r = Results::for_test(&[], c);
        let s = r.get("native", "hello", "rps").unwrap();
        assert_eq!((s.median, s.min, s.max, s.rounds), (20.0, 10.0, 30.0, 3));
        assert_eq!(r.median("native", ANY, "start_ms"), Some(4.0));
        assert_eq!(r.median("node", "hello", "rps"), None);
        let json = serde_json::to_string(&r).unwrap();
        let back: Results = serde_json::from_str(&json).unwrap();
        assert_eq!(back.figures.len(), 2);
    }
}
