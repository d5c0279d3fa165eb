//! `clear`: empty a sync target (the manual procedure's "delete the files in the folder Joplin
//! syncs to"), safely: refuse what is not a sync target, confirm, snapshot, lock, delete.
//! `info.json` and its master keys stay unless `--full-reset`.

use std::path::PathBuf;

use anyhow::Result;

use crate::exit::Refusal;
use crate::open::{open_paced, Folder, PacerArgs, TargetArgs};
use crate::progress::Progress;
use crate::report::Timings;
use crate::safety::{confirm, SafetyArgs};
use crate::target::{blob_path, item_path, SyncTarget, TargetState, INFO_JSON};

#[derive(Debug, Clone, clap::Args)]
pub struct ClearArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub pacer: PacerArgs,
    #[command(flatten)]
    pub safety: SafetyArgs,
    /// Also delete info.json (sync version, E2EE master keys): clients then treat the target as
    /// brand new. Without it the keys stay.
    #[arg(long)]
    pub full_reset: bool,
    /// No progress display.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

pub struct ClearSummary {
    pub deleted: usize,
    pub snapshot: Option<PathBuf>,
    /// Seconds per stage: list, snapshot, lock, delete (what ran of them).
    pub timings: Timings,
    pub pacer: backend_core::pacer::PacerCounts,
    /// `--dry-run`: how many files the clear would delete.
    pub would_delete: Option<usize>,
}

