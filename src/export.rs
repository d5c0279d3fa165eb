//! `export`: read a sync target and write a JEX that Joplin imports — a server-side backup with
//! no desktop client running. Only live items by default (no conflicts, nothing in the trash),
//! resources with their blobs as `resources/<id>.<ext>`.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use futures::{stream, StreamExt};

use crate::item::{Item, ItemType};
use crate::open::{open_paced, Folder, PacerArgs, TargetArgs};
use crate::target::{blob_path, item_path, SyncTarget};

#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub pacer: PacerArgs,
    /// The JEX file to write.
    #[arg(value_name = "OUT.jex")]
    pub out: PathBuf,
    /// Also export notes and notebooks that are in the trash.
    #[arg(long)]
    pub include_trash: bool,
    /// Also export conflict copies.
    #[arg(long)]
    pub include_conflicts: bool,
    /// Replace OUT.jex if it exists.
    #[arg(long)]
    pub overwrite: bool,
    /// The master password of an end-to-end encrypted target (items are decrypted: a JEX is
    /// plaintext, as Joplin's own export is).
    #[command(flatten)]
    pub password: crate::e2ee::PasswordArgs,
}

#[derive(Debug, Default)]
pub struct ExportSummary {
    pub items: usize,
    pub blobs: usize,
    pub bytes: u64,
    pub skipped_trash: usize,
    pub skipped_conflicts: usize,
    pub skipped_encrypted: usize,
}

fn append(b: &mut tar::Builder<impl Write>, name: &str, data: &[u8]) -> Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    );
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, name, data)?;
    Ok(())
}

fn is_set(item: &Item, key: &str) -> bool {
    item.get(key).is_some_and(|v| !v.is_empty() && v != "0")
}

