//! Open whatever the user pointed at as one [`Backup`]: resolve the set (see [`super::locate`]),
//! unpack archives into a private temp folder, read every JEX of the set and merge them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

use super::archive::{extract_7z, extract_zip, sniff, temp_dir, Magic};
use super::jex::{self, JexBlobs};
use super::locate::{choose, is_per_item_7z, is_set_dir, list_sets, no_backup_in, SetInfo};
use super::password::PasswordSource;
use super::raw;
use super::{Backup, BackupItem, BlobLocation, BlobReader, Unreadable};
use crate::item::{parse_time, Item, ItemType, ParseError};
use sha2::{Digest, Sha256};

/// How to open a backup; shared by every command that takes a BACKUP.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct BackupOptions {
    /// When BACKUP is the Backup plugin's folder with several sets: the set to use, by the
    /// name `inspect` lists (default: the newest).
    #[arg(long = "set", value_name = "NAME")]
    pub set: Option<String>,
    /// File holding the password of a password-protected backup (else the env variable
    /// JOPLIN_RESTORE_BACKUP_PASSWORD, else a prompt on the terminal).
    #[arg(long, value_name = "FILE")]
    pub backup_password_file: Option<PathBuf>,
}

/// The set's `profile/` folder: Joplin settings, keymap, CSS, plugins, as the plugin copied them.
#[derive(Debug, Clone)]
pub struct ProfileFiles {
    /// Where the files are now (inside the temp folder when the set was an archive).
    pub dir: PathBuf,
    /// Paths relative to `dir` (`/`-separated) and sizes, sorted.
    pub files: Vec<(String, u64)>,
}

impl ProfileFiles {
    fn read(dir: PathBuf) -> ProfileFiles {
        fn walk(base: &Path, dir: &Path, depth: usize, out: &mut Vec<(String, u64)>) {
            let Ok(rd) = std::fs::read_dir(dir) else {
                return;
            };
            for e in rd.flatten() {
                let p = e.path();
                let Ok(t) = e.file_type() else { continue };
                if t.is_dir() && depth < 16 {
                    walk(base, &p, depth + 1, out);
                } else if t.is_file() {
                    let rel = p.strip_prefix(base).unwrap_or(&p);
                    let rel = rel
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy())
                        .collect::<Vec<_>>()
                        .join("/");
                    out.push((rel, e.metadata().map(|m| m.len()).unwrap_or(0)));
                }
            }
        }
        let mut files = Vec::new();
        walk(&dir, &dir, 0, &mut files);
        files.sort();
        ProfileFiles { dir, files }
    }

    /// The customisation files the plugin kept at the set's top level before it had a
    /// `profile/` folder (its versions before 0.4.1), if any.
    fn read_top_level(set: &Path) -> Option<ProfileFiles> {
        const OLD_NAMES: [&str; 5] = [
            "keymap-desktop.json",
            "userchrome.css",
            "userstyle.css",
            "templates",
            "plugins",
        ];
        if !OLD_NAMES.iter().any(|n| set.join(n).exists()) {
            return None;
        }
        let mut found = ProfileFiles::read(set.to_path_buf());
        found
            .files
            .retain(|(rel, _)| OLD_NAMES.contains(&rel.split('/').next().unwrap_or("")));
        Some(found)
    }
}

/// What the path resolved to.
enum Found {
    Jex(PathBuf),
    SetDir(PathBuf),
}

/// Where the open has got to; owns the temp folders until they move into the [`Backup`].
struct Opener<'a> {
    opts: &'a BackupOptions,
    passwords: PasswordSource,
    temps: Vec<TempDir>,
    /// RAW exports packed into JEX files: (the JEX, what messages call it).
    packed: Vec<(PathBuf, PathBuf)>,
    /// Archives unpacked: (the temp folder, the archive), in the order they were.
    unpacked: Vec<(PathBuf, PathBuf)>,
    sets: Vec<SetInfo>,
    chosen: Option<SetInfo>,
}

/// Archives inside archives are followed this deep (a zip of a folder of 7z files is 2).
const MAX_DEPTH: usize = 4;

