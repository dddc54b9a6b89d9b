//! The admin listener's status page in a real browser: Debian's chromium,
//! headless, driven through chromedriver (the W3C WebDriver protocol),
//! against a running `wedge serve` with a canary. The page must show the
//! traffic the test sends, and its promote and roll-back buttons must
//! change what the server serves.
//!
//! `WEDGE_SCREENSHOTS=1` also writes the screenshot of the canary in
//! progress to `docs/status-page.png` (shown in the README).

use crate::client::{ADMIN_TOKEN, Server, get};
use crate::reload::versioned;
use crate::support::{Sandbox, free_port, root, s};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A chromedriver process and one browser session in it.
struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    fn start() -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver; scripts/test.sh installs it)");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut b = Browser {
            driver,
            addr,
            session: String::new(),
        };
        wait("chromedriver answers", Duration::from_secs(20), || {
            wd_request(addr, "GET", "/status", b"").is_ok_and(|(status, _)| status == 200)
        });
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,1000", "--force-device-scale-factor=1"]
            }
        }}});
        let v = b.call("POST", "/session", caps);
        b.session = v["sessionId"].as_str().expect("a session").to_string();
        b
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let bytes = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        let (status, body) = wd_request(self.addr, method, path, &bytes).expect("chromedriver");
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        assert!(status < 300, "{method} {path}: {status} {v}");
        v["value"].clone()
    }

    fn at(&self, path: &str) -> String {
        format!("/session/{}{path}", self.session)
    }

    fn open(&self, url: &str) {
        self.call("POST", &self.at("/url"), json!({"url": url}));
    }

    fn find(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            &self.at("/element"),
            json!({"using": "css selector", "value": css}),
        );
        v[ELEMENT].as_str().unwrap().to_string()
    }

    /// Clicks the element `css` names. The page redraws its tables every
    /// second, so an element found may be replaced before the click lands:
    /// then it is found again.
    fn click(&self, css: &str) {
        for _ in 0..20 {
            let id = self.find(css);
            let path = self.at(&format!("/element/{id}/click"));
            let (status, body) = wd_request(self.addr, "POST", &path, b"{}").expect("chromedriver");
            if status < 300 {
                return;
            }
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            assert_eq!(
                v["value"]["error"], "stale element reference",
                "click {css}: {v}"
            );
        }
        panic!("{css} kept being redrawn under the click");
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.call(
            "POST",
            &self.at(&format!("/element/{id}/value")),
            json!({"text": text}),
        );
    }

    /// Runs `script` (a function body) in the page; gives what it returns.
    fn eval(&self, script: &str) -> Value {
        self.call(
            "POST",
            &self.at("/execute/sync"),
            json!({"script": script, "args": []}),
        )
    }

    fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let v = self.call("GET", &self.at("/screenshot"), Value::Null);
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = wd_request(self.addr, "DELETE", &self.at(""), b"");
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// One HTTP/1.1 exchange with chromedriver, which keeps connections open
/// whatever the client asks: the body is read by its Content-Length.
fn wd_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut length = 0;
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':')
            && k.trim().eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut out = vec![0; length];
    r.read_exact(&mut out)?;
    Ok((status, out))
}

/// Polls `ready` until it holds, for at most `limit`.
fn wait(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < limit, "never: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The traffic split `GET /v1/functions/NAME` reports: (version, percent).
fn weights_of(v: &Value) -> Vec<(String, f64)> {
    v["traffic"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            (
                t["version"].as_str().unwrap_or_default().to_string(),
                t["weight"].as_f64().unwrap_or(-1.0),
            )
        })
        .collect()
}

fn stable(srv: &Server) -> String {
    let r = srv.admin_request("GET", "/v1/functions/api", b"");
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    v["stable"].as_str().unwrap_or_default().to_string()
}

