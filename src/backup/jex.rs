//! JEX reader: a JEX is a flat POSIX tar of `<id>.md` items and `resources/<id>.<ext>` blobs.
//!
//! The tar is indexed in one pass: item files are handed to the caller as they pass (it keeps
//! what it needs and their location), blobs are only located (offset, size); both are read on
//! demand later, so a multi-GB backup never sits in memory.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};

use super::{BlobLocation, BlobReader};

/// Largest item file we accept: Joplin keeps a note's body in SQLite, whose longest text is
/// 1,000,000,000 bytes (a damaged header claiming more than the file holds is caught before).
/// A note that large is read into memory once, to be parsed.
const MAX_ITEM_BYTES: u64 = 1_000_000_000;

#[derive(Debug)]
pub struct JexBlobs {
    path: PathBuf,
    file: Mutex<File>,
}

impl BlobReader for JexBlobs {
    fn read(&self, loc: &BlobLocation) -> std::io::Result<Vec<u8>> {
        let mut f = self.file.lock().expect("poisoned");
        f.seek(SeekFrom::Start(loc.offset))?;
        let mut buf = vec![0u8; loc.size as usize];
        f.read_exact(&mut buf)?;
        Ok(buf)
    }
    fn describe(&self) -> String {
        self.path.display().to_string()
    }
    fn file(&self, loc: &BlobLocation) -> Option<backend_core::FileSlice> {
        Some(backend_core::FileSlice::new(
            &self.path, loc.offset, loc.size,
        ))
    }
}

/// An item file passing by during [`index`]: its bytes, and where they are in the JEX.
pub struct ItemEntry {
    pub name: String,
    pub data: Vec<u8>,
    pub offset: u64,
    pub size: u64,
}

/// What one pass over the tar found (items went to the caller).
pub struct JexIndex {
    pub blobs: Vec<(String, BlobLocation)>,
    pub warnings: Vec<String>,
    pub reader: JexBlobs,
}

fn sniff(path: &Path) -> Result<()> {
    let mut head = [0u8; 512];
    let mut f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let n = f.read(&mut head)?;
    let what = match &head[..n.min(6)] {
        [0x1f, 0x8b, ..] => Some("gzip-compressed"),
        [b'7', b'z', 0xbc, 0xaf, 0x27, 0x1c] => Some("a 7z archive"),
        [b'P', b'K', 3, 4, ..] => Some("a zip archive"),
        _ => None,
    };
    if let Some(what) = what {
        crate::refuse!(
            "{} is {what}, not a JEX (plain tar). Decompress it first, or pass the archive itself \
             if it is a Backup-plugin archive.",
            path.display()
        );
    }
    if n == 0 {
        crate::refuse!(
            "{} is empty: not a JEX. Pick another backup file.",
            path.display()
        );
    }
    // An all-zero first block is a valid, empty tar: validation reports it as empty.
    let empty_tar = n == 512 && head.iter().all(|b| *b == 0);
    if !empty_tar && (n < 512 || &head[257..262] != b"ustar") {
        crate::refuse!(
            "{} is not a JEX: a JEX is a tar archive and this file has no tar header. \
             Check that you picked the right file (Joplin: File > Export all > JEX).",
            path.display()
        );
    }
    Ok(())
}

/// How many item files the JEX holds, from its headers alone (the data is skipped): lets the
/// index be sized once instead of grown by doubling, which briefly needs three times its size.
/// Best effort: a damaged archive counts what precedes the damage ([`index`] reports it).
pub fn count_items(path: &Path) -> usize {
    let Ok(file) = File::open(path) else {
        return 0;
    };
    let mut archive = tar::Archive::new(file);
    let Ok(entries) = archive.entries_with_seek() else {
        return 0;
    };
    entries
        .map_while(|e| e.ok())
        .filter(|e| {
            let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let name = layout_name(&name);
            name.ends_with(".md") && !name.contains('/') && e.header().entry_type().is_file()
        })
        .count()
}

