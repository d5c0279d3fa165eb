//! Read a backup into one [`Backup`] view: a few fields per item in memory, items and blobs
//! located in the container and read on demand. [`source`] opens every layout the Backup
//! plugin writes (folders, sets, per-notebook JEX files, 7z archives with or without a
//! password, hand-made zips).

pub mod archive;
pub mod jex;
pub mod locate;
pub mod password;
pub mod raw;
pub mod source;

pub use locate::SetInfo;
pub use source::{BackupOptions, ProfileFiles};

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;

use crate::id::JoplinId;
use crate::item::{Item, ItemType, ParseError};

/// An item file read into memory (a target's files read by `migrate`, a snapshot folder).
pub struct RawEntry {
    pub name: String,
    pub data: Vec<u8>,
}

/// Where a blob's bytes are, in whatever container the backup came in.
#[derive(Debug, Clone, Default)]
pub struct BlobLocation {
    /// Name inside the container, for messages.
    pub entry: String,
    pub offset: u64,
    pub size: u64,
    /// Which JEX of the set (per-notebook sets have several); 0 for a single JEX.
    pub part: usize,
}

/// Reads blobs on demand from the backup's container.
pub trait BlobReader: Send + Sync {
    fn read(&self, loc: &BlobLocation) -> std::io::Result<Vec<u8>>;
    fn describe(&self) -> String;
    /// Where the blob's bytes sit in a local file, so uploads can stream them; `None` when
    /// they are not in a plain local file (then [`BlobReader::read`] is the way).
    fn file(&self, loc: &BlobLocation) -> Option<backend_core::FileSlice> {
        let _ = loc;
        None
    }
}

/// Where an item's bytes are. Items read from a JEX stay in the file and are read again (and
/// parsed) when a stage needs them, so memory holds only a few fields per item however large
/// the backup; items made or rewritten here (recreated notebooks, `--new-ids`, a target read
/// by `migrate`) are held in memory.
#[derive(Debug, Clone)]
enum ItemBytes {
    Memory(Arc<[u8]>),
    Stored { part: u32, offset: u64, size: u32 },
}

/// One item of the backup: the fields every stage needs to find and order it; the whole item
/// through [`Backup::item`], its bytes through [`Backup::raw`]. Kept small, as a backup index
/// holds one per item: the two ids inline as [`JoplinId`]s, whatever is unusual (an entry
/// name other than `<id>.md`, an id that is not a Joplin id) behind one pointer.
#[derive(Debug, Clone)]
pub struct BackupItem {
    /// The id, when it is a Joplin id (else `odd` holds it).
    id: Option<JoplinId>,
    /// The parent id, when it is a Joplin id (else `odd` holds it, or there is none).
    parent_id: Option<JoplinId>,
    odd: Option<Box<Odd>>,
    bytes: ItemBytes,
    /// `type_`, as [`ItemType::code`].
    type_code: u32,
}

// A backup index holds one per item: keep it at 104 bytes (it was 128).
const _: () = assert!(std::mem::size_of::<BackupItem>() <= 104);

/// What few items have, kept out of line.
#[derive(Debug, Clone, Default)]
struct Odd {
    /// Entry name inside the container when it is not `<id>.md`.
    entry: Option<Box<str>>,
    /// The id when it is not a Joplin id.
    id: Option<Box<str>>,
    /// The parent id when it is neither empty nor a Joplin id.
    parent_id: Option<Box<str>>,
}

impl BackupItem {
    /// An item held in memory (serialised from `item`).
    pub fn from_item(entry: String, item: &Item) -> BackupItem {
        BackupItem::in_memory(entry, item, item.serialize().into_bytes())
    }

    fn in_memory(entry: String, item: &Item, raw: Vec<u8>) -> BackupItem {
        BackupItem::new(entry, item, ItemBytes::Memory(raw.into()))
    }

    /// An item whose bytes stay in the container at `loc` (`item` was parsed from them).
    pub fn stored(entry: String, item: &Item, loc: &BlobLocation) -> BackupItem {
        let bytes = ItemBytes::Stored {
            part: loc.part as u32,
            offset: loc.offset,
            // jex::index refuses items over 1 GB.
            size: loc.size as u32,
        };
        BackupItem::new(entry, item, bytes)
    }

