//! The AOT cache and `wedge compile`: hits, integrity, foreign files, gc.

use crate::support::{Sandbox, guest, s};
use std::os::unix::fs::PermissionsExt;

fn cwasm_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for sub in std::fs::read_dir(dir).unwrap().flatten() {
        if sub.path().is_dir() {
            for f in std::fs::read_dir(sub.path()).unwrap().flatten() {
                if f.path().extension().is_some_and(|e| e == "cwasm") {
                    out.push(f.path());
                }
            }
        }
    }
    out
}

#[test]
fn second_run_hits_the_cache() {
    let sb = Sandbox::new();
    let hello = guest("c/hello.wasm");
    let first = sb.run(&["run", "--stats-json", "-", s(&hello)]);
    assert_eq!(first.expect(0).stats()["cache"], "miss");
    let second = sb.run(&["run", "--stats-json", "-", s(&hello)]);
    assert_eq!(second.expect(0).stats()["cache"], "hit");
    assert!(second.stdout.starts_with("hello from C\n"));
    let mode = std::fs::metadata(sb.cache_dir())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "cache directory must be private");
    assert_eq!(cwasm_files(&sb.cache_dir()).len(), 1);

    // Fuel changes code generation, so it is cached separately.
    let fuel = sb.run(&["run", "--fuel", "100000000", "--stats-json", "-", s(&hello)]);
    assert_eq!(fuel.expect(0).stats()["cache"], "miss");
    assert_eq!(cwasm_files(&sb.cache_dir()).len(), 2);

    // --no-cache neither reads nor writes.
    let none = sb.run(&["run", "--no-cache", "--stats-json", "-", s(&hello)]);
    assert_eq!(none.expect(0).stats()["cache"], "disabled");
}

#[test]
fn corrupted_cache_entries_are_recompiled_never_loaded() {
    let sb = Sandbox::new();
    let hello = guest("c/hello.wasm");
    sb.run(&["run", s(&hello)]).expect(0);
    let [entry] = &cwasm_files(&sb.cache_dir())[..] else {
        panic!("one artifact expected")
    };
    let mut bytes = std::fs::read(entry).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff; // flip bits in the compiled code
    std::fs::write(entry, &bytes).unwrap();

    let r = sb.run(&["run", "--stats-json", "-", s(&hello)]);
    r.expect(0);
    let v = r.stats();
    assert_eq!(v["cache"], "rejected");
    assert!(
        v["cache_note"].as_str().unwrap().contains("corrupted"),
        "{v}"
    );
    assert!(r.stdout.starts_with("hello from C\n"));
    // The bad entry was replaced by a good one.
    let again = sb.run(&["run", "--stats-json", "-", s(&hello)]);
    assert_eq!(again.expect(0).stats()["cache"], "hit");

    // A foreign file (not written by wedge) under the right name.
    std::fs::write(entry, b"\x7fELF not ours").unwrap();
    let r = sb.run(&["run", "--stats-json", "-", s(&hello)]);
    assert_eq!(r.expect(0).stats()["cache"], "rejected");
}

#[test]
fn compile_writes_an_artifact_that_run_accepts() {
    let sb = Sandbox::new();
    let out = sb.path().join("hello.cwasm");
    let r = sb.run(&["compile", s(&guest("c/hello.wasm")), "-o", s(&out)]);
    r.expect(0);
    assert!(r.stderr.contains("compiled"), "{}", r.stderr);
    let r = sb.run(&["run", "--stats-json", "-", s(&out), "a"]);
    r.expect(0);
    assert!(
        r.stdout.starts_with("hello from C\narg[1]=a\n"),
        "{}",
        r.stdout
    );
    assert_eq!(r.stats()["cache"], "precompiled");

    // Fuel needs an artifact compiled with fuel metering.
    let r = sb.run(&["run", "--fuel", "1000", s(&out)]);
    r.expect(1);
    assert!(r.stderr.contains("wedge compile --fuel"), "{}", r.stderr);
    let fueled = sb.path().join("fuel.cwasm");
    sb.run(&[
        "compile",
        "--fuel",
        s(&guest("wat/burn.wat")),
        "-o",
        s(&fueled),
    ])
    .expect(0);
    sb.run(&["run", "--fuel", "1000", s(&fueled)]).expect(152);
    sb.run(&["run", "--fuel", "1000000000", s(&fueled)])
        .expect(0);

    // A damaged artifact is refused, not loaded.
    let mut bytes = std::fs::read(&out).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 1;
    std::fs::write(&out, &bytes).unwrap();
    let r = sb.run(&["run", s(&out)]);
    r.expect(1);
    assert!(
        r.stderr.contains("refusing to load precompiled code"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("corrupted"), "{}", r.stderr);
}

#[test]
fn foreign_precompiled_code_is_refused() {
    let sb = Sandbox::new();
    let elf = sb.path().join("other.cwasm");
    std::fs::write(&elf, b"\x7fELF\x02\x01\x01\x00 wasmtime's or anyone's").unwrap();
    let r = sb.run(&["run", s(&elf)]);
    r.expect(1);
    assert!(r.stderr.contains("an ELF file"), "{}", r.stderr);
}

#[test]
fn cache_ls_gc_and_clear() {
    let sb = Sandbox::new();
    for g in ["c/hello.wasm", "c/files.wasm", "wat/hello.wat"] {
        sb.run(&["run", s(&guest(g))]).expect_any();
    }
    let ls = sb.run(&["cache", "ls", "--json"]);
    let entries: serde_json::Value = serde_json::from_str(&ls.expect(0).stdout).unwrap();
    assert_eq!(entries.as_array().unwrap().len(), 3);
    let text = sb.run(&["cache", "ls"]);
    assert!(
        text.expect(0).stdout.contains("3 artifacts"),
        "{}",
        text.stdout
    );

    let smallest = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["size"].as_u64().unwrap())
        .min()
        .unwrap();
    let gc = sb.run(&["cache", "gc", "--max-size", &smallest.to_string()]);
    assert!(gc.expect(0).stdout.contains("removed"), "{}", gc.stdout);
    assert!(cwasm_files(&sb.cache_dir()).len() <= 1);

    sb.run(&["cache", "clear"]).expect(0);
    let ls = sb.run(&["cache", "ls", "--json"]);
    assert_eq!(ls.expect(0).stdout.trim(), "[]");
}