pub async fn run(args: &ClearArgs) -> Result<ClearSummary> {
    let progress = Progress::new(args.quiet);
    let paced = open_paced(&args.target, &args.pacer, Folder::Existing)?;
    let transfers = paced.options().transfers;
    let target = SyncTarget::new(paced.clone());
    let mut timings = Timings::default();
    let done = |timings: Timings, would_delete: Option<usize>| ClearSummary {
        deleted: 0,
        snapshot: None,
        timings,
        pacer: paced.counts(),
        would_delete,
    };
    // With nothing between the listing and the deletions (no question, no snapshot), the lock
    // comes first and the target is listed once, under it: listing, locking and listing again
    // costs a request per 1,000 files twice on S3. Only where info.json shows a sync target
    // this run can write to: a lock file must never land in a folder that is not one.
    let mut held = None;
    if args.safety.yes && args.safety.no_snapshot && !args.safety.dry_run {
        let t = std::time::Instant::now();
        let probe = TargetState {
            info: target.read_info().await?,
            ..Default::default()
        };
        if probe.info.is_some() && target.check_writable(&probe, args.safety.force).is_ok() {
            crate::safety::begin_writing();
            held = Some(
                target
                    .acquire_lock(args.safety.force, &[], &crate::item::new_id())
                    .await?,
            );
        }
        timings.add("lock", t);
    }
    let t = std::time::Instant::now();
    let surveyed = survey(&target, args).await;
    timings.add("list", t);
    let (state, paths) = match surveyed {
        Ok(found) if !found.1.is_empty() && !args.safety.dry_run => found,
        other => {
            if let Some(lock) = held {
                let _ = lock.release().await;
            }
            let (_, paths) = other?;
            if args.safety.dry_run {
                for p in paths.iter().take(200) {
                    crate::say!("  {p}");
                }
                crate::say!("dry run: nothing was changed");
                return Ok(done(timings, Some(paths.len())));
            }
            crate::say!("The target is already empty.");
            return Ok(done(timings, None));
        }
    };
    let keeps = if args.safety.no_snapshot {
        ""
    } else {
        " The snapshot keeps everything (`rollback`)."
    };
    if target.storage.capabilities().change_feed {
        crate::note!(
            "note: Joplin Server has no fail-safe: every client that syncs after this clear \
             deletes its copies of the notes (not to its trash). Let each client sync once after \
             the clear before you restore or roll back into the target: one that first syncs \
             after both reads each deletion and its new copy in one sync and drops the item (the \
             restore then says how to bring such items back).{keeps}"
        );
    } else {
        crate::note!(
            "note: a Joplin client that syncs while this runs deletes its copies of what is \
             already gone (its fail-safe stops only a sync that would delete nearly everything \
             at once): close or pause every client first. One that syncs afterwards stops with \
             \"Fail-safe: Sync was interrupted…\" and keeps its notes: restore a backup into the \
             target next, or reset those clients.{keeps}"
        );
    }
    if !args.safety.yes
        && !confirm(&format!(
            "Delete {} file(s) on {}?",
            paths.len(),
            target.describe()
        ))?
    {
        return Err(Refusal(
            "not confirmed; nothing was changed (not a terminal? pass --yes)".into(),
        )
        .into());
    }
    let (lock, snapshot) = match held {
        Some(lock) => {
            let t = std::time::Instant::now();
            let snapshot = args
                .safety
                .snapshot(&target, transfers, &progress, None)
                .await?;
            timings.add("snapshot", t);
            (lock, snapshot)
        }
        None => {
            // Another client's active lock stops the clear before the snapshot, not after it.
            if !args.safety.force {
                target.refuse_active_locks(&state, &[]).await?;
            }
            crate::safety::begin_writing();
            let t = std::time::Instant::now();
            let snapshot = args
                .safety
                .snapshot(&target, transfers, &progress, Some(&state.files()))
                .await?;
            timings.add("snapshot", t);
            let t = std::time::Instant::now();
            let lock = target
                .acquire_lock(args.safety.force, &[], &crate::item::new_id())
                .await?;
            // What a client wrote between the listing and the lock is in neither the snapshot
            // nor the list of deletions: refuse rather than leave the target half cleared.
            let lock = target.relist_under(lock, &state).await?;
            timings.add("lock", t);
            (lock, snapshot)
        }
    };
    let t = std::time::Instant::now();
    // An interrupted clear of this target took the snapshot of it whole; this run's holds it
    // half-cleared.
    let interrupted = crate::safety::Interrupted::for_target("clear", &target.describe());
    let whole = interrupted.whole(snapshot.as_deref());
    progress.phase("deleting", paths.len() as u64);
    let Some(failed) = crate::safety::unless_interrupted(target.storage.delete_many(&paths)).await
    else {
        let _ = lock.release().await;
        interrupted.record(whole.as_deref());
        anyhow::bail!(
            "interrupted: part of the target may already be deleted. Run the same command \
             again to finish clearing{}.",
            match &whole {
                Some(s) => format!(", or `rollback {}` to put it back", s.display()),
                None => String::new(),
            }
        );
    };
    progress.inc(paths.len() as u64);
    progress.finish();
    let _ = lock.release().await;
    timings.add("delete", t);
    if !failed.is_empty() {
        interrupted.record(whole.as_deref());
        let mut msg = format!("{} of {} deletions failed:\n", failed.len(), paths.len());
        for (p, e) in failed.iter().take(20) {
            msg.push_str(&format!("  {p}: {e}\n"));
        }
        msg.push_str("Run the same command again to finish clearing.");
        anyhow::bail!(msg);
    }
    interrupted.finished(snapshot.as_deref(), "half-cleared");
    // No re-listing: DeleteObjects/DELETE report every failure per file, and our lock kept
    // clients from writing meanwhile (a full listing again would double the requests).
    Ok(ClearSummary {
        deleted: paths.len(),
        snapshot,
        timings,
        pacer: paced.counts(),
        would_delete: None,
    })
}

/// List the target, refuse what must not be cleared, and say the plan: the target as listed
/// and the files to delete.
async fn survey(target: &SyncTarget, args: &ClearArgs) -> Result<(TargetState, Vec<String>)> {
    let state = target.state().await?;
    target.check_writable(&state, args.safety.force)?;
    if state.info.is_none()
        && state.items.is_empty()
        && state.blobs.is_empty()
        && !args.safety.force
    {
        return Err(Refusal(format!(
            "{} holds no Joplin sync target (no info.json, no items): nothing to clear. \
             Check the --target path.",
            target.describe()
        ))
        .into());
    }
    let mut paths: Vec<String> = state.items.keys().map(|id| item_path(id)).collect();
    paths.extend(state.blobs.keys().map(|id| blob_path(id)));
    if args.full_reset && state.info.is_some() {
        paths.push(INFO_JSON.to_string());
    }
    crate::say!(
        "Plan for {}: delete {} item(s) and {} blob(s){}",
        target.describe(),
        state.items.len(),
        state.blobs.len(),
        if args.full_reset {
            " and info.json (full reset)"
        } else {
            "; info.json stays"
        }
    );
    Ok((state, paths))
}
