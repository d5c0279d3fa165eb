//! Backup × target → differences. Items are compared by content (parsed fields, ignoring the
//! restore stamp), blobs byte for byte.

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::{Context, Result};
use backend_core::{Entry, ListSink, Unpaced};
use futures::{stream, StreamExt};
use sha2::{Digest, Sha256};

use crate::backup::{Backup, BackupItem, IdOrder};
use crate::e2ee::{can_be_encrypted, is_encrypted, jed, Keyring};
use crate::item::{Item, ItemType};
use crate::target::{
    blob_file_id, blob_path, item_file_id, item_path, SyncTarget, TargetState, RESOURCE_DIR,
};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Difference {
    Missing {
        id: String,
        what: String,
    },
    Differs {
        id: String,
        what: String,
        fields: Vec<String>,
    },
    Unreadable {
        id: String,
        what: String,
        error: String,
    },
    BlobMissing {
        id: String,
        what: String,
    },
    BlobDiffers {
        id: String,
        what: String,
    },
    Extra {
        path: String,
    },
    /// In clear on an end-to-end encrypted target.
    NotEncrypted {
        id: String,
        what: String,
    },
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Difference::Missing { what, .. } => write!(f, "missing on the target: {what}"),
            Difference::Differs { what, fields, .. } => {
                write!(f, "differs: {what} (fields: {})", fields.join(", "))
            }
            Difference::Unreadable { what, error, .. } => {
                write!(f, "unreadable on the target: {what}: {error}")
            }
            Difference::BlobMissing { what, .. } => write!(f, "blob missing: {what}"),
            Difference::BlobDiffers { what, .. } => write!(f, "blob differs: {what}"),
            Difference::Extra { path } => write!(f, "not in the backup: {path}"),
            Difference::NotEncrypted { what, .. } => write!(
                f,
                "not encrypted on this end-to-end encrypted target: {what} (restore again with \
                 the master password to encrypt it)"
            ),
        }
    }
}

#[derive(Debug, Default, serde::Serialize)]
pub struct VerifyReport {
    pub checked_items: usize,
    pub checked_blobs: usize,
    pub differences: Vec<Difference>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.differences.is_empty()
    }

    /// A blob on the target has other bytes than the backup's (or cannot be decrypted) while
    /// its resource item is the same: a restore that compares sizes keeps such a blob when
    /// its size is right; only `--checksum` compares its bytes and replaces it.
    pub fn blob_damaged(&self) -> bool {
        self.differences.iter().any(|d| match d {
            Difference::BlobDiffers { .. } => true,
            Difference::Unreadable { what, .. } => what.starts_with(BLOB_OF),
            _ => false,
        })
    }
}

/// How an unreadable blob is described (`blob of <item>`).
const BLOB_OF: &str = "blob of ";

/// How a restore checks its work afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyMode {
    /// Read every item and blob back and compare it with the backup (decrypting E2EE).
    Full,
    /// List the target once: every item and blob is there with the size written and nothing
    /// extra (rclone-like; no second download of everything).
    Quick,
    /// No check.
    None,
}

/// A size slot of [`Seen`] whose file the listing did not show.
const ABSENT: u64 = u64::MAX;

/// What a listing of the target showed of the restored items: one slot per item (an index and
/// two sizes, 20 bytes, where a map of the listing took about 85 a file), and the files of ids
/// the backup lacks, noted as they went by. Verify never holds the target's whole listing.
pub struct Seen {
    /// The restored items' indexes in id order, looked up by binary search.
    by_id: IdOrder,
    /// Per slot of `by_id`: the listed size of `<id>.md`, or [`ABSENT`].
    item_size: Vec<u64>,
    /// Per slot of `by_id`: the listed size of `.resource/<id>`, or [`ABSENT`].
    blob_size: Vec<u64>,
    /// Paths of files the backup lacks (not `protected`).
    extra_items: Vec<String>,
    extra_blobs: Vec<String>,
}

