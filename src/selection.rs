//! `--only`: pick notebooks (with sub-notebooks), notes or tags from a backup, plus everything
//! they need — parent notebooks, linked attachments, tags and note-tag links.

use std::collections::{HashMap, HashSet};

use anyhow::Result;
use regex::Regex;

use crate::backup::Backup;
use crate::item::{is_item_id, Item, ItemType};

/// One `--only` value: `notebook:Work/Projects` (or a unique notebook title), `note:<id or
/// title>`, `tag:<title>`, or a bare value tried as an id, a notebook path or title, a note
/// title, then a tag title.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Notebook(String),
    Note(String),
    Tag(String),
    Any(String),
}

impl std::str::FromStr for Selector {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, value) = match s.split_once(':') {
            Some((k @ ("notebook" | "note" | "tag"), v)) => (k, v),
            _ => ("", s),
        };
        if value.trim().is_empty() {
            return Err(format!("--only {s:?}: nothing to select"));
        }
        let v = value.to_string();
        Ok(match kind {
            "notebook" => Selector::Notebook(v),
            "note" => Selector::Note(v),
            "tag" => Selector::Tag(v),
            _ => Selector::Any(v),
        })
    }
}

/// As the user wrote it (`note:Title`), for messages.
impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Selector::Notebook(v) => write!(f, "notebook:{v}"),
            Selector::Note(v) => write!(f, "note:{v}"),
            Selector::Tag(v) => write!(f, "tag:{v}"),
            Selector::Any(v) => f.write_str(v),
        }
    }
}

struct Index<'a> {
    kind: HashMap<&'a str, ItemType>,
    title: HashMap<&'a str, &'a str>,
    parent: HashMap<&'a str, &'a str>,
    children: HashMap<&'a str, Vec<&'a str>>,
    notes_in: HashMap<&'a str, Vec<&'a str>>,
    /// note id → (note_tag id, tag id)
    links_of_note: HashMap<&'a str, Vec<(&'a str, &'a str)>>,
    notes_of_tag: HashMap<&'a str, Vec<&'a str>>,
    body: HashMap<&'a str, &'a str>,
}

fn index(items: &[Item]) -> Index<'_> {
    let mut ix = Index {
        kind: HashMap::new(),
        title: HashMap::new(),
        parent: HashMap::new(),
        children: HashMap::new(),
        notes_in: HashMap::new(),
        links_of_note: HashMap::new(),
        notes_of_tag: HashMap::new(),
        body: HashMap::new(),
    };
    for it in items {
        let id = it.id();
        ix.kind.insert(id, it.item_type());
        ix.title.insert(id, it.title_or_empty());
        match it.item_type() {
            ItemType::Folder => {
                ix.parent.insert(id, it.parent_id());
                ix.children.entry(it.parent_id()).or_default().push(id);
            }
            ItemType::Note => {
                ix.parent.insert(id, it.parent_id());
                ix.notes_in.entry(it.parent_id()).or_default().push(id);
                ix.body.insert(id, it.body.as_str());
            }
            ItemType::NoteTag => {
                let note = it.get("note_id").unwrap_or("");
                let tag = it.get("tag_id").unwrap_or("");
                ix.links_of_note.entry(note).or_default().push((id, tag));
                ix.notes_of_tag.entry(tag).or_default().push(note);
            }
            _ => {}
        }
    }
    ix
}

fn of_kind<'a>(ix: &Index<'a>, kind: ItemType, title: &str) -> Vec<&'a str> {
    ix.kind
        .iter()
        .filter(|(id, k)| {
            **k == kind
                && ix.title.get(*id).is_some_and(|t| {
                    // Joplin's tags are case-insensitive ("Urgent" and "urgent" are one tag).
                    *t == title
                        || (kind == ItemType::Tag && t.to_lowercase() == title.to_lowercase())
                })
        })
        .map(|(id, _)| *id)
        .collect()
}

fn notebooks_by_path<'a>(ix: &Index<'a>, path: &str) -> Vec<&'a str> {
    let mut level: Vec<&str> = vec![""];
    for part in path.split('/').filter(|p| !p.is_empty()) {
        level = level
            .iter()
            .flat_map(|p| ix.children.get(p).cloned().unwrap_or_default())
            .filter(|c| ix.title.get(c) == Some(&part))
            .collect();
    }
    if level == [""] {
        vec![]
    } else {
        level
    }
}

