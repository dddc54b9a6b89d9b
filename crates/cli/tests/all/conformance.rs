//! The WASI preview1 conformance suite (`../shared/conformance/wasi-testsuite-p1`),
//! every program run through the real `wedge run`.

use crate::support::{Sandbox, root, s};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// What one test program expects.
#[derive(Default)]
struct Spec {
    args: Vec<String>,
    env: Vec<(String, String)>,
    root: Option<String>,
    exit_code: i32,
    stdout: Option<String>,
    stderr: Option<String>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn env(v: &Value) -> Vec<(String, String)> {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Reads `NAME.json` in either the old or the `operations` form.
fn spec(wasm: &Path) -> Spec {
    let Ok(text) = std::fs::read_to_string(wasm.with_extension("json")) else {
        return Spec::default();
    };
    let v: Value = serde_json::from_str(&text).expect("spec json");
    let mut spec = Spec::default();
    let apply_run = |spec: &mut Spec, run: &Value| {
        spec.args = strings(&run["args"]);
        spec.env = env(&run["env"]);
        spec.root = run["root"].as_str().map(String::from);
    };
    if let Some(ops) = v["operations"].as_array() {
        for op in ops {
            match op["type"].as_str().unwrap_or_default() {
                "run" => apply_run(&mut spec, op),
                "read" => {
                    let payload = op["payload"].as_str().map(String::from);
                    match op["id"].as_str() {
                        Some("stderr") => spec.stderr = payload,
                        _ => spec.stdout = payload,
                    }
                }
                "wait" => spec.exit_code = op["exit_code"].as_i64().unwrap_or(0) as i32,
                other => panic!("{}: unknown operation {other}", wasm.display()),
            }
        }
    } else {
        apply_run(&mut spec, &v);
        spec.exit_code = v["exit_code"].as_i64().unwrap_or(0) as i32;
        spec.stdout = v["stdout"].as_str().map(String::from);
        spec.stderr = v["stderr"].as_str().map(String::from);
    }
    spec
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        let ty = entry.file_type().unwrap();
        if ty.is_dir() {
            copy_dir(&entry.path(), &target);
        } else if ty.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).unwrap(), &target).unwrap();
        } else if !entry.file_name().to_string_lossy().ends_with(".cleanup") {
            std::fs::copy(entry.path(), &target).unwrap();
            let mut perms = std::fs::metadata(&target).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            std::fs::set_permissions(&target, perms).unwrap();
        }
    }
}

fn programs() -> Vec<PathBuf> {
    let suite = root().join("../shared/conformance/wasi-testsuite-p1");
    assert!(
        suite.is_dir(),
        "the conformance suite is missing: expected {}",
        suite.display()
    );
    let mut out = Vec::new();
    for lang in ["assemblyscript", "c", "rust"] {
        let dir = suite.join(lang).join("testsuite/wasm32-wasip1");
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "wasm") {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// Runs one program; `Err` says how it failed.
fn run_one(sb: &Sandbox, wasm: &Path, n: usize) -> Result<(), String> {
    let spec = spec(wasm);
    let mut cmd = sb.wedge();
    cmd.arg("run");
    for (k, v) in &spec.env {
        cmd.arg("--env").arg(format!("{k}={v}"));
    }
    if let Some(rel) = &spec.root {
        let fresh = sb.path().join(format!("root-{n}"));
        copy_dir(&wasm.parent().unwrap().join(rel), &fresh);
        cmd.arg("--dir").arg(format!("{}::/", s(&fresh)));
    }
    cmd.arg(wasm).args(&spec.args);
    let out = cmd.output().map_err(|e| e.to_string())?;
    let code = out.status.code().ok_or("killed by a signal")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if code != spec.exit_code {
        return Err(format!(
            "exit {code}, expected {}; stderr: {stderr}",
            spec.exit_code
        ));
    }
    for (name, want, got) in [
        ("stdout", &spec.stdout, &out.stdout),
        ("stderr", &spec.stderr, &out.stderr),
    ] {
        if let Some(want) = want
            && !got.starts_with(want.as_bytes())
        {
            return Err(format!(
                "{name} {:?}, expected it to start with {want:?}",
                String::from_utf8_lossy(got)
            ));
        }
    }
    Ok(())
}

#[test]
fn wasi_testsuite_preview1() {
    let sb = Sandbox::new();
    let programs = programs();
    let mut failed = Vec::new();
    for (n, wasm) in programs.iter().enumerate() {
        if let Err(why) = run_one(&sb, wasm, n) {
            failed.push(format!("{}: {why}", wasm.display()));
        }
    }
    let passed = programs.len() - failed.len();
    println!("{passed} passed, {} failed", failed.len());
    eprintln!(
        "wasi-testsuite-p1: {passed} passed, {} failed",
        failed.len()
    );
    assert_eq!(programs.len(), 72, "the suite should hold 72 programs");
    assert!(failed.is_empty(), "failures:\n{}", failed.join("\n"));
}
