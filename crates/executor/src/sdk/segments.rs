//! Fewer data segments in a snapshot.
//!
//! Wizer writes one data segment per run of non-zero bytes (up to 10,000),
//! the smallest `.wasm` it can, and keeps every segment of the original
//! module as an empty passive one so that their indices stay valid; a Go
//! snapshot has about 78,000. Wasmtime builds its copy-on-write image from
//! them whatever their number, but it also writes a descriptor per segment
//! into every instance (for `memory.init` and `data.drop`): measured on the
//! bench's Go SDK function, that was a third of each request's CPU (230 µs
//! of instantiation). When the code never names a segment (no `memory.init`,
//! no `data.drop`), the passive segments can go, and active segments whose
//! gap is at most [`MAX_GAP`] zero bytes are merged: a handful remain, with
//! the same memory contents.

use anyhow::{Result, bail};
use std::ops::Range;
use wasm_encoder::{ConstExpr, CustomSection, DataCountSection, DataSection, RawSection};
use wasmparser::{DataKind, Operator, Parser, Payload};

/// Zero bytes written out rather than starting a new segment.
const MAX_GAP: u64 = 64 << 10;

struct Segment<'a> {
    memory: u32,
    offset: u64,
    data: &'a [u8],
}

/// Rewrites `wasm` with its active data segments merged and its passive
/// ones dropped; a module whose code names data segments, or whose offsets
/// are not constants, is left as it is.
pub fn coalesce(wasm: &[u8]) -> Result<Vec<u8>> {
    let mut segments = Vec::new();
    let mut memory64 = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        match payload? {
            Payload::CodeSectionEntry(body) => {
                let mut ops = body.get_operators_reader()?;
                while !ops.eof() {
                    if let Operator::MemoryInit { .. } | Operator::DataDrop { .. } = ops.read()? {
                        return Ok(wasm.to_vec());
                    }
                }
            }
            Payload::MemorySection(r) => {
                for m in r {
                    memory64.push(m?.memory64);
                }
            }
            Payload::DataSection(r) => {
                for d in r {
                    let d = d?;
                    let DataKind::Active {
                        memory_index,
                        offset_expr,
                    } = d.kind
                    else {
                        // Only `memory.init` can read a passive segment.
                        continue;
                    };
                    let mut ops = offset_expr.get_operators_reader();
                    let offset = match ops.read()? {
                        Operator::I32Const { value } => u64::from(value as u32),
                        Operator::I64Const { value } => value as u64,
                        _ => return Ok(wasm.to_vec()),
                    };
                    segments.push(Segment {
                        memory: memory_index,
                        offset,
                        data: d.data,
                    });
                }
            }
            _ => {}
        }
    }
    let merged = merge(segments);
    let mut data = DataSection::new();
    for (memory, offset, bytes) in &merged {
        let at = if memory64.get(*memory as usize) == Some(&true) {
            ConstExpr::i64_const(*offset as i64)
        } else {
            ConstExpr::i32_const(*offset as u32 as i32)
        };
        data.active(*memory, &at, bytes.iter().copied());
    }
    rewrite(wasm, &data, merged.len() as u32)
}

/// Merges segments of one memory that overlap or lie within `MAX_GAP` of
/// each other, later bytes winning as in instantiation.
fn merge(mut segments: Vec<Segment<'_>>) -> Vec<(u32, u64, Vec<u8>)> {
    // Stable: of two segments at one offset, the later one still wins.
    segments.sort_by_key(|s| (s.memory, s.offset));
    let mut out: Vec<(u32, u64, Vec<u8>)> = Vec::new();
    for s in segments {
        match out.last_mut() {
            Some((memory, start, bytes))
                if *memory == s.memory && s.offset <= *start + bytes.len() as u64 + MAX_GAP =>
            {
                let at = (s.offset - *start) as usize;
                let end = at + s.data.len();
                if bytes.len() < end {
                    bytes.resize(end, 0);
                }
                bytes[at..end].copy_from_slice(s.data);
            }
            _ => out.push((s.memory, s.offset, s.data.to_vec())),
        }
    }
    out
}