/// The notebooks a `notebook:` value or a bare value names: by id, by path from the top, else
/// by title at any level; one notebook (two "Journal"s need their paths, two at one path their
/// ids: with `--overwrite`, both would be replaced).
fn notebooks_named<'a>(ix: &Index<'a>, sel: &Selector, value: &str) -> Result<Vec<&'a str>> {
    if let Some((id, ItemType::Folder)) = ix.kind.get_key_value(value) {
        return Ok(vec![id]);
    }
    let by_path = notebooks_by_path(ix, value);
    if by_path.len() > 1 {
        refuse_one_path(sel, by_path.clone())?;
    }
    if !by_path.is_empty() {
        // "A/B" is also the title of another notebook: which one is meant only its id says.
        let titled = of_kind(ix, ItemType::Folder, value);
        if value.contains('/') && titled.iter().any(|t| !by_path.contains(t)) {
            refuse_one_path(sel, by_path.iter().copied().chain(titled).collect())?;
        }
        return Ok(by_path);
    }
    // A title may hold '/' itself ("Q1/Q2 plans"): not a path then.
    let by_title = of_kind(ix, ItemType::Folder, value);
    if by_title.len() > 1 {
        let mut paths: Vec<String> = by_title.iter().map(|id| notebook_path(ix, id)).collect();
        paths.sort();
        paths.dedup();
        if paths.len() == 1 {
            refuse_one_path(sel, by_title)?;
        }
        crate::usage_error!(
            "--only {sel} matches {} notebooks: {}. Give the one you mean by its path, e.g. \
             --only \"notebook:{}\".",
            paths.len(),
            paths.join(", "),
            paths[0]
        );
    }
    Ok(by_title)
}

/// Several notebooks at one path: only their ids tell them apart.
fn refuse_one_path(sel: &Selector, mut ids: Vec<&str>) -> Result<()> {
    ids.sort();
    crate::usage_error!(
        "--only {sel} matches {} notebooks at one path: {}. Give the one you mean by its id, \
         e.g. --only notebook:{}.",
        ids.len(),
        ids.join(", "),
        ids[0]
    );
}

/// The notes a `note:` title names: exactly one, or the refusal that lists them (with
/// `--overwrite`, picking every note of that title would overwrite notes the user did not mean).
fn note_titled<'a>(ix: &Index<'a>, sel: &Selector, title: &str) -> Result<Vec<&'a str>> {
    let mut found = of_kind(ix, ItemType::Note, title);
    if found.len() > 1 {
        found.sort_by_key(|id| (ix.parent.get(id).map(|p| notebook_path(ix, p)), *id));
        let listed: Vec<String> = found
            .iter()
            .map(|id| {
                let at = ix.parent.get(id).map(|p| notebook_path(ix, p));
                format!("{id} (in {})", at.unwrap_or_default())
            })
            .collect();
        crate::usage_error!(
            "--only {sel} matches {} notes: {}. Give the one you mean by its id, e.g. \
             --only note:{}; or give each.",
            found.len(),
            listed.join(", "),
            found[0]
        );
    }
    Ok(found)
}

/// A notebook's path from the top (`Personal/Journal`); bounded against parent loops.
fn notebook_path(ix: &Index, id: &str) -> String {
    let mut parts = vec![ix.title.get(id).copied().unwrap_or("")];
    let mut at = id;
    for _ in 0..100 {
        match ix.parent.get(at) {
            Some(p) if !p.is_empty() && ix.kind.get(p) == Some(&ItemType::Folder) => {
                parts.push(ix.title.get(p).copied().unwrap_or(""));
                at = p;
            }
            _ => break,
        }
    }
    parts.reverse();
    parts.join("/")
}

/// What `--only` picked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// The ids a partial restore writes (before [`crate::merge`] leaves out what the target
    /// keeps).
    pub ids: HashSet<String>,
    /// Tags the user named (`tag:TITLE`, or a bare value that was a tag): their links go back
    /// on notes the target keeps too. A tag that only came with a note does not.
    pub named_tags: HashSet<String>,
}

