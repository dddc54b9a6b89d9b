//! The on-disk format of wedge's precompiled (AOT) artifacts.
//!
//! Wasmtime loads precompiled code without checking it, so loading is only
//! sound for code we produced ourselves. Every artifact therefore carries a
//! trailer naming what it was built from and a digest of its payload, and
//! nothing is handed to Wasmtime before both check out.
//!
//! The trailer sits *after* Wasmtime's own bytes so that Wasmtime can map
//! the file directly (it ignores trailing data) and page code in lazily.
//! Layout of the trailer (little-endian): engine option bits (u32), kind
//! (u32: 0 module, 1 component), engine hash (u64), module SHA-256 (32),
//! payload BLAKE3 (32), payload length (u64), format version (u32), magic
//! `WEDGEAOT` (8).

use std::io::{Read, Seek, SeekFrom};

pub const MAGIC: &[u8; 8] = b"WEDGEAOT";
const VERSION: u32 = 3;
pub const TRAILER_LEN: usize = 4 + 4 + 8 + 32 + 32 + 8 + 4 + 8;

/// Whether an artifact holds a core module or a component.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Module,
    Component,
}

/// What an artifact says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub option_bits: u32,
    pub engine_hash: u64,
    pub kind: Kind,
    pub module_sha256: [u8; 32],
}

/// A header with the digest and length it promises.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trailer {
    pub header: Header,
    pub digest: [u8; 32],
    pub payload_len: u64,
}

/// Why an artifact was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArtifactError {
    #[error("not a wedge artifact (no `WEDGEAOT` trailer)")]
    NotOurs,
    #[error("artifact format version {found}, this wedge writes version {VERSION}")]
    Version { found: u32 },
    #[error("unknown artifact kind {0}")]
    Kind(u32),
    #[error("payload is {found} bytes, the trailer says {expected}")]
    Length { expected: u64, found: u64 },
    #[error("payload digest mismatch: the file is corrupted")]
    Digest,
    #[error("cannot read the artifact: {0}")]
    Io(String),
}

/// The trailer's first 48 bytes: what the artifact claims to be. The digest
/// covers them too, so no field can be altered unnoticed.
fn header_bytes(header: &Header) -> [u8; 48] {
    let kind: u32 = match header.kind {
        Kind::Module => 0,
        Kind::Component => 1,
    };
    let mut out = [0u8; 48];
    out[0..4].copy_from_slice(&header.option_bits.to_le_bytes());
    out[4..8].copy_from_slice(&kind.to_le_bytes());
    out[8..16].copy_from_slice(&header.engine_hash.to_le_bytes());
    out[16..48].copy_from_slice(&header.module_sha256);
    out
}