    fn new(entry: String, item: &Item, bytes: ItemBytes) -> BackupItem {
        let mut odd = Odd::default();
        let id = JoplinId::parse(item.id());
        if id.is_none() {
            odd.id = Some(item.id().into());
        }
        let parent = item.parent_id();
        let parent_id = JoplinId::parse(parent);
        if parent_id.is_none() && !parent.is_empty() {
            odd.parent_id = Some(parent.into());
        }
        if entry.strip_suffix(".md") != Some(item.id()) {
            odd.entry = Some(entry.into_boxed_str());
        }
        let usual = odd.entry.is_none() && odd.id.is_none() && odd.parent_id.is_none();
        BackupItem {
            id,
            parent_id,
            odd: (!usual).then(|| Box::new(odd)),
            bytes,
            type_code: item.item_type().code(),
        }
    }

    fn odd(&self) -> Option<&Odd> {
        self.odd.as_deref()
    }

    /// Entry name inside the container (`<id>.md`).
    pub fn entry(&self) -> Cow<'_, str> {
        match self.odd().and_then(|o| o.entry.as_deref()) {
            Some(e) => Cow::Borrowed(e),
            None => Cow::Owned(format!("{}.md", self.id())),
        }
    }
    pub fn id(&self) -> &str {
        match &self.id {
            Some(id) => id.as_str(),
            None => self.odd().and_then(|o| o.id.as_deref()).unwrap_or(""),
        }
    }
    pub fn item_type(&self) -> ItemType {
        ItemType::from_code(self.type_code)
    }
    pub fn parent_id(&self) -> &str {
        match &self.parent_id {
            Some(p) => p.as_str(),
            None => self
                .odd()
                .and_then(|o| o.parent_id.as_deref())
                .unwrap_or(""),
        }
    }
    /// Size of the item file as stored in the backup.
    pub fn size(&self) -> u64 {
        match &self.bytes {
            ItemBytes::Memory(b) => b.len() as u64,
            ItemBytes::Stored { size, .. } => *size as u64,
        }
    }
}

/// Indexes of backup items in id order (4 bytes an item): stages find items by id with a
/// binary search instead of holding a map of ids.
#[derive(Debug, Default)]
pub struct IdOrder(Vec<u32>);

impl IdOrder {
    /// `indexes` in id order; items of one id stay in the order given.
    pub fn new(backup: &Backup, indexes: impl IntoIterator<Item = usize>) -> IdOrder {
        let mut order: Vec<u32> = indexes.into_iter().map(|i| i as u32).collect();
        order.sort_by(|a, b| {
            backup.items[*a as usize]
                .id()
                .cmp(backup.items[*b as usize].id())
        });
        IdOrder(order)
    }

    /// The position of an item with this id.
    pub fn position(&self, backup: &Backup, id: &str) -> Option<usize> {
        self.0
            .binary_search_by(|i| backup.items[*i as usize].id().cmp(id))
            .ok()
    }

