//! Pulled modules, kept by content beside the AOT cache, so that a restart
//! pulls nothing: `blobs/sha256/HEX.wasm` (a module, named by its digest),
//! `manifests/sha256/HEX` (which module a manifest names) and `tags/` (the
//! manifest a tag named when last resolved, used when the registry cannot
//! be reached). Files are written to a temporary name and renamed, so a
//! crash leaves no half-written module under a digest.

use crate::artifact::valid_digest;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A store rooted at a directory.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Store { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the module with layer digest `digest` is (or would be) kept.
    pub fn blob(&self, digest: &str) -> PathBuf {
        self.root
            .join("blobs/sha256")
            .join(format!("{}.wasm", hex(digest)))
    }

    /// A file next to where blobs go, to pull into before it is checked;
    /// removed unless persisted.
    pub fn scratch(&self) -> std::io::Result<tempfile::NamedTempFile> {
        let dir = self.root.join("blobs/sha256");
        std::fs::create_dir_all(&dir)?;
        tempfile::NamedTempFile::new_in(&dir)
    }

    /// The layer digest recorded for manifest `digest`, if its module is here.
    pub fn layer_of(&self, manifest: &str) -> Option<String> {
        let layer = std::fs::read_to_string(self.root.join("manifests/sha256").join(hex(manifest)))
            .ok()?
            .trim()
            .to_string();
        (valid_digest(&layer) && self.blob(&layer).is_file()).then_some(layer)
    }

    /// Records that manifest `manifest` names the module `layer`.
    pub fn remember(&self, manifest: &str, layer: &str) -> std::io::Result<()> {
        write_atomic(
            &self.root.join("manifests/sha256").join(hex(manifest)),
            layer.as_bytes(),
        )
    }

    /// The manifest digest `reference` (a tag) resolved to last time.
    pub fn last_resolved(&self, reference: &str) -> Option<String> {
        let d = std::fs::read_to_string(self.tag_file(reference)).ok()?;
        let d = d.trim().to_string();
        valid_digest(&d).then_some(d)
    }

    /// Records what `reference` resolved to.
    pub fn resolved(&self, reference: &str, manifest: &str) -> std::io::Result<()> {
        write_atomic(&self.tag_file(reference), manifest.as_bytes())
    }

    fn tag_file(&self, reference: &str) -> PathBuf {
        // A reference has `/` and `:`; its digest names the file instead.
        self.root
            .join("tags")
            .join(hex(&crate::artifact::digest(reference.as_bytes())))
    }
}

/// The hex part of a `sha256:` digest (checked by the caller's parse).
fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// Writes `path` through a temporary file and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("store paths have a parent");
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map(drop).map_err(|e| e.error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::digest;

    #[test]
    fn manifests_and_tags_are_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let layer = digest(b"module");
        let manifest = digest(b"manifest");
        assert_eq!(store.layer_of(&manifest), None);
        std::fs::create_dir_all(store.blob(&layer).parent().unwrap()).unwrap();
        std::fs::write(store.blob(&layer), b"module").unwrap();
        store.remember(&manifest, &layer).unwrap();
        assert_eq!(store.layer_of(&manifest), Some(layer.clone()));
        // Without its module the manifest is not enough.
        std::fs::remove_file(store.blob(&layer)).unwrap();
        assert_eq!(store.layer_of(&manifest), None);
        store.resolved("r.example/fn:v1", &manifest).unwrap();
        assert_eq!(store.last_resolved("r.example/fn:v1"), Some(manifest));
        assert_eq!(store.last_resolved("r.example/fn:v2"), None);
    }
}
