//! Find the backup set in what the user pointed at: a `.jex`, a set folder, the Backup
//! plugin's base folder holding several timestamped sets, or an archive of one of those.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Local, NaiveDateTime};

/// One backup set as listed by `inspect`.
#[derive(Debug, Clone)]
pub struct SetInfo {
    /// Relative to the folder the user gave, e.g. `default/202611241200` or `JoplinBackup.7z`;
    /// [`TOP_LEVEL`] for set files lying in that folder itself next to other sets.
    pub name: String,
    pub path: PathBuf,
    /// From the name when it holds a date, else the newest time of the set's files.
    pub date: Option<NaiveDateTime>,
    pub dated_by: DatedBy,
    /// The newest time of its note export, whatever dated it.
    file_time: Option<NaiveDateTime>,
    /// Its name's runs (` (N)`) and their files' times tell different orders.
    runs_disagree: bool,
    pub bytes: u64,
}

/// Where a set's date comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatedBy {
    /// The set's name (the plugin's `{YYYYMMDDHHmm}`, or another date it spells).
    Name,
    /// The newest modification time of its files: a copy without times changes it.
    FileTime,
}

/// The name of the set made of the files lying in the given folder itself (a "keep 1 backup"
/// run left them there before the retention was raised).
pub const TOP_LEVEL: &str = "(top level)";

/// The note export of a set folder (JEX files, per-item archives, `notes/`): what dates it, and
/// what makes the top-level set (its `profile/` goes with it but dates nothing: customising
/// files are copied around).
fn is_note_export(name: &str, is_dir: bool) -> bool {
    if is_dir {
        name == "notes"
    } else {
        name.ends_with(".jex") || (is_per_item_7z(name) && name != "profile.7z")
    }
}

/// When a set was made, by its files: the newest time of its note export (a set archive's own
/// time), else of any file in it.
fn set_file_time(path: &Path) -> Option<SystemTime> {
    let export = std::fs::read_dir(path).ok().and_then(|rd| {
        rd.flatten()
            .filter(|e| {
                let is_dir = followed_type(e).is_some_and(|t| t.is_dir());
                is_note_export(&e.file_name().to_string_lossy(), is_dir)
            })
            .filter_map(|e| newest_file_time(&e.path(), 0))
            .max()
    });
    export.or_else(|| newest_file_time(path, 0))
}

impl SetInfo {
    fn new(name: String, path: PathBuf, order: DayOrder) -> SetInfo {
        let from_name = date_from_name(&file_name(&path), order);
        let dated_by = if from_name.is_some() {
            DatedBy::Name
        } else {
            DatedBy::FileTime
        };
        let file_time = set_file_time(&path).map(local);
        let date = from_name.or(file_time);
        let bytes = tree_size(&path, 0);
        SetInfo {
            name,
            path,
            date,
            dated_by,
            file_time,
            runs_disagree: false,
            bytes,
        }
    }

    /// The set files lying in `base` itself.
    fn top_level(base: &Path) -> SetInfo {
        let mut bytes = 0;
        if let Ok(rd) = std::fs::read_dir(base) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                let is_dir = followed_type(&e).is_some_and(|t| t.is_dir());
                if is_note_export(&n, is_dir) || n == "profile" || n == "profile.7z" {
                    bytes += tree_size(&e.path(), 0);
                }
            }
        }
        let file_time = set_file_time(base).map(local);
        SetInfo {
            name: TOP_LEVEL.to_string(),
            path: base.to_path_buf(),
            date: file_time,
            dated_by: DatedBy::FileTime,
            file_time,
            runs_disagree: false,
            bytes,
        }
    }

    /// The date as `inspect` and messages show it, saying when it is a file time.
    pub fn date_label(&self) -> String {
        match (self.date, self.dated_by) {
            (None, _) => "?".into(),
            (Some(d), DatedBy::Name) => d.format("%Y-%m-%d %H:%M").to_string(),
            (Some(d), DatedBy::FileTime) => format!("{} (file time)", d.format("%Y-%m-%d %H:%M")),
        }
    }

    /// The set's name without the plugin's ` (N)`, and N.
    fn run_name(&self) -> (String, u32) {
        let n = file_name(&self.path);
        let (stem, copy) = split_copy_suffix(&n);
        (stem.to_string(), copy)
    }
}

