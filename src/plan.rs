//! Backup × target state → a [`Plan`]: what to upload, in which order, what to skip and what
//! to delete. The plan is a plain value so `--dry-run`, the executor and tests read the same
//! thing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::Result;
use futures::{stream, StreamExt};

use crate::backup::{Backup, BackupItem};
use crate::e2ee::{can_be_encrypted, is_encrypted, Keyring};
use crate::item::{format_time, Item, ItemType};
use crate::target::{blob_path, item_path, SyncTarget, TargetState};
use crate::validate::Validation;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    #[default]
    /// Upload everything first, delete what the backup lacks last: a client syncing midway
    /// never sees an empty target.
    Mirror,
    /// The manual procedure's order: delete every item and blob first, then upload.
    ClearFirst,
}

/// Upload order: blobs before their resource, resources before notes that link them, folders
/// (parents first) before their notes, tags and notes before note-tag links.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    Blobs,
    Resources,
    Folders(u32),
    Tags,
    Notes,
    NoteTags,
}

impl Phase {
    pub fn label(&self) -> String {
        match self {
            Phase::Blobs => "attachment blobs".into(),
            Phase::Resources => "resources".into(),
            Phase::Folders(d) => format!("notebooks (level {})", d + 1),
            Phase::Tags => "tags".into(),
            Phase::Notes => "notes".into(),
            Phase::NoteTags => "note-tag links".into(),
        }
    }
}

/// One file to write. 16 bytes: a plan holds one per item and one per blob.
#[derive(Debug, Clone)]
pub struct Upload {
    /// Index into `Backup::items` (see [`Upload::item`]).
    pub index: u32,
    /// The attachment blob rather than the item file.
    pub blob: bool,
    /// The target already has this path (so this write replaces something).
    pub overwrite: bool,
    pub bytes: u64,
}

// A plan holds one per file: keep it at 16 bytes.
const _: () = assert!(std::mem::size_of::<Upload>() == 16);

impl Upload {
    pub fn item<'a>(&self, backup: &'a Backup) -> &'a BackupItem {
        &backup.items[self.index as usize]
    }
    pub fn id<'a>(&self, backup: &'a Backup) -> &'a str {
        self.item(backup).id()
    }
}

#[derive(Debug, Clone)]
pub struct Delete {
    pub path: String,
    pub id: String,
    pub is_blob: bool,
    /// Its modification time in the listing the plan was made from (`i64::MIN`: unknown).
    pub listed_ms: i64,
}

#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub clear_first: bool,
    pub phases: Vec<(Phase, Vec<Upload>)>,
    pub deletes: Vec<Delete>,
    /// Items already identical on the target apart from the restore stamp.
    pub unchanged: usize,
    /// Item files on the target before the restore.
    pub target_items: usize,
    /// Ids the restore must leave alone on the target (allowed problem items).
    pub protected_ids: HashSet<String>,
    /// Partial restore: ids the target already had and keeps (no `--overwrite`).
    pub kept: Vec<String>,
    /// Items whose target copy was stamped in the last minutes, by backup item index, with
    /// that copy's `updated_time`: each is written stamped after it, or a client holding that
    /// copy (a device whose clock runs ahead) keeps it.
    pub after_target: Vec<(u32, i64)>,
}

impl Plan {
    pub fn uploads(&self) -> impl Iterator<Item = &Upload> {
        self.phases.iter().flat_map(|(_, u)| u.iter())
    }
    pub fn upload_count(&self) -> usize {
        self.uploads().count()
    }
    pub fn upload_bytes(&self) -> u64 {
        self.uploads().map(|u| u.bytes).sum()
    }
    pub fn overwrites(&self) -> usize {
        self.uploads().filter(|u| u.overwrite).count()
    }
    /// Item files written that the target did not have (blobs aside).
    pub fn new_items(&self) -> usize {
        self.uploads().filter(|u| !u.blob && !u.overwrite).count()
    }

