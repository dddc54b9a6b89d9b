//! `wedge inspect`: worlds, imports, memory, producers, cache state.

use crate::support::{Sandbox, guest, s};

#[test]
fn c_module_text_and_json() {
    let sb = Sandbox::new();
    let hello = guest("c/hello.wasm");
    let r = sb.run(&["inspect", s(&hello)]);
    r.expect(0);
    for needle in [
        "(module,",
        "wasi-preview1-command, wagi",
        "aot cached no",
        "wasi_snapshot_preview1::fd_write",
        "memory     min 2 pages",
        "producer   language: C99",
        "code",
    ] {
        assert!(
            r.stdout.contains(needle),
            "`{needle}` missing:\n{}",
            r.stdout
        );
    }
    sb.run(&["run", s(&hello)]).expect(0);
    let r = sb.run(&["inspect", "--json", s(&hello)]);
    let v: serde_json::Value = serde_json::from_str(&r.expect(0).stdout).unwrap();
    assert_eq!(v["kind"], "module");
    assert_eq!(v["aot_cached"], serde_json::json!(["plain"]));
    assert_eq!(v["memories"][0]["min_pages"], 2);
    assert!(
        v["exports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "_start")
    );
    assert_eq!(v["sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn components_name_their_world() {
    let sb = Sandbox::new();
    let comp = guest("components/hello.component.wasm");
    let r = sb.run(&["inspect", "--json", s(&comp)]);
    let v: serde_json::Value = serde_json::from_str(&r.expect(0).stdout).unwrap();
    assert_eq!(v["kind"], "component");
    assert_eq!(v["worlds"], serde_json::json!(["wasi:cli/command@0.2"]));

    let p3 = crate::support::root().join("../shared/conformance/wasi-http-p3/http-service.wasm");
    let r = sb.run(&["inspect", "--json", s(&p3)]);
    let v: serde_json::Value = serde_json::from_str(&r.expect(0).stdout).unwrap();
    assert_eq!(v["worlds"][0], "wasi:http/service@0.3");
}

#[test]
fn artifacts_are_not_inspected_as_wasm() {
    let sb = Sandbox::new();
    let out = sb.path().join("h.cwasm");
    sb.run(&["compile", s(&guest("wat/hello.wat")), "-o", s(&out)])
        .expect(0);
    let r = sb.run(&["inspect", s(&out)]);
    r.expect(1);
    assert!(
        r.stderr.contains("precompiled wedge artifact"),
        "{}",
        r.stderr
    );
}
