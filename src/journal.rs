//! The resume journal: a local, append-only record of one restore into one target, so a rerun
//! after a crash or Ctrl-C keeps the snapshot and lock ids, does not clear again, and skips what
//! is done. One JSON object per line; a torn last line (kill -9) is ignored.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Line {
    Start {
        backup: String,
        target: String,
        stamp_ms: i64,
        id_seed: u64,
        /// Client id of our lock, so a resumed run can remove the lock a killed one left.
        #[serde(default)]
        lock_id: Option<String>,
        /// The snapshot taken before the first run changed anything: the way back for every
        /// run that continues it (a later snapshot would hold a half-restored target).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        snapshot: Option<PathBuf>,
        /// The process and machine of the run that wrote this line: `unlock` tells a killed
        /// run's lock from a running one's by them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pid: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
    },
    /// A lock id an earlier, killed run used (it may still be on the target).
    OldLock {
        id: String,
    },
    Cleared,
    Done {
        path: String,
    },
}

/// What an earlier, unfinished run of the same restore left.
#[derive(Debug, Default, Clone)]
pub struct Resume {
    pub stamp_ms: i64,
    pub id_seed: u64,
    /// Every lock id a run of this restore used: a kill can land before or after the lock is
    /// written or replaced, so all of them are ours to remove.
    pub lock_ids: Vec<String>,
    pub cleared: bool,
    pub done: HashSet<String>,
    /// The snapshot taken before the first of these runs changed anything.
    pub snapshot: Option<PathBuf>,
    /// When the journal was last written (local clock, ms): the interrupted run's last
    /// finished upload, near enough.
    pub last_write_ms: Option<i64>,
    /// Process id and host of the run that wrote the journal last (its lock is `lock_ids[0]`).
    pub run: Option<(u64, String)>,
}

impl Resume {
    /// Whether what the journal calls done can be trusted on a target whose newest file is
    /// `newest_ms` (its clock `offset` ms ahead of ours): not when a file there is newer than
    /// the journal's last line, beyond a 2-second allowance for 1-second listing times and
    /// the clock probe. A client synced, or a rollback ran, in between, and an edit that kept
    /// a file's size would pass for our upload.
    pub fn holds_for(&self, newest_ms: Option<i64>, offset: i64) -> bool {
        newest_ms.is_none_or(|newest| !self.written_after(newest, offset))
    }

    /// Whether a file listed with time `ms` was written after the journal's last line (so by
    /// someone else, after the interrupted run stopped), with the same allowance.
    pub fn written_after(&self, ms: i64, offset: i64) -> bool {
        self.last_write_ms
            .is_none_or(|last| ms > last + offset + 2_000)
    }
}

/// What a run records when it starts.
pub struct JournalStart {
    pub stamp_ms: i64,
    pub id_seed: u64,
    pub backup: PathBuf,
    pub target: String,
    /// The snapshot of the target before anything was changed (the earlier run's on resume).
    pub snapshot: Option<PathBuf>,
}

pub struct Journal {
    path: PathBuf,
    file: Mutex<File>,
    /// `Some` when this run continues an interrupted one.
    pub resumed: Option<Resume>,
    /// Client id of this run's lock on the target. The journal names it before the lock
    /// exists, so a kill at any point leaves a lock the next run recognises as its own.
    pub lock_id: String,
}

/// Default place: `$XDG_STATE_HOME/joplin-restore/journals` (or `~/.local/state/…`).
pub fn default_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("joplin-restore/journals");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(h).join(".local/state/joplin-restore/journals");
    }
    PathBuf::from("joplin-restore-journals")
}

/// Identify "the same restore": the backup file (path, size, mtime), the target and the options
/// that change what gets written.
pub fn key(backup: &Path, target: &str, options: &str) -> String {
    let meta = std::fs::metadata(backup).ok();
    let mut h = Sha256::new();
    h.update(
        std::fs::canonicalize(backup)
            .unwrap_or_else(|_| backup.to_path_buf())
            .to_string_lossy()
            .as_bytes(),
    );
    if let Some(m) = meta {
        h.update(m.len().to_le_bytes());
        if let Ok(t) = m.modified() {
            h.update(format!("{t:?}").as_bytes());
        }
    }
    h.update(target.as_bytes());
    h.update(options.as_bytes());
    hex::encode(&h.finalize()[..12])
}