pub async fn run(args: &ExportArgs) -> Result<ExportSummary> {
    if args.out.exists() && !args.overwrite {
        return Err(crate::exit::Refusal(format!(
            "{} exists; nothing was written. Pass --overwrite to replace it, or choose another \
             file",
            args.out.display()
        ))
        .into());
    }
    // Before reading the whole target: a mistyped folder for the JEX is found now, by name.
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            anyhow::bail!(
                "{}: the folder {} does not exist; nothing was read. Create it, or choose \
                 another place for the JEX.",
                args.out.display(),
                dir.display()
            );
        }
    }
    let paced = open_paced(&args.target, &args.pacer, Folder::Existing)?;
    let transfers = paced.options().transfers;
    let target = SyncTarget::new(paced);
    let state = target.state().await?;
    if state.info.is_none() && state.items.is_empty() {
        bail!(
            "{} holds no Joplin sync target (no info.json, no items): nothing to export. \
             Check the --target.",
            target.describe()
        );
    }
    let keyring = crate::restore::keyring_for(&target, &state, &args.password, None).await?;
    let ids: Vec<String> = state.items.keys().map(|id| id.to_string()).collect();
    let fetched: Vec<Result<(String, Vec<u8>)>> = stream::iter(ids)
        .map(|id| {
            let target = &target;
            async move {
                let data = target
                    .storage
                    .get(&item_path(&id))
                    .await
                    .with_context(|| format!("reading {id}.md on {}", target.describe()))?;
                Ok((id, data.to_vec()))
            }
        })
        .buffer_unordered(transfers.max(1))
        .collect()
        .await;
    let mut items: Vec<(String, Vec<u8>, Item)> = Vec::new();
    let mut summary = ExportSummary::default();
    for r in fetched {
        let (id, mut data) = r?;
        let mut item = Item::parse_bytes(&data)
            .with_context(|| format!("{id}.md on {} cannot be parsed", target.describe()))?;
        if let (Some(k), true) = (&keyring, crate::e2ee::is_encrypted(&item)) {
            item = k
                .decrypt_item(&item)
                .with_context(|| format!("decrypting {id}.md on {}", target.describe()))?;
            data = item.serialize().into_bytes();
        }
        if !item.item_type().is_restorable() {
            continue; // revisions, old master keys: not part of a JEX
        }
        if is_set(&item, "encryption_applied") {
            summary.skipped_encrypted += 1;
            continue;
        }
        if !args.include_trash && is_set(&item, "deleted_time") {
            summary.skipped_trash += 1;
            continue;
        }
        if !args.include_conflicts && is_set(&item, "is_conflict") {
            summary.skipped_conflicts += 1;
            continue;
        }
        items.push((id, data, item));
    }
    if summary.skipped_encrypted > 0 && items.is_empty() {
        bail!(
            "{} is end-to-end encrypted: its items cannot be exported without decrypting them",
            target.describe()
        );
    }
    // A JEX missing them (an attachment, say, that its note still links) is no backup.
    if summary.skipped_encrypted > 0 && !state.has_master_keys() {
        return Err(crate::exit::Refusal(format!(
            "{}: {} item(s) are end-to-end encrypted and its info.json holds no master key to \
             decrypt them (export from a target whose info.json has its keys); nothing was \
             written.",
            target.describe(),
            summary.skipped_encrypted
        ))
        .into());
    }
    if summary.skipped_encrypted > 0 {
        return Err(crate::exit::Refusal(format!(
            "{}: {} item(s) are still end-to-end encrypted although E2EE is turned off there \
             (a client that turns it off re-uploads in clear only what it changes). Give the \
             master password (--master-password-file, or {}) to decrypt them; nothing was \
             written.",
            target.describe(),
            summary.skipped_encrypted,
            crate::e2ee::PASSWORD_ENV
        ))
        .into());
    }
    // Links to notes that were left out would dangle in the JEX.
    let notes: HashSet<&str> = items
        .iter()
        .filter(|(_, _, i)| i.item_type() == ItemType::Note)
        .map(|(id, _, _)| id.as_str())
        .collect();
    let dangling: HashSet<String> = items
        .iter()
        .filter(|(_, _, i)| {
            i.item_type() == ItemType::NoteTag && !notes.contains(i.get("note_id").unwrap_or(""))
        })
        .map(|(id, _, _)| id.clone())
        .collect();
    items.retain(|(id, _, _)| !dangling.contains(id));
    items.sort_by(|a, b| a.0.cmp(&b.0));

    let tmp = tmp_path(&args.out);
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    for (id, data, _) in &items {
        append(&mut tar, &format!("{id}.md"), data)?;
        summary.items += 1;
        summary.bytes += data.len() as u64;
    }
    // Blobs one at a time: a large target never sits in memory.
    for (id, _, item) in items
        .iter()
        .filter(|(_, _, i)| i.item_type() == ItemType::Resource)
    {
        let blob = match target.storage.get(&blob_path(id)).await {
            Ok(b) => b,
            Err(e) if e.is_not_found() => {
                crate::note!(
                    "warning: resource {id} ({:?}) has no blob on the target; exported without it",
                    item.title_or_empty()
                );
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("reading the blob of resource {id}")),
        };
        // Joplin's import finds a blob only by the name it derives itself (the MIME type's
        // extension when the resource has none).
        let name = crate::blob_name::jex_blob_name(
            id.as_ref(),
            &item.get_unescaped("file_extension").unwrap_or_default(),
            &item.get_unescaped("mime").unwrap_or_default(),
        );
        let blob = match &keyring {
            Some(k) => k
                .decrypt_blob(&blob)
                .with_context(|| format!("decrypting the blob of resource {id}"))?,
            None => blob.to_vec(),
        };
        append(&mut tar, &name, &blob)?;
        summary.blobs += 1;
        summary.bytes += blob.len() as u64;
    }
    tar.into_inner()?.flush()?;
    std::fs::rename(&tmp, &args.out)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    Ok(summary)
}

/// Written next to the destination and renamed at the end: never a half-written JEX.
fn tmp_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    out.with_file_name(name)
}
