//! Find the backup set in what the user pointed at: a `.jex`, a set folder, the Backup
//! plugin's base folder holding several timestamped sets, or an archive of one of those.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Local, NaiveDateTime};

/// One backup set as listed by `inspect`.
#[derive(Debug, Clone)]
pub struct SetInfo {
    /// Relative to the folder the user gave, e.g. `default/202611241200` or `JoplinBackup.7z`.
    pub name: String,
    pub path: PathBuf,
    /// From the name when it is the plugin's `YYYYMMDDHHmm`, else the file time.
    pub date: Option<NaiveDateTime>,
    pub bytes: u64,
}

impl SetInfo {
    fn new(name: String, path: PathBuf) -> SetInfo {
        let date =
            date_from_name(path.file_name().and_then(|n| n.to_str()).unwrap_or("")).or_else(|| {
                let m = std::fs::metadata(&path).and_then(|m| m.modified()).ok()?;
                Some(DateTime::<Local>::from(m).naive_local())
            });
        let bytes = tree_size(&path, 0);
        SetInfo {
            name,
            path,
            date,
            bytes,
        }
    }
}

/// The plugin's default set name is `{YYYYMMDDHHmm}`, possibly followed by ` (1)` etc.
fn date_from_name(name: &str) -> Option<NaiveDateTime> {
    let digits: String = name.chars().take_while(|c| c.is_ascii_digit()).collect();
    if digits.len() != 12 {
        return None;
    }
    NaiveDateTime::parse_from_str(&digits, "%Y%m%d%H%M").ok()
}

fn tree_size(path: &Path, depth: usize) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    if depth > 16 {
        return 0;
    }
    std::fs::read_dir(path)
        .map(|rd| rd.flatten().map(|e| tree_size(&e.path(), depth + 1)).sum())
        .unwrap_or(0)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Per-item archives ("yes"): one `.7z` per top-level entry of a set.
pub fn is_per_item_7z(name: &str) -> bool {
    name.ends_with(".jex.7z") || name == "profile.7z" || name == "notes.7z"
}

/// A folder is one set when it holds the note export itself: JEX files, per-item archives, or
/// the `notes/` folder of the RAW and Markdown export formats.
pub fn is_set_dir(dir: &Path) -> bool {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return false;
    };
    rd.flatten().any(|e| {
        let n = e.file_name().to_string_lossy().into_owned();
        let Ok(t) = e.file_type() else {
            return false;
        };
        (t.is_file() && (n.ends_with(".jex") || is_per_item_7z(&n))) || (t.is_dir() && n == "notes")
    })
}

/// Whole-set archives ("yesone": `<set>.7z`, `JoplinBackup.7z`) and hand-made zips.
fn is_set_archive(name: &str) -> bool {
    (name.ends_with(".7z") && !is_per_item_7z(name) && name != "backuplog.7z"
        // An unfinished run leaves this behind.
        && name != "newJoplinBackup.7z")
        || name.ends_with(".zip")
}

/// Folders the plugin uses inside a base that are never sets of their own.
const NOT_SETS: &[&str] = &["joplin_active_backup_job", "profile", "notes", "templates"];

fn sets_in(dir: &Path, prefix: &str) -> Result<Vec<SetInfo>> {
    let mut out = Vec::new();
    let rd = std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        let p = e.path();
        let Ok(t) = e.file_type() else { continue };
        let set_dir = t.is_dir() && !NOT_SETS.contains(&n.as_str()) && is_set_dir(&p);
        if set_dir || (t.is_file() && is_set_archive(&n)) {
            out.push(SetInfo::new(format!("{prefix}{n}"), p));
        }
    }
    Ok(out)
}

/// Every set below a base folder: its own children, or one level down in the per-profile
/// folders (`default/`, `profile-<id>/`) that `createSubfolderPerProfile` adds; given the
/// folder chosen in the plugin's settings, the `JoplinBackup/` it makes there. Oldest first.
pub fn list_sets(base: &Path) -> Result<Vec<SetInfo>> {
    let mut sets = sets_in_base(base)?;
    let plugin_folder = base.join("JoplinBackup");
    if sets.is_empty() && plugin_folder.is_dir() {
        sets = sets_in_base(&plugin_folder)?;
        for s in &mut sets {
            s.name = format!("JoplinBackup/{}", s.name);
        }
    }
    Ok(sets)
}

