//! Bad input: one clear line naming the problem, a non-zero status, no panic.

use crate::support::{Run, Sandbox, guest, s};

/// The error is one `wedge: error:` line that contains every `needle`.
#[track_caller]
fn one_line_error(r: &Run, status: i32, needles: &[&str]) {
    r.expect(status);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got:\n{}", r.stderr);
    for n in needles {
        assert!(lines[0].contains(n), "`{n}` missing from: {}", lines[0]);
    }
    assert!(!r.stderr.contains("stack backtrace"), "{}", r.stderr);
}

#[test]
fn missing_file() {
    let sb = Sandbox::new();
    let r = sb.run(&["run", "/no/such/app.wasm"]);
    one_line_error(
        &r,
        1,
        &["wedge: error:", "/no/such/app.wasm", "No such file"],
    );
}

#[test]
fn not_wasm() {
    let sb = Sandbox::new();
    let f = sb.path().join("notes.txt");
    std::fs::write(&f, "just some text").unwrap();
    let r = sb.run(&["run", s(&f)]);
    one_line_error(
        &r,
        1,
        &[
            "notes.txt",
            "not a WebAssembly module",
            "\\0asm",
            "6a 75 73 74",
        ],
    );
    let empty = sb.path().join("empty.wasm");
    std::fs::write(&empty, "").unwrap();
    one_line_error(
        &sb.run(&["run", s(&empty)]),
        1,
        &["empty.wasm", "the file is empty"],
    );
}

#[test]
fn truncated_module_names_the_offset() {
    let sb = Sandbox::new();
    let bytes = std::fs::read(guest("c/hello.wasm")).unwrap();
    let cut = sb.path().join("cut.wasm");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let r = sb.run(&["run", s(&cut)]);
    one_line_error(&r, 1, &["cut.wasm", "invalid WebAssembly", "(at offset 0x"]);
    let r = sb.run(&["inspect", s(&cut)]);
    one_line_error(&r, 1, &["cut.wasm", "(at offset 0x"]);
}

#[test]
fn bad_wat_names_line_and_column() {
    let sb = Sandbox::new();
    let f = sb.path().join("bad.wat");
    std::fs::write(&f, "(module\n  (func (export \"_start\") (i32.bogus)))\n").unwrap();
    let r = sb.run(&["run", s(&f)]);
    one_line_error(&r, 1, &["bad.wat", "invalid WebAssembly text", ":2:"]);
}

#[test]
fn missing_import_is_named() {
    let sb = Sandbox::new();
    let r = sb.run(&["run", s(&guest("wat/needs_env.wat"))]);
    one_line_error(
        &r,
        1,
        &["needs_env.wat", "cannot link", "`env::missing_fn`"],
    );
}

#[test]
fn bad_flag_values() {
    let sb = Sandbox::new();
    let hello = guest("wat/hello.wat");
    for (flag, value, needle) in [
        ("--max-memory", "2XB", "unknown unit `XB`"),
        ("--max-memory", "lots", "invalid size"),
        ("--timeout", "10", "missing unit"),
        ("--timeout", "soon", "invalid duration"),
        ("--fuel", "lots", "--fuel"),
        ("--max-memory-pages", "many", "--max-memory-pages"),
    ] {
        let r = sb.run(&["run", flag, value, s(&hello)]);
        r.expect(2);
        assert!(r.stderr.contains(needle), "{flag} {value}: {}", r.stderr);
    }
    let r = sb.run(&["run", "--dir", "/no/such/dir", s(&hello)]);
    one_line_error(&r, 1, &["--dir /no/such/dir", "no such directory"]);
    let r = sb.run(&["run", "--dir", "::/x", s(&hello)]);
    r.expect(2);
    assert!(r.stderr.contains("HOST[::GUEST][:ro]"), "{}", r.stderr);
    let r = sb.run(&["run", "--env", "=x", s(&hello)]);
    one_line_error(&r, 1, &["empty variable name"]);
    let r = sb.run(&["run", "--env", "WEDGE_TEST_UNSET_VAR", s(&hello)]);
    one_line_error(&r, 1, &["WEDGE_TEST_UNSET_VAR"]);
}

#[test]
fn a_reactor_is_not_a_command() {
    let sb = Sandbox::new();
    let f = sb.path().join("reactor.wat");
    std::fs::write(&f, r#"(module (func (export "_initialize")))"#).unwrap();
    let r = sb.run(&["run", s(&f)]);
    one_line_error(&r, 1, &["reactor.wat", "no `_start`"]);
}

#[test]
fn help_reads_well() {
    let sb = Sandbox::new();
    let r = sb.run(&["--help"]);
    r.expect(0);
    for cmd in ["run", "compile", "inspect", "cache"] {
        assert!(r.stdout.contains(cmd), "{}", r.stdout);
    }
    let r = sb.run(&["run", "--help"]);
    for flag in [
        "--max-memory",
        "--timeout",
        "--fuel",
        "--stats-json",
        "--dir",
        "Exit status",
    ] {
        assert!(r.stdout.contains(flag), "{flag}: {}", r.stdout);
    }
}