impl Opener<'_> {
    fn unpack(&mut self, path: &Path, magic: Magic) -> Result<PathBuf> {
        let t = temp_dir()?;
        match magic {
            Magic::SevenZ => extract_7z(path, t.path(), &self.passwords)?,
            _ => extract_zip(path, t.path())?,
        }
        let p = t.path().to_path_buf();
        self.temps.push(t);
        self.unpacked.push((p.clone(), path.to_path_buf()));
        Ok(p)
    }

    /// Pack the RAW export in `dir` into a JEX of the temp folder; messages about its entries
    /// name `shown_as` (the folder, or the archive it came from).
    fn pack_raw(&mut self, dir: &Path, shown_as: &Path) -> Result<PathBuf> {
        let t = temp_dir()?;
        // Named as the user knows it (`notes`, `notes.7z`): set listings and warnings name
        // the file by its name.
        let name = shown_as
            .file_name()
            .unwrap_or(std::ffi::OsStr::new("notes"));
        let jex = raw::pack(dir, &t.path().join(name))?;
        self.temps.push(t);
        self.packed.push((jex.clone(), shown_as.to_path_buf()));
        Ok(jex)
    }

    /// What was unpacked (or packed) is named by what it came from (`backup.7z → all.jex`),
    /// not by a temporary folder that is gone by the time the message is read.
    fn shown(&self, text: String) -> String {
        let text = self.packed.iter().fold(text, |t, (jex, shown_as)| {
            t.replace(&jex.display().to_string(), &shown_as.display().to_string())
        });
        // Innermost first: an archive unpacked from another lies in that one's temp folder.
        self.unpacked.iter().rev().fold(text, |t, (temp, archive)| {
            let a = archive.display();
            t.replace(
                &format!("inside {a}: {}/", temp.display()),
                &format!("{a} → "),
            )
            .replace(&format!("{}/", temp.display()), &format!("{a} → "))
        })
    }

    /// [`Opener::shown`] for an error, which keeps its class (a refusal stays one).
    fn shown_error(&self, e: anyhow::Error) -> anyhow::Error {
        if self.temps.is_empty() {
            return e;
        }
        let msg = self.shown(format!("{e:#}"));
        if crate::exit::is_refusal(&e) {
            crate::exit::Refusal(msg).into()
        } else {
            anyhow::anyhow!(msg)
        }
    }

    fn resolve(&mut self, path: &Path, depth: usize) -> Result<Found> {
        if depth > MAX_DEPTH {
            bail!(
                "{}: archives nested too deep; unpack the backup yourself and pass the folder",
                path.display()
            );
        }
        let meta = std::fs::metadata(path).with_context(|| {
            format!(
                "cannot open {}: give a .jex, a backup set folder, the Backup plugin's folder, \
                 or a .7z/.zip of one",
                path.display()
            )
        })?;
        if meta.is_dir() {
            if is_sync_target(path) {
                crate::refuse!(
                    "{} is a Joplin sync target, not a backup. To make a backup of it, run \
                     `joplin-restore export --target {} OUT.jex`; to restore into it, give it \
                     as --target.",
                    path.display(),
                    path.display()
                );
            }
            // A RAW export itself (`joplin export --format raw`, or a set's `notes/`).
            if raw::is_raw_export(path) {
                return Ok(Found::Jex(self.pack_raw(path, path)?));
            }
            // A set already chosen above is read as it is (a profile folder holding its own
            // set files beside dated sets must not be chosen from again).
            if self.chosen.is_some() && is_set_dir(path) {
                return Ok(Found::SetDir(path.to_path_buf()));
            }
            let sets = list_sets(path)?;
            if sets.is_empty() && is_set_dir(path) {
                return Ok(Found::SetDir(path.to_path_buf()));
            }
            let chosen = choose(path, &sets, self.opts.set.as_deref())?.clone();
            if self.chosen.is_none() {
                self.sets = sets;
                self.chosen = Some(chosen.clone());
            }
            // The set files lying in the folder itself, next to other sets.
            if chosen.path == path {
                return Ok(Found::SetDir(path.to_path_buf()));
            }
            return self.resolve(&chosen.path, depth + 1);
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match sniff(path)? {
            // One archive of a per-item set: the set is the folder holding it.
            Magic::SevenZ if is_per_item_7z(&name) => {
                let parent = path.parent().unwrap_or(Path::new("."));
                let parent = if parent.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    parent
                };
                Ok(Found::SetDir(parent.to_path_buf()))
            }
            m @ (Magic::SevenZ | Magic::Zip) => {
                let mut dir = self.unpack(path, m)?;
                // A hand-made zip usually holds the zipped folder itself: look inside it.
                if !is_set_dir(&dir) && !raw::is_raw_export(&dir) {
                    if let Some(only) = only_subfolder(&dir) {
                        dir = only;
                    }
                }
                // Said here, by the archive's name: the temp folder it went to means nothing
                // to the user.
                if !is_set_dir(&dir) && !raw::is_raw_export(&dir) && list_sets(&dir)?.is_empty() {
                    return Err(no_backup_in(path));
                }
                self.resolve(&dir, depth + 1)
                    .with_context(|| format!("inside {}", path.display()))
            }
            Magic::Other => Ok(Found::Jex(path.to_path_buf())),
        }
    }

    /// The JEX files and the `profile/` folder of a set folder, unpacking per-item archives.
    fn set_contents(&mut self, dir: &Path) -> Result<(Vec<PathBuf>, Option<PathBuf>)> {
        let mut jexes = Vec::new();
        let mut profile = None;
        // A `notes/` export that is no RAW one (Markdown, or nothing usable).
        let mut other_notes: Option<PathBuf> = None;
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot list {}", dir.display()))?
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let n = e.file_name().to_string_lossy().into_owned();
            let p = e.path();
            let Some(t) = super::locate::followed_type(&e) else {
                continue;
            };
            if t.is_dir() {
                match n.as_str() {
                    "profile" => profile = Some(p),
                    "notes" if raw::is_raw_export(&p) => jexes.push(self.pack_raw(&p, &p)?),
                    "notes" => other_notes = Some(p),
                    _ => {}
                }
                continue;
            }
            if n.ends_with(".jex") {
                jexes.push(p);
            } else if n.ends_with(".jex.7z") {
                let out = self.unpack(&p, Magic::SevenZ)?;
                let before = jexes.len();
                for f in std::fs::read_dir(&out)?.flatten() {
                    if f.file_name().to_string_lossy().ends_with(".jex") {
                        jexes.push(f.path());
                    }
                }
                if jexes.len() == before {
                    bail!(
                        "{}: holds no .jex file; is it really the plugin's archive?",
                        p.display()
                    );
                }
            } else if n == "notes.7z" {
                // "yes" archives hold the RAW export's files without the `notes/` prefix.
                let out = self.unpack(&p, Magic::SevenZ)?;
                let notes = if raw::is_raw_export(&out) || !out.join("notes").is_dir() {
                    out
                } else {
                    out.join("notes")
                };
                if raw::is_raw_export(&notes) {
                    jexes.push(self.pack_raw(&notes, &p)?);
                } else {
                    other_notes = Some(notes);
                }
            } else if n == "profile.7z" {
                // "yes" archives hold the profile files without the `profile/` prefix.
                let out = self.unpack(&p, Magic::SevenZ)?;
                profile = Some(out);
            }
        }
        if jexes.is_empty() {
            if other_notes
                .as_deref()
                .is_some_and(|n| !raw::holds_markdown(n))
            {
                crate::refuse!(
                    "{}: its `notes/` export holds no notes (empty, unreadable or cut short; a \
                     `notes.7z` that unpacked to nothing). Use another backup set (`inspect` \
                     lists them) or an intact copy.",
                    dir.display()
                );
            }
            if other_notes.is_some() {
                crate::refuse!(
                    "{} holds a Markdown + Front Matter export (`notes/`), which keeps no IDs: \
                     it cannot be restored into a sync target (Joplin can import it as new \
                     notes). Set the Backup plugin's export format to JEX (or RAW) and make a \
                     new backup.",
                    dir.display()
                );
            }
            bail!(
                "{} holds no .jex (nor .jex.7z): not a backup set. Give a .jex file, a backup \
                 set folder, or the Backup plugin's backup folder.",
                dir.display()
            );
        }
        // `all_notebooks.jex` first, then by name: the order that decides which copy of a
        // duplicate is kept is then stable.
        jexes.sort_by_key(|p| {
            let n = p.file_name().map(|n| n.to_owned()).unwrap_or_default();
            (n != "all_notebooks.jex", n)
        });
        Ok((jexes, profile))
    }
}

