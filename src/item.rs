//! Joplin items as they are serialised in a JEX and a sync target (`BaseItem.serialize`).
//!
//! ```text
//! <title>          first line (absent for types without a title: note_tag)
//!                  blank line
//! <body>           notes only, verbatim
//!                  blank line (only when there is a body)
//! key: value       every column, in table order
//! type_: N         last line, no trailing newline
//! ```
//! Parsing keeps the raw (escaped) property values in order, so serialising a parsed item gives
//! back the same bytes.

use std::fmt;

use chrono::{DateTime, TimeZone, Utc};

/// Joplin's model type codes (`BaseModel.TYPE_*`) for the items a sync target holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ItemType {
    Note,
    Folder,
    Resource,
    Tag,
    NoteTag,
    Revision,
    MasterKey,
    Other(u32),
}

impl ItemType {
    pub fn from_code(code: u32) -> Self {
        match code {
            1 => ItemType::Note,
            2 => ItemType::Folder,
            4 => ItemType::Resource,
            5 => ItemType::Tag,
            6 => ItemType::NoteTag,
            9 => ItemType::MasterKey,
            13 => ItemType::Revision,
            n => ItemType::Other(n),
        }
    }
    pub fn code(self) -> u32 {
        match self {
            ItemType::Note => 1,
            ItemType::Folder => 2,
            ItemType::Resource => 4,
            ItemType::Tag => 5,
            ItemType::NoteTag => 6,
            ItemType::MasterKey => 9,
            ItemType::Revision => 13,
            ItemType::Other(n) => n,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            ItemType::Note => "note",
            ItemType::Folder => "notebook",
            ItemType::Resource => "resource",
            ItemType::Tag => "tag",
            ItemType::NoteTag => "note-tag link",
            ItemType::MasterKey => "master key",
            ItemType::Revision => "revision",
            ItemType::Other(_) => "item",
        }
    }
    /// Types a JEX carries and a restore writes.
    pub fn is_restorable(self) -> bool {
        matches!(
            self,
            ItemType::Note
                | ItemType::Folder
                | ItemType::Resource
                | ItemType::Tag
                | ItemType::NoteTag
        )
    }
}

impl fmt::Display for ItemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("line {line:?} is not `key: value` (invalid property format)")]
    InvalidProperty { line: String },
    #[error("no `type_` property")]
    MissingType,
    #[error("`type_` is {0:?}, not a number")]
    BadType(String),
    #[error("not UTF-8 text")]
    NotUtf8,
}

/// One serialised item. Property values are kept raw (escaped as on disk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub title: Option<String>,
    pub body: String,
    props: Vec<(String, String)>,
}

/// The fields a share sets (see [`Item::same_content`]).
const SHARE_FIELDS: &[&str] = &["share_id", "is_shared"];

/// Fields a restore re-stamps; two items equal apart from these hold the same content.
pub const STAMP_FIELDS: &[&str] = &["updated_time", "blob_updated_time"];

impl Item {
    pub fn parse_bytes(data: &[u8]) -> Result<Item, ParseError> {
        let text = std::str::from_utf8(data).map_err(|_| ParseError::NotUtf8)?;
        Item::parse(text)
    }

    pub fn parse(text: &str) -> Result<Item, ParseError> {
        let lines: Vec<&str> = text.split('\n').collect();
        let mut props = Vec::new();
        let mut split = None;
        for (i, raw) in lines.iter().enumerate().rev() {
            let line = raw.trim();
            if line.is_empty() {
                split = Some(i);
                break;
            }
            let Some(p) = line.find(':') else {
                return Err(ParseError::InvalidProperty {
                    line: line.to_string(),
                });
            };
            props.push((
                line[..p].trim().to_string(),
                line[p + 1..].trim().to_string(),
            ));
        }
        props.reverse();
        let type_raw = props
            .iter()
            .rev()
            .find(|(k, _)| k == "type_")
            .map(|(_, v)| v.clone())
            .ok_or(ParseError::MissingType)?;
        let code: u32 = type_raw
            .parse()
            .map_err(|_| ParseError::BadType(type_raw))?;
        let head = match split {
            Some(i) => &lines[..i],
            None => &[][..],
        };
        let (title, body) = if head.is_empty() {
            (None, String::new())
        } else {
            let title = head[0].to_string();
            let body = if ItemType::from_code(code) == ItemType::Note && head.len() > 2 {
                head[2..].join("\n")
            } else {
                String::new()
            };
            (Some(title), body)
        };
        Ok(Item { title, body, props })
    }

    /// An item without title or body line (the encrypted outer form).
    pub fn from_props(props: Vec<(String, String)>) -> Item {
        Item {
            title: None,
            body: String::new(),
            props,
        }
    }

    pub fn serialize(&self) -> String {
        let mut parts: Vec<&str> = Vec::with_capacity(3);
        if let Some(t) = &self.title {
            parts.push(t);
        }
        if !self.body.is_empty() {
            parts.push(&self.body);
        }
        let props = self
            .props
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join("\n");
        if !props.is_empty() {
            parts.push(&props);
        }
        parts.join("\n\n")
    }