fn read(path: &Path) -> Option<Resume> {
    let f = File::open(path).ok()?;
    let mut r: Option<Resume> = None;
    for line in BufReader::new(f).lines() {
        let Ok(line) = line else { break };
        match serde_json::from_str::<Line>(&line) {
            Ok(Line::Start {
                stamp_ms,
                id_seed,
                lock_id,
                snapshot,
                pid,
                host,
                ..
            }) => {
                r = Some(Resume {
                    stamp_ms,
                    id_seed,
                    lock_ids: lock_id.into_iter().collect(),
                    snapshot,
                    run: pid.zip(host),
                    ..Default::default()
                })
            }
            Ok(Line::OldLock { id }) => {
                if let Some(r) = r.as_mut().filter(|r| !r.lock_ids.contains(&id)) {
                    r.lock_ids.push(id);
                }
            }
            Ok(Line::Cleared) => {
                if let Some(r) = r.as_mut() {
                    r.cleared = true
                }
            }
            Ok(Line::Done { path }) => {
                if let Some(r) = r.as_mut() {
                    r.done.insert(path);
                }
            }
            // A torn line from a killed run: everything before it still counts.
            Err(_) => break,
        }
    }
    if let Some(r) = r.as_mut() {
        r.last_write_ms = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64);
    }
    r
}

/// The lock client ids of every unfinished run whose journal is in `dir`, each with whether
/// its run still goes (`None`: cannot tell): a lock in a backend's own lock service (Joplin
/// Server) with one of these ids was taken by a run of ours on this machine, so `unlock` may
/// remove it once that run is gone.
pub fn unfinished_lock_ids(dir: &Path) -> HashMap<String, Option<bool>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return HashMap::new();
    };
    let mut ids = HashMap::new();
    for r in entries
        .flatten()
        .take(10_000)
        .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
        .filter_map(|e| read(&e.path()))
    {
        // Only the newest lock can belong to a run still going: the older ones' runs were
        // continued by it.
        let going = r
            .run
            .as_ref()
            .and_then(|(pid, host)| crate::target::run_going(*pid, host));
        for (n, id) in r.lock_ids.into_iter().enumerate() {
            ids.insert(id, if n == 0 { going } else { Some(false) });
        }
    }
    ids
}

impl Journal {
    /// What an unfinished earlier run of the same restore left, if anything.
    pub fn peek(dir: &Path, key: &str) -> Option<Resume> {
        read(&dir.join(format!("{key}.jsonl")))
    }

    /// Start (or continue, with `resumed`) the journal for `key`.
    pub fn begin(
        dir: &Path,
        key: &str,
        resumed: Option<Resume>,
        start: JournalStart,
    ) -> Result<Journal> {
        std::fs::create_dir_all(dir).with_context(|| {
            format!(
                "cannot create the journal folder {} (choose another with --journal-dir)",
                dir.display()
            )
        })?;
        let path = dir.join(format!("{key}.jsonl"));
        let lock_id = crate::item::new_id();
        // Rewrite the journal compactly, so a torn line from a killed run is gone.
        let mut text = serde_json::to_string(&Line::Start {
            backup: start.backup.display().to_string(),
            target: start.target,
            stamp_ms: start.stamp_ms,
            id_seed: start.id_seed,
            lock_id: Some(lock_id.clone()),
            snapshot: start.snapshot,
            pid: Some(u64::from(std::process::id())),
            host: crate::target::this_host(),
        })?;
        text.push('\n');
        if let Some(r) = &resumed {
            for id in &r.lock_ids {
                text.push_str(&serde_json::to_string(&Line::OldLock { id: id.clone() })?);
                text.push('\n');
            }
            if r.cleared {
                text.push_str(&serde_json::to_string(&Line::Cleared)?);
                text.push('\n');
            }
            for p in &r.done {
                text.push_str(&serde_json::to_string(&Line::Done { path: p.clone() })?);
                text.push('\n');
            }
        }
        let tmp = path.with_extension("jsonl.tmp");
        std::fs::write(&tmp, text)
            .with_context(|| format!("cannot write the journal {}", tmp.display()))?;
        std::fs::rename(&tmp, &path)?;
        let file = OpenOptions::new().append(true).open(&path)?;
        Ok(Journal {
            path,
            file: Mutex::new(file),
            resumed,
            lock_id,
        })
    }

    /// The lock ids of the interrupted runs this one continues: theirs to reclaim.
    pub fn earlier_locks(&self) -> &[String] {
        self.resumed.as_ref().map_or(&[], |r| &r.lock_ids)
    }

    fn append(&self, line: &Line) {
        let text = serde_json::to_string(line).expect("journal lines serialise");
        let mut f = self.file.lock().expect("poisoned");
        // One write per line: a kill leaves at worst one torn last line, which readers skip.
        if let Err(e) = f.write_all(format!("{text}\n").as_bytes()) {
            tracing::warn!(
                "cannot write the resume journal {}: {e}",
                self.path.display()
            );
        }
    }

