//! Whether a function's source is a WASI 0.3 component, read from its binary
//! without compiling it. The serving engine gets Wasmtime's concurrency
//! support (which every store then pays for) only when one needs it.

use std::path::Path;

/// What a source needs from the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    /// A core module or a component that names no WASI 0.3 interface.
    NoP3,
    /// A component that imports or exports a `@0.3` interface.
    P3,
    /// Not WebAssembly this can read (a precompiled artifact, a missing
    /// file): only loading it will tell.
    Unknown,
}

/// Reads `path` and tells what it needs.
pub fn of_file(path: &Path) -> Needs {
    match std::fs::read(path) {
        Ok(bytes) => of_bytes(&bytes),
        Err(_) => Needs::Unknown,
    }
}

/// Tells what a WebAssembly binary needs, from the import and export
/// names [`wedge_inspect::inspect`] reads off its top level.
pub fn of_bytes(bytes: &[u8]) -> Needs {
    if !bytes.starts_with(b"\0asm") {
        return Needs::Unknown;
    }
    // A 0.3 interface's name is spelled out in the binary, so a source
    // without `@0.3` anywhere needs no parse. Parsing is what this avoids:
    // at start its code is not yet paged in, and each source cost ~0.5 ms.
    if !bytes
        .windows(P3_MARK.len())
        .any(|w| w == P3_MARK.as_bytes())
    {
        return Needs::NoP3;
    }
    match wedge_inspect::inspect(bytes) {
        Err(_) => Needs::Unknown,
        Ok(r) if r.kind != "component" => Needs::NoP3,
        Ok(r)
            if r.imports
                .iter()
                .chain(&r.exports)
                .any(|i| names_p3(&i.name)) =>
        {
            Needs::P3
        }
        Ok(_) => Needs::NoP3,
    }
}

/// What every WASI 0.3 interface name holds (`wasi:http/handler@0.3.0`).
const P3_MARK: &str = "@0.3";

/// Whether a component import or export name is a WASI 0.3 interface.
pub fn names_p3(name: &str) -> bool {
    name.contains(P3_MARK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component(wat: &str) -> Vec<u8> {
        wat::parse_str(wat).unwrap()
    }

    #[test]
    fn tells_0_3_components_from_the_rest() {
        let p2 = component(r#"(component (import "wasi:cli/environment@0.2.6" (instance)))"#);
        let p3_import = component(
            r#"(component (import "wasi:cli/environment@0.3.0-rc-2026-01-06" (instance)))"#,
        );
        let p3_export = component(
            r#"(component (instance $i) (export "wasi:http/handler@0.3.0" (instance $i)))"#,
        );
        let core = wat::parse_str("(module)").unwrap();
        assert_eq!(of_bytes(&p2), Needs::NoP3);
        assert_eq!(of_bytes(&p3_import), Needs::P3);
        assert_eq!(of_bytes(&p3_export), Needs::P3);
        assert_eq!(of_bytes(&core), Needs::NoP3);
        assert_eq!(of_bytes(b"not wasm"), Needs::Unknown);
        // Broken: when it names a 0.3 interface, only loading it will tell.
        assert_eq!(of_bytes(&p3_import[..p3_import.len() - 3]), Needs::Unknown);
        // A 0.3 name in a custom section alone: parsed, and not a 0.3 import.
        let custom = component(r#"(component (@custom "note" "uses @0.3 later"))"#);
        assert_eq!(of_bytes(&custom), Needs::NoP3);
        assert_eq!(of_file(Path::new("/nonexistent.wasm")), Needs::Unknown);
    }
}