fn sets_in_base(base: &Path) -> Result<Vec<SetInfo>> {
    let mut sets = sets_in(base, "")?;
    if sets.is_empty() {
        let rd =
            std::fs::read_dir(base).with_context(|| format!("cannot list {}", base.display()))?;
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) && !NOT_SETS.contains(&n.as_str())
            {
                sets.extend(sets_in(&e.path(), &format!("{n}/"))?);
            }
        }
    }
    sets.sort_by(|a, b| (a.date, &a.name).cmp(&(b.date, &b.name)));
    Ok(sets)
}

/// The error for a folder (or an archive, by its own name) that holds no backup.
pub fn no_backup_in(place: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "{} holds no backup: no .jex, no backup set folder, no .7z inside it. Give a .jex file, \
         a backup set folder, or the Backup plugin's backup folder (or a .7z/.zip of one).",
        place.display()
    )
}

/// The set to use from a base folder: `--set NAME`, else the newest.
pub fn choose<'a>(base: &Path, sets: &'a [SetInfo], wanted: Option<&str>) -> Result<&'a SetInfo> {
    let listing = || {
        sets.iter()
            .map(|s| format!("  {}", s.name))
            .collect::<Vec<_>>()
            .join("\n")
    };
    if sets.is_empty() {
        return Err(no_backup_in(base));
    }
    if let Some(w) = wanted {
        let w = w.trim_end_matches('/');
        return sets
            .iter()
            .find(|s| s.name == w || s.name.ends_with(&format!("/{w}")) || file_name(&s.path) == w)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{} has no set named {w:?}. Its sets are:\n{}\n(`joplin-restore inspect {}` \
                     lists them with dates.)",
                    base.display(),
                    listing(),
                    base.display()
                )
            });
    }
    let profiles: std::collections::BTreeSet<&str> = sets
        .iter()
        .filter_map(|s| s.name.rsplit_once('/').map(|(p, _)| p))
        .collect();
    if profiles.len() > 1 {
        bail!(
            "{} holds backups of several Joplin profiles; choose one set with --set NAME:\n{}",
            base.display(),
            listing()
        );
    }
    Ok(sets.last().expect("not empty"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_names_give_dates() {
        let d = date_from_name("202611241200 (1)").unwrap();
        assert_eq!(d.format("%Y-%m-%d %H:%M").to_string(), "2026-11-24 12:00");
        assert!(date_from_name("JoplinBackup.7z").is_none());
        assert!(date_from_name("2026112412").is_none());
    }

    #[test]
    fn newest_set_wins_and_stale_runs_are_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        for set in ["202601011200", "202612311200", "202606011200"] {
            let d = tmp.path().join(set);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("all_notebooks.jex"), b"x").unwrap();
        }
        std::fs::write(tmp.path().join("newJoplinBackup.7z"), b"x").unwrap();
        std::fs::write(tmp.path().join("README.md"), b"x").unwrap();
        std::fs::create_dir_all(tmp.path().join("joplin_active_backup_job/x")).unwrap();
        let sets = list_sets(tmp.path()).unwrap();
        let names: Vec<&str> = sets.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["202601011200", "202606011200", "202612311200"]);
        assert_eq!(
            choose(tmp.path(), &sets, None).unwrap().name,
            "202612311200"
        );
        let picked = choose(tmp.path(), &sets, Some("202601011200")).unwrap();
        assert_eq!(picked.name, "202601011200");
    }

    #[test]
    fn several_profiles_need_a_choice() {
        let tmp = tempfile::tempdir().unwrap();
        for p in ["default/202601011200", "profile-1a2b3c4d/202601021200"] {
            let d = tmp.path().join(p);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("all_notebooks.jex"), b"x").unwrap();
        }
        let sets = list_sets(tmp.path()).unwrap();
        let err = choose(tmp.path(), &sets, None).unwrap_err().to_string();
        assert!(err.contains("several Joplin profiles"), "{err}");
        assert!(err.contains("profile-1a2b3c4d/202601021200"), "{err}");
        let s = choose(tmp.path(), &sets, Some("default/202601011200")).unwrap();
        assert_eq!(s.name, "default/202601011200");
    }
}
