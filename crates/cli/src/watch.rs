//! `wedge serve --watch`: reloads when the manifest or a module changes.
//!
//! The folders holding those files are watched (inotify through `notify`),
//! so that both a file rewritten in place and one renamed over the old are
//! seen. A module copied over with `cp` is written in several steps: a file
//! that has been written to and not yet closed is waiting for its writer,
//! and the reload waits for the close (or for [`WRITE_PATIENCE`] to pass).
//! Events are debounced by [`QUIET`]; a reload that still reads a
//! half-written file fails its checks and is retried on the next event.
//! A Kubernetes ConfigMap volume's `..data` swap counts as a change of the
//! files in it (the operator's pods reload weights that way).

use crate::reload::Reloader;
use anyhow::{Context, Result};
use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecursiveMode, Watcher};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Time without events before a reload starts.
pub const QUIET: Duration = Duration::from_millis(50);
/// Longest wait for a writer to close a file it is writing.
pub const WRITE_PATIENCE: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Seen {
    /// Something relevant changed since the last reload began.
    dirty: bool,
    last: Option<Instant>,
    /// Files written to and not yet closed, with when writing began.
    writing: HashMap<PathBuf, Instant>,
}

/// Starts watching the reloader's inputs at once (so that no change made
/// after this returns is missed); the returned future reloads on changes
/// until it is dropped.
pub fn watch(reloader: Arc<Reloader>) -> Result<impl std::future::Future<Output = ()>> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let wake = Arc::new(tokio::sync::Notify::new());
    let inputs: Arc<Mutex<HashSet<PathBuf>>> = Arc::default();
    let mut watcher = {
        let (seen, wake, inputs) = (seen.clone(), wake.clone(), inputs.clone());
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            let inputs = inputs.lock().unwrap_or_else(|e| e.into_inner());
            let relevant: Vec<&PathBuf> = event
                .paths
                .iter()
                .filter(|p| inputs.contains(*p) || swapped_in(p))
                .collect();
            if relevant.is_empty() {
                return;
            }
            let mut s = seen.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            for p in relevant {
                match event.kind {
                    EventKind::Access(AccessKind::Close(AccessMode::Write)) => {
                        s.writing.remove(p);
                    }
                    EventKind::Access(_) => continue,
                    EventKind::Create(_)
                    | EventKind::Modify(notify::event::ModifyKind::Data(_)) => {
                        s.writing.entry(p.clone()).or_insert(now);
                    }
                    _ => {
                        s.writing.remove(p);
                    }
                }
                s.dirty = true;
                s.last = Some(now);
            }
            drop(s);
            wake.notify_one();
        })
        .context("starting the file watcher")?
    };
    let mut watched: HashSet<PathBuf> = HashSet::new();
    let mut rewatch = move |files: Vec<PathBuf>, watcher: &mut notify::RecommendedWatcher| {
        let dirs: HashSet<PathBuf> = files
            .iter()
            .filter_map(|f| f.parent().map(Path::to_path_buf))
            .collect();
        for d in dirs {
            if watched.contains(&d) {
                continue;
            }
            match watcher.watch(&d, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    watched.insert(d);
                }
                Err(e) => wedge_observe::log::line(
                    "warn",
                    "-",
                    "-",
                    &format!("--watch: cannot watch {}: {e}", d.display()),
                ),
            }
        }
        *inputs.lock().unwrap_or_else(|e| e.into_inner()) = files.into_iter().collect();
    };
    rewatch(absolute(reloader.inputs()), &mut watcher);
    Ok(async move {
        loop {
            wake.notified().await;
            // Debounce: wait for quiet, and for writers to close their files.
            loop {
                let wait = {
                    let mut s = seen.lock().unwrap_or_else(|e| e.into_inner());
                    if !s.dirty {
                        break;
                    }
                    let now = Instant::now();
                    s.writing.retain(|_, since| now - *since < WRITE_PATIENCE);
                    let quiet = s
                        .last
                        .map_or(Duration::ZERO, |l| QUIET.saturating_sub(now - l));
                    let writer = s
                        .writing
                        .values()
                        .map(|since| WRITE_PATIENCE.saturating_sub(now - *since))
                        .max()
                        .unwrap_or(Duration::ZERO);
                    let wait = quiet.max(writer);
                    if wait.is_zero() {
                        s.dirty = false;
                    }
                    wait
                };
                if wait.is_zero() {
                    // Errors are logged and counted by the reloader; the next
                    // change tries again.
                    let _ = reloader.reload().await;
                    rewatch(absolute(reloader.inputs()), &mut watcher);
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = wake.notified() => {}
                }
            }
        }
    })
}

/// Kubernetes updates a mounted ConfigMap or Secret by writing a new
/// folder and renaming a `..data` symlink over the old one; the files
/// (`wedge.toml` → `..data/wedge.toml`) never change themselves. A change
/// of `..data` in a watched folder is a change of every file in it.
fn swapped_in(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == "..data")
}

fn absolute(files: Vec<PathBuf>) -> Vec<PathBuf> {
    files
        .into_iter()
        .map(|f| std::path::absolute(&f).unwrap_or(f))
        .collect()
}
