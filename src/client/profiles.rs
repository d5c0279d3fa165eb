//! Find Joplin profiles on this machine and describe them.
//!
//! Joplin puts its root profile at `<home>/.config/<appName>` on every OS (Linux, macOS and
//! Windows alike: `determineBaseAppDirs.ts`), with appName `joplin-desktop` (desktop),
//! `joplin` (CLI), `joplindev-desktop`/`joplindev` (dev builds) and `joplin-desktop-<id>` for
//! desktop alt instances (≥ 3.3). The Windows portable build uses
//! `<PORTABLE_EXECUTABLE_DIR>/JoplinProfile`. A root may hold more profiles listed in
//! `profiles.json`, each in `profile-<id>/`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;

/// The desktop app refreshes `<root>/lock` every 10 s while it runs (`FileLocker`); a file
/// younger than this counts as held.
pub const LOCK_FRESH: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Serialize)]
pub struct SyncTargetInfo {
    pub id: i64,
    pub name: &'static str,
    /// Where it syncs to (path, URL, bucket); never credentials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Running {
    pub running: bool,
    /// Why we think so (or what we checked).
    pub evidence: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProfileInfo {
    pub path: PathBuf,
    /// `desktop`, `cli`, `portable`, `desktop-dev`, … or `given` for `--profile`.
    pub kind: String,
    /// Name from `profiles.json` (multi-profile setups).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The root profile folder (holds `profiles.json`, `plugins/`, CSS, `lock`).
    pub root: PathBuf,
    pub size_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_target: Option<SyncTargetInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e2ee: Option<bool>,
    pub running: Running,
    /// What could not be read, for the report.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The user's home: `--home`, else `HOME`, else `USERPROFILE` (Windows).
pub fn home_dir(home: Option<&Path>) -> Option<PathBuf> {
    if let Some(h) = home {
        return Some(h.to_path_buf());
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var_os("USERPROFILE").filter(|h| !h.is_empty()))
        .map(PathBuf::from)
}

/// Root profile folders that exist under `home` (and the portable one), with their kind.
pub fn candidate_roots(home: &Path, portable_dir: Option<&Path>) -> Vec<(PathBuf, String)> {
    let config = home.join(".config");
    let mut out = Vec::new();
    for (name, kind) in [
        ("joplin-desktop", "desktop"),
        ("joplin", "cli"),
        ("joplindev-desktop", "desktop-dev"),
        ("joplindev", "cli-dev"),
    ] {
        out.push((config.join(name), kind.to_string()));
    }
    if let Ok(rd) = std::fs::read_dir(&config) {
        let mut alt: Vec<PathBuf> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    // Not a copy `client reset` moved aside (`<name>.reset-<time>`).
                    .is_some_and(|n| n.starts_with("joplin-desktop-") && !n.contains(".reset-"))
            })
            .collect();
        alt.sort();
        out.extend(
            alt.into_iter()
                .map(|p| (p, "desktop-alt-instance".to_string())),
        );
    }
    if let Some(d) = portable_dir {
        out.push((d.join("JoplinProfile"), "portable".to_string()));
    }
    out.retain(|(p, _)| looks_like_profile(p));
    out
}

/// A folder Joplin has started on at least once.
pub fn looks_like_profile(dir: &Path) -> bool {
    dir.join("database.sqlite").is_file()
        || dir.join("settings.json").is_file()
        || dir.join("profiles.json").is_file()
}

/// Every profile under `home`: each root, then its sub-profiles from `profiles.json`.
pub fn discover(home: &Path, portable_dir: Option<&Path>) -> Vec<ProfileInfo> {
    let mut out = Vec::new();
    for (root, kind) in candidate_roots(home, portable_dir) {
        out.extend(describe_root(&root, &kind));
    }
    out
}

/// The root and its sub-profiles.
pub fn describe_root(root: &Path, kind: &str) -> Vec<ProfileInfo> {
    let mut out = Vec::new();
    let (subs, warning) = sub_profiles(root);
    let default_name = subs
        .iter()
        .find(|(id, _)| id == "default")
        .map(|(_, n)| n.clone());
    let mut info = describe(root, root, kind);
    info.name = default_name;
    info.warnings.extend(warning);
    out.push(info);
    for (id, name) in subs.into_iter().filter(|(id, _)| id != "default") {
        let dir = root.join(format!("profile-{id}"));
        let mut info = describe(&dir, root, kind);
        info.name = Some(name);
        if !dir.is_dir() {
            info.warnings.push(format!(
                "profiles.json lists profile {id:?} but {} does not exist (Joplin creates it on first use)",
                dir.display()
            ));
        }
        out.push(info);
    }
    out
}

