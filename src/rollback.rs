//! `rollback`: put a target back as a snapshot shows it, in a way every client follows.
//!
//! Clients that synced a restore hold items stamped with the restore time and ignore a remote
//! copy that is not newer, so by default every item written back gets `updated_time` = rollback
//! time (all other fields and every blob as in the snapshot). `--exact` writes the snapshot's
//! bytes verbatim: right only when no client synced in between.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use bytes::Bytes;

use crate::execute::Executor;
use crate::exit::Refusal;
use crate::open::{open_paced, Folder, PacerArgs, TargetArgs};
use crate::plan::{self, Mode, PlanOptions};
use crate::progress::Progress;
use crate::report::Timings;
use crate::safety::{confirm, SafetyArgs};
use crate::target::{stamp_now, SyncTarget, INFO_JSON};
use crate::validate::Validation;
use crate::verify::{self, VerifyReport};

#[derive(Debug, Clone, clap::Args)]
pub struct RollbackArgs {
    /// The snapshot folder a restore or clear printed ("Snapshot of the target: …").
    #[arg(value_name = "SNAPSHOT")]
    pub snapshot: PathBuf,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub pacer: PacerArgs,
    #[command(flatten)]
    pub safety: SafetyArgs,
    /// Write the snapshot's files byte for byte, without the rollback stamp. Only right when no
    /// client synced since the snapshot: clients that did keep their newer copies.
    #[arg(long)]
    pub exact: bool,
    /// Write every item again (stamped), also those the target already holds as the snapshot
    /// has them: on Joplin Server, for clients that dropped items the rollback re-created.
    #[arg(long)]
    pub rewrite_unchanged: bool,
    /// No progress display.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

pub struct RollbackSummary {
    pub uploaded: usize,
    pub deleted: usize,
    pub snapshot: Option<PathBuf>,
    pub verify: VerifyReport,
    /// Seconds per stage: read snapshot, list, plan, snapshot, write, verify (what ran).
    pub timings: Timings,
    pub pacer: backend_core::pacer::PacerCounts,
    /// `--dry-run`: what the rollback would do.
    pub planned: Option<serde_json::Value>,
}

pub async fn run(args: &RollbackArgs) -> Result<RollbackSummary> {
    let progress = Progress::new(args.quiet);
    let mut timings = Timings::default();
    let t = std::time::Instant::now();
    let snap = crate::snapshot::open(&args.snapshot)?;
    timings.add("read snapshot", t);
    let backup = Arc::new(snap.backup);
    let paced = open_paced(&args.target, &args.pacer, Folder::CreatedIfMissing)?;
    let transfers = paced.options().transfers;
    let target = SyncTarget::new(paced.clone());
    let t = std::time::Instant::now();
    let state = target.state().await?;
    timings.add("list", t);
    target.check_writable(&state, args.safety.force)?;
    if snap.manifest.target != target.describe() && !args.safety.force {
        return Err(Refusal(format!(
            "{} is a snapshot of {}, not of {}: rolling it back here would replace this \
             target's notes with another's. Check --target; pass --force if it is the same \
             target under another name (a moved folder, a new URL).",
            args.snapshot.display(),
            snap.manifest.target,
            target.describe()
        ))
        .into());
    }
    let t = std::time::Instant::now();

    let everything = Validation::default();
    let set = plan::restore_set(&backup, &everything);
    let existing = plan::fetch_comparable(
        &target,
        &backup,
        &set,
        &state,
        transfers,
        plan::Compare::default(),
        None,
    )
    .await?;
    let opts = PlanOptions {
        mode: Mode::Mirror,
        // Exact mode cannot trust "same apart from the stamp": it must put the bytes back.
        rewrite_unchanged: args.exact || args.rewrite_unchanged,
        ..Default::default()
    };
    let plan = plan::plan(&backup, &everything, &set, &state, &existing, &opts)?;
    timings.add("plan", t);
    let info_now = target.storage.get(INFO_JSON).await.ok();
    let info_changes = match (&snap.info_json, &info_now) {
        (Some(want), Some(have)) => want[..] != have[..],
        (Some(_), None) => true,
        _ => false,
    };
    crate::say!(
        "Rollback of {} to the snapshot of {}: write {} file(s){}, {} unchanged, delete {}{}",
        target.describe(),
        snap.manifest.taken_at,
        plan.upload_count(),
        if args.exact {
            " verbatim"
        } else {
            " stamped with the rollback time"
        },
        plan.unchanged,
        plan.deletes.len(),
        if info_changes {
            ", put back info.json"
        } else {
            ""
        }
    );
    if plan.is_destructive() || info_changes {
        // The snapshot predates the restore: edits, notes and deletions clients synced after
        // it go too, and nothing else would say so.
        crate::note!(
            "note: the target goes back to how it was at {}: whatever clients synced since \
             (edits, new notes, deletions) is undone too, not only the restore.{}",
            snap.manifest.taken_at,
            if args.safety.no_snapshot {
                " With --no-snapshot nothing keeps it."
            } else {
                " This rollback first snapshots the target as it is now: roll that snapshot \
                 back to undo."
            }
        );
    }
    if args.safety.dry_run {
        // What would be written and deleted, by title, as a restore's dry run lists it: a
        // rollback discards whatever clients wrote since the snapshot.
        crate::restore::print_dry_run(&backup, &plan, &target, None, transfers).await;
        return Ok(RollbackSummary {
            uploaded: 0,
            deleted: 0,
            snapshot: None,
            verify: VerifyReport::default(),
            timings,
            pacer: paced.counts(),
            planned: Some(plan.counts_json()),
        });
    }
    let change_feed = target.storage.capabilities().change_feed;
    plan.warn_of_fail_safe(change_feed);
    if args.exact {
        crate::note!(
            "note: --exact writes the snapshot byte for byte; clients that synced since the \
             snapshot keep their newer copies. Without --exact every client follows."
        );
    }
    let destructive = plan.is_destructive() || info_changes;
    if destructive
        && !args.safety.yes
        && !confirm(&format!(
            "Roll back {}: replace {} and delete {} file(s)?",
            target.describe(),
            plan.overwrites(),
            plan.deletes.len()
        ))?
    {
        return Err(Refusal(
            "not confirmed; nothing was changed (not a terminal? pass --yes)".into(),
        )
        .into());
    }
    // Another client's active lock stops the rollback before its snapshot, not after it.
    if !args.safety.force {
        target.refuse_active_locks(&state, &[]).await?;
    }
    crate::safety::begin_writing();
    let t = std::time::Instant::now();
    let snapshot = if destructive {
        args.safety
            .snapshot(&target, transfers, &progress, Some(&state.files()))
            .await?
    } else {
        None
    };
    if snapshot.is_some() {
        timings.add("snapshot", t);
    }
    let t = std::time::Instant::now();
    target.ensure_layout(&state).await?;
    let lock = target
        .acquire_lock(args.safety.force, &[], &crate::item::new_id())
        .await?;
    // As in `restore`: the plan came from a listing taken before the lock.
    let lock = if plan.writes_anything() {
        target.relist_under(lock, &state).await?
    } else {
        lock
    };
    let lock = match snap.info_json.as_ref().filter(|_| info_changes) {
        Some(info) => {
            target
                .write_info_under(lock, Bytes::from(info.clone()))
                .await?
        }
        None => lock,
    };
    let (stamp, offset) = if args.exact {
        (None, 0)
    } else {
        let (_, offset) = target.remote_clock().await?;
        (Some(stamp_now(offset)), offset)
    };
    if let Some(ms) = stamp {
        plan::warn_later_copies(&plan.after_target, ms);
    }
    let exec = Executor {
        target: &target,
        clock_offset: offset,
        backup: backup.clone(),
        stamp_ms: stamp,
        transfers,
        progress: &progress,
        journal: None,
        keyring: None,
        after_target: plan.after_target.clone(),
        spare_changed: !args.exact,
        deleting: Default::default(),
        snapshot: snapshot.clone(),
    };
    // An interrupted rollback of this target took the snapshot of it before it changed
    // anything; this run's holds it half rolled back.
    let interrupted = crate::safety::Interrupted::for_target("rollback", &target.describe());
    let before = interrupted.whole(snapshot.as_deref());
    let Some(outcome) = crate::safety::unless_interrupted(exec.run(&plan)).await else {
        let _ = lock.release().await;
        interrupted.record(before.as_deref());
        anyhow::bail!(
            "interrupted: the target is partly rolled back. Run the same command again to \
             finish (files already back are skipped){}.",
            match &before {
                Some(s) => format!(
                    "; the target as it was before the rollback is in {}",
                    s.display()
                ),
                None => String::new(),
            }
        );
    };
    if !outcome.ok() {
        interrupted.record(before.as_deref());
        let _ = lock.release().await;
        let mut msg = format!(
            "the rollback stopped: {} file(s) written, {} failed.\n",
            outcome.uploaded,
            outcome.failures.len()
        );
        for f in outcome.failures.iter().take(20) {
            msg.push_str(&format!("  {}: {}\n", f.what, f.error));
        }
        msg.push_str("Run the same command again to finish.");
        return Err(crate::exit::Failed::from_outcome(msg, &outcome).into());
    }
    interrupted.finished(snapshot.as_deref(), "half rolled back");
    outcome.say_spared("snapshot", "rollback");
    if change_feed && state.info.is_some() {
        plan.caution_on_change_feed("the same rollback again with --rewrite-unchanged");
    }
    timings.add("write", t);
    let t = std::time::Instant::now();
    let restored: Vec<usize> = set.iter().map(|(i, _)| *i).collect();
    let seen = verify::Seen::list(&target, &backup, &restored, &Default::default()).await?;
    let verify = verify::verify(
        &target,
        backup.clone(),
        &restored,
        &seen,
        transfers,
        // The snapshot holds the target's own (possibly encrypted) form: compare as stored.
        None,
    )
    .await?;
    lock.release().await?;
    timings.add("verify", t);
    Ok(RollbackSummary {
        uploaded: outcome.uploaded,
        deleted: outcome.deleted,
        // After an interrupted run, its snapshot is the target before the rollback (this
        // run's holds it half rolled back).
        snapshot: before,
        verify,
        timings,
        pacer: paced.counts(),
        planned: None,
    })
}
