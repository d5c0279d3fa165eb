//! Item ids kept without a heap allocation. A large restore holds tables with one id per item
//! (the backup index, the target's listing); as `String`s each id costs 72 bytes (24 inline and
//! a 48-byte allocation), as a [`JoplinId`] 32, and an [`IdTable`] keeps its ids in one sorted
//! vector (a `BTreeMap` adds about half again in nodes).

use std::fmt;
use std::ops::Deref;

use crate::item::is_item_id;

/// A Joplin id (32 lowercase hex digits) as its text, inline. Orders as its text.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JoplinId([u8; 32]);

impl JoplinId {
    /// `None` for anything that is not a Joplin id.
    pub fn parse(s: &str) -> Option<JoplinId> {
        is_item_id(s).then(|| JoplinId(s.as_bytes().try_into().expect("32 bytes")))
    }

    pub fn as_str(&self) -> &str {
        // Only built from a checked id: 32 ASCII hex digits.
        std::str::from_utf8(&self.0).expect("a JoplinId holds ASCII")
    }
}

impl Deref for JoplinId {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for JoplinId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl fmt::Debug for JoplinId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// A map from Joplin ids to `V`, in one vector sorted by id. Built by [`IdTable::push`] in any
/// order and [`IdTable::finish`] once (a listing arrives unsorted), or by
/// [`IdTable::insert`] one at a time.
#[derive(Debug, Clone)]
pub struct IdTable<V> {
    entries: Vec<(JoplinId, V)>,
    /// Entries were pushed since the last sort.
    unsorted: bool,
}

impl<V> Default for IdTable<V> {
    fn default() -> Self {
        IdTable {
            entries: Vec::new(),
            unsorted: false,
        }
    }
}

impl<V> IdTable<V> {
    /// Add an entry without keeping the order; [`IdTable::finish`] before looking anything up.
    pub fn push(&mut self, id: JoplinId, v: V) {
        self.entries.push((id, v));
        self.unsorted = true;
    }

    /// Sort what [`IdTable::push`] added; of one id pushed twice the last one stays.
    pub fn finish(&mut self) {
        if !self.unsorted {
            return;
        }
        // Stable: equal ids keep their push order, and dedup keeps the first of a run.
        self.entries.sort_by_key(|(id, _)| *id);
        self.entries.reverse();
        self.entries.dedup_by_key(|(id, _)| *id);
        self.entries.reverse();
        self.entries.shrink_to_fit();
        self.unsorted = false;
    }

    fn find(&self, id: &str) -> Result<usize, usize> {
        assert!(!self.unsorted, "IdTable looked up before finish()");
        self.entries.binary_search_by(|(k, _)| k.as_str().cmp(id))
    }

    /// Add or replace, keeping the order.
    pub fn insert(&mut self, id: JoplinId, v: V) -> Option<V> {
        match self.find(&id) {
            Ok(k) => Some(std::mem::replace(&mut self.entries[k].1, v)),
            Err(k) => {
                self.entries.insert(k, (id, v));
                None
            }
        }
    }

    pub fn remove(&mut self, id: &str) -> Option<V> {
        self.find(id).ok().map(|k| self.entries.remove(k).1)
    }

    pub fn get(&self, id: &str) -> Option<&V> {
        self.find(id).ok().map(|k| &self.entries[k].1)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut V> {
        self.find(id).ok().map(|k| &mut self.entries[k].1)
    }

    pub fn contains_key(&self, id: &str) -> bool {
        self.find(id).is_ok()
    }

    /// In id order.
    pub fn iter(&self) -> impl Iterator<Item = (&JoplinId, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// In id order.
    pub fn keys(&self) -> impl Iterator<Item = &JoplinId> {
        self.entries.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.unsorted = false;
    }
}

impl<'a, V> IntoIterator for &'a IdTable<V> {
    type Item = (&'a JoplinId, &'a V);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (JoplinId, V)>,
        fn(&'a (JoplinId, V)) -> (&'a JoplinId, &'a V),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(k, v)| (k, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_joplin_ids_parse_and_they_read_back_as_written() {
        let j = JoplinId::parse("0006b457342a4b078515990fa709441b").unwrap();
        assert_eq!(j.as_str(), "0006b457342a4b078515990fa709441b");
        assert_eq!(std::mem::size_of::<JoplinId>(), 32);
        for odd in [
            "",
            "0006B457342A4B078515990FA709441B",
            "abc",
            "not an id at all",
        ] {
            assert!(JoplinId::parse(odd).is_none(), "{odd:?}");
        }
    }

    /// Pushed in any order with repeats, then found by text, in text order, the last push of
    /// an id winning; inserts and removes keep the order.
    #[test]
    fn a_table_pushed_unsorted_is_looked_up_by_text() {
        let ids = [
            "ffffffffffffffffffffffffffffffff",
            "0006b457342a4b078515990fa709441b",
            "a0000000000000000000000000000000",
            "0006b457342a4b078515990fa709441b",
        ];
        let mut t = IdTable::default();
        for (i, s) in ids.iter().enumerate() {
            t.push(JoplinId::parse(s).unwrap(), i);
        }
        t.finish();
        assert_eq!(t.len(), 3);
        assert_eq!(t.get(ids[1]), Some(&3), "the last push wins");
        assert_eq!(t.get(ids[0]), Some(&0));
        assert_eq!(t.get("0006b457342a4b078515990fa709441c"), None);
        let keys: Vec<&str> = t.keys().map(|k| k.as_str()).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);

        let new = JoplinId::parse("1111111111111111111111111111111f").unwrap();
        assert_eq!(t.insert(new, 9), None);
        assert_eq!(t.insert(new, 10), Some(9));
        *t.get_mut(ids[2]).unwrap() += 100;
        assert_eq!(t.get(ids[2]), Some(&102));
        assert_eq!(t.remove(ids[0]), Some(0));
        assert!(!t.contains_key(ids[0]));
        let keys: Vec<&str> = t.keys().map(|k| k.as_str()).collect();
        assert_eq!(
            keys,
            [ids[1], "1111111111111111111111111111111f", ids[2]].to_vec()
        );
        t.clear();
        assert!(t.is_empty());
    }
}