    /// On a change feed (Joplin Server) whose target clients used (it has info.json): items
    /// written that the target lacked may have been deleted there before (a note deleted and
    /// brought back, a clear, a restore that a rollback undoes). A client that has not synced
    /// since that deletion reads the deletion and the new copy in one sync and drops the item
    /// (Joplin updates the copy it has just deleted, and deletes notebooks at the end of the
    /// sync); one more write of each, once it has synced, brings them back. `again` is the
    /// command that writes them again.
    pub fn caution_on_change_feed(&self, again: &str) {
        let n = self.new_items();
        if n == 0 {
            return;
        }
        crate::note!(
            "note (Joplin Server): {n} item(s) were written that the target did not have. If \
             some had been deleted there before (a note deleted and now brought back, a clear, \
             an undone restore), a Joplin client that has not synced since that deletion drops \
             them at its next sync: it reads the deletion and the new copy in one sync (notes \
             in such notebooks go to Conflicts). Once every client has synced, run {again}: \
             each item is written once more and those clients get it back."
        );
    }
    /// What a dry run reports it would do (`--json`'s `would`).
    pub fn counts_json(&self) -> serde_json::Value {
        serde_json::json!({
            "upload": self.upload_count(),
            "upload_bytes": self.upload_bytes(),
            "replace": self.overwrites(),
            "delete": self.deletes.len(),
            "unchanged": self.unchanged,
        })
    }

    /// Whether executing the plan writes or deletes anything on the target.
    pub fn writes_anything(&self) -> bool {
        self.upload_count() > 0 || !self.deletes.is_empty()
    }

    /// Whether running the plan destroys or replaces anything that is on the target now.
    pub fn is_destructive(&self) -> bool {
        !self.deletes.is_empty() || self.overwrites() > 0
    }
    /// Share of the target's items that the plan deletes (Joplin's fail-safe trips at 90 %).
    pub fn deleted_share(&self) -> f64 {
        let items = self.deletes.iter().filter(|d| !d.is_blob).count();
        if self.target_items == 0 {
            0.0
        } else {
            items as f64 / self.target_items as f64
        }
    }

    /// Warn (stderr) when the plan deletes most of the target's items: clients that synced
    /// them stop at Joplin's fail-safe instead of following, or on a change feed (Joplin
    /// Server, which has no fail-safe) delete their copies.
    pub fn warn_of_fail_safe(&self, change_feed: bool) {
        if change_feed {
            if self.clear_first && self.target_items > 0 {
                crate::note!(
                    "note: on Joplin Server --mode clear-first deletes first only what the \
                     backup lacks ({} file(s)) and rewrites the rest in place: an item deleted \
                     and written again would be lost by clients that sync afterwards (they \
                     read both changes in one sync). Close or pause every client first.",
                    self.deletes.len()
                );
            } else if self.deleted_share() >= 0.9 && self.target_items > 0 {
                crate::note!(
                    "warning: this deletes {:.0} % of the items on the target, last. Joplin \
                     Server has no fail-safe: clients that synced them delete their copies at \
                     their next sync (the snapshot keeps them; `rollback` puts them back).",
                    self.deleted_share() * 100.0
                );
            }
            return;
        }
        if self.clear_first && self.target_items > 0 {
            // Joplin's fail-safe only stops a sync that would delete nearly everything at
            // once: a client syncing while the target is being emptied deletes as it goes.
            crate::note!(
                "warning: --mode clear-first empties the target before uploading. A Joplin \
                 client that syncs meanwhile deletes its copies of what is already gone (its \
                 fail-safe stops only a sync that would delete nearly everything at once); the \
                 notes come back as the upload proceeds, but its unsynced edits may be lost. \
                 Close or pause every client first (the snapshot keeps the old target)."
            );
        } else if self.deleted_share() >= 0.9 && self.target_items > 0 {
            crate::note!(
                "warning: this deletes {:.0} % of the items on the target, last. Joplin clients \
                 that synced the old content and sync afterwards stop with \"Fail-safe: Sync \
                 was interrupted…\" (their data is safe): reset those clients or turn off the \
                 fail-safe once (Configuration > Synchronisation > Advanced). One that syncs \
                 while the deletions run deletes its copies as they go: close or pause clients \
                 first.",
                self.deleted_share() * 100.0
            );
        }
    }
}

