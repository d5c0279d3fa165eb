//! Sync-target semantics (layout v3) on top of any [`Storage`]: `info.json`, what is on the
//! target, the remote clock, and the advisory sync lock.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::exit::Refusal;
use anyhow::{Context, Result};
use backend_core::{Entry, ListSink, Storage, StorageError, Unpaced};
use bytes::Bytes;
use serde_json::{json, Value};

use crate::id::{IdTable, JoplinId};

/// The sync format version this tool reads and writes (Joplin 2.x–3.x).
pub const SYNC_VERSION: i64 = 3;

/// Why a target of sync version `v` is not handled, and what to do about it: an older target is
/// upgraded by a current Joplin client; a newer one needs a newer joplin-restore.
/// `legacy`: the version was read from the layout before info.json (`.sync/version.txt`).
pub fn unsupported_version(v: i64, legacy: bool) -> String {
    let said = if legacy {
        format!("the target has .sync/version.txt and no info.json: sync version {v}")
    } else {
        format!("info.json says sync version {v}")
    };
    if v < SYNC_VERSION {
        format!(
            "{said}, from an older Joplin; this tool handles version \
             {SYNC_VERSION} (Joplin 2.x–3.x). Upgrade the target with a current Joplin client \
             first (the desktop app offers it when it syncs; the CLI: `joplin sync --upgrade`), \
             then rerun. Writing here now would skip that upgrade and lose what it carries \
             over (end-to-end encryption keys)."
        )
    } else {
        format!(
            "{said}, written by a Joplin newer than this tool knows \
             (it handles version {SYNC_VERSION}, Joplin 2.x–3.x). Update joplin-restore; until \
             then nothing is written to this target."
        )
    }
}

pub const INFO_JSON: &str = "info.json";
pub const RESOURCE_DIR: &str = ".resource";
pub const LOCKS_DIR: &str = "locks";
pub const TEMP_DIR: &str = "temp";
/// Folders a file system or an OS makes at a disk's root (a new disk as the target is fine).
fn made_by_the_system(name: &str) -> bool {
    matches!(
        name,
        "lost+found"
            | ".Trashes"
            | ".Spotlight-V100"
            | ".fseventsd"
            | "$RECYCLE.BIN"
            | "System Volume Information"
    ) || name.starts_with(".Trash-")
}

/// Folders a Joplin sync target has at its root (`.sync` and `.lock` from sync version 1).
const JOPLIN_DIRS: &[&str] = &[RESOURCE_DIR, LOCKS_DIR, TEMP_DIR, ".sync", ".lock"];
/// Joplin's lock time-to-live (`LockHandler` default).
pub const LOCK_TTL: Duration = Duration::from_secs(180);

/// Whether a lock refreshed `age_ms` ago is active: as Joplin decides (`now - updatedTime <
/// ttl`), so one dated in the future (its client's clock runs ahead) is active too.
pub fn lock_active(age_ms: i64) -> bool {
    age_ms < LOCK_TTL.as_millis() as i64
}

/// A lock of Joplin Server's lock service, stamped by the server's clock and aged by ours (a
/// clock probe would write to the target): one dated ahead of our clock tells our clock is
/// behind, not that the lock is fresh, so only a few seconds of that count as active. The
/// server's own lock request is the real check.
pub fn server_lock_active(age_ms: i64) -> bool {
    age_ms >= -5_000 && lock_active(age_ms)
}

/// "refreshed N s ago", or how far in the future a lock is dated (`by_server`: stamped by
/// Joplin Server's clock, aged by this machine's).
pub fn refreshed(age_secs: i64, by_server: bool) -> String {
    match (age_secs < 0, by_server) {
        (false, _) => format!("refreshed {age_secs} s ago"),
        (true, false) => format!(
            "dated {} s in the future: its client's clock runs ahead",
            -age_secs
        ),
        (true, true) => format!(
            "stamped {} s ahead of this machine's clock: the server's clock runs ahead",
            -age_secs
        ),
    }
}
/// Joplin client type code for CLI clients (`LockClientType.Cli`).
const CLIENT_TYPE_CLI: u32 = 3;

pub fn item_path(id: &str) -> String {
    format!("{id}.md")
}
pub fn blob_path(id: &str) -> String {
    format!("{RESOURCE_DIR}/{id}")
}

/// The item id of a root file name `<id>.md`; `None` for any other root file.
pub fn item_file_id(name: &str) -> Option<JoplinId> {
    name.strip_suffix(".md").and_then(JoplinId::parse)
}

/// The resource id of a file name in `.resource/`; `None` for a name that is not one.
pub fn blob_file_id(name: &str) -> Option<JoplinId> {
    JoplinId::parse(name)
}

/// The `info.json` a Joplin client writes on a fresh unencrypted target.
pub fn default_info_json() -> Value {
    json!({
        "version": SYNC_VERSION,
        "e2ee": {"value": false, "updatedTime": 0},
        "activeMasterKeyId": {"value": "", "updatedTime": 0},
        "masterKeys": [],
        "ppk": {"value": null, "updatedTime": 0},
        "appMinVersion": "3.0.0"
    })
}

/// Serialise like Joplin (`JSON.stringify(info, null, '\t')`).
pub fn info_json_bytes(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    serde::Serialize::serialize(v, &mut ser).expect("JSON value serialises");
    out
}

