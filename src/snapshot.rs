//! Snapshot a target before anything on it is replaced or deleted: every root file (items,
//! `info.json` with its keys) and every blob, copied into a local folder that is itself a valid
//! filesystem sync target, plus `snapshot-manifest.json` with sizes and sha256. Each file is read
//! back and checked after writing.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use futures::{stream, StreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::target::{SyncTarget, RESOURCE_DIR};

pub const MANIFEST: &str = "snapshot-manifest.json";
/// The folder of a snapshot that holds the target's files, by their paths on the target.
const FILES: &str = "files";

/// Where the snapshot in `dir` keeps its copy of the target's file `path`.
pub fn copy_of(dir: &Path, path: &str) -> PathBuf {
    dir.join(FILES).join(path)
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotFile {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotManifest {
    pub target: String,
    pub taken_at: String,
    pub files: Vec<SnapshotFile>,
}

/// The paths a complete snapshot holds (its manifest alone is read), `None` when it is not
/// one.
pub fn paths_in(dir: &Path) -> Option<std::collections::HashSet<String>> {
    if !is_complete(dir) {
        return None;
    }
    let manifest: SnapshotManifest =
        serde_json::from_slice(&std::fs::read(dir.join(MANIFEST)).ok()?).ok()?;
    Some(manifest.files.into_iter().map(|f| f.path).collect())
}

/// Default place for snapshots: `$XDG_DATA_HOME/joplin-restore/snapshots` (or `~/.local/share/…`).
pub fn default_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("joplin-restore/snapshots");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(h).join(".local/share/joplin-restore/snapshots");
    }
    PathBuf::from("joplin-restore-snapshots")
}

fn hex_sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// SHA-256 (hex) and length of a local file, read in chunks.
pub fn file_sha(path: &Path) -> std::io::Result<(String, u64)> {
    file_slice_sha(&backend_core::FileSlice::new(path, 0, u64::MAX))
}