/// Resolve selectors to the ids a partial restore writes.
pub fn resolve(backup: &Backup, selectors: &[Selector]) -> Result<Selection> {
    // Titles and bodies of every item, for the time of the lookup.
    let items: Vec<Item> = backup
        .items
        .iter()
        .map(|bi| backup.item(bi))
        .collect::<Result<_>>()?;
    let ix = index(&items);
    let mut folders: Vec<&str> = Vec::new();
    let mut notes: Vec<&str> = Vec::new();
    let mut tags: Vec<&str> = Vec::new();
    for sel in selectors {
        let before = folders.len() + notes.len() + tags.len();
        match sel {
            Selector::Notebook(p) => folders.extend(notebooks_named(&ix, sel, p)?),
            Selector::Note(v) => {
                if is_item_id(v) && ix.kind.get(v.as_str()) == Some(&ItemType::Note) {
                    notes.push(ix.kind.get_key_value(v.as_str()).unwrap().0);
                } else {
                    notes.extend(note_titled(&ix, sel, v)?);
                }
            }
            Selector::Tag(t) => tags.extend(of_kind(&ix, ItemType::Tag, t)),
            Selector::Any(v) => {
                if let Some((id, kind)) = ix.kind.get_key_value(v.as_str()) {
                    match kind {
                        ItemType::Folder => folders.push(id),
                        ItemType::Note => notes.push(id),
                        ItemType::Tag => tags.push(id),
                        _ => {}
                    }
                } else {
                    let f = notebooks_named(&ix, sel, v)?;
                    if !f.is_empty() {
                        folders.extend(f);
                    } else {
                        let n = note_titled(&ix, sel, v)?;
                        if !n.is_empty() {
                            notes.extend(n);
                        } else {
                            tags.extend(of_kind(&ix, ItemType::Tag, v));
                        }
                    }
                }
            }
        }
        if folders.len() + notes.len() + tags.len() == before {
            crate::usage_error!(
                "--only {sel} matches nothing in the backup. Run `joplin-restore inspect BACKUP` \
                 to see its notebooks; use notebook:PATH/TO/NOTEBOOK, note:ID-OR-TITLE or tag:TITLE."
            );
        }
    }

    let mut out: HashSet<String> = HashSet::new();
    // Notebooks with every sub-notebook and their notes.
    let mut stack: Vec<&str> = folders.clone();
    let mut seen = HashSet::new();
    while let Some(f) = stack.pop() {
        if !seen.insert(f) || seen.len() > 100_000 {
            continue;
        }
        out.insert(f.to_string());
        stack.extend(ix.children.get(f).cloned().unwrap_or_default());
        notes.extend(ix.notes_in.get(f).cloned().unwrap_or_default());
    }
    for t in &tags {
        notes.extend(ix.notes_of_tag.get(t).cloned().unwrap_or_default());
    }
    let link = Regex::new(r":/([0-9a-fA-F]{32})").expect("valid regex");
    for n in &notes {
        if ix.kind.get(n) != Some(&ItemType::Note) {
            continue;
        }
        out.insert(n.to_string());
        for (nt, tag) in ix.links_of_note.get(n).cloned().unwrap_or_default() {
            if ix.kind.contains_key(tag) {
                out.insert(nt.to_string());
                out.insert(tag.to_string());
            }
        }
        for c in link.captures_iter(ix.body.get(n).copied().unwrap_or("")) {
            let id = c[1].to_ascii_lowercase();
            if ix.kind.get(id.as_str()) == Some(&ItemType::Resource) {
                out.insert(id);
            }
        }
    }
    // Parent notebooks up to the root, so nothing lands orphaned.
    let starts: Vec<String> = out.iter().cloned().collect();
    for id in starts {
        let mut cur = ix.parent.get(id.as_str()).copied();
        let mut hops = 0;
        while let Some(p) = cur.filter(|p| !p.is_empty() && hops < 64) {
            out.insert(p.to_string());
            cur = ix.parent.get(p).copied();
            hops += 1;
        }
    }
    Ok(Selection {
        ids: out,
        named_tags: tags.iter().map(|t| t.to_string()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn sample() -> Backup {
        Backup::open(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sample.jex")).unwrap()
    }

    #[test]
    fn a_notebook_brings_sub_notebooks_notes_parents_resources_and_tags() {
        let b = sample();
        let sel = resolve(&b, &["notebook:Personal/Projects".parse().unwrap()]).unwrap();
        let ids = &sel.ids;
        // Projects, Alpha, Specs + parent Personal; notes Roadmap, Overview, Wire format; the
        // "work" tag and its link.
        for id in [
            "0318ad5af63c4f109df1974eca82715a",
            "13a4946dbdfd4e6da092338544754f29",
            "1a3558223d884174b40dcb0cdfb8bfa3",
            "c92807ad73ea40938d12cd5a105b5efe",
            "7cf9bead95744245a9011f01c8222d5a",
            "2ebc0432f27d42fdb982a925c8734636",
            "baebcb3f78be4455a7c769acc9d95fdc",
            "b3ef053da1bb4864b6e51293d9730359",
            "392ebac8e2c84f1dada91adf852e2069",
        ] {
            assert!(ids.contains(id), "missing {id}");
        }
        assert!(
            !ids.contains("33891a5cf6a84c18ab0b4de1404c88b2"),
            "Journal is not selected"
        );
    }

    #[test]
    fn a_note_brings_its_attachments_and_tags() {
        let b = sample();
        let sel = resolve(&b, &["note:Attachments".parse().unwrap()]).unwrap();
        assert!(sel.named_tags.is_empty(), "a note names no tag");
        let ids = &sel.ids;
        for id in [
            "0006b457342a4b078515990fa709441b",
            "8c9f67d46dce4ef0af0f5826f53330a6",
            "57802a35e45342b38b20b51a9d7004c0",
            "e2a1fd3d4baf4fda81d162843a25cf29",
            "7241f91bc84849938247fa679a076b7b",
            "33891a5cf6a84c18ab0b4de1404c88b2",
            "c92807ad73ea40938d12cd5a105b5efe",
        ] {
            assert!(ids.contains(id), "missing {id}");
        }
    }

    #[test]
    fn unmatched_selector_is_a_clear_error() {
        let b = sample();
        let e = resolve(&b, &["notebook:Nope".parse().unwrap()]).unwrap_err();
        assert_eq!(
            crate::exit::code_for(&e),
            crate::exit::USAGE,
            "a usage error"
        );
        assert!(
            e.to_string()
                .starts_with("--only notebook:Nope matches nothing"),
            "{e}"
        );
    }

    /// Joplin's tags are case-insensitive; note and notebook titles are not.
    #[test]
    fn tags_match_whatever_the_case() {
        let b = sample();
        let upper = resolve(&b, &["tag:URGENT".parse().unwrap()]).unwrap();
        let lower = resolve(&b, &["tag:urgent".parse().unwrap()]).unwrap();
        assert!(upper.ids.contains("7241f91bc84849938247fa679a076b7b"));
        assert!(upper
            .named_tags
            .contains("7241f91bc84849938247fa679a076b7b"));
        assert_eq!(upper, lower);
        assert!(resolve(&b, &["note:ATTACHMENTS".parse().unwrap()]).is_err());
    }

    /// A bare or `notebook:` title finds a notebook at any level when it is the only one of
    /// that title; two of them need the path, and the error lists both.
    #[test]
    fn a_notebook_title_finds_it_at_any_level_unless_ambiguous() {
        let b = sample();
        let by_title = resolve(&b, &["Journal".parse().unwrap()]).unwrap();
        let by_path = resolve(&b, &["notebook:Personal/Journal".parse().unwrap()]).unwrap();
        assert_eq!(by_title, by_path);

        let folder = |id: &str, parent: &str, title: &str| {
            Item::parse_bytes(
                format!("{title}\n\nid: {id}\nparent_id: {parent}\ntype_: 2").as_bytes(),
            )
            .unwrap()
        };
        let items = vec![
            folder("a0000000000000000000000000000001", "", "Work"),
            folder("a0000000000000000000000000000002", "", "Home"),
            folder(
                "a0000000000000000000000000000003",
                "a0000000000000000000000000000001",
                "Journal",
            ),
            folder(
                "a0000000000000000000000000000004",
                "a0000000000000000000000000000002",
                "Journal",
            ),
        ];
        let ix = index(&items);
        let sel: Selector = "Journal".parse().unwrap();
        let e = notebooks_named(&ix, &sel, "Journal")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("matches 2 notebooks: Home/Journal, Work/Journal"),
            "{e}"
        );
        assert_eq!(
            notebooks_named(&ix, &sel, "Work/Journal").unwrap(),
            vec!["a0000000000000000000000000000003"]
        );
    }

    /// Two notebooks at one path are refused with their ids; an id picks one.
    #[test]
    fn two_notebooks_at_one_path_need_an_id() {
        let items = vec![
            item("Same\n\nid: d0000000000000000000000000000001\nparent_id: \ntype_: 2".into()),
            item("Same\n\nid: d0000000000000000000000000000002\nparent_id: \ntype_: 2".into()),
            item("A/B\n\nid: d0000000000000000000000000000003\nparent_id: \ntype_: 2".into()),
            item("A/B\n\nid: d0000000000000000000000000000004\nparent_id: \ntype_: 2".into()),
        ];
        let ix = index(&items);
        for value in ["Same", "A/B"] {
            let sel: Selector = format!("notebook:{value}").parse().unwrap();
            let e = notebooks_named(&ix, &sel, value).unwrap_err().to_string();
            assert!(e.contains("matches 2 notebooks at one path"), "{e}");
        }
        let sel: Selector = "notebook:d0000000000000000000000000000002".parse().unwrap();
        assert_eq!(
            notebooks_named(&ix, &sel, "d0000000000000000000000000000002").unwrap(),
            vec!["d0000000000000000000000000000002"]
        );
    }

    fn item(text: String) -> Item {
        Item::parse_bytes(text.as_bytes()).unwrap()
    }

    /// A title with '/' in it is found by that title when no path matches it.
    #[test]
    fn a_notebook_title_holding_a_slash_is_found_by_it() {
        let items = vec![
            item(
                "Q1/Q2 plans\n\nid: b0000000000000000000000000000001\nparent_id: \ntype_: 2".into(),
            ),
            item("Q1\n\nid: b0000000000000000000000000000002\nparent_id: \ntype_: 2".into()),
        ];
        let ix = index(&items);
        let sel: Selector = "notebook:Q1/Q2 plans".parse().unwrap();
        assert_eq!(
            notebooks_named(&ix, &sel, "Q1/Q2 plans").unwrap(),
            vec!["b0000000000000000000000000000001"]
        );
        assert!(notebooks_named(&ix, &sel, "Q1/Nope").unwrap().is_empty());
        // Q1 with a sub-notebook "Q2 plans" too: the path and the title are two notebooks.
        let mut items = items;
        items.push(item(
            "Q2 plans\n\nid: b0000000000000000000000000000003\nparent_id: b0000000000000000000000000000002\ntype_: 2".into(),
        ));
        let ix = index(&items);
        let e = notebooks_named(&ix, &sel, "Q1/Q2 plans")
            .unwrap_err()
            .to_string();
        assert!(e.contains("matches 2 notebooks at one path"), "{e}");
    }

    /// Two notes of one title: `note:TITLE` is refused with both ids and notebooks listed,
    /// rather than restoring (or overwriting) both.
    #[test]
    fn a_note_title_two_notes_share_is_refused_with_their_ids() {
        let note = |id: &str, parent: &str| {
            item(format!(
                "Minutes\n\nbody\n\nid: {id}\nparent_id: {parent}\ntype_: 1"
            ))
        };
        let items = vec![
            item("Work\n\nid: c0000000000000000000000000000001\nparent_id: \ntype_: 2".into()),
            item("Home\n\nid: c0000000000000000000000000000002\nparent_id: \ntype_: 2".into()),
            note(
                "c0000000000000000000000000000003",
                "c0000000000000000000000000000001",
            ),
            note(
                "c0000000000000000000000000000004",
                "c0000000000000000000000000000002",
            ),
        ];
        let ix = index(&items);
        let sel: Selector = "note:Minutes".parse().unwrap();
        let e = note_titled(&ix, &sel, "Minutes").unwrap_err().to_string();
        assert!(
            e.contains("matches 2 notes: c0000000000000000000000000000004 (in Home), c0000000000000000000000000000003 (in Work)")
                && e.contains("--only note:c0000000000000000000000000000004"),
            "{e}"
        );
    }
}
