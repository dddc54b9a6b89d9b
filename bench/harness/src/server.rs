//! Starting a contender's server process, timing its start and reading its memory.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::http::{Request, once};

/// How to launch a server on a given port.
#[derive(Debug, Clone)]
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub dir: Option<PathBuf>,
}

impl Launch {
    /// `{port}` in arguments and environment values becomes the port.
    pub fn command(&self, port: u16) -> Command {
        let fill = |s: &String| s.replace("{port}", &port.to_string());
        let mut cmd = Command::new(&self.program);
        // A shell's RUST_BACKTRACE makes every guest exit walk the host stack
        // (a quarter of Go WAGI throughput): never measure with it.
        cmd.env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE");
        cmd.args(self.args.iter().map(fill));
        for (k, v) in &self.env {
            cmd.env(k, fill(v));
        }
        if let Some(dir) = &self.dir {
            cmd.current_dir(dir);
        }
        cmd
    }
}

pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// From spawning the process to the first successful answer.
    pub start: Duration,
}

/// A port nobody listens on right now.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Server {
    /// Starts the server and waits until `probe` answers 200; stdout and stderr go to `log`.
    pub fn start(
        rt: &tokio::runtime::Runtime,
        launch: &Launch,
        probe: &str,
        log: &Path,
    ) -> Result<Server> {
        let port = free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = launch.command(port);
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let spawned = Instant::now();
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", launch.program.display()))?;
        let mut server = Server {
            child,
            addr,
            start: Duration::ZERO,
        };
        let req = Request::new("GET", probe, &[], b"");
        let deadline = spawned + Duration::from_secs(60);
        loop {
            if let Ok(resp) = rt.block_on(once(addr, &req))
                && resp.status == 200
            {
                server.start = spawned.elapsed();
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait()? {
                bail!(
                    "{} exited with {status} before answering; see {}",
                    launch.program.display(),
                    log.display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not answer {probe} within 60 s; see {}",
                    launch.program.display(),
                    log.display()
                );
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the process and all its descendants, in KiB.
    pub fn rss_kib(&self) -> u64 {
        tree_rss_kib(self.pid())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        for pid in descendants(self.child.id()) {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The pids of a process's children, grandchildren and so on.
fn descendants(root: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(ppid) = parent_of(pid) {
                parents.push((pid, ppid));
            }
        }
    }
    let mut found = vec![];
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(pid, ppid) in &parents {
            if ppid == p {
                found.push(pid);
                frontier.push(pid);
            }
        }
    }
    found
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The sum of the `fields` (KiB values) in a `/proc/PID/` file; 0 when the
/// process is gone.
fn proc_kib(pid: u32, file: &str, fields: &[&str]) -> u64 {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/{file}")) else {
        return 0;
    };
    text.lines()
        .filter_map(|l| {
            let (name, value) = l.split_once(':')?;
            fields.contains(&name).then_some(value)
        })
        .filter_map(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// VmRSS of one process in KiB (0 when it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    proc_kib(pid, "status", &["VmRSS"])
}

/// Memory only this process holds (`Private_Clean` + `Private_Dirty` of
/// smaps_rollup): unlike RSS, a page of a file or image several mappings
/// share counts nowhere.
pub fn private_kib(pid: u32) -> u64 {
    proc_kib(pid, "smaps_rollup", &["Private_Clean", "Private_Dirty"])
}

/// Proportional set size (`Pss` of smaps_rollup): each resident page divided
/// among the mappings that share it, so a page mapped many times (a module's
/// memory image in many instance slots) counts once.
pub fn pss_kib(pid: u32) -> u64 {
    proc_kib(pid, "smaps_rollup", &["Pss"])
}

pub fn tree_pss_kib(root: u32) -> u64 {
    pss_kib(root) + descendants(root).into_iter().map(pss_kib).sum::<u64>()
}

pub fn tree_private_kib(root: u32) -> u64 {
    private_kib(root) + descendants(root).into_iter().map(private_kib).sum::<u64>()
}

pub fn tree_rss_kib(root: u32) -> u64 {
    rss_kib(root) + descendants(root).into_iter().map(rss_kib).sum::<u64>()
}

/// Samples a process tree's resident memory until dropped; `peak()` is the highest seen.
pub struct RssWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl RssWatch {
    pub fn start(pid: u32) -> RssWatch {
        RssWatch::start_with(pid, tree_rss_kib)
    }

    /// Watches the peak of another reading (private memory, say).
    pub fn start_with(pid: u32, read: fn(u32) -> u64) -> RssWatch {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                peak = peak.max(read(pid));
                std::thread::sleep(Duration::from_millis(50));
            }
            peak.max(read(pid))
        });
        RssWatch {
            stop,
            thread: Some(thread),
        }
    }

    pub fn peak(mut self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread
            .take()
            .map(|t| t.join().unwrap_or(0))
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_of_this_process_is_read() {
        let me = std::process::id();
        assert!(rss_kib(me) > 100);
        assert_eq!(rss_kib(u32::MAX), 0);
        let watch = RssWatch::start(me);
        assert!(watch.peak() >= rss_kib(me) / 2);
        let private = private_kib(me);
        assert!(private > 100 && private <= rss_kib(me) * 2, "{private}");
        let pss = pss_kib(me);
        assert!(pss > 100 && pss <= rss_kib(me) * 2, "{pss}");
        assert_eq!(pss_kib(u32::MAX), 0);
    }

    #[test]
    fn children_are_found_and_counted() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let kids = descendants(std::process::id());
        assert!(kids.contains(&child.id()), "{kids:?}");
        assert!(tree_rss_kib(std::process::id()) > rss_kib(std::process::id()));
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn a_server_that_exits_is_reported() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let launch = Launch {
            program: "false".into(),
            args: vec![],
            env: vec![],
            dir: None,
        };
        let log =
            std::env::temp_dir().join(format!("wedge-bench-false-{}.log", std::process::id()));
        let err = Server::start(&rt, &launch, "/", &log)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("exited"), "{err}");
        let _ = std::fs::remove_file(log);
    }
}
