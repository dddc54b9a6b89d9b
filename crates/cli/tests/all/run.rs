//! `wedge run`: arguments, environment, directories, exit codes, traps, stats.

use crate::support::{Sandbox, guest, s, wat_guest};

#[test]
fn hello_world_from_wat_and_wasm() {
    let sb = Sandbox::new();
    let r = sb.run(&["run", s(&guest("wat/hello.wat"))]);
    r.expect(0);
    assert_eq!(r.stdout, "hello from wasm\n");
    let wasm = wat_guest(sb.path(), "hello");
    assert_eq!(
        sb.run(&["run", s(&wasm)]).expect(0).stdout,
        "hello from wasm\n"
    );
}

#[test]
fn arguments_after_the_module_go_to_the_guest() {
    let sb = Sandbox::new();
    let hello = guest("c/hello.wasm");
    let r = sb.run(&["run", s(&hello), "one", "--two", "3 4"]);
    r.expect(0);
    assert!(
        r.stdout.contains("arg[1]=one\narg[2]=--two\narg[3]=3 4\n"),
        "{}",
        r.stdout
    );
}

#[test]
fn guest_exit_code_becomes_wedges() {
    let sb = Sandbox::new();
    sb.run(&["run", s(&guest("wat/exit7.wat"))]).expect(7);
    // The C guest returns 3 from main when its first argument starts with x.
    sb.run(&["run", s(&guest("c/hello.wasm")), "x"]).expect(3);
}

#[test]
fn guest_sees_only_the_environment_it_is_given() {
    let sb = Sandbox::new();
    let hello = guest("c/hello.wasm");
    let r = sb
        .wedge()
        .env("HOST_SECRET", "s3cret")
        .args(["run", "--env", "GREETING=hi", s(&hello)])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(out.contains("env GREETING=hi\n"), "{out}");
    assert!(!out.contains("HOST_SECRET"), "host env leaked: {out}");

    // `--env NAME` copies one host variable; `--env-inherit` copies all.
    let r = sb
        .wedge()
        .env("HOST_SECRET", "s3cret")
        .args(["run", "--env", "HOST_SECRET", s(&hello)])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&r.stdout).contains("env HOST_SECRET=s3cret\n"));
    let r = sb
        .wedge()
        .env("HOST_SECRET", "s3cret")
        .args([
            "run",
            "--env-inherit",
            "--env",
            "HOST_SECRET=over",
            s(&hello),
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(out.contains("env HOST_SECRET=over\n"), "{out}");
    assert!(out.contains("env PATH="), "{out}");
}

#[test]
fn preopened_directories_read_write_and_read_only() {
    let sb = Sandbox::new();
    let files = guest("c/files.wasm");
    let data = sb.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("in.txt"), "from the host").unwrap();

    let rw = format!("{}::/data", s(&data));
    let r = sb.run(&["run", "--dir", &rw, s(&files), "read", "/data/in.txt"]);
    assert_eq!(r.expect(0).stdout, "from the host");
    sb.run(&[
        "run",
        "--dir",
        &rw,
        s(&files),
        "write",
        "/data/out.txt",
        "written",
    ])
    .expect(0);
    assert_eq!(
        std::fs::read_to_string(data.join("out.txt")).unwrap(),
        "written"
    );

    let ro = format!("{}::/data:ro", s(&data));
    let r = sb.run(&["run", "--dir", &ro, s(&files), "read", "/data/in.txt"]);
    assert_eq!(r.expect(0).stdout, "from the host");
    let r = sb.run(&["run", "--dir", &ro, s(&files), "write", "/data/no.txt", "x"]);
    r.expect(1);
    assert!(
        !data.join("no.txt").exists(),
        "read-only directory was written"
    );

    // Without --dir the guest sees no files at all.
    let r = sb.run(&["run", s(&files), "read", "/data/in.txt"]);
    r.expect(1);
    assert!(r.stderr.contains("open /data/in.txt"), "{}", r.stderr);
}

