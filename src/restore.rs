//! The restore pipeline, stage by stage: read → validate → plan → (snapshot) → execute → verify.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::backup::{Backup, BackupOptions};
use crate::e2ee::{E2eeInfo, Keyring, PasswordArgs, PASSWORD_ENV};
use crate::execute::Executor;
use crate::exit::Refusal;
use crate::journal::{Journal, JournalStart};
use crate::open::{open_paced, Folder, PacerArgs, TargetArgs};
use crate::plan::{self, Mode};
use crate::progress::Progress;
use crate::safety::{confirm, JournalArgs, SafetyArgs};
use crate::target::{now_ms, stamp_now, SyncTarget};
use crate::validate::{validate, ProblemClass};
use crate::verify::{self, VerifyMode, VerifyReport};

#[derive(Debug, Clone, clap::Args)]
pub struct RestoreArgs {
    /// The backup: a .jex, a backup set folder, the Backup plugin's folder of sets, or a
    /// .7z/.zip of one.
    #[arg(value_name = "BACKUP")]
    pub backup: PathBuf,
    #[command(flatten)]
    pub backup_opts: BackupOptions,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub pacer: PacerArgs,
    #[command(flatten)]
    pub safety: SafetyArgs,
    #[command(flatten)]
    pub journal: JournalArgs,
    /// mirror: upload first, delete what the backup lacks last (clients never see an empty
    /// target); clear-first: delete everything first, then upload (the manual procedure).
    #[arg(long, value_enum, default_value_t = Mode::Mirror)]
    pub mode: Mode,
    /// Also re-write items already identical on the target, so the backup wins over edits that
    /// clients have not synced yet (they keep them as conflict copies). Default: skip them, and
    /// such unsynced edits stay the current version.
    #[arg(long)]
    pub rewrite_unchanged: bool,
    /// Compare every attachment blob already on the target with the backup's byte for byte
    /// (downloads them) instead of trusting a matching size, and replace those that differ:
    /// repairs blobs damaged in place.
    #[arg(long)]
    pub checksum: bool,
    /// Restore only these (repeatable): notebook:PATH-OR-ID (with sub-notebooks),
    /// note:ID-OR-TITLE (a title two notes share is refused: give the id), tag:TITLE, or a
    /// bare id/path/title. Merges into the target: deletes nothing, brings parent notebooks,
    /// attachments, tags and note-tag links along (not the notes a note links to with :/ID);
    /// a note the target keeps keeps its tags unless the tag is named; a tag the target has
    /// by title is reused.
    #[arg(long, value_name = "SELECTOR")]
    pub only: Vec<crate::selection::Selector>,
    /// With --only: replace items the target already has (default: keep the target's copy).
    #[arg(long, requires = "only")]
    pub overwrite: bool,
    /// Give every item a new id, like Joplin's own JEX import (every client must then be reset).
    #[arg(long)]
    pub new_ids: bool,
    /// Accept a class of backup problems (repeatable; `inspect` shows the backup's problems
    /// with their class).
    #[arg(long = "allow", value_enum, value_name = "PROBLEM")]
    pub allow: Vec<ProblemClass>,
    /// The check after writing: quick (one listing: every file there with the size written,
    /// nothing extra), full (read everything back and compare, decrypting E2EE; the same as a
    /// `verify` run afterwards), none. Default: quick, or full on an encrypted target (only
    /// decrypting shows every item is encrypted with the right key).
    #[arg(long, value_enum, value_name = "MODE")]
    pub verify: Option<VerifyMode>,
    /// Same as --verify none.
    #[arg(long)]
    pub no_verify: bool,
    /// No progress display.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    #[command(flatten)]
    pub password: PasswordArgs,
    /// Write plaintext into an end-to-end encrypted target (its host can then read your notes).
    #[arg(long)]
    pub allow_plaintext: bool,
    /// Turn end-to-end encryption on for a new (empty) target: a new master key protected by
    /// the master password (given as for an encrypted target), and everything written encrypted.
    #[arg(long, conflicts_with = "allow_plaintext")]
    pub enable_e2ee: bool,
}

pub struct RestoreSummary {
    pub target: String,
    pub uploaded: usize,
    pub uploaded_bytes: u64,
    pub timings: crate::report::Timings,
    pub pacer: backend_core::pacer::PacerCounts,
    /// The transfer limits in force (command line, config file or the backend's defaults).
    pub limits: serde_json::Value,
    pub unchanged: usize,
    pub deleted: usize,
    pub snapshot: Option<PathBuf>,
    /// The check that ran after writing (`--verify`, or the default for this target).
    pub verify_mode: VerifyMode,
    pub verify: Option<VerifyReport>,
    /// `--dry-run`: what the run would have done (`upload`, `upload_bytes`, `replace`,
    /// `delete`, `unchanged`).
    pub planned: Option<serde_json::Value>,
    /// `--only`: what the merge kept of the target's (`kept` ids, `reused_tags`,
    /// `left_out_links`, `left_out_tags`); `None` for a whole restore.
    pub partial: Option<serde_json::Value>,
    /// What was read ([`Backup::source_json`]).
    pub backup: serde_json::Value,
}