/// A folder a Joplin client syncs with (`info.json` or the `.resource/` folder beside the
/// items), which a RAW export resembles.
fn is_sync_target(dir: &Path) -> bool {
    // `.sync/version.txt`, not `.sync/` alone: Resilio Sync keeps a `.sync/` folder too.
    dir.join("info.json").is_file()
        || dir.join(".resource").is_dir()
        || dir.join(".sync/version.txt").is_file()
}

/// The one entry of `dir` when that is a folder.
fn only_subfolder(dir: &Path) -> Option<PathBuf> {
    let mut rd = std::fs::read_dir(dir).ok()?;
    let first = rd.next()?.ok()?;
    if rd.next().is_some() || !first.file_type().ok()?.is_dir() {
        return None;
    }
    Some(first.path())
}

/// Blobs of a set of several JEX files: the location's `part` picks the file.
struct MultiBlobs {
    parts: Vec<JexBlobs>,
}

impl BlobReader for MultiBlobs {
    fn read(&self, loc: &BlobLocation) -> std::io::Result<Vec<u8>> {
        let part = self.parts.get(loc.part).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such JEX in the set")
        })?;
        part.read(loc)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", part.describe())))
    }
    fn file(&self, loc: &BlobLocation) -> Option<backend_core::FileSlice> {
        self.parts.get(loc.part)?.file(loc)
    }
    fn describe(&self) -> String {
        match self.parts.as_slice() {
            [one] => one.describe(),
            many => format!("the backup set ({} JEX files)", many.len()),
        }
    }
}