/// Appends the trailer for `payload` (Wasmtime's serialized bytes).
pub fn encode(header: &Header, mut payload: Vec<u8>) -> Vec<u8> {
    let head = header_bytes(header);
    let digest = blake3::Hasher::new()
        .update(&payload)
        .update(&head)
        .finalize();
    let len = payload.len() as u64;
    payload.reserve(TRAILER_LEN);
    payload.extend_from_slice(&head);
    payload.extend_from_slice(digest.as_bytes());
    payload.extend_from_slice(&len.to_le_bytes());
    payload.extend_from_slice(&VERSION.to_le_bytes());
    payload.extend_from_slice(MAGIC);
    payload
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Parses a trailer (the last [`TRAILER_LEN`] bytes of a file of `file_len`).
pub fn parse_trailer(t: &[u8], file_len: u64) -> Result<Trailer, ArtifactError> {
    if t.len() != TRAILER_LEN || &t[TRAILER_LEN - 8..] != MAGIC {
        return Err(ArtifactError::NotOurs);
    }
    let version = u32_at(t, TRAILER_LEN - 12);
    if version != VERSION {
        return Err(ArtifactError::Version { found: version });
    }
    let kind = match u32_at(t, 4) {
        0 => Kind::Module,
        1 => Kind::Component,
        k => return Err(ArtifactError::Kind(k)),
    };
    let payload_len = u64_at(t, 80);
    let found = file_len.saturating_sub(TRAILER_LEN as u64);
    if payload_len != found {
        return Err(ArtifactError::Length {
            expected: payload_len,
            found,
        });
    }
    Ok(Trailer {
        header: Header {
            option_bits: u32_at(t, 0),
            engine_hash: u64_at(t, 8),
            kind,
            module_sha256: t[16..48].try_into().unwrap(),
        },
        digest: t[48..80].try_into().unwrap(),
        payload_len,
    })
}

/// Reads the trailer of an open file.
pub fn read_trailer(file: &mut std::fs::File) -> Result<Trailer, ArtifactError> {
    let io = |e: std::io::Error| ArtifactError::Io(e.to_string());
    let len = file.metadata().map_err(io)?.len();
    if len < TRAILER_LEN as u64 {
        return Err(ArtifactError::NotOurs);
    }
    let mut t = [0u8; TRAILER_LEN];
    file.seek(SeekFrom::Start(len - TRAILER_LEN as u64))
        .map_err(io)?;
    file.read_exact(&mut t).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    parse_trailer(&t, len)
}

/// Checks the payload of an open artifact against its trailer's digest,
/// streaming it through the hasher (the payload is never held in memory).
pub fn verify_file(file: &mut std::fs::File, trailer: &Trailer) -> Result<(), ArtifactError> {
    let io = |e: std::io::Error| ArtifactError::Io(e.to_string());
    let mut hasher = blake3::Hasher::new();
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    hasher
        .update_reader(Read::by_ref(file).take(trailer.payload_len))
        .map_err(io)?;
    hasher.update(&header_bytes(&trailer.header));
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    if hasher.finalize().as_bytes() != &trailer.digest {
        return Err(ArtifactError::Digest);
    }
    Ok(())
}

/// Checks an artifact held in memory; returns its header and payload.
pub fn decode(bytes: &[u8]) -> Result<(Header, &[u8]), ArtifactError> {
    if bytes.len() < TRAILER_LEN {
        return Err(ArtifactError::NotOurs);
    }
    let split = bytes.len() - TRAILER_LEN;
    let trailer = parse_trailer(&bytes[split..], bytes.len() as u64)?;
    let payload = &bytes[..split];
    let digest = blake3::Hasher::new()
        .update(payload)
        .update(&header_bytes(&trailer.header))
        .finalize();
    if digest.as_bytes() != &trailer.digest {
        return Err(ArtifactError::Digest);
    }
    Ok((trailer.header, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            option_bits: 1,
            engine_hash: 0xdead_beef,
            kind: Kind::Component,
            module_sha256: [7; 32],
        }
    }

    #[test]
    fn round_trips_in_memory_and_on_disk() {
        let bytes = encode(&sample(), b"payload".to_vec());
        let (h, p) = decode(&bytes).unwrap();
        assert_eq!(h, sample());
        assert_eq!(p, b"payload");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.cwasm");
        std::fs::write(&path, &bytes).unwrap();
        let mut f = std::fs::File::open(&path).unwrap();
        let t = read_trailer(&mut f).unwrap();
        assert_eq!(t.header, sample());
        verify_file(&mut f, &t).unwrap();
    }

    #[test]
    fn detects_every_kind_of_damage() {
        let good = encode(&sample(), b"payload bytes".to_vec());
        assert_eq!(decode(b"\x7fELF....").unwrap_err(), ArtifactError::NotOurs);
        let mut flipped = good.clone();
        flipped[0] ^= 1;
        assert_eq!(decode(&flipped).unwrap_err(), ArtifactError::Digest);
        // Header fields are covered by the digest too.
        let mut options = good.clone();
        let at = options.len() - TRAILER_LEN;
        options[at] ^= 1;
        assert_eq!(decode(&options).unwrap_err(), ArtifactError::Digest);
        let mut longer = vec![0u8];
        longer.extend_from_slice(&good);
        assert!(matches!(
            decode(&longer).unwrap_err(),
            ArtifactError::Length { .. }
        ));
        let mut version = good.clone();
        let at = version.len() - 12;
        version[at] = 9;
        assert_eq!(
            decode(&version).unwrap_err(),
            ArtifactError::Version { found: 9 }
        );
    }
}
