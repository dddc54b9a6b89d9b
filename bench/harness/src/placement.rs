//! Where the latency runs execute: the server on a CPU of its own, the load
//! generator on the others.
//!
//! Sharing two cores, "50% load" meant nothing precise: an evenly paced
//! client costs more CPU per request than a closed loop (a pacer wake-up and a
//! cross-thread notify per request), and it took that from the server, so a
//! server asked for half its shared-core throughput ran near saturation and its
//! P99 was queueing (2026-12-02: wedge-c reached 96% of the asked rate). With
//! the server alone on one CPU, its throughput there is measured first and the
//! paced run asks for half of it: every contender at half its own capacity,
//! with the client's cost out of its way, as a separate load machine would be.
//! Pinning uses `taskset` (util-linux), so no `unsafe` affinity calls.

use std::process::Command;

use anyhow::{Context, Result, ensure};

use crate::server::Launch;

/// The split of this process's allowed CPUs.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub server: usize,
    pub load: Vec<usize>,
    all: Vec<usize>,
}

impl Placement {
    /// The last allowed CPU for the server, the rest for the load generator;
    /// None with fewer than two CPUs (then latency runs share, as throughput runs do).
    pub fn split(allowed: &[usize]) -> Option<Placement> {
        let (&server, load) = allowed.split_last()?;
        (!load.is_empty()).then(|| Placement {
            server,
            load: load.to_vec(),
            all: allowed.to_vec(),
        })
    }

    /// This process's placement, from `Cpus_allowed_list` in /proc/self/status.
    pub fn of_this_process() -> Result<Option<Placement>> {
        let status = std::fs::read_to_string("/proc/self/status")?;
        Ok(Placement::split(&allowed_in(&status)?))
    }

    /// Words for the report.
    pub fn describe(&self) -> String {
        format!(
            "server on CPU {}, load generator on CPU {}",
            self.server,
            list(&self.load)
        )
    }

    /// `launch` run under `taskset`, on the server's CPU only. The server
    /// sizes its thread pools from the CPUs it is allowed, so it sees one.
    pub fn server(&self, launch: &Launch) -> Launch {
        let mut args = vec![
            "-c".to_string(),
            self.server.to_string(),
            launch.program.display().to_string(),
        ];
        args.extend(launch.args.iter().cloned());
        Launch {
            program: "taskset".into(),
            args,
            ..launch.clone()
        }
    }

    /// Moves every thread of this process onto the load generator's CPUs
    /// until the guard drops; threads started meanwhile inherit it.
    pub fn pin_load(&self) -> Result<Pinned> {
        let pinned = Pinned {
            all: self.all.clone(),
        };
        set_all_threads(&self.load)?;
        for task in std::fs::read_dir("/proc/self/task")? {
            let status = std::fs::read_to_string(task?.path().join("status"))?;
            let cpus = allowed_in(&status)?;
            ensure!(
                cpus == self.load,
                "a wedge-bench thread is still allowed CPUs {cpus:?} after pinning to {:?}",
                self.load
            );
        }
        Ok(pinned)
    }
}

/// Gives the whole process its CPUs back when dropped.
pub struct Pinned {
    all: Vec<usize>,
}

impl Drop for Pinned {
    fn drop(&mut self) {
        if let Err(e) = set_all_threads(&self.all) {
            eprintln!("could not give wedge-bench its CPUs back: {e:#}");
        }
    }
}

fn set_all_threads(cpus: &[usize]) -> Result<()> {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", &list(cpus)])
        .arg(std::process::id().to_string())
        .stdout(std::process::Stdio::null())
        .status()
        .context("running taskset (util-linux)")?;
    ensure!(status.success(), "taskset failed with {status}");
    Ok(())
}

fn list(cpus: &[usize]) -> String {
    cpus.iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The CPUs a /proc status file says its task may run on.
fn allowed_in(status: &str) -> Result<Vec<usize>> {
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .context("no Cpus_allowed_list in a /proc status file")?;
    parse_list(list.trim())
}

/// A kernel CPU list such as `0-3,6,8-9`.
pub fn parse_list(s: &str) -> Result<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let bad = || format!("bad CPU list {s:?}");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) =
                    (a.parse().with_context(bad)?, b.parse().with_context(bad)?);
                ensure!(a <= b && b < 4096, "bad CPU range {part:?} in {s:?}");
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().with_context(bad)?),
        }
    }
    Ok(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kernel_cpu_lists() {
        assert_eq!(parse_list("0-1").unwrap(), vec![0, 1]);
        assert_eq!(parse_list("0,2-4,7").unwrap(), vec![0, 2, 3, 4, 7]);
        assert_eq!(parse_list("5").unwrap(), vec![5]);
        assert!(parse_list("3-1").is_err());
        assert!(parse_list("a").is_err());
    }

    #[test]
    fn the_server_gets_the_last_cpu_and_one_cpu_is_not_split() {
        let p = Placement::split(&[0, 1]).unwrap();
        assert_eq!((p.server, p.load.clone()), (1, vec![0]));
        assert_eq!(p.describe(), "server on CPU 1, load generator on CPU 0");
        let p = Placement::split(&[0, 2, 5]).unwrap();
        assert_eq!((p.server, p.load), (5, vec![0, 2]));
        assert_eq!(Placement::split(&[3]), None);
        assert_eq!(Placement::split(&[]), None);
    }

    #[test]
    fn a_pinned_server_sees_one_cpu() {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let allowed = allowed_in(&status).unwrap();
        let Some(p) = Placement::of_this_process().unwrap() else {
            // One CPU: nothing to split, and the latency runs share it.
            assert_eq!(allowed.len(), 1);
            return;
        };
        let launch = Launch {
            program: "sh".into(),
            args: vec![
                "-c".into(),
                "grep Cpus_allowed_list /proc/self/status".into(),
            ],
            env: vec![],
            dir: None,
        };
        let pinned = p.server(&launch);
        let out = pinned.command(0).output().expect("run taskset");
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("Cpus_allowed_list:\t{}", p.server)
        );
    }
}