/// Open a backup of any layout the Backup plugin writes. See the module doc.
pub fn open(path: &Path, opts: &BackupOptions) -> Result<Backup> {
    let mut o = Opener {
        opts,
        passwords: PasswordSource::new(opts.backup_password_file.clone()),
        temps: Vec::new(),
        packed: Vec::new(),
        unpacked: Vec::new(),
        sets: Vec::new(),
        chosen: None,
    };
    open_with(&mut o, path, opts).map_err(|e| older_set_hint(o.shown_error(e), &o, path))
}

/// A damaged newest set of the plugin's folder: the next older one is the likeliest fix,
/// so the error names it (a refusal stays one; any other error becomes plain text, as it
/// ends the command with exit 1 either way).
fn older_set_hint(e: anyhow::Error, o: &Opener, path: &Path) -> anyhow::Error {
    let Some(chosen) = &o.chosen else {
        return e;
    };
    if o.opts.set.is_some() {
        return e;
    }
    let older = o
        .sets
        .iter()
        .filter(|s| s.name != chosen.name)
        .max_by_key(|s| s.date);
    let Some(older) = older else {
        return e;
    };
    let mut names: Vec<&str> = o.sets.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    names.reverse();
    let more = names.len().saturating_sub(6);
    names.truncate(6);
    let hint = format!(
        "That is the newest of the {} backup sets in {} ({}{}); an older one may be intact: \
         try --set {}.",
        o.sets.len(),
        path.display(),
        names.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        },
        older.name
    );
    if crate::exit::is_refusal(&e) {
        crate::exit::Refusal(format!("{e:#}\n{hint}")).into()
    } else {
        // The hint follows the error it is about.
        anyhow::anyhow!("{e:#}\n{hint}")
    }
}

