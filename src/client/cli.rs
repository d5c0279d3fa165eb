//! The `client …` subcommands: argument definitions and what each prints.

use std::path::PathBuf;

use anyhow::Result;

use super::data_api::{self, ApiArgs};
use super::{customise, import, profiles, reset};
use crate::exit::{self, Refusal};
use crate::validate::ProblemClass;

#[derive(Debug, clap::Subcommand)]
pub enum ClientCommand {
    /// List the Joplin profiles on this machine: size, notes, sync target, E2EE, running.
    Profiles {
        /// Home folder to look in (default: your home).
        #[arg(long, value_name = "DIR")]
        home: Option<PathBuf>,
        /// Also look at a portable Joplin's folder (holding JoplinProfile/).
        #[arg(long, value_name = "DIR")]
        portable: Option<PathBuf>,
        /// Describe this profile folder only.
        #[arg(long, value_name = "DIR")]
        profile: Option<PathBuf>,
    },
    /// Move a profile aside (to a timestamped sibling; never deleted) so Joplin starts fresh.
    Reset {
        /// The profile folder (default: ~/.config/joplin-desktop, else ~/.config/joplin).
        #[arg(long, value_name = "DIR")]
        profile: Option<PathBuf>,
        #[arg(long, value_name = "DIR", hide = true)]
        home: Option<PathBuf>,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Check the profile and say where it would move; move nothing.
        #[arg(long, short = 'n')]
        dry_run: bool,
    },
    /// Put back keymap, CSS, templates and plugins from a backup set's profile/ folder.
    Customise {
        /// The backup: a set folder (holding profile/) or its profile/ folder, a .7z/.zip
        /// set (password-protected too), or the Backup plugin's folder of sets (newest, or
        /// --set).
        #[arg(long, value_name = "BACKUP_SET")]
        from: PathBuf,
        #[command(flatten)]
        opts: crate::backup::BackupOptions,
        /// The profile folder (default: the one `client reset` just moved aside, else
        /// ~/.config/joplin-desktop, else ~/.config/joplin). One that does not exist yet (just
        /// reset) is created, so this can run before Joplin starts.
        #[arg(long, value_name = "DIR")]
        profile: Option<PathBuf>,
        #[arg(long, value_name = "DIR", hide = true)]
        home: Option<PathBuf>,
        /// Also put back settings.json (sync target, theme, API token of the old setup).
        #[arg(long)]
        settings: bool,
    },
    /// Permanently delete every note, notebook, tag and attachment of a running Joplin (Data API).
    Wipe {
        #[command(flatten)]
        api: Box<ApiArgs>,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Count what would be deleted and delete nothing.
        #[arg(long, short = 'n')]
        dry_run: bool,
        /// Wipe even though the profile syncs: its next sync then deletes every note on its
        /// sync target too, and on every device that syncs with it.
        #[arg(long)]
        even_if_synced: bool,
    },
    /// Import a backup into a running Joplin through its Data API, keeping IDs; reruns resume.
    Import {
        /// A .jex, a backup set folder, the Backup plugin's folder of sets, or a .7z/.zip.
        #[arg(value_name = "BACKUP")]
        backup: PathBuf,
        #[command(flatten)]
        opts: crate::backup::BackupOptions,
        #[command(flatten)]
        api: Box<ApiArgs>,
        /// Problem classes accepted in the backup (as for restore).
        #[arg(long = "allow", value_enum, value_name = "PROBLEM")]
        allow: Vec<ProblemClass>,
        /// Read what Joplin has and count what would be created; write nothing.
        #[arg(long, short = 'n')]
        dry_run: bool,
    },
}

impl ClientCommand {
    /// The command as `--json` reports name it.
    pub fn name(&self) -> &'static str {
        match self {
            ClientCommand::Profiles { .. } => "client profiles",
            ClientCommand::Reset { .. } => "client reset",
            ClientCommand::Customise { .. } => "client customise",
            ClientCommand::Wipe { .. } => "client wipe",
            ClientCommand::Import { .. } => "client import",
        }
    }
}