/// Sort sets oldest first: by date, the runs of one name (the plugin adds ` (1)`, ` (2)`, …
/// when the name is taken) at the date of their newest and among themselves by N (` (10)`
/// after ` (9)`). A name the retention freed is taken again, so N can put an older run last:
/// where the runs' file times (far enough apart to be told) say otherwise, they are marked
/// and the choice is left to the user.
fn sort_sets(sets: &mut [SetInfo]) {
    type Group = (String, String);
    let group = |s: &SetInfo| -> Group {
        let parent = s
            .name
            .rsplit_once('/')
            .map(|(p, _)| p)
            .unwrap_or("")
            .to_string();
        (parent, s.run_name().0)
    };
    let mut runs: std::collections::HashMap<Group, Vec<(u32, Option<NaiveDateTime>)>> =
        Default::default();
    let mut dates: std::collections::HashMap<Group, Option<NaiveDateTime>> = Default::default();
    for s in sets.iter() {
        let g = group(s);
        runs.entry(g.clone())
            .or_default()
            .push((s.run_name().1, s.file_time));
        let d = dates.entry(g).or_default();
        *d = (*d).max(s.date);
    }
    let disagree = |runs: &[(u32, Option<NaiveDateTime>)]| {
        runs.iter().any(|(n, t)| {
            runs.iter().any(|(m, u)| match (t, u) {
                (Some(t), Some(u)) => n < m && (*t - *u).num_seconds() >= FILE_TIMES_TOO_CLOSE_SECS,
                _ => false,
            })
        })
    };
    for s in sets.iter_mut() {
        s.runs_disagree = disagree(&runs[&group(s)]);
    }
    sets.sort_by_cached_key(|s| {
        let (stem, copy) = s.run_name();
        (dates[&group(s)], stem, copy, s.name.clone())
    });
}

fn local(t: SystemTime) -> NaiveDateTime {
    DateTime::<Local>::from(t).naive_local()
}

/// `S (2)` → (`S`, 2); `S` → (`S`, 0). The plugin adds ` (N)` when a set's name is taken.
fn split_copy_suffix(name: &str) -> (&str, u32) {
    let stem = name
        .strip_suffix(".7z")
        .or_else(|| name.strip_suffix(".zip"))
        .unwrap_or(name);
    if let Some(open) = stem.rfind(" (") {
        if let Some(n) = stem[open + 2..]
            .strip_suffix(')')
            .and_then(|d| d.parse::<u32>().ok())
        {
            return (&stem[..open], n);
        }
    }
    (stem, 0)
}

/// The newest modification time of the files below `path` (itself, when a file).
fn newest_file_time(path: &Path, depth: usize) -> Option<SystemTime> {
    // The set itself may be a link; below it links are not followed (no loops).
    let meta = if depth == 0 {
        std::fs::metadata(path)
    } else {
        std::fs::symlink_metadata(path)
    }
    .ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    if depth > 16 {
        return None;
    }
    std::fs::read_dir(path)
        .ok()?
        .flatten()
        .filter_map(|e| newest_file_time(&e.path(), depth + 1))
        .max()
}

/// How the sets of one folder write a day and month both before the year (`{DD.MM.YYYY}`
/// or `{MM-DD-YYYY}`): a name with a first number over 12 settles it for all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DayOrder {
    DayFirst,
    MonthFirst,
    /// Not settled (or contradicted): such names give no date.
    Unknown,
}

/// The numbers of a set name, in order: the plugin's `YYYYMMDDHHmm` (and `YYYYMMDD`) runs
/// split into their fields; the ` (N)` suffix left out.
fn name_numbers(name: &str) -> Vec<u32> {
    let (stem, _) = split_copy_suffix(name);
    let mut out = Vec::new();
    for run in stem
        .split(|c: char| !c.is_ascii_digit())
        .filter(|r| !r.is_empty())
    {
        let widths: &[usize] = match run.len() {
            14 => &[4, 2, 2, 2, 2, 2],
            12 => &[4, 2, 2, 2, 2],
            8 => &[4, 2, 2],
            6 if !out.is_empty() => &[2, 2, 2],
            4 if out.len() >= 3 => &[2, 2],
            1..=4 => &[run.len()],
            _ => return Vec::new(),
        };
        let mut at = 0;
        for w in widths {
            out.push(run[at..at + w].parse().unwrap_or(u32::MAX));
            at += w;
        }
    }
    out
}

/// The day order the names of one folder's sets settle (see [`DayOrder`]).
fn day_order<'a>(names: impl Iterator<Item = &'a str>) -> DayOrder {
    let (mut day_first, mut month_first) = (false, false);
    for n in names {
        if let [a, b, y, ..] = name_numbers(n)[..] {
            if (1970..=2200).contains(&y) {
                day_first |= a > 12 && b <= 12;
                month_first |= b > 12 && a <= 12;
            }
        }
    }
    match (day_first, month_first) {
        (true, false) => DayOrder::DayFirst,
        (false, true) => DayOrder::MonthFirst,
        _ => DayOrder::Unknown,
    }
}