fn open_with(o: &mut Opener, path: &Path, opts: &BackupOptions) -> Result<Backup> {
    let found = o.resolve(path, 0)?;
    if let (Some(s), None) = (&opts.set, &o.chosen) {
        bail!(
            "--set {s}: {} is a single backup, not a folder holding several sets. Drop --set, \
             or give the folder that holds the sets.",
            path.display()
        );
    }
    let (jexes, profile, old_profile) = match found {
        Found::Jex(p) => (vec![p], None, None),
        Found::SetDir(d) => {
            let (jexes, profile) = o.set_contents(&d)?;
            let old = match profile {
                None => ProfileFiles::read_top_level(&d),
                Some(_) => None,
            };
            (jexes, profile, old)
        }
    };
    let mut backup = read_parts(path, &jexes)?;
    backup.warnings = std::mem::take(&mut backup.warnings)
        .into_iter()
        .map(|w| o.shown(w))
        .collect();
    backup.sets = std::mem::take(&mut o.sets);
    backup.set = o.chosen.take();
    backup.profile = profile.map(ProfileFiles::read).or(old_profile);
    backup.parts = jexes;
    backup.raw_exports = o
        .packed
        .iter()
        .map(|(_, shown_as)| PathBuf::from(o.shown(shown_as.display().to_string())))
        .collect();
    backup._temps = std::mem::take(&mut o.temps);
    Ok(backup)
}

/// What `read_parts` remembers of an item name in a multi-JEX set, to collapse repeats.
struct Seen {
    part: usize,
    digest: [u8; 32],
    updated: i64,
    /// Index into the backup's items (`None`: the entry did not parse).
    index: Option<usize>,
}