/// What a listing says of one item file or blob; its path follows from its id
/// ([`item_path`], [`blob_path`]). Kept small: a listing holds one per file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed {
    pub size: u64,
    /// Modification time (ms, the target's clock), `i64::MIN` when the listing gives none: a
    /// later listing showing another time shows a write in between.
    pub modified_ms: i64,
}

impl Listed {
    pub fn of_size(size: u64) -> Listed {
        Listed {
            size,
            modified_ms: i64::MIN,
        }
    }
}

impl From<&Entry> for Listed {
    fn from(e: &Entry) -> Listed {
        Listed {
            size: e.size,
            modified_ms: e.modified.map(system_ms).unwrap_or(i64::MIN),
        }
    }
}

/// Everything a listing of the target shows.
#[derive(Debug, Default, Clone)]
pub struct TargetState {
    pub info: Option<Value>,
    /// Item id → what the listing showed of `<id>.md`.
    pub items: IdTable<Listed>,
    /// Resource id → what the listing showed of `.resource/<id>`.
    pub blobs: IdTable<Listed>,
    pub locks: Vec<Entry>,
    /// Root files that are not part of a Joplin target.
    pub foreign: Vec<Entry>,
    /// Root folders that are not Joplin's (`.resource/`, `locks/`, `temp/`, the old `.sync/`
    /// and `.lock/`): someone's documents, if the target is not a Joplin one.
    pub foreign_dirs: Vec<String>,
    /// Files in `.resource/` whose name is not a resource id.
    pub foreign_blobs: Vec<Entry>,
    /// Whether the root listing showed `info.json`.
    pub info_listed: bool,
    /// `.sync/version.txt` without `info.json`: the layout of Joplin before sync version 3,
    /// which Joplin reads as version 1 and upgrades itself (its keys, if any, are items).
    pub legacy_layout: bool,
    /// The newest modification time (ms) the listing showed of an item file, of a blob.
    pub newest_item_ms: Option<i64>,
    pub newest_blob_ms: Option<i64>,
}

impl TargetState {
    /// The refusal of a run whose target changed between its listing and its lock (call
    /// after releasing the lock).
    pub fn changed_meanwhile(describe: &str) -> anyhow::Error {
        Refusal(format!(
            "{describe} changed after this run read it (another joplin-restore run, or a \
             client, wrote to it meanwhile); nothing was written. Run the same command again: \
             it reads the target afresh."
        ))
        .into()
    }

    /// Whether `later`, a listing taken after this one, shows the same item files and blobs
    /// (ids, sizes, newest times): nobody wrote items to the target in between.
    pub fn unchanged_in(&self, later: &TargetState) -> bool {
        self.newest_item_ms == later.newest_item_ms
            && self.newest_blob_ms == later.newest_blob_ms
            && self.items.iter().eq(later.items.iter())
            && self.blobs.iter().eq(later.blobs.iter())
    }

    /// Every file the listing showed at the root and in `.resource/` (paths), so a snapshot
    /// taken right after need not list the target again.
    pub fn files(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .items
            .keys()
            .map(|id| item_path(id))
            .chain(self.foreign.iter().map(|e| e.path.clone()))
            .chain(self.blobs.keys().map(|id| blob_path(id)))
            .chain(self.foreign_blobs.iter().map(|e| e.path.clone()))
            .collect();
        if self.info_listed {
            out.push(INFO_JSON.to_string());
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.info.is_none() && self.items.is_empty() && self.blobs.is_empty()
    }

    /// The sync version as Joplin reads it (`fetchSyncInfo`): info.json's, or 1 for the layout
    /// before info.json.
    pub fn sync_version(&self) -> Option<i64> {
        self.version().or(self.legacy_layout.then_some(1))
    }

    /// Why this target's sync version is not one this tool writes or reads, if it is not.
    pub fn unsupported(&self) -> Option<String> {
        self.sync_version()
            .filter(|v| *v != SYNC_VERSION)
            .map(|v| unsupported_version(v, self.legacy_layout))
    }
    /// The newest modification time (ms) of an item file or blob.
    pub fn newest_ms(&self) -> Option<i64> {
        self.newest_item_ms.max(self.newest_blob_ms)
    }
    /// Whether info.json lists master keys (kept when E2EE is turned off).
    pub fn has_master_keys(&self) -> bool {
        self.info
            .as_ref()
            .and_then(|i| i.get("masterKeys"))
            .and_then(Value::as_array)
            .is_some_and(|k| !k.is_empty())
    }
    pub fn e2ee_enabled(&self) -> bool {
        self.info
            .as_ref()
            .and_then(|i| i.pointer("/e2ee/value"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
    pub fn version(&self) -> Option<i64> {
        self.info
            .as_ref()
            .and_then(|i| i.get("version"))
            .and_then(Value::as_i64)
    }
}

/// Sorts the root listing into a [`TargetState`].
struct RootSink<'a>(&'a mut TargetState);

impl ListSink for RootSink<'_> {
    fn add(&mut self, e: Entry) {
        let st = &mut *self.0;
        let name = e.name();
        if e.is_dir {
            let path = e.path.trim_end_matches('/');
            let name = path.rsplit('/').next().unwrap_or(path);
            if !JOPLIN_DIRS.contains(&name) && !made_by_the_system(name) && !name.is_empty() {
                st.foreign_dirs.push(format!("{name}/"));
            }
            return;
        }
        if let Some(id) = item_file_id(name) {
            st.items.push(id, Listed::from(&e));
            st.newest_item_ms = st.newest_item_ms.max(e.modified.map(system_ms));
        } else if name == INFO_JSON {
            st.info_listed = true;
        } else {
            st.foreign.push(e);
        }
    }
    fn restart(&mut self) {
        let st = &mut *self.0;
        st.items.clear();
        st.foreign.clear();
        st.foreign_dirs.clear();
        st.info_listed = false;
        st.newest_item_ms = None;
    }
}

/// Sorts the listing of `.resource/` into a [`TargetState`].
struct ResourceSink<'a>(&'a mut TargetState);

impl ListSink for ResourceSink<'_> {
    fn add(&mut self, e: Entry) {
        if e.is_dir {
            return;
        }
        let st = &mut *self.0;
        if let Some(id) = blob_file_id(e.name()) {
            st.blobs.push(id, Listed::from(&e));
            st.newest_blob_ms = st.newest_blob_ms.max(e.modified.map(system_ms));
        } else {
            st.foreign_blobs.push(e);
        }
    }
    fn restart(&mut self) {
        self.0.blobs.clear();
        self.0.foreign_blobs.clear();
        self.0.newest_blob_ms = None;
    }
}