    /// The item with this id.
    pub fn find<'a>(&self, backup: &'a Backup, id: &str) -> Option<&'a BackupItem> {
        self.position(backup, id)
            .map(|k| &backup.items[self.0[k] as usize])
    }

    /// The item indexes, in id order.
    pub fn indexes(&self) -> &[u32] {
        &self.0
    }

    pub fn retain(&mut self, keep: impl FnMut(&u32) -> bool) {
        self.0.retain(keep);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
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
    /// Ids of notebooks the backup lacks and this tool made up (a per-notebook set's notebook
    /// without notes of its own): a target's real copy is kept rather than replaced.
    pub recreated: Vec<String>,
    /// The JEX files read (one, or one per notebook), possibly inside the temp folder.
    pub parts: Vec<PathBuf>,
    /// RAW exports read (each packed into one of `parts`), as messages name them.
    pub raw_exports: Vec<PathBuf>,
    /// The set used, when the user gave a folder holding several.
    pub set: Option<SetInfo>,
    /// Every set in that folder, oldest first (empty when the user gave one set).
    pub sets: Vec<SetInfo>,
    profile: Option<ProfileFiles>,
    reader: Arc<dyn BlobReader>,
    /// Unpacked archives; removed when the backup is dropped.
    _temps: Vec<tempfile::TempDir>,
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
    /// Whether `id` is a notebook this tool made up (see `recreated`).
    pub fn is_recreated(&self, id: &str) -> bool {
        self.recreated.iter().any(|r| r == id)
    }

    /// Open a backup of any supported layout with default options (newest set, password
    /// from the environment or a prompt).
    pub fn open(path: &Path) -> Result<Backup> {
        Backup::open_with(path, &BackupOptions::default())
    }

    /// Open a backup: a `.jex`, a set folder, the plugin's folder of sets, a `.7z` or `.zip`.
    pub fn open_with(path: &Path, opts: &BackupOptions) -> Result<Backup> {
        source::open(path, opts)
    }

    /// Which set of the plugin's folder is read, when it holds several: a folder of sets
    /// read without `--set` takes the newest, and the user should see which.
    pub fn say_set(&self) {
        if let Some(set) = &self.set {
            if self.sets.len() > 1 {
                // On stderr, with the warnings: stdout's first line stays the result.
                crate::note!(
                    "note: backup set {} of {} ({} sets in the folder; --set NAME picks another)",
                    set.name,
                    set.date_label(),
                    self.sets.len()
                );
            }
        }
    }

    /// What was read, for `--json`: the path given, the set chosen and the others (with the
    /// date each was ordered by), the RAW exports read.
    pub fn source_json(&self) -> serde_json::Value {
        let set = |s: &SetInfo| {
            serde_json::json!({
                "name": s.name,
                "date": s.date.map(|d| d.format("%Y-%m-%dT%H:%M").to_string()),
                "dated_by": match s.dated_by {
                    locate::DatedBy::Name => "name",
                    locate::DatedBy::FileTime => "file_time",
                },
                "bytes": s.bytes,
            })
        };
        serde_json::json!({
            "path": self.source,
            "set": self.set.as_ref().map(set),
            "sets": self.sets.iter().map(set).collect::<Vec<_>>(),
            "jex_files": self.parts.len(),
            "raw_exports": self.raw_exports,
        })
    }

    /// The set's `profile/` files (settings, keymap, CSS, plugins), if the backup has them.
    pub fn profile_files(&self) -> Option<&ProfileFiles> {
        self.profile.as_ref()
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
                Ok(item) => items.push(BackupItem::in_memory(e.name, &item, e.data)),
                Err(error) => unreadable.push(Unreadable {
                    entry: e.name,
                    error,
                }),
            }
        }
        Backup::with_items(source, items, unreadable, reader)
    }

    /// A backup of items already indexed (see [`BackupItem::stored`]).
    pub fn with_items(
        source: &Path,
        items: Vec<BackupItem>,
        unreadable: Vec<Unreadable>,
        reader: Arc<dyn BlobReader>,
    ) -> Backup {
        Backup {
            source: source.to_path_buf(),
            items,
            unreadable,
            blobs: HashMap::new(),
            warnings: Vec::new(),
            recreated: Vec::new(),
            raw_exports: Vec::new(),
            parts: vec![source.to_path_buf()],
            set: None,
            sets: Vec::new(),
            profile: None,
            reader,
            _temps: Vec::new(),
        }
    }

    /// The item's bytes as stored in the backup.
    pub fn raw(&self, bi: &BackupItem) -> Result<Vec<u8>> {
        match &bi.bytes {
            ItemBytes::Memory(b) => Ok(b.to_vec()),
            &ItemBytes::Stored { part, offset, size } => {
                let loc = BlobLocation {
                    entry: bi.entry().into_owned(),
                    offset,
                    size: size as u64,
                    part: part as usize,
                };
                self.reader.read(&loc).map_err(|e| {
                    anyhow::anyhow!(
                        "{}: cannot read {} again: {e} (was the backup moved or changed while \
                         this ran?)",
                        self.reader.describe(),
                        bi.entry()
                    )
                })
            }
        }
    }

    /// The whole item, parsed from its bytes (it parsed when the backup was opened).
    pub fn item(&self, bi: &BackupItem) -> Result<Item> {
        let raw = self.raw(bi)?;
        Item::parse_bytes(&raw).map_err(|e| {
            anyhow::anyhow!(
                "{}: {} no longer parses ({e}): was the backup changed while this ran?",
                self.reader.describe(),
                bi.entry()
            )
        })
    }

    /// The item for a message: `note <id> ("title")` (reads it again for its title, so for
    /// reports of problems, not for every item).
    pub fn describe(&self, bi: &BackupItem) -> String {
        let t = self.title(bi);
        if t.is_empty() {
            format!("{} {}", bi.item_type(), bi.id())
        } else {
            format!("{} {} ({t:?})", bi.item_type(), bi.id())
        }
    }

    /// The item's title for messages (empty when it has none or cannot be read).
    pub fn title(&self, bi: &BackupItem) -> String {
        self.item(bi)
            .map(|it| it.title_or_empty().to_string())
            .unwrap_or_default()
    }

    /// How lists name an item: its title quoted; a note-tag link, which has none, by its
    /// note's and tag's (`order`: every item's index in id order, made once by the caller).
    pub fn label(&self, bi: &BackupItem, order: &std::sync::OnceLock<IdOrder>) -> String {
        if bi.item_type() != ItemType::NoteTag {
            return format!("{:?}", self.title(bi));
        }
        let Ok(it) = self.item(bi) else {
            return "\"\"".into();
        };
        let order = order.get_or_init(|| IdOrder::new(self, 0..self.items.len()));
        let title = |key: &str| {
            let id = it.get(key).unwrap_or("");
            order
                .find(self, id)
                .map(|t| format!("{:?}", self.title(t)))
                .unwrap_or_else(|| id.to_string())
        };
        format!("link: note {} tagged {}", title("note_id"), title("tag_id"))
    }

    pub fn read_blob(&self, resource_id: &str) -> Result<Vec<u8>> {
        let loc = self.blobs.get(resource_id).ok_or_else(|| {
            anyhow::anyhow!("resource {resource_id}: the backup holds no blob for it")
        })?;
        self.reader.read(loc).map_err(|e| {
            anyhow::anyhow!("{}: cannot read {}: {e}", self.reader.describe(), loc.entry)
        })
    }

    /// The blob's bytes as a local file slice, when they are in one (JEX, snapshot).
    pub fn blob_file(&self, resource_id: &str) -> Option<backend_core::FileSlice> {
        self.blobs
            .get(resource_id)
            .and_then(|loc| self.reader.file(loc))
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
            let raw = b.raw(bi).unwrap();
            assert_eq!(
                b.item(bi).unwrap().serialize().as_bytes(),
                &raw[..],
                "{} does not round-trip",
                bi.entry()
            );
            assert_eq!(bi.size(), raw.len() as u64);
        }
        assert_eq!(b.blobs.len(), 3);
        assert_eq!(
            b.read_blob("8c9f67d46dce4ef0af0f5826f53330a6")
                .unwrap()
                .len(),
            14
        );
    }

    /// Ids, parent ids and entry names come back as written, usual or not.
    #[test]
    fn index_fields_round_trip_usual_and_odd() {
        let hex = "0123456789abcdef0123456789abcdef";
        let parent = "fedcba9876543210fedcba9876543210";
        let item = |id: &str, parent_id: &str, ty: u32| {
            Item::parse_bytes(
                format!("T\n\nid: {id}\nparent_id: {parent_id}\ntype_: {ty}").as_bytes(),
            )
            .unwrap()
        };
        let cases = [
            (format!("{hex}.md"), item(hex, parent, 1)),
            (format!("{hex}.md"), item(hex, "", 2)),
            ("renamed.md".to_string(), item(hex, parent, 5)),
            ("x.md".to_string(), item("NOT-AN-ID", "also not", 6)),
            (format!("{hex}.md"), item(hex, parent, 77)),
        ];
        for (entry, it) in &cases {
            let bi = BackupItem::from_item(entry.clone(), it);
            assert_eq!(bi.id(), it.id());
            assert_eq!(bi.parent_id(), it.parent_id());
            assert_eq!(bi.entry(), entry.as_str());
            assert_eq!(bi.item_type(), it.item_type());
            assert_eq!(bi.size(), it.serialize().len() as u64);
        }
        assert!(BackupItem::from_item(cases[0].0.clone(), &cases[0].1)
            .odd
            .is_none());
    }
}