/// Read every JEX of a set into one backup. Per-notebook sets repeat items (parent notebooks,
/// tags, shared resources) in several files: identical copies collapse into one; differing
/// ones keep the newest `updated_time`, with a warning. Items are parsed as they pass and only
/// their location and a few fields are kept.
fn read_parts(source: &Path, jexes: &[PathBuf]) -> Result<Backup> {
    let mut items: Vec<BackupItem> =
        Vec::with_capacity(jexes.iter().map(|p| jex::count_items(p)).sum());
    let mut unreadable: Vec<Unreadable> = Vec::new();
    // Only a multi-JEX set can repeat a name legitimately; in one JEX a repeat is damage that
    // validation reports, so both copies are kept.
    let multi = jexes.len() > 1;
    let mut seen: HashMap<String, Seen> = HashMap::new();
    let mut blobs: HashMap<String, BlobLocation> = HashMap::new();
    let mut warnings = Vec::new();
    let mut readers = Vec::new();
    // folder id → the JEX files holding it, to name notebooks the plugin left out.
    let mut folder_parts: HashMap<String, Vec<usize>> = HashMap::new();
    let label = |i: usize| {
        jexes[i]
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    };
    for (part, path) in jexes.iter().enumerate() {
        let idx = jex::index(path, |e| {
            let parsed = Item::parse_bytes(&e.data);
            let loc = BlobLocation {
                entry: String::new(),
                offset: e.offset,
                size: e.size,
                part,
            };
            let stored = |it: &Item| BackupItem::stored(e.name.clone(), it, &loc);
            if !multi {
                match parsed {
                    Ok(it) => items.push(stored(&it)),
                    Err(error) => unreadable.push(Unreadable {
                        entry: e.name,
                        error,
                    }),
                }
                return;
            }
            if let Ok(it) = &parsed {
                if it.item_type() == ItemType::Folder {
                    folder_parts
                        .entry(it.id().to_string())
                        .or_default()
                        .push(part);
                }
            }
            let digest: [u8; 32] = Sha256::digest(&e.data).into();
            let updated = parsed
                .as_ref()
                .ok()
                .and_then(|i| i.get("updated_time").and_then(parse_time))
                .unwrap_or(i64::MIN);
            let mut add = |parsed: Result<Item, ParseError>| match parsed {
                Ok(it) => {
                    items.push(stored(&it));
                    Some(items.len() - 1)
                }
                Err(error) => {
                    unreadable.push(Unreadable {
                        entry: e.name.clone(),
                        error,
                    });
                    None
                }
            };
            match seen.get_mut(&e.name) {
                None => {
                    let index = add(parsed);
                    seen.insert(
                        e.name.clone(),
                        Seen {
                            part,
                            digest,
                            updated,
                            index,
                        },
                    );
                }
                Some(prev) if prev.part == part => {
                    add(parsed);
                }
                Some(prev) if prev.digest == digest => {}
                Some(prev) => {
                    let keep_new = updated > prev.updated;
                    warnings.push(format!(
                        "{} differs between {} and {}; keeping the one from {} (newer)",
                        e.name,
                        label(prev.part),
                        label(part),
                        if keep_new {
                            label(part)
                        } else {
                            label(prev.part)
                        }
                    ));
                    // (An unparsable copy never counts as newer.)
                    if let (true, Ok(it)) = (keep_new, &parsed) {
                        let index = match prev.index {
                            Some(i) => {
                                items[i] = stored(it);
                                i
                            }
                            // The earlier copy was damaged: this one replaces its report.
                            None => {
                                unreadable.retain(|u| u.entry != e.name);
                                items.push(stored(it));
                                items.len() - 1
                            }
                        };
                        *prev = Seen {
                            part,
                            digest,
                            updated,
                            index: Some(index),
                        };
                    }
                }
            }
        })?;
        warnings.extend(idx.warnings);
        for (id, mut loc) in idx.blobs {
            loc.part = part;
            match blobs.get(&id) {
                None => {
                    blobs.insert(id, loc);
                }
                Some(prev) if multi && prev.size == loc.size && prev.part != part => {}
                Some(prev) => warnings.push(format!(
                    "two blobs for resource {id}: {} in {} and {} in {}; using the first",
                    prev.entry,
                    label(prev.part),
                    loc.entry,
                    label(part)
                )),
            }
        }
        readers.push(idx.reader);
    }
    drop(seen);
    // The index grew by doubling: give the unused part back before the stages run.
    items.shrink_to_fit();
    let mut backup = Backup::with_items(
        source,
        items,
        unreadable,
        Arc::new(MultiBlobs { parts: readers }),
    );
    backup.blobs = blobs;
    backup.warnings = warnings;
    if multi {
        add_missing_notebooks(&mut backup, jexes, &folder_parts);
    }
    Ok(backup)
}

/// The plugin's file name for a notebook: titles from the root joined by `_`, with
/// `/ \ ? % * : | " < >` replaced by `_` (plugin `getNotebookFileName`).
fn file_name_part(title: &str) -> String {
    title
        .chars()
        .map(|c| if "/\\?%*:|\"<>".contains(c) { '_' } else { c })
        .collect()
}