/// A copy of `item` as the restore writes it: `updated_time` (and `blob_updated_time` for
/// resources) set to the restore time so clients take it over their own copies. An encrypted
/// resource (a rollback's or a migration's copy, written as it is) keeps its empty
/// `blob_updated_time`: that field is inside the cipher text.
pub fn stamped(item: &Item, stamp_ms: i64) -> Item {
    let mut it = item.clone();
    it.set("updated_time", format_time(stamp_ms));
    if it.item_type() == ItemType::Resource && !crate::e2ee::is_encrypted(&it) {
        it.set("blob_updated_time", stamp_ms.to_string());
    }
    it
}

/// Any 13-digit epoch-ms stamp: every real stamp serialises to the same length.
pub(crate) const SAMPLE_STAMP: i64 = 1_700_000_000_000;

/// Items the restore writes: everything not skipped by an allowed validation problem.
pub fn restore_set<'a>(backup: &'a Backup, v: &Validation) -> Vec<(usize, &'a BackupItem)> {
    // Sized for every item: collecting a filter grows by doubling, up to twice the room.
    let mut set = Vec::with_capacity(backup.items.len());
    set.extend(backup.items.iter().enumerate().filter(|(index, bi)| {
        (v.skipped_entries.is_empty() || !v.skipped_entries.contains(bi.entry().as_ref()))
            && !v.skipped_ids.contains(bi.id())
            && !v.skipped_copies.contains(index)
    }));
    set
}

/// What the plan needs of the target's copy of an item the backup also holds (compared as it
/// is fetched, so a large target's items are never all held at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetCopy {
    /// Same content as the backup's item, apart from the restore stamp.
    pub same: bool,
    /// In the target's trash (`deleted_time` set).
    pub trashed: bool,
    /// A resource's blob compared byte for byte with the backup's, where the listing has no
    /// sizes to tell (Joplin Server); `None`: not compared, sizes decide.
    pub blob_same: Option<bool>,
}

impl TargetCopy {
    /// The target's copy `theirs` of the backup's item `ours`.
    pub fn of(theirs: &Item, ours: &Item) -> TargetCopy {
        TargetCopy {
            same: theirs.same_content(ours),
            trashed: theirs
                .get("deleted_time")
                .is_some_and(|d| !d.is_empty() && d != "0"),
            blob_same: None,
        }
    }
}

/// What [`fetch_comparable`] found of the target's copies, by backup item index: 8 bytes a
/// copy (a map by id took about 190 on a large target, the peak of a restore into one).
#[derive(Debug, Default)]
pub struct Comparisons(Vec<(u32, TargetCopy)>, Vec<(u32, i64)>);

/// A target copy stamped later than this long before the comparison may carry a time later
/// than the restore's stamp (a device whose clock runs ahead): its `updated_time` is kept.
const RECENT_MS: i64 = 10 * 60 * 1000;

/// Farthest ahead of the restore's own stamp an item is stamped to beat a copy with a later
/// `updated_time`; a copy beyond that is left to win, with a warning.
const MAX_STAMP_AHEAD_MS: i64 = 24 * 60 * 60 * 1000;

/// The stamp that beats a target copy carrying `theirs` where `stamp_ms` would not (a client
/// keeps its copy unless ours is later: Joplin compares `updated_time`); `None` when
/// `stamp_ms` already does, or when `theirs` is more than a day ahead and is left to win.
pub fn stamp_after(theirs: i64, stamp_ms: i64) -> Option<i64> {
    (theirs >= stamp_ms && theirs - stamp_ms <= MAX_STAMP_AHEAD_MS).then_some(theirs + 1)
}

impl Comparisons {
    /// The comparison of the target's copy of `backup.items[index]`, if it was fetched.
    pub fn get(&self, index: usize) -> Option<&TargetCopy> {
        let index = u32::try_from(index).ok()?;
        self.0
            .binary_search_by_key(&index, |(i, _)| *i)
            .ok()
            .map(|k| &self.0[k].1)
    }