/// `(id, name)` from `<root>/profiles.json` (version 1 and 2); empty when absent.
pub fn sub_profiles(root: &Path) -> (Vec<(String, String)>, Option<String>) {
    let f = root.join("profiles.json");
    let Ok(data) = std::fs::read(&f) else {
        return (Vec::new(), None);
    };
    let v: Value = match serde_json::from_slice(&data) {
        Ok(v) => v,
        Err(e) => {
            return (
                Vec::new(),
                Some(format!(
                    "{} is not valid JSON ({e}); sub-profiles not listed",
                    f.display()
                )),
            )
        }
    };
    let mut out = Vec::new();
    for p in v["profiles"].as_array().into_iter().flatten() {
        let name = p["name"].as_str().unwrap_or("").to_string();
        if let Some(id) = p["id"].as_str() {
            out.push((id.to_string(), name));
        } else if let Some(path) = p["path"].as_str() {
            // version 1: `path` relative to the root; "." is the default profile.
            let id = path
                .trim_start_matches("./")
                .trim_start_matches("profile-")
                .to_string();
            let id = if id.is_empty() || id == "." {
                "default".to_string()
            } else {
                id
            };
            out.push((id, name));
        }
    }
    (out, None)
}

/// The root profile folder of `dir`: its parent when `dir` is a `profile-<id>` listed there.
pub fn root_of(dir: &Path) -> PathBuf {
    let is_sub = dir
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("profile-"));
    if is_sub {
        if let Some(parent) = dir.parent() {
            if parent.join("profiles.json").is_file() {
                return parent.to_path_buf();
            }
        }
    }
    dir.to_path_buf()
}

/// A profile's settings as Joplin keeps them: `settings.json` (merged over the root's), else
/// the database's `settings` table; with the note count and what could not be read.
struct ProfileSettings {
    file: Value,
    db: Vec<(String, String)>,
    notes: Option<u64>,
    warnings: Vec<String>,
}

impl ProfileSettings {
    fn read(dir: &Path) -> ProfileSettings {
        let mut warnings = Vec::new();
        let file = read_settings(dir).unwrap_or_else(|e| {
            warnings.push(format!("{e:#}"));
            Value::Null
        });
        let db = dir.join("database.sqlite");
        let (notes, db_settings) = if db.is_file() {
            match read_db(&db) {
                Ok((n, s)) => (Some(n), s),
                Err(e) => {
                    warnings.push(format!("{}: {e:#}", db.display()));
                    (None, Vec::new())
                }
            }
        } else {
            (None, Vec::new())
        };
        ProfileSettings {
            file,
            db: db_settings,
            notes,
            warnings,
        }
    }

    fn get(&self, key: &str) -> Option<Value> {
        self.file
            .get(key)
            .cloned()
            .or_else(|| {
                self.db
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| Value::String(v.clone()))
            })
            .filter(|v| !v.is_null())
    }

    fn sync_target(&self) -> Option<SyncTargetInfo> {
        let setting = |key: &str| self.get(key);
        setting("sync.target")
            .and_then(|v| as_i64(&v))
            .filter(|id| *id != 0)
            .map(|id| {
                let location = match id {
                    8 => {
                        let bucket = setting("sync.8.path").and_then(|v| as_string(&v));
                        let url = setting("sync.8.url").and_then(|v| as_string(&v));
                        match (url, bucket) {
                            (Some(u), Some(b)) => Some(format!("{u} bucket {b}")),
                            (u, b) => u.or(b),
                        }
                    }
                    _ => setting(&format!("sync.{id}.path")).and_then(|v| as_string(&v)),
                };
                SyncTargetInfo {
                    id,
                    name: target_name(id),
                    location: location
                        .filter(|s| !s.is_empty())
                        .map(|l| crate::open::without_credentials(&l)),
                }
            })
    }

    /// Joplin 2+ keeps the state in `syncInfoCache` (the target's info.json as last synced,
    /// `e2ee.value`); `encryption.enabled` is what older versions wrote.
    fn e2ee(&self) -> Option<bool> {
        self.get("syncInfoCache")
            .and_then(|v| as_string(&v))
            .and_then(|s| serde_json::from_str::<Value>(&s).ok())
            .and_then(|info| info.pointer("/e2ee/value").and_then(Value::as_bool))
            .or_else(|| {
                self.get("encryption.enabled").map(|v| match v {
                    Value::Bool(b) => b,
                    other => matches!(as_string(&other).as_deref(), Some("1" | "true")),
                })
            })
    }
}