impl Seen {
    fn empty(backup: &Backup, restored: &[usize]) -> Seen {
        let by_id = IdOrder::new(backup, restored.iter().copied());
        let n = by_id.len();
        Seen {
            by_id,
            item_size: vec![ABSENT; n],
            blob_size: vec![ABSENT; n],
            extra_items: Vec::new(),
            extra_blobs: Vec::new(),
        }
    }

    /// The slot of a restored item.
    fn slot(&self, backup: &Backup, id: &str) -> Option<usize> {
        self.by_id.position(backup, id)
    }

    fn saw_item(&mut self, backup: &Backup, protected: &HashSet<String>, id: &str, size: u64) {
        match self.slot(backup, id) {
            Some(k) => self.item_size[k] = size,
            None if protected.contains(id) => {}
            None => self.extra_items.push(item_path(id)),
        }
    }

    /// A blob is expected only for a restored resource.
    fn saw_blob(&mut self, backup: &Backup, protected: &HashSet<String>, id: &str, size: u64) {
        let slot = self.slot(backup, id).filter(|k| {
            let index = self.by_id.indexes()[*k] as usize;
            backup.items[index].item_type() == ItemType::Resource
        });
        match slot {
            Some(k) => self.blob_size[k] = size,
            None if protected.contains(id) => {}
            None => self.extra_blobs.push(blob_path(id)),
        }
    }

    /// From a listing already taken.
    pub fn from_state(
        backup: &Backup,
        restored: &[usize],
        protected: &HashSet<String>,
        state: &TargetState,
    ) -> Seen {
        let mut seen = Seen::empty(backup, restored);
        for (id, l) in &state.items {
            seen.saw_item(backup, protected, id, l.size);
        }
        for (id, l) in &state.blobs {
            seen.saw_blob(backup, protected, id, l.size);
        }
        seen
    }

    /// List the target's root and `.resource/` into slots as the names arrive.
    pub async fn list(
        target: &SyncTarget,
        backup: &Backup,
        restored: &[usize],
        protected: &HashSet<String>,
    ) -> Result<Seen> {
        let mut seen = Seen::empty(backup, restored);
        let ctx = || format!("listing {}", target.describe());
        let mut sink = SeenSink {
            seen: &mut seen,
            backup,
            protected,
            blobs: false,
        };
        target
            .storage
            .list_each("", &Unpaced, &mut sink)
            .await
            .with_context(ctx)?;
        sink.blobs = true;
        target
            .storage
            .list_each(RESOURCE_DIR, &Unpaced, &mut sink)
            .await
            .with_context(ctx)?;
        Ok(seen)
    }

    fn size_of(&self, sizes: &[u64], backup: &Backup, id: &str) -> Option<u64> {
        self.slot(backup, id)
            .map(|k| sizes[k])
            .filter(|s| *s != ABSENT)
    }

    /// The report's counts and the extra files (item files, then blobs, each in path order and
    /// once, should a listing have shown a name twice).
    fn report(&self, backup: &Backup, restored: &[usize]) -> VerifyReport {
        let mut report = VerifyReport::default();
        for extras in [&self.extra_items, &self.extra_blobs] {
            let mut paths: Vec<&String> = extras.iter().collect();
            paths.sort();
            paths.dedup();
            report.differences.extend(
                paths
                    .into_iter()
                    .map(|path| Difference::Extra { path: path.clone() }),
            );
        }
        report.checked_items = restored.len();
        report.checked_blobs = restored
            .iter()
            .filter(|i| backup.items[**i].item_type() == ItemType::Resource)
            .count();
        report
    }
}

/// Feeds one listing (the root, or `.resource/` when `blobs`) into a [`Seen`].
struct SeenSink<'a> {
    seen: &'a mut Seen,
    backup: &'a Backup,
    protected: &'a HashSet<String>,
    blobs: bool,
}