    /// Collect comparisons as the fetches finish (in any order), each with its copy's
    /// `updated_time` (ms); the first error ends it.
    pub async fn gather(
        results: impl futures::Stream<Item = Result<Option<(usize, TargetCopy, i64)>>>,
    ) -> Result<Comparisons> {
        let recent_from = crate::target::now_ms() - RECENT_MS;
        let mut out = Vec::new();
        let mut recent = Vec::new();
        let mut results = std::pin::pin!(results);
        while let Some(r) = results.next().await {
            if let Some((index, copy, updated_ms)) = r? {
                out.push((index as u32, copy));
                if updated_ms > recent_from {
                    recent.push((index as u32, updated_ms));
                }
            }
        }
        out.sort_unstable_by_key(|(i, _)| *i);
        out.shrink_to_fit();
        recent.sort_unstable();
        Ok(Comparisons(out, recent))
    }

    /// Target copies stamped in the last minutes, by backup item index, with their
    /// `updated_time`: the only ones that can be later than a restore's stamp.
    pub fn recent(&self) -> &[(u32, i64)] {
        &self.1
    }
}

/// Which of the target's copies [`fetch_comparable`] reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct Compare {
    /// Every unchanged resource's blob too, byte for byte, whatever its listed size.
    pub checksum: bool,
}

/// Fetch the target's copies of items the backup also holds and compare each with the
/// backup's. Every one: a copy of the same size may be the same apart from the stamp (a
/// stamped item has the same length as the backup's, whatever the stamp); one of another size
/// is replaced, but its `updated_time` may be later than the restore's stamp (a device whose
/// clock runs ahead, see [`Plan::after_target`]), and a partial restore needs to see which are
/// in the trash. On an encrypted target (`keyring`) every copy is decrypted, and a copy left
/// in clear is not "unchanged" (it must be re-written encrypted). Where the listing has no
/// sizes (Joplin Server), the blob of an unchanged resource is downloaded and compared too:
/// uploading it again would make every client download it again. With `checksum` that is
/// done on every target, so a blob damaged in place (same size, other bytes) is replaced.
pub async fn fetch_comparable(
    target: &SyncTarget,
    backup: &Arc<Backup>,
    set: &[(usize, &BackupItem)],
    state: &TargetState,
    transfers: usize,
    compare: Compare,
    keyring: Option<&Keyring>,
) -> Result<Comparisons> {
    let Compare { checksum } = compare;
    // Joplin Server lists no sizes: blobs are compared by their bytes there.
    let sizes = target.storage.capabilities().listing_sizes;
    let wanted = set
        .iter()
        .filter(|(_, bi)| state.items.contains_key(bi.id()))
        .copied();
    let fetched = stream::iter(wanted)
        .map(|(index, bi)| async move {
            let id = bi.id();
            let it = match target.storage.get(&item_path(id)).await {
                Ok(data) => Item::parse_bytes(&data).ok(),
                Err(e) if e.is_not_found() => None,
                Err(e) => {
                    return Err(
                        anyhow::Error::new(e).context(format!("reading {id}.md on the target"))
                    )
                }
            };
            let it = match (it, keyring) {
                (Some(it), Some(k)) if is_encrypted(&it) => match k.decrypt_item(&it) {
                    Ok(inner) => Some(inner),
                    Err(e) => {
                        tracing::warn!("{e}; the backup's copy will replace it");
                        None
                    }
                },
                (Some(it), Some(_)) if can_be_encrypted(&it) => None,
                (it, _) => it,
            };
            let Some(theirs) = it else {
                return Ok(None);
            };
            let ours = backup.item(bi)?;
            let mut copy = TargetCopy::of(&theirs, &ours);
            if (!sizes || checksum) && copy.same && state.blobs.contains_key(id) {
                let differs = crate::verify::check_blob(target, backup, bi, keyring).await;
                copy.blob_same = Some(differs.is_none());
            }
            let updated_ms = theirs
                .get("updated_time")
                .and_then(crate::item::parse_time)
                .unwrap_or(0);
            Ok(Some((index, copy, updated_ms)))
        })
        .buffer_unordered(transfers.max(1));
    Comparisons::gather(fetched).await
}