#[derive(Debug, Clone)]
pub struct SyncTarget {
    pub storage: Arc<dyn Storage>,
}

impl SyncTarget {
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        SyncTarget { storage }
    }

    pub fn describe(&self) -> String {
        self.storage.describe()
    }

    pub async fn read_info(&self) -> Result<Option<Value>> {
        match self.storage.get(INFO_JSON).await {
            Ok(b) => {
                let v: Value = serde_json::from_slice(&b).with_context(|| {
                    format!(
                        "{}: info.json is not valid JSON. The target is damaged; \
                         take a copy of it and let a Joplin client repair it, or use --full-reset \
                         where offered.",
                        self.describe()
                    )
                })?;
                Ok(Some(v))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e).with_context(|| format!("{}: reading info.json", self.describe())),
        }
    }

    /// List the target (root, `.resource/`, `locks/`).
    pub async fn state(&self) -> Result<TargetState> {
        let ctx = || format!("listing {}", self.describe());
        let mut st = TargetState {
            info: self.read_info().await?,
            ..Default::default()
        };
        // Sorted as they come: a large target's listing is never held whole next to the maps.
        self.storage
            .list_each("", &Unpaced, &mut RootSink(&mut st))
            .await
            .with_context(ctx)?;
        self.storage
            .list_each(RESOURCE_DIR, &Unpaced, &mut ResourceSink(&mut st))
            .await
            .with_context(ctx)?;
        st.items.finish();
        st.blobs.finish();
        if st.info.is_none() {
            // As Joplin's `fetchSyncInfo`: no info.json but `.sync/version.txt` is version 1.
            st.legacy_layout = match self.storage.get(".sync/version.txt").await {
                Ok(_) => true,
                Err(e) if e.is_not_found() => false,
                Err(e) => return Err(anyhow::Error::new(e).context(ctx())),
            };
        }
        st.locks = self
            .storage
            .list(LOCKS_DIR)
            .await
            .with_context(ctx)?
            .into_iter()
            .filter(|e| !e.is_dir)
            .collect();
        Ok(st)
    }

    /// Refuse targets we must not write to. `force` skips the "not a Joplin target" guard.
    pub fn check_writable(&self, st: &TargetState, force: bool) -> Result<()> {
        // Refusals (exit 4): nothing was wrong with the run, the target is unsafe to write.
        let refuse = |msg: String| Err(Refusal(msg).into());
        if let Some(why) = st.unsupported() {
            return refuse(format!("{}: {why}", self.describe()));
        }
        if st.version().is_none() && st.info.is_some() {
            return refuse(format!(
                "{}: info.json has no sync version. The target is damaged or not a Joplin target.",
                self.describe()
            ));
        }
        // Folders count too: a `~/Documents` or a Nextcloud home may hold only folders.
        if st.info.is_none() && !(st.foreign.is_empty() && st.foreign_dirs.is_empty()) && !force {
            let names: Vec<&str> = st
                .foreign_dirs
                .iter()
                .map(String::as_str)
                .chain(st.foreign.iter().map(|e| e.path.as_str()))
                .take(5)
                .collect();
            return refuse(format!(
                "{} is not empty and is not a Joplin sync target (no info.json; it holds {:?}…). \
                 Refusing to write into it. Point --target at the folder Joplin syncs to, or at a \
                 new empty folder, or pass --force if you are sure.",
                self.describe(),
                names
            ));
        }
        Ok(())
    }

    /// Create the root, `info.json` (only when missing) and the folders a client expects.
    pub async fn ensure_layout(&self, st: &TargetState) -> Result<()> {
        let ctx = || format!("preparing {}", self.describe());
        self.storage.ensure_root().await.with_context(ctx)?;
        for d in [RESOURCE_DIR, LOCKS_DIR, TEMP_DIR] {
            self.storage.mkdir(d).await.with_context(ctx)?;
        }
        if st.info.is_none() {
            self.storage
                .put(
                    INFO_JSON,
                    Bytes::from(info_json_bytes(&default_info_json())),
                )
                .await
                .with_context(ctx)?;
        }
        Ok(())
    }

    /// The target's clock, measured like Joplin's `fetchRemoteDateOffset`: write a temp file and
    /// read its modification time. Returns (remote now, offset = remote − local) in ms.
    pub async fn remote_clock(&self) -> Result<(i64, i64)> {
        let path = format!("{TEMP_DIR}/timeCheck{}.txt", crate::item::new_id());
        // The moment the probe goes out, not when it was queued: behind --tpslimit the wait
        // would count as clock offset.
        let sent = std::sync::atomic::AtomicI64::new(now_ms());
        let probe = |_: &str| {
            sent.store(now_ms(), std::sync::atomic::Ordering::Relaxed);
            Ok(Bytes::from_static(b"timeCheck"))
        };
        let put = self.storage.put_made(&path, 9, &probe).await;
        let before = sent.load(std::sync::atomic::Ordering::Relaxed);
        let after = now_ms();
        if let Err(e) = put {
            // No temp/ (a target not set up yet) or read-only: use our own clock.
            tracing::debug!(
                "{}: no clock probe ({e}); using the local clock",
                self.describe()
            );
            return Ok((before, 0));
        }
        let st = self.storage.stat(&path).await;
        let _ = self.storage.delete(&path).await;
        let local = (before + after) / 2;
        let remote = st
            .ok()
            .flatten()
            .and_then(|e| e.modified)
            .map(system_ms)
            // A 1-second listing (Apache's getlastmodified, S3's LastModified) floors the
            // server's time: take the end of that second, or every restore would be stamped up
            // to a second early, older than an edit a client made just before, and lose to it.
            .map(|r| {
                if self.storage.capabilities().coarse_mtime {
                    r - r.rem_euclid(1000) + 999
                } else {
                    r
                }
            })
            .unwrap_or(local);
        Ok((remote, remote - local))
    }

    /// On a target whose listings give whole seconds, a client that synced during the second
    /// of the newest file recorded the files of that second as seen, and skips them on its next
    /// sync while their time still reads that second (Joplin's delta: `filesAtTimestamp`). So
    /// before writing, wait until the target's clock is past that second (at most ~2 s, only
    /// when a file is that recent). `remote_now`/`offset` come from [`Self::remote_clock`].
    pub async fn wait_past_newest_second(&self, state: &TargetState, remote_now: i64, offset: i64) {
        if !self.storage.capabilities().coarse_mtime {
            return;
        }
        if let Some(wait) = wait_for_next_second(state.newest_ms(), remote_now, offset, now_ms()) {
            tracing::info!(
                "{}: files written this second; waiting {} ms so clients see ours as newer",
                self.describe(),
                wait.as_millis()
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// Take Joplin's exclusive sync lock (advisory: only clients ≤ 3.1 honour it).
    ///
    /// `reclaim` names the client ids of locks interrupted runs of ours left (from the
    /// journal): those are removed instead of blocking us.
    pub async fn acquire_lock(
        &self,
        force: bool,
        reclaim: &[String],
        client_id: &str,
    ) -> Result<TargetLock> {
        // Backends with their own lock service (Joplin Server's /api/locks) use it.
        // A lock an interrupted run of ours left is released first (re-posting the same client
        // id would only refresh it).
        for old in reclaim.iter().filter(|old| *old != client_id) {
            if let Err(e) = self.storage.release_server_lock(old).await {
                tracing::debug!("releasing our old lock {old}: {e}");
            }
        }
        let server_id = client_id.to_string();
        match self.storage.acquire_server_lock(&server_id).await {
            Ok(true) => {
                let lock = TargetLock {
                    client_id: client_id.to_string(),
                    storage: self.storage.clone(),
                    path: String::new(),
                    body: String::new(),
                    server_client: Some(server_id),
                    refresher: None,
                };
                return Ok(lock.with_refresher());
            }
            Ok(false) => {}
            Err(e) if force => {
                crate::note!("warning: --force: writing without the sync lock: {e}");
                return Ok(TargetLock {
                    client_id: client_id.to_string(),
                    storage: self.storage.clone(),
                    path: String::new(),
                    body: String::new(),
                    server_client: None,
                    refresher: None,
                });
            }
            // The service refused: a lock someone else holds (exit 4, like a lock file).
            Err(StorageError::Rejected(m)) => {
                return Err(Refusal(format!(
                    "{}: could not take the sync lock: {m} This run wrote nothing (pass --force if \
                     that client is gone).",
                    self.describe()
                ))
                .into())
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "{}: could not take the sync lock (pass --force if that client is gone)",
                    self.describe()
                )))
            }
        }
        let (remote_now, _) = self.remote_clock().await?;
        // Only the locks matter here: listing the whole target again would cost a request per
        // 1,000 files on S3 (and a full PROPFIND on WebDAV).
        let locks: Vec<Entry> = self
            .storage
            .list(LOCKS_DIR)
            .await
            .with_context(|| format!("listing {}", self.describe()))?
            .into_iter()
            .filter(|e| !e.is_dir)
            .collect();
        for l in &locks {
            let Some((kind, who)) = parse_lock_name(l.name()) else {
                continue;
            };
            if reclaim.iter().any(|id| who.ends_with(&format!(" {id}"))) {
                self.storage
                    .delete(&l.path)
                    .await
                    .with_context(|| format!("removing our old lock {}", l.path))?;
                continue;
            }
            let age = l
                .modified
                .map(|m| remote_now - system_ms(m))
                .unwrap_or(i64::MAX);
            let active = lock_active(age);
            if active && !force {
                let ours = self.our_lock(&l.path).await;
                // A run of ours on this machine whose process is gone (killed): its lock is
                // removed, as `unlock` would, instead of blocking for the lock's lifetime.
                if ours.as_ref().and_then(OurLock::running) == Some(false) {
                    self.storage.delete(&l.path).await.with_context(|| {
                        format!("removing the lock {} of a run that is gone", l.path)
                    })?;
                    crate::note!(
                        "note: removed the lock {} of an earlier joplin-restore run on this \
                         machine that ended without releasing it (killed)",
                        l.path
                    );
                    continue;
                }
                let kind = if kind == 1 { "sync" } else { "exclusive" };
                return Err(self.lock_held(kind, &who, age / 1000, ours.is_some(), false));
            }
        }
        let lock = TargetLock {
            client_id: client_id.to_string(),
            storage: self.storage.clone(),
            path: format!("{LOCKS_DIR}/2_{CLIENT_TYPE_CLI}_{client_id}.json"),
            // Joplin reads only the file name; the `app` field lets `unlock` recognise ours.
            // `pid` and `host` let `unlock` tell a killed run's lock from a running one's.
            body: json!({
                "type": 2,
                "clientType": CLIENT_TYPE_CLI,
                "clientId": client_id,
                "app": OUR_APP,
                "pid": std::process::id(),
                "host": this_host(),
            })
            .to_string(),
            server_client: None,
            refresher: None,
        };
        lock.write().await?;
        Ok(lock.with_refresher())
    }
}