    pub fn record_done(&self, path: &str) {
        self.append(&Line::Done {
            path: path.to_string(),
        });
    }

    pub fn record_cleared(&self) {
        self.append(&Line::Cleared);
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Take the target's lock for this journaled run. Refused (another client's active lock)
    /// before a first run wrote anything: the fresh journal goes too, so the next run is not
    /// taken for a resume (it said "resuming an interrupted restore"). `keep`: the run has
    /// something the next one must find (a snapshot it took), so the journal stays.
    pub async fn lock(
        self,
        target: &crate::target::SyncTarget,
        force: bool,
        keep: bool,
    ) -> Result<(crate::target::TargetLock, Journal)> {
        match target
            .acquire_lock(force, self.earlier_locks(), &self.lock_id)
            .await
        {
            Ok(lock) => Ok((lock, self)),
            Err(e) => {
                if !keep && self.resumed.is_none() && crate::exit::is_refusal(&e) {
                    let _ = self.finish();
                }
                Err(e)
            }
        }
    }

    /// The restore finished: nothing left to resume.
    pub fn finish(self) -> Result<()> {
        drop(self.file);
        std::fs::remove_file(&self.path)
            .with_context(|| format!("removing the finished journal {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(stamp_ms: i64, id_seed: u64) -> JournalStart {
        JournalStart {
            stamp_ms,
            id_seed,
            backup: "b".into(),
            target: "t".into(),
            snapshot: None,
        }
    }

    #[test]
    fn resumes_stamp_clear_and_done_and_skips_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert!(Journal::peek(d, "k").is_none());
        let j = Journal::begin(d, "k", None, start(42, 7)).unwrap();
        assert!(j.earlier_locks().is_empty());
        let first_lock = j.lock_id.clone();
        j.record_cleared();
        j.record_done("a.md");
        j.record_done(".resource/b");
        drop(j);
        let p = d.join("k.jsonl");
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"done\":{\"pa").unwrap();
        let r = Journal::peek(d, "k").unwrap();
        assert_eq!((r.stamp_ms, r.id_seed, r.cleared), (42, 7, true));
        assert_eq!(r.lock_ids, vec![first_lock.clone()]);
        assert_eq!(r.done.len(), 2);
        let j = Journal::begin(d, "k", Some(r), start(42, 7)).unwrap();
        assert_eq!(j.earlier_locks(), std::slice::from_ref(&first_lock));
        assert_ne!(j.lock_id, first_lock);
        let second_lock = j.lock_id.clone();
        // Lines recorded after a torn one still count on the next resume, and every lock id
        // used so far is remembered.
        j.record_done("c.md");
        drop(j);
        let r = Journal::peek(d, "k").unwrap();
        assert_eq!(r.done.len(), 3);
        assert_eq!(r.lock_ids, vec![second_lock, first_lock]);
        let j = Journal::begin(d, "k", None, start(1, 1)).unwrap();
        j.finish().unwrap();
        assert!(!p.exists());
    }

    #[test]
    fn the_first_runs_snapshot_is_kept_across_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let first = JournalStart {
            snapshot: Some(PathBuf::from("/snaps/snapshot-1")),
            ..start(5, 6)
        };
        drop(Journal::begin(d, "k", None, first).unwrap());
        let r = Journal::peek(d, "k").unwrap();
        assert_eq!(r.snapshot.as_deref(), Some(Path::new("/snaps/snapshot-1")));
        // The resumed run passes it on, so a third run still finds it.
        let again = JournalStart {
            snapshot: r.snapshot.clone(),
            ..start(5, 6)
        };
        drop(Journal::begin(d, "k", Some(r), again).unwrap());
        let r = Journal::peek(d, "k").unwrap();
        assert_eq!(r.snapshot.as_deref(), Some(Path::new("/snaps/snapshot-1")));
        // A journal written before snapshots were recorded still reads.
        let p = d.join("old.jsonl");
        std::fs::write(
            &p,
            "{\"start\":{\"backup\":\"b\",\"target\":\"t\",\"stamp_ms\":1,\"id_seed\":2}}\n",
        )
        .unwrap();
        let r = Journal::peek(d, "old").unwrap();
        assert_eq!((r.stamp_ms, r.snapshot), (1, None));
        // A fresh start forgets the earlier snapshot.
        drop(Journal::begin(d, "k", None, start(1, 1)).unwrap());
        assert_eq!(Journal::peek(d, "k").unwrap().snapshot, None);
    }
}
