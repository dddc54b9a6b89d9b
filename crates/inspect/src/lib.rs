//! wedge-inspect: describes a WebAssembly module or component without running it.
//!
//! [`inspect`] reads the binary once and reports which worlds it fits (WASI
//! preview1 command, WAGI, `wasi:cli` command, `wasi:http` proxy or service),
//! its imports and exports, memories, section sizes and producers.

use wasmparser::{
    ComponentExternalKind, ExternalKind, KnownCustom, Parser, Payload, ProducersSectionReader,
    TypeRef,
};

/// A import or export by name and kind.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Item {
    /// `module::name` for core imports, the plain name otherwise.
    pub name: String,
    pub kind: String,
}

/// One linear memory, in 64 KiB pages.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Memory {
    /// Which core module it belongs to (0 for a plain module).
    pub module: usize,
    pub imported: bool,
    pub min_pages: u64,
    pub max_pages: Option<u64>,
    pub shared: bool,
    pub memory64: bool,
}

/// Size of one section.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Section {
    pub name: String,
    pub bytes: u64,
}

/// One field of a `producers` section (`language`, `processed-by`, `sdk`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Producer {
    pub field: String,
    pub name: String,
    pub version: String,
}

/// Everything `wedge inspect` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// `module` or `component`.
    pub kind: &'static str,
    pub size_bytes: u64,
    /// The worlds this program fits, most specific first.
    pub worlds: Vec<String>,
    pub imports: Vec<Item>,
    pub exports: Vec<Item>,
    pub memories: Vec<Memory>,
    pub sections: Vec<Section>,
    pub producers: Vec<Producer>,
    /// Core modules embedded in a component.
    pub core_modules: usize,
}

/// Why a binary could not be inspected.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InspectError(String);

fn section_name(p: &Payload<'_>) -> Option<&'static str> {
    Some(match p {
        Payload::TypeSection(_) => "type",
        Payload::ImportSection(_) => "import",
        Payload::FunctionSection(_) => "function",
        Payload::TableSection(_) => "table",
        Payload::MemorySection(_) => "memory",
        Payload::TagSection(_) => "tag",
        Payload::GlobalSection(_) => "global",
        Payload::ExportSection(_) => "export",
        Payload::StartSection { .. } => "start",
        Payload::ElementSection(_) => "element",
        Payload::DataCountSection { .. } => "datacount",
        Payload::DataSection(_) => "data",
        Payload::CodeSectionStart { .. } => "code",
        Payload::ModuleSection { .. } => "core module",
        Payload::InstanceSection(_) => "core instance",
        Payload::CoreTypeSection(_) => "core type",
        Payload::ComponentSection { .. } => "component",
        Payload::ComponentInstanceSection(_) => "component instance",
        Payload::ComponentAliasSection(_) => "alias",
        Payload::ComponentTypeSection(_) => "component type",
        Payload::ComponentCanonicalSection(_) => "canonical",
        Payload::ComponentStartSection { .. } => "component start",
        Payload::ComponentImportSection(_) => "component import",
        Payload::ComponentExportSection(_) => "component export",
        _ => return None,
    })
}

fn type_ref_kind(t: &TypeRef) -> &'static str {
    match t {
        TypeRef::Func(_) | TypeRef::FuncExact(_) => "func",
        TypeRef::Table(_) => "table",
        TypeRef::Memory(_) => "memory",
        TypeRef::Global(_) => "global",
        TypeRef::Tag(_) => "tag",
    }
}

fn external_kind(k: ExternalKind) -> &'static str {
    match k {
        ExternalKind::Func | ExternalKind::FuncExact => "func",
        ExternalKind::Table => "table",
        ExternalKind::Memory => "memory",
        ExternalKind::Global => "global",
        ExternalKind::Tag => "tag",
    }
}

fn component_kind(k: ComponentExternalKind) -> &'static str {
    match k {
        ComponentExternalKind::Module => "module",
        ComponentExternalKind::Func => "func",
        ComponentExternalKind::Value => "value",
        ComponentExternalKind::Type => "type",
        ComponentExternalKind::Instance => "instance",
        ComponentExternalKind::Component => "component",
    }
}

fn err(e: wasmparser::BinaryReaderError) -> InspectError {
    InspectError(format!("{} (at offset 0x{:x})", e.message(), e.offset()))
}