/// Marks lock files written by this tool.
pub const OUR_APP: &str = "joplin-restore";

/// The run a lock file of ours names (locks written before 0.1 name none).
struct OurLock {
    pid: Option<u64>,
    host: Option<String>,
}

impl OurLock {
    /// Whether its run still goes: known only for a run on this machine, where `/proc` shows
    /// whether that process is a joplin-restore.
    fn running(&self) -> Option<bool> {
        run_going(self.pid?, self.host.as_deref()?)
    }
}

/// Whether the joplin-restore run with process id `pid` on `host` still goes: known only on
/// that machine, where `/proc` shows whether that process is a joplin-restore.
pub fn run_going(pid: u64, host: &str) -> Option<bool> {
    if Some(host) != this_host().as_deref() || !Path::new("/proc/self").exists() {
        return None;
    }
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    Some(comm.trim() == OUR_APP)
}

/// This machine's host name, as lock files and journals of ours record it.
pub fn this_host() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

/// A lock file as `status` and `unlock` describe it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LockInfo {
    pub path: String,
    /// Set for a lock of the server's own lock service (Joplin Server): its key there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_key: Option<String>,
    pub kind: &'static str,
    pub owner: String,
    /// Seconds since its last refresh, by the target's clock.
    pub age_secs: i64,
    pub active: bool,
    pub ours: bool,
    /// For a lock of ours taken on this machine: whether the run that took it is still going.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running: Option<bool>,
}

