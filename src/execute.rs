//! Run a [`Plan`] against a target: phase by phase, each phase's requests in parallel up to
//! `--transfers`, through the pacer. A failed phase stops the run before the next one, so a
//! resource is never written without its blob and nothing is deleted unless every upload landed.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use backend_core::{Entry, FileSlice, ListSink, StorageError, Unpaced};
use bytes::Bytes;
use futures::{stream, StreamExt};

use crate::backup::Backup;
use crate::e2ee::{can_be_encrypted, Keyring};
use crate::journal::Journal;
use crate::plan::{stamp_after, stamped, Phase, Plan, Upload};
use crate::progress::Progress;
use crate::target::{blob_path, item_path, SyncTarget, RESOURCE_DIR};

/// Items per batch call on backends with a batch endpoint (Joplin Server).
const BATCH_ITEMS: usize = 100;
/// Blobs this large or larger stream from the backup file instead of being read into memory.
const STREAM_MIN: u64 = 256 * 1024;

#[derive(Debug, Default)]
pub struct Outcome {
    pub uploaded: usize,
    /// Of `uploaded`, how many were attachment blobs.
    pub uploaded_blobs: usize,
    pub uploaded_bytes: u64,
    pub deleted: usize,
    pub failures: Vec<Failure>,
    /// Set when a phase failed and later phases did not run.
    pub stopped_at: Option<String>,
    /// Files the plan deleted last that a client wrote while the run was under way: kept.
    pub spared: Vec<String>,
}

#[derive(Debug)]
pub struct Failure {
    pub path: String,
    pub what: String,
    pub error: String,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.failures.is_empty() && self.stopped_at.is_none()
    }

    /// Say which files were spared (see [`Outcome::spared`]); `source` is what the run wrote
    /// from ("backup", "snapshot"), `run` what ran ("restore", "rollback").
    pub fn say_spared(&self, source: &str, run: &str) {
        if self.spared.is_empty() {
            return;
        }
        crate::say!(
            "kept {} file(s) the {source} lacks that a client wrote while the {run} ran (they \
             would have been deleted last); the check below shows them as extra. Delete them \
             in a client if they are not wanted: {}",
            self.spared.len(),
            self.spared
                .iter()
                .take(20)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}

pub struct Executor<'a> {
    pub target: &'a SyncTarget,
    pub backup: Arc<Backup>,
    /// The run's restore stamp; each item is written stamped with the moment its request goes
    /// out (never earlier than this), so a client that synced an edit while the run was under
    /// way has an older copy than what the run then writes. `None` writes the items' bytes
    /// verbatim (`rollback --exact`).
    pub stamp_ms: Option<i64>,
    /// The target's clock minus ours (ms): a stamp is the earlier of the two clocks, so no
    /// client sees an item from the future.
    pub clock_offset: i64,
    pub transfers: usize,
    pub progress: &'a Progress,
    /// Records each finished upload (and the clear) so an interrupted run can resume.
    pub journal: Option<&'a Journal>,
    /// Set on an encrypted target: every item and blob is written encrypted.
    pub keyring: Option<Arc<Keyring>>,
    /// Items whose target copy carries a later `updated_time` than the stamp may reach (by
    /// backup item index, sorted): stamped just after it ([`Plan::after_target`]).
    pub after_target: Vec<(u32, i64)>,
    /// Before deleting what the plan deletes last, list the target again and keep each file
    /// whose modification time moved since the plan's listing: a client wrote it while the
    /// run was under way (clients from 3.2 on sync through the lock).
    pub spare_changed: bool,
    /// Set once deleting started (the clear of a clear-first run, or what goes last): an
    /// interrupted or failed run then says that part of it may be gone.
    pub deleting: std::sync::atomic::AtomicBool,
    /// The snapshot taken before the run: its copies tell what each file to delete is (else
    /// the target's are read).
    pub snapshot: Option<std::path::PathBuf>,
}

/// The files among `wanted` (path → modification time in the plan's listing) that a listing
/// shows with another modification time.
struct Changed<'a> {
    dir: &'a str,
    wanted: &'a HashMap<&'a str, i64>,
    changed: Vec<String>,
}