/// Inspects a binary module or component.
pub fn inspect(bytes: &[u8]) -> Result<Report, InspectError> {
    let component = Parser::is_component(bytes);
    let mut r = Report {
        kind: if component { "component" } else { "module" },
        size_bytes: bytes.len() as u64,
        worlds: Vec::new(),
        imports: Vec::new(),
        exports: Vec::new(),
        memories: Vec::new(),
        sections: Vec::new(),
        producers: Vec::new(),
        core_modules: 0,
    };
    // Nesting depth: 0 is the top level; sections of nested modules and
    // components only contribute memories and producers.
    let mut depth = 0usize;
    let mut module_index = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(err)?;
        if depth == 0
            && let Some(name) = section_name(&payload)
        {
            let bytes = match &payload {
                Payload::ModuleSection {
                    unchecked_range, ..
                }
                | Payload::ComponentSection {
                    unchecked_range, ..
                } => unchecked_range.len() as u64,
                Payload::CodeSectionStart { size, .. } => u64::from(*size),
                other => other.as_section().map_or(0, |(_, r)| r.len() as u64),
            };
            add_section(&mut r.sections, name, bytes);
        }
        match payload {
            Payload::Version { .. } if depth > 0 || !component => {}
            Payload::ModuleSection { .. } => {
                depth += 1;
                r.core_modules += 1;
                module_index = r.core_modules;
            }
            Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ImportSection(s) if depth == 0 => {
                for imp in s.into_imports() {
                    let imp = imp.map_err(err)?;
                    if let TypeRef::Memory(m) = imp.ty {
                        r.memories.push(memory(module_index, true, &m));
                    }
                    r.imports.push(Item {
                        name: format!("{}::{}", imp.module, imp.name),
                        kind: type_ref_kind(&imp.ty).into(),
                    });
                }
            }
            Payload::ImportSection(s) => {
                for imp in s.into_imports() {
                    if let TypeRef::Memory(m) = imp.map_err(err)?.ty {
                        r.memories.push(memory(module_index, true, &m));
                    }
                }
            }
            Payload::MemorySection(s) => {
                for m in s {
                    r.memories
                        .push(memory(module_index, false, &m.map_err(err)?));
                }
            }
            Payload::ExportSection(s) if depth == 0 => {
                for e in s {
                    let e = e.map_err(err)?;
                    r.exports.push(Item {
                        name: e.name.to_string(),
                        kind: external_kind(e.kind).into(),
                    });
                }
            }
            Payload::ComponentImportSection(s) if depth == 0 => {
                for imp in s {
                    let imp = imp.map_err(err)?;
                    r.imports.push(Item {
                        name: imp.name.name.to_string(),
                        kind: component_type_ref_kind(&imp.ty).into(),
                    });
                }
            }
            Payload::ComponentExportSection(s) if depth == 0 => {
                for e in s {
                    let e = e.map_err(err)?;
                    r.exports.push(Item {
                        name: e.name.name.to_string(),
                        kind: component_kind(e.kind).into(),
                    });
                }
            }
            Payload::CustomSection(c) => {
                if depth == 0 {
                    add_section(
                        &mut r.sections,
                        &format!("custom \"{}\"", c.name()),
                        c.data().len() as u64,
                    );
                }
                if let KnownCustom::Producers(reader) = c.as_known() {
                    add_producers(&mut r.producers, reader)?;
                }
            }
            _ => {}
        }
    }
    r.worlds = worlds(&r);
    Ok(r)
}

fn component_type_ref_kind(t: &wasmparser::ComponentTypeRef) -> &'static str {
    use wasmparser::ComponentTypeRef as C;
    match t {
        C::Module(_) => "module",
        C::Func(_) => "func",
        C::Value(_) => "value",
        C::Type(_) => "type",
        C::Instance(_) => "instance",
        C::Component(_) => "component",
    }
}

fn memory(module: usize, imported: bool, m: &wasmparser::MemoryType) -> Memory {
    Memory {
        module,
        imported,
        min_pages: m.initial,
        max_pages: m.maximum,
        shared: m.shared,
        memory64: m.memory64,
    }
}

fn add_section(sections: &mut Vec<Section>, name: &str, bytes: u64) {
    match sections.iter_mut().find(|s| s.name == name) {
        Some(s) => s.bytes += bytes,
        None => sections.push(Section {
            name: name.to_string(),
            bytes,
        }),
    }
}

