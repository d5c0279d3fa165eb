//! Validation of a whole backup before anything is written.
//!
//! Every problem names the entry, the item and its title. Each class can be overridden on the
//! command line (`--allow CLASS`); an allowed problem item is then left out of the restore (and
//! left alone on the target) or, where that loses nothing, restored as it is.

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::backup::Backup;
use crate::item::{is_item_id, parse_time, ItemType};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum ProblemClass {
    /// An item file that does not parse.
    UnreadableItem,
    /// An id that is not 32 lowercase hex digits, or that differs from the file name.
    BadId,
    /// The same id twice.
    DuplicateId,
    /// A `type_` a JEX never holds.
    UnknownType,
    /// A date field that is not a Joplin date.
    BadDate,
    /// A note or notebook whose parent notebook is not in the backup.
    MissingParent,
    /// A resource whose blob is not in the backup.
    MissingBlob,
    /// A resource whose blob size differs from its `size` field.
    BlobSizeMismatch,
    /// A note-tag link to a note or tag that is not in the backup.
    OrphanNoteTag,
    /// The backup holds no items at all.
    Empty,
}

impl ProblemClass {
    pub fn flag(self) -> &'static str {
        match self {
            ProblemClass::UnreadableItem => "unreadable-item",
            ProblemClass::BadId => "bad-id",
            ProblemClass::DuplicateId => "duplicate-id",
            ProblemClass::UnknownType => "unknown-type",
            ProblemClass::BadDate => "bad-date",
            ProblemClass::MissingParent => "missing-parent",
            ProblemClass::MissingBlob => "missing-blob",
            ProblemClass::BlobSizeMismatch => "blob-size-mismatch",
            ProblemClass::OrphanNoteTag => "orphan-note-tag",
            ProblemClass::Empty => "empty",
        }
    }

    /// What happens to the item when the user allows this class.
    fn when_allowed(self) -> Disposition {
        match self {
            ProblemClass::MissingParent
            | ProblemClass::BlobSizeMismatch
            | ProblemClass::BadDate
            | ProblemClass::Empty => Disposition::RestoreAsIs,
            _ => Disposition::Skip,
        }
    }
}

impl fmt::Display for ProblemClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.flag())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disposition {
    Skip,
    RestoreAsIs,
}

#[derive(Debug, Clone)]
pub struct Problem {
    pub class: ProblemClass,
    /// Entry in the archive.
    pub entry: String,
    pub id: String,
    pub title: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.class, self.entry)?;
        if !self.title.is_empty() {
            write!(f, " ({:?})", self.title)?;
        }
        write!(f, ": {}", self.message)
    }
}

#[derive(Debug, Default)]
pub struct Validation {
    pub problems: Vec<Problem>,
    /// Ids that the restore leaves out because of an allowed problem.
    pub skipped_ids: HashSet<String>,
    /// Entries left out (unparsable ones have no id).
    pub skipped_entries: HashSet<String>,
}

impl Validation {
    /// Problems whose class the user did not allow.
    pub fn blocking<'a>(&'a self, allowed: &'a [ProblemClass]) -> Vec<&'a Problem> {
        self.problems
            .iter()
            .filter(|p| !allowed.contains(&p.class))
            .collect()
    }

    /// A multi-line message listing blocking problems and how to proceed.
    pub fn refusal(&self, allowed: &[ProblemClass]) -> Option<String> {
        let blocking = self.blocking(allowed);
        if blocking.is_empty() {
            return None;
        }
        let mut classes: Vec<ProblemClass> = blocking.iter().map(|p| p.class).collect();
        classes.sort();
        classes.dedup();
        let mut msg = format!(
            "the backup has {} problem(s); nothing was written:\n",
            blocking.len()
        );
        for p in blocking.iter().take(50) {
            msg.push_str(&format!("  {p}\n"));
        }
        if blocking.len() > 50 {
            msg.push_str(&format!("  … and {} more\n", blocking.len() - 50));
        }
        msg.push_str("Use an intact backup, or accept these problems explicitly with ");
        msg.push_str(
            &classes
                .iter()
                .map(|c| format!("--allow {c}"))
                .collect::<Vec<_>>()
                .join(" "),
        );
        msg.push_str(" (see `joplin-restore restore --help` for what each one does).");
        Some(msg)
    }
}