    /// Raw (escaped) value of a property.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.props
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Property value with Joplin's escaping undone (`\n`, `\r`, `\\n`).
    pub fn get_unescaped(&self, key: &str) -> Option<String> {
        self.get(key).map(unescape)
    }

    /// Set a raw value, keeping the property's position (new ones go before `type_`).
    pub fn set(&mut self, key: &str, raw_value: impl Into<String>) {
        let v = raw_value.into();
        if let Some(slot) = self.props.iter_mut().find(|(k, _)| k == key) {
            slot.1 = v;
            return;
        }
        let at = self
            .props
            .iter()
            .position(|(k, _)| k == "type_")
            .unwrap_or(self.props.len());
        self.props.insert(at, (key.to_string(), v));
    }

    pub fn props(&self) -> &[(String, String)] {
        &self.props
    }

    pub fn id(&self) -> &str {
        self.get("id").unwrap_or("")
    }

    pub fn item_type(&self) -> ItemType {
        ItemType::from_code(self.get("type_").and_then(|t| t.parse().ok()).unwrap_or(0))
    }

    pub fn parent_id(&self) -> &str {
        self.get("parent_id").unwrap_or("")
    }

    pub fn title_or_empty(&self) -> &str {
        self.title.as_deref().unwrap_or("")
    }

    /// True when both items hold the same content, ignoring the restore's stamp fields.
    pub fn same_content(&self, other: &Item) -> bool {
        // No title line equals an empty one: Joplin Server re-serialises an encrypted item
        // (which has no title line) with an empty title line.
        if self.title_or_empty() != other.title_or_empty() || self.body != other.body {
            return false;
        }
        // A field absent on one side equals an empty one on the other: Joplin Server
        // re-serialises items with every field of its own lib version, empty when unknown.
        let unshared = self.unshared_on_one_side(other);
        let strip = |i: &Item| -> Vec<(String, String)> {
            let mut v: Vec<(String, String)> = i
                .props
                .iter()
                .filter(|(k, v)| !STAMP_FIELDS.contains(&k.as_str()) && !v.is_empty())
                .filter(|(k, _)| !(unshared && SHARE_FIELDS.contains(&k.as_str())))
                .cloned()
                .collect();
            v.sort();
            v
        };
        strip(self) == strip(other)
    }

    /// Whether one side has a share and the other none: Joplin Server refuses a share it does
    /// not have, so a restore there writes the item unshared. That is the same content; only
    /// two different shares differ.
    fn unshared_on_one_side(&self, other: &Item) -> bool {
        let share = |i: &Item| i.get("share_id").unwrap_or("").is_empty();
        share(self) != share(other)
    }

    /// Names of the fields whose values differ (stamp fields excluded); for reports.
    pub fn differing_fields(&self, other: &Item) -> Vec<String> {
        let mut out = Vec::new();
        if self.title_or_empty() != other.title_or_empty() {
            out.push("title".into());
        }
        if self.body != other.body {
            out.push("body".into());
        }
        let mut keys: Vec<&str> = self.props.iter().map(|(k, _)| k.as_str()).collect();
        for (k, _) in &other.props {
            if !keys.contains(&k.as_str()) {
                keys.push(k);
            }
        }
        let unshared = self.unshared_on_one_side(other);
        for k in keys {
            if unshared && SHARE_FIELDS.contains(&k) {
                continue;
            }
            if !STAMP_FIELDS.contains(&k) && self.get(k).unwrap_or("") != other.get(k).unwrap_or("")
            {
                out.push(k.to_string());
            }
        }
        out
    }
}

/// Joplin's value escaping, undone: `\\n` → `\n` (two chars), `\n` → newline, `\r` → CR.
pub fn unescape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.peek() {
                Some('n') => {
                    chars.next();
                    out.push('\n');
                    continue;
                }
                Some('r') => {
                    chars.next();
                    out.push('\r');
                    continue;
                }
                Some('\\') => {
                    // `\\n` is an escaped literal backslash-n.
                    let mut look = chars.clone();
                    look.next();
                    if let Some(n @ ('n' | 'r')) = look.peek().copied() {
                        chars.next();
                        chars.next();
                        out.push('\\');
                        out.push(n);
                        continue;
                    }
                }
                _ => {}
            }
        }
        out.push(c);
    }
    out
}

/// Joplin's date format: ISO 8601 UTC with milliseconds.
pub fn format_time(ms: i64) -> String {
    match Utc.timestamp_millis_opt(ms).single() {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => String::new(),
    }
}

/// Parse Joplin's date format back to epoch milliseconds.
pub fn parse_time(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.timestamp_millis())
}

