//! `--only` merges a few items into a live target. Two things of the target's own stay as they
//! are, as the user left them:
//!
//! - the tags of a note the target keeps: its note-tag links from the backup are left out
//!   (they would put back a tag the user took off), unless the user named that tag
//!   (`tag:TITLE`) or asked for `--overwrite`; a tag that then has no link to bring is left
//!   out too (unless named);
//! - a tag the target holds under the same title (Joplin's tag titles are unique, whatever
//!   the case): the backup's links point to it and the backup's tag is not written, as
//!   Joplin's own JEX import does (`Tag.loadByTitle`); otherwise every client would show two
//!   tags of that title, the restored notes under one of them.

use std::collections::{HashMap, HashSet};

use anyhow::{Context, Result};
use futures::{stream, StreamExt};

use crate::backup::{Backup, BackupItem};
use crate::e2ee::{is_encrypted, Keyring};
use crate::item::{Item, ItemType};
use crate::plan::Comparisons;
use crate::selection::Selection;
use crate::target::{item_path, SyncTarget, TargetState};

/// A backup tag replaced by the target's tag of the same title.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReusedTag {
    pub title: String,
    pub backup_id: String,
    pub target_id: String,
}

/// What the target holds of tags and note-tag links, among its items the backup lacks.
#[derive(Debug, Default)]
pub struct TargetTags {
    /// Title folded as Joplin's `COLLATE NOCASE` folds it (ASCII letters only: Joplin finds
    /// "Work" for "work" but not "Ärger" for "ärger") → the tag's id (the earliest created,
    /// when the target has several).
    by_title: HashMap<String, (i64, String)>,
    /// (note id, tag id) of every link.
    links: HashSet<(String, String)>,
}

impl TargetTags {
    fn add(&mut self, it: &Item) {
        match it.item_type() {
            ItemType::Tag if !is_set(it.get("deleted_time")) => {
                let created = it
                    .get("created_time")
                    .and_then(crate::item::parse_time)
                    .unwrap_or(i64::MAX);
                let key = (created, it.id().to_string());
                let slot = self
                    .by_title
                    .entry(it.title_or_empty().to_ascii_lowercase())
                    .or_insert_with(|| key.clone());
                if key < *slot {
                    *slot = key;
                }
            }
            ItemType::NoteTag => {
                let (n, t) = (it.get("note_id"), it.get("tag_id"));
                self.links
                    .insert((n.unwrap_or("").to_string(), t.unwrap_or("").to_string()));
            }
            _ => {}
        }
    }

    fn tag_titled(&self, title: &str) -> Option<&str> {
        self.by_title
            .get(&title.to_ascii_lowercase())
            .map(|(_, id)| id.as_str())
    }
}

fn is_set(v: Option<&str>) -> bool {
    v.is_some_and(|d| !d.is_empty() && d != "0")
}

/// Every selected item of `kind`, with its index.
fn selected_of<'a>(
    backup: &'a Backup,
    selection: &'a Selection,
    kind: ItemType,
) -> impl Iterator<Item = (usize, &'a BackupItem)> + 'a {
    backup
        .items
        .iter()
        .enumerate()
        .filter(move |(_, bi)| bi.item_type() == kind && selection.ids.contains(bi.id()))
}

/// Read the target's tags and links among the items the backup does not hold (an item the
/// backup holds is that same item, its type known), and its copies of the backup's tags (one
/// renamed there may now carry the title looked up). Only when a selected tag is missing from
/// the target by id: otherwise nothing needs it, and on a large target it is one read per
/// item the user made since the backup.
pub async fn read_target_tags(
    target: &SyncTarget,
    backup: &Backup,
    selection: &Selection,
    state: &TargetState,
    transfers: usize,
    keyring: Option<&Keyring>,
) -> Result<Option<TargetTags>> {
    let missing = selected_of(backup, selection, ItemType::Tag)
        .any(|(_, bi)| !state.items.contains_key(bi.id()));
    if !missing {
        return Ok(None);
    }
    // Items the backup lacks, and the target's copies of the backup's tags (renamed there,
    // one may now carry the title a selected tag is looked up by).
    let known: HashSet<&str> = backup
        .items
        .iter()
        .filter(|bi| bi.item_type() != ItemType::Tag)
        .map(|bi| bi.id())
        .collect();
    let unknown: Vec<String> = state
        .items
        .keys()
        .filter(|id| !known.contains(id.as_str()))
        .map(|id| id.to_string())
        .collect();
    drop(known);
    let mut reads = stream::iter(unknown)
        .map(|id| async move {
            let data = match target.storage.get(&item_path(&id)).await {
                Ok(d) => d,
                Err(e) if e.is_not_found() => return Ok(None),
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("reading {id}.md on the target (its tags)")))
                }
            };
            let Ok(it) = Item::parse_bytes(&data) else {
                return Ok(None);
            };
            Ok(match keyring {
                Some(k) if is_encrypted(&it) => k.decrypt_item(&it).ok(),
                _ => Some(it),
            })
        })
        .buffer_unordered(transfers.max(1));
    let mut out = TargetTags::default();
    while let Some(r) = reads.next().await {
        if let Some(it) = r? {
            out.add(&it);
        }
    }
    Ok(Some(out))
}

