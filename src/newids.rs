//! `--new-ids`: what Joplin's own JEX import does — every item gets a new id, and every
//! reference (parents, note-tag links, `:/id` links in bodies, case-insensitive) follows.

use std::collections::HashMap;

use regex::Regex;

use sha2::{Digest, Sha256};

use crate::backup::{Backup, BackupItem};

/// A new id derived from the run's seed, so a resumed restore maps ids the same way.
fn derived_id(seed: u64, old: &str) -> String {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(old.as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// Give every item of the backup a new id, in place.
pub fn remap(backup: &mut Backup, seed: u64) -> anyhow::Result<HashMap<String, String>> {
    let map: HashMap<String, String> = backup
        .items
        .iter()
        .map(|bi| (bi.id().to_string(), derived_id(seed, bi.id())))
        .collect();
    let link = Regex::new(r":/([0-9a-fA-F]{32})").expect("valid regex");
    for index in 0..backup.items.len() {
        let mut it = backup.item(&backup.items[index])?;
        for key in ["id", "parent_id", "note_id", "tag_id"] {
            if let Some(new) = it.get(key).and_then(|old| map.get(old)).cloned() {
                it.set(key, new);
            }
        }
        if !it.body.is_empty() {
            it.body = link
                .replace_all(&it.body, |c: &regex::Captures| {
                    match map.get(&c[1].to_ascii_lowercase()) {
                        Some(new) => format!(":/{new}"),
                        None => c[0].to_string(),
                    }
                })
                .into_owned();
        }
        backup.items[index] = BackupItem::from_item(format!("{}.md", it.id()), &it);
    }
    let blobs = std::mem::take(&mut backup.blobs);
    backup.blobs = blobs
        .into_iter()
        .map(|(id, loc)| (map.get(&id).cloned().unwrap_or(id), loc))
        .collect();
    Ok(map)
}