/// The date a set's name spells: the plugin's default `{YYYYMMDDHHmm}` (possibly followed by
/// ` (1)`), or another `backupSetName` with the year first (`{YYYY-MM-DD HH-mm}`,
/// `Backup_{YYYYMMDD}`) or last (`{DD.MM.YYYY}`, as the folder's [`DayOrder`] settles).
fn date_from_name(name: &str, order: DayOrder) -> Option<NaiveDateTime> {
    let n = name_numbers(name);
    let (y, m, d, rest) = match n[..] {
        [y, m, d, ref rest @ ..] if (1970..=2200).contains(&y) => (y, m, d, rest),
        [a, b, y, ref rest @ ..] if (1970..=2200).contains(&y) => match order {
            DayOrder::DayFirst => (y, b, a, rest),
            DayOrder::MonthFirst => (y, a, b, rest),
            DayOrder::Unknown if a == b => (y, a, b, rest),
            DayOrder::Unknown => return None,
        },
        _ => return None,
    };
    let (h, min) = match rest {
        [h, min, ..] => (*h, *min),
        [h] => (*h, 0),
        [] => (0, 0),
    };
    chrono::NaiveDate::from_ymd_opt(y as i32, m, d)?.and_hms_opt(h, min, 0)
}

pub(super) fn tree_size(path: &Path, depth: usize) -> u64 {
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

/// An entry's type with links followed: a set folder, a profile folder or a JEX may be a link
/// (a backup kept on another disk); a broken link is no entry.
pub(crate) fn followed_type(e: &std::fs::DirEntry) -> Option<std::fs::FileType> {
    std::fs::metadata(e.path()).ok().map(|m| m.file_type())
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
        let Some(t) = followed_type(&e) else {
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
    let mut found = Vec::new();
    let rd = std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        let p = e.path();
        let Some(t) = followed_type(&e) else {
            continue;
        };
        let set_dir = t.is_dir() && !NOT_SETS.contains(&n.as_str()) && is_set_dir(&p);
        if set_dir || (t.is_file() && is_set_archive(&n)) {
            found.push((n, p));
        }
    }
    let order = day_order(found.iter().map(|(n, _)| n.as_str()));
    Ok(found
        .into_iter()
        .map(|(n, p)| SetInfo::new(format!("{prefix}{n}"), p, order))
        .collect())
}

/// Every set below a base folder, oldest first: its own children, and those one level down
/// in the per-profile folders (`default/`, `profile-<id>/`) that `createSubfolderPerProfile`
/// adds (turning it on leaves the older sets at the top); set files lying in the base itself
/// next to them ([`TOP_LEVEL`]). Given the folder chosen in the plugin's settings (default:
/// the home folder), only the `JoplinBackup/` the plugin makes there: a stray export or zip
/// beside it is no set.
pub fn list_sets(base: &Path) -> Result<Vec<SetInfo>> {
    let plugin_folder = base.join("JoplinBackup");
    if !plugin_folder.is_dir() {
        return sets_in_base(base);
    }
    // The plugin's folder is there: its sets, or nothing (an unfinished first run), never a
    // stray export or zip lying beside it.
    let mut sets = sets_in_base(&plugin_folder)?;
    if sets.is_empty() && is_set_dir(&plugin_folder) {
        // "Keep 1 backup": the set's files lie in the plugin's folder itself.
        sets.push(SetInfo::top_level(&plugin_folder));
    }
    if sets.is_empty() {
        return Err(no_backup_in(&plugin_folder));
    }
    for s in &mut sets {
        s.name = match s.name.as_str() {
            TOP_LEVEL => "JoplinBackup".to_string(),
            n => format!("JoplinBackup/{n}"),
        };
    }
    Ok(sets)
}

/// The profile a set belongs to, when the plugin's per-profile folders hold several: the
/// folder above it (`default/202612011200`), or the set itself when "keep 1 backup" put a
/// profile's files straight into its folder (`default`, `profile-1a2b3c4d`).
fn profile_of(set: &SetInfo) -> Option<&str> {
    let name = set.name.strip_prefix("JoplinBackup/").unwrap_or(&set.name);
    match name.rsplit_once('/') {
        Some((profile, _)) => Some(profile),
        None if name == "default" || name.starts_with("profile-") => Some(name),
        None => None,
    }
}

fn sets_in_base(base: &Path) -> Result<Vec<SetInfo>> {
    let mut sets = sets_in(base, "")?;
    let rd = std::fs::read_dir(base).with_context(|| format!("cannot list {}", base.display()))?;
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        let p = e.path();
        if !followed_type(&e).is_some_and(|t| t.is_dir()) || NOT_SETS.contains(&n.as_str()) {
            continue;
        }
        let inside = sets_in(&p, &format!("{n}/"))?;
        if inside.is_empty() {
            continue;
        }
        // A profile folder holding dated sets and, from "keep 1 backup", set files of its own:
        // those are one more set of that profile, dated by their files.
        if let Some(own) = sets.iter_mut().find(|s| s.path == p) {
            *own = SetInfo {
                name: format!("{n}/{TOP_LEVEL}"),
                ..SetInfo::top_level(&p)
            };
        }
        sets.extend(inside);
    }
    if !sets.is_empty() && is_set_dir(base) {
        sets.push(SetInfo::top_level(base));
    }
    sort_sets(&mut sets);
    Ok(sets)
}