impl SyncTarget {
    /// Every lock on the target with its age, by the target's clock.
    pub async fn locks(&self, st: &TargetState) -> Result<Vec<LockInfo>> {
        let mut out = Vec::new();
        // Joplin Server keeps locks in its own service (`/api/locks`), stamped by its clock.
        if let Some(server) = self.storage.server_locks().await? {
            let now = now_ms();
            // A lock service records no app name: ours are the ids our unfinished runs'
            // journals name (the default journal folder).
            let ours = crate::journal::unfinished_lock_ids(&crate::journal::default_dir());
            for l in server {
                let age = now - l.updated_ms;
                let name = format!("{}_{}_{}.json", l.kind, l.client_type, l.client_id);
                out.push(LockInfo {
                    path: format!("api/locks/{}", l.key),
                    server_key: Some(l.key.clone()),
                    kind: if l.kind == 1 { "sync" } else { "exclusive" },
                    owner: parse_lock_name(&name)
                        .map(|n| n.1)
                        .unwrap_or_else(|| format!("client {}", l.client_id)),
                    age_secs: age / 1000,
                    active: server_lock_active(age),
                    ours: ours.contains_key(&l.client_id),
                    running: ours.get(&l.client_id).copied().flatten(),
                });
            }
        }
        if st.locks.is_empty() {
            return Ok(out);
        }
        let (remote_now, _) = self.remote_clock().await?;
        for l in &st.locks {
            let Some((kind, owner)) = parse_lock_name(l.name()) else {
                continue;
            };
            let age = l
                .modified
                .map(|m| remote_now - system_ms(m))
                .unwrap_or(i64::MAX);
            let ours = self.our_lock(&l.path).await;
            out.push(LockInfo {
                path: l.path.clone(),
                server_key: None,
                kind: if kind == 1 { "sync" } else { "exclusive" },
                owner,
                age_secs: age / 1000,
                active: lock_active(age),
                running: ours.as_ref().and_then(OurLock::running),
                ours: ours.is_some(),
            });
        }
        Ok(out)
    }