/// Where the profile `dir` syncs to, if anywhere (settings only: no size walk, no process scan).
pub fn sync_target(dir: &Path) -> Option<SyncTargetInfo> {
    ProfileSettings::read(dir).sync_target()
}

/// Describe one profile folder.
pub fn describe(dir: &Path, root: &Path, kind: &str) -> ProfileInfo {
    let settings = ProfileSettings::read(dir);
    let sync_target = settings.sync_target();
    let e2ee = settings.e2ee();
    let ProfileSettings {
        notes, warnings, ..
    } = settings;
    ProfileInfo {
        path: dir.to_path_buf(),
        kind: kind.to_string(),
        name: None,
        root: root.to_path_buf(),
        size_bytes: dir_size(dir, root != dir || !has_subprofiles(dir)),
        notes,
        sync_target,
        e2ee: e2ee.or(notes.map(|_| false)),
        running: running(dir),
        warnings,
    }
}

fn has_subprofiles(dir: &Path) -> bool {
    dir.join("profiles.json").is_file()
}

fn as_i64(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// Sync target names (`SyncTarget*.ts` `id()`).
pub fn target_name(id: i64) -> &'static str {
    match id {
        0 => "none",
        1 => "memory",
        2 => "filesystem",
        3 => "OneDrive",
        5 => "Nextcloud",
        6 => "WebDAV",
        7 => "Dropbox",
        8 => "S3",
        9 => "Joplin Server",
        10 => "Joplin Cloud",
        11 => "Joplin Server (SAML)",
        _ => "unknown",
    }
}

/// The profile's `settings.json` (file-stored settings), merged over the root's for
/// sub-profiles (global settings such as `api.token` live in the root's file).
pub fn read_settings(dir: &Path) -> Result<Value> {
    let root = root_of(dir);
    let mut merged = serde_json::Map::new();
    let mut files = vec![root.join("settings.json")];
    if root != dir {
        files.push(dir.join("settings.json"));
    }
    for f in files {
        let Ok(data) = std::fs::read(&f) else {
            continue;
        };
        let v: Value = serde_json::from_slice(&data).with_context(|| {
            format!(
                "{} is not valid JSON: fix it in a text editor (moving it away loses the \
                 settings it holds: sync target, API token, …; keep a copy)",
                f.display()
            )
        })?;
        if let Value::Object(m) = v {
            merged.extend(m);
        }
    }
    Ok(Value::Object(merged))
}

/// Note count and the `settings` table, read without writing anything.
fn read_db(db: &Path) -> Result<(u64, Vec<(String, String)>)> {
    let conn = rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .context("cannot open the database read-only")?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let has_deleted: bool = conn
        .prepare("SELECT 1 FROM pragma_table_info('notes') WHERE name = 'deleted_time'")?
        .exists([])?;
    let sql = if has_deleted {
        "SELECT count(*) FROM notes WHERE is_conflict = 0 AND deleted_time = 0"
    } else {
        "SELECT count(*) FROM notes WHERE is_conflict = 0"
    };
    let notes: i64 = conn
        .query_row(sql, [], |r| r.get(0))
        .context("cannot count notes")?;
    let mut settings = Vec::new();
    if let Ok(mut st) = conn.prepare(
        "SELECT key, value FROM settings \
         WHERE key IN ('sync.target', 'encryption.enabled', 'syncInfoCache') \
         OR key LIKE 'sync._.path' OR key LIKE 'sync.__.path' OR key = 'sync.8.url'",
    ) {
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?.unwrap_or_default(),
            ))
        })?;
        for r in rows.flatten() {
            settings.push(r);
        }
    }
    Ok((notes.max(0) as u64, settings))
}

