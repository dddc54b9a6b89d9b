//! The transparent AOT cache: compiled artifacts keyed by module SHA-256 and
//! engine hash, written atomically into a private (0700) directory.

use crate::artifact::{self, Header};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Environment variable overriding the cache directory.
pub const ENV_CACHE_DIR: &str = "WEDGE_CACHE_DIR";

/// Where a cache entry lives, and what it must contain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    pub module_sha256: [u8; 32],
    pub engine_hash: u64,
}

/// The result of looking a key up.
#[derive(Debug)]
pub enum Lookup {
    /// A verified artifact (trailer and payload digest checked), open and
    /// positioned at its start, ready for Wasmtime to map.
    Hit {
        header: Header,
        file: fs::File,
        path: PathBuf,
    },
    /// Nothing stored under this key.
    Miss,
    /// Something was stored but failed verification; it was deleted and must
    /// be recompiled.
    Rejected { reason: String },
}

/// One stored artifact, for `wedge cache ls`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Entry {
    pub path: PathBuf,
    pub module_sha256: String,
    pub engine_hash: String,
    pub size: u64,
    #[serde(skip)]
    pub last_used: SystemTime,
}

fn stat_stamp(m: &fs::Metadata) -> String {
    format!(
        "{} {} {} {}.{} {}.{}",
        m.dev(),
        m.ino(),
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec()
    )
}

/// Memo kinds: a source module's SHA-256, an artifact's verified digest.
const SOURCE_SHA256: &str = "sha256";
const VERIFIED: &str = "verified";

/// How old an artifact's last-use time may grow before a hit renews it.
const TOUCH_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// A cache rooted at one directory.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

/// The default cache directory: `$WEDGE_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/wedge`, else `$HOME/.cache/wedge`.
pub fn default_dir() -> Option<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(dir) = var(ENV_CACHE_DIR) {
        return Some(PathBuf::from(dir));
    }
    if let Some(xdg) = var("XDG_CACHE_HOME") {
        return Some(PathBuf::from(xdg).join("wedge"));
    }
    var("HOME").map(|home| PathBuf::from(home).join(".cache").join("wedge"))
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

impl Cache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Cache { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file an artifact for `key` is stored in.
    pub fn path(&self, key: &Key) -> PathBuf {
        self.dir
            .join(format!("{:016x}", key.engine_hash))
            .join(format!("{}.cwasm", hex(&key.module_sha256)))
    }

    /// Whether an artifact is stored for `key` (without verifying it).
    pub fn contains(&self, key: &Key) -> bool {
        self.path(key).is_file()
    }