/// The error for a folder (or an archive, by its own name) that holds no backup.
pub fn no_backup_in(place: &Path) -> anyhow::Error {
    let unfinished = ["newJoplinBackup.7z", "joplin_active_backup_job"]
        .into_iter()
        .find(|n| place.join(n).exists());
    if let Some(n) = unfinished {
        return anyhow::anyhow!(
            "{} holds no finished backup, only {n}, which the Backup plugin leaves while a run \
             is under way or when one was cut off. Let the plugin finish a backup (or run one), \
             or give the folder of an earlier backup.",
            place.display()
        );
    }
    if shallow_markdown(place) {
        return crate::exit::Refusal(format!(
            "{} holds Markdown files and no backup: a Markdown (+ Front Matter) export keeps no \
             IDs, so it cannot be restored into a sync target (Joplin can import it as new \
             notes). Give a JEX, a RAW export or the Backup plugin's backup folder; set the \
             plugin's export format to JEX (or RAW) for new backups.",
            place.display()
        ))
        .into();
    }
    anyhow::anyhow!(
        "{} holds no backup: no .jex, no backup set folder, no .7z inside it. Give a .jex file, \
         a backup set folder, or the Backup plugin's backup folder (or a .7z/.zip of one).",
        place.display()
    )
}

/// Whether `dir` or a folder in it (a notebook of a Markdown export) holds `.md` files: looked
/// for five levels deep and in at most a few thousand entries, as `dir` may be a home folder.
fn shallow_markdown(dir: &Path) -> bool {
    let mut budget = 5000usize;
    let mut folders = vec![(dir.to_path_buf(), 0)];
    while let Some((d, depth)) = folders.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            budget = match budget.checked_sub(1) {
                Some(b) => b,
                None => return false,
            };
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            if is_dir && depth < 4 {
                folders.push((e.path(), depth + 1));
            } else if !is_dir && e.file_name().to_string_lossy().ends_with(".md") {
                return true;
            }
        }
    }
    false
}

/// Two sets dated by their files' times this close cannot be told apart: a copy without
/// times (`cp -r`, some cloud clients) writes them all within moments, in any order.
const FILE_TIMES_TOO_CLOSE_SECS: i64 = 600;