/// The target's notebooks above the real copies of made-up notebooks the plan keeps (the
/// Backup plugin writes no file for a notebook without notes, so a per-notebook set lacks
/// them): deleting them as "not in the backup" would leave a kept notebook under a parent that
/// is gone. Few: one read per made-up notebook and per notebook above it.
pub async fn above_kept_recreated(
    target: &SyncTarget,
    backup: &Backup,
    state: &TargetState,
    keyring: Option<&Keyring>,
) -> Result<HashSet<String>> {
    let mut keep = HashSet::new();
    let on_target: Vec<&String> = backup
        .recreated
        .iter()
        .filter(|id| state.items.contains_key(id.as_str()))
        .collect();
    if on_target.is_empty() {
        return Ok(keep);
    }
    let in_backup: HashSet<&str> = backup.items.iter().map(|bi| bi.id()).collect();
    for id in on_target {
        let mut at = id.clone();
        // Bounded against a loop of parents on the target.
        for _ in 0..100 {
            let data = match target.storage.get(&item_path(&at)).await {
                Ok(d) => d,
                Err(e) if e.is_not_found() => break,
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("reading the target's notebook {at}.md")))
                }
            };
            let Ok(item) = Item::parse_bytes(&data) else {
                break;
            };
            let item = match keyring {
                Some(k) if is_encrypted(&item) => match k.decrypt_item(&item) {
                    Ok(inner) => inner,
                    Err(_) => break,
                },
                _ => item,
            };
            let parent = item.parent_id().to_string();
            if parent.is_empty()
                || !state.items.contains_key(parent.as_str())
                || in_backup.contains(parent.as_str())
                || !keep.insert(parent.clone())
            {
                break;
            }
            at = parent;
        }
    }
    Ok(keep)
}

/// Say which target copies carry an `updated_time` later than `stamp_ms` (a device whose
/// clock runs ahead wrote them): written stamped just after theirs, or, more than a day
/// ahead, left to win on the clients that hold them.
pub fn warn_later_copies(after_target: &[(u32, i64)], stamp_ms: i64) {
    let later = after_target.iter().filter(|(_, t)| *t >= stamp_ms);
    let (beaten, ahead): (Vec<_>, Vec<_>) =
        later.partition(|(_, t)| stamp_after(*t, stamp_ms).is_some());
    if !beaten.is_empty() {
        let most = beaten.iter().map(|(_, t)| t - stamp_ms).max().unwrap_or(0);
        crate::note!(
            "warning: {} item(s) on the target carry a time up to {:.0} s later than this \
             restore's (a device whose clock runs ahead wrote them): written stamped just \
             after theirs, so clients take the backup's. Set that device's clock right.",
            beaten.len(),
            most as f64 / 1000.0
        );
    }
    if !ahead.is_empty() {
        crate::note!(
            "warning: {} item(s) on the target carry a time more than a day later than this \
             restore's: written with the restore's time, so clients that hold those copies \
             keep them. Set the clock of the device that wrote them right, then restore again \
             with --rewrite-unchanged once that time has passed.",
            ahead.len()
        );
    }
}

/// The phase that writes `bi`'s item file.
fn item_phase(bi: &BackupItem, depths: &HashMap<String, u32>) -> Phase {
    match bi.item_type() {
        ItemType::Resource => Phase::Resources,
        ItemType::Folder => Phase::Folders(depths.get(bi.id()).copied().unwrap_or(0)),
        ItemType::Tag => Phase::Tags,
        ItemType::Note => Phase::Notes,
        _ => Phase::NoteTags,
    }
}

