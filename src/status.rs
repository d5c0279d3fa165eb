//! `status` and `unlock`: what is on a target, and removing locks left behind.

use std::collections::BTreeMap;

use anyhow::Result;
use futures::{stream, StreamExt};
use serde::Serialize;
use serde_json::Value;

use crate::item::Item;
use crate::open::{open_paced, Folder, PacerArgs, TargetArgs};
use crate::target::{item_path, LockInfo, SyncTarget};

#[derive(Debug, Serialize)]
pub struct MasterKeyInfo {
    pub id: String,
    pub encryption_method: Option<i64>,
    pub active: bool,
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub target: String,
    pub sync_version: Option<i64>,
    /// `.sync/version.txt` and no `info.json`: the layout before sync version 3.
    pub legacy_layout: bool,
    pub e2ee: bool,
    pub master_keys: Vec<MasterKeyInfo>,
    /// Item counts by type name.
    pub items: BTreeMap<String, usize>,
    pub unreadable_items: usize,
    pub blobs: usize,
    /// `None` where the listing gives no sizes (Joplin Server).
    pub total_bytes: Option<u64>,
    pub locks: Vec<LockInfo>,
    pub other_files: usize,
}

pub async fn status(target_args: &TargetArgs, pacer: &PacerArgs) -> Result<Status> {
    let paced = open_paced(target_args, pacer, Folder::Existing)?;
    let transfers = paced.options().transfers;
    let target = SyncTarget::new(paced);
    let st = target.state().await?;
    let info = st.info.clone().unwrap_or(Value::Null);
    let active = info
        .pointer("/activeMasterKeyId/value")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let master_keys = info
        .get("masterKeys")
        .and_then(Value::as_array)
        .map(|keys| {
            keys.iter()
                .map(|k| {
                    let id = k
                        .get("id")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    MasterKeyInfo {
                        active: id == active,
                        encryption_method: k.get("encryption_method").and_then(Value::as_i64),
                        id,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let types: Vec<Option<String>> = stream::iter(st.items.keys().cloned())
        .map(|id| {
            let target = &target;
            async move {
                let data = target.storage.get(&item_path(&id)).await.ok()?;
                Item::parse_bytes(&data)
                    .ok()
                    .map(|i| i.item_type().name().to_string())
            }
        })
        .buffer_unordered(transfers.max(1))
        .collect()
        .await;
    let mut items = BTreeMap::new();
    let mut unreadable = 0;
    for t in types {
        match t {
            Some(t) => *items.entry(t).or_insert(0) += 1,
            None => unreadable += 1,
        }
    }
    let total_bytes = target.storage.capabilities().listing_sizes.then(|| {
        st.items
            .values()
            .chain(st.blobs.values())
            .map(|e| e.size)
            .sum()
    });
    Ok(Status {
        target: target.describe(),
        sync_version: st.sync_version(),
        legacy_layout: st.legacy_layout,
        e2ee: st.e2ee_enabled(),
        master_keys,
        items,
        unreadable_items: unreadable,
        blobs: st.blobs.len(),
        total_bytes,
        locks: target.locks(&st).await?,
        other_files: st.foreign.len(),
    })
}

pub fn print(s: &Status) {
    crate::say!("Target: {}", s.target);
    match s.sync_version {
        Some(v) if s.legacy_layout => crate::say!(
            "Sync version: {v} (.sync/version.txt, no info.json: an older Joplin's layout; \
             upgrade it with a current Joplin client before restoring into it)"
        ),
        Some(v) => crate::say!("Sync version: {v}"),
        None => crate::say!("Sync version: none (no info.json: empty or not a Joplin target)"),
    }
    crate::say!(
        "End-to-end encryption: {}",
        if s.e2ee { "on" } else { "off" }
    );
    for k in &s.master_keys {
        crate::say!(
            "  master key {}{} (method {})",
            k.id,
            if k.active { " (active)" } else { "" },
            k.encryption_method
                .map(|m| m.to_string())
                .unwrap_or_else(|| "?".into())
        );
    }
    crate::say!("Items:");
    for (t, n) in &s.items {
        crate::say!("  {t}: {n}");
    }
    if s.unreadable_items > 0 {
        // Under a live lock files come and go between the listing and their reading.
        let writing = s.locks.iter().any(|l| l.active && l.running != Some(false));
        crate::say!(
            "  unreadable: {}{}",
            s.unreadable_items,
            if writing {
                " (an active lock: someone is writing, so files may be half-written or gone \
                 since the listing; run `status` again once it is done)"
            } else {
                " (item files that do not parse or vanished since the listing: `verify` \
                 against the backup names them)"
            }
        );
    }
    crate::say!("Attachment blobs: {}", s.blobs);
    match s.total_bytes {
        Some(n) => crate::say!("Total bytes: {n}"),
        None => crate::say!("Total bytes: unknown (this server's listing gives no sizes)"),
    }
    if s.locks.is_empty() {
        crate::say!("Locks: none");
    }
    for l in &s.locks {
        crate::say!(
            "Lock: {} {} by {}, {}{}{}",
            if l.active { "active" } else { "stale" },
            l.kind,
            l.owner,
            crate::target::refreshed(l.age_secs, l.server_key.is_some()),
            match (l.ours, l.running) {
                (true, Some(false)) => " (joplin-restore, its run is gone)",
                (true, _) => " (joplin-restore)",
                _ => "",
            },
            if l.active && l.running != Some(false) {
                ""
            } else {
                " — `unlock` removes it"
            }
        );
    }
    if s.other_files > 0 {
        crate::say!("Other files at the root: {}", s.other_files);
    }
}

/// Remove stale locks and those of our runs that are gone (killed, on this machine); an
/// active lock stays (another client syncing, or a run of ours still writing) unless `force`.
pub async fn unlock(
    target_args: &TargetArgs,
    pacer: &PacerArgs,
    force: bool,
) -> Result<(usize, usize)> {
    let paced = open_paced(target_args, pacer, Folder::Existing)?;
    let target = SyncTarget::new(paced);
    let st = target.state().await?;
    let locks = target.locks(&st).await?;
    let mut removed = 0;
    let mut kept = 0;
    for l in locks {
        if !l.active || l.running == Some(false) || force {
            match &l.server_key {
                Some(key) => target.storage.remove_server_lock(key).await?,
                None => target.storage.delete(&l.path).await?,
            }
            crate::say!(
                "removed {} lock {} ({}){}",
                l.kind,
                l.path,
                l.owner,
                if l.active && l.running != Some(false) {
                    " although active (--force)"
                } else {
                    ""
                }
            );
            removed += 1;
        } else {
            let whose = match (l.ours, l.running) {
                (true, Some(true)) => "a joplin-restore run still going on this machine".into(),
                (true, _) => format!(
                    "a joplin-restore run ({}) that may still be writing: on another machine, \
                     or unknown",
                    l.owner
                ),
                (false, _) => format!("{}: that client is syncing", l.owner),
            };
            crate::say!(
                "kept active {} lock {} of {whose} ({}; --force removes it)",
                l.kind,
                l.path,
                crate::target::refreshed(l.age_secs, l.server_key.is_some())
            );
            kept += 1;
        }
    }
    Ok((removed, kept))
}