/// The set to use from a base folder: `--set NAME` (a set's name as `inspect` lists it, its
/// last part when that is unique, or a profile folder for its newest set), else the newest.
/// When the newest cannot be told for sure, the user is asked to choose: restoring an older
/// set by mistake loses what the newer one holds.
pub fn choose<'a>(base: &Path, sets: &'a [SetInfo], wanted: Option<&str>) -> Result<&'a SetInfo> {
    let listing = |these: &mut dyn Iterator<Item = &SetInfo>| {
        these
            .map(|s| format!("  {:<32} {}", s.name, s.date_label()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    if sets.is_empty() {
        return Err(no_backup_in(base));
    }
    let inspect_hint = format!(
        "(`joplin-restore inspect {}` lists them with dates and sizes.)",
        base.display()
    );
    if let Some(w) = wanted {
        let w = w.trim_end_matches('/');
        if let Some(exact) = sets.iter().find(|s| s.name == w) {
            return Ok(exact);
        }
        let in_profile: Vec<&SetInfo> = sets
            .iter()
            .filter(|s| profile_of(s) == Some(w.trim_start_matches("JoplinBackup/")))
            .collect();
        if !in_profile.is_empty() {
            return newest(base, &in_profile, &listing);
        }
        let by_last_part: Vec<&SetInfo> = sets
            .iter()
            .filter(|s| s.name.ends_with(&format!("/{w}")) || file_name(&s.path) == w)
            .collect();
        match by_last_part[..] {
            [one] => return Ok(one),
            [_, _, ..] => bail!(
                "--set {w}: several sets of {} have that name; give the whole name:\n{}",
                base.display(),
                listing(&mut by_last_part.into_iter())
            ),
            [] => {}
        }
        bail!(
            "{} has no set named {w:?}. Its sets are:\n{}\n{inspect_hint}",
            base.display(),
            listing(&mut sets.iter())
        );
    }
    let profiles: std::collections::BTreeSet<&str> = sets.iter().filter_map(profile_of).collect();
    if profiles.len() > 1 {
        crate::refuse!(
            "{} holds backups of several Joplin profiles; choose one set with --set NAME (or \
             --set PROFILE-FOLDER for that profile's newest set):\n{}",
            base.display(),
            listing(&mut sets.iter())
        );
    }
    let all: Vec<&SetInfo> = sets.iter().collect();
    newest(base, &all, &listing)
}

/// The newest of `sets` (oldest first), unless their dates cannot tell it.
fn newest<'a>(
    base: &Path,
    sets: &[&'a SetInfo],
    listing: &dyn Fn(&mut dyn Iterator<Item = &SetInfo>) -> String,
) -> Result<&'a SetInfo> {
    let last = *sets.last().expect("not empty");
    let Some(before) = sets.len().checked_sub(2).map(|i| sets[i]) else {
        return Ok(last);
    };
    let by_files = last.dated_by == DatedBy::FileTime || before.dated_by == DatedBy::FileTime;
    let why = match (last.date, before.date) {
        (None, _) => Some("no date can be read for them".to_string()),
        _ if last.runs_disagree => Some(format!(
            "the runs of {:?} (the plugin's ` (N)` for a name already taken) and their files' \
             times tell different orders (a name the retention freed is taken again)",
            last.run_name().0
        )),
        // The runs of one name were ordered by their ` (N)` or their far-apart file times.
        _ if last.run_name().0 == before.run_name().0 => None,
        // A file time is no match for a date in a name: a copy that kept no times (`cp -r`,
        // some cloud clients) dates a set made months ago "now".
        (Some(_), Some(_))
            if last.dated_by == DatedBy::FileTime && before.dated_by == DatedBy::Name =>
        {
            Some(format!(
                "{} is dated only by its files' time, which a copy changes, and {} by its name",
                last.name, before.name
            ))
        }
        // A name holds the local time of the machine that made the set, a file time is read
        // in this one's: a day either side of a time zone cannot be told apart.
        (Some(a), Some(b))
            if last.dated_by == DatedBy::Name
                && before.dated_by == DatedBy::FileTime
                && (a - b).num_hours() < 14 =>
        {
            Some(format!(
                "{} is dated by its name (the local time of the machine that made it) and {} \
                 by its files' time, less than a time zone apart",
                last.name, before.name
            ))
        }
        (Some(a), Some(b))
            if a == b || (by_files && (a - b).num_seconds() < FILE_TIMES_TOO_CLOSE_SECS) =>
        {
            Some(format!(
                "{} and {} are dated too close together{}",
                last.name,
                before.name,
                if by_files {
                    " by their files' times (their names hold no date the plugin writes; a \
                     copy that did not keep file times dates every set alike)"
                } else {
                    ""
                }
            ))
        }
        _ => None,
    };
    if let Some(why) = why {
        crate::refuse!(
            "{}: cannot tell which backup set is the newest: {why}. Choose one with --set \
             NAME:\n{}",
            base.display(),
            listing(&mut sets.iter().copied())
        );
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(name: &str, order: DayOrder) -> String {
        date_from_name(name, order)
            .map(|d| d.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_default()
    }

    #[test]
    fn set_names_give_dates() {
        use DayOrder::*;
        assert_eq!(date("202611241200 (1)", Unknown), "2026-11-24 12:00");
        assert_eq!(date("JoplinBackup.7z", Unknown), "");
        assert_eq!(date("2026112412", Unknown), "");
        // Other `backupSetName`s: year first, or day and month first as the folder settles.
        assert_eq!(date("2026-11-24 12-05", Unknown), "2026-11-24 12:05");
        assert_eq!(date("Backup_20261124.7z", Unknown), "2026-11-24 00:00");
        assert_eq!(date("01.12.2026 12-00", DayFirst), "2026-12-01 12:00");
        assert_eq!(date("01.12.2026 12-00", MonthFirst), "2026-01-12 12:00");
        assert_eq!(date("01.12.2026 12-00", Unknown), "", "day or month first?");
        assert_eq!(date("2026.13.01", Unknown), "", "no month 13");
        assert_eq!(date("My notes", Unknown), "");
        assert_eq!(
            day_order(["23.11.2026", "01.12.2026"].into_iter()),
            DayFirst
        );
        assert_eq!(
            day_order(["11-23-2026", "12-01-2026"].into_iter()),
            MonthFirst
        );
        assert_eq!(day_order(["01.12.2026", "02.11.2026"].into_iter()), Unknown);
    }

    fn local_to_system(t: NaiveDateTime) -> SystemTime {
        use chrono::TimeZone;
        Local.from_local_datetime(&t).earliest().unwrap().into()
    }

    fn make_set(dir: &Path, modified: Option<&str>) {
        std::fs::create_dir_all(dir).unwrap();
        let jex = dir.join("all_notebooks.jex");
        std::fs::write(&jex, b"x").unwrap();
        if let Some(t) = modified {
            let t = chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M").unwrap();
            let t = local_to_system(t);
            let f = std::fs::File::options().write(true).open(&jex).unwrap();
            f.set_modified(t).unwrap();
        }
    }

    fn names(sets: &[SetInfo]) -> Vec<&str> {
        sets.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn custom_set_names_order_by_the_date_they_spell() {
        let tmp = tempfile::tempdir().unwrap();
        // Created newest first, so file times alone would pick the oldest.
        for set in ["01.12.2026 12-00", "28.11.2026 12-00", "23.11.2026 12-00"] {
            make_set(&tmp.path().join(set), None);
        }
        let sets = list_sets(tmp.path()).unwrap();
        assert_eq!(
            names(&sets),
            ["23.11.2026 12-00", "28.11.2026 12-00", "01.12.2026 12-00"]
        );
        assert_eq!(
            choose(tmp.path(), &sets, None).unwrap().name,
            "01.12.2026 12-00"
        );
    }

    #[test]
    fn sets_dated_by_close_file_times_are_not_guessed() {
        let tmp = tempfile::tempdir().unwrap();
        make_set(&tmp.path().join("Monday"), Some("2026-11-30 12:00"));
        make_set(&tmp.path().join("Tuesday"), Some("2026-12-01 12:00"));
        let sets = list_sets(tmp.path()).unwrap();
        assert_eq!(sets[1].dated_by, DatedBy::FileTime);
        assert!(sets[1].date_label().ends_with("(file time)"));
        assert_eq!(choose(tmp.path(), &sets, None).unwrap().name, "Tuesday");
        // A copy that kept no times: every set dated alike.
        make_set(&tmp.path().join("Monday"), None);
        make_set(&tmp.path().join("Tuesday"), None);
        let sets = list_sets(tmp.path()).unwrap();
        let err = choose(tmp.path(), &sets, None).unwrap_err().to_string();
        assert!(
            err.contains("cannot tell which backup set is the newest"),
            "{err}"
        );
        assert!(err.contains("--set") && err.contains("Monday"), "{err}");
        assert_eq!(
            choose(tmp.path(), &sets, Some("Monday")).unwrap().name,
            "Monday"
        );
    }

    #[test]
    fn top_level_and_per_profile_sets_are_listed_together() {
        let tmp = tempfile::tempdir().unwrap();
        // "Keep 1 backup" left its files at the top; then retention and per-profile folders.
        make_set(tmp.path(), None);
        make_set(&tmp.path().join("202611301200"), None);
        make_set(&tmp.path().join("default/202612011200"), None);
        let sets = list_sets(tmp.path()).unwrap();
        assert_eq!(
            names(&sets),
            ["202611301200", "default/202612011200", TOP_LEVEL],
            "the top-level files are dated by their time (now)"
        );
        let top = choose(tmp.path(), &sets, Some(TOP_LEVEL)).unwrap();
        assert_eq!(top.path, tmp.path());
        assert_eq!(
            choose(tmp.path(), &sets, Some("202612011200"))
                .unwrap()
                .name,
            "default/202612011200"
        );
        assert_eq!(
            choose(tmp.path(), &sets, Some("default")).unwrap().name,
            "default/202612011200",
            "a profile folder gives its newest set"
        );
    }

    #[test]
    fn the_plugin_folder_wins_over_strays_beside_it() {
        let tmp = tempfile::tempdir().unwrap();
        make_set(&tmp.path().join("Downloads"), None);
        std::fs::write(tmp.path().join("photos.zip"), b"PK").unwrap();
        make_set(&tmp.path().join("JoplinBackup/default/202612011200"), None);
        let sets = list_sets(tmp.path()).unwrap();
        assert_eq!(names(&sets), ["JoplinBackup/default/202612011200"]);
        assert_eq!(
            choose(tmp.path(), &sets, None).unwrap().name,
            "JoplinBackup/default/202612011200"
        );
    }

    #[test]
    fn an_ambiguous_set_name_is_refused_and_copies_sort_by_number() {
        let tmp = tempfile::tempdir().unwrap();
        make_set(&tmp.path().join("default/202612011200"), None);
        make_set(&tmp.path().join("profile-1a2b3c4d/202612011200"), None);
        let sets = list_sets(tmp.path()).unwrap();
        let err = choose(tmp.path(), &sets, Some("202612011200"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("several sets") && err.contains("profile-1a2b3c4d/"),
            "{err}"
        );

        let tmp = tempfile::tempdir().unwrap();
        for n in ["202611241200", "202611241200 (9)", "202611241200 (10)"] {
            make_set(&tmp.path().join(n), None);
        }
        let sets = list_sets(tmp.path()).unwrap();
        assert_eq!(
            choose(tmp.path(), &sets, None).unwrap().name,
            "202611241200 (10)"
        );
        // A name without a date: the plugin's ` (N)` still orders the runs.
        let tmp = tempfile::tempdir().unwrap();
        for n in ["Notes", "Notes (2)", "Notes (1)"] {
            make_set(&tmp.path().join(n), None);
        }
        let sets = list_sets(tmp.path()).unwrap();
        assert_eq!(choose(tmp.path(), &sets, None).unwrap().name, "Notes (2)");
        // Only an unfinished run: said so.
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("newJoplinBackup.7z"), b"7z").unwrap();
        let err = choose(tmp.path(), &[], None).unwrap_err().to_string();
        assert!(
            err.contains("no finished backup, only newJoplinBackup.7z"),
            "{err}"
        );
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
    fn strays_and_links_do_not_hide_the_newest_set() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        make_set(&home.join("JoplinBackup/default/202611231200"), None);
        // A manual export and a notes folder beside the plugin's folder: not sets.
        std::fs::write(home.join("my-export.jex"), b"x").unwrap();
        std::fs::create_dir_all(home.join("notes")).unwrap();
        // The newest set kept on another disk, linked in.
        make_set(&tmp.path().join("elsewhere/202612011200"), None);
        std::os::unix::fs::symlink(
            tmp.path().join("elsewhere/202612011200"),
            home.join("JoplinBackup/default/202612011200"),
        )
        .unwrap();
        let sets = list_sets(&home).unwrap();
        assert_eq!(
            names(&sets),
            [
                "JoplinBackup/default/202611231200",
                "JoplinBackup/default/202612011200"
            ]
        );
        assert_eq!(
            choose(&home, &sets, Some("default")).unwrap().name,
            "JoplinBackup/default/202612011200",
            "--set PROFILE from the folder above JoplinBackup/"
        );
    }

    #[test]
    fn a_file_time_newer_than_a_name_date_is_not_trusted() {
        let tmp = tempfile::tempdir().unwrap();
        // "Keep 1 backup" files at the top, copied without times (so dated now), beside sets
        // whose names date them.
        make_set(tmp.path(), None);
        make_set(&tmp.path().join("202612011200"), Some("2026-12-01 12:00"));
        let sets = list_sets(tmp.path()).unwrap();
        assert_eq!(names(&sets), ["202612011200", TOP_LEVEL]);
        let err = choose(tmp.path(), &sets, None).unwrap_err().to_string();
        assert!(err.contains("dated only by its files' time"), "{err}");
        // Older by its time: the named set is the newest, no question.
        make_set(tmp.path(), Some("2026-10-01 12:00"));
        let sets = list_sets(tmp.path()).unwrap();
        assert_eq!(
            choose(tmp.path(), &sets, None).unwrap().name,
            "202612011200"
        );
    }

    #[test]
    fn runs_of_a_reused_name_whose_times_disagree_are_not_guessed() {
        let tmp = tempfile::tempdir().unwrap();
        // The retention removed "2026-12-07" and a later run took the name again.
        make_set(&tmp.path().join("2026-12-07 (2)"), Some("2026-12-07 14:00"));
        make_set(&tmp.path().join("2026-12-07 (3)"), Some("2026-12-07 14:05"));
        make_set(&tmp.path().join("2026-12-07"), Some("2026-12-07 18:00"));
        let sets = list_sets(tmp.path()).unwrap();
        let err = choose(tmp.path(), &sets, None).unwrap_err();
        assert!(crate::exit::is_refusal(&err), "exit 4: {err}");
        assert!(err.to_string().contains("tell different orders"), "{err}");
        // Times that agree with N (or a copy that kept none): N decides.
        let tmp = tempfile::tempdir().unwrap();
        make_set(&tmp.path().join("2026-12-07"), Some("2026-12-07 10:00"));
        make_set(&tmp.path().join("2026-12-07 (1)"), Some("2026-12-07 18:00"));
        let sets = list_sets(tmp.path()).unwrap();
        assert_eq!(
            choose(tmp.path(), &sets, None).unwrap().name,
            "2026-12-07 (1)"
        );
    }

    #[test]
    fn a_name_date_within_a_time_zone_of_a_file_time_is_not_guessed() {
        let tmp = tempfile::tempdir().unwrap();
        make_set(&tmp.path().join("202612071400"), Some("2026-12-07 03:00"));
        std::fs::create_dir_all(tmp.path().join("x")).unwrap();
        let archive = tmp.path().join("JoplinBackup.7z");
        std::fs::write(&archive, b"7z").unwrap();
        let f = std::fs::File::options().write(true).open(&archive).unwrap();
        let t =
            chrono::NaiveDateTime::parse_from_str("2026-12-07 08:00", "%Y-%m-%d %H:%M").unwrap();
        f.set_modified(local_to_system(t)).unwrap();
        let sets = list_sets(tmp.path()).unwrap();
        let err = choose(tmp.path(), &sets, None).unwrap_err().to_string();
        assert!(err.contains("less than a time zone apart"), "{err}");
    }

    #[test]
    fn retention_1_profiles_and_an_unfinished_plugin_folder() {
        let tmp = tempfile::tempdir().unwrap();
        // Two profiles, each keeping one backup in its folder.
        make_set(&tmp.path().join("JoplinBackup/default"), None);
        make_set(&tmp.path().join("JoplinBackup/profile-1a2b3c4d"), None);
        std::fs::write(tmp.path().join("stray.jex"), b"x").unwrap();
        let sets = list_sets(tmp.path()).unwrap();
        assert_eq!(
            names(&sets),
            ["JoplinBackup/default", "JoplinBackup/profile-1a2b3c4d"]
        );
        let err = choose(tmp.path(), &sets, None).unwrap_err().to_string();
        assert!(err.contains("several Joplin profiles"), "{err}");
        assert_eq!(
            choose(tmp.path(), &sets, Some("default")).unwrap().name,
            "JoplinBackup/default"
        );
        // A profile folder with files of its own ("keep 1 backup" once) beside dated sets:
        // `--set default` is that profile's newest set, its own files are one more set.
        let tmp2 = tempfile::tempdir().unwrap();
        make_set(
            &tmp2.path().join("JoplinBackup/default"),
            Some("2026-10-01 12:00"),
        );
        make_set(&tmp2.path().join("JoplinBackup/default/202612011200"), None);
        let sets = list_sets(tmp2.path()).unwrap();
        assert_eq!(
            names(&sets),
            [
                "JoplinBackup/default/(top level)",
                "JoplinBackup/default/202612011200"
            ]
        );
        assert_eq!(
            choose(tmp2.path(), &sets, Some("default")).unwrap().name,
            "JoplinBackup/default/202612011200"
        );
        assert_eq!(
            choose(tmp2.path(), &sets, Some("default/(top level)"))
                .unwrap()
                .name,
            "JoplinBackup/default/(top level)"
        );
        // One backup kept straight in the plugin's folder, a stray export beside it.
        let tmp = tempfile::tempdir().unwrap();
        make_set(&tmp.path().join("JoplinBackup"), None);
        std::fs::write(tmp.path().join("stray.jex"), b"x").unwrap();
        let sets = list_sets(tmp.path()).unwrap();
        assert_eq!(names(&sets), ["JoplinBackup"]);
        // Only an unfinished run in the plugin's folder: no stray read instead.
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("JoplinBackup")).unwrap();
        std::fs::write(tmp.path().join("JoplinBackup/newJoplinBackup.7z"), b"7z").unwrap();
        std::fs::write(tmp.path().join("stray.jex"), b"x").unwrap();
        let err = list_sets(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("no finished backup"), "{err}");
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
