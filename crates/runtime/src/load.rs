//! Reading a program from disk and turning it into compiled code, through the
//! AOT cache: `.wasm` and `.wat` files are hashed and looked up, wedge
//! artifacts are verified, anything else is refused with a precise reason.

use crate::artifact::{self, ArtifactError, Header, Kind, Trailer};
use crate::cache::{Cache, Key, Lookup};
use crate::engine::{self, EngineOptions};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Compiled code ready to instantiate (clones share the code).
#[derive(Clone)]
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
#[derive(Clone)]
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
    /// A wedge artifact whose trailer was read (payload not yet verified).
    Artifact(Trailer),
}

/// A program file, classified from its first bytes. The module itself is
/// only read when it has to be (compiling, inspecting, or hashing a file
/// the cache has not seen unchanged before).
pub struct Source {
    pub path: PathBuf,
    pub kind: SourceKind,
    pub file_size: u64,
    meta: std::fs::Metadata,
    bytes: Option<Vec<u8>>,
}

fn describe_magic(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "the file is empty".into();
    }
    let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let what = if bytes.starts_with(b"\x7fELF") {
        " (an ELF file without wedge's trailer: precompiled code from another tool is never \
         loaded; pass the .wasm)"
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
    /// Opens and classifies `path`, reading only its first bytes (text
    /// modules are read and converted at once).
    pub fn read(path: &Path) -> Result<Source, LoadError> {
        let read_err = |source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::open(path).map_err(read_err)?;
        let meta = file.metadata().map_err(read_err)?;
        if meta.is_dir() {
            return Err(read_err(std::io::Error::other("it is a directory")));
        }
        let mut head = [0u8; 8];
        let n = read_up_to(&mut file, &mut head).map_err(read_err)?;
        let head = &head[..n];
        let mut source = Source {
            path: path.to_path_buf(),
            kind: SourceKind::Wasm { component: false },
            file_size: meta.len(),
            meta,
            bytes: None,
        };
        if head.starts_with(b"\x7fELF") {
            let trailer = artifact::read_trailer(&mut file).map_err(|e| match e {
                ArtifactError::NotOurs => LoadError::NotWasm {
                    path: path.to_path_buf(),
                    found: describe_magic(head),
                },
                e => source.artifact_error(e.to_string()),
            })?;
            source.kind = SourceKind::Artifact(trailer);
            return Ok(source);
        }
        if !head.starts_with(b"\0asm") {
            let mut all = head.to_vec();
            file.read_to_end(&mut all).map_err(read_err)?;
            if !looks_like_text(&all) {
                return Err(LoadError::NotWasm {
                    path: path.to_path_buf(),
                    found: describe_magic(&all),
                });
            }
            let wasm = wat::parse_bytes(&all).map_err(|e| LoadError::Text {
                path: path.to_path_buf(),
                message: e.to_string().replace('\n', " "),
            })?;
            source.bytes = Some(wasm.into_owned());
        }
        let version = match &source.bytes {
            Some(b) => b.get(4..8).map(|v| v.to_vec()),
            None => head.get(4..8).map(|v| v.to_vec()),
        };
        source.kind = match version.as_deref() {
            Some([_, _, 0, 0]) => SourceKind::Wasm { component: false },
            Some([_, _, 1, 0]) => SourceKind::Wasm { component: true },
            _ => {
                return Err(LoadError::NotWasm {
                    path: path.to_path_buf(),
                    found: describe_magic(head),
                });
            }
        };
        Ok(source)
    }

    /// The module's bytes, read on first use.
    pub fn bytes(&mut self) -> Result<&[u8], LoadError> {
        if self.bytes.is_none() {
            let bytes = std::fs::read(&self.path).map_err(|source| LoadError::Read {
                path: self.path.clone(),
                source,
            })?;
            self.bytes = Some(bytes);
        }
        Ok(self.bytes.as_deref().unwrap_or_default())
    }

    pub fn is_component(&self) -> bool {
        match &self.kind {
            SourceKind::Wasm { component } => *component,
            SourceKind::Artifact(t) => t.header.kind == Kind::Component,
        }
    }

    fn program_kind(&self) -> Kind {
        if self.is_component() {
            Kind::Component
        } else {
            Kind::Module
        }
    }

    /// The engine options this source must run with, if it dictates them
    /// (a precompiled artifact does; plain wasm does not).
    pub fn required_options(&self) -> Option<EngineOptions> {
        match &self.kind {
            SourceKind::Artifact(t) => Some(EngineOptions::from_bits(t.header.option_bits)),
            SourceKind::Wasm { .. } => None,
        }
    }

    /// SHA-256 of the module (for artifacts: of the module they were
    /// compiled from). With a cache, an unchanged file is not re-hashed.
    pub fn sha256(&mut self, cache: Option<&Cache>) -> Result<[u8; 32], LoadError> {
        if let SourceKind::Artifact(t) = &self.kind {
            return Ok(t.header.module_sha256);
        }
        // Only a binary not yet read can skip reading (text is converted on
        // opening, so its bytes are already at hand).
        if let Some(cache) = cache
            && self.bytes.is_none()
            && let Some(sha) = cache.remembered_sha256(&self.path, &self.meta)
        {
            return Ok(sha);
        }
        let sha: [u8; 32] = Sha256::digest(self.bytes()?).into();
        if let Some(cache) = cache {
            cache.remember_sha256(&self.path, &self.meta, &sha);
        }
        Ok(sha)
    }

    /// Compiles (or loads) the program for `engine`, using `cache` if given.
    pub fn load(mut self, engine: &Engine, cache: Option<&Cache>) -> Result<Loaded, LoadError> {
        let start = Instant::now();
        let engine_hash = engine::hash(engine);
        if let SourceKind::Artifact(trailer) = &self.kind {
            let trailer = trailer.clone();
            if trailer.header.engine_hash != engine_hash {
                return Err(self.artifact_error(
                    "it was compiled by another version or configuration of wedge; \
                     compile the .wasm again with `wedge compile`"
                        .into(),
                ));
            }
            let mut file = File::open(&self.path).map_err(|source| LoadError::Read {
                path: self.path.clone(),
                source,
            })?;
            artifact::verify_file(&mut file, &trailer)
                .map_err(|e| self.artifact_error(e.to_string()))?;
            let program = map_verified(engine, trailer.header.kind, file, &self.path)
                .map_err(|e| self.artifact_error(format!("{e:#}")))?;
            return Ok(Loaded {
                program,
                sha256: trailer.header.module_sha256,
                file_size: self.file_size,
                cache: CacheStatus::Precompiled,
                cache_note: None,
                load_time: start.elapsed(),
            });
        }
        let sha256 = self.sha256(cache)?;
        let key = Key {
            module_sha256: sha256,
            engine_hash,
        };
        let kind = self.program_kind();
        let (status, mut note) = match lookup(engine, cache, &key, kind) {
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
            Err(missed) => missed,
        };
        let (program, serialized) = self.compile(engine, kind, cache.is_some())?;
        if let (Some(cache), Some(payload)) = (cache, serialized) {
            note = store(engine, cache, &key, kind, payload).or(note);
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
        &mut self,
        engine: &Engine,
        kind: Kind,
        serialize: bool,
    ) -> Result<(Program, Option<Vec<u8>>), LoadError> {
        let path = self.path.clone();
        let invalid = |e: wasmtime::Error| LoadError::Invalid {
            path: path.clone(),
            message: format!("{e:#}"),
        };
        let bytes = self.bytes()?;
        match kind {
            Kind::Module => {
                let m = wasmtime::Module::from_binary(engine, bytes).map_err(invalid)?;
                let bytes = serialize
                    .then(|| m.serialize())
                    .transpose()
                    .map_err(invalid)?;
                Ok((Program::Module(m), bytes))
            }
            Kind::Component => {
                let c = Component::from_binary(engine, bytes).map_err(invalid)?;
                let bytes = serialize
                    .then(|| c.serialize())
                    .transpose()
                    .map_err(invalid)?;
                Ok((Program::Component(c), bytes))
            }
        }
    }
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Hands a verified artifact to Wasmtime, which maps it (code pages are
/// loaded lazily; the trailer after Wasmtime's bytes is ignored by it).
fn map_verified(engine: &Engine, kind: Kind, file: File, path: &Path) -> wasmtime::Result<Program> {
    // SAFETY: Wasmtime requires that precompiled bytes come from a trusted
    // `serialize` of a compatible engine. Every caller has just checked the
    // trailer (this engine's hash, the expected module) and the BLAKE3 digest
    // of the payload that wedge recorded when it serialized the code itself.
    // Modules are mapped from the very file handle that was verified; for
    // components Wasmtime reopens `path`, which lives in wedge's private
    // (0700) cache or was named by the user, and is only ever replaced
    // whole (atomic rename), never rewritten in place. Wasmtime also
    // re-checks engine compatibility while deserializing.
    unsafe {
        Ok(match kind {
            Kind::Module => Program::Module(wasmtime::Module::deserialize_open_file(engine, file)?),
            Kind::Component => Program::Component(Component::deserialize_file(engine, path)?),
        })
    }
}

/// Compiles `source` into a wedge artifact for `options` (`wedge compile`).
pub fn precompile(source: &mut Source, options: EngineOptions) -> Result<Vec<u8>, LoadError> {
    if let SourceKind::Artifact(_) = source.kind {
        return Err(source.artifact_error("it is already precompiled".into()));
    }
    let engine = engine::build(options).map_err(|e| source.artifact_error(format!("{e:#}")))?;
    let kind = source.program_kind();
    let sha = source.sha256(None)?;
    let (_, payload) = source.compile(&engine, kind, true)?;
    let header = Header {
        option_bits: options.to_bits(),
        engine_hash: engine::hash(&engine),
        kind,
        module_sha256: sha,
    };
    Ok(artifact::encode(&header, payload.expect("serialized")))
}

/// A module made from another (a pre-initialised snapshot), loaded through
/// the cache under `key`, a digest of everything it was made from; `make`
/// produces its WebAssembly on a miss.
pub fn derived_module(
    engine: &Engine,
    cache: Option<&Cache>,
    key: [u8; 32],
    make: impl FnOnce() -> anyhow::Result<Vec<u8>>,
) -> anyhow::Result<(wasmtime::Module, CacheStatus, Option<String>)> {
    let key = Key {
        module_sha256: key,
        engine_hash: engine::hash(engine),
    };
    let (status, mut note) = match lookup(engine, cache, &key, Kind::Module) {
        Ok(Program::Module(m)) => return Ok((m, CacheStatus::Hit, None)),
        Ok(Program::Component(_)) => unreachable!("looked up as a module"),
        Err(missed) => missed,
    };
    let wasm = make()?;
    let module = wasmtime::Module::from_binary(engine, &wasm)?;
    if let Some(cache) = cache {
        note = match module.serialize() {
            Ok(payload) => store(engine, cache, &key, Kind::Module, payload),
            Err(e) => Some(format!("could not write the cache: {e:#}")),
        }
        .or(note);
    }
    Ok((module, status, note))
}

/// The cached program under `key`, or how the cache missed: its status
/// and why an artifact was rejected.
fn lookup(
    engine: &Engine,
    cache: Option<&Cache>,
    key: &Key,
    kind: Kind,
) -> Result<Program, (CacheStatus, Option<String>)> {
    let Some(cache) = cache else {
        return Err((CacheStatus::Disabled, None));
    };
    match cache.lookup(key) {
        Lookup::Hit { header, file, path } if header.kind == kind => {
            map_verified(engine, kind, file, &path)
                .map_err(|e| (CacheStatus::Rejected, Some(format!("{e:#}"))))
        }
        Lookup::Hit { .. } => Err((
            CacheStatus::Rejected,
            Some("cached artifact is of the wrong kind".into()),
        )),
        Lookup::Miss => Err((CacheStatus::Miss, None)),
        Lookup::Rejected { reason } => Err((CacheStatus::Rejected, Some(reason))),
    }
}

/// Stores compiled code under `key`; says why when it could not (a cache
/// that cannot be written only costs speed next time).
fn store(
    engine: &Engine,
    cache: &Cache,
    key: &Key,
    kind: Kind,
    payload: Vec<u8>,
) -> Option<String> {
    let header = Header {
        option_bits: EngineOptions {
            fuel: engine.get_consume_fuel(),
        }
        .to_bits(),
        engine_hash: key.engine_hash,
        kind,
        module_sha256: key.module_sha256,
    };
    cache
        .store(key, &artifact::encode(&header, payload))
        .err()
        .map(|e| format!("could not write the cache: {e}"))
}
