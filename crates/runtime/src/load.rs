//! Reading a program from disk and turning it into compiled code, through the
//! AOT cache: `.wasm` and `.wat` files are hashed and looked up, wedge
//! artifacts are verified, anything else is refused with a precise reason.

use crate::artifact::{self, Header, Kind};
use crate::cache::{Cache, Key, Lookup};
use crate::engine::{self, EngineOptions};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Compiled code ready to instantiate.
pub enum Program {
    Module(wasmtime::Module),
    Component(Component),
}

/// How the compiled code was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheStatus {
    /// Loaded a verified artifact from the cache.
    Hit,
    /// Compiled, then stored in the cache.
    Miss,
    /// A cached artifact failed verification; compiled afresh and replaced.
    Rejected,
    /// Compiled without a cache (none configured).
    Disabled,
    /// The input itself was a wedge artifact (`wedge compile` output).
    Precompiled,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Rejected => "rejected",
            CacheStatus::Disabled => "disabled",
            CacheStatus::Precompiled => "precompiled",
        }
    }
}

/// A program with what the statistics report about its loading.
pub struct Loaded {
    pub program: Program,
    pub sha256: [u8; 32],
    pub file_size: u64,
    pub cache: CacheStatus,
    /// Why a cached artifact was rejected, when it was.
    pub cache_note: Option<String>,
    /// Time spent compiling, or verifying and loading the artifact.
    pub load_time: Duration,
}

/// Why a program could not be loaded. Each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a WebAssembly module or component: {found}", path.display())]
    NotWasm { path: PathBuf, found: String },
    #[error("{}: invalid WebAssembly text: {message}", path.display())]
    Text { path: PathBuf, message: String },
    #[error("{}: invalid WebAssembly: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("{}: refusing to load precompiled code: {reason}", path.display())]
    Artifact { path: PathBuf, reason: String },
}

/// What kind of file was read.
pub enum SourceKind {
    /// A binary module or component (text is converted on reading).
    Wasm { component: bool },
    /// A wedge artifact whose header was read (payload not yet verified).
    Artifact(Header),
}

/// A file read into memory and classified.
pub struct Source {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub kind: SourceKind,
    pub file_size: u64,
}

fn describe_magic(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "the file is empty".into();
    }
    let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let what = if bytes.starts_with(b"\x7fELF") {
        " (an ELF file; precompiled code from another tool is never loaded: pass the .wasm)"
    } else if bytes.starts_with(b"\0asm") {
        " (a wasm magic number with an unknown version)"
    } else {
        ""
    };
    format!(
        "expected the `\\0asm` magic number, found bytes {}{what}",
        head.join(" ")
    )
}

fn looks_like_text(bytes: &[u8]) -> bool {
    let trimmed = bytes.trim_ascii_start();
    trimmed.starts_with(b"(") || trimmed.starts_with(b";;")
}