/// SHA-256 (hex) and length of a file slice (up to its end), read in chunks.
pub fn file_slice_sha(s: &backend_core::FileSlice) -> std::io::Result<(String, u64)> {
    use std::io::{Read, Seek};
    let mut f = std::fs::File::open(&s.path)?;
    f.seek(std::io::SeekFrom::Start(s.offset))?;
    let mut r = f.take(s.len);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let k = r.read(&mut buf)?;
        if k == 0 {
            return Ok((hex::encode(h.finalize()), n));
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
}

/// Copy the whole target into a new folder under `dir`; returns that folder.
///
/// `listed`: the files of a listing just taken (see [`crate::target::TargetState::files`]), so
/// the target is not listed a second time; `None` lists it here.
pub async fn take(
    target: &SyncTarget,
    dir: &Path,
    transfers: usize,
    listed: Option<&[String]>,
) -> Result<PathBuf> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ").to_string();
    let done = dir.join(format!("snapshot-{stamp}"));
    warn_of_incomplete(dir);
    // Written under a `.partial` name and renamed once complete, so a folder named like a
    // snapshot always is one; removed again if this run fails or is stopped (`Partial`).
    let partial = Partial::new(dir.join(format!("snapshot-{stamp}{PARTIAL_SUFFIX}")));
    let out = partial.path.clone();
    let files_dir = out.join(FILES);
    std::fs::create_dir_all(files_dir.join(RESOURCE_DIR)).with_context(|| {
        format!(
            "cannot create the snapshot folder {} (choose another with --snapshot-dir)",
            out.display()
        )
    })?;
    let mut paths = Vec::new();
    if let Some(listed) = listed {
        paths.extend(listed.iter().cloned());
    }
    for dir in ["", RESOURCE_DIR].into_iter().filter(|_| listed.is_none()) {
        for e in target
            .storage
            .list(dir)
            .await
            .with_context(|| format!("snapshot: listing {}", target.describe()))?
        {
            if !e.is_dir {
                paths.push(e.path);
            }
        }
    }
    let results: Vec<Result<SnapshotFile>> = stream::iter(paths)
        .map(|p| {
            let files_dir = files_dir.clone();
            async move {
                // Streamed to disk, then hashed from disk: a large blob never sits in memory,
                // and the manifest's hash is of what was actually written.
                let local = files_dir.join(&p);
                let size = match target.storage.get_file(&p, &local).await {
                    Ok(size) => size,
                    // Listed a moment ago, gone now: someone else is writing to the target.
                    Err(e) if e.is_not_found() => bail!(
                        "snapshot: {p} was deleted from the target while the snapshot was \
                         taken: another joplin-restore run or a Joplin client is writing to it. \
                         Run again once it has finished."
                    ),
                    Err(e) => {
                        return Err(anyhow::Error::new(e).context(format!(
                            "snapshot: downloading {p} into {} (disk full? free space or use \
                             --snapshot-dir)",
                            local.display()
                        )))
                    }
                };
                let hashed = local.clone();
                let (sha, on_disk) = tokio::task::spawn_blocking(move || file_sha(&hashed))
                    .await?
                    .with_context(|| format!("snapshot: reading back {}", local.display()))?;
                if on_disk != size {
                    bail!(
                        "snapshot: {} does not read back as written ({on_disk} of {size} bytes)",
                        local.display()
                    );
                }
                Ok(SnapshotFile {
                    path: p,
                    size,
                    sha256: sha,
                })
            }
        })
        .buffer_unordered(transfers.max(1))
        .collect()
        .await;
    let mut files = Vec::with_capacity(results.len());
    for r in results {
        files.push(r?);
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let manifest = SnapshotManifest {
        target: target.describe(),
        taken_at: stamp,
        files,
    };
    std::fs::write(out.join(MANIFEST), serde_json::to_vec_pretty(&manifest)?)
        .with_context(|| format!("snapshot: writing {}", out.join(MANIFEST).display()))?;
    partial.finish(&done)?;
    Ok(done)
}

/// Ends the name of a snapshot folder still being written (or left by a run killed meanwhile).
pub const PARTIAL_SUFFIX: &str = ".partial";

/// A snapshot folder being written: removed when dropped unfinished (an error, or the run's
/// future dropped on Ctrl-C/SIGTERM), renamed to its final name by `finish`.
struct Partial {
    path: PathBuf,
    finished: bool,
}

impl Partial {
    fn new(path: PathBuf) -> Partial {
        Partial {
            path,
            finished: false,
        }
    }

    fn finish(mut self, done: &Path) -> Result<()> {
        std::fs::rename(&self.path, done).with_context(|| {
            format!(
                "snapshot: renaming {} to {}",
                self.path.display(),
                done.display()
            )
        })?;
        self.finished = true;
        Ok(())
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.finished {
            // Our own half-copy, not user data: nothing on the target was changed yet.
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Snapshots a killed run (`kill -9`, power loss) left half-written cannot be cleaned by that
/// run: say where they are, so the space is not lost unnoticed. Never deleted here: another
/// run may be writing one right now.
fn warn_of_incomplete(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("snapshot-") && name.ends_with(PARTIAL_SUFFIX) {
            crate::note!(
                "note: {} is an incomplete snapshot (a run was stopped while taking it, or is \
                 taking it now); it cannot be rolled back from. Delete it once no other \
                 joplin-restore runs.",
                e.path().display()
            );
        }
    }
}

/// Reads blobs from a snapshot's `files/` folder.
struct FolderBlobs {
    root: PathBuf,
}

impl crate::backup::BlobReader for FolderBlobs {
    fn read(&self, loc: &crate::backup::BlobLocation) -> std::io::Result<Vec<u8>> {
        std::fs::read(self.root.join(&loc.entry))
    }
    fn file(&self, loc: &crate::backup::BlobLocation) -> Option<backend_core::FileSlice> {
        Some(backend_core::FileSlice::new(
            self.root.join(&loc.entry),
            0,
            loc.size,
        ))
    }
    fn describe(&self) -> String {
        self.root.display().to_string()
    }
}

/// A snapshot checked against its manifest and opened as a backup of every item and blob it
/// holds, plus its `info.json` (if the target had one).
pub struct OpenedSnapshot {
    pub backup: crate::backup::Backup,
    pub info_json: Option<Vec<u8>>,
    pub manifest: SnapshotManifest,
}

/// A snapshot folder still being written, or left half-written by a killed run.
fn is_partial(dir: &Path) -> bool {
    dir.file_name()
        .is_some_and(|n| n.to_string_lossy().ends_with(PARTIAL_SUFFIX))
}

/// A finished snapshot is there: its manifest written and its folder renamed from `.partial`.
pub fn is_complete(dir: &Path) -> bool {
    !is_partial(dir) && dir.join(MANIFEST).is_file()
}

pub fn open(dir: &Path) -> Result<OpenedSnapshot> {
    let manifest_path = dir.join(MANIFEST);
    if !is_partial(dir) && !manifest_path.exists() && dir.join(FILES).is_dir() {
        return Err(crate::exit::Refusal(format!(
            "{} has lost its {MANIFEST} (deleted, or the snapshot was copied without it): \
             without it the files cannot be checked, nor told complete. Put the manifest back \
             from where the snapshot came from, or roll back from another snapshot.",
            dir.display()
        ))
        .into());
    }
    if is_partial(dir) {
        return Err(crate::exit::Refusal(format!(
            "{} is an incomplete snapshot: the run taking it was stopped before it finished, \
             so it does not hold the whole target. Roll back from a complete one (a folder \
             snapshot-… without {PARTIAL_SUFFIX}, next to it) and delete this one.",
            dir.display()
        ))
        .into());
    }
    let manifest: SnapshotManifest =
        serde_json::from_slice(&std::fs::read(&manifest_path).with_context(|| {
            format!(
                "{} is not a joplin-restore snapshot (no {MANIFEST}). Pass the folder the \
                 restore or clear printed after \"Snapshot of the target:\".",
                dir.display()
            )
        })?)
        .with_context(|| format!("{} is damaged", manifest_path.display()))?;
    let files = dir.join(FILES);
    let mut entries = Vec::new();
    let mut blobs = Vec::new();
    let mut info_json = None;
    for f in &manifest.files {
        let local = files.join(&f.path);
        let damaged = || {
            anyhow::anyhow!(
                "snapshot file {} does not match its manifest (damaged copy); refusing to roll \
                 back from it",
                f.path
            )
        };
        if let Some(id) = f.path.strip_prefix(".resource/") {
            // Blobs are hashed from disk in chunks, never read whole.
            let (sha, size) =
                file_sha(&local).with_context(|| format!("snapshot file {} is missing", f.path))?;
            if size != f.size || sha != f.sha256 {
                return Err(damaged());
            }
            blobs.push((
                id.to_string(),
                crate::backup::BlobLocation {
                    entry: f.path.clone(),
                    offset: 0,
                    size: f.size,
                    part: 0,
                },
            ));
            continue;
        }
        let data = std::fs::read(&local)
            .with_context(|| format!("snapshot file {} is missing", f.path))?;
        if data.len() as u64 != f.size || hex_sha(&data) != f.sha256 {
            return Err(damaged());
        }
        if f.path == crate::target::INFO_JSON {
            info_json = Some(data);
        } else if f.path.ends_with(".md") && !f.path.contains('/') {
            entries.push(crate::backup::RawEntry {
                name: f.path.clone(),
                data,
            });
        }
    }
    let mut backup = crate::backup::Backup::from_entries(
        dir,
        entries,
        std::sync::Arc::new(FolderBlobs { root: files }),
    );
    if let Some(u) = backup.unreadable.first() {
        bail!("snapshot item {} cannot be parsed: {}", u.entry, u.error);
    }
    backup.blobs.extend(blobs);
    Ok(OpenedSnapshot {
        backup,
        info_json,
        manifest,
    })
}