/// Point the selected links of a backup tag the target lacks to the target's tag of the same
/// title, and leave that backup tag out; leave out a selected link whose note and tag the
/// target already links. Rewritten links stay in memory (as `--new-ids` does).
pub fn reuse_target_tags(
    backup: &mut Backup,
    selection: &mut Selection,
    state: &TargetState,
    theirs: &TargetTags,
) -> Result<Vec<ReusedTag>> {
    let mut reused = Vec::new();
    let mut to: HashMap<String, String> = HashMap::new();
    // (note, tag) of the links kept so far: two backup tags mapped to one target tag ("Work"
    // and "work" on one note) would otherwise link the note to it twice.
    let mut linked: HashSet<(String, String)> = HashSet::new();
    for (_, bi) in selected_of(backup, selection, ItemType::Tag) {
        if state.items.contains_key(bi.id()) {
            continue;
        }
        let title = backup.title(bi);
        if let Some(target_id) = theirs.tag_titled(&title) {
            to.insert(bi.id().to_string(), target_id.to_string());
            reused.push(ReusedTag {
                title,
                backup_id: bi.id().to_string(),
                target_id: target_id.to_string(),
            });
        }
    }
    // Links already on the target too: `--overwrite` writes them again, to the same tag.
    let links: Vec<usize> = selected_of(backup, selection, ItemType::NoteTag)
        .map(|(i, _)| i)
        .collect();
    for index in links {
        let mut it = backup.item(&backup.items[index])?;
        let note = it.get("note_id").unwrap_or("").to_string();
        let tag = it.get("tag_id").unwrap_or("").to_string();
        let tag = match to.get(&tag) {
            Some(new) => {
                it.set("tag_id", new.clone());
                let entry = backup.items[index].entry().into_owned();
                backup.items[index] = BackupItem::from_item(entry, &it);
                new.clone()
            }
            None => tag,
        };
        let pair = (note, tag);
        if theirs.links.contains(&pair) || !linked.insert(pair) {
            selection.ids.remove(it.id());
        }
    }
    for r in &reused {
        selection.ids.remove(&r.backup_id);
        if selection.named_tags.remove(&r.backup_id) {
            selection.named_tags.insert(r.target_id.clone());
        }
    }
    Ok(reused)
}

/// What [`keep_target_tags`] left out.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LeftOut {
    pub links: usize,
    pub tags: Vec<String>,
}

/// Without `--overwrite`: leave out the backup's links of a note the target keeps (its live
/// copy, not one in the trash, nor one an interrupted run of this restore wrote:
/// `written_before`), unless their tag was named, then the selected tags the target
/// lacks that no remaining link brings and the user did not name. `existing` tells which
/// target copies are in the trash.
pub fn keep_target_tags(
    backup: &Backup,
    selection: &mut Selection,
    state: &TargetState,
    existing: &Comparisons,
    written_before: &HashSet<String>,
) -> Result<LeftOut> {
    let kept_note: HashMap<&str, bool> = selected_of(backup, selection, ItemType::Note)
        .map(|(i, bi)| {
            let live = state.items.contains_key(bi.id())
                && !existing.get(i).is_some_and(|c| c.trashed)
                && !written_before.contains(bi.id());
            (bi.id(), live)
        })
        .collect();
    let mut drop_links = Vec::new();
    let mut linked_tags: HashSet<String> = HashSet::new();
    for (_, bi) in selected_of(backup, selection, ItemType::NoteTag) {
        let it = backup
            .item(bi)
            .with_context(|| format!("reading link {}", bi.id()))?;
        let note = it.get("note_id").unwrap_or("");
        let tag = it.get("tag_id").unwrap_or("");
        let on_target = state.items.contains_key(bi.id());
        if !on_target
            && kept_note.get(note).copied().unwrap_or(false)
            && !selection.named_tags.contains(tag)
        {
            drop_links.push(bi.id().to_string());
        } else {
            linked_tags.insert(tag.to_string());
        }
    }
    let drop_tags: Vec<String> = selected_of(backup, selection, ItemType::Tag)
        .filter(|(_, bi)| {
            !state.items.contains_key(bi.id())
                && !selection.named_tags.contains(bi.id())
                && !linked_tags.contains(bi.id())
        })
        .map(|(_, bi)| bi.id().to_string())
        .collect();
    for id in drop_links.iter().chain(&drop_tags) {
        selection.ids.remove(id);
    }
    Ok(LeftOut {
        links: drop_links.len(),
        tags: drop_tags,
    })
}

