//! `client reset`: the manual procedure's "delete, rename or move the joplin-desktop folder",
//! done safely: refuse while Joplin runs, move the folder to a timestamped sibling, never delete.
//!
//! A sub-profile (`profile-<id>/` of a root with `profiles.json`) is moved alone and
//! `profiles.json` is left as it is: Joplin errors out when the current profile id is not listed,
//! and recreates the missing folder empty on start.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::profiles::{root_of, running};
use crate::exit::Refusal;

#[derive(Debug, serde::Serialize)]
pub struct ResetOutcome {
    pub from: PathBuf,
    pub moved_to: PathBuf,
}

/// Check that `dir` can be reset; returns the refusal message otherwise.
pub fn check(dir: &Path) -> Result<()> {
    if !super::profiles::looks_like_profile(dir) {
        return Err(Refusal(format!(
            "{} does not look like a Joplin profile (no database.sqlite, settings.json or \
             profiles.json): nothing moved. Check the path with `joplin-restore client profiles`.",
            dir.display()
        ))
        .into());
    }
    let r = running(dir);
    if r.running {
        return Err(Refusal(format!(
            "Joplin is running on {}: {}. Quit Joplin (File > Quit, or stop `joplin server`) \
             and run this again; nothing was moved.",
            dir.display(),
            r.evidence
        ))
        .into());
    }
    Ok(())
}

/// Move the profile aside.
pub fn reset(dir: &Path) -> Result<ResetOutcome> {
    let dir = std::path::absolute(dir)
        .with_context(|| format!("cannot resolve the path {}", dir.display()))?;
    check(&dir)?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .context("the profile path has no folder name")?;
    let parent = dir
        .parent()
        .context("the profile path has no parent folder")?;
    let target = super::free_path(parent.join(format!("{name}.reset-{}", super::stamp())))?;
    std::fs::rename(&dir, &target).with_context(|| {
        format!(
            "cannot move {} to {}: is a file in it open in another program? Nothing was moved.",
            dir.display(),
            target.display()
        )
    })?;
    Ok(ResetOutcome {
        from: dir,
        moved_to: target,
    })
}

/// A path as one shell word, for commands the user copies (a `'` in a name must not end the
/// quoting). A name the shell cannot take (a NUL) is shown as it is.
fn shell_quoted(p: &Path) -> String {
    let s = p.to_string_lossy();
    shlex::try_quote(&s)
        .map(|q| q.into_owned())
        .unwrap_or_else(|_| s.into_owned())
}

/// What to tell the user after a reset.
pub fn undo_hint(o: &ResetOutcome) -> String {
    let sub = root_of(&o.from) != o.from;
    let mut s = format!(
        "Moved {} to {}.\nStart Joplin now to get a fresh profile{} (to put your \
         customisations back first: `joplin-restore client customise --from BACKUP_SET \
         --profile {}`).\n\
         To undo (with Joplin closed): remove the fresh {} if Joplin created one, then move the old one back:\n",
        o.from.display(),
        o.moved_to.display(),
        if sub {
            " (the sub-profile stays listed in profiles.json)"
        } else {
            ""
        },
        shell_quoted(&o.from),
        o.from.display(),
    );
    if cfg!(windows) {
        s.push_str(&format!(
            "  move \"{}\" \"{}\"\n",
            o.moved_to.display(),
            o.from.display()
        ));
    } else {
        s.push_str(&format!(
            "  mv {} {}\n",
            shell_quoted(&o.moved_to),
            shell_quoted(&o.from)
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The undo commands are pasted into a shell: a quote in a folder name stays quoted.
    #[test]
    fn undo_hint_quotes_paths_for_the_shell() {
        let o = ResetOutcome {
            from: PathBuf::from("/home/bob/bob's joplin"),
            moved_to: PathBuf::from("/home/bob/bob's joplin.reset-1"),
        };
        let hint = undo_hint(&o);
        let line = hint
            .lines()
            .find(|l| l.trim_start().starts_with("mv "))
            .unwrap();
        let words = shlex::split(line.trim()).unwrap();
        assert_eq!(
            words,
            [
                "mv",
                "/home/bob/bob's joplin.reset-1",
                "/home/bob/bob's joplin"
            ],
            "{hint}"
        );
    }
}
