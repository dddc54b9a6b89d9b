//! Link-time settings for the `wedge` binary.

fn main() {
    println!("cargo:rerun-if-env-changed=WEDGE_PIE");
    let target = std::env::var("TARGET").unwrap_or_default();
    if !target.contains("linux-gnu") {
        return;
    }
    // The binary carries about 60,000 relative relocations (vtables and
    // string tables of every crate: 1.4 MB of .data.rel.ro and .got). As a
    // position-independent executable the loader writes each of them at
    // every start, which copies ~360 pages of the file on write: measured,
    // 1.2 ms of the 2.7 ms a `wedge --version` takes, and the largest part
    // of `wedge run`'s start. Linked at a fixed address (as Go links its
    // binaries by default) the linker resolves them once and the loader
    // has nothing to do. The code is still position-independent and every
    // library, the heap, the stacks and all guest memory and code keep
    // their randomised addresses; only the binary's own image is fixed.
    // WEDGE_PIE=1 at build time keeps a PIE, with packed relative
    // relocations (DT_RELR; glibc 2.36+) to make its start cheaper.
    if std::env::var("WEDGE_PIE").is_ok_and(|v| v == "1") {
        if linker_packs_relocs() {
            println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
        }
    } else {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}

/// Whether the system linker knows `-z pack-relative-relocs` (it warns, not
/// fails, on unknown `-z` options, so ask it for its help text instead).
fn linker_packs_relocs() -> bool {
    std::process::Command::new("ld")
        .arg("--help")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("pack-relative-relocs"))
        .unwrap_or(false)
}
