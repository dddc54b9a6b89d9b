//! Link-time settings for the `wedge` binary.

fn main() {
    // The binary carries about 60,000 relative relocations that the dynamic
    // loader applies at every start (a fifth of `wedge serve`'s start-up CPU,
    // and 1.5 MB of relocation table paged in). Packed relative relocations
    // (DT_RELR; glibc 2.36+, binutils 2.38+) shrink the table to a few
    // kilobytes and apply it in a tight loop. The binary then needs glibc
    // 2.36 or later wherever it runs, as the machine that built it has.
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.contains("linux-gnu") && linker_packs_relocs() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
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
