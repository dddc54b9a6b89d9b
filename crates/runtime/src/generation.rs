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

/// Tells what a WebAssembly binary needs.
pub fn of_bytes(bytes: &[u8]) -> Needs {
    use wasmparser::Payload::{ComponentExportSection, ComponentImportSection};
    if !bytes.starts_with(b"\0asm") {
        return Needs::Unknown;
    }
    if !wasmparser::Parser::is_component(bytes) {
        return Needs::NoP3;
    }
    let p3 = |name: &str| name.contains("@0.3");
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let hit = match payload {
            Err(_) => return Needs::Unknown,
            Ok(ComponentImportSection(r)) => r.into_iter().flatten().any(|i| p3(i.name.name)),
            Ok(ComponentExportSection(r)) => r.into_iter().flatten().any(|e| p3(e.name.name)),
            Ok(_) => false,
        };
        if hit {
            return Needs::P3;
        }
    }
    Needs::NoP3
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
        assert_eq!(of_bytes(&p2[..p2.len() - 3]), Needs::Unknown);
        assert_eq!(of_file(Path::new("/nonexistent.wasm")), Needs::Unknown);
    }
}