impl Source {
    /// Reads and classifies `path`.
    pub fn read(path: &Path) -> Result<Source, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let file_size = bytes.len() as u64;
        let path = path.to_path_buf();
        if bytes.starts_with(artifact::MAGIC) {
            let header = artifact::header(&bytes).map_err(|e| LoadError::Artifact {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            return Ok(Source {
                path,
                bytes,
                kind: SourceKind::Artifact(header),
                file_size,
            });
        }
        let bytes = if bytes.starts_with(b"\0asm") {
            bytes
        } else if looks_like_text(&bytes) {
            wat::parse_bytes(&bytes)
                .map_err(|e| LoadError::Text {
                    path: path.clone(),
                    message: e.to_string().replace('\n', " "),
                })?
                .into_owned()
        } else {
            return Err(LoadError::NotWasm {
                found: describe_magic(&bytes),
                path,
            });
        };
        let component = match bytes.get(4..8) {
            Some([_, _, 0, 0]) => false,
            Some([_, _, 1, 0]) => true,
            _ => {
                return Err(LoadError::NotWasm {
                    found: describe_magic(&bytes),
                    path,
                });
            }
        };
        Ok(Source {
            path,
            bytes,
            kind: SourceKind::Wasm { component },
            file_size,
        })
    }

    pub fn is_component(&self) -> bool {
        match &self.kind {
            SourceKind::Wasm { component } => *component,
            SourceKind::Artifact(h) => h.kind == Kind::Component,
        }
    }

    /// The engine options this source must run with, if it dictates them
    /// (a precompiled artifact does; plain wasm does not).
    pub fn required_options(&self) -> Option<EngineOptions> {
        match &self.kind {
            SourceKind::Artifact(h) => Some(EngineOptions::from_bits(h.option_bits)),
            SourceKind::Wasm { .. } => None,
        }
    }

    /// SHA-256 of the module itself (for artifacts: of the module they were
    /// compiled from).
    pub fn sha256(&self) -> [u8; 32] {
        match &self.kind {
            SourceKind::Wasm { .. } => Sha256::digest(&self.bytes).into(),
            SourceKind::Artifact(h) => h.module_sha256,
        }
    }

    /// Compiles (or loads) the program for `engine`, using `cache` if given.
    pub fn load(self, engine: &Engine, cache: Option<&Cache>) -> Result<Loaded, LoadError> {
        let start = Instant::now();
        let sha256 = self.sha256();
        let engine_hash = engine::hash(engine);
        if let SourceKind::Artifact(_) = self.kind {
            let (header, payload) =
                artifact::decode(&self.bytes).map_err(|e| self.artifact_error(e.to_string()))?;
            if header.engine_hash != engine_hash {
                return Err(self.artifact_error(
                    "it was compiled by another version or configuration of wedge; \
                     compile the .wasm again with `wedge compile`"
                        .into(),
                ));
            }
            let program = deserialize(engine, header.kind, payload)
                .map_err(|e| self.artifact_error(format!("{e:#}")))?;
            return Ok(Loaded {
                program,
                sha256,
                file_size: self.file_size,
                cache: CacheStatus::Precompiled,
                cache_note: None,
                load_time: start.elapsed(),
            });
        }
        let key = Key {
            module_sha256: sha256,
            engine_hash,
        };
        let kind = if self.is_component() {
            Kind::Component
        } else {
            Kind::Module
        };
        let mut status = CacheStatus::Disabled;
        let mut note = None;
        if let Some(cache) = cache {
            match cache.lookup(&key) {
                Lookup::Hit { header, bytes } if header.kind == kind => {
                    match deserialize(engine, kind, &bytes[artifact::HEADER_LEN..]) {
                        Ok(program) => {
                            return Ok(Loaded {
                                program,
                                sha256,
                                file_size: self.file_size,
                                cache: CacheStatus::Hit,
                                cache_note: None,
                                load_time: start.elapsed(),
                            });
                        }
                        Err(e) => {
                            status = CacheStatus::Rejected;
                            note = Some(format!("{e:#}"));
                        }
                    }
                }
                Lookup::Hit { .. } => {
                    status = CacheStatus::Rejected;
                    note = Some("cached artifact is of the wrong kind".into());
                }
                Lookup::Miss => status = CacheStatus::Miss,
                Lookup::Rejected { reason } => {
                    status = CacheStatus::Rejected;
                    note = Some(reason);
                }
            }
        }
        let (program, serialized) = self.compile(engine, kind, cache.is_some())?;
        if let (Some(cache), Some(payload)) = (cache, serialized) {
            let options = EngineOptions {
                fuel: engine.get_consume_fuel(),
            };
            let header = Header {
                option_bits: options.to_bits(),
                engine_hash,
                kind,
                module_sha256: sha256,
            };
            // A cache that cannot be written only costs speed next time.
            if let Err(e) = cache.store(&key, &artifact::encode(&header, &payload)) {
                note = Some(format!("could not write the cache: {e}"));
            }
        }
        Ok(Loaded {
            program,
            sha256,
            file_size: self.file_size,
            cache: status,
            cache_note: note,
            load_time: start.elapsed(),
        })
    }

    fn artifact_error(&self, reason: String) -> LoadError {
        LoadError::Artifact {
            path: self.path.clone(),
            reason,
        }
    }

    fn compile(
        &self,
        engine: &Engine,
        kind: Kind,
        serialize: bool,
    ) -> Result<(Program, Option<Vec<u8>>), LoadError> {
        let invalid = |e: wasmtime::Error| LoadError::Invalid {
            path: self.path.clone(),
            message: format!("{e:#}"),
        };
        match kind {
            Kind::Module => {
                let m = wasmtime::Module::from_binary(engine, &self.bytes).map_err(invalid)?;
                let bytes = serialize
                    .then(|| m.serialize())
                    .transpose()
                    .map_err(invalid)?;
                Ok((Program::Module(m), bytes))
            }
            Kind::Component => {
                let c = Component::from_binary(engine, &self.bytes).map_err(invalid)?;
                let bytes = serialize
                    .then(|| c.serialize())
                    .transpose()
                    .map_err(invalid)?;
                Ok((Program::Component(c), bytes))
            }
        }
    }
}

/// Turns a verified payload into code.
fn deserialize(engine: &Engine, kind: Kind, payload: &[u8]) -> wasmtime::Result<Program> {
    // SAFETY: Wasmtime requires that deserialized bytes come from a trusted
    // `serialize` of a compatible engine. Every caller passes a payload that
    // `artifact::decode` (or `Cache::lookup`, which calls it) has verified:
    // the header names this engine's hash and the payload matches the SHA-256
    // digest wedge recorded when it serialized the code itself. Wasmtime also
    // re-checks engine compatibility while deserializing.
    unsafe {
        Ok(match kind {
            Kind::Module => Program::Module(wasmtime::Module::deserialize(engine, payload)?),
            Kind::Component => Program::Component(Component::deserialize(engine, payload)?),
        })
    }
}

/// Compiles `source` into a wedge artifact for `options` (`wedge compile`).
pub fn precompile(source: &Source, options: EngineOptions) -> Result<Vec<u8>, LoadError> {
    if let SourceKind::Artifact(_) = source.kind {
        return Err(source.artifact_error("it is already precompiled".into()));
    }
    let engine = engine::build(options).map_err(|e| source.artifact_error(format!("{e:#}")))?;
    let kind = if source.is_component() {
        Kind::Component
    } else {
        Kind::Module
    };
    let (_, payload) = source.compile(&engine, kind, true)?;
    let header = Header {
        option_bits: options.to_bits(),
        engine_hash: engine::hash(&engine),
        kind,
        module_sha256: source.sha256(),
    };
    Ok(artifact::encode(&header, &payload.expect("serialized")))
}