impl ListSink for Changed<'_> {
    fn add(&mut self, e: Entry) {
        let path = if self.dir.is_empty() {
            e.name().to_string()
        } else {
            format!("{}/{}", self.dir, e.name())
        };
        let now = e.modified.map(crate::target::system_ms);
        if let (Some(&then), Some(now)) = (self.wanted.get(path.as_str()), now) {
            if then != i64::MIN && now != then {
                self.changed.push(path);
            }
        }
    }
    fn restart(&mut self) {
        self.changed.clear();
    }
}

/// The upload for a message (reads the item again for its title: failures only).
fn describe(backup: &Backup, u: &Upload) -> String {
    let bi = u.item(backup);
    if u.blob {
        format!("blob of resource {} ({:?})", bi.id(), backup.title(bi))
    } else {
        backup.describe(bi)
    }
}

impl Executor<'_> {
    /// Whether this run started deleting files on the target.
    pub fn started_deleting(&self) -> bool {
        self.deleting.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub async fn run(&self, plan: &Plan) -> Outcome {
        let mut out = Outcome::default();
        if plan.clear_first {
            self.delete(plan, &mut out).await;
            if !out.ok() {
                out.stopped_at = Some("clearing the target".into());
                return out;
            }
            if let Some(j) = self.journal {
                j.record_cleared();
            }
        }
        for (phase, uploads) in &plan.phases {
            tracing::info!("uploading {}: {}", phase.label(), uploads.len());
            self.progress.phase(
                &format!("uploading {}", phase.label()),
                uploads.len() as u64,
            );
            let batch =
                !matches!(phase, Phase::Blobs) && self.target.storage.capabilities().batch_put;
            if batch {
                self.upload_batched(uploads, &mut out).await;
            } else {
                self.upload_each(uploads, &mut out).await;
            }
            self.progress.finish();
            if !out.failures.is_empty() {
                out.stopped_at = Some(format!("uploading {}", phase.label()));
                return out;
            }
        }
        if !plan.clear_first {
            self.delete(plan, &mut out).await;
        }
        out
    }

    fn content(&self, u: &Upload) -> Result<Bytes> {
        let bi = u.item(&self.backup);
        let Some(ms) = self.stamp_ms else {
            // `rollback --exact`: the snapshot's bytes, already in the target's form.
            return Ok(Bytes::from(self.backup.raw(bi)?));
        };
        let mut ms = crate::target::stamp_now(self.clock_offset).max(ms);
        if let Ok(k) = self
            .after_target
            .binary_search_by_key(&u.index, |(i, _)| *i)
        {
            ms = stamp_after(self.after_target[k].1, ms).unwrap_or(ms);
        }
        let item = stamped(&self.backup.item(bi)?, ms);
        let item = match &self.keyring {
            Some(k) if can_be_encrypted(&item) => k.encrypt_item(&item)?,
            _ => item,
        };
        Ok(Bytes::from(item.serialize()))
    }

    /// [`Self::content`] as a request's body: failing to make it fails that request.
    fn body(&self, u: &Upload) -> std::result::Result<Bytes, StorageError> {
        self.content(u)
            .map_err(|e| StorageError::Rejected(format!("{e:#}")))
    }

    async fn upload_each(&self, uploads: &[Upload], out: &mut Outcome) {
        // Counted as they finish: a result per upload kept until the end would grow with the
        // backup (about 100 bytes an item).
        let mut results = stream::iter(uploads.iter().enumerate())
            .map(|(i, u)| async move {
                let what = || describe(&self.backup, u);
                if u.blob {
                    if let Some(src) = self
                        .backup
                        .blob_file(u.id(&self.backup))
                        .filter(|s| s.len >= STREAM_MIN)
                    {
                        let r = self.put_blob_streaming(u, src).await;
                        self.progress.inc(1);
                        return match r {
                            Ok(n) => (i, n, None),
                            Err(e) => (
                                i,
                                0,
                                Some(failure(&blob_path(u.id(&self.backup)), what(), e)),
                            ),
                        };
                    }
                }
                if !u.blob {
                    // Made as the request goes out (after the pacer let it through), so its
                    // stamp is the moment it is written: a client that synced an edit while it
                    // waited its turn has an older copy, which it replaces.
                    let path = item_path(u.id(&self.backup));
                    let sent = AtomicU64::new(0);
                    let make = |_: &str| {
                        let d = self.body(u)?;
                        sent.store(d.len() as u64, Ordering::Relaxed);
                        Ok(d)
                    };
                    let r = self.target.storage.put_made(&path, u.bytes, &make).await;
                    self.progress.inc(1);
                    return match r {
                        Ok(()) => {
                            let n = sent.load(Ordering::Relaxed);
                            tracing::debug!("uploaded {path} ({n} bytes)");
                            if let Some(j) = self.journal {
                                j.record_done(&path);
                            }
                            (i, n, None)
                        }
                        Err(e) => (i, 0, Some(failure(&path, what(), advice(&e)))),
                    };
                }
                let (path, data) = {
                    let backup = self.backup.clone();
                    let id = u.id(&self.backup).to_string();
                    let index = u.index as usize;
                    let keyring = self.keyring.clone();
                    let read = tokio::task::spawn_blocking(move || {
                        let data = backup.read_blob(&id)?;
                        match keyring {
                            Some(k) if can_be_encrypted(&backup.item(&backup.items[index])?) => {
                                k.encrypt_blob(&data)
                            }
                            _ => Ok(data),
                        }
                    })
                    .await;
                    let path = blob_path(u.id(&self.backup));
                    match read {
                        Ok(Ok(d)) => (path, Bytes::from(d)),
                        Ok(Err(e)) => return (i, 0, Some(failure(&path, what(), e.to_string()))),
                        Err(e) => return (i, 0, Some(failure(&path, what(), e.to_string()))),
                    }
                };
                let n = data.len() as u64;
                let r = self.target.storage.put(&path, data).await;
                self.progress.inc(1);
                match r {
                    Ok(()) => {
                        tracing::debug!("uploaded {path} ({n} bytes)");
                        if let Some(j) = self.journal {
                            j.record_done(&path);
                        }
                        (i, n, None)
                    }
                    Err(e) => (i, 0, Some(failure(&path, what(), advice(&e)))),
                }
            })
            .buffer_unordered(self.transfers.max(1));
        while let Some((i, n, f)) = results.next().await {
            match f {
                None => {
                    out.uploaded += 1;
                    out.uploaded_blobs += usize::from(uploads[i].blob);
                    out.uploaded_bytes += n;
                }
                Some(f) => out.failures.push(f),
            }
        }
    }

    /// Upload a large blob without holding it in memory: straight from its file slice, or,
    /// on an encrypted target, encrypted chunk by chunk into a temp file first. Returns the
    /// bytes sent or the failure text.
    async fn put_blob_streaming(
        &self,
        u: &Upload,
        src: FileSlice,
    ) -> std::result::Result<u64, String> {
        let path = blob_path(u.id(&self.backup));
        let keyring = match &self.keyring {
            None => None,
            Some(k) => match self.backup.item(u.item(&self.backup)) {
                Ok(it) => can_be_encrypted(&it).then(|| k.clone()),
                Err(e) => return Err(format!("{e:#}")),
            },
        };
        // Keeps the encrypted temp file alive until the upload is done.
        let mut _encrypted = None;
        let send = match keyring {
            None => src,
            Some(k) => {
                let made = tokio::task::spawn_blocking(move || encrypt_to_temp(&k, &src)).await;
                let (tmp, n) = match made {
                    Ok(Ok(t)) => t,
                    Ok(Err(e)) => return Err(format!("{e:#}")),
                    Err(e) => return Err(e.to_string()),
                };
                let slice = FileSlice::new(tmp.path(), 0, n);
                _encrypted = Some(tmp);
                slice
            }
        };
        let n = send.len;
        match self.target.storage.put_file(&path, &send).await {
            Ok(()) => {
                tracing::debug!("uploaded {path} ({n} bytes, streamed)");
                if let Some(j) = self.journal {
                    j.record_done(&path);
                }
                Ok(n)
            }
            Err(e) => Err(advice(&e)),
        }
    }

    async fn upload_batched(&self, uploads: &[Upload], out: &mut Outcome) {
        let mut results = stream::iter(uploads.chunks(BATCH_ITEMS))
            .map(|chunk| async move {
                let paths: Vec<String> = chunk
                    .iter()
                    .map(|u| item_path(u.id(&self.backup)))
                    .collect();
                let by_path: HashMap<&str, &Upload> =
                    paths.iter().map(String::as_str).zip(chunk).collect();
                let files: Vec<(String, u64)> = paths
                    .iter()
                    .zip(chunk)
                    .map(|(p, u)| (p.clone(), u.bytes))
                    .collect();
                // Bodies made as the batch goes out, stamped then (see `upload_each`).
                let sent: Mutex<HashMap<String, u64>> = Mutex::new(HashMap::new());
                let make = |p: &str| {
                    let u = by_path
                        .get(p)
                        .ok_or_else(|| StorageError::Rejected(format!("{p}: not in the batch")))?;
                    let d = self.body(u)?;
                    if let Ok(mut sent) = sent.lock() {
                        sent.insert(p.to_string(), d.len() as u64);
                    }
                    Ok(d)
                };
                let failed = self.target.storage.put_many_made(files, &make).await;
                self.progress.inc(chunk.len() as u64);
                let sent = sent.into_inner().unwrap_or_default();
                paths
                    .iter()
                    .zip(chunk)
                    .map(|(p, u)| match failed.iter().find(|(fp, _)| fp == p) {
                        None => {
                            if let Some(j) = self.journal {
                                j.record_done(p);
                            }
                            Ok(sent.get(p).copied().unwrap_or(u.bytes))
                        }
                        Some((_, e)) => Err(failure(p, describe(&self.backup, u), advice(e))),
                    })
                    .collect::<Vec<_>>()
            })
            .buffer_unordered(self.transfers.max(1));
        while let Some(batch) = results.next().await {
            for r in batch {
                match r {
                    Ok(n) => {
                        out.uploaded += 1;
                        out.uploaded_bytes += n;
                    }
                    Err(f) => out.failures.push(f),
                }
            }
        }
    }

    /// The files to delete that were written since the plan's listing, from a new listing.
    async fn changed_since_plan(
        &self,
        plan: &Plan,
    ) -> std::result::Result<Vec<String>, StorageError> {
        let wanted: HashMap<&str, i64> = plan
            .deletes
            .iter()
            .map(|d| (d.path.as_str(), d.listed_ms))
            .collect();
        let mut changed = Vec::new();
        for (dir, any) in [
            ("", plan.deletes.iter().any(|d| !d.is_blob)),
            (RESOURCE_DIR, plan.deletes.iter().any(|d| d.is_blob)),
        ] {
            if !any {
                continue;
            }
            let mut sink = Changed {
                dir,
                wanted: &wanted,
                changed: Vec::new(),
            };
            self.target
                .storage
                .list_each(dir, &Unpaced, &mut sink)
                .await?;
            changed.extend(sink.changed);
        }
        Ok(changed)
    }

    async fn delete(&self, plan: &Plan, out: &mut Outcome) {
        if plan.deletes.is_empty() {
            return;
        }
        let mut paths: Vec<String> = plan.deletes.iter().map(|d| d.path.clone()).collect();
        if self.spare_changed {
            match self.changed_since_plan(plan).await {
                Ok(changed) => {
                    let changed: HashSet<String> = changed.into_iter().collect();
                    paths.retain(|p| !changed.contains(p));
                    out.spared = changed.into_iter().collect();
                    out.spared.sort();
                }
                Err(e) => {
                    // Not knowing what clients wrote meanwhile, delete nothing.
                    out.failures.push(failure(
                        "",
                        "listing the target before deleting".into(),
                        advice(&e),
                    ));
                    return;
                }
            }
        }
        if paths.is_empty() {
            return;
        }
        let total = paths.len();
        let groups = self.deletion_order(plan, paths).await;
        self.deleting
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.progress.phase("deleting extra files", total as u64);
        for group in groups {
            let failed = self.target.storage.delete_many(&group).await;
            self.progress.inc(group.len() as u64);
            out.deleted += group.len() - failed.len();
            for (p, e) in failed {
                out.failures
                    .push(failure(&p, format!("delete {p}"), advice(&e)));
            }
        }
        self.progress.finish();
    }

    /// `paths` (of `plan`'s deletions) in groups deleted one after the other: notes,
    /// resources, links and blobs first, then notebooks, deepest first. A client that syncs
    /// while the deletions run (or after an interrupted run) and finds a notebook gone whose
    /// notes it still has turns them into conflict copies, which no later deletion removes.
    /// A file whose kind cannot be read goes with the last group.
    async fn deletion_order(&self, plan: &Plan, paths: Vec<String>) -> Vec<Vec<String>> {
        let wanted: HashSet<&str> = paths.iter().map(String::as_str).collect();
        let items: Vec<&crate::plan::Delete> = plan
            .deletes
            .iter()
            .filter(|d| !d.is_blob && wanted.contains(d.path.as_str()))
            .collect();
        // (delete, Some(parent) for a notebook, None for anything else), `Err` when it cannot
        // be read or parsed.
        let kinds: Vec<(&crate::plan::Delete, Result<Option<String>, ()>)> = stream::iter(items)
            .map(|d| async move {
                let from_snapshot = self
                    .snapshot
                    .as_ref()
                    .and_then(|s| std::fs::read(crate::snapshot::copy_of(s, &d.path)).ok());
                let bytes = match from_snapshot {
                    Some(b) => Some(Bytes::from(b)),
                    None => self.target.storage.get(&d.path).await.ok(),
                };
                let kind = bytes
                    .and_then(|b| crate::item::Item::parse_bytes(&b).ok())
                    .map(|item| {
                        (item.item_type() == crate::item::ItemType::Folder)
                            .then(|| item.parent_id().to_string())
                    });
                (d, kind.ok_or(()))
            })
            .buffer_unordered(self.transfers.max(1))
            .collect()
            .await;
        let mut last: HashSet<String> = HashSet::new();
        // Notebook id → (its parent id, its path).
        let mut notebooks: HashMap<&str, (String, &str)> = HashMap::new();
        for (d, kind) in kinds {
            match kind {
                Ok(Some(parent)) => {
                    notebooks.insert(d.id.as_str(), (parent, d.path.as_str()));
                }
                Ok(None) => {}
                Err(()) => {
                    last.insert(d.path.clone());
                }
            }
        }
        // A notebook's depth among those deleted (bounded: a loop of parents ends it).
        let depth = |id: &str| {
            let mut d = 0;
            let mut at = id;
            while let Some((parent, _)) = notebooks.get(at) {
                if d >= notebooks.len() {
                    break;
                }
                d += 1;
                at = parent;
            }
            d
        };
        let mut by_depth: std::collections::BTreeMap<std::cmp::Reverse<usize>, Vec<String>> =
            Default::default();
        for (id, (_, path)) in &notebooks {
            by_depth
                .entry(std::cmp::Reverse(depth(id)))
                .or_default()
                .push(path.to_string());
        }
        let late: HashSet<&String> = by_depth.values().flatten().chain(&last).collect();
        let first: Vec<String> = paths
            .iter()
            .filter(|p| !late.contains(p))
            .cloned()
            .collect();
        let mut groups = vec![first];
        groups.extend(by_depth.into_values());
        if !last.is_empty() {
            groups.push(last.into_iter().collect());
        }
        groups.retain(|g| !g.is_empty());
        groups
    }
}