pub async fn run(cmd: ClientCommand) -> Result<i32> {
    match cmd {
        ClientCommand::Profiles {
            home,
            portable,
            profile,
        } => {
            let list = match profile {
                Some(p) => {
                    if !p.is_dir() {
                        anyhow::bail!("--profile {}: no such folder", p.display());
                    }
                    let root = profiles::root_of(&p);
                    vec![profiles::describe(&p, &root, "given")]
                }
                None => {
                    let home = profiles::home_dir(home.as_deref()).ok_or_else(|| {
                        anyhow::anyhow!(
                            "cannot tell your home folder (HOME is not set): pass --home DIR"
                        )
                    })?;
                    let portable = portable
                        .or_else(|| std::env::var_os("PORTABLE_EXECUTABLE_DIR").map(PathBuf::from));
                    profiles::discover(&home, portable.as_deref())
                }
            };
            if crate::report::json() {
                // With the global --json: the list goes into the one report main prints.
                crate::report::set_result(serde_json::json!({
                    "command": "client profiles",
                    "profiles": list,
                }));
            } else {
                profiles::print(&list);
            }
            Ok(exit::OK)
        }
        ClientCommand::Reset {
            profile,
            home,
            yes,
            dry_run,
        } => {
            let dir = profiles::choose(profile.as_deref(), home.as_deref())?;
            if profile.is_none() {
                if let Some(earlier) = profiles::reset_before(&dir, home.as_deref()) {
                    crate::usage_error!(
                        "{} was reset already (moved aside next to it: {}). Without --profile \
                         this would now reset the next profile found, {}: nothing was moved. \
                         Pass --profile {} if that one is meant too.",
                        earlier.display(),
                        profiles::reset_copies(&earlier)
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", "),
                        dir.display(),
                        dir.display()
                    );
                }
            }
            reset::check(&dir)?;
            // The root carries its sub-profiles and what they share: say so before moving it.
            let subs: Vec<String> = if profiles::root_of(&dir) == dir {
                profiles::sub_profiles(&dir)
                    .0
                    .into_iter()
                    .filter(|(id, _)| id != "default")
                    .map(|(_, name)| name)
                    .collect()
            } else {
                Vec::new()
            };
            let with = if subs.is_empty() {
                String::new()
            } else {
                crate::say!(
                    "{} is the root profile: its {} other profile(s) ({}) and the plugins and \
                     CSS they share move with it.",
                    dir.display(),
                    subs.len(),
                    subs.join(", ")
                );
                format!(" (and its {} other profile(s))", subs.len())
            };
            if dry_run {
                let aside = format!("{}.reset-{}", dir.display(), super::stamp());
                crate::say!(
                    "Would move {}{with} to {aside} (Joplin is not running on it).\ndry run: \
                     nothing was moved",
                    dir.display()
                );
                crate::report::set_result(serde_json::json!({
                    "command": "client reset",
                    "from": dir,
                    "dry_run": true,
                    "would_move_to": aside,
                }));
                return Ok(exit::OK);
            }
            if !yes
                && !crate::safety::confirm(&format!(
                    "Move {}{with} aside so Joplin starts with a fresh profile?",
                    dir.display()
                ))?
            {
                return Err(Refusal(
                    "not confirmed: nothing was moved (pass --yes to skip the question)".into(),
                )
                .into());
            }
            let o = reset::reset(&dir)?;
            for line in reset::undo_hint(&o).lines() {
                crate::say!("{line}");
            }
            crate::report::set_result(serde_json::json!({
                "command": "client reset",
                "from": o.from,
                "moved_to": o.moved_to,
            }));
            Ok(exit::OK)
        }
        ClientCommand::Customise {
            from,
            opts,
            profile,
            home,
            settings,
        } => {
            // An unpacked set is read in place; anything else is opened as `restore` opens a
            // backup (archives unpacked to a temp folder, kept until the end).
            let opened;
            let from = match customise::source_dir(&from) {
                Ok(src) => src,
                Err(not_unpacked) => {
                    opened = match crate::backup::Backup::open_with(&from, &opts) {
                        Ok(b) => b,
                        // A folder that is no backup either: say what customise takes.
                        Err(_)
                            if from.is_dir()
                                && !crate::backup::locate::is_set_dir(&from)
                                && crate::backup::locate::list_sets(&from)
                                    .map_or(true, |sets| sets.is_empty()) =>
                        {
                            return Err(not_unpacked)
                        }
                        Err(e) => return Err(e.context(format!("--from {}", from.display()))),
                    };
                    opened.say_set();
                    match opened.profile_files() {
                        Some(p) => p.dir.clone(),
                        None => anyhow::bail!(
                            "--from {}: the backup set has no profile/ folder (the Backup \
                             plugin was set not to copy the profile): nothing to put back",
                            from.display()
                        ),
                    }
                }
            };
            let (dir, created) = profiles::choose_or_create(profile.as_deref(), home.as_deref())?;
            // A typo (`--profile ~`) must not fill another folder with Joplin's files: an
            // existing one must be empty, a profile, or hold what an earlier customise put.
            if !created && !customise::may_write_into(&dir) {
                return Err(Refusal(format!(
                    "{} does not look like a Joplin profile (no database.sqlite, settings.json, \
                     profiles.json, nor customisations) and is not empty: nothing was written. \
                     Check the path with `joplin-restore client profiles`.",
                    dir.display()
                ))
                .into());
            }
            if created {
                crate::say!(
                    "Created the profile folder {} (Joplin fills it in when it starts).",
                    dir.display()
                );
            }
            let s = customise::customise(&from, &dir, settings)?;
            customise::print(&s);
            crate::report::set_result(serde_json::json!({
                "command": "client customise",
                "profile": dir,
                "summary": s,
            }));
            Ok(exit::OK)
        }
        ClientCommand::Wipe {
            api,
            yes,
            dry_run,
            even_if_synced,
        } => {
            let api = data_api::connect(&api).await?;
            let syncs = wipe_would_spread(&api, even_if_synced || dry_run)?;
            let (n, f, t, r) = import::inventory(&api).await?;
            if dry_run {
                crate::say!(
                    "Would permanently delete {} note(s), {} notebook(s), {} tag(s) and {} \
                     attachment(s) from {}.\ndry run: nothing was deleted",
                    n.len(),
                    f.len(),
                    t.len(),
                    r.len(),
                    api.describe()
                );
                crate::report::set_result(serde_json::json!({
                    "command": "client wipe",
                    "api": api.describe(),
                    "dry_run": true,
                    "would_delete": {
                        "notes": n.len(),
                        "notebooks": f.len(),
                        "tags": t.len(),
                        "attachments": r.len(),
                    },
                    "syncs_with": syncs,
                }));
                return Ok(exit::OK);
            }
            if !yes
                && !crate::safety::confirm(&format!(
                    "Permanently delete {} note(s), {} notebook(s), {} tag(s) and {} attachment(s) from {}?",
                    n.len(),
                    f.len(),
                    t.len(),
                    r.len(),
                    api.describe()
                ))?
            {
                return Err(Refusal("not confirmed: nothing was deleted (pass --yes to skip the question)".into()).into());
            }
            let s = import::wipe(&api).await?;
            crate::say!("Wiped {}: deleted {}.", api.describe(), s.deleted);
            crate::report::set_result(serde_json::json!({
                "command": "client wipe",
                "api": api.describe(),
                "deleted": s.deleted,
            }));
            Ok(exit::OK)
        }
        ClientCommand::Import {
            backup,
            opts,
            api,
            allow,
            dry_run,
        } => {
            let (b, _v) = crate::restore::read_and_validate(&backup, &opts, &allow)?;
            for w in &b.warnings {
                crate::note!("warning: {w}");
            }
            let mut api = data_api::connect(&api).await?;
            api.dry_run = dry_run;
            let s = import::import(&api, &b).await?;
            for w in &s.warnings {
                crate::note!("warning: {w}");
            }
            if dry_run {
                crate::say!(
                    "Would import into {}: create {}.",
                    api.describe(),
                    s.created
                );
                crate::say!("Already there (skipped): {}.", s.skipped);
                crate::say!("dry run: nothing was changed");
                crate::report::set_result(serde_json::json!({
                    "command": "client import",
                    "api": api.describe(),
                    "dry_run": true,
                    "would_create": s.created,
                    "skipped": s.skipped,
                    "warnings": s.warnings,
                    "requests": api.requests(),
                    "writes_not_sent": api.would_write(),
                    "failures": s.failures,
                }));
                if !s.failures.is_empty() {
                    anyhow::bail!(
                        "the dry run could not read everything it needs:\n  {}",
                        s.failures.join("\n  ")
                    );
                }
                return Ok(exit::OK);
            }
            crate::say!("Imported into {}: created {}.", api.describe(), s.created);
            crate::say!("Already there (skipped): {}.", s.skipped);
            if s.repaired > 0 {
                crate::say!(
                    "{} note(s) an earlier run left unfinished (no body, to-do state, author…) were completed.",
                    s.repaired
                );
            }
            crate::say!("{} API call(s), {} retried.", api.requests(), api.retried());
            crate::report::set_result(serde_json::json!({
                "command": "client import",
                "api": api.describe(),
                "created": s.created,
                "skipped": s.skipped,
                "repaired": s.repaired,
                "warnings": s.warnings,
                "failures": s.failures,
                "requests": api.requests(),
                "retried": api.retried(),
            }));
            if !s.failures.is_empty() {
                anyhow::bail!(
                    "{} item(s) could not be imported (run the same command again to resume; \
                     what is already there is skipped):\n  {}",
                    s.failures.len(),
                    s.failures.join("\n  ")
                );
            }
            Ok(exit::OK)
        }
    }
}

