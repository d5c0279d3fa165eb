//! The encrypted item form on a target (`BaseItem.serializeForSync`) and its inverse, plus
//! blob encryption — everything the rest of the tool needs, as methods on [`Keyring`].

use anyhow::{anyhow, Result};

use super::cipher::Method;
use super::jed;
use super::keys::Keyring;
use crate::item::{Item, ItemType};

/// Fields Joplin keeps in clear on an encrypted item (links and sync timestamps).
const KEEP: &[&str] = &[
    "id",
    "note_id",
    "tag_id",
    "parent_id",
    "share_id",
    "updated_time",
    "deleted_time",
    "type_",
];

/// Table columns in table order (Joplin 3.5.1 schema); the outer form prints every one of
/// them, empty when not kept: a missing NOT NULL column (resources.mime) breaks the client.
fn columns(t: ItemType) -> Option<&'static [&'static str]> {
    Some(match t {
        ItemType::Note => &[
            "id",
            "parent_id",
            "title",
            "body",
            "created_time",
            "updated_time",
            "is_conflict",
            "latitude",
            "longitude",
            "altitude",
            "author",
            "source_url",
            "is_todo",
            "todo_due",
            "todo_completed",
            "source",
            "source_application",
            "application_data",
            "order",
            "user_created_time",
            "user_updated_time",
            "encryption_cipher_text",
            "encryption_applied",
            "markup_language",
            "is_shared",
            "share_id",
            "conflict_original_id",
            "master_key_id",
            "user_data",
            "deleted_time",
        ],
        ItemType::Folder => &[
            "id",
            "title",
            "created_time",
            "updated_time",
            "user_created_time",
            "user_updated_time",
            "encryption_cipher_text",
            "encryption_applied",
            "parent_id",
            "is_shared",
            "share_id",
            "master_key_id",
            "icon",
            "user_data",
            "deleted_time",
        ],
        ItemType::Resource => &[
            "id",
            "title",
            "mime",
            "filename",
            "created_time",
            "updated_time",
            "user_created_time",
            "user_updated_time",
            "file_extension",
            "encryption_cipher_text",
            "encryption_applied",
            "encryption_blob_encrypted",
            "size",
            "is_shared",
            "share_id",
            "master_key_id",
            "user_data",
            "blob_updated_time",
            "ocr_text",
            "ocr_details",
            "ocr_status",
            "ocr_error",
            "ocr_driver_id",
        ],
        ItemType::Tag => &[
            "id",
            "title",
            "created_time",
            "updated_time",
            "user_created_time",
            "user_updated_time",
            "encryption_cipher_text",
            "encryption_applied",
            "is_shared",
            "parent_id",
            "user_data",
        ],
        ItemType::NoteTag => &[
            "id",
            "note_id",
            "tag_id",
            "created_time",
            "updated_time",
            "user_created_time",
            "user_updated_time",
            "encryption_cipher_text",
            "encryption_applied",
            "is_shared",
        ],
        ItemType::Revision => &[
            "id",
            "parent_id",
            "item_type",
            "item_id",
            "item_updated_time",
            "title_diff",
            "body_diff",
            "metadata_diff",
            "encryption_cipher_text",
            "encryption_applied",
            "updated_time",
            "created_time",
        ],
        _ => return None,
    })
}

/// Joplin's `itemCanBeEncrypted`: published notes (`is_shared`) and items of a Joplin Server
/// share stay in clear. We never know a share's key, so share items are treated as Joplin treats
/// a share without one.
pub fn can_be_encrypted(item: &Item) -> bool {
    let flag = |k: &str| item.get(k).is_some_and(|v| !v.is_empty() && v != "0");
    columns(item.item_type()).is_some() && !flag("is_shared") && !flag("share_id")
}

pub fn is_encrypted(item: &Item) -> bool {
    item.get("encryption_applied") == Some("1")
}

impl Keyring {
    /// The outer form of `item` (already stamped) as this target's clients write it.
    pub fn encrypt_item(&self, item: &Item) -> Result<Item> {
        let ty = item.item_type();
        let cols = columns(ty).ok_or_else(|| anyhow!("{ty} items cannot be encrypted"))?;
        let mut inner = item.clone();
        inner.set("encryption_cipher_text", "");
        inner.set("encryption_applied", "0");
        if ty == ItemType::Resource {
            inner.set("encryption_blob_encrypted", "1");
        }
        let cipher_text = jed::encrypt_string(
            self.string_method,
            &self.active_id,
            self.active_key(),
            &inner.serialize(),
        )
        .map_err(|e| anyhow!("encrypting {ty} {}: {e}", item.id()))?;
        let mut props: Vec<(String, String)> = Vec::with_capacity(cols.len() + 1);
        for &c in cols.iter().filter(|c| !matches!(**c, "title" | "body")) {
            let v = match c {
                "encryption_applied" => "1".to_string(),
                "encryption_cipher_text" => cipher_text.clone(),
                c if KEEP.contains(&c) => item.get(c).unwrap_or("").to_string(),
                _ => String::new(),
            };
            props.push((c.to_string(), v));
        }
        props.push(("type_".into(), ty.code().to_string()));
        Ok(Item::from_props(props))
    }

