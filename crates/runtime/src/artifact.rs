//! The on-disk format of wedge's precompiled (AOT) artifacts.
//!
//! Wasmtime loads precompiled code without checking it, so loading is only
//! sound for code we produced ourselves. Every artifact therefore carries a
//! header naming what it was built from and a digest of its payload, and
//! nothing is handed to Wasmtime before both check out.
//!
//! Layout (little-endian): magic `WEDGEAOT`, format version (u32), engine
//! option bits (u32), engine hash (u64), kind (u32: 0 module, 1 component),
//! reserved (u32), module SHA-256 (32 bytes), payload BLAKE3 (32 bytes),
//! payload length (u64), then the payload Wasmtime produced.


pub const MAGIC: &[u8; 8] = b"WEDGEAOT";
const VERSION: u32 = 2;
pub const HEADER_LEN: usize = 8 + 4 + 4 + 8 + 4 + 4 + 32 + 32 + 8;

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

/// Why an artifact was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArtifactError {
    #[error("not a wedge artifact (no `WEDGEAOT` header)")]
    NotOurs,
    #[error("truncated: {len} bytes, the header alone needs {HEADER_LEN}")]
    Truncated { len: usize },
    #[error("artifact format version {found}, this wedge writes version {VERSION}")]
    Version { found: u32 },
    #[error("unknown artifact kind {0}")]
    Kind(u32),
    #[error("payload is {found} bytes, the header says {expected}")]
    Length { expected: u64, found: u64 },
    #[error("payload digest mismatch: the file is corrupted")]
    Digest,
}

/// Serialises `payload` with its header.
pub fn encode(header: &Header, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&header.option_bits.to_le_bytes());
    out.extend_from_slice(&header.engine_hash.to_le_bytes());
    let kind: u32 = match header.kind {
        Kind::Module => 0,
        Kind::Component => 1,
    };
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&header.module_sha256);
    out.extend_from_slice(blake3::hash(payload).as_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Reads only the header; does not verify the payload.
pub fn header(bytes: &[u8]) -> Result<Header, ArtifactError> {
    if !bytes.starts_with(MAGIC) {
        return Err(ArtifactError::NotOurs);
    }
    if bytes.len() < HEADER_LEN {
        return Err(ArtifactError::Truncated { len: bytes.len() });
    }
    let version = u32_at(bytes, 8);
    if version != VERSION {
        return Err(ArtifactError::Version { found: version });
    }
    let kind = match u32_at(bytes, 24) {
        0 => Kind::Module,
        1 => Kind::Component,
        k => return Err(ArtifactError::Kind(k)),
    };
    Ok(Header {
        option_bits: u32_at(bytes, 12),
        engine_hash: u64_at(bytes, 16),
        kind,
        module_sha256: bytes[32..64].try_into().unwrap(),
    })
}

/// Checks the header and the payload digest and returns both.
pub fn decode(bytes: &[u8]) -> Result<(Header, &[u8]), ArtifactError> {
    let header = header(bytes)?;
    let digest = &bytes[64..96];
    let expected = u64_at(bytes, 96);
    let payload = &bytes[HEADER_LEN..];
    if payload.len() as u64 != expected {
        return Err(ArtifactError::Length {
            expected,
            found: payload.len() as u64,
        });
    }
    if blake3::hash(payload).as_bytes() != digest {
        return Err(ArtifactError::Digest);
    }
    Ok((header, payload))
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
    fn round_trips() {
        let bytes = encode(&sample(), b"payload");
        let (h, p) = decode(&bytes).unwrap();
        assert_eq!(h, sample());
        assert_eq!(p, b"payload");
    }

    #[test]
    fn detects_every_kind_of_damage() {
        let good = encode(&sample(), b"payload bytes");
        assert_eq!(decode(b"\x7fELF....").unwrap_err(), ArtifactError::NotOurs);
        assert_eq!(
            decode(&good[..40]).unwrap_err(),
            ArtifactError::Truncated { len: 40 }
        );
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(decode(&flipped).unwrap_err(), ArtifactError::Digest);
        let short = &good[..good.len() - 1];
        assert!(matches!(
            decode(short).unwrap_err(),
            ArtifactError::Length { .. }
        ));
        let mut version = good.clone();
        version[8] = 9;
        assert_eq!(
            decode(&version).unwrap_err(),
            ArtifactError::Version { found: 9 }
        );
    }
}