    /// Refuse, as taking the lock would, while another client holds an active lock (`reclaim`:
    /// lock ids of our own interrupted runs, not counted). Called before the snapshot, so a
    /// client mid-sync stops the run before a whole copy of the target is made for nothing.
    pub async fn refuse_active_locks(&self, st: &TargetState, reclaim: &[String]) -> Result<()> {
        for l in self.locks(st).await? {
            let ours = reclaim
                .iter()
                .any(|id| l.owner.ends_with(&format!(" {id}")));
            // A lock file of a run of ours on this machine that is gone: removed when ours is
            // taken (a lock service's lock is not: it still refuses here).
            let removable = l.running == Some(false) && l.server_key.is_none();
            if l.active && !ours && !removable {
                return Err(self.lock_held(
                    l.kind,
                    &l.owner,
                    l.age_secs,
                    l.ours,
                    l.server_key.is_some(),
                ));
            }
        }
        Ok(())
    }

    /// Write `info` as the target's info.json under our `lock`, before any item (a client
    /// syncing midway already sees its keys). On failure the lock is released, not left to
    /// expire, and the error names the file.
    pub async fn write_info_under(&self, lock: TargetLock, info: Bytes) -> Result<TargetLock> {
        match self.storage.put(INFO_JSON, info).await {
            Ok(()) => Ok(lock),
            Err(e) => {
                let _ = lock.release().await;
                Err(anyhow::Error::new(e)
                    .context(format!("{}: writing info.json", self.describe())))
            }
        }
    }

    /// Lists the target again under `lock`: a plan made from `before`, listed before the lock
    /// was taken, is stale when items or blobs changed in between (another run of ours, or a
    /// client, wrote meanwhile). On a change, or when the listing fails, the lock is released
    /// (not left to expire) and the refusal returned; otherwise the lock is handed back.
    pub async fn relist_under(&self, lock: TargetLock, before: &TargetState) -> Result<TargetLock> {
        match self.state().await {
            Ok(now) if before.unchanged_in(&now) => Ok(lock),
            Ok(_) => {
                let _ = lock.release().await;
                Err(TargetState::changed_meanwhile(&self.describe()))
            }
            Err(e) => {
                let _ = lock.release().await;
                Err(e.context(format!(
                    "{}: listing it again under our lock; nothing was written",
                    self.describe()
                )))
            }
        }
    }

    /// What a lock file written by joplin-restore says of its run (its body names our app);
    /// `None` for anyone else's lock.
    async fn our_lock(&self, path: &str) -> Option<OurLock> {
        let body = self.storage.get(path).await.ok()?;
        let v = serde_json::from_slice::<Value>(&body).ok()?;
        (v.get("app").and_then(Value::as_str) == Some(OUR_APP)).then(|| OurLock {
            pid: v.get("pid").and_then(Value::as_u64),
            host: v.get("host").and_then(Value::as_str).map(String::from),
        })
    }

    /// The refusal for an active lock held by someone else: a client mid-sync, or another run
    /// of ours (writing now, or killed less than a lock's lifetime ago).
    fn lock_held(
        &self,
        kind: &str,
        who: &str,
        age_secs: i64,
        ours: bool,
        by_server: bool,
    ) -> anyhow::Error {
        let msg = if ours {
            format!(
                "{}: another joplin-restore run holds an active {kind} lock ({who}, {}): a \
                 restore, clear, rollback or migrate is writing to this \
                 target now, or one was killed less than 3 minutes ago. Nothing was changed. \
                 Wait for it to finish; if none is running, `joplin-restore unlock` with the \
                 same target removes its lock (`--force` when the run was on another machine; \
                 `joplin-restore status` shows it).",
                self.describe(),
                refreshed(age_secs, by_server)
            )
        } else {
            format!(
                "{}: another Joplin client holds an active {kind} lock ({who}, {}); nothing \
                 was changed. Wait for its sync to finish (a lock \
                 expires 3 minutes after its last refresh), or pass --force if that client is \
                 gone.",
                self.describe(),
                refreshed(age_secs, by_server)
            )
        };
        Refusal(msg).into()
    }
}

/// `<type>_<clientType>_<clientId>.json` → (type, "client type/id").
fn parse_lock_name(name: &str) -> Option<(u32, String)> {
    let stem = name.strip_suffix(".json")?;
    let mut parts = stem.splitn(3, '_');
    let kind: u32 = parts.next()?.parse().ok()?;
    let ctype = parts.next()?;
    let cid = parts.next()?;
    if kind != 1 && kind != 2 {
        return None;
    }
    let ctype = match ctype {
        "1" => "desktop",
        "2" => "mobile",
        "3" => "CLI",
        _ => "unknown",
    };
    Some((kind, format!("{ctype} client {cid}")))
}

/// Our lock on the target; refreshed in the background, released with [`TargetLock::release`].
pub struct TargetLock {
    client_id: String,
    storage: Arc<dyn Storage>,
    path: String,
    body: String,
    /// Our client id when the lock is the backend's own (`Storage::acquire_server_lock`).
    server_client: Option<String>,
    refresher: Option<tokio::task::JoinHandle<()>>,
}

