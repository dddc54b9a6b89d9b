//! `wedge serve --watch`: modules and the manifest changed under a running
//! server, under load, half-written, broken; what must survive a reload.

use crate::client::{Server, get, wait_for_file};
use crate::support::{Sandbox, guest, s};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A WAGI module that answers `version N`, padded with a custom section so
/// that writing it takes more than one `write` call.
pub fn versioned(n: u32) -> Vec<u8> {
    let body = format!("Content-Type: text/plain\n\nversion {n}\n");
    let mut wasm = wat::parse_str(format!(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_write"
            (func $w (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 64) "{}")
          (func (export "_start")
            (i32.store (i32.const 0) (i32.const 64))
            (i32.store (i32.const 4) (i32.const {}))
            (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#,
        body.replace('\n', "\\n"),
        body.len()
    ))
    .unwrap();
    // Custom section "pad": id 0, size, name (length 3), 192 KiB of zeros.
    let zeros = 192 * 1024;
    wasm.push(0);
    let mut size = (1 + 3 + zeros) as u32;
    loop {
        let b = (size & 0x7f) as u8;
        size >>= 7;
        wasm.push(if size == 0 { b } else { b | 0x80 });
        if size == 0 {
            break;
        }
    }
    wasm.push(3);
    wasm.extend_from_slice(b"pad");
    wasm.extend(std::iter::repeat_n(0u8, zeros));
    wasm
}

pub fn metric(srv: &Server, prefix: &str) -> f64 {
    get(srv.admin, "/metrics")
        .text()
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Waits (polling the server, bounded) until `ready` holds.
fn until(srv: &Server, what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never: {what}; server log:\n{}",
            srv.logs()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn serve_watched(sb: &Sandbox, toml: &str) -> Server {
    Server::start(&sb.cache_dir(), &["-f", &sb.manifest(toml), "--watch"])
}

fn one_function(module: &Path) -> String {
    format!(
        "[[function]]\nname = \"v\"\nsource = \"{}\"\nroutes = [\"/v\"]\n",
        s(module)
    )
}

/// Changes, interval: 40 at 100 ms by default; the issue's full run is
/// `WEDGE_RELOAD_CHANGES=500 WEDGE_RELOAD_INTERVAL_MS=200`.
fn plan() -> (u32, Duration) {
    let var = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    (
        var("WEDGE_RELOAD_CHANGES", 40) as u32,
        Duration::from_millis(var("WEDGE_RELOAD_INTERVAL_MS", 100)),
    )
}

#[test]
fn modules_rewritten_under_load_fail_no_request() {
    let sb = Sandbox::new();
    let module = sb.path().join("v.wasm");
    std::fs::write(&module, versioned(0)).unwrap();
    let srv = serve_watched(&sb, &one_function(&module));
    let addr = srv.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut seen: BTreeMap<String, u32> = BTreeMap::new();
                while !stop.load(Ordering::Relaxed) {
                    let r = get(addr, "/v");
                    let key = if r.status == 200 {
                        r.text()
                    } else {
                        format!("status {}: {}", r.status, r.text())
                    };
                    *seen.entry(key).or_default() += 1;
                }
                seen
            })
        })
        .collect();
    let (changes, interval) = plan();
    for n in 1..=changes {
        // As `cp` does: truncate, write, close.
        std::fs::write(&module, versioned(n)).unwrap();
        std::thread::sleep(interval);
    }
    let last = format!("version {changes}\n");
    let settled = Instant::now();
    until(&srv, "the last version serves", || {
        get(addr, "/v").text() == last
    });
    let settle = settled.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut all: BTreeMap<String, u32> = BTreeMap::new();
    for c in clients {
        for (k, v) in c.join().unwrap() {
            *all.entry(k).or_default() += v;
        }
    }
    let total: u32 = all.values().sum();
    let bad: Vec<_> = all
        .iter()
        .filter(|(k, _)| {
            k.strip_prefix("version ")
                .and_then(|v| v.trim_end().parse::<u32>().ok())
                .is_none_or(|v| v > changes)
        })
        .collect();
    eprintln!(
        "{changes} changes at {interval:?}: {total} requests, {} versions seen, {} failed; \
         last version serving {settle:?} after the last change; reloads ok {}, failed {}",
        all.len(),
        bad.len(),
        metric(&srv, "wedge_reloads_total{result=\"ok\"}"),
        metric(&srv, "wedge_reloads_total{result=\"failed\"}"),
    );
    assert!(bad.is_empty(), "failed or unknown responses: {bad:?}");
    assert!(total > changes, "the load ran: {total} requests");
    assert!(
        all.len() > 2,
        "responses came from several versions: {all:?}"
    );
}

#[test]
fn a_half_written_module_is_never_served() {
    let sb = Sandbox::new();
    let module = sb.path().join("v.wasm");
    std::fs::write(&module, versioned(1)).unwrap();
    let srv = serve_watched(&sb, &one_function(&module));
    assert_eq!(get(srv.addr, "/v").text(), "version 1\n");
    let v2 = versioned(2);
    let mut f = std::fs::File::create(&module).unwrap();
    f.write_all(&v2[..v2.len() / 2]).unwrap();
    f.flush().unwrap();
    // The writer keeps the file open; once the watcher stops waiting for it
    // the reload reads half a module and fails, and version 1 serves on.
    until(&srv, "a failed reload", || {
        assert_eq!(get(srv.addr, "/v").text(), "version 1\n");
        metric(&srv, "wedge_reloads_total{result=\"failed\"}") >= 1.0
    });
    assert_eq!(metric(&srv, "wedge_reload_last_successful"), 0.0);
    srv.wait_for_log("reload failed, the previous functions keep serving");
    f.write_all(&v2[v2.len() / 2..]).unwrap();
    drop(f);
    until(&srv, "version 2 serves", || {
        let body = get(srv.addr, "/v").text();
        assert!(body == "version 1\n" || body == "version 2\n", "{body}");
        body == "version 2\n"
    });
    assert_eq!(metric(&srv, "wedge_reload_last_successful"), 1.0);
}

