//! `inspect`: what a backup holds, as a notebook tree with counts.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use crate::backup::Backup;
use crate::item::ItemType;
use crate::validate::Validation;

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Counts {
    pub notebooks: usize,
    pub notes: usize,
    pub todos: usize,
    pub todos_done: usize,
    pub tags: usize,
    pub note_tags: usize,
    pub resources: usize,
    pub resource_bytes: u64,
    pub trashed: usize,
}

pub fn counts(backup: &Backup) -> Counts {
    let mut c = Counts::default();
    for bi in &backup.items {
        let Ok(it) = backup.item(bi) else {
            continue; // validation reports it
        };
        if it
            .get("deleted_time")
            .is_some_and(|d| !d.is_empty() && d != "0")
        {
            c.trashed += 1;
        }
        match it.item_type() {
            ItemType::Folder => c.notebooks += 1,
            ItemType::Note => {
                if it.get("is_todo") == Some("1") {
                    c.todos += 1;
                    if it
                        .get("todo_completed")
                        .is_some_and(|t| t != "0" && !t.is_empty())
                    {
                        c.todos_done += 1;
                    }
                } else {
                    c.notes += 1;
                }
            }
            ItemType::Tag => c.tags += 1,
            ItemType::NoteTag => c.note_tags += 1,
            ItemType::Resource => {
                c.resources += 1;
                c.resource_bytes += backup.blob_size(it.id()).unwrap_or(0);
            }
            _ => {}
        }
    }
    c
}

/// The human report: tree, counts, problems.
pub fn report(backup: &Backup, v: &Validation) -> String {
    let mut out = String::new();
    let c = counts(backup);
    let _ = writeln!(out, "Backup: {}", backup.source.display());
    out.push_str(&source_report(backup));
    let _ = writeln!(
        out,
        "  {} notebooks, {} notes, {} to-dos ({} done), {} tags ({} links), {} resources ({} bytes){}",
        c.notebooks,
        c.notes,
        c.todos,
        c.todos_done,
        c.tags,
        c.note_tags,
        c.resources,
        c.resource_bytes,
        if c.trashed > 0 { format!(", {} in the trash", c.trashed) } else { String::new() }
    );
    let total: u64 = backup.items.iter().map(|b| b.size()).sum::<u64>() + c.resource_bytes;
    let _ = writeln!(out, "  {total} bytes in all\n\nNotebooks:");
    // Notebook titles only: notebooks are few, notes are just counted.
    let titles: HashMap<&str, String> = backup
        .items
        .iter()
        .filter(|bi| bi.item_type() == ItemType::Folder)
        .map(|bi| (bi.id(), backup.title(bi)))
        .collect();
    let mut children: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    let mut notes_in: HashMap<&str, usize> = HashMap::new();
    for bi in &backup.items {
        match bi.item_type() {
            ItemType::Folder => children
                .entry(bi.parent_id())
                .or_default()
                .push((titles[bi.id()].as_str(), bi.id())),
            ItemType::Note => *notes_in.entry(bi.parent_id()).or_default() += 1,
            _ => {}
        }
    }
    for v in children.values_mut() {
        v.sort();
    }
    fn walk(
        out: &mut String,
        children: &BTreeMap<&str, Vec<(&str, &str)>>,
        notes_in: &HashMap<&str, usize>,
        parent: &str,
        depth: usize,
    ) {
        if depth > 64 {
            return;
        }
        for (title, id) in children.get(parent).map(|v| v.as_slice()).unwrap_or(&[]) {
            let _ = writeln!(
                out,
                "  {}{} ({} notes)",
                "  ".repeat(depth),
                title,
                notes_in.get(id).copied().unwrap_or(0)
            );
            walk(out, children, notes_in, id, depth + 1);
        }
    }
    walk(&mut out, &children, &notes_in, "", 0);
    if v.problems.is_empty() {
        let _ = writeln!(out, "\nValidation: no problems");
    } else {
        let _ = writeln!(out, "\nValidation: {} problem(s)", v.problems.len());
        for p in &v.problems {
            let _ = writeln!(out, "  {p}");
        }
    }
    for w in &backup.warnings {
        let _ = writeln!(out, "  warning: {w}");
    }
    out
}

/// Which set was read, from what files, and the set's `profile/` files.
fn source_report(backup: &Backup) -> String {
    let mut out = String::new();
    if !backup.sets.is_empty() {
        let _ = writeln!(out, "  {} backup set(s) in this folder:", backup.sets.len());
        for s in &backup.sets {
            let chosen = backup.set.as_ref().is_some_and(|c| c.path == s.path);
            let _ = writeln!(
                out,
                "  {} {:<32} {:<16} {:>12} bytes",
                if chosen { "*" } else { " " },
                s.name,
                s.date_label(),
                s.bytes
            );
        }
        if let Some(c) = &backup.set {
            let _ = writeln!(
                out,
                "  Reading set {} (choose another with --set NAME)",
                c.name
            );
        }
    }
    for raw in &backup.raw_exports {
        let _ = writeln!(
            out,
            "  Notes in Joplin's RAW export format: {} (read as a JEX: the same items and IDs)",
            raw.display()
        );
    }
    if backup.parts.len() > 1 {
        let _ = writeln!(
            out,
            "  {} JEX files (one per notebook):",
            backup.parts.len()
        );
        for p in &backup.parts {
            let _ = writeln!(
                out,
                "    {}",
                p.file_name().unwrap_or_default().to_string_lossy()
            );
        }
    }
    match backup.profile_files() {
        Some(pf) => {
            let _ = writeln!(out, "  profile/ ({} files):", pf.files.len());
            for (name, size) in &pf.files {
                let _ = writeln!(out, "    {name} ({size} bytes)");
            }
        }
        None => {
            let _ = writeln!(out, "  profile/: none in this backup");
        }
    }
    out
}
