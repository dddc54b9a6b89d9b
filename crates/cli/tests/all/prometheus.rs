//! A real Prometheus (Debian's `prometheus`, installed by scripts/test.sh)
//! scrapes wedge's admin listener; a PromQL query returns the series that
//! known traffic produced.

use crate::client::{Server, get};
use crate::support::{Sandbox, free_port, guest, s};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Percent-encodes a PromQL query for a URL.
fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Starts Debian's Prometheus with `config` (a scrape config, or none) on a
/// free port and waits until it is ready; returns it with its address.
pub fn start(
    dir: &std::path::Path,
    scrape: Option<std::net::SocketAddr>,
) -> (Prometheus, std::net::SocketAddr) {
    let bin = "/usr/bin/prometheus";
    assert!(
        std::path::Path::new(bin).exists(),
        "Debian's prometheus is needed for this test: run scripts/test.sh, which installs it"
    );
    let config = dir.join("prometheus.yml");
    let mut yml = "global:\n  scrape_interval: 1s\n".to_string();
    if let Some(target) = scrape {
        yml.push_str(&format!(
            "scrape_configs:\n  - job_name: wedge\n    static_configs:\n      - targets: ['{target}']\n"
        ));
    }
    std::fs::write(&config, yml).unwrap();
    let port = free_port();
    let prom = Prometheus(
        Command::new(bin)
            .arg(format!("--config.file={}", s(&config)))
            .arg(format!("--storage.tsdb.path={}", s(&dir.join("tsdb"))))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    for _ in 0..600 {
        if crate::client::request(addr, "GET", "/-/ready", &[], b"").is_ok_and(|r| r.status == 200)
        {
            return (prom, addr);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("Prometheus did not become ready");
}

#[test]
fn prometheus_scrapes_and_promql_finds_the_traffic() {
    let bin = "/usr/bin/prometheus";
    assert!(
        std::path::Path::new(bin).exists(),
        "Debian's prometheus is needed for this test: run scripts/test.sh, which installs it"
    );
    let sb = Sandbox::new();
    let srv = Server::start(&sb.cache_dir(), &[s(&guest("wat/wagi/hello.wat"))]);
    for _ in 0..5 {
        assert_eq!(get(srv.addr, "/hello").status, 200);
    }
    let config = sb.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: wedge\n    static_configs:\n      - targets: ['{}']\n",
            srv.admin
        ),
    )
    .unwrap();
    let port = free_port();
    let _prom = Prometheus(
        Command::new(bin)
            .arg(format!("--config.file={}", s(&config)))
            .arg(format!(
                "--storage.tsdb.path={}",
                s(&sb.path().join("tsdb"))
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let query = encode("sum by (function) (faas_invocations_total{job=\"wedge\"})");
    let mut last = String::new();
    for _ in 0..600 {
        if let Ok(r) = crate::client::request(
            addr,
            "GET",
            &format!("/api/v1/query?query={query}"),
            &[],
            b"",
        ) {
            last = r.text();
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&last)
                && let Some(first) = v["data"]["result"].as_array().and_then(|a| a.first())
            {
                assert_eq!(first["metric"]["function"], "hello", "{last}");
                assert_eq!(first["value"][1], "5", "{last}");
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("Prometheus never returned the series; last answer: {last}");
}