impl TargetLock {
    async fn write(&self) -> Result<()> {
        if let Some(id) = &self.server_client {
            self.storage
                .acquire_server_lock(id)
                .await
                .with_context(|| format!("{}: refreshing our lock", self.storage.describe()))?;
            return Ok(());
        }
        let mut put = self
            .storage
            .put(&self.path, Bytes::from(self.body.clone()))
            .await;
        // A target whose `locks/` folder is missing (copied without empty folders; Joplin
        // itself makes it on its first sync): made, and the lock written again. A folder
        // target says "not found", WebDAV 409 Conflict (a refusal).
        if put
            .as_ref()
            .is_err_and(|e| e.is_not_found() || matches!(e, StorageError::Rejected(_)))
        {
            if let Ok(()) = self.storage.mkdir(LOCKS_DIR).await {
                put = self
                    .storage
                    .put(&self.path, Bytes::from(self.body.clone()))
                    .await;
            }
        }
        put.with_context(|| {
            format!(
                "{}: writing our lock {}",
                self.storage.describe(),
                self.path
            )
        })
    }

    fn with_refresher(mut self) -> Self {
        let storage = self.storage.clone();
        let path = self.path.clone();
        let body = self.body.clone();
        let server_client = self.server_client.clone();
        self.refresher = Some(tokio::spawn(async move {
            // Refresh well inside the TTL, as Joplin clients do every 60 s.
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            tick.tick().await;
            loop {
                tick.tick().await;
                let r = match &server_client {
                    Some(id) => storage.acquire_server_lock(id).await.map(|_| ()),
                    None => storage.put(&path, Bytes::from(body.clone())).await,
                };
                if let Err(e) = r {
                    tracing::warn!("could not refresh the sync lock: {e}");
                }
            }
        }));
        self
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    pub async fn release(mut self) -> Result<()> {
        if let Some(h) = self.refresher.take() {
            h.abort();
        }
        if let Some(id) = &self.server_client {
            return self
                .storage
                .release_server_lock(id)
                .await
                .with_context(|| "releasing our sync lock".to_string());
        }
        if self.path.is_empty() {
            return Ok(());
        }
        self.storage
            .delete(&self.path)
            .await
            .with_context(|| format!("releasing our lock {}", self.path))
    }
}

impl Drop for TargetLock {
    fn drop(&mut self) {
        if let Some(h) = self.refresher.take() {
            h.abort();
        }
    }
}

/// How long to wait (local clock `now`) until a target whose clock reads `remote_now` (the end
/// of a whole second, `offset` ahead of ours) is past the second of `newest_ms`; `None` when it
/// already is. The offset was measured against the end of the probe's second, so it can be up
/// to a second high: wait one more second's worth, bounded.
fn wait_for_next_second(
    newest_ms: Option<i64>,
    remote_now: i64,
    offset: i64,
    now: i64,
) -> Option<std::time::Duration> {
    let newest_second = newest_ms?.div_euclid(1000);
    if newest_second < remote_now.div_euclid(1000) {
        return None;
    }
    let until = (newest_second + 1) * 1000 - offset + 1000;
    let wait = (until - now).clamp(0, 2_000);
    (wait > 0).then(|| std::time::Duration::from_millis(wait as u64))
}

pub fn now_ms() -> i64 {
    system_ms(SystemTime::now())
}

/// A restore stamp for now: the earlier of our clock and the target's (`offset` = the
/// target's minus ours, from [`SyncTarget::remote_clock`]), so no client sees an item from the
/// future.
pub fn stamp_now(offset: i64) -> i64 {
    now_ms() + offset.min(0)
}

pub fn system_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

#[cfg(test)]
mod tests {
    /// A file from the probe's own second makes the restore wait for the next one; an older one
    /// does not; the wait is bounded.
    #[test]
    fn writes_wait_for_the_second_after_the_newest_file() {
        let (second, offset) = (1_700_000_000_000i64, 0);
        let end = second + 999;
        assert_eq!(wait_for_next_second(None, end, offset, second + 500), None);
        assert_eq!(
            wait_for_next_second(Some(second - 1), end, offset, second + 500),
            None
        );
        let w = wait_for_next_second(Some(second + 200), end, offset, second + 500).unwrap();
        assert!(w.as_millis() > 500 && w.as_millis() <= 2_000, "{w:?}");
        let w = wait_for_next_second(Some(second + 200), end, -60_000, second + 500).unwrap();
        assert_eq!(w.as_millis(), 2_000);
    }

    use super::*;

    #[test]
    fn an_older_target_is_upgraded_by_joplin_a_newer_one_needs_a_newer_tool() {
        let older = unsupported_version(2, false);
        assert!(
            older.contains("version 2") && older.contains("joplin sync --upgrade"),
            "{older}"
        );
        let newer = unsupported_version(4, false);
        assert!(
            newer.contains("version 4") && newer.contains("Update joplin-restore"),
            "{newer}"
        );
        assert!(!newer.contains("Upgrade the target"), "{newer}");
    }

    #[test]
    fn info_json_is_tab_indented_like_joplin() {
        let s = String::from_utf8(info_json_bytes(&default_info_json())).unwrap();
        assert!(s.starts_with("{\n\t\"version\": 3,\n\t\"e2ee\": {\n\t\t\"value\": false"));
    }

    /// A folder whose listing shows whole seconds only, like Apache's `getlastmodified`.
    #[derive(Debug)]
    struct WholeSeconds(backend_fs::FsStorage);

