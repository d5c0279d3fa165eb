//! Validation of a whole backup before anything is written.
//!
//! Every problem names the entry, the item and its title. Each class can be overridden on the
//! command line (`--allow CLASS`); an allowed problem item is then left out of the restore (and
//! left alone on the target) or, where that loses nothing, restored as it is.

use std::collections::HashSet;
use std::fmt;

use crate::backup::{Backup, IdOrder};
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
    /// A number field (`is_todo`, `todo_due`, `size`…) that is not a number: a Joplin client
    /// fails to store the item and stops syncing there.
    BadNumber,
    /// A note or notebook whose parent notebook is not in the backup.
    MissingParent,
    /// A resource whose blob is not in the backup.
    MissingBlob,
    /// A resource whose blob size differs from its `size` field.
    BlobSizeMismatch,
    /// A note-tag link to a note or tag that is not in the backup.
    OrphanNoteTag,
    /// An attachment blob whose resource item is not in the backup.
    OrphanBlob,
    /// An item encrypted in the backup (`encryption_applied: 1`): Joplin's exports of early
    /// 2018 could hold them; only the old profile's master key reads them.
    EncryptedItem,
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
            ProblemClass::BadNumber => "bad-number",
            ProblemClass::MissingParent => "missing-parent",
            ProblemClass::MissingBlob => "missing-blob",
            ProblemClass::BlobSizeMismatch => "blob-size-mismatch",
            ProblemClass::OrphanNoteTag => "orphan-note-tag",
            ProblemClass::OrphanBlob => "orphan-blob",
            ProblemClass::EncryptedItem => "encrypted-item",
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

/// Fields Joplin's database holds as numbers (INT or NUMERIC columns of notes, folders,
/// resources, tags and note-tag links). A client reads them with JavaScript's `Number()`: a
/// value that gives NaN fails the column's NOT NULL constraint and ends the client's sync.
const NUMBER_FIELDS: [&str; 17] = [
    "is_conflict",
    "latitude",
    "longitude",
    "altitude",
    "is_todo",
    "todo_due",
    "todo_completed",
    "order",
    "encryption_applied",
    "markup_language",
    "is_shared",
    "deleted_time",
    "encryption_blob_encrypted",
    "size",
    "ocr_status",
    "ocr_driver_id",
    "blob_updated_time",
];

/// Whether JavaScript's `Number(text)` gives a number (not NaN): empty (0), a decimal with an
/// optional sign, fraction and exponent, `Infinity`, or a 0x/0o/0b integer.
fn is_js_number(text: &str) -> bool {
    let t = text.trim();
    if t.is_empty() {
        return true;
    }
    for (prefix, radix) in [
        ("0x", 16),
        ("0X", 16),
        ("0o", 8),
        ("0O", 8),
        ("0b", 2),
        ("0B", 2),
    ] {
        if let Some(digits) = t.strip_prefix(prefix) {
            return !digits.is_empty() && digits.chars().all(|c| c.is_digit(radix));
        }
    }
    let unsigned = t.strip_prefix(['+', '-']).unwrap_or(t);
    if unsigned == "Infinity" {
        return true;
    }
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (unsigned, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    let mantissa_ok = !(int.is_empty() && frac.is_empty()) && digits(int) && digits(frac);
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    mantissa_ok && exponent_ok
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
    /// Later copies of a duplicated id (indexes into `Backup::items`): left out, the first copy
    /// is restored. By index, as copies in one archive can share their entry name.
    pub skipped_copies: HashSet<usize>,
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
                .map(|c| match c {
                    // Not a way to get a damaged backup through: it empties the target.
                    ProblemClass::Empty => format!(
                        "--allow {c} (only to empty the target on purpose: the restore then \
                         deletes everything on it)"
                    ),
                    _ => format!("--allow {c}"),
                })
                .collect::<Vec<_>>()
                .join(" "),
        );
        msg.push_str(" (see `joplin-restore restore --help` for what each one does).");
        Some(msg)
    }
}