/// True for Joplin item ids: 32 lowercase hex digits.
pub fn is_item_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A new item id in Joplin's form.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOTE: &str = "Title\n\nline 1\n\nkey: like\n\nid: 0006b457342a4b078515990fa709441b\nparent_id: 33891a5cf6a84c18ab0b4de1404c88b2\nupdated_time: 2026-11-25T00:13:52.920Z\nauthor: \ntype_: 1";

    #[test]
    fn parses_title_body_and_props() {
        let it = Item::parse(NOTE).unwrap();
        assert_eq!(it.title.as_deref(), Some("Title"));
        assert_eq!(it.body, "line 1\n\nkey: like");
        assert_eq!(it.id(), "0006b457342a4b078515990fa709441b");
        assert_eq!(it.item_type(), ItemType::Note);
        assert_eq!(it.get("author"), Some(""));
        assert_eq!(it.serialize(), NOTE);
    }

    #[test]
    fn note_tag_has_no_title() {
        let s = "id: 392ebac8e2c84f1dada91adf852e2069\nnote_id: a\ntag_id: b\ntype_: 6";
        let it = Item::parse(s).unwrap();
        assert_eq!(it.title, None);
        assert_eq!(it.serialize(), s);
    }

    #[test]
    fn empty_title_and_trailing_blank_body_lines_round_trip() {
        let folder = "\n\nid: c92807ad73ea40938d12cd5a105b5efe\ntype_: 2";
        let it = Item::parse(folder).unwrap();
        assert_eq!(it.title.as_deref(), Some(""));
        assert_eq!(it.serialize(), folder);
        let note = "T\n\nabc\n\n\n\nid: x\ntype_: 1";
        let it = Item::parse(note).unwrap();
        assert_eq!(it.body, "abc\n\n");
        assert_eq!(it.serialize(), note);
    }

    #[test]
    fn rejects_bad_property_lines_and_missing_type() {
        assert!(matches!(
            Item::parse("T\n\nid: x\nno colon here\ntype_: 1"),
            Err(ParseError::InvalidProperty { .. })
        ));
        assert_eq!(Item::parse("T\n\nid: x"), Err(ParseError::MissingType));
        assert!(matches!(
            Item::parse("T\n\nid: x\ntype_: note"),
            Err(ParseError::BadType(_))
        ));
        assert_eq!(Item::parse_bytes(b"\xff\xfe"), Err(ParseError::NotUtf8));
    }

    #[test]
    fn set_keeps_position_and_same_content_ignores_stamps() {
        let a = Item::parse(NOTE).unwrap();
        let mut b = a.clone();
        b.set("updated_time", "2030-01-01T00:00:00.000Z");
        assert!(a.same_content(&b));
        assert_eq!(
            b.serialize().lines().nth(8),
            Some("updated_time: 2030-01-01T00:00:00.000Z")
        );
        b.set("author", "me");
        assert!(!a.same_content(&b));
        assert_eq!(a.differing_fields(&b), vec!["author".to_string()]);
        b.set("new_field", "1");
        assert!(b.serialize().ends_with("new_field: 1\ntype_: 1"));
    }

    /// Joplin Server writes an item whose share it lacks unshared: shared on one side and
    /// unshared on the other is the same content; two different shares are not.
    #[test]
    fn a_share_the_server_dropped_is_the_same_content() {
        let a = Item::parse(NOTE).unwrap();
        let mut shared = a.clone();
        shared.set("share_id", "5Ssw5sIkYmr1fKwjOLaKxB");
        shared.set("is_shared", "1");
        assert!(a.same_content(&shared));
        assert!(a.differing_fields(&shared).is_empty());
        let mut other = shared.clone();
        other.set("share_id", "AnotherShareId00000000");
        assert!(!shared.same_content(&other));
        assert_eq!(
            shared.differing_fields(&other),
            vec!["share_id".to_string()]
        );
    }

    #[test]
    fn no_title_line_is_the_same_as_an_empty_title() {
        // Joplin's encrypted form has no title line; Joplin Server serves it with an empty one.
        let ours = "id: 0006b457342a4b078515990fa709441b\nencryption_cipher_text: JED01x\n\
                    encryption_applied: 1\ntype_: 2";
        let served = format!("\n\n{ours}\nicon: ");
        let (a, b) = (Item::parse(ours).unwrap(), Item::parse(&served).unwrap());
        assert_eq!((a.title.as_deref(), b.title.as_deref()), (None, Some("")));
        assert!(a.same_content(&b));
        assert!(a.differing_fields(&b).is_empty());
        let titled = Item::parse(&format!("T\n\n{ours}")).unwrap();
        assert!(!a.same_content(&titled));
        assert_eq!(a.differing_fields(&titled), vec!["title".to_string()]);
    }

    #[test]
    fn times_and_ids() {
        let ms = parse_time("2026-11-25T00:13:52.920Z").unwrap();
        assert_eq!(format_time(ms), "2026-11-25T00:13:52.920Z");
        assert!(is_item_id("0006b457342a4b078515990fa709441b"));
        assert!(!is_item_id("0006B457342A4B078515990FA709441B"));
        assert!(!is_item_id("0006b457342a4b078515990fa709441"));
        assert!(is_item_id(&new_id()));
    }

    #[test]
    fn unescapes_values() {
        assert_eq!(unescape("a\\nb"), "a\nb");
        assert_eq!(unescape("a\\\\nb"), "a\\nb");
        assert_eq!(unescape("plain"), "plain");
    }
}