/// What a wipe does next to the Joplin it talks to: the deletions are local changes, so the
/// profile's next sync deletes every note on its sync target too (Joplin's fail-safe stops
/// only remote deletions from emptying a client, not this). Refused (exit 4) when the profile
/// has a sync target, unless `go_on`; said when it cannot be told. Returns the sync target.
fn wipe_would_spread(
    api: &data_api::DataApi,
    go_on: bool,
) -> Result<Option<profiles::SyncTargetInfo>> {
    let Some(dir) = &api.profile else {
        let what = "which profile this Joplin runs on cannot be told (no profile found whose \
                    settings.json holds the API token in use), so neither whether it syncs: if \
                    it does, its next sync deletes every note on its sync target too";
        if go_on {
            crate::note!("warning: {what}.");
            return Ok(None);
        }
        return Err(Refusal(format!(
            "{what}. Nothing was deleted. Pass --profile DIR for the profile it runs on, or \
             --even-if-synced once its synchronisation is off (or to wipe anyway)."
        ))
        .into());
    };
    let Some(target) = profiles::sync_target(dir) else {
        return Ok(None);
    };
    let at = target
        .location
        .as_deref()
        .map(|l| format!(" at {l}"))
        .unwrap_or_default();
    let what = format!(
        "{} syncs with {} ({}){at}: its next sync would delete every note there too, and on \
         every device that syncs with it",
        dir.display(),
        target.name,
        target.id
    );
    if go_on {
        crate::note!("warning: {what}.");
        return Ok(Some(target));
    }
    Err(Refusal(format!(
        "{what}. Nothing was deleted. Turn its synchronisation off first (desktop: \
         Configuration → Synchronisation → target \"(None)\"; CLI: `joplin config sync.target \
         0`), or, to start this machine over from a target you restored, close Joplin and use \
         `client reset` instead. --even-if-synced wipes anyway."
    ))
    .into())
}