#[test]
fn trap_prints_a_named_backtrace_and_exits_134() {
    let sb = Sandbox::new();
    let wasm = wat_guest(sb.path(), "divzero");
    let r = sb.run(&["run", s(&wasm)]);
    r.expect(134);
    assert!(
        r.stderr
            .contains("guest trapped: wasm trap: integer divide by zero"),
        "{}",
        r.stderr
    );
    let divide = r.stderr.find("divzero.wasm!divide").expect("frame names");
    let compute = r.stderr.find("divzero.wasm!compute").unwrap();
    let main = r.stderr.find("divzero.wasm!main").unwrap();
    assert!(divide < compute && compute < main, "{}", r.stderr);
}

#[test]
fn stats_table_and_json() {
    let sb = Sandbox::new();
    let hello = guest("c/hello.wasm");
    let r = sb.run(&["run", "--stats", s(&hello)]);
    r.expect(0);
    for row in [
        "aot cache  miss",
        "instantiate",
        "peak memory",
        "failed grows",
        "outcome  exit (exit status 0)",
    ] {
        assert!(r.stderr.contains(row), "missing `{row}` in\n{}", r.stderr);
    }

    let json_path = sb.path().join("stats.json");
    sb.run(&["run", "--stats-json", s(&json_path), s(&hello)])
        .expect(0);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(v["cache"], "hit");
    assert_eq!(v["kind"], "module");
    assert_eq!(v["exit_code"], 0);
    assert_eq!(v["outcome"], "exit");
    assert_eq!(v["memory_grow_failures"], 0);
    assert!(v["peak_memory_bytes"].as_u64().unwrap() >= 65536);
    assert_eq!(v["module_sha256"].as_str().unwrap().len(), 64);
    for key in [
        "compile_us",
        "instantiate_us",
        "run_us",
        "host_peak_rss_bytes",
    ] {
        assert!(v[key].is_u64(), "{key} in {v}");
    }
    assert!(
        v["fuel_consumed"].is_null(),
        "no fuel metering without --fuel"
    );
    assert!(v["trap"].is_null());

    let r = sb.run(&["run", "--stats-json", "-", s(&guest("wat/exit7.wat"))]);
    r.expect(7);
    assert_eq!(r.stats()["exit_code"], 7);
}

#[test]
fn component_commands_run_too() {
    let sb = Sandbox::new();
    let comp = guest("components/hello.component.wasm");
    let r = sb.run(&["run", "--stats-json", "-", "--env", "A=b", s(&comp), "arg1"]);
    r.expect(0);
    assert!(
        r.stdout.starts_with("hello from C\narg[1]=arg1\nenv A=b\n"),
        "{}",
        r.stdout
    );
    assert_eq!(r.stats()["kind"], "component");
    // WASI 0.2 `exit` carries only success or failure, so 3 arrives as 1.
    sb.run(&["run", s(&comp), "x"]).expect(1);
}

#[test]
fn stats_count_the_guests_cpu_apart_from_its_waiting() {
    let sb = Sandbox::new();
    // Sleeping 300 ms: long to run, next to nothing on the CPU.
    let slow = guest("c/wagi/slow.wasm");
    let r = sb.run(&[
        "run",
        "--stats-json",
        "-",
        "--env",
        "QUERY_STRING=nap&300",
        s(&slow),
    ]);
    r.expect(0);
    let v = r.stats();
    assert!(v["run_us"].as_u64().unwrap() >= 300_000, "{v}");
    let sleeper_cpu = v["cpu_us"].as_u64().unwrap();
    assert!(sleeper_cpu < 50_000, "{v}");
    // Spinning until stopped at 200 ms: on the CPU nearly all along.
    let r = sb.run(&[
        "run",
        "--stats-json",
        "-",
        "--timeout",
        "200ms",
        s(&guest("wat/spin.wat")),
    ]);
    let v = r.stats();
    assert_eq!(v["outcome"], "timeout");
    // On the CPU as much as the machine lets it: with other tests running
    // on two cores, that can be a quarter of the time, never a sleeper's.
    let spinner_cpu = v["cpu_us"].as_u64().unwrap();
    assert!(
        spinner_cpu >= 20_000 && spinner_cpu >= 10 * sleeper_cpu,
        "{v}"
    );
}