fn add_producers(
    out: &mut Vec<Producer>,
    reader: ProducersSectionReader<'_>,
) -> Result<(), InspectError> {
    for field in reader {
        let field = field.map_err(err)?;
        for value in field.values {
            let value = value.map_err(err)?;
            let p = Producer {
                field: field.name.to_string(),
                name: value.name.to_string(),
                version: value.version.to_string(),
            };
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    Ok(())
}

/// Does a component export name the interface `iface` (any version)?
fn exports_interface(r: &Report, iface: &str, version_prefix: &str) -> bool {
    r.exports.iter().any(|e| {
        e.name
            .strip_prefix(iface)
            .and_then(|rest| rest.strip_prefix('@'))
            .is_some_and(|v| v.starts_with(version_prefix))
    })
}

fn worlds(r: &Report) -> Vec<String> {
    let mut w = Vec::new();
    if r.kind == "module" {
        let wasi = |i: &Item| {
            i.name.starts_with("wasi_snapshot_preview1::") || i.name.starts_with("wasi_unstable::")
        };
        let wasi_only = r.imports.iter().all(wasi);
        let has =
            |name: &str, kind: &str| r.exports.iter().any(|e| e.name == name && e.kind == kind);
        let memory_exported = has("memory", "memory");
        // wedge ABI v1 (docs/go-sdk.md): what the Go SDK builds.
        let sdk = has("wedge_handle_v1", "func")
            && memory_exported
            && r.imports
                .iter()
                .all(|i| wasi(i) || i.name.starts_with("wedge_v1::"));
        if sdk {
            w.push("wedge-sdk@1".to_string());
        }
        if has("_start", "func") && wasi_only {
            w.push("wasi-preview1-command".to_string());
            if memory_exported {
                // WAGI runs a command per request: CGI over stdin/stdout.
                w.push("wagi".to_string());
            }
        } else if has("_initialize", "func") && wasi_only {
            w.push("wasi-preview1-reactor".to_string());
        }
        if !wasi_only && !sdk {
            w.push("custom-imports".to_string());
        }
        return w;
    }
    if exports_interface(r, "wasi:http/handler", "0.3") {
        w.push("wasi:http/service@0.3".to_string());
    }
    if exports_interface(r, "wasi:http/incoming-handler", "0.2") {
        w.push("wasi:http/proxy@0.2".to_string());
    }
    if exports_interface(r, "wasi:cli/run", "0.2") {
        w.push("wasi:cli/command@0.2".to_string());
    }
    if exports_interface(r, "wasi:cli/run", "0.3") {
        w.push("wasi:cli/command@0.3".to_string());
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wasm(text: &str) -> Vec<u8> {
        wat::parse_str(text).unwrap()
    }

    #[test]
    fn a_wedge_sdk_module_is_named() {
        let r = inspect(&wasm(
            r#"(module
                (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
                (import "wedge_v1" "request_head" (func (param i32 i32) (result i32)))
                (memory (export "memory") 1)
                (func (export "_initialize"))
                (func (export "wedge_handle_v1") (result i32) i32.const 0))"#,
        ))
        .unwrap();
        assert_eq!(r.worlds, ["wedge-sdk@1"]);
        // Importing the ABI without exporting its entry point is not it.
        let r = inspect(&wasm(
            r#"(module
                (import "wedge_v1" "request_head" (func (param i32 i32) (result i32)))
                (memory (export "memory") 1))"#,
        ))
        .unwrap();
        assert_eq!(r.worlds, ["custom-imports"]);
    }

    #[test]
    fn preview1_command_with_memory_is_wagi_capable() {
        let r = inspect(&wasm(
            r#"(module
                (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
                (memory (export "memory") 2 10)
                (func (export "_start")))"#,
        ))
        .unwrap();
        assert_eq!(r.kind, "module");
        assert_eq!(r.worlds, ["wasi-preview1-command", "wagi"]);
        assert_eq!(r.imports[0].name, "wasi_snapshot_preview1::proc_exit");
        assert_eq!(r.memories[0].min_pages, 2);
        assert_eq!(r.memories[0].max_pages, Some(10));
        assert!(r.sections.iter().any(|s| s.name == "code" && s.bytes > 0));
    }

    #[test]
    fn foreign_imports_and_reactors() {
        let r = inspect(&wasm(
            r#"(module (import "env" "f" (func)) (func (export "_initialize")))"#,
        ))
        .unwrap();
        assert_eq!(r.worlds, ["custom-imports"]);
        let r = inspect(&wasm(r#"(module (func (export "_initialize")))"#)).unwrap();
        assert_eq!(r.worlds, ["wasi-preview1-reactor"]);
    }

    #[test]
    fn component_exports_name_the_world() {
        let r = inspect(&wasm(
            r#"(component
                (core module $m (memory 1) (func (export "run") (result i32) i32.const 0))
                (core instance $i (instantiate $m))
                (func $run (result (result)) (canon lift (core func $i "run")))
                (instance $inst (export "run" (func $run)))
                (export "wasi:cli/run@0.2.3" (instance $inst)))"#,
        ))
        .unwrap();
        assert_eq!(r.kind, "component");
        assert_eq!(r.worlds, ["wasi:cli/command@0.2"]);
        assert_eq!(r.core_modules, 1);
        assert_eq!(r.memories.len(), 1);
        assert_eq!(r.memories[0].module, 1);
    }

    #[test]
    fn truncated_input_names_the_offset() {
        let mut bytes = wasm(r#"(module (func (export "_start")))"#);
        bytes.truncate(bytes.len() - 3);
        let e = inspect(&bytes).unwrap_err().to_string();
        assert!(e.contains("offset 0x"), "{e}");
    }
}