    /// The item as an unencrypted target would hold it: the inner item, with the outer
    /// `updated_time` (what Joplin keeps) and, for resources, `encryption_blob_encrypted: 0`
    /// (callers decrypt the blob with [`Keyring::decrypt_blob`]). Plain items pass through.
    pub fn decrypt_item(&self, outer: &Item) -> Result<Item> {
        if !is_encrypted(outer) {
            return Ok(outer.clone());
        }
        let text = outer.get("encryption_cipher_text").unwrap_or("");
        let plain = jed::decrypt_string(text, |id| self.key(id))
            .map_err(|e| anyhow!("cannot decrypt {} {}: {e}", outer.item_type(), outer.id()))?;
        let mut inner = Item::parse(&plain).map_err(|e| {
            anyhow!(
                "{} {} decrypts to something that is not an item: {e}",
                outer.item_type(),
                outer.id()
            )
        })?;
        if let Some(t) = outer.get("updated_time").filter(|t| !t.is_empty()) {
            inner.set("updated_time", t);
        }
        if inner.item_type() == ItemType::Resource {
            inner.set("encryption_blob_encrypted", "0");
        }
        Ok(inner)
    }

    pub fn encrypt_blob(&self, data: &[u8]) -> Result<Vec<u8>> {
        jed::encrypt_bytes(self.file_method, &self.active_id, self.active_key(), data)
            .map(String::into_bytes)
            .map_err(|e| anyhow!("encrypting a blob: {e}"))
    }

    /// [`Keyring::encrypt_blob`] streaming from `input` to `output`; returns the bytes written.
    pub fn encrypt_blob_stream(
        &self,
        input: &mut dyn std::io::Read,
        output: &mut dyn std::io::Write,
    ) -> Result<u64> {
        jed::encrypt_stream(
            self.file_method,
            &self.active_id,
            self.active_key(),
            input,
            output,
        )
        .map_err(|e| anyhow!("encrypting a blob: {e}"))
    }

    /// Raw bytes of a blob; data without a JED header is already plain (Joplin does the same).
    pub fn decrypt_blob(&self, data: &[u8]) -> Result<Vec<u8>> {
        if !jed::is_jed(data) {
            return Ok(data.to_vec());
        }
        jed::decrypt_bytes(data, |id| self.key(id)).map_err(|e| anyhow!("{e}"))
    }

    /// [`Keyring::decrypt_blob`] of a JED container read from `input`, chunk by chunk into `sink`.
    pub fn decrypt_blob_stream(
        &self,
        input: &mut dyn std::io::Read,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<()> {
        jed::decrypt_stream(input, |id| self.key(id), sink).map_err(|e| anyhow!("{e}"))
    }

    /// Size on the target of an encrypted blob of n plain bytes, for plans: exact for FileV1
    /// (fixed salt, iv and tag sizes), unknown (None) for sjcl methods.
    pub fn blob_len_fn(&self) -> fn(u64) -> Option<u64> {
        if self.file_method == Method::FileV1 {
            |n| Some(jed::native_file_len(n))
        } else {
            |_| None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOTE: &str = "Title é😀\n\nbody\n\nid: 0006b457342a4b078515990fa709441b\nparent_id: 33891a5cf6a84c18ab0b4de1404c88b2\nupdated_time: 2026-11-25T00:13:52.920Z\nencryption_cipher_text: \nencryption_applied: 0\nis_shared: 0\nshare_id: \ndeleted_time: 0\ntype_: 1";

    #[test]
    fn sjcl_era_keyring_round_trips_items_and_blobs() {
        let k = "ab".repeat(256);
        let ring = Keyring::single(&"c".repeat(32), &k, Method::Sjcl1a, Method::Sjcl1a);
        let note = Item::parse(NOTE).unwrap();
        let outer = ring.encrypt_item(&note).unwrap();
        let text = outer.serialize();
        assert!(text.starts_with("id: 0006b457342a4b078515990fa709441b\nparent_id: 3389"));
        assert!(text.contains(&format!(
            "encryption_cipher_text: JED0100002205{}",
            "c".repeat(32)
        )));
        assert!(text.ends_with("deleted_time: 0\ntype_: 1"));
        assert!(!text.contains("Title"));
        assert_eq!(ring.decrypt_item(&outer).unwrap(), note);
        let blob: Vec<u8> = (0..12_001u32).map(|i| i as u8).collect();
        let enc = ring.encrypt_blob(&blob).unwrap();
        assert!(jed::is_jed(&enc));
        assert_eq!(ring.decrypt_blob(&enc).unwrap(), blob);
        assert_eq!((ring.blob_len_fn())(10), None);
        // Raw data is passed through, as Joplin does for blobs without a JED header.
        assert_eq!(ring.decrypt_blob(b"\x89PNG").unwrap(), b"\x89PNG");
    }

    #[test]
    fn published_and_shared_items_stay_in_clear() {
        let note = Item::parse(NOTE).unwrap();
        assert!(can_be_encrypted(&note));
        let mut published = note.clone();
        published.set("is_shared", "1");
        assert!(!can_be_encrypted(&published));
        let mut shared = note;
        shared.set("share_id", "abc");
        assert!(!can_be_encrypted(&shared));
    }
}
