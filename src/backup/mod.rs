//! Read a backup into one [`Backup`] view: parsed items in memory, blobs located and read on
//! demand.

pub mod jex;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;

use crate::item::{Item, ParseError};

/// An item file as it came out of the archive.
pub struct RawEntry {
    pub name: String,
    pub data: Vec<u8>,
}

/// Where a blob's bytes are, in whatever container the backup came in.
#[derive(Debug, Clone)]
pub struct BlobLocation {
    /// Name inside the container, for messages.
    pub entry: String,
    pub offset: u64,
    pub size: u64,
}

/// Reads blobs on demand from the backup's container.
pub trait BlobReader: Send + Sync {
    fn read(&self, loc: &BlobLocation) -> std::io::Result<Vec<u8>>;
    fn describe(&self) -> String;
}

/// One item of the backup.
#[derive(Debug, Clone)]
pub struct BackupItem {
    /// Entry name inside the container (`<id>.md`).
    pub entry: String,
    pub item: Item,
    /// The bytes as stored, so unchanged items can be compared and written verbatim.
    pub raw: Vec<u8>,
}

impl BackupItem {
    pub fn id(&self) -> &str {
        self.item.id()
    }
}

/// An item file that could not be parsed.
#[derive(Debug, Clone)]
pub struct Unreadable {
    pub entry: String,
    pub error: ParseError,
}

pub struct Backup {
    /// What the user pointed at.
    pub source: PathBuf,
    pub items: Vec<BackupItem>,
    pub unreadable: Vec<Unreadable>,
    /// Resource id → blob location.
    pub blobs: HashMap<String, BlobLocation>,
    /// Blobs whose name carried no usable id, and other oddities.
    pub warnings: Vec<String>,
    reader: Arc<dyn BlobReader>,
}

impl std::fmt::Debug for Backup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backup")
            .field("source", &self.source)
            .field("items", &self.items.len())
            .field("blobs", &self.blobs.len())
            .finish()
    }
}

impl Backup {
    /// Open a backup file. Today: a `.jex`.
    pub fn open(path: &Path) -> Result<Backup> {
        let idx = jex::index(path)?;
        let mut backup = Backup::from_entries(path, idx.items, Arc::new(idx.reader));
        backup.warnings.extend(idx.warnings);
        for (id, loc) in idx.blobs {
            if let Some(prev) = backup.blobs.get(&id) {
                backup.warnings.push(format!(
                    "two blobs for resource {id}: {} and {}; using the first",
                    prev.entry, loc.entry
                ));
                continue;
            }
            backup.blobs.insert(id, loc);
        }
        Ok(backup)
    }

    /// Build a backup from item files; blobs are added by the caller.
    pub fn from_entries(
        source: &Path,
        entries: Vec<RawEntry>,
        reader: Arc<dyn BlobReader>,
    ) -> Backup {
        let mut items = Vec::with_capacity(entries.len());
        let mut unreadable = Vec::new();
        for e in entries {
            match Item::parse_bytes(&e.data) {
                Ok(item) => items.push(BackupItem {
                    entry: e.name,
                    item,
                    raw: e.data,
                }),
                Err(error) => unreadable.push(Unreadable {
                    entry: e.name,
                    error,
                }),
            }
        }
        Backup {
            source: source.to_path_buf(),
            items,
            unreadable,
            blobs: HashMap::new(),
            warnings: Vec::new(),
            reader,
        }
    }

    pub fn read_blob(&self, resource_id: &str) -> Result<Vec<u8>> {
        let loc = self.blobs.get(resource_id).ok_or_else(|| {
            anyhow::anyhow!("resource {resource_id}: the backup holds no blob for it")
        })?;
        self.reader.read(loc).map_err(|e| {
            anyhow::anyhow!("{}: cannot read {}: {e}", self.reader.describe(), loc.entry)
        })
    }

    pub fn blob_size(&self, resource_id: &str) -> Option<u64> {
        self.blobs.get(resource_id).map(|l| l.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every item a real Joplin client exported serialises back to the exact same bytes.
    #[test]
    fn fixture_items_round_trip_byte_for_byte() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sample.jex");
        let b = Backup::open(&path).unwrap();
        assert_eq!(b.items.len(), 27);
        assert!(b.unreadable.is_empty());
        for bi in &b.items {
            assert_eq!(
                bi.item.serialize().as_bytes(),
                &bi.raw[..],
                "{} does not round-trip",
                bi.entry
            );
        }
        assert_eq!(b.blobs.len(), 3);
        assert_eq!(
            b.read_blob("8c9f67d46dce4ef0af0f5826f53330a6")
                .unwrap()
                .len(),
            14
        );
    }
}
