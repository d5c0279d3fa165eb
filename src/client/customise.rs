//! `client customise`: put back what the Backup plugin saved in a set's `profile/` folder.
//!
//! `keymap-desktop.json` and `templates/` belong to the profile folder; `userchrome.css`,
//! `userstyle.css` and `plugins/` to the root profile folder (shared by all profiles).
//! `settings.json` only on request: it carries the sync target and the API token of the old
//! setup. Whatever would be overwritten is copied first into a timestamped folder next to the
//! root profile.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::profiles::{root_of, running};
use crate::exit::Refusal;

/// What the backup's `profile/` may hold, and where each goes.
const ENTRIES: &[(&str, Dest)] = &[
    ("keymap-desktop.json", Dest::Profile),
    ("templates", Dest::Profile),
    ("userchrome.css", Dest::Root),
    ("userstyle.css", Dest::Root),
    ("plugins", Dest::Root),
];

/// Whether `client customise` may write into the existing folder `dir`: a profile, an empty
/// folder, or one holding only what an earlier customise put there ([`ENTRIES`], settings.json;
/// Joplin has not started on it since a reset). Hidden files (.DS_Store) do not count.
pub fn may_write_into(dir: &Path) -> bool {
    super::profiles::looks_like_profile(dir)
        || std::fs::read_dir(dir).is_ok_and(|rd| {
            rd.flatten().all(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name == "settings.json"
                    || name.starts_with('.')
                    || ENTRIES.iter().any(|(entry, _)| *entry == name)
            })
        })
}

#[derive(Clone, Copy)]
enum Dest {
    Profile,
    Root,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct CustomiseSummary {
    /// Files written (destination paths).
    pub written: Vec<PathBuf>,
    /// Files already identical.
    pub unchanged: Vec<PathBuf>,
    /// Where overwritten files were saved, when any were.
    pub backup_dir: Option<PathBuf>,
    pub backed_up: Vec<PathBuf>,
}

/// The `profile/` folder of a backup set: `from` itself, or `from/profile`.
pub fn source_dir(from: &Path) -> Result<PathBuf> {
    let sub = from.join("profile");
    if sub.is_dir() {
        return Ok(sub);
    }
    let has_entries = ENTRIES.iter().any(|(n, _)| from.join(n).exists());
    if from.is_dir() && (has_entries || from.join("settings.json").is_file()) {
        return Ok(from.to_path_buf());
    }
    if !from.exists() {
        bail!(
            "--from {}: no such file or folder. Give the backup set folder (the one holding \
             all_notebooks.jex and profile/) or its profile/ folder.",
            from.display()
        );
    }
    bail!(
        "--from {}: no profile/ folder in it and no keymap, CSS, templates or plugins either. \
         Give the backup set folder (holding profile/), its profile/ folder, a .7z/.zip set \
         or the Backup plugin's folder.",
        from.display()
    )
}

/// Copy the customisations from `from` into the profile `dir`.
pub fn customise(from: &Path, dir: &Path, with_settings: bool) -> Result<CustomiseSummary> {
    let src = source_dir(from)?;
    if !dir.is_dir() {
        bail!(
            "profile {} does not exist: start Joplin once so it creates it, or pass --profile DIR",
            dir.display()
        );
    }
    let r = running(dir);
    if r.running {
        return Err(Refusal(format!(
            "Joplin is running on {}: {}. Quit it first: it rewrites its settings and keymap \
             on exit. Nothing was changed.",
            dir.display(),
            r.evidence
        ))
        .into());
    }
    let root = root_of(dir);
    let mut plan: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut entries: Vec<(&str, Dest)> = ENTRIES.to_vec();
    if with_settings {
        entries.push(("settings.json", Dest::Profile));
    }
    for (name, dest) in entries {
        let s = src.join(name);
        if !s.exists() {
            continue;
        }
        let base = match dest {
            Dest::Profile => dir.to_path_buf(),
            Dest::Root => root.clone(),
        };
        collect(&s, &base.join(name), &mut plan, 0)?;
    }
    let mut summary = CustomiseSummary::default();
    let backup_base = {
        let name = root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "joplin-profile".into());
        let parent = root.parent().unwrap_or(&root).to_path_buf();
        parent.join(format!("{name}.customise-backup-{}", super::stamp()))
    };
    for (s, d) in plan {
        let data = std::fs::read(&s).with_context(|| format!("cannot read {}", s.display()))?;
        if d.is_file() {
            let old = std::fs::read(&d).with_context(|| format!("cannot read {}", d.display()))?;
            if old == data {
                summary.unchanged.push(d);
                continue;
            }
            let bdir = match &summary.backup_dir {
                Some(b) => b.clone(),
                None => {
                    let b = super::free_path(backup_base.clone())?;
                    summary.backup_dir = Some(b.clone());
                    b
                }
            };
            let rel = d.strip_prefix(&root).unwrap_or(&d);
            let bpath = bdir.join(rel);
            if let Some(p) = bpath.parent() {
                std::fs::create_dir_all(p)
                    .with_context(|| format!("cannot create {}", p.display()))?;
            }
            std::fs::write(&bpath, &old)
                .with_context(|| format!("cannot save {} to {}", d.display(), bpath.display()))?;
            summary.backed_up.push(d.clone());
        } else if d.exists() {
            bail!(
                "{} exists and is not a file: move it away and run this again ({} not copied)",
                d.display(),
                s.display()
            );
        }
        if let Some(p) = d.parent() {
            std::fs::create_dir_all(p).with_context(|| format!("cannot create {}", p.display()))?;
        }
        // Write rather than copy: backups are often read-only and Joplin must be able to
        // update these files.
        std::fs::write(&d, &data).with_context(|| format!("cannot write {}", d.display()))?;
        summary.written.push(d);
    }
    Ok(summary)
}

/// Files below `s` (or `s` itself) paired with their destinations.
fn collect(s: &Path, d: &Path, out: &mut Vec<(PathBuf, PathBuf)>, depth: usize) -> Result<()> {
    if depth > 32 {
        bail!("{}: folders nested too deep", s.display());
    }
    let meta =
        std::fs::symlink_metadata(s).with_context(|| format!("cannot read {}", s.display()))?;
    if meta.is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(s)
            .with_context(|| format!("cannot list {}", s.display()))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for n in names {
            collect(&s.join(&n), &d.join(&n), out, depth + 1)?;
        }
    } else if meta.is_file() {
        out.push((s.to_path_buf(), d.to_path_buf()));
    }
    Ok(())
}

pub fn print(s: &CustomiseSummary) {
    for p in &s.written {
        crate::say!("put back {}", p.display());
    }
    crate::say!(
        "{} file(s) put back, {} already identical.",
        s.written.len(),
        s.unchanged.len()
    );
    if let Some(b) = &s.backup_dir {
        crate::say!(
            "{} file(s) they replaced were saved in {} (copy them back to undo).",
            s.backed_up.len(),
            b.display()
        );
    }
}