pub fn validate(backup: &Backup) -> Validation {
    let mut v = Validation::default();
    let problem = |class, entry: &str, id: &str, title: &str, message| Problem {
        class,
        entry: entry.to_string(),
        id: id.to_string(),
        title: title.to_string(),
        message,
    };
    let push = |v: &mut Validation, class, entry: &str, id: &str, title: &str, message| {
        v.problems.push(problem(class, entry, id, title, message));
    };

    for u in &backup.unreadable {
        push(
            &mut v,
            ProblemClass::UnreadableItem,
            &u.entry,
            entry_id(&u.entry).unwrap_or(""),
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
            if backup.warnings.is_empty() {
                "the backup holds no items".into()
            } else {
                // Typically a JEX packed from the folder above its files (`export/<id>.md`).
                format!(
                    "the backup holds no items; {} file(s) in it are outside the JEX layout \
                     (first: {}). Was it packed from another folder?",
                    backup.warnings.len(),
                    backup.warnings[0]
                )
            },
        );
    }

    // Each item is read once: its own checks are made here and its problems held back until
    // the duplicates are known (a second copy reports only that).
    let n = backup.items.len();
    // Whether the item passed the id checks (after the duplicates: and is the first copy).
    let mut passed = vec![false; n];
    let mut held: Vec<(u32, Problem)> = Vec::new();
    for (index, bi) in backup.items.iter().enumerate() {
        let entry = bi.entry();
        let mut hold = |class, title: &str, message| {
            held.push((
                index as u32,
                problem(class, &entry, bi.id(), title, message),
            ))
        };
        let it = match backup.item(bi) {
            Ok(it) => it,
            Err(e) => {
                hold(ProblemClass::UnreadableItem, "", format!("{e:#}"));
                continue;
            }
        };
        let id = bi.id();
        let title = it.title_or_empty();
        let file_id = entry.trim_end_matches(".md");
        if !is_item_id(id) {
            hold(
                ProblemClass::BadId,
                title,
                format!("id {id:?} is not 32 lowercase hex digits"),
            );
            continue;
        }
        if id != file_id {
            hold(
                ProblemClass::BadId,
                title,
                format!("the item's id {id} differs from its file name"),
            );
            continue;
        }
        passed[index] = true;
        let ty = it.item_type();
        if !ty.is_restorable() {
            hold(
                ProblemClass::UnknownType,
                title,
                format!(
                    "type_ {} is not a note, notebook, resource, tag or note-tag link",
                    ty.code()
                ),
            );
            continue;
        }
        if crate::e2ee::is_encrypted(&it) {
            hold(
                ProblemClass::EncryptedItem,
                title,
                "the item is encrypted in the backup (an export of an end-to-end encrypted \
                 profile by a Joplin of early 2018): no client can read it without that \
                 profile's master key"
                    .into(),
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
                    hold(
                        ProblemClass::BadDate,
                        title,
                        format!("{key} {val:?} is not a date like 2024-01-31T12:00:00.000Z"),
                    );
                }
            }
        }
        for key in NUMBER_FIELDS {
            if let Some(val) = it.get(key) {
                if !is_js_number(val) {
                    hold(
                        ProblemClass::BadNumber,
                        title,
                        format!(
                            "{key} {val:?} is not a number: a Joplin client cannot store this \
                             item and stops syncing at it"
                        ),
                    );
                }
            }
        }
    }

    // The items that passed in id order (4 bytes an item, where maps of their ids took about
    // 100 on a large backup): copies of one id side by side, the first copy first.
    let id_of = |i: u32| backup.items[i as usize].id();
    let mut by_id = IdOrder::new(backup, (0..n).filter(|i| passed[*i]));
    // (later copy, first copy), in item order.
    let mut copies: Vec<(u32, u32)> = by_id
        .indexes()
        .chunk_by(|a, b| id_of(*a) == id_of(*b))
        .flat_map(|group| group[1..].iter().map(move |later| (*later, group[0])))
        .collect();
    copies.sort_unstable();
    for (later, _) in &copies {
        passed[*later as usize] = false;
    }
    by_id.retain(|i| passed[*i as usize]);
    held.retain(|(index, _)| copies.binary_search_by_key(index, |c| c.0).is_err());
    v.skipped_copies = copies.iter().map(|(later, _)| *later as usize).collect();
    for &(later, first) in &copies {
        let bi = &backup.items[later as usize];
        let first_entry = backup.items[first as usize].entry();
        let message = if first_entry == bi.entry() {
            format!("the archive holds {first_entry} twice")
        } else {
            format!("id {} is also used by {first_entry}", bi.id())
        };
        let title = backup.title(bi);
        let p = problem(
            ProblemClass::DuplicateId,
            &bi.entry(),
            bi.id(),
            &title,
            message,
        );
        held.push((later, p));
    }
    // Stable: an item's problems stay in the order found.
    held.sort_by_key(|(index, _)| *index);
    v.problems.extend(held.into_iter().map(|(_, p)| p));

    let is_a = |id: &str, ty: ItemType| {
        by_id
            .find(backup, id)
            .is_some_and(|bi| bi.item_type() == ty)
    };
    // Whether following a notebook's parents comes back to it (bounded by the notebooks'
    // count: a chain longer than that loops).
    let folders = backup
        .items
        .iter()
        .filter(|bi| bi.item_type() == ItemType::Folder)
        .count();
    let in_a_loop = |start: &str| {
        let mut at = start;
        for _ in 0..=folders {
            match by_id.find(backup, at) {
                Some(f) if f.item_type() == ItemType::Folder && !f.parent_id().is_empty() => {
                    at = f.parent_id();
                    if at == start {
                        return true;
                    }
                }
                _ => return false,
            }
        }
        // Longer than every notebook: a loop above this one.
        true
    };
    let mut extra = Vec::new();
    for (index, bi) in backup.items.iter().enumerate() {
        let id = bi.id();
        if !passed[index] {
            continue; // already reported
        }
        // Only resources and note-tag links need more than the index holds: notes, the bulk
        // of a backup, are not read a second time.
        let item = || backup.item(bi).ok(); // unreadable: reported above
        match bi.item_type() {
            ItemType::Note | ItemType::Folder => {
                let parent = bi.parent_id();
                let needs_parent = bi.item_type() == ItemType::Note || !parent.is_empty();
                if needs_parent && !is_a(parent, ItemType::Folder) {
                    extra.push((
                        ProblemClass::MissingParent,
                        bi,
                        format!(
                            "its parent notebook {:?} is not in the backup",
                            if parent.is_empty() { "(none)" } else { parent }
                        ),
                    ));
                } else if bi.item_type() == ItemType::Folder && in_a_loop(id) {
                    // Joplin shows such notebooks nowhere: no path leads to the top.
                    extra.push((
                        ProblemClass::MissingParent,
                        bi,
                        format!(
                            "its parent notebooks lead back to it ({parent:?} …), never to \
                             the top level"
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
                if !is_a(note, ItemType::Note) {
                    extra.push((
                        ProblemClass::OrphanNoteTag,
                        bi,
                        format!("links note {note:?}, which is not in the backup"),
                    ));
                } else if !is_a(tag, ItemType::Tag) {
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
    // A blob with no resource item: the item was lost from the backup (a restore would
    // delete the target's copy and leave notes linking a resource that is gone). Allowed, the
    // resource is left alone on the target.
    let mut orphans: Vec<(&String, &crate::backup::BlobLocation)> = backup
        .blobs
        .iter()
        .filter(|(id, _)| {
            is_item_id(id)
                && !is_a(id, ItemType::Resource)
                && !backup
                    .unreadable
                    .iter()
                    .any(|u| entry_id(&u.entry) == Some(id.as_str()))
                && !backup.items.iter().any(|bi| bi.id() == id.as_str())
        })
        .collect();
    orphans.sort_by_key(|(id, _)| id.as_str());
    for (id, at) in orphans {
        push(
            &mut v,
            ProblemClass::OrphanBlob,
            &at.entry,
            id,
            "",
            format!("an attachment blob whose resource item {id}.md is not in the backup"),
        );
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

    // What an allowed problem does to its item (a duplicate's later copies are skipped by
    // index above: the first copy is restored).
    let skips: Vec<(String, String, ProblemClass)> = v
        .problems
        .iter()
        .filter(|p| p.class.when_allowed() == Disposition::Skip)
        .filter(|p| p.class != ProblemClass::DuplicateId)
        .map(|p| (p.entry.clone(), p.id.clone(), p.class))
        .collect();
    for (entry, id, class) in skips {
        // An item we cannot read, or whose id is malformed, is still named by its file
        // (`<id>.md`): the target's copy under that name is left alone too, not deleted as
        // "not in the backup". Unless an intact item has that id: it is restored.
        let file_id = entry_id(&entry)
            .filter(|f| *f != id && by_id.find(backup, f).is_none())
            .map(str::to_string);
        v.skipped_entries.insert(entry);
        // A misnamed file whose id belongs to an intact item of its own (a stray copy) must
        // not take that item out with it: only the misnamed entry is left out.
        let stray_copy = class == ProblemClass::BadId && by_id.find(backup, &id).is_some();
        if !id.is_empty() && !stray_copy {
            v.skipped_ids.insert(id);
        }
        v.skipped_ids.extend(file_id);
    }
    v
}

/// The id an item's file name carries (`<id>.md`, in any folder of the archive), when it is a
/// Joplin id: what names an item that cannot be read, or whose own id is malformed.
fn entry_id(entry: &str) -> Option<&str> {
    entry
        .rsplit('/')
        .next()
        .and_then(|f| f.strip_suffix(".md"))
        .filter(|f| is_item_id(f))
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_as_javascript_reads_them() {
        for ok in [
            "",
            " ",
            "0",
            "1",
            "-1",
            "+2",
            "1.5",
            ".5",
            "5.",
            "1e3",
            "1.2E-3",
            "0x1F",
            "0b10",
            "0o17",
            "Infinity",
            "-Infinity",
            " 12 ",
            "0.00000000",
            "1795565631856",
        ] {
            assert!(super::is_js_number(ok), "{ok:?}");
        }
        for bad in [
            "maybe",
            "NaN",
            "nan",
            "inf",
            "1,5",
            "1e",
            "e3",
            ".",
            "-",
            "0x",
            "0xG",
            "1.2.3",
            "2024-01-31T12:00:00.000Z",
            "12abc",
            "--1",
            "0b2",
        ] {
            assert!(!super::is_js_number(bad), "{bad:?}");
        }
    }

    use super::*;
    use crate::backup::{BlobLocation, BlobReader, RawEntry};
    use std::path::Path;
    use std::sync::Arc;

    /// Validation reads sizes from the blob index only.
    struct NoBlobs;
    impl BlobReader for NoBlobs {
        fn read(&self, _: &BlobLocation) -> std::io::Result<Vec<u8>> {
            Err(std::io::ErrorKind::NotFound.into())
        }
        fn describe(&self) -> String {
            "test".into()
        }
    }

    /// `raw` with its id changed to `id` and the given fields set.
    fn variant(raw: &str, id: &str, fields: &[(&str, &str)]) -> String {
        raw.lines()
            .map(|line| {
                let key = line.split(": ").next().unwrap_or("");
                if key == "id" && line.starts_with("id: ") {
                    return format!("id: {id}");
                }
                match fields.iter().find(|(k, _)| *k == key) {
                    Some((k, v)) => format!("{k}: {v}"),
                    None => line.to_string(),
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Problems come in item order, one an item (an id problem, else its duplicate, else its
    /// type, else its dates), then the checks across items; a duplicate's first copy is the
    /// one kept and its other problems are not reported.
    #[test]
    fn problems_in_item_order_and_duplicates_against_the_first_copy() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sample.jex");
        let sample = Backup::open(&path).unwrap();
        let raw_of = |t: ItemType| {
            let bi = sample.items.iter().find(|b| b.item_type() == t).unwrap();
            (
                bi.entry().into_owned(),
                String::from_utf8(sample.raw(bi).unwrap()).unwrap(),
            )
        };
        let (note_entry, note) = raw_of(ItemType::Note);
        let (tag_entry, tag) = raw_of(ItemType::Tag);
        let mut entries: Vec<RawEntry> = sample
            .items
            .iter()
            .map(|bi| RawEntry {
                name: bi.entry().into_owned(),
                data: sample.raw(bi).unwrap(),
            })
            .collect();
        let mut add = |name: &str, text: String| {
            entries.push(RawEntry {
                name: name.to_string(),
                data: text.into_bytes(),
            })
        };
        let bad_date = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1";
        let odd_type = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa2";
        let orphan = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa3";
        // A second copy of the tag, and one of a note that also has a bad date.
        add(&tag_entry, tag.clone());
        add(
            &format!("{bad_date}.md"),
            variant(&note, bad_date, &[("updated_time", "yesterday")]),
        );
        add(
            &note_entry,
            variant(
                &note,
                note_entry.trim_end_matches(".md"),
                &[("updated_time", "soon")],
            ),
        );
        add(
            &format!("{odd_type}.md"),
            variant(&note, odd_type, &[("type_", "99")]),
        );
        add(
            "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.md",
            variant(&note, "cccccccccccccccccccccccccccccccc", &[]),
        );
        add(
            &format!("{orphan}.md"),
            variant(
                &note,
                orphan,
                &[("parent_id", "dddddddddddddddddddddddddddddddd")],
            ),
        );
        let mut backup = Backup::from_entries(&path, entries, Arc::new(NoBlobs));
        backup.blobs = sample.blobs.clone();

        let v = validate(&backup);
        let got: Vec<(ProblemClass, String)> = v
            .problems
            .iter()
            .map(|p| (p.class, p.entry.clone()))
            .collect();
        let want = vec![
            (ProblemClass::DuplicateId, tag_entry.clone()),
            (ProblemClass::BadDate, format!("{bad_date}.md")),
            (ProblemClass::DuplicateId, note_entry.clone()),
            (ProblemClass::UnknownType, format!("{odd_type}.md")),
            (
                ProblemClass::BadId,
                "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.md".to_string(),
            ),
            (ProblemClass::MissingParent, format!("{orphan}.md")),
        ];
        assert_eq!(got, want, "{:#?}", v.problems);
        let dup = &v.problems[2];
        assert!(
            dup.message
                .contains(&format!("the archive holds {note_entry} twice")),
            "{}",
            dup.message
        );
        assert!(!dup.title.is_empty(), "a duplicate is named by its title");
        // Skipped: the duplicates' later copies by index (not their ids, not their entry names,
        // which the first copies share), the odd type and the bad id by entry.
        assert!(v.skipped_ids.contains(odd_type));
        assert!(!v.skipped_ids.contains(tag_entry.trim_end_matches(".md")));
        assert_eq!(v.skipped_entries.len(), 2, "{:?}", v.skipped_entries);
        let n = sample.items.len();
        assert_eq!(v.skipped_copies, [n, n + 2].into());
        // The restore keeps the first copies.
        let set: Vec<usize> = crate::plan::restore_set(&backup, &v)
            .iter()
            .map(|(i, _)| *i)
            .collect();
        for entry in [&tag_entry, &note_entry] {
            let first = sample
                .items
                .iter()
                .position(|b| b.entry() == entry.as_str());
            assert!(
                set.contains(&first.unwrap()),
                "{entry}: first copy not restored"
            );
        }
        assert!(!set.contains(&n) && !set.contains(&(n + 2)));
    }

    /// Note-tag links and parents are checked against the items that passed, and only an
    /// item's first copy is checked.
    #[test]
    fn links_are_checked_against_valid_items_only() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sample.jex");
        let sample = Backup::open(&path).unwrap();
        let raw =
            |bi: &crate::backup::BackupItem| String::from_utf8(sample.raw(bi).unwrap()).unwrap();
        let link = sample
            .items
            .iter()
            .find(|b| b.item_type() == ItemType::NoteTag)
            .unwrap();
        let folder = sample
            .items
            .iter()
            .find(|b| b.item_type() == ItemType::Folder)
            .unwrap();
        let mut entries: Vec<RawEntry> = Vec::new();
        for bi in &sample.items {
            let mut text = raw(bi);
            // The notebook gets an unknown type: its notes lose their parent.
            if bi.id() == folder.id() {
                text = variant(&text, bi.id(), &[("type_", "99")]);
            }
            entries.push(RawEntry {
                name: bi.entry().into_owned(),
                data: text.into_bytes(),
            });
        }
        let mut backup = Backup::from_entries(&path, entries, Arc::new(NoBlobs));
        backup.blobs = sample.blobs.clone();
        let v = validate(&backup);
        let children = sample
            .items
            .iter()
            .filter(|b| b.parent_id() == folder.id())
            .count();
        assert!(children > 0);
        let missing_parent = v
            .problems
            .iter()
            .filter(|p| p.class == ProblemClass::MissingParent)
            .count();
        assert_eq!(missing_parent, children, "{:#?}", v.problems);
        // The sample's links are intact.
        assert!(
            !v.problems
                .iter()
                .any(|p| p.class == ProblemClass::OrphanNoteTag),
            "{:#?} (link {})",
            v.problems,
            link.id()
        );
    }
}