/// Index a JEX file, handing each item file to `on_item`. Unsafe or malformed entries are
/// errors that name the entry.
pub fn index(path: &Path, mut on_item: impl FnMut(ItemEntry)) -> Result<JexIndex> {
    sniff(path)?;
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let file_len = file.metadata()?.len();
    let mut archive = tar::Archive::new(file);
    let mut blobs = Vec::new();
    let mut warnings = Vec::new();
    let entries = archive
        .entries_with_seek()
        .with_context(|| format!("{}: cannot read the tar", path.display()))?;
    // Where the last entry's data ends (padded to a block), and its name: the archive's end
    // marker must follow, or the file was cut short there.
    let mut end = (0u64, String::new());
    for (n, entry) in entries.enumerate() {
        // A refusal (exit 4) like the missing end marker: the backup, not the run, is at fault.
        let mut entry = match entry {
            Ok(entry) => entry,
            Err(e) => crate::refuse!(
                "{}: the tar is damaged after entry {n} (truncated or not a tar): {e}. \
                 Use an intact copy of the backup.",
                path.display()
            ),
        };
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        end = (
            entry
                .raw_file_position()
                .saturating_add(entry.size().div_ceil(512) * 512),
            name.clone(),
        );
        let kind = entry.header().entry_type();
        check_name(&name).with_context(|| format!("{}: entry {name:?}", path.display()))?;
        // Entries are read by offset, so the name only places them in the layout.
        let name = layout_name(&name).to_string();
        if kind.is_dir() {
            continue;
        }
        if !(kind.is_file() || kind == tar::EntryType::Continuous) {
            crate::refuse!(
                "{}: entry {name:?} is a {:?}, not a regular file. A JEX holds only files; \
                 refusing an archive with links or devices.",
                path.display(),
                kind
            );
        }
        let size = entry.size();
        let offset = entry.raw_file_position();
        if offset.saturating_add(size) > file_len {
            crate::refuse!(
                "{}: entry {name:?} claims {size} bytes but the file ends before them \
                 (truncated download or damaged header). Use an intact copy of the backup.",
                path.display()
            );
        }
        if let Some(rest) = name.strip_prefix("resources/") {
            let id = rest.split('.').next().unwrap_or("").to_string();
            blobs.push((
                id,
                BlobLocation {
                    entry: name.clone(),
                    offset,
                    size,
                    part: 0,
                },
            ));
        } else if name.ends_with(".md") && !name.contains('/') {
            if size > MAX_ITEM_BYTES {
                crate::refuse!(
                    "{}: item {name:?} is {size} bytes, more than Joplin can store (1 GB): \
                     the archive is damaged. Use an intact copy of the backup.",
                    path.display()
                );
            }
            let mut data = Vec::with_capacity(size as usize);
            entry
                .read_to_end(&mut data)
                .with_context(|| format!("{}: reading {name:?}", path.display()))?;
            if data.len() as u64 != size {
                crate::refuse!(
                    "{}: item {name:?} is cut short (truncated archive).",
                    path.display()
                );
            }
            on_item(ItemEntry {
                name,
                data,
                offset,
                size,
            });
        } else {
            warnings.push(format!(
                "{}: ignoring {name:?}, which is not part of the JEX layout",
                path.display()
            ));
        }
    }
    check_end_marker(path, end.0, &end.1)?;
    let reader = JexBlobs {
        path: path.to_path_buf(),
        file: Mutex::new(File::open(path)?),
    };
    Ok(JexIndex {
        blobs,
        warnings,
        reader,
    })
}

/// A tar ends with a block of zeros. A file cut between two entries still reads as a valid
/// tar of fewer entries, with nothing to say what is missing: without this check a truncated
/// download would pass validation and the restore would delete what it lost.
fn check_end_marker(path: &Path, at: u64, last: &str) -> Result<()> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    file.seek(SeekFrom::Start(at))?;
    let mut block = Vec::with_capacity(512);
    file.take(512).read_to_end(&mut block)?;
    if block.len() < 512 || block.iter().any(|b| *b != 0) {
        let after = if last.is_empty() {
            "at its start".to_string()
        } else {
            format!("after entry {last:?}")
        };
        crate::refuse!(
            "{}: the tar has no end marker {after}: the file was cut short (a truncated \
             download or copy), so entries may be missing. Use an intact copy of the backup.",
            path.display()
        );
    }
    Ok(())
}

/// An entry's place in the JEX layout: a JEX unpacked and packed again with `tar -cf x.jex .`
/// names its entries `./<id>.md`, `./resources/…`; Joplin imports those the same.
fn layout_name(name: &str) -> &str {
    let mut n = name;
    while let Some(rest) = n.strip_prefix("./") {
        n = rest;
    }
    n
}

/// Refuse names that could escape a folder if anything ever extracted them.
fn check_name(name: &str) -> Result<()> {
    if name.starts_with('/') || name.starts_with('\\') || name.contains(":\\") {
        crate::refuse!("absolute path in the archive; refusing it");
    }
    if name.split(['/', '\\']).any(|c| c == "..") {
        crate::refuse!("`..` in an archive path; refusing it");
    }
    if name.contains('\0') {
        crate::refuse!("NUL byte in an archive path; refusing it");
    }
    Ok(())
}
