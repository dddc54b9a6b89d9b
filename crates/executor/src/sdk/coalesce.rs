//! Joining a fresh instance's scattered dirty pages into fewer runs, so that
//! Wasmtime keeps them resident.
//!
//! Between requests Wasmtime resets an instance slot's memory by asking the
//! kernel (`PAGEMAP_SCAN`) for the pages written since the slot was mapped,
//! copying the image back over them, and keeping them resident. Wasmtime 48
//! asks for at most 32 runs of such pages; everything past the 32nd run is
//! returned to the kernel, and the next request in that slot takes a
//! copy-on-write fault (and a TLB flush on the other cores) for each of those
//! pages again. A Go request writes small, scattered runs: the bench's JSON
//! handler 48 runs of 80 pages in all. Writing back the unchanged contents of
//! the clean pages in gaps of up to [`MAX_GAP`] pages between runs turns
//! them into written pages too: 48 runs become 28, for 44 more pages copied
//! back per reset, which costs far less than the faults. It is done for the
//! first few requests in each slot (the pages then stay written), and never
//! changes a byte the guest can see.
//!
//! Measured on the bench's JSON workload (wrk, 64 connections, three
//! alternating runs each): 28 page faults per request → 0, CPU per request
//! 836 → 719 µs, 2.34k → 2.71k requests/s. Go WAGI modules do not need it:
//! they take 2 faults per request.

use std::io::{Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicU8, Ordering};

/// The largest gap of clean pages filled between two written runs.
const MAX_GAP: usize = 4;

/// How many requests in a slot are looked at.
const PASSES: u8 = 3;

const PAGE: usize = 4096;

/// How often each slot was looked at, by a hash of its memory's address
/// (pooled memories sit at fixed addresses). No lock on the request path; a
/// slot that shares a counter with another (a few in a pool of a thousand)
/// merely gets fewer passes.
static PASSES_DONE: [AtomicU8; 1 << COUNTER_BITS] = [const { AtomicU8::new(0) }; 1 << COUNTER_BITS];

const COUNTER_BITS: u32 = 16;

fn passes_done(base: usize) -> &'static AtomicU8 {
    // Fibonacci hashing of the page number: its top bits pick the counter.
    let hash = ((base / PAGE) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    &PASSES_DONE[(hash >> (64 - COUNTER_BITS)) as usize]
}

/// Fills the small gaps between written runs of `memory` (see the module
/// docs). Any failure just leaves the memory as it is.
pub fn fill_gaps(memory: &mut [u8]) {
    let base = memory.as_ptr() as usize;
    if !base.is_multiple_of(PAGE) || memory.len() < PAGE {
        return;
    }
    let counted = passes_done(base).fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
        (n < PASSES).then_some(n + 1)
    });
    if counted.is_err() {
        return;
    }
    let Some(written) = written_pages(base, memory.len() / PAGE) else {
        return;
    };
    let mut last_written: Option<usize> = None;
    for (page, &w) in written.iter().enumerate() {
        if !w {
            continue;
        }
        if let Some(prev) = last_written {
            let gap = page - prev - 1;
            if (1..=MAX_GAP).contains(&gap) {
                for clean in prev + 1..page {
                    let at = clean * PAGE;
                    // The same byte back: the page becomes written, its
                    // contents stay. black_box keeps the store from being
                    // optimised away.
                    memory[at] = std::hint::black_box(memory[at]);
                }
            }
        }
        last_written = Some(page);
    }
}

/// Which of `pages` pages from `base` are present and no longer the file's
/// or the zero page (written since mapped), from `/proc/self/pagemap`.
fn written_pages(base: usize, pages: usize) -> Option<Vec<bool>> {
    let mut file = std::fs::File::open("/proc/self/pagemap").ok()?;
    file.seek(SeekFrom::Start((base / PAGE * 8) as u64)).ok()?;
    let mut raw = vec![0u8; pages * 8];
    file.read_exact(&mut raw).ok()?;
    Some(
        raw.chunks_exact(8)
            .map(|e| {
                let e = u64::from_le_bytes(e.try_into().unwrap_or_default());
                let present = e & (1 << 63) != 0;
                let file_or_shared = e & (1 << 61) != 0;
                let exclusive = e & (1 << 56) != 0;
                present && !file_or_shared && exclusive
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::{Engine, Instance, Module, Store};

    /// A guest writes into host pages 0, 2, 3 and 10 of its memory; the gap
    /// of one page between 0 and 2 is filled, the gap of six between 3 and
    /// 10 is not, and no byte changes.
    #[test]
    fn small_gaps_between_written_pages_become_written_and_keep_their_bytes() {
        let engine = Engine::default();
        let wat = r#"(module
            (memory (export "memory") 1)
            (func (export "run")
              (i32.store8 (i32.const 0) (i32.const 1))
              (i32.store8 (i32.const 8192) (i32.const 2))
              (i32.store8 (i32.const 12288) (i32.const 3))
              (i32.store8 (i32.const 40960) (i32.const 10))))"#;
        let module = Module::new(&engine, wat).unwrap();
        let mut store = Store::new(&engine, ());
        let instance = Instance::new(&mut store, &module, &[]).unwrap();
        let run = instance
            .get_typed_func::<(), ()>(&mut store, "run")
            .unwrap();
        run.call(&mut store, ()).unwrap();
        let memory = instance.get_memory(&mut store, "memory").unwrap();
        // Reading every page maps the untouched ones to the shared zero
        // page: present, but not written.
        let before = memory.data(&store).to_vec();
        let base = memory.data_ptr(&store) as usize;
        let written = || {
            let w = written_pages(base, 16).expect("/proc/self/pagemap readable");
            (0..16).filter(|&p| w[p]).collect::<Vec<_>>()
        };
        assert_eq!(written(), [0, 2, 3, 10]);
        fill_gaps(memory.data_mut(&mut store));
        assert_eq!(
            written(),
            [0, 1, 2, 3, 10],
            "the one-page gap is filled, the six-page one is not"
        );
        assert_eq!(memory.data(&store), &before[..], "no byte changed");
    }
}