/// Without `--overwrite`, a note or notebook of the selection that the target holds in its
/// trash with other content than the backup's (the user edited it, then trashed it: the
/// trash holds its last state) comes back as the target holds it, out of the trash, under the
/// backup's parent (which the restore brings back too). One only trashed, or whose backup
/// version was edited later (`user_updated_time`), gets the backup's version. Returns those copies by backup item index, decrypted on an encrypted
/// target (the restore encrypts what it writes); the backup's own version is what
/// `--overwrite` writes. Reads only the copies [`crate::plan::fetch_comparable`] found trashed
/// and different.
pub async fn trashed_copies(
    target: &SyncTarget,
    backup: &Backup,
    existing: &Comparisons,
    indexes: impl Iterator<Item = usize>,
    keyring: Option<&Keyring>,
    transfers: usize,
) -> Result<Vec<(usize, Item)>> {
    let wanted: Vec<usize> = indexes
        .filter(|i| {
            existing.get(*i).is_some_and(|c| c.trashed && !c.same)
                && matches!(
                    backup.items[*i].item_type(),
                    ItemType::Note | ItemType::Folder
                )
        })
        .collect();
    let fetched: Vec<Result<Option<(usize, Item)>>> = stream::iter(wanted)
        .map(|i| async move {
            let bi = &backup.items[i];
            let path = item_path(bi.id());
            let data = match target.storage.get(&path).await {
                Ok(d) => d,
                Err(e) if e.is_not_found() => return Ok(None),
                Err(e) => {
                    return Err(
                        anyhow::Error::new(e).context(format!("reading {path} on the target"))
                    )
                }
            };
            let Ok(mut it) = Item::parse_bytes(&data) else {
                return Ok(None);
            };
            if is_encrypted(&it) {
                let Some(k) = keyring else {
                    return Ok(None);
                };
                match k.decrypt_item(&it) {
                    Ok(inner) => it = inner,
                    Err(_) => return Ok(None),
                }
            }
            let ours = backup.item(bi)?;
            it.set(
                "deleted_time",
                ours.get("deleted_time").unwrap_or("0").to_string(),
            );
            it.set("parent_id", ours.parent_id().to_string());
            // Only trashed (the same content), or the backup's version edited later (a
            // `user_updated_time` the app sets on an edit; other writers may leave it): the
            // backup's goes back, as for any other item the restore brings.
            let edited = |i: &Item| {
                i.get("user_updated_time")
                    .and_then(crate::item::parse_time)
                    .unwrap_or(0)
            };
            if it.same_content(&ours) || edited(&it) < edited(&ours) {
                return Ok(None);
            }
            Ok(Some((i, it)))
        })
        .buffer_unordered(transfers.max(1))
        .collect()
        .await;
    let mut out = Vec::new();
    for r in fetched {
        if let Some(found) = r? {
            out.push(found);
        }
    }
    out.sort_by_key(|(i, _)| *i);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(id: &str, title: &str, created: &str) -> Item {
        Item::parse(&format!(
            "{title}\n\nid: {id}\ncreated_time: {created}\nupdated_time: {created}\ntype_: 5"
        ))
        .unwrap()
    }

    #[test]
    fn tags_match_by_title_as_joplin_nocase_does() {
        let mut t = TargetTags::default();
        t.add(&tag(
            "11111111111111111111111111111111",
            "Work",
            "2024-01-01T00:00:00.000Z",
        ));
        t.add(&tag(
            "22222222222222222222222222222222",
            "ärger",
            "2024-01-01T00:00:00.000Z",
        ));
        assert_eq!(
            t.tag_titled("work"),
            Some("11111111111111111111111111111111")
        );
        assert_eq!(
            t.tag_titled("WORK"),
            Some("11111111111111111111111111111111")
        );
        // SQLite's NOCASE folds ASCII only: Joplin would make a new tag for "Ärger".
        assert_eq!(t.tag_titled("Ärger"), None);
        assert_eq!(
            t.tag_titled("ärger"),
            Some("22222222222222222222222222222222")
        );
    }

    #[test]
    fn the_earliest_created_of_two_same_titled_tags_wins() {
        let mut t = TargetTags::default();
        t.add(&tag(
            "33333333333333333333333333333333",
            "work",
            "2024-05-01T00:00:00.000Z",
        ));
        t.add(&tag(
            "44444444444444444444444444444444",
            "Work",
            "2024-01-01T00:00:00.000Z",
        ));
        assert_eq!(
            t.tag_titled("work"),
            Some("44444444444444444444444444444444")
        );
    }
}
