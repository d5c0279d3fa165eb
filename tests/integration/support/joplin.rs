//! Drive the real Joplin CLI (npm `joplin@3.5.1`, installed by `scripts/install-test-deps.sh`)
//! and read what it holds from its database.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub fn joplin_bin() -> PathBuf {
    let p = super::tools().join("joplin-cli/node_modules/.bin/joplin");
    assert!(
        p.exists(),
        "the real Joplin CLI is not installed at {}: run `bash scripts/install-test-deps.sh` \
         (or set JR_TOOLS to where it is)",
        p.display()
    );
    p
}

/// One Joplin CLI profile in its own folder.
pub struct Profile {
    pub dir: PathBuf,
}

impl Profile {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).unwrap();
        Profile { dir }
    }

    /// Run one CLI command; panics with its output when it fails.
    pub fn run(&self, args: &[&str]) -> String {
        let mut cmd = Command::new(joplin_bin());
        cmd.arg("--profile").arg(&self.dir).args(args);
        // A CLI command that waits for an answer (a confirmation) would hang the suite.
        let out = super::output_within(cmd, Duration::from_secs(300), &format!("joplin {args:?}"));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "joplin {args:?} failed:\n{text}");
        text
    }

    /// Several commands in one node start-up.
    pub fn batch(&self, commands: &[String]) -> String {
        let f = self.dir.join("batch.txt");
        std::fs::write(&f, commands.join("\n")).unwrap();
        self.run(&["batch", f.to_str().unwrap()])
    }

    /// What a client does after the backup was made, for "stale client" tests: deletes two
    /// notes, edits and renames one, adds a note and a notebook (the sample's ids).
    pub fn edit_after_the_backup(&self) {
        self.batch(&[
            "rmnote -f 2ebc0432f27d42fdb982a925c8734636".into(),
            "rmnote -f 7ee20fb52f3c439d9b0cbe6d895d4de4".into(),
            "set 3151c3990c044f74b984078dd0bc8a4c body \"edited after the backup\"".into(),
            "set 3151c3990c044f74b984078dd0bc8a4c title \"Renamed after the backup\"".into(),
            "use Journal".into(),
            "mknote \"Extra note not in the backup\"".into(),
            "mkbook \"Extra notebook\"".into(),
        ]);
    }

    pub fn configure(&self, settings: Value) {
        let f = self.dir.join("sync-config.json");
        std::fs::write(&f, settings.to_string()).unwrap();
        self.run(&["config", "--import-file", f.to_str().unwrap()]);
    }

    /// Point at a filesystem target (sync.target 2).
    pub fn use_folder(&self, target: &Path) {
        self.configure(json!({"sync.target": 2, "sync.2.path": target.to_str().unwrap()}));
    }

    /// `joplin sync`, which exits 0 even when it failed: check its output instead.
    pub fn sync(&self) -> String {
        let out = self.run(&["sync"]);
        assert!(
            !out.contains("Last error") && !out.contains("Fail-safe"),
            "joplin sync reported an error:\n{out}"
        );
        out
    }

    /// Run sync and return its output whatever happened.
    pub fn sync_unchecked(&self) -> String {
        self.run(&["sync"])
    }

    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            self.dir.join("database.sqlite"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap()
    }

    pub fn query(&self, sql: &str) -> Vec<Vec<String>> {
        let db = self.db();
        db.busy_timeout(Duration::from_secs(5)).unwrap();
        let mut st = db.prepare(sql).unwrap();
        let n = st.column_count();
        st.query_map([], |r| {
            Ok((0..n)
                .map(|i| match r.get_ref(i).unwrap() {
                    rusqlite::types::ValueRef::Null => String::new(),
                    rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                    rusqlite::types::ValueRef::Real(v) => v.to_string(),
                    rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                        String::from_utf8_lossy(t).into_owned()
                    }
                })
                .collect())
        })
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
    }

    /// The profile's content in the shape of `sample.manifest.json` (live items only: no
    /// conflicts, nothing in the trash).
    pub fn manifest(&self) -> Value {
        let folders: Vec<Value> = self
            .query("SELECT id, parent_id, title FROM folders WHERE deleted_time = 0 ORDER BY id")
            .into_iter()
            .map(|r| json!({"id": r[0], "parent_id": r[1], "title": r[2]}))
            .collect();
        let tags_rows = self.query("SELECT id, title FROM tags ORDER BY id");
        let tag_titles: BTreeMap<String, String> = tags_rows
            .iter()
            .map(|r| (r[0].clone(), r[1].clone()))
            .collect();
        let tags: Vec<Value> = tags_rows
            .iter()
            .map(|r| json!({"id": r[0], "title": r[1]}))
            .collect();
        let links = self.query("SELECT note_id, tag_id FROM note_tags");
        let notes: Vec<Value> = self
            .query(
                "SELECT id, title, body, parent_id, is_todo, todo_completed FROM notes \
                 WHERE is_conflict = 0 AND deleted_time = 0 ORDER BY id",
            )
            .into_iter()
            .map(|r| {
                let mut t: Vec<String> = links
                    .iter()
                    .filter(|l| l[0] == r[0])
                    .filter_map(|l| tag_titles.get(&l[1]).cloned())
                    .collect();
                t.sort();
                json!({
                    "body_sha256": hex::encode(Sha256::digest(r[2].as_bytes())),
                    "id": r[0],
                    "is_todo": r[4].parse::<i64>().unwrap(),
                    "parent_id": r[3],
                    "tags": t,
                    "title": r[1],
                    "todo_completed": if r[5] == "0" { 0 } else { 1 },
                })
            })
            .collect();
        let resources: Vec<Value> = self
            .query("SELECT id, title, mime, file_extension, size FROM resources ORDER BY id")
            .into_iter()
            .map(|r| {
                let name = if r[3].is_empty() {
                    r[0].clone()
                } else {
                    format!("{}.{}", r[0], r[3])
                };
                let blob = std::fs::read(self.dir.join("resources").join(name)).unwrap_or_default();
                json!({
                    "blob_size": blob.len(),
                    "file_extension": r[3],
                    "id": r[0],
                    "mime": r[2],
                    "sha256": hex::encode(Sha256::digest(&blob)),
                    "size": r[4].parse::<i64>().unwrap(),
                    "title": r[1],
                })
            })
            .collect();
        json!({
            "counts": {
                "folders": folders.len(),
                "note_tags": links.len(),
                "notes": notes.len(),
                "resources": resources.len(),
                "tags": tags.len(),
            },
            "folders": folders,
            "notes": notes,
            "resources": resources,
            "tags": tags,
        })
    }

    pub fn conflict_bodies(&self) -> Vec<String> {
        self.query("SELECT body FROM notes WHERE is_conflict = 1")
            .into_iter()
            .map(|r| r[0].clone())
            .collect()
    }
}

/// Assert two manifests are equal, showing the first difference readably.
/// The profile holds exactly `expected` (see [`assert_manifest_eq`]) and no conflict copy.
pub fn assert_holds_exactly(p: &Profile, expected: &Value, context: &str) {
    assert_manifest_eq(&p.manifest(), expected, context);
    let conflicts = p.conflict_bodies();
    assert!(
        conflicts.is_empty(),
        "{context}: conflict copies {conflicts:?}"
    );
}

pub fn assert_manifest_eq(actual: &Value, expected: &Value, context: &str) {
    if actual == expected {
        return;
    }
    for key in ["counts", "folders", "notes", "resources", "tags"] {
        assert_eq!(
            serde_json::to_string_pretty(&actual[key]).unwrap(),
            serde_json::to_string_pretty(&expected[key]).unwrap(),
            "{context}: `{key}` differs from the manifest"
        );
    }
    panic!("{context}: manifests differ");
}