fn folder_depths(set: &[(usize, &BackupItem)]) -> HashMap<String, u32> {
    let parents: HashMap<&str, &str> = set
        .iter()
        .filter(|(_, bi)| bi.item_type() == ItemType::Folder)
        .map(|(_, bi)| (bi.id(), bi.parent_id()))
        .collect();
    let mut depths = HashMap::new();
    for id in parents.keys() {
        let mut d = 0u32;
        let mut cur = *id;
        // Bounded walk: a parent cycle in a damaged backup must not hang us.
        while let Some(p) = parents.get(cur) {
            if p.is_empty() || !parents.contains_key(p) || d > 64 {
                break;
            }
            d += 1;
            cur = p;
        }
        depths.insert(id.to_string(), d);
    }
    depths
}

/// Choices that shape a plan.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    pub mode: Mode,
    /// Re-stamp items already identical on the target too, so the backup also wins over edits
    /// that clients have not synced yet (those become conflict copies on the client).
    pub rewrite_unchanged: bool,
    /// Partial restore (`--only`): write just these ids, delete nothing, and keep the target's
    /// copy of an item that exists there unless `overwrite`.
    pub only: Option<HashSet<String>>,
    pub overwrite: bool,
    /// Partial restore resumed: ids of items the interrupted run of it wrote. They are on
    /// the target because of this restore, not copies of the target's own to keep.
    pub written_before: HashSet<String>,
    /// Encrypted target: size on the target of an encrypted blob of n plain bytes, when the
    /// method makes it exact (None: unknown, so the blob is always re-written).
    pub encrypted_blob_len: Option<fn(u64) -> Option<u64>>,
    /// The target's clients follow a change feed (Joplin Server): clear-first deletes first
    /// only what the backup lacks and rewrites the rest in place, since an item deleted and
    /// written again is lost by a client that reads both changes in one sync.
    pub change_feed: bool,
}