/// Encrypt a blob's file slice into a new temp file; returns it and its length.
fn encrypt_to_temp(k: &Keyring, src: &FileSlice) -> Result<(tempfile::NamedTempFile, u64)> {
    use std::io::{Read, Seek, Write};
    let mut f = std::fs::File::open(&src.path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", src.path.display()))?;
    f.seek(std::io::SeekFrom::Start(src.offset))?;
    let mut input = std::io::BufReader::with_capacity(256 * 1024, f.take(src.len));
    let mut tmp = tempfile::NamedTempFile::new()
        .map_err(|e| anyhow::anyhow!("cannot create a temp file to encrypt into: {e}"))?;
    let n = {
        let mut out = std::io::BufWriter::with_capacity(256 * 1024, tmp.as_file_mut());
        let n = k.encrypt_blob_stream(&mut input, &mut out)?;
        out.flush()?;
        n
    };
    if input.into_inner().limit() != 0 {
        anyhow::bail!(
            "{}: the blob ends before its {} bytes (damaged backup)",
            src.path.display(),
            src.len
        );
    }
    Ok((tmp, n))
}

fn failure(path: &str, what: String, error: String) -> Failure {
    Failure {
        path: path.to_string(),
        what,
        error,
    }
}

fn advice(e: &StorageError) -> String {
    e.to_string()
}