    /// Looks up and verifies the artifact for `key`.
    pub fn lookup(&self, key: &Key) -> Lookup {
        let path = self.path(key);
        let mut file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(_) => return Lookup::Miss,
        };
        let rejected = |reason: String| {
            let _ = fs::remove_file(&path);
            Lookup::Rejected { reason }
        };
        let trailer = match artifact::read_trailer(&mut file) {
            Ok(t) => t,
            Err(e) => return rejected(format!("{}: {e}", path.display())),
        };
        if trailer.header.engine_hash != key.engine_hash
            || trailer.header.module_sha256 != key.module_sha256
        {
            return rejected(format!(
                "{}: stored under the wrong key (a foreign or moved file)",
                path.display()
            ));
        }
        // A payload verified before is not hashed again while its file is
        // unchanged (hashing a Go module's tens of megabytes dominated the
        // start of `wedge serve`); any write to it moves its change time.
        let meta = file.metadata().ok();
        let digest = hex(&trailer.digest);
        let known = meta
            .as_ref()
            .and_then(|m| self.remembered(VERIFIED, &path, m))
            .is_some_and(|d| d == digest);
        if !known {
            if let Err(e) = artifact::verify_file(&mut file, &trailer) {
                return rejected(format!("{}: {e}", path.display()));
            }
            if let Some(m) = &meta {
                self.remember(VERIFIED, &path, m, &digest);
            }
        }
        // Least-recently-used bookkeeping for `gc`, at most hourly (touching
        // the file moves its change time, so it is verified again once or
        // twice after); failure is harmless.
        let stale = meta
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_none_or(|age| age > TOUCH_AFTER);
        if stale {
            let _ = file.set_modified(SystemTime::now());
        }
        Lookup::Hit {
            header: trailer.header,
            file,
            path,
        }
    }

    fn memo_path(&self, what: &str, file: &Path) -> PathBuf {
        let abs = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
        let name = blake3::Hasher::new()
            .update(what.as_bytes())
            .update(b"\0")
            .update(abs.as_os_str().as_encoded_bytes())
            .finalize()
            .to_hex();
        self.dir.join("index").join(&name.as_str()[..32])
    }

    /// What was recorded as `what` for `file`, if its metadata (device,
    /// inode, size, modification and change times) is unchanged since.
    fn remembered(&self, what: &str, file: &Path, meta: &fs::Metadata) -> Option<String> {
        let text = fs::read_to_string(self.memo_path(what, file)).ok()?;
        let (stamp, value) = text.trim_end().rsplit_once(' ')?;
        (stamp == stat_stamp(meta)).then(|| value.to_string())
    }

    /// Records `value` as `what` for `file`. Skipped while the file is
    /// younger than two seconds, so a write within the same timestamp tick
    /// cannot hide.
    fn remember(&self, what: &str, file: &Path, meta: &fs::Metadata, value: &str) {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        if now - meta.mtime().max(meta.ctime()) < 2 {
            return;
        }
        let path = self.memo_path(what, file);
        let Some(parent) = path.parent() else { return };
        if fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .is_err()
        {
            return;
        }
        let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
        if fs::write(&tmp, format!("{} {value}\n", stat_stamp(meta))).is_ok() {
            let _ = fs::rename(&tmp, &path);
        }
    }

    /// The SHA-256 recorded for `source` while its file is unchanged, so
    /// that a cached run need not read and hash the module at all.
    pub fn remembered_sha256(&self, source: &Path, meta: &fs::Metadata) -> Option<[u8; 32]> {
        let sha = self.remembered(SOURCE_SHA256, source, meta)?;
        if sha.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(sha.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(out)
    }

    /// Records `sha256` for `source` (see [`Cache::remembered_sha256`]).
    pub fn remember_sha256(&self, source: &Path, meta: &fs::Metadata, sha256: &[u8; 32]) {
        self.remember(SOURCE_SHA256, source, meta, &hex(sha256));
    }

    /// Stores an encoded artifact atomically (write a temporary file, then
    /// rename), creating the directories with mode 0700.
    pub fn store(&self, key: &Key, encoded: &[u8]) -> std::io::Result<PathBuf> {
        let path = self.path(key);
        let parent = path.parent().expect("cache paths have a parent");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)?;
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))?;
        let tmp = parent.join(format!(
            ".{}.{}.tmp",
            hex(&key.module_sha256[..8]),
            std::process::id()
        ));
        let result = (|| {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(encoded)?;
            f.sync_data()?;
            fs::rename(&tmp, &path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map(|()| path)
    }

    /// Every stored artifact, most recently used first.
    pub fn entries(&self) -> std::io::Result<Vec<Entry>> {
        let mut out = Vec::new();
        let top = match fs::read_dir(&self.dir) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for sub in top.flatten() {
            if !sub.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let engine_hash = sub.file_name().to_string_lossy().into_owned();
            for file in fs::read_dir(sub.path())?.flatten() {
                let path = file.path();
                if path.extension().is_none_or(|e| e != "cwasm") {
                    continue;
                }
                let meta = file.metadata()?;
                out.push(Entry {
                    module_sha256: path
                        .file_stem()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned(),
                    engine_hash: engine_hash.clone(),
                    size: meta.len(),
                    last_used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    path,
                });
            }
        }
        out.sort_by_key(|e| std::cmp::Reverse(e.last_used));
        Ok(out)
    }

    /// Deletes every artifact; returns how many bytes were freed.
    pub fn clear(&self) -> std::io::Result<u64> {
        let freed = self.entries()?.iter().map(|e| e.size).sum();
        match fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        Ok(freed)
    }

    /// Deletes least-recently-used artifacts until the cache holds at most
    /// `max_size` bytes; returns the entries removed.
    pub fn gc(&self, max_size: u64) -> std::io::Result<Vec<Entry>> {
        let entries = self.entries()?;
        let mut total = 0u64;
        let mut removed = Vec::new();
        for entry in entries {
            total += entry.size;
            if total > max_size {
                fs::remove_file(&entry.path)?;
                let _ = fs::remove_file(self.memo_path(VERIFIED, &entry.path));
                removed.push(entry);
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::Kind;

    fn key(n: u8) -> Key {
        Key {
            module_sha256: [n; 32],
            engine_hash: 42,
        }
    }

    fn encoded(k: &Key, payload: &[u8]) -> Vec<u8> {
        artifact::encode(
            &Header {
                option_bits: 0,
                engine_hash: k.engine_hash,
                kind: Kind::Module,
                module_sha256: k.module_sha256,
            },
            payload.to_vec(),
        )
    }

    #[test]
    fn store_then_hit_with_private_permissions() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::new(tmp.path().join("c"));
        assert!(matches!(cache.lookup(&key(1)), Lookup::Miss));
        cache.store(&key(1), &encoded(&key(1), b"abc")).unwrap();
        let Lookup::Hit { mut file, .. } = cache.lookup(&key(1)) else {
            panic!("expected a hit")
        };
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut bytes).unwrap();
        assert!(bytes.starts_with(b"abc"), "positioned at the payload");
        let mode = fs::metadata(cache.dir()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn corrupted_or_foreign_files_are_rejected_and_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::new(tmp.path());
        let mut bytes = encoded(&key(1), b"abc");
        bytes[0] ^= 0xff;
        cache.store(&key(1), &bytes).unwrap();
        assert!(matches!(cache.lookup(&key(1)), Lookup::Rejected { .. }));
        assert!(!cache.contains(&key(1)), "the bad file is deleted");

        // A valid artifact stored under another module's key.
        cache.store(&key(2), &encoded(&key(3), b"abc")).unwrap();
        let Lookup::Rejected { reason } = cache.lookup(&key(2)) else {
            panic!("expected a rejection")
        };
        assert!(reason.contains("wrong key"), "{reason}");
    }

    #[test]
    fn remembers_hashes_only_for_unchanged_settled_files() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::new(tmp.path().join("c"));
        let module = tmp.path().join("m.wasm");
        fs::write(&module, b"one").unwrap();
        let meta = fs::metadata(&module).unwrap();
        cache.remember_sha256(&module, &meta, &[1; 32]);
        assert_eq!(
            cache.remembered_sha256(&module, &meta),
            None,
            "too fresh to trust"
        );

        let old = SystemTime::now() - std::time::Duration::from_secs(60);
        fs::File::options()
            .write(true)
            .open(&module)
            .unwrap()
            .set_modified(old)
            .unwrap();
        // The change time moved with set_modified; wait it out by faking age
        // through a record written with the current stamp.
        let meta = fs::metadata(&module).unwrap();
        let path = cache.memo_path(SOURCE_SHA256, &module);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, format!("{} {}\n", stat_stamp(&meta), hex(&[2; 32]))).unwrap();
        assert_eq!(cache.remembered_sha256(&module, &meta), Some([2; 32]));

        fs::write(&module, b"two!").unwrap();
        let changed = fs::metadata(&module).unwrap();
        assert_eq!(
            cache.remembered_sha256(&module, &changed),
            None,
            "a rewrite invalidates"
        );
    }

    #[test]
    fn a_verified_artifact_is_trusted_only_while_its_file_is_unchanged() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::new(tmp.path().join("c"));
        cache.store(&key(1), &encoded(&key(1), b"abc")).unwrap();
        let path = cache.path(&key(1));
        assert!(matches!(cache.lookup(&key(1)), Lookup::Hit { .. }));
        assert!(
            !cache.memo_path(VERIFIED, &path).exists(),
            "a file younger than two seconds is never vouched for"
        );

        // Corrupt the payload, then vouch for the file as it now stands (as
        // if it had been verified with this very stamp): the memo is what
        // spares the hashing, so the corruption goes unseen...
        let mut bytes = fs::read(&path).unwrap();
        bytes[0] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let trailer = artifact::read_trailer(&mut fs::File::open(&path).unwrap()).unwrap();
        let memo = cache.memo_path(VERIFIED, &path);
        fs::create_dir_all(memo.parent().unwrap()).unwrap();
        let stamp = stat_stamp(&fs::metadata(&path).unwrap());
        fs::write(&memo, format!("{stamp} {}\n", hex(&trailer.digest))).unwrap();
        let Lookup::Hit { mut file, .. } = cache.lookup(&key(1)) else {
            panic!("a vouched-for file is not hashed again")
        };
        let mut head = [0u8; 1];
        std::io::Read::read_exact(&mut file, &mut head).unwrap();
        assert_eq!(head[0], b'a' ^ 0xff, "positioned at the payload");

        // ...but any change moves the stamp (a write within the same clock
        // tick might not: hence the two seconds), and the file is hashed
        // again.
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(SystemTime::now() - std::time::Duration::from_secs(100))
            .unwrap();
        assert!(matches!(cache.lookup(&key(1)), Lookup::Rejected { .. }));
    }

    #[test]
    fn a_hit_renews_the_last_use_time_only_when_it_is_old() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::new(tmp.path());
        cache.store(&key(1), &encoded(&key(1), b"abc")).unwrap();
        let path = cache.path(&key(1));
        let set = |ago: u64| {
            let t = SystemTime::now() - std::time::Duration::from_secs(ago);
            fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(t)
                .unwrap();
            t
        };
        let recent = set(600);
        assert!(matches!(cache.lookup(&key(1)), Lookup::Hit { .. }));
        assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), recent);
        let old = set(7200);
        assert!(matches!(cache.lookup(&key(1)), Lookup::Hit { .. }));
        let now = fs::metadata(&path).unwrap().modified().unwrap();
        assert!(now.duration_since(old).unwrap().as_secs() > 7000, "renewed");
    }

    #[test]
    fn gc_keeps_the_most_recent_within_budget() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::new(tmp.path());
        for n in 1..=3u8 {
            cache.store(&key(n), &encoded(&key(n), &[0; 1000])).unwrap();
            let old = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(n as u64 * 1000);
            fs::File::options()
                .write(true)
                .open(cache.path(&key(n)))
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        let size = cache.entries().unwrap()[0].size;
        let removed = cache.gc(size * 2).unwrap();
        assert_eq!(removed.len(), 1);
        assert!(!cache.contains(&key(1)), "the least recently used goes");
        assert!(cache.contains(&key(2)) && cache.contains(&key(3)));
        assert_eq!(cache.clear().unwrap(), size * 2);
        assert!(cache.entries().unwrap().is_empty());
    }
}