#[test]
fn a_broken_manifest_keeps_the_old_functions_until_it_is_fixed() {
    let sb = Sandbox::new();
    let module = sb.path().join("v.wasm");
    std::fs::write(&module, versioned(1)).unwrap();
    let srv = serve_watched(&sb, &one_function(&module));
    sb.manifest("[[function]]\nname = \"v\"\nsource = \"v.wasm\"\nroutes = [\"/v\"\n");
    srv.wait_for_log("reload failed, the previous functions keep serving");
    srv.wait_for_log("wedge.toml:4:");
    assert_eq!(metric(&srv, "wedge_reloads_total{result=\"failed\"}"), 1.0);
    assert_eq!(get(srv.addr, "/v").text(), "version 1\n");
    // Fixed, with a second route and a function added.
    let hello = guest("wat/wagi/hello.wat");
    sb.manifest(&format!(
        "{}\n[[function]]\nname = \"hello\"\nsource = \"{}\"\nroutes = [\"/hello\"]\n",
        one_function(&module).replace("[\"/v\"]", "[\"/v\", \"/w\"]"),
        s(&hello)
    ));
    until(&srv, "the new routes", || {
        get(srv.addr, "/hello").status == 200
    });
    assert_eq!(get(srv.addr, "/w").text(), "version 1\n");
    assert_eq!(metric(&srv, "wedge_reload_last_successful"), 1.0);
    srv.wait_for_log("reloaded in");
    srv.wait_for_log("added hello; changed v");
}

#[test]
fn an_unchanged_function_keeps_its_gate_across_a_reload() {
    let sb = Sandbox::new();
    let signal = sb.path().join("signal");
    std::fs::create_dir_all(&signal).unwrap();
    let slow = format!(
        "[[function]]\nname = \"slow\"\nsource = \"{}\"\nroutes = [\"/slow\"]\n\
         max_concurrency = 1\nqueue = 0\nfiles = [{{ host = \"{}\", guest = \"/signal\" }}]\n",
        s(&guest("c/wagi/slow.wasm")),
        s(&signal)
    );
    let module = sb.path().join("v.wasm");
    std::fs::write(&module, versioned(1)).unwrap();
    let srv = serve_watched(&sb, &format!("{slow}\n{}", one_function(&module)));
    let addr = srv.addr;
    let held = std::thread::spawn(move || get(addr, "/slow?hold&3000"));
    wait_for_file(&signal.join("hold"));
    std::fs::write(&module, versioned(2)).unwrap();
    until(&srv, "version 2 serves", || {
        get(addr, "/v").text() == "version 2\n"
    });
    // The one slot of `slow` is still taken: the gate was kept, not rebuilt.
    let r = get(addr, "/slow?late&10");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(held.join().unwrap().status, 200);
    assert_eq!(get(addr, "/slow?after&10").status, 200);
    srv.wait_for_log("changed v; 1 unchanged");
}

/// A manifest in a Kubernetes ConfigMap volume changes by a `..data`
/// symlink swap, never by a write to the file: the operator's pods change
/// traffic weights that way, without a restart.
#[test]
fn a_configmap_volume_swap_is_a_change() {
    use std::os::unix::fs::symlink;
    let sb = Sandbox::new();
    let dir = sb.path().join("config");
    std::fs::create_dir_all(&dir).unwrap();
    for n in [1, 2] {
        std::fs::write(sb.path().join(format!("v{n}.wasm")), versioned(n)).unwrap();
    }
    let manifest = |weight: u32| {
        format!(
            "[[function]]\nname = \"v\"\nsource = \"{}\"\nroutes = [\"/v\"]\nversion = \"v1\"\nversion_header = \"x-v\"\n\n[[function.canary]]\nversion = \"v2\"\nsource = \"{}\"\nweight = {weight}\n",
            s(&sb.path().join("v1.wasm")),
            s(&sb.path().join("v2.wasm")),
        )
    };
    // The kubelet's layout: a timestamped folder, `..data` pointing at it,
    // and the key as a symlink through `..data`.
    let write_generation = |name: &str, weight: u32| {
        let g = dir.join(name);
        std::fs::create_dir(&g).unwrap();
        std::fs::write(g.join("wedge.toml"), manifest(weight)).unwrap();
        let tmp = dir.join("..data_tmp");
        symlink(name, &tmp).unwrap();
        std::fs::rename(&tmp, dir.join("..data")).unwrap();
    };
    write_generation("..2026_11_30_01", 1);
    symlink("..data/wedge.toml", dir.join("wedge.toml")).unwrap();
    let srv = Server::start(
        &sb.cache_dir(),
        &["-f", s(&dir.join("wedge.toml")), "--watch"],
    );
    let share_of_v2 = || {
        let n = 200;
        (0..n)
            .filter(|_| get(srv.addr, "/v").text() == "version 2\n")
            .count() as f64
            / n as f64
    };
    assert!(share_of_v2() < 0.2);
    write_generation("..2026_11_30_02", 100);
    until(&srv, "the swap reloads", || {
        metric(&srv, "wedge_reloads_total{result=\"ok\"}") >= 1.0
    });
    assert_eq!(share_of_v2(), 1.0);
}
