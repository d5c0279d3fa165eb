//! [`Id`]: an item id kept without a heap allocation. A large restore holds several tables with
//! one id per item (the backup index, the target listing, the plan); as `String`s each id costs
//! 72 bytes (24 inline and a 48-byte allocation), as an `Id` 40.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use crate::item::is_item_id;

/// An item id: inline when it is a Joplin id (32 lowercase hex digits), as nearly every one is;
/// anything else (a damaged backup's ids, which validation reports) as written. Compares,
/// hashes and borrows as its text, so maps keyed by `Id` are looked up with a `&str`.
#[derive(Clone)]
pub enum Id {
    Joplin([u8; 32]),
    Other(Box<str>),
}

impl Id {
    pub fn new(s: &str) -> Id {
        if is_item_id(s) {
            let mut b = [0u8; 32];
            b.copy_from_slice(s.as_bytes());
            Id::Joplin(b)
        } else {
            Id::Other(s.into())
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            // Only built from a checked id: 32 ASCII hex digits.
            Id::Joplin(b) => std::str::from_utf8(b).expect("an Id holds ASCII"),
            Id::Other(s) => s,
        }
    }
}

impl From<&str> for Id {
    fn from(s: &str) -> Id {
        Id::new(s)
    }
}

impl Deref for Id {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Id {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Id {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

// By text, as `Borrow<str>` requires (an `Other` may sort between two `Joplin` ids).
impl PartialEq for Id {
    fn eq(&self, other: &Id) -> bool {
        self.as_str() == other.as_str()
    }
}
impl Eq for Id {}
impl PartialOrd for Id {
    fn partial_cmp(&self, other: &Id) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Id {
    fn cmp(&self, other: &Id) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}
impl Hash for Id {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}
impl PartialEq<str> for Id {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}
impl PartialEq<&str> for Id {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashSet};

    #[test]
    fn joplin_ids_are_inline_and_others_kept_as_written() {
        let j = Id::new("0006b457342a4b078515990fa709441b");
        assert!(matches!(j, Id::Joplin(_)));
        assert_eq!(j.as_str(), "0006b457342a4b078515990fa709441b");
        for odd in [
            "",
            "0006B457342A4B078515990FA709441B",
            "abc",
            "not an id at all",
        ] {
            let o = Id::new(odd);
            assert!(matches!(o, Id::Other(_)), "{odd:?}");
            assert_eq!(o.as_str(), odd);
        }
        assert!(std::mem::size_of::<Id>() <= 40);
    }

    #[test]
    fn maps_keyed_by_id_are_looked_up_by_text_in_text_order() {
        let ids = [
            "ffffffffffffffffffffffffffffffff",
            "Zebra",
            "0006b457342a4b078515990fa709441b",
            "a",
        ];
        let map: BTreeMap<Id, usize> = ids
            .iter()
            .enumerate()
            .map(|(i, s)| (Id::new(s), i))
            .collect();
        for (i, s) in ids.iter().enumerate() {
            assert_eq!(map.get(*s), Some(&i));
        }
        let mut sorted: Vec<&str> = ids.to_vec();
        sorted.sort();
        assert_eq!(map.keys().map(Id::as_str).collect::<Vec<_>>(), sorted);
        let set: HashSet<Id> = ids.iter().map(|s| Id::new(s)).collect();
        assert!(ids.iter().all(|s| set.contains(*s)));
        assert!(!set.contains("0006b457342a4b078515990fa709441c"));
    }
}