/// Bytes below `dir`; with `include_subprofiles` false, its `profile-*` folders are not counted.
fn dir_size(dir: &Path, include_subprofiles: bool) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![(dir.to_path_buf(), 0usize)];
    let mut visited = 0usize;
    while let Some((d, depth)) = stack.pop() {
        visited += 1;
        if visited > 1_000_000 || depth > 64 {
            break;
        }
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(meta) = e.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                let sub = e.file_name().to_string_lossy().starts_with("profile-");
                if depth == 0 && sub && !include_subprofiles {
                    continue;
                }
                stack.push((e.path(), depth + 1));
            } else {
                total += meta.len();
            }
        }
    }
    total
}

/// Whether a Joplin app runs on this profile, from what it leaves on disk:
/// the desktop's `<root>/lock` (refreshed every 10 s, ≥ 3.3) and the CLI's `clipper-pid.txt`
/// (`joplin server start`) when that process is alive.
pub fn running(dir: &Path) -> Running {
    let root = root_of(dir);
    let lock = root.join("lock");
    if let Ok(meta) = std::fs::metadata(&lock) {
        let age = meta
            .modified()
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .unwrap_or_default();
        if age <= LOCK_FRESH {
            return Running {
                running: true,
                evidence: format!(
                    "{} was refreshed {}s ago (Joplin desktop holds it while running)",
                    lock.display(),
                    age.as_secs()
                ),
            };
        }
    }
    // `clipper-pid.txt` outlives the `joplin server start` that wrote it, and its pid may be
    // reused: it counts only when that process is Joplin on this very profile.
    let on = ProfileMatch::new(dir, &root);
    for d in [dir.to_path_buf(), root.clone()] {
        let f = d.join("clipper-pid.txt");
        if let Some(pid) = std::fs::read_to_string(&f)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        {
            if on.process(pid).is_some() {
                return Running {
                    running: true,
                    evidence: format!(
                        "{} names process {pid}, which runs Joplin on this profile (joplin \
                         server start)",
                        f.display()
                    ),
                };
            }
        }
    }
    if let Some((pid, cmdline)) = on.any_process() {
        return Running {
            running: true,
            evidence: format!("process {pid} runs Joplin on this profile: {cmdline}"),
        };
    }
    Running {
        running: false,
        evidence: format!(
            "no fresh {}, no live clipper-pid.txt and no Joplin process on it",
            lock.display()
        ),
    }
}

/// Which Joplin processes run on a profile `dir` (or its root `root`): the CLI or a desktop
/// without the lock file (3.2 and older). Linux only (`/proc`); elsewhere none are seen.
/// A process without `--profile` uses the default profile of its kind (`~/.config/joplin`
/// for the CLI, `~/.config/joplin-desktop` for the desktop app): either counts.
struct ProfileMatch {
    ours: [PathBuf; 2],
    defaults: Vec<PathBuf>,
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

impl ProfileMatch {
    fn new(dir: &Path, root: &Path) -> ProfileMatch {
        let defaults = home_dir(None)
            .map(|h| {
                ["joplin", "joplin-desktop"]
                    .iter()
                    .map(|d| canonical(&h.join(".config").join(d)))
                    .collect()
            })
            .unwrap_or_default();
        ProfileMatch {
            ours: [canonical(dir), canonical(root)],
            defaults,
        }
    }

    /// Process `pid`'s command line when it is Joplin on this profile (on the root, on `dir`,
    /// or, when `dir` is the root, on one of its sub-profiles).
    fn process(&self, pid: u32) -> Option<String> {
        if pid == std::process::id() {
            return None;
        }
        let proc_dir = Path::new("/proc").join(pid.to_string());
        let raw = std::fs::read(proc_dir.join("cmdline")).ok()?;
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if !runs_joplin(&args) {
            return None;
        }
        let on_ours = match profile_arg(&args) {
            Some(p) => {
                // A relative --profile is relative to that process's own folder.
                let p = match std::fs::read_link(proc_dir.join("cwd")) {
                    Ok(cwd) => cwd.join(p),
                    Err(_) => PathBuf::from(p),
                };
                let p = canonical(&p);
                p == self.ours[1] || p.starts_with(&self.ours[0])
            }
            None => self.defaults.contains(&self.ours[1]),
        };
        on_ours.then(|| args.join(" "))
    }