/// The writes and deletes that make the target hold `set` (the [`restore_set`] of `backup`
/// under `validation`).
pub fn plan(
    backup: &Backup,
    validation: &Validation,
    set: &[(usize, &BackupItem)],
    state: &TargetState,
    existing: &Comparisons,
    opts: &PlanOptions,
) -> Result<Plan> {
    let selected: Vec<(usize, &BackupItem)>;
    let set = match &opts.only {
        Some(only) => {
            selected = set
                .iter()
                .filter(|(_, bi)| only.contains(bi.id()))
                .copied()
                .collect();
            &selected[..]
        }
        None => set,
    };
    let merge = opts.only.is_some();
    let mut kept = Vec::new();
    let clear_first = opts.mode == Mode::ClearFirst;
    // What clear-first deletes: everything, or on a change feed only what the backup lacks.
    let delete_all = clear_first && !opts.change_feed;
    let depths = folder_depths(set);
    // Each phase sized for every item it could get, so no list grows by doubling (on a
    // large backup the plan was the peak of memory).
    let mut room: HashMap<Phase, usize> = HashMap::new();
    for (_, bi) in set {
        *room.entry(item_phase(bi, &depths)).or_default() += 1;
        if bi.item_type() == ItemType::Resource {
            *room.entry(Phase::Blobs).or_default() += 1;
        }
    }
    let mut phases: HashMap<Phase, Vec<Upload>> = room
        .into_iter()
        .map(|(phase, n)| (phase, Vec::with_capacity(n)))
        .collect();
    let mut unchanged = 0;
    // Skipped ids that no restored item carries (a duplicate's first copy is restored).
    let mut protected_ids: HashSet<String> = validation.skipped_ids.clone();
    if !protected_ids.is_empty() {
        for (_, bi) in set {
            protected_ids.remove(bi.id());
        }
    }
    // What stays, to find what goes: only a target that holds items needs it.
    let restored_ids: HashSet<&str> = if merge || state.items.is_empty() || delete_all {
        HashSet::new()
    } else {
        set.iter().map(|(_, bi)| bi.id()).collect()
    };

    for (index, bi) in set {
        let id = bi.id();
        let ty = bi.item_type();
        let on_target = state.items.contains_key(id) && !delete_all;
        // A partial restore keeps the target's live copy; one in the trash is brought back.
        let trashed = existing.get(*index).is_some_and(|t| t.trashed);
        if merge && on_target && !opts.overwrite && !trashed && !opts.written_before.contains(id) {
            kept.push(id.to_string());
            // The item stays, but a blob the target lost is no copy to keep: the backup's goes
            // back (a client would otherwise download a missing attachment).
            if ty == ItemType::Resource && (delete_all || !state.blobs.contains_key(id)) {
                phases.entry(Phase::Blobs).or_default().push(Upload {
                    index: *index as u32,
                    blob: true,
                    overwrite: false,
                    bytes: backup.blob_size(id).unwrap_or(0),
                });
            }
            continue;
        }
        // A notebook the backup lacks, made up from file names: the target's copy is the real
        // one (its icon, dates, place), so it stays.
        if on_target && !trashed && backup.is_recreated(id) {
            unchanged += 1;
            continue;
        }
        let same_item =
            !clear_first && !opts.rewrite_unchanged && existing.get(*index).is_some_and(|t| t.same);
        let mut blob_needed = false;
        if ty == ItemType::Resource {
            let size = backup.blob_size(id).unwrap_or(0);
            let on_target = match opts.encrypted_blob_len {
                Some(f) if can_be_encrypted(&backup.item(bi)?) => f(size),
                _ => Some(size),
            };
            let checked = existing.get(*index).and_then(|t| t.blob_same);
            let blob_same = !clear_first
                && same_item
                && checked.unwrap_or_else(|| {
                    state
                        .blobs
                        .get(id)
                        .is_some_and(|e| Some(e.size) == on_target)
                });
            if !blob_same {
                blob_needed = true;
                phases.entry(Phase::Blobs).or_default().push(Upload {
                    index: *index as u32,
                    blob: true,
                    overwrite: state.blobs.contains_key(id) && !delete_all,
                    bytes: size,
                });
            }
        }
        if same_item && !blob_needed {
            unchanged += 1;
            continue;
        }
        phases
            .entry(item_phase(bi, &depths))
            .or_default()
            .push(Upload {
                index: *index as u32,
                blob: false,
                overwrite: on_target,
                bytes: bi.size(),
            });
    }

    let mut deletes = Vec::new();
    for (id, listed) in state.items.iter().filter(|_| !merge) {
        if protected_ids.contains(id.as_str()) {
            continue;
        }
        if delete_all || !restored_ids.contains(id.as_str()) {
            deletes.push(Delete {
                path: item_path(id),
                id: id.to_string(),
                is_blob: false,
                listed_ms: listed.modified_ms,
            });
        }
    }
    let resource_ids: HashSet<&str> = set
        .iter()
        .filter(|(_, bi)| bi.item_type() == ItemType::Resource)
        .map(|(_, bi)| bi.id())
        .collect();
    for (id, listed) in state.blobs.iter().filter(|_| !merge) {
        if protected_ids.contains(id.as_str()) {
            continue;
        }
        if delete_all || !resource_ids.contains(id.as_str()) {
            deletes.push(Delete {
                path: blob_path(id),
                id: id.to_string(),
                is_blob: true,
                listed_ms: listed.modified_ms,
            });
        }
    }

    let mut phases: Vec<(Phase, Vec<Upload>)> = phases
        .into_iter()
        .filter(|(_, uploads)| !uploads.is_empty())
        .map(|(phase, mut uploads)| {
            // An unchanged item leaves its room unused.
            uploads.shrink_to_fit();
            (phase, uploads)
        })
        .collect();
    phases.sort_by_key(|(p, _)| *p);
    Ok(Plan {
        clear_first,
        phases,
        deletes,
        unchanged,
        target_items: state.items.len(),
        protected_ids,
        kept,
        after_target: existing.recent().to_vec(),
    })
}