#[test]
fn the_status_page_shows_live_traffic_and_drives_promote_and_rollback() {
    let sb = Sandbox::new();
    for n in [1, 2] {
        std::fs::write(sb.path().join(format!("v{n}.wasm")), versioned(n)).unwrap();
    }
    let manifest = sb.manifest(
        "[[function]]\nname = \"api\"\nsource = \"v1.wasm\"\nroutes = [\"/api\"]\nversion = \"v1\"\n\n\
         [[function.canary]]\nversion = \"v2\"\nsource = \"v2.wasm\"\nweight = 25\n",
    );
    let state = sb.path().join("state");
    let srv = Server::start(&sb.cache_dir(), &["-f", &manifest, "--state", s(&state)]);

    // Traffic for the page to show, until the test ends.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (stop, addr) = (stop.clone(), srv.addr);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                get(addr, "/api");
                std::thread::sleep(Duration::from_millis(15));
            }
        })
    };

    let browser = Browser::start();
    browser.open(&format!("http://{}/", srv.admin));
    // The page asks for the token; a wrong one is refused.
    browser.type_into("#token", "wrong-token-0123456789");
    browser.click("form#login button");
    wait(
        "a refused token is said so",
        Duration::from_secs(10),
        || {
            browser.eval("return document.getElementById('login-error').textContent")
                == "That token was refused."
        },
    );
    browser.eval("document.getElementById('token').value = ''; return null");
    browser.type_into("#token", ADMIN_TOKEN);
    browser.click("form#login button");

    // Both versions' rows fill in from the traffic, and the charts draw it.
    let cell = |css: &str| {
        browser
            .eval(&format!(
                "const e = document.querySelector('{css}'); return e ? e.textContent : null"
            ))
            .as_str()
            .map(str::to_string)
    };
    wait(
        "requests counted for both versions",
        Duration::from_secs(30),
        || {
            ["v1", "v2"].iter().all(|v| {
                cell(&format!("td.requests[data-version=\"{v}\"]"))
                    .and_then(|t| t.parse::<u64>().ok())
                    .is_some_and(|n| n > 5)
            })
        },
    );
    wait(
        "a request rate and a drawn chart",
        Duration::from_secs(30),
        || {
            let rps = cell("td.rps[data-version=\"v1\"]")
                .and_then(|t| t.parse::<f64>().ok())
                .unwrap_or(0.0);
            let points = browser
            .eval("return document.querySelector('section[data-function=\"api\"] canvas[data-metric=\"rps\"]').dataset.points || '0'")
            .as_str()
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap_or(0);
            let memory = browser
                .eval("return document.querySelector('section[data-function=\"api\"] canvas[data-metric=\"memory\"]').dataset.points || '0'")
                .as_str()
                .and_then(|p| p.parse::<u32>().ok())
                .unwrap_or(0);
            rps > 1.0 && points >= 4 && memory >= 2
        },
    );
    let weight =
        browser.eval("return document.querySelector('input.weight[data-version=\"v2\"]').value");
    assert_eq!(weight, "25");
    assert!(
        browser
            .eval("return !!document.querySelector('tr[data-version=\"v1\"] .badge.stable')")
            .as_bool()
            .unwrap()
    );
    if std::env::var_os("WEDGE_SCREENSHOTS").is_some() {
        // A minute of traffic, so that the charts have a history to show.
        std::thread::sleep(Duration::from_secs(60));
    }
    let shot = browser.screenshot();
    assert!(shot.starts_with(b"\x89PNG"), "a PNG screenshot");
    let out = root().join("target/status-page.png");
    let _ = std::fs::write(&out, &shot);
    if std::env::var_os("WEDGE_SCREENSHOTS").is_some() {
        std::fs::write(root().join("docs/status-page.png"), &shot).unwrap();
    }

    // Readable on a phone: at 390 px nothing but the tables' own scrolling
    // boxes is wider than the screen.
    browser.call(
        "POST",
        &browser.at("/window/rect"),
        json!({"width": 390, "height": 844}),
    );
    wait(
        "the page fits a phone's width",
        Duration::from_secs(10),
        || {
            browser
                .eval("return document.documentElement.scrollWidth <= window.innerWidth")
                .as_bool()
                .unwrap_or(false)
        },
    );
    if std::env::var_os("WEDGE_SCREENSHOTS").is_some() {
        std::fs::write(
            root().join("docs/status-page-phone.png"),
            browser.screenshot(),
        )
        .unwrap();
    }
    browser.call(
        "POST",
        &browser.at("/window/rect"),
        json!({"width": 1280, "height": 1000}),
    );

    // New weights from the page (set and applied in one script, so that a
    // redraw cannot come between typing and clicking).
    browser.eval(
        "const s = document.querySelector('section[data-function=\"api\"]');
         s.querySelector('input.weight[data-version=\"v1\"]').value = '60';
         s.querySelector('input.weight[data-version=\"v2\"]').value = '40';
         s.querySelector('button.set-weights').click(); return null",
    );
    wait("the server splits 60/40", Duration::from_secs(10), || {
        let r = srv.admin_request("GET", "/v1/functions/api", b"");
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        v.to_string().contains("\"v2\"")
            && weights_of(&v) == [("v2".into(), 40.0), ("v1".into(), 60.0)]
    });

    // Promote v2 from the page: the server serves v2 only, and the page says so.
    browser.click("button.promote[data-version=\"v2\"]");
    wait("v2 is stable", Duration::from_secs(10), || {
        stable(&srv) == "v2"
    });
    assert_eq!(get(srv.addr, "/api").text(), "version 2\n");
    wait("the page marks v2 stable", Duration::from_secs(10), || {
        browser
            .eval("return !!document.querySelector('tr[data-version=\"v2\"] .badge.stable')")
            .as_bool()
            .unwrap()
    });
    // Roll back from the page.
    browser.click("button.rollback");
    wait("v1 is stable again", Duration::from_secs(10), || {
        stable(&srv) == "v1"
    });
    wait(
        "the page says what happened",
        Duration::from_secs(10),
        || cell("#message").is_some_and(|m| m.contains("rollback")),
    );

    // A rollout started elsewhere shows on the page, which pauses and
    // aborts it.
    let plan = br#"{"version": "v2", "steps": [10, 100], "interval": "1h"}"#;
    let r = srv.admin_request("POST", "/v1/functions/api/rollout", plan);
    assert_eq!(r.status, 201, "{}", r.text());
    wait(
        "the page shows the rollout",
        Duration::from_secs(15),
        || {
            cell(".rollout-state")
                .is_some_and(|t| t.contains("rollout of v2") && t.contains("running"))
        },
    );
    let rollout_state = || {
        let r = srv.admin_request("GET", "/v1/functions/api/rollout", b"");
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        v["state"]
            .as_str()
            .or(v["rollout"]["state"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    browser.click("button.rollout-pause");
    wait("paused", Duration::from_secs(10), || {
        rollout_state() == "paused"
    });
    browser.click("button.rollout-abort");
    wait("aborted", Duration::from_secs(10), || {
        rollout_state() == "aborted"
    });
    wait("the page says aborted", Duration::from_secs(15), || {
        cell(".rollout-state").is_some_and(|t| t.contains("aborted"))
    });

    stop.store(true, Ordering::Relaxed);
    traffic.join().unwrap();
}

#[test]
fn the_status_document_needs_the_token_and_the_page_holds_no_data() {
    let sb = Sandbox::new();
    std::fs::write(sb.path().join("v1.wasm"), versioned(1)).unwrap();
    let srv = Server::start(
        &sb.cache_dir(),
        &[
            "-f",
            &sb.manifest(
                "[[function]]\nname = \"api\"\nsource = \"v1.wasm\"\nroutes = [\"/api\"]\n",
            ),
        ],
    );
    get(srv.addr, "/api");
    let page = get(srv.admin, "/");
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        page.header("content-security-policy")
            .unwrap()
            .contains("default-src 'none'")
    );
    assert!(
        !page.text().contains("\"api\""),
        "no data in the page itself"
    );
    assert_eq!(get(srv.admin, "/status").status, 401);
    let r = srv.admin_request("GET", "/status", b"");
    assert_eq!(r.status, 200);
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["control"], false, "no --state: read-only");
    let f = &v["functions"][0];
    assert_eq!(f["name"], "api");
    assert_eq!(f["routes"][0], "/api");
    assert_eq!(f["versions"][0]["requests"], 1);
    assert_eq!(f["versions"][0]["weight"], 100.0);
    assert_eq!(f["memory_peak"]["count"], 1, "one instance ended");
    assert!(f["memory_peak"]["sum"].as_f64().unwrap() >= 65536.0);
    assert_eq!(
        v["latency_bounds_ms"].as_array().unwrap().len(),
        f["versions"][0]["latency"].as_array().unwrap().len()
    );
}