    /// The first process that is Joplin on this profile: its pid and command line.
    fn any_process(&self) -> Option<(u32, String)> {
        for entry in std::fs::read_dir("/proc").ok()?.flatten().take(100_000) {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(cmdline) = self.process(pid) {
                return Some((pid, cmdline));
            }
        }
        None
    }
}

/// The program (or the script an interpreter such as node runs) is Joplin: the CLI's `joplin`
/// (or its package's `main.js`), the desktop's `@joplinapp-desktop`, `joplin-desktop` (snap)
/// or `Joplin-*.AppImage`. Not this tool, nor anything else named joplin-something.
fn runs_joplin(args: &[String]) -> bool {
    args.iter().take(2).any(|a| {
        let path = Path::new(a);
        let base = path
            .file_name()
            .map(|b| b.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        base == "joplin"
            || base.starts_with("joplin-desktop")
            || base.starts_with("@joplinapp")
            || (base.starts_with("joplin") && base.ends_with(".appimage"))
            || (base == "main.js" && a.to_lowercase().contains("/joplin/"))
    })
}

/// The value of `--profile DIR` / `--profile=DIR`.
fn profile_arg(args: &[String]) -> Option<String> {
    args.iter().enumerate().find_map(|(i, a)| {
        if a == "--profile" {
            args.get(i + 1).cloned()
        } else {
            a.strip_prefix("--profile=").map(str::to_string)
        }
    })
}

/// Human-readable size.
pub fn human_size(b: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

/// The text report of `client profiles`.
pub fn print(profiles: &[ProfileInfo]) {
    if profiles.is_empty() {
        crate::say!("No Joplin profile found.");
        return;
    }
    for p in profiles {
        let name = p
            .name
            .as_ref()
            .map(|n| format!(" \"{n}\""))
            .unwrap_or_default();
        crate::say!("{} ({}{name})", p.path.display(), p.kind);
        crate::say!("  size: {}", human_size(p.size_bytes));
        match p.notes {
            Some(n) => crate::say!("  notes: {n}"),
            None if p.path.join("database.sqlite").is_file() => {
                crate::say!("  notes: unknown (database.sqlite could not be read)")
            }
            None => crate::say!("  notes: unknown (no database.sqlite)"),
        }
        match &p.sync_target {
            Some(t) => crate::say!(
                "  sync target: {} ({}){}",
                t.name,
                t.id,
                t.location
                    .as_ref()
                    .map(|l| format!(" {l}"))
                    .unwrap_or_default()
            ),
            None => crate::say!("  sync target: none"),
        }
        match p.e2ee {
            Some(true) => crate::say!("  end-to-end encryption: on"),
            Some(false) => crate::say!("  end-to-end encryption: off"),
            None => crate::say!("  end-to-end encryption: unknown"),
        }
        crate::say!(
            "  running: {} ({})",
            if p.running.running { "yes" } else { "no" },
            p.running.evidence
        );
        for w in &p.warnings {
            crate::say!("  warning: {w}");
        }
    }
}

/// The profile a command acts on: `--profile`, else the desktop root, else the CLI root.
pub fn choose(profile: Option<&Path>, home: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = profile {
        if !p.is_dir() {
            anyhow::bail!(
                "--profile {}: no such folder. Run `joplin-restore client profiles` to list the profiles found.",
                p.display()
            );
        }
        return Ok(p.to_path_buf());
    }
    let home = home_dir(home).context(
        "cannot tell your home folder (HOME is not set): pass --profile DIR or --home DIR",
    )?;
    let portable = std::env::var_os("PORTABLE_EXECUTABLE_DIR").map(PathBuf::from);
    let roots = candidate_roots(&home, portable.as_deref());
    match roots.first() {
        Some((p, _)) => Ok(p.clone()),
        None => anyhow::bail!(
            "no Joplin profile under {} (looked for .config/joplin-desktop and .config/joplin): \
             pass --profile DIR",
            home.display()
        ),
    }
}

/// The profile `client customise` writes into: as [`choose`], but a profile that does not
/// exist yet (just reset: Joplin has not started since) is created, so customisations can go
/// back before the first start: the `--profile` folder given (its parent must exist), or the
/// desktop's default `~/.config/joplin-desktop` when no profile is found. `true` when created.
pub fn choose_or_create(profile: Option<&Path>, home: Option<&Path>) -> Result<(PathBuf, bool)> {
    let missing = match profile {
        Some(p) if !p.exists() => {
            if !p
                .parent()
                .is_some_and(|d| d.as_os_str().is_empty() || d.is_dir())
            {
                anyhow::bail!(
                    "--profile {}: neither it nor its parent folder exists. Run \
                     `joplin-restore client profiles` to list the profiles found.",
                    p.display()
                );
            }
            p.to_path_buf()
        }
        Some(_) => return Ok((choose(profile, home)?, false)),
        None => {
            let h = home_dir(home).context(
                "cannot tell your home folder (HOME is not set): pass --profile DIR or --home DIR",
            )?;
            // A default profile `client reset` just moved aside comes first: customising right
            // after a reset is for that profile, even when another one (the CLI's) exists.
            let config = h.join(".config");
            let reset = ["joplin-desktop", "joplin"]
                .into_iter()
                .map(|name| config.join(name))
                .find(|p| !p.exists() && moved_aside_by_reset(p));
            match reset {
                Some(p) => p,
                None => {
                    let portable = std::env::var_os("PORTABLE_EXECUTABLE_DIR").map(PathBuf::from);
                    // A default profile an earlier `customise` made after a reset, which
                    // Joplin has not started on yet: no database, so it is no profile to
                    // the search below, which would pick another one (the CLI's) or none.
                    let made = ["joplin-desktop", "joplin"]
                        .into_iter()
                        .map(|name| config.join(name))
                        .find(|p| {
                            p.is_dir()
                                && !p.join("database.sqlite").exists()
                                && moved_aside_by_reset(p)
                        });
                    if let Some(p) = made {
                        return Ok((p, false));
                    }
                    if let Some((p, _)) = candidate_roots(&h, portable.as_deref()).first() {
                        return Ok((p.clone(), false));
                    }
                    config.join("joplin-desktop")
                }
            }
        }
    };
    // (The desktop default may exist already: made by an earlier customise, no database yet.)
    let existed = missing.is_dir();
    std::fs::create_dir_all(&missing)
        .with_context(|| format!("cannot create the profile folder {}", missing.display()))?;
    Ok((missing, !existed))
}

/// For `client reset` without `--profile`: a default profile (desktop, then CLI) ahead of
/// `chosen` that an earlier reset moved aside. [`choose`] skips it for the next one found, so
/// a second `client reset --yes` "to be sure" would move another app's profile.
pub fn reset_before(chosen: &Path, home: Option<&Path>) -> Option<PathBuf> {
    let config = home_dir(home)?.join(".config");
    for name in ["joplin-desktop", "joplin"] {
        let p = config.join(name);
        if p == chosen {
            return None;
        }
        // Gone, or only what a `client customise` put back since (no profile yet).
        if !looks_like_profile(&p) && moved_aside_by_reset(&p) {
            return Some(p);
        }
    }
    None
}

/// Whether `client reset` moved the profile `dir` aside (a `<name>.reset-<time>` next to it).
fn moved_aside_by_reset(dir: &Path) -> bool {
    !reset_copies(dir).is_empty()
}

/// The copies `client reset` made of the profile `dir` (`<name>.reset-<time>` next to it),
/// oldest first.
pub fn reset_copies(dir: &Path) -> Vec<PathBuf> {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return Vec::new();
    };
    let prefix = format!("{}.reset-", name.to_string_lossy());
    let mut copies: Vec<PathBuf> = std::fs::read_dir(parent)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    copies.sort();
    copies
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_profile_root_and_v1_ids() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("joplin-desktop");
        std::fs::create_dir_all(root.join("profile-abc12345")).unwrap();
        std::fs::write(
            root.join("profiles.json"),
            r#"{"version":1,"currentProfile":0,"profiles":[{"name":"Default","path":"."},{"name":"Work","path":"profile-abc12345"}]}"#,
        )
        .unwrap();
        assert_eq!(root_of(&root.join("profile-abc12345")), root);
        assert_eq!(root_of(&root), root);
        let (subs, w) = sub_profiles(&root);
        assert!(w.is_none());
        assert_eq!(
            subs,
            vec![
                ("default".to_string(), "Default".to_string()),
                ("abc12345".to_string(), "Work".to_string())
            ]
        );
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(12), "12 B");
        assert_eq!(human_size(2048), "2.0 KiB");
    }
}