impl ListSink for SeenSink<'_> {
    fn add(&mut self, e: Entry) {
        if e.is_dir {
            return;
        }
        if self.blobs {
            if let Some(id) = blob_file_id(e.name()) {
                self.seen.saw_blob(self.backup, self.protected, &id, e.size);
            }
        } else if let Some(id) = item_file_id(e.name()) {
            self.seen.saw_item(self.backup, self.protected, &id, e.size);
        }
    }
    fn restart(&mut self) {
        let seen = &mut *self.seen;
        if self.blobs {
            seen.blob_size.fill(ABSENT);
            seen.extra_blobs.clear();
        } else {
            seen.item_size.fill(ABSENT);
            seen.extra_items.clear();
        }
    }
}

/// `--verify quick`: from a fresh listing only ([`Seen::list`]) — every restored item and blob
/// is present with the size the restore wrote, nothing extra. With `sizes` false (a listing
/// without sizes, or an encrypted target whose file sizes the backup cannot predict) only
/// presence is checked.
/// Catches lost and truncated uploads and leftovers, not bytes changed in place.
pub fn verify_listing(
    backup: &Backup,
    restored: &[usize],
    seen: &Seen,
    sizes: bool,
) -> VerifyReport {
    let mut report = seen.report(backup, restored);
    for &i in restored {
        let bi = &backup.items[i];
        let id = bi.id().to_string();
        match seen.size_of(&seen.item_size, backup, &id) {
            None => report.differences.push(Difference::Missing {
                id: id.clone(),
                what: backup.describe(bi),
            }),
            // A notebook made up from file names: any copy on the target will do (a real
            // one is kept, see `plan`).
            Some(_) if backup.is_recreated(&id) => {}
            Some(size) if sizes => {
                let written = backup.item(bi).map(|it| written_len(&it));
                if written.as_ref().ok() != Some(&size) {
                    report.differences.push(Difference::Differs {
                        id: id.clone(),
                        what: backup.describe(bi),
                        fields: vec![match written {
                            Ok(n) => format!("size ({size} bytes on the target, {n} written)"),
                            Err(err) => format!("size (the backup's copy: {err:#})"),
                        }],
                    })
                }
            }
            Some(_) => {}
        }
        if bi.item_type() == ItemType::Resource {
            match seen.size_of(&seen.blob_size, backup, &id) {
                None => report.differences.push(Difference::BlobMissing {
                    id,
                    what: backup.describe(bi),
                }),
                Some(size) if sizes && Some(size) != backup.blob_size(&id) => {
                    report.differences.push(Difference::BlobDiffers {
                        id,
                        what: backup.describe(bi),
                    })
                }
                Some(_) => {}
            }
        }
    }
    report
}

/// Length of the item file a restore writes for `item` (any stamp serialises to one length).
fn written_len(item: &Item) -> u64 {
    crate::plan::stamped(item, crate::plan::SAMPLE_STAMP)
        .serialize()
        .len() as u64
}