/// In a per-notebook set, a notebook with no notes of its own gets no file, so the notebooks
/// under it arrive with a parent that is in no file. Recreate each such parent with its
/// original id (so the tree is whole again), titled from the child's file name
/// (`Personal_Projects.jex` holding `Projects` ⇒ `Personal`), at the top level.
fn add_missing_notebooks(
    backup: &mut Backup,
    jexes: &[PathBuf],
    folder_parts: &HashMap<String, Vec<usize>>,
) {
    let folders: HashMap<String, usize> = backup
        .items
        .iter()
        .enumerate()
        .filter(|(_, b)| b.item_type() == ItemType::Folder)
        .map(|(i, b)| (b.id().to_string(), i))
        .collect();
    // missing parent id → (title, template child index)
    let mut missing: Vec<(String, String, usize)> = Vec::new();
    let mut ids: Vec<&String> = folders.keys().collect();
    ids.sort();
    for id in ids {
        let i = folders[id];
        let Ok(child) = backup.item(&backup.items[i]) else {
            continue;
        };
        let pid = child.parent_id();
        if pid.is_empty() || folders.contains_key(pid) || missing.iter().any(|m| m.0 == pid) {
            continue;
        }
        let suffix = format!("_{}", file_name_part(child.title_or_empty()));
        let title = folder_parts
            .get(id)
            .into_iter()
            .flatten()
            .filter_map(|&p| {
                let stem = jexes[p].file_stem()?.to_string_lossy().into_owned();
                // `Name_1.jex` on a name collision.
                let mut stems = vec![stem.clone()];
                if let Some((s, n)) = stem.rsplit_once('_') {
                    if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) {
                        stems.push(s.to_string());
                    }
                }
                stems
                    .into_iter()
                    .find_map(|s| s.strip_suffix(&suffix).map(str::to_string))
            })
            .find(|t| !t.is_empty())
            .unwrap_or_else(|| format!("Restored notebook {}", &pid[..pid.len().min(8)]));
        missing.push((pid.to_string(), title, i));
    }
    missing.sort();
    for (pid, title, template) in missing {
        let Ok(mut item) = backup.item(&backup.items[template]) else {
            continue;
        };
        item.title = Some(title.clone());
        item.set("id", pid.clone());
        item.set("parent_id", "");
        item.set("icon", "");
        item.set("user_data", "");
        backup.warnings.push(format!(
            "notebook {pid} holds no notes of its own, so the Backup plugin wrote no file for it; \
             recreated it at the top level as {title:?} (title taken from the file names) so the \
             notebooks under it keep their place"
        ));
        backup
            .items
            .push(BackupItem::from_item(format!("{pid}.md"), &item));
        backup.recreated.push(pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar holding `files` (name, bytes) at `path`.
    fn jex(path: &Path, files: &[(&str, &[u8])]) {
        let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
        for (name, data) in files {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.finish().unwrap();
    }

    /// Per-notebook sets repeat items: an identical repeat collapses, a newer differing copy
    /// wins, and a good copy replaces a damaged one from another file.
    #[test]
    fn repeats_across_the_files_of_a_set_collapse() {
        let dir = tempfile::tempdir().unwrap();
        let id = |c: char| c.to_string().repeat(32);
        let folder = |c: char, title: &str, t: &str| {
            format!(
                "{title}\n\nid: {}\nparent_id: \nupdated_time: {t}\ntype_: 2",
                id(c)
            )
        };
        let (a, b) = (dir.path().join("A.jex"), dir.path().join("B.jex"));
        let same = folder('a', "Same", "2024-01-01T00:00:00.000Z");
        let old = folder('b', "Old", "2024-01-01T00:00:00.000Z");
        let new = folder('b', "New", "2024-02-01T00:00:00.000Z");
        let good = folder('c', "Good", "2024-01-01T00:00:00.000Z");
        let (na, nb, nc) = (
            format!("{}.md", id('a')),
            format!("{}.md", id('b')),
            format!("{}.md", id('c')),
        );
        jex(
            &a,
            &[
                (&na, same.as_bytes()),
                (&nb, old.as_bytes()),
                (&nc, b"no properties at all"),
            ],
        );
        jex(
            &b,
            &[
                (&na, same.as_bytes()),
                (&nb, new.as_bytes()),
                (&nc, good.as_bytes()),
            ],
        );
        let backup = read_parts(dir.path(), &[a, b]).unwrap();
        assert!(backup.unreadable.is_empty(), "{:?}", backup.unreadable);
        let titles: Vec<(String, String)> = backup
            .items
            .iter()
            .map(|bi| (bi.id().to_string(), backup.title(bi)))
            .collect();
        assert_eq!(
            titles,
            [
                (id('a'), "Same".to_string()),
                (id('b'), "New".to_string()),
                (id('c'), "Good".to_string())
            ]
        );
        assert_eq!(backup.warnings.len(), 2, "{:?}", backup.warnings);
    }

    #[test]
    fn notebook_file_names_replace_what_the_plugin_replaces() {
        assert_eq!(
            file_name_part("a/b\\c?d%e*f:g|h\"i<j>k"),
            "a_b_c_d_e_f_g_h_i_j_k"
        );
        assert_eq!(file_name_part("Ünïcödé 📚"), "Ünïcödé 📚");
    }
}