/// `--transfers`, `--tpslimit`, `--bwlimit`, `--retries` as the pacer applies them.
pub fn limits_json(o: &backend_core::pacer::PacerOptions) -> serde_json::Value {
    serde_json::json!({
        "transfers": o.transfers,
        "tpslimit": o.tps_limit,
        "bwlimit": o.bw_limit,
        "retries": o.retries,
    })
}

/// Read and validate a backup; refuse (exit 4) on problems the user did not allow.
pub fn read_and_validate(
    path: &std::path::Path,
    opts: &BackupOptions,
    allow: &[ProblemClass],
) -> Result<(Backup, crate::validate::Validation)> {
    let backup = Backup::open_with(path, opts)?;
    backup.say_set();
    let v = validate(&backup);
    if let Some(msg) = v.refusal(allow) {
        return Err(Refusal(msg).into());
    }
    Ok((backup, v))
}

pub async fn run(args: &RestoreArgs) -> Result<RestoreSummary> {
    let progress = Progress::new(args.quiet || crate::report::json());
    let mut timings = crate::report::Timings::default();
    let mut stage = std::time::Instant::now();
    if !args.only.is_empty() && args.rewrite_unchanged && !args.overwrite {
        // It would silently rewrite nothing: --only keeps every copy the target has.
        crate::usage_error!(
            "--rewrite-unchanged with --only rewrites nothing: a partial restore keeps the \
             target's copies unless --overwrite. Add --overwrite to make the backup's version \
             win (clients keep unsynced edits as conflict copies), or drop --rewrite-unchanged."
        );
    }
    // read + validate: before anything touches the target.
    let (mut backup, validation) = read_and_validate(&args.backup, &args.backup_opts, &args.allow)?;
    for w in &backup.warnings {
        progress.say(&format!("warning: {w}"));
    }

    let paced = open_paced(&args.target, &args.pacer, Folder::CreatedIfMissing)?;
    let transfers = paced.options().transfers;
    let target = SyncTarget::new(paced.clone());
    let state = target.state().await?;
    target.check_writable(&state, args.safety.force)?;
    let (keyring, new_info) = if args.enable_e2ee && !state.e2ee_enabled() {
        let (info, ring) = enable_e2ee(&target, &state, &args.password).await?;
        (Some(ring), Some(info))
    } else {
        if args.enable_e2ee {
            progress.say("the target is already end-to-end encrypted: using its master key");
        }
        let k = keyring_for(&target, &state, &args.password, Some(args.allow_plaintext)).await?;
        (k, None)
    };
    let verify_mode = match (args.no_verify, args.verify) {
        (true, _) => VerifyMode::None,
        (false, Some(m)) => m,
        (false, None) if keyring.is_some() => VerifyMode::Full,
        (false, None) => VerifyMode::Quick,
    };

    // An interrupted run of this same restore continues where it stopped.
    let journal_dir = args
        .journal
        .journal_dir
        .clone()
        .unwrap_or_else(crate::journal::default_dir);
    let journal_key = crate::journal::key(
        &args.backup,
        &target.describe(),
        &format!(
            "mode={:?} new_ids={} rewrite={} set={:?}{}",
            args.mode,
            args.new_ids,
            args.rewrite_unchanged,
            // A folder of sets: which set, so a newer one is a different restore.
            backup.set.as_ref().map(|s| &s.name),
            // A partial restore is another restore than the whole one (or another part).
            if args.only.is_empty() {
                String::new()
            } else {
                let only: Vec<String> = args.only.iter().map(|o| o.to_string()).collect();
                format!(" only={only:?} overwrite={}", args.overwrite)
            }
        ),
    );
    let resumed = if args.journal.fresh {
        None
    } else {
        Journal::peek(&journal_dir, &journal_key)
    };
    if resumed.is_some() {
        progress.say("resuming an interrupted restore of this backup into this target");
    }
    let id_seed = resumed
        .as_ref()
        .map(|r| r.id_seed)
        .unwrap_or_else(rand::random);
    if args.new_ids {
        crate::newids::remap(&mut backup, id_seed)?;
    }
    let mut only = if args.only.is_empty() {
        None
    } else {
        Some(crate::selection::resolve(&backup, &args.only)?)
    };
    let mut partial = serde_json::Map::new();
    if let Some(sel) = only.as_mut() {
        let kr = keyring.as_deref();
        let mut reused = Vec::new();
        if let Some(theirs) =
            crate::merge::read_target_tags(&target, &backup, sel, &state, transfers, kr).await?
        {
            reused = crate::merge::reuse_target_tags(&mut backup, sel, &state, &theirs)?;
        }
        partial.insert(
            "reused_tags".into(),
            serde_json::json!(reused
                .iter()
                .map(|r| serde_json::json!({
                    "title": r.title,
                    "backup_id": r.backup_id,
                    "target_id": r.target_id,
                }))
                .collect::<Vec<_>>()),
        );
        for r in &reused {
            crate::say!(
                "tag {:?}: the target has a tag of that title ({}); the restored notes get \
                 that one, and the backup's ({}) is not written, as Joplin's own import does",
                r.title,
                r.target_id,
                r.backup_id
            );
        }
    }
    let backup = Arc::new(backup);
    timings.add("read and validate", stage);
    stage = std::time::Instant::now();
    if !args.only.is_empty() && args.mode == Mode::ClearFirst {
        return Err(Refusal(
            "--only merges into the target and cannot be combined with --mode clear-first".into(),
        )
        .into());
    }

    // plan
    let (existing, brought_back) = {
        let set = plan::restore_set(&backup, &validation);
        // A partial restore compares only what it selected: on a large target, reading every
        // copy the backup also holds would cost a request per item to restore one note.
        let selected: Vec<(usize, &crate::backup::BackupItem)>;
        let to_compare = match &only {
            Some(sel) => {
                selected = set
                    .iter()
                    .filter(|(_, bi)| sel.ids.contains(bi.id()))
                    .copied()
                    .collect();
                &selected[..]
            }
            None => &set[..],
        };
        let existing = plan::fetch_comparable(
            &target,
            &backup,
            to_compare,
            &state,
            transfers,
            plan::Compare {
                checksum: args.checksum,
            },
            keyring.as_deref(),
        )
        .await?;
        let brought_back = match (&only, args.overwrite) {
            (Some(_), false) => {
                crate::merge::trashed_copies(
                    &target,
                    &backup,
                    &existing,
                    to_compare.iter().map(|(i, _)| *i),
                    keyring.as_deref(),
                    transfers,
                )
                .await?
            }
            _ => Vec::new(),
        };
        (existing, brought_back)
    };
    let mut backup = backup;
    if !brought_back.is_empty() {
        // The target's trashed copy is what is written: its content replaces the backup's.
        let b = Arc::get_mut(&mut backup).expect("the backup is not shared before the plan");
        let mut titles = Vec::new();
        for (index, it) in &brought_back {
            let entry = b.items[*index].entry().into_owned();
            b.items[*index] = crate::backup::BackupItem::from_item(entry, it);
            titles.push(b.title(&b.items[*index]));
        }
        crate::say!(
            "{} item(s) in the target's trash come back as the target holds them, edited after \
             the backup (out of the trash, in their restored notebook): {}. --overwrite puts \
             the backup's versions instead.",
            titles.len(),
            titles
                .iter()
                .map(|t| format!("{t:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        partial.insert("from_trash".into(), serde_json::json!(titles));
    }
    let set = plan::restore_set(&backup, &validation);
    // What an interrupted run of this partial restore wrote is this restore's, not the
    // target's own to keep.
    let written_before: std::collections::HashSet<String> = match (&only, &resumed) {
        (Some(_), Some(r)) => r
            .done
            .iter()
            .filter(|p| !p.contains('/'))
            .filter_map(|p| p.strip_suffix(".md"))
            .map(str::to_string)
            .collect(),
        _ => Default::default(),
    };
    if let Some(sel) = only.as_mut().filter(|_| !args.overwrite) {
        let left =
            crate::merge::keep_target_tags(&backup, sel, &state, &existing, &written_before)?;
        partial.insert("left_out_links".into(), left.links.into());
        partial.insert("left_out_tags".into(), serde_json::json!(left.tags));
        if left.links > 0 {
            crate::say!(
                "left out {} note-tag link(s) of notes the target keeps: their tags stay as they \
                 are on the target (--only tag:TITLE or --overwrite puts a tag back on them)",
                left.links
            );
        }
        if !left.tags.is_empty() {
            let titles: Vec<String> = left
                .tags
                .iter()
                .filter_map(|id| backup.items.iter().find(|bi| bi.id() == id))
                .map(|bi| format!("{:?}", backup.title(bi)))
                .collect();
            crate::say!(
                "left out tag(s) {} that only those links would bring back",
                titles.join(", ")
            );
        }
    }
    let change_feed = target.storage.capabilities().change_feed;
    let opts = plan::PlanOptions {
        // A clear-first restore that already cleared must not clear again.
        mode: if resumed.as_ref().is_some_and(|r| r.cleared) {
            Mode::Mirror
        } else {
            args.mode
        },
        rewrite_unchanged: args.rewrite_unchanged,
        only: only.map(|s| s.ids),
        overwrite: args.overwrite,
        written_before,
        encrypted_blob_len: keyring.as_ref().map(|k| k.blob_len_fn()),
        change_feed,
    };
    let mut plan = plan::plan(&backup, &validation, &set, &state, &existing, &opts)?;
    // The notebooks above a kept real copy of a made-up notebook stay, as it does.
    let above = plan::above_kept_recreated(&target, &backup, &state, keyring.as_deref()).await?;
    if !above.is_empty() {
        plan.deletes.retain(|d| d.is_blob || !above.contains(&d.id));
        plan.protected_ids.extend(above);
    }
    // The target's clock offset, once measured (a probe is a write: one is enough).
    let mut clock_offset = None;
    // A client wrote to the target after the interrupted run stopped: what it wrote is in no
    // snapshot yet.
    let mut changed_since_interrupted = false;
    if let Some(r) = &resumed {
        let sizes = target.storage.capabilities().listing_sizes;
        let (holds, offset) = journal_holds(&target, &state, r, args.safety.dry_run).await?;
        clock_offset = offset;
        changed_since_interrupted = !holds;
        if !holds && r.last_write_ms.is_some() {
            spare_work_since(&mut plan, r, offset.unwrap_or(0));
        }
        if holds {
            // An item is written stamped; one unreadable now is uploaded again (the executor
            // then says why).
            plan::skip_done(&mut plan, &backup, &state, &r.done, sizes, |u| {
                let it = backup.item(u.item(&backup)).ok()?;
                Some(plan::stamped(&it, r.stamp_ms).serialize().len() as u64)
            });
        }
        // A blob written just before a kill, whose journal line never made it.
        let encrypted_len = opts.encrypted_blob_len;
        plan::skip_identical_blobs(
            &mut plan,
            &target,
            &backup,
            &state,
            keyring.as_deref(),
            transfers,
            |id| {
                let size = backup.blob_size(id)?;
                encrypted_len.map_or(Some(size), |f| f(size))
            },
        )
        .await;
    }
    // What verify checks: everything written or already identical; in a partial restore only
    // the selection, minus the target's own copies it kept.
    let mut restored: Vec<usize> = Vec::with_capacity(set.len());
    restored.extend(
        set.iter()
            .filter(|(_, bi)| opts.only.as_ref().is_none_or(|o| o.contains(bi.id())))
            .filter(|(_, bi)| !plan.kept.iter().any(|k| k == bi.id()))
            .map(|(i, _)| *i),
    );
    // A partial restore writes a few of many: no room kept for the rest.
    restored.shrink_to_fit();
    // One entry per item, not needed past this point (it would stay until verify).
    drop(set);
    let mut protected = plan.protected_ids.clone();
    if opts.only.is_some() {
        // A partial restore leaves everything else on the target alone.
        let written: std::collections::HashSet<&str> =
            restored.iter().map(|i| backup.items[*i].id()).collect();
        protected.extend(
            state
                .items
                .keys()
                .chain(state.blobs.keys())
                .filter(|id| !written.contains(id.as_str()))
                .map(|id| id.to_string()),
        );
    }
    if opts.only.is_some() {
        partial.insert("kept".into(), serde_json::json!(plan.kept));
        partial.entry("left_out_links").or_insert_with(|| 0.into());
        partial
            .entry("left_out_tags")
            .or_insert_with(|| serde_json::json!([]));
    }
    let partial = opts
        .only
        .is_some()
        .then_some(serde_json::Value::Object(partial));
    if !plan.kept.is_empty() {
        crate::say!(
            "Kept the target's own copy of {} item(s) that exist there (use --overwrite to replace them):",
            plan.kept.len()
        );
        let order = std::sync::OnceLock::new();
        for id in plan.kept.iter().take(50) {
            let label = backup
                .items
                .iter()
                .find(|bi| bi.id() == id)
                .map(|bi| backup.label(bi, &order))
                .unwrap_or_default();
            crate::say!("  {id} {label}");
        }
    }
    let summary = format!(
        "Plan for {}: upload {} files ({} bytes; {} replace existing ones), {} unchanged, delete {}{}",
        target.describe(),
        plan.upload_count(),
        plan.upload_bytes(),
        plan.overwrites(),
        plan.unchanged,
        plan.deletes.len(),
        if plan.clear_first { " first" } else { " last" }
    );
    crate::say!("{summary}");
    tracing::info!("{summary}");
    timings.add("plan", stage);
    stage = std::time::Instant::now();
    // A dry run is when people look: it warns as the run would.
    plan.warn_of_fail_safe(change_feed);
    if args.safety.dry_run {
        print_dry_run(&backup, &plan, &target, keyring.as_deref(), transfers).await;
        return Ok(RestoreSummary {
            backup: backup.source_json(),
            target: target.describe(),
            uploaded: 0,
            uploaded_bytes: 0,
            timings,
            pacer: paced.counts(),
            limits: limits_json(paced.options()),
            unchanged: plan.unchanged,
            deleted: 0,
            snapshot: None,
            verify_mode: VerifyMode::None,
            verify: None,
            partial,
            planned: Some(plan.counts_json()),
        });
    }
    if plan.is_destructive() && !args.safety.yes {
        let q = format!(
            "This replaces {} and deletes {} file(s) on {}. Continue?",
            plan.overwrites(),
            plan.deletes.len(),
            target.describe()
        );
        if !confirm(&q)? {
            return Err(Refusal(format!(
                "not confirmed; nothing was changed. {}",
                if std::io::stdin().is_terminal() {
                    ""
                } else {
                    "Not a terminal: pass --yes to restore without asking."
                }
            ))
            .into());
        }
    }

    // snapshot: before the first destructive write.
    crate::safety::begin_writing();
    let mut snapshot = None;
    if plan.is_destructive() && !args.safety.force {
        let ours = resumed.as_ref().map_or(&[][..], |r| &r.lock_ids[..]);
        target.refuse_active_locks(&state, ours).await?;
    }
    let earlier = resumed.as_ref().and_then(|r| r.snapshot.clone());
    if plan.is_destructive() || earlier.is_some() {
        snapshot = args
            .safety
            .snapshot_resuming(
                earlier.as_deref(),
                plan.is_destructive(),
                changed_since_interrupted,
                &target,
                transfers,
                &progress,
                Some(&state.files()),
            )
            .await?;
        if let (true, None, Some(s)) = (resumed.is_some(), &earlier, &snapshot) {
            crate::note!(
                "note: the interrupted run took no snapshot (it ran with --no-snapshot, or had nothing \
                 to replace then): {} holds the target as that run left it, half-written, not as \
                 it was before the restore",
                s.display()
            );
        }
    }

    timings.add("snapshot", stage);
    stage = std::time::Instant::now();

    // execute
    target.ensure_layout(&state).await?;
    let (remote_now, offset) = match clock_offset {
        Some(offset) => (now_ms() + offset, offset),
        None => target.remote_clock().await?,
    };
    if offset.abs() > 5_000 {
        crate::note!(
            "warning: the target's clock is {:+.1} s off this machine's; items are stamped with \
             the earlier of the two so no client sees them in the future",
            offset as f64 / 1000.0
        );
    }
    target
        .wait_past_newest_second(&state, remote_now, offset)
        .await;
    // A resumed run stamps afresh too: a client that synced an edit since the interrupted run
    // would ignore a copy stamped before it. (What that run wrote still counts as done: every
    // stamp serialises to the same length, which is what `skip_done` compares.)
    let stamp_ms = stamp_now(offset);
    let journal = Journal::begin(
        &journal_dir,
        &journal_key,
        resumed,
        JournalStart {
            stamp_ms,
            id_seed,
            backup: args.backup.clone(),
            target: target.describe(),
            snapshot: snapshot.clone(),
        },
    )?;
    let (lock, journal) = journal
        .lock(&target, args.safety.force, snapshot.is_some())
        .await?;
    let (lock, journal) = relist_for_plan(&target, lock, &state, &plan, journal).await?;
    // Under the lock: another client's active lock refuses the run before E2EE is turned on.
    let lock = match &new_info {
        Some(info) => {
            let bytes = bytes::Bytes::from(crate::target::info_json_bytes(info));
            let lock = target.write_info_under(lock, bytes).await?;
            crate::say!(
                "End-to-end encryption turned on for {} (master key {}). Clients need the \
                 master password to read the notes.",
                target.describe(),
                keyring.as_ref().map(|k| k.active_id.as_str()).unwrap_or("")
            );
            if state.info.is_some() {
                // Seen with the real CLI: its notes all become changes to upload when it turns
                // encryption on, against the restore's newer copies.
                crate::note!(
                    "note: a client that synced this target before it was emptied, and has not \
                     synced since, turns encryption on with its old notes still to upload and \
                     keeps conflict copies of them: start such clients afresh (`joplin-restore \
                     client reset`, then sync with the master password)"
                );
            }
            lock
        }
        None => lock,
    };
    tracing::info!(
        "writing with restore stamp {} (lock {}, journal {})",
        crate::item::format_time(stamp_ms),
        journal.lock_id,
        journal.path().display()
    );
    plan::warn_later_copies(&plan.after_target, stamp_ms);
    let exec = Executor {
        target: &target,
        clock_offset: offset,
        backup: backup.clone(),
        stamp_ms: Some(stamp_ms),
        transfers,
        progress: &progress,
        journal: Some(&journal),
        keyring: keyring.clone(),
        after_target: std::mem::take(&mut plan.after_target),
        spare_changed: true,
        deleting: Default::default(),
        snapshot: snapshot.clone(),
    };
    // What a run that stops says of the deletions: none yet, or some (the snapshot has them).
    // `deleted`: whether files are known gone (a failed run), or may be (an interrupted one).
    let clear_first = plan.clear_first;
    let deletions = |deleted: bool| {
        if !deleted {
            return "nothing the backup lacks was deleted".to_string();
        }
        let gone = if clear_first {
            "the target was cleared first (all or part of it)"
        } else {
            "part of what the backup lacks may already be deleted"
        };
        match &snapshot {
            Some(s) => format!("{gone}; the snapshot {} holds it", s.display()),
            None => gone.to_string(),
        }
    };
    let Some(outcome) = crate::safety::unless_interrupted(exec.run(&plan)).await else {
        let _ = lock.release().await;
        anyhow::bail!(
            "interrupted: nothing more is being written; {}. Run the same command again to \
             resume and finish (journal: {}).",
            deletions(exec.started_deleting()),
            journal.path().display()
        );
    };
    if !outcome.ok() {
        let _ = lock.release().await;
        let mut msg = format!(
            "the restore stopped while {}: {} file(s) uploaded, {} failed.\n",
            outcome.stopped_at.as_deref().unwrap_or("writing"),
            outcome.uploaded,
            outcome.failures.len()
        );
        for f in outcome.failures.iter().take(20) {
            msg.push_str(&format!("  {}: {}\n", f.what, f.error));
        }
        let mut said = deletions(outcome.deleted > 0);
        said[..1].make_ascii_uppercase();
        msg.push_str(&format!(
            "{said}. Fix the cause and run the same command again: files already uploaded are \
             skipped."
        ));
        return Err(crate::exit::Failed::from_outcome(msg, &outcome).into());
    }

    outcome.say_spared("backup", "restore");
    if change_feed && state.info.is_some() {
        plan.caution_on_change_feed(
            "the same restore again with --rewrite-unchanged (a partial restore: with the same \
             --only and --overwrite)",
        );
    }
    timings.add("write", stage);
    stage = std::time::Instant::now();
    // The plan and the first listing are done with: on a large target they are as big as the
    // listing verify is about to take.
    let unchanged = plan.unchanged;
    drop(plan);
    drop(state);

    // verify
    let mode = verify_mode;
    let verify = match mode {
        VerifyMode::None => None,
        VerifyMode::Quick => {
            progress.say("checking the target's listing against the backup");
            let seen = verify::Seen::list(&target, &backup, &restored, &protected).await?;
            // Sizes say nothing on an encrypted target (ciphertext lengths) or where the
            // listing has none (Joplin Server).
            let sizes = keyring.is_none() && target.storage.capabilities().listing_sizes;
            Some(verify::verify_listing(&backup, &restored, &seen, sizes))
        }
        VerifyMode::Full => {
            progress.say("verifying the target against the backup");
            let seen = verify::Seen::list(&target, &backup, &restored, &protected).await?;
            Some(
                verify::verify(
                    &target,
                    backup.clone(),
                    &restored,
                    &seen,
                    transfers,
                    keyring.as_deref(),
                )
                .await?,
            )
        }
    };
    timings.add("verify", stage);
    lock.release().await?;
    journal.finish()?;
    // The target holds the backup now: an interrupted clear's or rollback's snapshot is no
    // longer the way back.
    crate::safety::Interrupted::for_target("restore", &target.describe()).finished(None, "");
    Ok(RestoreSummary {
        backup: backup.source_json(),
        target: target.describe(),
        uploaded: outcome.uploaded,
        uploaded_bytes: outcome.uploaded_bytes,
        timings,
        pacer: paced.counts(),
        limits: limits_json(paced.options()),
        unchanged,
        deleted: outcome.deleted,
        snapshot,
        verify_mode,
        verify,
        planned: None,
        partial,
    })
}

/// Whether a resumed run may skip what the interrupted run's journal calls done: not when
/// the target holds files written after the journal's last line (checked against the
/// target's clock; a dry run, which writes no clock probe, uses ours). Otherwise every file
/// is compared again, as in a first run, and the note says why.
/// Also returns the clock offset it measured, for the run to reuse.
pub(crate) async fn journal_holds(
    target: &SyncTarget,
    state: &crate::target::TargetState,
    resumed: &crate::journal::Resume,
    dry_run: bool,
) -> Result<(bool, Option<i64>)> {
    let offset = if dry_run {
        None
    } else {
        Some(target.remote_clock().await?.1)
    };
    let holds = resumed.holds_for(state.newest_ms(), offset.unwrap_or(0));
    if !holds {
        crate::note!(
            "note: {} changed after the interrupted run stopped (files newer than its journal: \
             a client synced, or a rollback ran); every file is compared again instead of \
             trusting the journal",
            target.describe()
        );
    }
    Ok((holds, offset))
}

/// What a client wrote between an interrupted run and this one that the backup lacks stays, as
/// a file a client writes during a run does (verify then lists it as extra): it is the user's
/// newer work, not what the interrupted run left. A file the first run's snapshot holds is no
/// new work (a rollback in between wrote it back): it goes.
fn spare_work_since(plan: &mut plan::Plan, r: &crate::journal::Resume, offset: i64) {
    let before_restore = r.snapshot.as_deref().and_then(crate::snapshot::paths_in);
    let before = plan.deletes.len();
    plan.deletes.retain(|d| {
        let new_work = r.written_after(d.listed_ms, offset)
            && before_restore
                .as_ref()
                .is_none_or(|had| !had.contains(&d.path));
        !new_work
    });
    let spared = before - plan.deletes.len();
    if spared > 0 {
        crate::note!(
            "note: {spared} file(s) the backup lacks were written to the target after the \
             interrupted run stopped (a client synced): they are kept, not deleted (the check \
             lists them as extra; `--fresh` restores exactly the backup)"
        );
    }
}

/// The plan was made from a listing taken before the lock: a writer in between (another
/// joplin-restore run that held the lock meanwhile, a client) would leave it stale, and the
/// copies it skipped as unchanged may not be the backup's any more. Listed again, now under
/// `lock`, when the plan writes; a refused run drops the journal it began if it resumed
/// nothing (nothing was written: the rerun starts afresh, with its own snapshot).
pub(crate) async fn relist_for_plan(
    target: &SyncTarget,
    lock: crate::target::TargetLock,
    state: &crate::target::TargetState,
    plan: &plan::Plan,
    journal: Journal,
) -> Result<(crate::target::TargetLock, Journal)> {
    if !plan.writes_anything() {
        return Ok((lock, journal));
    }
    match target.relist_under(lock, state).await {
        Ok(lock) => Ok((lock, journal)),
        Err(e) => {
            if journal.resumed.is_none() {
                let _ = journal.finish();
            }
            Err(e)
        }
    }
}

/// [`Keyring::unlock`] off the async workers (220 000 PBKDF2 rounds for a KeyV1 key); the
/// outer error is the task's, the inner one the password's or the key's.
async fn unlock(
    info: E2eeInfo,
    pw: zeroize::Zeroizing<String>,
    where_: String,
) -> Result<Result<Keyring>> {
    tokio::task::spawn_blocking(move || Keyring::unlock(&info, &pw, &where_))
        .await
        .context("unlocking the master key")
}

/// The unlocked keys of an end-to-end encrypted target; None for a plain target (or with
/// `--allow-plaintext`: `Some(true)`; `None` for commands without that option). Refuses, before
/// anything is written, when the password is missing or wrong. For a command that only reads
/// (`allow_plaintext` None), a target whose E2EE was turned off but whose info.json keeps its
/// keys is unlocked too when a password is given in a file or the environment (items a client
/// did not change stay encrypted); a password that does not open it is only warned about.
pub async fn keyring_for(
    target: &SyncTarget,
    state: &crate::target::TargetState,
    password: &PasswordArgs,
    allow_plaintext: Option<bool>,
) -> Result<Option<Arc<Keyring>>> {
    let where_ = target.describe();
    if !state.e2ee_enabled() {
        // E2EE turned off in a client leaves the items it did not change encrypted: a command
        // that only reads (verify, diff, export) decrypts them with a password it was given.
        if allow_plaintext.is_some() || !state.has_master_keys() {
            return Ok(None);
        }
        let Some(pw) = password.given()? else {
            return Ok(None);
        };
        let info = E2eeInfo::from_info(state.info.as_ref().expect("keys come from info.json"));
        // The password may be meant for another target: only items still encrypted need it.
        return Ok(match unlock(info, pw, where_.clone()).await? {
            Ok(ring) => Some(Arc::new(ring)),
            Err(e) => {
                crate::note!(
                    "warning: {where_} has E2EE turned off; the master password given does not \
                     open its old key, so items still encrypted there are not read: {e:#}"
                );
                None
            }
        });
    }
    let info = E2eeInfo::from_info(state.info.as_ref().expect("e2ee flag comes from info.json"));
    if allow_plaintext == Some(true) {
        crate::note!(
            "warning: --allow-plaintext: {where_} is end-to-end encrypted, but this restore \
             writes your notes and attachments in clear; whoever hosts the target can read them"
        );
        return Ok(None);
    }
    let Some(pw) = password.password(&where_)? else {
        // Only restore has --allow-plaintext; verify, diff and export only read.
        let (consequence, alternative) = match allow_plaintext {
            Some(_) => (
                "so nothing was changed",
                "; --allow-plaintext writes unencrypted instead",
            ),
            None => (
                "so its items cannot be decrypted to compare or export them",
                "",
            ),
        };
        return Err(Refusal(format!(
            "{where_} uses end-to-end encryption and no master password was given, {consequence}. \
             Give the master password (the one set in Joplin's Encryption settings) in the \
             environment variable {PASSWORD_ENV}, in a file with --master-password-file, or run \
             from a terminal to be asked{alternative}."
        ))
        .into());
    };
    let ring = unlock(info, pw, where_).await??;
    Ok(Some(Arc::new(ring)))
}

/// `--enable-e2ee` on a target that is not encrypted yet: only an empty one, so no client holds
/// plaintext copies it would keep uploading.
async fn enable_e2ee(
    target: &SyncTarget,
    state: &crate::target::TargetState,
    password: &PasswordArgs,
) -> Result<(serde_json::Value, Arc<Keyring>)> {
    let where_ = target.describe();
    if !state.items.is_empty() || !state.blobs.is_empty() {
        return Err(Refusal(format!(
            "--enable-e2ee only sets up encryption on a new target, and {where_} already holds {} \
             item(s); nothing was changed. Turn encryption on from a Joplin client (Encryption \
             settings), let it sync, then restore with the master password.",
            state.items.len()
        ))
        .into());
    }
    let Some(pw) = password.new_password(&where_)? else {
        return Err(Refusal(format!(
            "--enable-e2ee needs a master password, and none was given; nothing was changed. Give \
             it in the environment variable {PASSWORD_ENV}, in a file with \
             --master-password-file, or run from a terminal to be asked."
        ))
        .into());
    };
    let info = state.info.clone();
    let (info, ring) =
        tokio::task::spawn_blocking(move || crate::e2ee::setup::enable(info.as_ref(), &pw))
            .await
            .context("creating the master key")??;
    Ok((info, Arc::new(ring)))
}

pub(crate) async fn print_dry_run(
    backup: &Backup,
    plan: &plan::Plan,
    target: &SyncTarget,
    keyring: Option<&Keyring>,
    transfers: usize,
) {
    let order = std::sync::OnceLock::new();
    for (phase, uploads) in &plan.phases {
        crate::say!("upload {} ({}):", phase.label(), uploads.len());
        for u in uploads.iter().take(200) {
            let bi = u.item(backup);
            crate::say!(
                "  {}{} {}{}",
                if u.blob { "blob " } else { "" },
                u.id(backup),
                backup.label(bi, &order),
                if u.overwrite { " (replaces)" } else { "" }
            );
        }
        if uploads.len() > 200 {
            crate::say!("  … and {} more", uploads.len() - 200);
        }
    }
    if !plan.deletes.is_empty() {
        crate::say!("delete ({}):", plan.deletes.len());
        // Items by title (read from the target: a dry run is when people look), blobs by path.
        use futures::StreamExt;
        let labels: Vec<String> = futures::stream::iter(plan.deletes.iter().take(200))
            .map(|d| async move {
                if d.is_blob {
                    d.path.clone()
                } else {
                    crate::verify::describe_target_file(target, &d.path, keyring).await
                }
            })
            .buffered(transfers.max(1))
            .collect()
            .await;
        for l in labels {
            crate::say!("  {l}");
        }
        if plan.deletes.len() > 200 {
            crate::say!("  … and {} more", plan.deletes.len() - 200);
        }
    }
    crate::say!("dry run: nothing was changed");
}
