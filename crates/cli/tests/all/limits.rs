//! Memory limits, timeouts, fuel and stack exhaustion.

use crate::support::{Sandbox, guest, s, wat_guest};

#[test]
fn memory_limit_makes_grow_return_minus_one() {
    let sb = Sandbox::new();
    let grow = wat_guest(sb.path(), "grow");
    // grow.wat exits with the number of pages it managed to hold.
    let r = sb.run(&["run", "--max-memory", "2MiB", "--stats-json", "-", s(&grow)]);
    r.expect(32);
    let v = r.stats();
    assert_eq!(v["peak_memory_bytes"], 2 * 1024 * 1024);
    assert_eq!(v["memory_limit_bytes"], 2 * 1024 * 1024);
    assert_eq!(v["memory_grow_failures"], 1);

    // Sizes round up to whole pages: 100KiB is 2 pages.
    sb.run(&["run", "--max-memory", "100KiB", s(&grow)])
        .expect(2);
    sb.run(&["run", "--max-memory-pages", "5", s(&grow)])
        .expect(5);
}

#[test]
fn c_guest_sees_malloc_fail_under_the_limit() {
    let sb = Sandbox::new();
    let alloc = guest("c/alloc.wasm");
    let r = sb.run(&["run", "--max-memory", "1MiB", s(&alloc), "4"]);
    r.expect(10);
    assert_eq!(r.stdout, "malloc(4 MiB) failed\n");
    let r = sb.run(&["run", "--max-memory", "8MiB", s(&alloc), "4"]);
    r.expect(0);
    assert!(r.stdout.starts_with("malloc(4 MiB) ok"), "{}", r.stdout);
}

#[test]
fn trap_on_grow_failure_traps_with_a_memory_message() {
    let sb = Sandbox::new();
    let grow = wat_guest(sb.path(), "grow");
    let r = sb.run(&[
        "run",
        "--max-memory-pages",
        "5",
        "--trap-on-grow-failure",
        "--stats-json",
        "-",
        s(&grow),
    ]);
    r.expect(134);
    assert!(r.stderr.contains("memory limit exceeded"), "{}", r.stderr);
    assert_eq!(r.stats()["outcome"], "memory-limit");
}

#[test]
fn timeout_stops_an_endless_loop_with_124() {
    let sb = Sandbox::new();
    let spin = wat_guest(sb.path(), "spin");
    let r = sb.run(&["run", "--timeout", "100ms", "--stats-json", "-", s(&spin)]);
    r.expect(124);
    assert!(r.stderr.contains("timed out"), "{}", r.stderr);
    assert_eq!(r.stats()["outcome"], "timeout");
}

#[test]
fn timeout_does_not_disturb_a_quick_guest() {
    let sb = Sandbox::new();
    let r = sb.run(&["run", "--timeout", "10s", s(&guest("wat/hello.wat"))]);
    assert_eq!(r.expect(0).stdout, "hello from wasm\n");
}

#[test]
fn fuel_is_deterministic_and_runs_out_with_152() {
    let sb = Sandbox::new();
    let burn = wat_guest(sb.path(), "burn");
    let a = sb.run(&["run", "--fuel", "1000000000", "--stats-json", "-", s(&burn)]);
    a.expect(0);
    let b = sb.run(&["run", "--fuel", "1000000000", "--stats-json", "-", s(&burn)]);
    let used = a.stats()["fuel_consumed"].as_u64().unwrap();
    assert!(
        used > 10_000_000,
        "10M iterations cost more than 10M fuel, got {used}"
    );
    assert_eq!(used, b.stats()["fuel_consumed"].as_u64().unwrap());

    let r = sb.run(&["run", "--fuel", "1000", "--stats-json", "-", s(&burn)]);
    r.expect(152);
    assert!(r.stderr.contains("out of fuel"), "{}", r.stderr);
    let v = r.stats();
    assert_eq!(v["outcome"], "fuel");
    assert_eq!(v["fuel_consumed"], 1000);
}

#[test]
fn unbounded_recursion_is_a_stack_overflow_trap() {
    let sb = Sandbox::new();
    let r = sb.run(&["run", s(&guest("wat/recurse.wat"))]);
    r.expect(134);
    assert!(r.stderr.contains("call stack exhausted"), "{}", r.stderr);
}