/// Copies every section of `wasm` but the data count and data sections,
/// which are replaced.
fn rewrite(wasm: &[u8], data: &DataSection, count: u32) -> Result<Vec<u8>> {
    let mut module = wasm_encoder::Module::new();
    let raw = |module: &mut wasm_encoder::Module, id: u8, range: Range<usize>| {
        module.section(&RawSection {
            id,
            data: &wasm[range],
        });
    };
    for payload in Parser::new(0).parse_all(wasm) {
        match payload? {
            Payload::Version { .. } | Payload::CodeSectionEntry(_) | Payload::End(_) => {}
            Payload::TypeSection(r) => raw(&mut module, 1, r.range()),
            Payload::ImportSection(r) => raw(&mut module, 2, r.range()),
            Payload::FunctionSection(r) => raw(&mut module, 3, r.range()),
            Payload::TableSection(r) => raw(&mut module, 4, r.range()),
            Payload::MemorySection(r) => raw(&mut module, 5, r.range()),
            Payload::GlobalSection(r) => raw(&mut module, 6, r.range()),
            Payload::ExportSection(r) => raw(&mut module, 7, r.range()),
            Payload::StartSection { range, .. } => raw(&mut module, 8, range),
            Payload::ElementSection(r) => raw(&mut module, 9, r.range()),
            Payload::DataCountSection { .. } => {
                module.section(&DataCountSection { count });
            }
            Payload::CodeSectionStart { range, .. } => raw(&mut module, 10, range),
            Payload::DataSection(_) => {
                module.section(data);
            }
            Payload::TagSection(r) => raw(&mut module, 13, r.range()),
            Payload::CustomSection(r) => {
                module.section(&CustomSection {
                    name: r.name().into(),
                    data: r.data().into(),
                });
            }
            other => bail!("cannot rewrite a module with {other:?}"),
        }
    }
    Ok(module.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearby_segments_merge_into_the_same_memory_contents() {
        let wasm = wat::parse_str(
            r#"(module
                (memory (export "memory") 4)
                (func (export "f") (result i32) (i32.load (i32.const 60000)))
                (data (i32.const 10) "abc")
                (data (i32.const 20) "de")
                (data (i32.const 21) "XY")
                (data (i32.const 60000) "\01\02")
                (data (i32.const 200000) "far"))"#,
        )
        .unwrap();
        let out = coalesce(&wasm).unwrap();
        wasmparser::validate(&out).unwrap();
        let mut segs = Vec::new();
        for p in Parser::new(0).parse_all(&out) {
            if let Payload::DataSection(r) = p.unwrap() {
                for d in r {
                    segs.push(d.unwrap().data.to_vec());
                }
            }
        }
        // 10..23 and 60000 are within 64 KiB of each other; 200000 is not.
        assert_eq!(segs.len(), 2);
        assert_eq!(&segs[0][..13], b"abc\0\0\0\0\0\0\0dXY");
        assert_eq!(segs[0][59_990..], [1, 2]);
        assert_eq!(segs[1], b"far");
        // The export and the code came through.
        let engine = wasmtime::Engine::default();
        let module = wasmtime::Module::new(&engine, &out).unwrap();
        let mut store = wasmtime::Store::new(&engine, ());
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
        let f = instance.get_typed_func::<(), i32>(&mut store, "f").unwrap();
        assert_eq!(f.call(&mut store, ()).unwrap(), 0x0201);
    }

    fn count(wasm: &[u8]) -> u32 {
        Parser::new(0)
            .parse_all(wasm)
            .find_map(|p| match p.unwrap() {
                Payload::DataSection(r) => Some(r.count()),
                _ => None,
            })
            .unwrap_or(0)
    }

    #[test]
    fn unused_passive_segments_go_and_used_ones_stay() {
        let unused = wat::parse_str(
            r#"(module (memory 1) (data "") (data "x") (data (i32.const 0) "y")
                (func (memory.fill (i32.const 0) (i32.const 0) (i32.const 0))))"#,
        )
        .unwrap();
        let out = coalesce(&unused).unwrap();
        wasmparser::validate(&out).unwrap();
        assert_eq!(count(&out), 1);
        let used = wat::parse_str(
            r#"(module (memory 1) (data "x") (data (i32.const 0) "y")
                (func (memory.init 0 (i32.const 0) (i32.const 0) (i32.const 1))))"#,
        )
        .unwrap();
        assert_eq!(coalesce(&used).unwrap(), used);
    }
}