    #[async_trait::async_trait]
    impl Storage for WholeSeconds {
        fn describe(&self) -> String {
            self.0.describe()
        }
        fn capabilities(&self) -> backend_core::Capabilities {
            backend_core::Capabilities {
                coarse_mtime: true,
                ..self.0.capabilities()
            }
        }
        async fn ensure_root(&self) -> backend_core::Result<()> {
            self.0.ensure_root().await
        }
        async fn list(&self, dir: &str) -> backend_core::Result<Vec<Entry>> {
            self.0.list(dir).await
        }
        async fn get(&self, path: &str) -> backend_core::Result<Bytes> {
            self.0.get(path).await
        }
        async fn put(&self, path: &str, data: Bytes) -> backend_core::Result<()> {
            self.0.put(path, data).await
        }
        async fn delete(&self, path: &str) -> backend_core::Result<()> {
            self.0.delete(path).await
        }
        async fn mkdir(&self, path: &str) -> backend_core::Result<()> {
            self.0.mkdir(path).await
        }
        async fn stat(&self, path: &str) -> backend_core::Result<Option<Entry>> {
            Ok(self.0.stat(path).await?.map(|mut e| {
                e.modified = e.modified.map(|m| {
                    let ms = system_ms(m);
                    std::time::UNIX_EPOCH
                        + std::time::Duration::from_millis((ms - ms % 1000) as u64)
                });
                e
            }))
        }
    }

    /// The stamp must not come out up to a second early on a 1-second server: a client edit
    /// made just before the restore would then be newer and win.
    #[tokio::test]
    async fn remote_clock_on_whole_second_servers_is_not_floored() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(TEMP_DIR)).unwrap();
        let storage = Arc::new(WholeSeconds(backend_fs::FsStorage::new(
            dir.path().to_path_buf(),
        )));
        let target = SyncTarget::new(Arc::new(backend_core::pacer::Paced::new(
            storage,
            Default::default(),
        )));
        // Away from a second's edges, so flooring would cost at least 200 ms.
        for _ in 0..200 {
            if (200..700).contains(&(now_ms() % 1000)) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let before = now_ms();
        let (remote, offset) = target.remote_clock().await.unwrap();
        assert!(remote >= before, "remote clock {remote} < local {before}");
        assert!(offset < 1000, "{offset}");
    }

    /// A listing sorts item files and blobs by id and keeps the newest time of those only; a
    /// restarted listing forgets its first try.
    #[tokio::test]
    async fn state_lists_items_and_blobs_with_the_newest_time() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join(RESOURCE_DIR)).unwrap();
        let at = |secs: u64| UNIX_EPOCH + Duration::from_secs(secs);
        let write = |path: &str, body: &[u8], secs: u64| {
            let p = root.join(path);
            std::fs::write(&p, body).unwrap();
            let f = std::fs::File::options().write(true).open(&p).unwrap();
            f.set_modified(at(secs)).unwrap();
        };
        let (a, b) = ("b".repeat(32), "a".repeat(32));
        write(&item_path(&a), b"12345", 1_000);
        write(&item_path(&b), b"1", 3_000);
        write(&blob_path(&b), b"123", 2_000);
        write("notes.txt", b"mine", 9_000);
        write(&blob_path("thumbs.db"), b"x", 9_000);
        let target = SyncTarget::new(Arc::new(backend_core::pacer::Paced::new(
            Arc::new(backend_fs::FsStorage::new(root.to_path_buf())),
            Default::default(),
        )));
        let st = target.state().await.unwrap();
        let ids: Vec<&str> = st.items.keys().map(|k| k.as_str()).collect();
        assert_eq!(ids, [b.as_str(), a.as_str()]);
        assert_eq!(st.items.get(&a).map(|l| l.size), Some(5));
        assert_eq!(st.blobs.get(&b).map(|l| l.size), Some(3));
        assert_eq!(st.foreign.len(), 1);
        assert_eq!(st.foreign_blobs.len(), 1);
        assert_eq!(
            st.newest_ms(),
            Some(3_000_000),
            "foreign files do not count"
        );

        let mut st = TargetState::default();
        let entry = |path: String, secs| Entry {
            path,
            size: 1,
            modified: Some(at(secs)),
            is_dir: false,
        };
        let mut root_sink = RootSink(&mut st);
        root_sink.add(entry(item_path(&a), 5_000));
        root_sink.restart();
        root_sink.add(entry(item_path(&b), 4_000));
        ResourceSink(&mut st).add(entry(blob_path(&b), 1_000));
        st.items.finish();
        st.blobs.finish();
        assert_eq!(st.items.len(), 1);
        assert!(st.items.contains_key(&b));
        assert_eq!(st.newest_ms(), Some(4_000_000));
    }

    #[test]
    fn lock_names() {
        assert_eq!(parse_lock_name("2_3_abc.json").map(|l| l.0), Some(2));
        assert_eq!(parse_lock_name("1_1_x.json").unwrap().1, "desktop client x");
        assert!(parse_lock_name("readme.txt").is_none());
        assert!(parse_lock_name("3_1_x.json").is_none());
    }

    /// A lock file dated in the future counts as active, as Joplin counts it; a lock of Joplin
    /// Server's service dated ahead of our clock tells our clock is behind, so it does not.
    #[test]
    fn future_dated_locks() {
        let hour = 3_600_000;
        assert!(lock_active(-hour) && lock_active(0) && !lock_active(181_000));
        assert!(!server_lock_active(-hour) && server_lock_active(-1_000));
        assert!(!server_lock_active(181_000));
        assert!(refreshed(-3600, false).contains("its client's clock runs ahead"));
        assert!(refreshed(-3600, true).contains("the server's clock runs ahead"));
        assert_eq!(refreshed(12, true), "refreshed 12 s ago");
    }
}