/// Compare the target with the items the restore wrote, reading every one back; `seen` is a
/// listing of it taken with the same `restored` and the ids neither required nor reported as
/// extra (items left out for an allowed validation problem).
pub async fn verify(
    target: &SyncTarget,
    backup: Arc<Backup>,
    restored: &[usize],
    seen: &Seen,
    transfers: usize,
    keyring: Option<&Keyring>,
) -> Result<VerifyReport> {
    let mut report = seen.report(&backup, restored);

    let checks: Vec<Vec<Difference>> = stream::iter(restored.iter().copied())
        .map(|i| {
            let backup = backup.clone();
            async move {
                let bi = &backup.items[i];
                let mut diffs = Vec::new();
                let id = bi.id().to_string();
                if seen.size_of(&seen.item_size, &backup, &id).is_none() {
                    diffs.push(Difference::Missing {
                        id,
                        what: backup.describe(bi),
                    });
                    return diffs;
                }
                match target.storage.get(&item_path(&id)).await {
                    Err(e) => diffs.push(Difference::Unreadable {
                        id: id.clone(),
                        what: backup.describe(bi),
                        error: e.to_string(),
                    }),
                    Ok(data) => match Item::parse_bytes(&data) {
                        Err(e) => diffs.push(Difference::Unreadable {
                            id: id.clone(),
                            what: backup.describe(bi),
                            error: e.to_string(),
                        }),
                        // Without the key, an encrypted copy can still equal the backup's
                        // own encrypted form (a snapshot of an encrypted target).
                        Ok(remote)
                            if keyring.is_none()
                                && is_encrypted(&remote)
                                && backup.item(bi).is_ok_and(|l| remote.same_content(&l)) => {}
                        Ok(remote) => {
                            let remote = match plain_view(remote, keyring) {
                                Ok((r, clear)) => {
                                    if clear && keyring.is_some() && can_be_encrypted(&r) {
                                        diffs.push(Difference::NotEncrypted {
                                            id: id.clone(),
                                            what: backup.describe(bi),
                                        });
                                    }
                                    r
                                }
                                Err(error) => {
                                    diffs.push(Difference::Unreadable {
                                        id: id.clone(),
                                        what: backup.describe(bi),
                                        error,
                                    });
                                    return diffs;
                                }
                            };
                            match backup.item(bi) {
                                Ok(local) if remote.same_content(&local) => {}
                                // Made up from file names: the target's copy is the real one.
                                Ok(_) if backup.is_recreated(&id) => {}
                                Ok(local) => diffs.push(Difference::Differs {
                                    id: id.clone(),
                                    what: backup.describe(bi),
                                    fields: local.differing_fields(&remote),
                                }),
                                Err(e) => diffs.push(Difference::Differs {
                                    id: id.clone(),
                                    what: backup.describe(bi),
                                    fields: vec![format!("(the backup's copy: {e:#})")],
                                }),
                            }
                        }
                    },
                }
                if bi.item_type() == ItemType::Resource {
                    diffs.extend(check_blob(target, &backup, bi, keyring).await);
                }
                diffs
            }
        })
        .buffer_unordered(transfers.max(1))
        .collect()
        .await;
    for d in checks {
        report.differences.extend(d);
    }
    Ok(report)
}

/// The item as it would be in clear, and whether it was in clear on the target.
fn plain_view(remote: Item, keyring: Option<&Keyring>) -> Result<(Item, bool), String> {
    if !is_encrypted(&remote) {
        return Ok((remote, true));
    }
    match keyring {
        Some(k) => k
            .decrypt_item(&remote)
            .map(|i| (i, false))
            .map_err(|e| format!("{e:#}")),
        None => Err("it is end-to-end encrypted: give the master password to compare it".into()),
    }
}

