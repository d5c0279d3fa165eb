//! Wipe a running Joplin and import a backup into it through the Data API, keeping IDs.
//!
//! Import order: notebooks parents first (one level at a time), resources (multipart upload
//! with their id), notes, tags, then note-tag links. Notes are created without a body and the
//! body is set by a second call (`PUT`), because `POST /notes` downloads images named in the
//! body and rewrites it. A rerun skips every item that already exists with the same id (a note
//! left empty by an interrupted run gets its body), so an interrupted import can be resumed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;

use anyhow::{bail, Result};
use futures::stream::{self, StreamExt};
use serde_json::{json, Map, Value};

use super::data_api::DataApi;
use crate::backup::Backup;
use crate::item::{parse_time, Item, ItemType};

#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Counts {
    pub folders: usize,
    pub notes: usize,
    pub resources: usize,
    pub tags: usize,
    pub note_tags: usize,
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} notebook(s), {} note(s), {} resource(s), {} tag(s), {} note-tag link(s)",
            self.folders, self.notes, self.resources, self.tags, self.note_tags
        )
    }
}

#[derive(Debug, Default)]
pub struct ImportSummary {
    pub created: Counts,
    pub skipped: Counts,
    /// Notes that existed with an empty body (interrupted run) and got their body.
    pub repaired: usize,
    pub warnings: Vec<String>,
    pub failures: Vec<String>,
}

/// Run `f` over `items`, `transfers` at a time; collect the errors as messages.
async fn run_all<T, F, Fut>(items: Vec<T>, transfers: usize, f: F) -> (usize, Vec<String>)
where
    F: Fn(T) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let results: Vec<Result<()>> = stream::iter(items.into_iter().map(f))
        .buffer_unordered(transfers.max(1))
        .collect()
        .await;
    let mut ok = 0;
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(()) => ok += 1,
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    (ok, errors)
}

fn ids(list: &[Value]) -> HashSet<String> {
    list.iter()
        .filter_map(|v| v["id"].as_str().map(str::to_string))
        .collect()
}