pub fn validate(backup: &Backup) -> Validation {
    let mut v = Validation::default();
    let push = |v: &mut Validation, class, entry: &str, id: &str, title: &str, message| {
        v.problems.push(Problem {
            class,
            entry: entry.to_string(),
            id: id.to_string(),
            title: title.to_string(),
            message,
        });
    };

    for u in &backup.unreadable {
        push(
            &mut v,
            ProblemClass::UnreadableItem,
            &u.entry,
            "",
            "",
            format!("cannot parse the item: {}", u.error),
        );
    }
    if backup.items.is_empty() {
        push(
            &mut v,
            ProblemClass::Empty,
            &backup.source.display().to_string(),
            "",
            "",
            "the backup holds no items".into(),
        );
    }

    // Id → index of the first item with it.
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut by_type: HashMap<ItemType, HashSet<&str>> = HashMap::new();
    for (index, bi) in backup.items.iter().enumerate() {
        let entry = bi.entry();
        let it = match backup.item(bi) {
            Ok(it) => it,
            Err(e) => {
                push(
                    &mut v,
                    ProblemClass::UnreadableItem,
                    &entry,
                    bi.id(),
                    "",
                    format!("{e:#}"),
                );
                continue;
            }
        };
        let id = bi.id();
        let title = it.title_or_empty();
        let file_id = entry.trim_end_matches(".md");
        if !is_item_id(id) {
            push(
                &mut v,
                ProblemClass::BadId,
                &entry,
                id,
                title,
                format!("id {id:?} is not 32 lowercase hex digits"),
            );
            continue;
        }
        if id != file_id {
            push(
                &mut v,
                ProblemClass::BadId,
                &entry,
                id,
                title,
                format!("the item's id {id} differs from its file name"),
            );
            continue;
        }
        match seen.entry(id) {
            std::collections::hash_map::Entry::Occupied(first) => {
                push(
                    &mut v,
                    ProblemClass::DuplicateId,
                    &entry,
                    id,
                    title,
                    format!(
                        "id {id} is also used by {}",
                        backup.items[*first.get()].entry()
                    ),
                );
                continue;
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(index);
            }
        }
        let ty = it.item_type();
        if !ty.is_restorable() {
            push(
                &mut v,
                ProblemClass::UnknownType,
                &entry,
                id,
                title,
                format!(
                    "type_ {} is not a note, notebook, resource, tag or note-tag link",
                    ty.code()
                ),
            );
            continue;
        }
        for key in [
            "created_time",
            "updated_time",
            "user_created_time",
            "user_updated_time",
        ] {
            if let Some(val) = it.get(key) {
                if !val.is_empty() && parse_time(val).is_none() {
                    push(
                        &mut v,
                        ProblemClass::BadDate,
                        &entry,
                        id,
                        title,
                        format!("{key} {val:?} is not a date like 2024-01-31T12:00:00.000Z"),
                    );
                }
            }
        }
        by_type.entry(ty).or_default().insert(id);
    }

    let empty = HashSet::new();
    let folders = by_type.get(&ItemType::Folder).unwrap_or(&empty);
    let notes = by_type.get(&ItemType::Note).unwrap_or(&empty);
    let tags = by_type.get(&ItemType::Tag).unwrap_or(&empty);
    let mut extra = Vec::new();
    for (index, bi) in backup.items.iter().enumerate() {
        let id = bi.id();
        if seen.get(id) != Some(&index) {
            continue; // already reported
        }
        // Only resources and note-tag links need more than the index holds: notes, the bulk
        // of a backup, are not read a second time.
        let item = || backup.item(bi).ok(); // unreadable: reported above
        match bi.item_type() {
            ItemType::Note | ItemType::Folder => {
                let parent = bi.parent_id();
                let needs_parent = bi.item_type() == ItemType::Note || !parent.is_empty();
                if needs_parent && !folders.contains(parent) {
                    extra.push((
                        ProblemClass::MissingParent,
                        bi,
                        format!(
                            "its parent notebook {:?} is not in the backup",
                            if parent.is_empty() { "(none)" } else { parent }
                        ),
                    ));
                }
            }
            ItemType::Resource => match backup.blob_size(id) {
                None => extra.push((
                    ProblemClass::MissingBlob,
                    bi,
                    format!("no blob resources/{id}.* in the backup"),
                )),
                Some(actual) => {
                    let Some(it) = item() else { continue };
                    if let Some(declared) = it.get("size").and_then(|s| s.parse::<i64>().ok()) {
                        if declared >= 0 && declared as u64 != actual {
                            extra.push((
                                ProblemClass::BlobSizeMismatch,
                                bi,
                                format!("size says {declared} bytes, the blob has {actual}"),
                            ));
                        }
                    }
                }
            },
            ItemType::NoteTag => {
                let Some(it) = item() else { continue };
                let note = it.get("note_id").unwrap_or("");
                let tag = it.get("tag_id").unwrap_or("");
                if !notes.contains(note) {
                    extra.push((
                        ProblemClass::OrphanNoteTag,
                        bi,
                        format!("links note {note:?}, which is not in the backup"),
                    ));
                } else if !tags.contains(tag) {
                    extra.push((
                        ProblemClass::OrphanNoteTag,
                        bi,
                        format!("links tag {tag:?}, which is not in the backup"),
                    ));
                }
            }
            _ => {}
        }
    }
    for (class, bi, message) in extra {
        push(
            &mut v,
            class,
            &bi.entry(),
            bi.id(),
            &backup.title(bi),
            message,
        );
    }

    // What an allowed problem does to its item.
    let skips: Vec<(String, String)> = v
        .problems
        .iter()
        .filter(|p| p.class.when_allowed() == Disposition::Skip)
        // A duplicate skips only its second entry: the first one is restored.
        .map(|p| {
            let id = if p.class == ProblemClass::DuplicateId {
                String::new()
            } else {
                p.id.clone()
            };
            (p.entry.clone(), id)
        })
        .collect();
    for (entry, id) in skips {
        v.skipped_entries.insert(entry);
        if !id.is_empty() {
            v.skipped_ids.insert(id);
        }
    }
    v
}