/// The target's blob of `bi` compared with the backup's (decrypted on an encrypted target);
/// `None` when they are the same.
pub(crate) async fn check_blob(
    target: &SyncTarget,
    backup: &Arc<Backup>,
    bi: &BackupItem,
    keyring: Option<&Keyring>,
) -> Option<Difference> {
    let id = bi.id().to_string();
    if backup.blob_size(&id).unwrap_or(0) < STREAM_MIN {
        return check_small_blob(target, backup, bi, keyring).await;
    }
    let unreadable = |error: String| Difference::Unreadable {
        id: id.clone(),
        what: format!("{BLOB_OF}{}", backup.describe(bi)),
        error,
    };
    // Downloaded to a temp file and hashed in chunks: a large blob never sits in memory.
    let tmp = match tempfile::NamedTempFile::new() {
        Ok(t) => t,
        Err(e) => return Some(unreadable(format!("cannot create a temp file: {e}"))),
    };
    if target
        .storage
        .get_file(&blob_path(&id), tmp.path())
        .await
        .is_err()
    {
        return Some(Difference::BlobMissing {
            id,
            what: backup.describe(bi),
        });
    }
    let mut head = [0u8; 8];
    let head_len = {
        use std::io::Read;
        let mut f = match std::fs::File::open(tmp.path()) {
            Ok(f) => f,
            Err(e) => return Some(unreadable(e.to_string())),
        };
        f.read(&mut head).unwrap_or(0)
    };
    // Without the key, encrypted bytes are compared as stored: they can still equal the
    // backup's own (a snapshot of an encrypted target).
    let encrypted = jed::is_jed(&head[..head_len]);
    let as_stored = encrypted && keyring.is_none();
    let remote_sha = if let Some(k) = keyring.filter(|_| encrypted) {
        // Decrypted block by block and hashed as it goes.
        let decrypted = std::fs::File::open(tmp.path())
            .map_err(anyhow::Error::from)
            .and_then(|f| {
                let mut input = std::io::BufReader::with_capacity(256 * 1024, f);
                let mut h = Sha256::new();
                k.decrypt_blob_stream(&mut input, &mut |b| h.update(b))?;
                Ok(hex::encode(h.finalize()))
            });
        match decrypted {
            Ok(sha) => sha,
            Err(e) => return Some(unreadable(format!("{e:#}"))),
        }
    } else if keyring.is_some() && encryptable(backup, bi) {
        return Some(Difference::NotEncrypted {
            id,
            what: format!("{BLOB_OF}{}", backup.describe(bi)),
        });
    } else {
        let path = tmp.path().to_path_buf();
        match tokio::task::spawn_blocking(move || crate::snapshot::file_sha(&path)).await {
            Ok(Ok((sha, _))) => sha,
            Ok(Err(e)) => return Some(unreadable(e.to_string())),
            Err(e) => return Some(unreadable(e.to_string())),
        }
    };
    drop(tmp);
    let b = backup.clone();
    let rid = id.clone();
    let local = tokio::task::spawn_blocking(move || match b.blob_file(&rid) {
        Some(slice) => crate::snapshot::file_slice_sha(&slice)
            .map(|(sha, _)| sha)
            .map_err(anyhow::Error::from),
        None => b.read_blob(&rid).map(|d| hex::encode(Sha256::digest(&d))),
    })
    .await;
    let same = matches!(local, Ok(Ok(local)) if local == remote_sha);
    if as_stored && !same {
        return Some(unreadable(
            "it is end-to-end encrypted: give the master password to compare it".into(),
        ));
    }
    (!same).then(|| Difference::BlobDiffers {
        id,
        what: backup.describe(bi),
    })
}

/// Whether the restore writes this item's blob encrypted (on an encrypted target).
fn encryptable(backup: &Backup, bi: &BackupItem) -> bool {
    backup.item(bi).is_ok_and(|it| can_be_encrypted(&it))
}

/// Blobs below this size are compared in memory; larger ones through a temp file.
const STREAM_MIN: u64 = 1024 * 1024;

/// [`check_blob`] for a small blob: both sides in memory.
async fn check_small_blob(
    target: &SyncTarget,
    backup: &Arc<Backup>,
    bi: &BackupItem,
    keyring: Option<&Keyring>,
) -> Option<Difference> {
    let id = bi.id().to_string();
    let remote = match target.storage.get(&blob_path(&id)).await {
        Ok(d) => d,
        Err(_) => {
            return Some(Difference::BlobMissing {
                id,
                what: backup.describe(bi),
            })
        }
    };
    let remote = if jed::is_jed(&remote) {
        let Some(k) = keyring else {
            // The same stored bytes (a snapshot of an encrypted target) need no key.
            let b = backup.clone();
            let rid = id.clone();
            let stored = tokio::task::spawn_blocking(move || b.read_blob(&rid)).await;
            if matches!(stored, Ok(Ok(local)) if local == remote) {
                return None;
            }
            return Some(Difference::Unreadable {
                id,
                what: format!("{BLOB_OF}{}", backup.describe(bi)),
                error: "it is end-to-end encrypted: give the master password to compare it".into(),
            });
        };
        match k.decrypt_blob(&remote) {
            Ok(d) => bytes::Bytes::from(d),
            Err(e) => {
                return Some(Difference::Unreadable {
                    id,
                    what: format!("{BLOB_OF}{}", backup.describe(bi)),
                    error: format!("{e:#}"),
                })
            }
        }
    } else if keyring.is_some() && encryptable(backup, bi) {
        return Some(Difference::NotEncrypted {
            id,
            what: format!("{BLOB_OF}{}", backup.describe(bi)),
        });
    } else {
        remote
    };
    let b = backup.clone();
    let rid = id.clone();
    let local = tokio::task::spawn_blocking(move || b.read_blob(&rid)).await;
    let same = match local {
        Ok(Ok(local)) => Sha256::digest(&local) == Sha256::digest(&remote),
        _ => false,
    };
    (!same).then(|| Difference::BlobDiffers {
        id,
        what: backup.describe(bi),
    })
}