/// Notebooks grouped by depth (0 = top level), from `id → parent_id`; cycles end at the
/// first repeat.
fn levels(parents: &HashMap<String, String>) -> BTreeMap<usize, Vec<String>> {
    let mut out: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for id in parents.keys() {
        let mut depth = 0;
        let mut cur = id.as_str();
        let mut seen = HashSet::new();
        while let Some(p) = parents.get(cur) {
            if p.is_empty() || !parents.contains_key(p) || !seen.insert(cur) || depth > 1000 {
                break;
            }
            depth += 1;
            cur = p;
        }
        out.entry(depth).or_default().push(id.clone());
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

/// Typed JSON value of a serialised property, for the API.
fn prop_json(item: &Item, key: &str) -> Option<Value> {
    let raw = item.get(key)?;
    if key.ends_with("_time") || key == "todo_due" || key == "todo_completed" {
        if raw.is_empty() || raw == "0" {
            return Some(json!(0));
        }
        return parse_time(raw)
            .map(|t| json!(t))
            .or_else(|| raw.parse::<i64>().ok().map(|n| json!(n)));
    }
    match key {
        "is_todo" | "markup_language" | "order" | "is_shared" => raw.parse::<f64>().ok().map(|n| {
            if n.fract() == 0.0 {
                json!(n as i64)
            } else {
                json!(n)
            }
        }),
        "latitude" | "longitude" | "altitude" => raw.parse::<f64>().ok().map(|n| json!(n)),
        _ => Some(Value::String(item.get_unescaped(key).unwrap_or_default())),
    }
}

fn props(item: &Item, keys: &[&str]) -> Map<String, Value> {
    let mut m = Map::new();
    for k in keys {
        if let Some(v) = prop_json(item, k) {
            m.insert((*k).to_string(), v);
        }
    }
    m
}

const NOTE_CREATE: &[&str] = &[
    "id",
    "parent_id",
    "is_todo",
    "user_created_time",
    "user_updated_time",
];
const NOTE_UPDATE: &[&str] = &[
    "parent_id",
    "is_todo",
    "todo_due",
    "todo_completed",
    "user_created_time",
    "user_updated_time",
    "source_url",
    "source",
    "source_application",
    "application_data",
    "author",
    "latitude",
    "longitude",
    "altitude",
    "markup_language",
    "order",
    "user_data",
];
const FOLDER_CREATE: &[&str] = &[
    "id",
    "parent_id",
    "icon",
    "user_created_time",
    "user_updated_time",
    "user_data",
];

fn encrypted(item: &Item) -> bool {
    item.get("encryption_applied") == Some("1")
}

/// An item of the backup, read whole.
struct Loaded {
    item: Item,
}

impl Loaded {
    fn id(&self) -> &str {
        self.item.id()
    }
}

fn in_trash(item: &Item) -> bool {
    item.get("deleted_time")
        .is_some_and(|t| !t.is_empty() && t != "0")
}

/// Import `backup` into the running client behind `api`.
pub async fn import(api: &DataApi, backup: &Backup) -> Result<ImportSummary> {
    let mut s = ImportSummary::default();
    let transfers = api.transfers;
    // Every field of every item goes through the API: read them all once.
    let loaded: Vec<Loaded> = backup
        .items
        .iter()
        .map(|bi| backup.item(bi).map(|item| Loaded { item }))
        .collect::<Result<_>>()?;
    let mut by_type: HashMap<ItemType, Vec<&Loaded>> = HashMap::new();
    for bi in &loaded {
        let it = &bi.item;
        if encrypted(it) {
            s.warnings.push(format!(
                "{} {} is encrypted in the backup: skipped",
                it.item_type(),
                it.id()
            ));
            continue;
        }
        if in_trash(it) {
            s.warnings.push(format!(
                "{} {} ({:?}) is in the trash in the backup: skipped",
                it.item_type(),
                it.id(),
                it.title_or_empty()
            ));
            continue;
        }
        by_type.entry(it.item_type()).or_default().push(bi);
    }

    // What the client already holds, trashed items included.
    let folder_list = api
        .list_all(
            "/search",
            &[
                ("query", "*"),
                ("type", "folder"),
                ("fields", "id,deleted_time"),
            ],
        )
        .await?;
    let have_folders = ids(&folder_list);
    let trashed_folders: HashSet<String> = folder_list
        .iter()
        .filter(|f| f["deleted_time"].as_i64().unwrap_or(0) != 0)
        .filter_map(|f| f["id"].as_str().map(str::to_string))
        .collect();
    let note_list = api
        .list_all(
            "/notes",
            &[
                ("include_deleted", "1"),
                ("include_conflicts", "1"),
                ("fields", NOTE_LISTED),
            ],
        )
        .await?;
    let trashed_notes: HashSet<String> = note_list
        .iter()
        .filter(|n| n["deleted_time"].as_i64().unwrap_or(0) != 0)
        .filter_map(|n| n["id"].as_str().map(str::to_string))
        .collect();
    let notes_there: HashMap<&str, &Value> = note_list
        .iter()
        .filter_map(|v| Some((v["id"].as_str()?, v)))
        .collect();
    let have_resources = ids(&api.list_all("/resources", &[("fields", "id")]).await?);
    let tag_list = api.list_all("/tags", &[("fields", "id,title")]).await?;
    let have_tags = ids(&tag_list);
    // Joplin refuses a second tag of the same title (whatever the case): a backup tag whose
    // title the client already has under another id links its notes to that tag instead.
    let tag_by_title: HashMap<String, String> = tag_list
        .iter()
        .filter_map(|t| {
            Some((
                t["title"].as_str()?.to_lowercase(),
                t["id"].as_str()?.to_string(),
            ))
        })
        .collect();
    let mut same_title_tag: HashMap<String, String> = HashMap::new();

    let of = |t: ItemType| by_type.get(&t).cloned().unwrap_or_default();
    let in_client_trash = of(ItemType::Folder)
        .iter()
        .filter(|f| trashed_folders.contains(f.id()))
        .count()
        + of(ItemType::Note)
            .iter()
            .filter(|n| trashed_notes.contains(n.id()))
            .count();
    if in_client_trash > 0 {
        s.warnings.push(format!(
            "{in_client_trash} notebook(s)/note(s) of the backup are in the client's trash with \
             the same id and stay there: restore them from Joplin's trash, or run `client wipe` \
             and import again"
        ));
    }

    // Notebooks, one level at a time so parents exist first.
    let folders = of(ItemType::Folder);
    let parents: HashMap<String, String> = folders
        .iter()
        .map(|f| (f.id().to_string(), f.item.parent_id().to_string()))
        .collect();
    let folder_by_id: HashMap<&str, &Loaded> = folders.iter().map(|f| (f.id(), *f)).collect();
    for (_, level) in levels(&parents) {
        let todo: Vec<&Loaded> = level
            .iter()
            .filter_map(|id| folder_by_id.get(id.as_str()).copied())
            .filter(|f| {
                let skip = have_folders.contains(f.id());
                if skip {
                    s.skipped.folders += 1;
                }
                !skip
            })
            .collect();
        let (ok, errs) = run_all(todo, transfers, |f| async move {
            let mut body = props(&f.item, FOLDER_CREATE);
            body.insert("title".into(), json!(f.item.title_or_empty()));
            api.post("/folders", Value::Object(body)).await?;
            Ok(())
        })
        .await;
        s.created.folders += ok;
        s.failures.extend(errs);
    }

    // Resources: blob and metadata in one multipart call. The Data API makes no resource
    // without its file: one whose blob the backup lacks (accepted with --allow missing-blob)
    // is left out, said once.
    let mut blobless = Vec::new();
    let resources: Vec<&Loaded> = of(ItemType::Resource)
        .into_iter()
        .filter(|r| {
            let skip = have_resources.contains(r.id());
            if skip {
                s.skipped.resources += 1;
            } else if backup.blob_size(r.id()).is_none() {
                blobless.push(format!("{} ({:?})", r.id(), r.item.title_or_empty()));
                return false;
            }
            !skip
        })
        .collect();
    if !blobless.is_empty() {
        s.warnings.push(format!(
            "{} attachment(s) have no file in the backup and were left out (Joplin cannot \
             make one without its file; notes show a broken link to them): {}",
            blobless.len(),
            blobless.join(", ")
        ));
    }
    // A note whose notebook is in neither the backup nor Joplin (accepted with --allow
    // missing-parent) belongs to no notebook: Joplin shows it under "All notes" only.
    let homeless: Vec<String> = of(ItemType::Note)
        .iter()
        .filter(|n| {
            let parent = n.item.parent_id();
            !folder_by_id.contains_key(parent) && !have_folders.contains(parent)
        })
        .map(|n| format!("{} ({:?})", n.id(), n.item.title_or_empty()))
        .collect();
    if !homeless.is_empty() {
        s.warnings.push(format!(
            "{} note(s) have a notebook that is in neither the backup nor Joplin: Joplin shows \
             them under \"All notes\" only (move them into a notebook there): {}",
            homeless.len(),
            homeless.join(", ")
        ));
    }
    let (ok, errs) = run_all(resources, transfers, |r| async move {
        let id = r.id().to_string();
        let data = backup.read_blob(&id)?;
        let ext = r.item.get_unescaped("file_extension").unwrap_or_default();
        let file_name = if ext.is_empty() {
            id.clone()
        } else {
            format!("{id}.{ext}")
        };
        let p = json!({"id": id, "title": r.item.title_or_empty()});
        api.upload("/resources", file_name, data, p).await?;
        // Joplin takes the type from the uploaded file's name and leaves the original file
        // name empty: the backup's go back on afterwards (the extension stays, as the file
        // Joplin stored is named by it).
        let mut meta = props(&r.item, &["mime", "filename"]);
        meta.retain(|_, v| v.as_str().is_some_and(|s| !s.is_empty()));
        if !meta.is_empty() {
            api.put(&format!("/resources/{id}"), Value::Object(meta))
                .await?;
        }
        Ok(())
    })
    .await;
    s.created.resources += ok;
    s.failures.extend(errs);

    // Notes: create without body, then set the body verbatim.
    let mut notes = Vec::new();
    let mut repairs = Vec::new();
    for n in of(ItemType::Note) {
        match notes_there.get(n.id()) {
            None => notes.push(n),
            Some(have) if unfinished(have, n) => repairs.push(n),
            Some(_) => s.skipped.notes += 1,
        }
    }
    let (ok, errs) = run_all(notes, transfers, |n| async move {
        let mut create = props(&n.item, NOTE_CREATE);
        create.insert("title".into(), json!(n.item.title_or_empty()));
        api.post("/notes", Value::Object(create)).await?;
        put_note(api, n).await
    })
    .await;
    s.created.notes += ok;
    s.failures.extend(errs);
    let (ok, errs) = run_all(
        repairs,
        transfers,
        |n| async move { put_note(api, n).await },
    )
    .await;
    s.repaired += ok;
    s.failures.extend(errs);

    // Tags.
    let mut tags: Vec<&Loaded> = Vec::new();
    for t in of(ItemType::Tag) {
        if have_tags.contains(t.id()) {
            s.skipped.tags += 1;
            continue;
        }
        let title = t.item.title_or_empty();
        match tag_by_title.get(&title.to_lowercase()) {
            Some(existing) => {
                s.skipped.tags += 1;
                s.warnings.push(format!(
                    "tag {title:?} ({}) exists in Joplin already as {existing}: its notes are \
                     linked to that tag",
                    t.id()
                ));
                same_title_tag.insert(t.id().to_string(), existing.clone());
            }
            None => tags.push(t),
        }
    }
    let (ok, errs) = run_all(tags, transfers, |t| async move {
        api.post(
            "/tags",
            json!({"id": t.id(), "title": t.item.title_or_empty()}),
        )
        .await?;
        Ok(())
    })
    .await;
    s.created.tags += ok;
    s.failures.extend(errs);

    // Note-tag links (their own ids cannot be set through the API).
    let mut wanted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for nt in of(ItemType::NoteTag) {
        let tag = nt.item.get("tag_id").unwrap_or("").to_string();
        let tag = same_title_tag.get(&tag).cloned().unwrap_or(tag);
        let note = nt.item.get("note_id").unwrap_or("").to_string();
        if tag.is_empty() || note.is_empty() {
            s.warnings.push(format!(
                "note-tag link {} names no note or tag: skipped",
                nt.id()
            ));
            continue;
        }
        wanted.entry(tag).or_default().push(note);
    }
    // Notes in the trash (the client's, or trashed in the backup): a tag's note list leaves
    // them out, so their links are read from the note's side.
    let trashed: HashSet<String> = trashed_notes
        .iter()
        .cloned()
        .chain(
            of(ItemType::Note)
                .iter()
                .filter(|n| in_trash(&n.item))
                .map(|n| n.id().to_string()),
        )
        .collect();
    let mut links = Vec::new();
    for (tag, notes) in wanted.clone() {
        let path = format!("/tags/{tag}/notes");
        let existing = if api.dry_run && !have_tags.contains(&tag) {
            // A tag a dry run did not create has no links yet (asking would be a 404).
            HashSet::new()
        } else {
            match linked(api, &tag, &notes, &trashed).await {
                Ok(l) => l,
                Err(e) => {
                    s.failures.push(format!("{e:#}"));
                    continue;
                }
            }
        };
        for note in notes {
            if existing.contains(&note) {
                s.skipped.note_tags += 1;
            } else {
                links.push((path.clone(), note));
            }
        }
    }
    let (ok, errs) = run_all(links, transfers, |(path, note)| async move {
        api.post(&path, json!({"id": note})).await?;
        Ok(())
    })
    .await;
    s.created.note_tags += ok;
    s.failures.extend(errs);
    // A dry run wrote no link to check.
    if s.failures.is_empty() && !api.dry_run {
        relink_missing(api, &wanted, &trashed).await?;
    }
    Ok(s)
}

/// Which of `notes` are linked to `tag` in the client: the tag's note list, and for notes in
/// the trash (which that list leaves out) the note's own tags.
async fn linked(
    api: &DataApi,
    tag: &str,
    notes: &[String],
    trashed: &HashSet<String>,
) -> Result<HashSet<String>> {
    let mut have = ids(&api
        .list_all(&format!("/tags/{tag}/notes"), &[("fields", "id")])
        .await?);
    let hidden: Vec<&String> = notes
        .iter()
        .filter(|n| trashed.contains(*n) && !have.contains(*n))
        .collect();
    for note in hidden {
        let tags = ids(&api
            .list_all(&format!("/notes/{note}/tags"), &[("fields", "id")])
            .await?);
        if tags.contains(tag) {
            have.insert(note.clone());
        }
    }
    Ok(have)
}

/// Check every wanted note-tag link and add again the ones that vanished. Joplin removes the
/// links of deleted notes after answering the DELETE, so right after a `client wipe` it can still
/// be removing old links of the same note ids while the import re-creates them (seen under load).
async fn relink_missing(
    api: &DataApi,
    wanted: &BTreeMap<String, Vec<String>>,
    trashed: &HashSet<String>,
) -> Result<()> {
    for round in 1..=4u64 {
        let mut missing = Vec::new();
        for (tag, notes) in wanted {
            let path = format!("/tags/{tag}/notes");
            let have = linked(api, tag, notes, trashed).await?;
            missing.extend(
                notes
                    .iter()
                    .filter(|n| !have.contains(*n))
                    .map(|n| (path.clone(), n.clone())),
            );
        }
        if missing.is_empty() {
            return Ok(());
        }
        tracing::info!(
            "{} note-tag link(s) vanished after the import (Joplin still cleaning up a wipe?); \
             adding them again",
            missing.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(300 * round)).await;
        for (path, note) in missing {
            api.post(&path, json!({"id": note})).await?;
        }
    }
    anyhow::bail!(
        "note-tag links keep vanishing from the client after the import: run `client import` \
         again once Joplin is idle"
    )
}

/// The note fields a rerun reads from Joplin to tell a note an earlier run left unfinished.
const NOTE_LISTED: &str =
    "id,body,deleted_time,user_updated_time,todo_due,todo_completed,author,source_url";

/// Whether Joplin's copy `have` of note `n` lacks what the note's `PUT` sets (an earlier run
/// stopped or failed between `POST` and `PUT`): an empty body where the backup has one, or,
/// while nobody edited the note since (its `user_updated_time` is still the backup's), a field
/// only the `PUT` sets (a to-do's due date and completion, the author, the source URL).
fn unfinished(have: &Value, n: &Loaded) -> bool {
    let body = have["body"].as_str().unwrap_or("");
    if body.is_empty() && !n.item.body.is_empty() {
        return true;
    }
    let untouched = prop_json(&n.item, "user_updated_time")
        .is_some_and(|t| t.as_i64() == have["user_updated_time"].as_i64());
    untouched
        && ["todo_due", "todo_completed", "author", "source_url"]
            .iter()
            .any(|k| match prop_json(&n.item, k) {
                Some(Value::Number(want)) => want.as_i64() != have[*k].as_i64(),
                Some(Value::String(want)) => want != have[*k].as_str().unwrap_or(""),
                _ => false,
            })
}

/// Set a note's body (verbatim: `PUT` does no media processing) and other fields.
async fn put_note(api: &DataApi, n: &Loaded) -> Result<()> {
    let mut update = props(&n.item, NOTE_UPDATE);
    update.insert("title".into(), json!(n.item.title_or_empty()));
    update.insert("body".into(), json!(n.item.body));
    api.put(&format!("/notes/{}", n.id()), Value::Object(update))
        .await?;
    Ok(())
}

#[derive(Debug, Default)]
pub struct WipeSummary {
    pub deleted: Counts,
}

/// What a wipe would delete (trash and conflicts included).
pub async fn inventory(api: &DataApi) -> Result<(Vec<Value>, Vec<Value>, Vec<Value>, Vec<Value>)> {
    let notes = api
        .list_all(
            "/notes",
            &[
                ("include_deleted", "1"),
                ("include_conflicts", "1"),
                ("fields", "id,deleted_time"),
            ],
        )
        .await?;
    let folders = api
        .list_all(
            "/search",
            &[
                ("query", "*"),
                ("type", "folder"),
                ("fields", "id,parent_id"),
            ],
        )
        .await?;
    let tags = api.list_all("/tags", &[("fields", "id")]).await?;
    let resources = api.list_all("/resources", &[("fields", "id")]).await?;
    Ok((notes, folders, tags, resources))
}

/// Permanently delete every note, notebook, tag and resource (trash included).
pub async fn wipe(api: &DataApi) -> Result<WipeSummary> {
    let (notes, folders, tags, resources) = inventory(api).await?;
    let transfers = api.transfers;
    let mut s = WipeSummary::default();
    let mut failures = Vec::new();
    let del = |path: String| async move { api.delete(&path, &[("permanent", "1")]).await };
    // Unlink tags first: Joplin keeps note_tags rows of deleted notes and tags, and they would
    // come back to life when notes with the same ids are imported again. Links of trashed notes
    // are not listed by the API, so they are removed by name.
    let trashed: Vec<String> = notes
        .iter()
        .filter(|n| n["deleted_time"].as_i64().unwrap_or(0) != 0)
        .filter_map(|n| n["id"].as_str().map(str::to_string))
        .collect();
    let mut unlinks = Vec::new();
    let mut blind = Vec::new();
    for tag in ids(&tags) {
        let path = format!("/tags/{tag}/notes");
        let linked = api.list_all(&path, &[("fields", "id")]).await?;
        unlinks.extend(ids(&linked).into_iter().map(|n| format!("{path}/{n}")));
        if tags.len().saturating_mul(trashed.len()) <= 20_000 {
            blind.extend(trashed.iter().map(|n| format!("{path}/{n}")));
        }
    }
    let (ok, e) = run_all(unlinks, transfers, del).await;
    s.deleted.note_tags = ok;
    failures.extend(e);
    let (_, e) = run_all(blind, transfers, del).await;
    failures.extend(e);
    let (ok, e) = run_all(
        ids(&notes)
            .into_iter()
            .map(|id| format!("/notes/{id}"))
            .collect(),
        transfers,
        del,
    )
    .await;
    s.deleted.notes = ok;
    failures.extend(e);
    // Deepest notebooks first, one level at a time (deleting a parent deletes its children).
    let parents: HashMap<String, String> = folders
        .iter()
        .filter_map(|f| {
            Some((
                f["id"].as_str()?.to_string(),
                f["parent_id"].as_str().unwrap_or("").to_string(),
            ))
        })
        .collect();
    for (_, level) in levels(&parents).into_iter().rev() {
        let (ok, e) = run_all(
            level
                .into_iter()
                .map(|id| format!("/folders/{id}"))
                .collect(),
            transfers,
            del,
        )
        .await;
        s.deleted.folders += ok;
        failures.extend(e);
    }
    let (ok, e) = run_all(
        ids(&tags)
            .into_iter()
            .map(|id| format!("/tags/{id}"))
            .collect(),
        transfers,
        del,
    )
    .await;
    s.deleted.tags = ok;
    failures.extend(e);
    let (ok, e) = run_all(
        ids(&resources)
            .into_iter()
            .map(|id| format!("/resources/{id}"))
            .collect(),
        transfers,
        del,
    )
    .await;
    s.deleted.resources = ok;
    failures.extend(e);
    if !failures.is_empty() {
        bail!(
            "{} deletion(s) failed on {} (run `client wipe` again to retry):\n  {}",
            failures.len(),
            api.describe(),
            failures.join("\n  ")
        );
    }
    let (n, f, t, r) = inventory(api).await?;
    if !(n.is_empty() && f.is_empty() && t.is_empty() && r.is_empty()) {
        bail!(
            "after the wipe {} still holds {} note(s), {} notebook(s), {} tag(s), {} resource(s): \
             was something added meanwhile? Run `client wipe` again.",
            api.describe(),
            n.len(),
            f.len(),
            t.len(),
            r.len()
        );
    }
    Ok(s)
}