/// Drop uploads an interrupted run already finished (per its journal), after checking the
/// target still has them at the size that run wrote (`item_size`: of an item file as written;
/// `None` = unknown, upload again). A target that lists no sizes (Joplin Server) is trusted
/// with the journal and the name listed: the journal records a file only after the server
/// acknowledged the whole of it.
pub fn skip_done(
    plan: &mut Plan,
    backup: &Backup,
    state: &TargetState,
    done: &HashSet<String>,
    listing_sizes: bool,
    item_size: impl Fn(&Upload) -> Option<u64>,
) {
    for (_, uploads) in plan.phases.iter_mut() {
        uploads.retain(|u| {
            let (path, entry, size) = if u.blob {
                (
                    blob_path(u.id(backup)),
                    state.blobs.get(u.id(backup)),
                    Some(u.bytes),
                )
            } else {
                (
                    item_path(u.id(backup)),
                    state.items.get(u.id(backup)),
                    item_size(u),
                )
            };
            let finished = done.contains(&path)
                && entry.is_some_and(|e| !listing_sizes || Some(e.size) == size);
            if finished {
                plan.unchanged += 1;
            }
            !finished
        });
    }
    plan.phases.retain(|(_, u)| !u.is_empty());
}

/// Drop blob uploads that would replace a blob already holding the backup's bytes: a run
/// killed between writing a blob and journaling it (blobs land before their resource items)
/// leaves one behind, and the resumed run must neither count it as a replacement to confirm
/// (without a terminal that stops the run) nor copy it again. Only blobs whose listed size is
/// the expected one are downloaded and compared (`blob_len`: the size on the target of the
/// blob of a resource id, `None` = unknown, compare anyway); every blob is compared where the
/// listing has no sizes.
pub async fn skip_identical_blobs(
    plan: &mut Plan,
    target: &SyncTarget,
    backup: &Arc<Backup>,
    state: &TargetState,
    keyring: Option<&Keyring>,
    transfers: usize,
    blob_len: impl Fn(&str) -> Option<u64>,
) {
    let sizes = target.storage.capabilities().listing_sizes;
    let candidates: Vec<u32> = plan
        .uploads()
        .filter(|u| u.blob && u.overwrite)
        .filter(|u| {
            let id = u.id(backup);
            !sizes
                || blob_len(id).is_none_or(|len| state.blobs.get(id).is_some_and(|l| l.size == len))
        })
        .map(|u| u.index)
        .collect();
    if candidates.is_empty() {
        return;
    }
    let same: HashSet<u32> = stream::iter(candidates)
        .map(|index| async move {
            let bi = &backup.items[index as usize];
            let differs = crate::verify::check_blob(target, backup, bi, keyring).await;
            differs.is_none().then_some(index)
        })
        .buffer_unordered(transfers.max(1))
        .filter_map(|same| async move { same })
        .collect()
        .await;
    for (_, uploads) in plan.phases.iter_mut() {
        uploads.retain(|u| !(u.blob && same.contains(&u.index)));
    }
    plan.unchanged += same.len();
    plan.phases.retain(|(_, u)| !u.is_empty());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(same: bool) -> TargetCopy {
        TargetCopy {
            same,
            trashed: !same,
            blob_same: None,
        }
    }

    /// Fetches finish in any order; each comparison is found by its item's index, and an
    /// index not fetched has none.
    /// Only copies stamped in the last minutes are kept with their time, sorted by index.
    #[tokio::test]
    async fn comparisons_are_found_by_item_index_whatever_order_they_came_in() {
        let now = crate::target::now_ms();
        let done = [
            (7, true, now + 60_000),
            (2, false, 0),
            (40_000, true, now - 60_000),
            (3, true, now - RECENT_MS - 60_000),
        ];
        let results = stream::iter(done.map(|(i, same, t)| Ok(Some((i, copy(same), t)))))
            .chain(stream::iter([Ok(None)]));
        let c = Comparisons::gather(results).await.unwrap();
        for (i, same, _) in done {
            assert_eq!(c.get(i), Some(&copy(same)), "item {i}");
        }
        for i in [0, 4, 8, 39_999, usize::MAX] {
            assert_eq!(c.get(i), None, "item {i}");
        }
        assert_eq!(c.recent(), [(7, now + 60_000), (40_000, now - 60_000)]);
        let failed = stream::iter([Ok(Some((1, copy(true), 0))), Err(anyhow::anyhow!("gone"))]);
        let e = Comparisons::gather(failed).await.unwrap_err();
        assert_eq!(e.to_string(), "gone");
    }
}