/// A file on the target as people know it: an item by type, id and title (decrypted with
/// `keyring` on an encrypted target), else its path (a blob, an unreadable file).
pub async fn describe_target_file(
    target: &SyncTarget,
    path: &str,
    keyring: Option<&Keyring>,
) -> String {
    let item = target
        .storage
        .get(path)
        .await
        .ok()
        .and_then(|b| Item::parse_bytes(&b).ok())
        .and_then(|it| match keyring {
            Some(k) if is_encrypted(&it) => k.decrypt_item(&it).ok(),
            _ => Some(it),
        });
    let Some(it) = item else {
        return path.to_string();
    };
    // Joplin's export never holds the trash: say so where a restore would delete it for good.
    let trashed = it
        .get("deleted_time")
        .is_some_and(|d| !d.is_empty() && d != "0");
    format!(
        "{} {}{}{}",
        it.item_type(),
        it.id(),
        match it.title_or_empty() {
            "" => String::new(),
            title => format!(" ({title:?})"),
        },
        if trashed { " — in the trash" } else { "" }
    )
}

/// `diff`: the differences grouped as a restore would act on them, with titles.
pub async fn diff_report(
    target: &SyncTarget,
    r: &VerifyReport,
    keyring: Option<&Keyring>,
) -> String {
    let mut added = Vec::new();
    let mut changed = Vec::new();
    let mut removed = Vec::new();
    for d in &r.differences {
        match d {
            Difference::Missing { what, .. } => added.push(what.clone()),
            Difference::Differs { what, fields, .. } => {
                changed.push(format!("{what}: {}", fields.join(", ")))
            }
            Difference::Unreadable { what, .. } => changed.push(format!("{what}: unreadable")),
            Difference::BlobMissing { what, .. } => added.push(format!("blob of {what}")),
            Difference::BlobDiffers { what, .. } => changed.push(format!("blob of {what}")),
            Difference::NotEncrypted { what, .. } => {
                changed.push(format!("{what}: stored unencrypted"))
            }
            Difference::Extra { path } => {
                removed.push(describe_target_file(target, path, keyring).await);
            }
        }
    }
    let mut out = String::new();
    for (head, list) in [
        (
            "added by a restore (in the backup, not on the target)",
            &added,
        ),
        ("changed by a restore", &changed),
        (
            "removed by a restore (on the target, not in the backup)",
            &removed,
        ),
    ] {
        out.push_str(&format!("{} {head}\n", list.len()));
        for l in list {
            out.push_str(&format!("  {l}\n"));
        }
    }
    if r.ok() {
        out.push_str("The target holds exactly the backup.\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::Listed;

    fn jid(s: &str) -> crate::id::JoplinId {
        crate::id::JoplinId::parse(s).unwrap()
    }

    fn listed(size: u64) -> Listed {
        Listed::of_size(size)
    }

    /// The sample backup, every item restored, and the listing of a target holding exactly
    /// what a restore of it writes (sizes included).
    fn restored_sample() -> (Backup, Vec<usize>, TargetState) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sample.jex");
        let backup = Backup::open(&path).unwrap();
        let restored: Vec<usize> = (0..backup.items.len()).collect();
        let mut state = TargetState::default();
        for bi in &backup.items {
            let size = written_len(&backup.item(bi).unwrap());
            state.items.insert(jid(bi.id()), listed(size));
            if bi.item_type() == ItemType::Resource {
                let size = backup.blob_size(bi.id()).unwrap();
                state.blobs.insert(jid(bi.id()), listed(size));
            }
        }
        (backup, restored, state)
    }

    /// `--verify quick` of `state`, nothing protected.
    fn quick(
        backup: &Backup,
        restored: &[usize],
        state: &TargetState,
        sizes: bool,
    ) -> VerifyReport {
        let seen = Seen::from_state(backup, restored, &HashSet::new(), state);
        verify_listing(backup, restored, &seen, sizes)
    }

    fn kinds(r: &VerifyReport) -> Vec<String> {
        r.differences
            .iter()
            .map(|d| {
                serde_json::to_value(d).unwrap()["kind"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    fn first_of(backup: &Backup, t: ItemType) -> String {
        let bi = backup.items.iter().find(|b| b.item_type() == t).unwrap();
        bi.id().to_string()
    }

    /// `--verify quick` finds a lost item, a lost blob and a leftover from the listing alone.
    #[test]
    fn listing_check_finds_missing_and_extra_files() {
        let (backup, restored, mut state) = restored_sample();
        let r = quick(&backup, &restored, &state, false);
        assert!(r.ok(), "{r:?}");
        assert_eq!(r.checked_items, backup.items.len());

        let note = first_of(&backup, ItemType::Note);
        let res = first_of(&backup, ItemType::Resource);
        state.items.remove(note.as_str());
        state.blobs.remove(res.as_str());
        let stray = "0123456789abcdef0123456789abcdef".to_string();
        state.items.insert(jid(stray.as_str()), listed(1));
        let r = quick(&backup, &restored, &state, false);
        let kinds = kinds(&r);
        assert_eq!(r.differences.len(), 3, "{:?}", r.differences);
        assert!(kinds.contains(&"missing".into()), "{kinds:?}");
        assert!(kinds.contains(&"blob_missing".into()), "{kinds:?}");
        assert!(kinds.contains(&"extra".into()), "{kinds:?}");

        // A blob is expected only for a restored resource: one named after a note is extra,
        // and so is one no restored item names.
        let (backup, restored, mut state) = restored_sample();
        let resources = backup
            .items
            .iter()
            .filter(|bi| bi.item_type() == ItemType::Resource)
            .count();
        state.blobs.insert(jid(note.as_str()), listed(1));
        state.blobs.insert(jid(stray.as_str()), listed(1));
        let r = quick(&backup, &restored, &state, false);
        assert_eq!(r.checked_blobs, resources);
        let extra: Vec<String> = r
            .differences
            .iter()
            .filter_map(|d| match d {
                Difference::Extra { path } => Some(path.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(extra.len(), 2, "{:?}", r.differences);
        assert!(extra.contains(&blob_path(&note)), "{extra:?}");
        assert!(extra.contains(&blob_path(&stray)), "{extra:?}");
        assert_eq!(r.differences.len(), 2, "{:?}", r.differences);
    }

    /// With sizes, a truncated item or blob is found; the sizes a restore writes pass.
    #[test]
    fn listing_check_compares_sizes() {
        let (backup, restored, mut state) = restored_sample();
        assert!(quick(&backup, &restored, &state, true).ok());
        let note = first_of(&backup, ItemType::Note);
        let res = *state.blobs.keys().next().unwrap();
        state.items.get_mut(note.as_str()).unwrap().size -= 1;
        state.blobs.get_mut(&res).unwrap().size += 1;
        let r = quick(&backup, &restored, &state, true);
        assert_eq!(
            kinds(&r),
            ["differs", "blob_differs"],
            "{:?}",
            r.differences
        );
        // Without sizes (encrypted target, Joplin Server) presence is all that counts.
        assert!(quick(&backup, &restored, &state, false).ok());
    }

    /// The quick check lists a real folder straight into slots: what a restore wrote passes,
    /// a truncated blob and a stray item are found, files that are not items are not counted.
    #[tokio::test]
    async fn seen_lists_a_target_into_slots() {
        let (backup, restored, state) = restored_sample();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join(RESOURCE_DIR)).unwrap();
        for (id, l) in &state.items {
            std::fs::write(root.join(item_path(id)), vec![b'x'; l.size as usize]).unwrap();
        }
        for (id, l) in &state.blobs {
            std::fs::write(root.join(blob_path(id)), vec![b'x'; l.size as usize]).unwrap();
        }
        std::fs::write(root.join("info.json"), b"{}").unwrap();
        std::fs::write(root.join("notes.txt"), b"mine").unwrap();
        let target = SyncTarget::new(Arc::new(backend_core::pacer::Paced::new(
            Arc::new(backend_fs::FsStorage::new(root.to_path_buf())),
            Default::default(),
        )));
        let none = HashSet::new();
        let seen = Seen::list(&target, &backup, &restored, &none)
            .await
            .unwrap();
        let r = verify_listing(&backup, &restored, &seen, true);
        assert!(r.ok(), "{:?}", r.differences);

        let res = state.blobs.keys().next().unwrap().to_string();
        let stray = "0123456789abcdef0123456789abcdef";
        std::fs::write(root.join(blob_path(&res)), b"short").unwrap();
        std::fs::write(root.join(item_path(stray)), b"x").unwrap();
        let seen = Seen::list(&target, &backup, &restored, &none)
            .await
            .unwrap();
        let r = verify_listing(&backup, &restored, &seen, true);
        assert_eq!(kinds(&r), ["extra", "blob_differs"], "{:?}", r.differences);
        // A protected id is neither required nor extra.
        let protected: HashSet<String> = [stray.to_string()].into();
        let seen = Seen::list(&target, &backup, &restored, &protected)
            .await
            .unwrap();
        assert_eq!(
            kinds(&verify_listing(&backup, &restored, &seen, true)),
            ["blob_differs"]
        );
    }

    fn root_sink<'a>(
        seen: &'a mut Seen,
        backup: &'a Backup,
        protected: &'a HashSet<String>,
    ) -> SeenSink<'a> {
        SeenSink {
            seen,
            backup,
            protected,
            blobs: false,
        }
    }

    /// A listing the pacer starts over forgets what its first try showed, and only for its
    /// own folder.
    #[test]
    fn a_restarted_listing_forgets_its_first_try() {
        let (backup, restored, state) = restored_sample();
        let none = HashSet::new();
        let mut seen = Seen::from_state(&backup, &restored, &none, &state);
        let entry = |path: &str| Entry {
            path: path.into(),
            size: 1,
            modified: None,
            is_dir: false,
        };
        let mut sink = root_sink(&mut seen, &backup, &none);
        sink.add(entry("0123456789abcdef0123456789abcdef.md"));
        sink.restart();
        let r = verify_listing(&backup, &restored, &seen, false);
        let missing = backup.items.len();
        assert_eq!(kinds(&r), vec!["missing".to_string(); missing]);
        // The blobs' slots were not touched by the root's restart.
        assert!(r
            .differences
            .iter()
            .all(|d| !matches!(d, Difference::BlobMissing { .. })));
        // A name a listing shows twice is one extra file.
        let mut sink = root_sink(&mut seen, &backup, &none);
        sink.add(entry("0123456789abcdef0123456789abcdef.md"));
        sink.add(entry("0123456789abcdef0123456789abcdef.md"));
        let r = verify_listing(&backup, &restored, &seen, false);
        assert_eq!(kinds(&r).iter().filter(|k| *k == "extra").count(), 1);
    }
}
