//! `migrate`: copy a whole sync target to another one (another folder, S3, Joplin Server…),
//! keeping everything: every item file and blob byte for byte (same ids; end-to-end encrypted
//! items and blobs stay encrypted, no password needed) and `info.json` (master keys, ppk).
//!
//! The source is read as a [`Backup`]: its items are fetched and parsed (they are small), its
//! blobs are read on demand, one per transfer, from the source storage. Then the usual stages
//! run: plan → (snapshot) → execute with the items' own bytes (`stamp_ms: None`) → verify.
//! A damaged source item is reported by id and left out; the copy then counts as incomplete.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use backend_core::pacer::PacerCounts;
use backend_core::Storage;
use bytes::Bytes;
use futures::{stream, StreamExt};
use serde::Serialize;

use crate::backup::{Backup, BlobLocation, BlobReader, RawEntry};
use crate::execute::Executor;
use crate::exit::{self, Refusal};
use crate::item::{Item, ItemType, STAMP_FIELDS};
use crate::journal::{Journal, JournalStart};
use crate::open::{open_paced, BackendKind, Folder, GivenPassword, PacerArgs, TargetArgs};
use crate::plan::{self, Comparisons, Mode, PlanOptions, TargetCopy};
use crate::progress::Progress;
use crate::report::Timings;
use crate::safety::{confirm, JournalArgs, SafetyArgs};
use crate::target::{blob_path, item_path, SyncTarget, TargetState, INFO_JSON};
use crate::validate::Validation;
use crate::verify::{Difference, VerifyReport};

/// Environment variable holding the source's password (Joplin Server, WebDAV).
pub const FROM_PASSWORD_ENV: &str = "JOPLIN_RESTORE_FROM_PASSWORD";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum MigrateMode {
    /// The destination must hold no items and no blobs (a new target).
    #[default]
    New,
    /// Make the destination an exact copy of the source: snapshot it first, upload first,
    /// delete what the source lacks last.
    Mirror,
}

/// Copy FROM one sync target TO another. The destination takes `--to` (or `--target`) with the
/// usual target options (`--username`, `--password-file`, `--endpoint`, …); the source takes
/// `--from` with its own `--from-*` options. S3 keys come from the AWS chain for both sides.
#[derive(Debug, Clone, clap::Args)]
pub struct MigrateArgs {
    /// The sync target to copy from (only read): a folder path, file:///path,
    /// s3://BUCKET[/PREFIX], joplin-server+http(s)://host:port/, a WebDAV URL (https://…,
    /// webdav(s)://…), or a URL with --from-backend.
    #[arg(long, value_name = "SOURCE")]
    pub from: String,
    /// What kind of target --from is, when its form does not say it.
    #[arg(long, value_enum, value_name = "KIND")]
    pub from_backend: Option<BackendKind>,
    /// Account on the source server (Joplin Server: the account's email).
    #[arg(long, value_name = "USER", env = "JOPLIN_RESTORE_FROM_USERNAME")]
    pub from_username: Option<String>,
    /// Read the source's password from this file (first line). Otherwise: env
    /// JOPLIN_RESTORE_FROM_PASSWORD, else a prompt on the terminal. Only asked with
    /// --from-username.
    #[arg(long, value_name = "FILE")]
    pub from_password_file: Option<PathBuf>,
    /// S3 source: endpoint URL of a non-AWS store.
    #[arg(long, value_name = "URL")]
    pub from_endpoint: Option<String>,
    /// S3 source: region of the bucket.
    #[arg(long, value_name = "REGION")]
    pub from_region: Option<String>,
    /// S3 source: path-style addressing.
    #[arg(long)]
    pub from_path_style: bool,
    /// The destination (--to or --target) and its options.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Transfer limits; each side gets its own pacer with these limits.
    #[command(flatten)]
    pub pacer: PacerArgs,
    #[command(flatten)]
    pub safety: SafetyArgs,
    #[command(flatten)]
    pub journal: JournalArgs,
    /// new: refuse a destination that holds items or blobs; mirror: make it an exact copy
    /// (snapshot first, upload first, delete what the source lacks last; onto a destination
    /// clients sync with, the items written are stamped with the migration time).
    #[arg(long, value_enum, default_value_t = MigrateMode::New)]
    pub mode: MigrateMode,
    /// Compare only: source and destination, items by parsed fields, blobs byte for byte,
    /// info.json as JSON. Exit 3 on any difference. Writes nothing.
    #[arg(long)]
    pub check: bool,
    /// With --mode mirror: compare every blob already on the destination with the source's
    /// byte for byte (downloads both) instead of trusting a matching size, and replace those
    /// that differ: repairs blobs damaged in place.
    #[arg(long)]
    pub checksum: bool,
    /// With --mode mirror: write every item (and a resource's blob) again, also those the
    /// destination already holds as they are: on Joplin Server, for clients that dropped items
    /// the copy re-created.
    #[arg(long)]
    pub rewrite_unchanged: bool,
    /// Skip the verification pass after copying.
    #[arg(long)]
    pub no_verify: bool,
    /// No progress display.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// A source item that could not be read or parsed; left out of the copy.
#[derive(Debug, Clone)]
pub struct Damaged {
    pub id: String,
    pub error: String,
}

/// Reads blobs straight from the source storage (called from blocking threads only).
struct StorageBlobs {
    storage: Arc<dyn Storage>,
    handle: tokio::runtime::Handle,
}

impl BlobReader for StorageBlobs {
    fn read(&self, loc: &BlobLocation) -> std::io::Result<Vec<u8>> {
        self.handle
            .block_on(self.storage.get(&loc.entry))
            .map(|b| b.to_vec())
            .map_err(|e| std::io::Error::other(e.to_string()))
    }
    fn describe(&self) -> String {
        self.storage.describe()
    }
}

/// A sync target seen as a backup.
pub struct SourceView {
    pub backup: Backup,
    pub info_json: Option<Bytes>,
    pub damaged: Vec<Damaged>,
    /// Resource ids whose item is on the source but whose blob is not.
    pub blobless: HashSet<String>,
    /// Blobs on the source that belong to no resource item (not copied).
    pub orphan_blobs: Vec<String>,
    pub foreign: Vec<String>,
}

/// List the source, fetch and parse every item, locate every blob.
pub async fn read_source(src: &SyncTarget, transfers: usize) -> Result<SourceView> {
    let state = src
        .state()
        .await
        .with_context(|| format!("reading the source {}", src.describe()))?;
    if state.is_empty() {
        return Err(Refusal(format!(
            "the source {} holds no Joplin sync target (no info.json, no items, no blobs); \
             check --from",
            src.describe()
        ))
        .into());
    }
    if let Some(why) = state.unsupported() {
        return Err(Refusal(format!("the source {}: {why}", src.describe())).into());
    }
    let info_json = match src.storage.get(INFO_JSON).await {
        Ok(b) => Some(b),
        Err(e) if e.is_not_found() => None,
        Err(e) => {
            return Err(anyhow::Error::new(e))
                .with_context(|| format!("reading info.json on the source {}", src.describe()))
        }
    };
    let ids: Vec<String> = state.items.keys().map(|id| id.to_string()).collect();
    let fetched: Vec<(String, Result<Bytes, backend_core::StorageError>)> = stream::iter(ids)
        .map(|id| async move {
            let r = src.storage.get(&item_path(&id)).await;
            (id, r)
        })
        .buffer_unordered(transfers.max(1))
        .collect()
        .await;
    let mut entries = Vec::with_capacity(fetched.len());
    let mut damaged = Vec::new();
    for (id, r) in fetched {
        match r {
            Ok(data) => entries.push(RawEntry {
                name: item_path(&id),
                data: data.to_vec(),
            }),
            Err(e) => damaged.push(Damaged {
                id,
                error: format!("cannot read it: {e}"),
            }),
        }
    }
    let reader = Arc::new(StorageBlobs {
        storage: src.storage.clone(),
        handle: tokio::runtime::Handle::current(),
    });
    let mut backup = Backup::from_entries(Path::new(&src.describe()), entries, reader);
    for u in std::mem::take(&mut backup.unreadable) {
        damaged.push(Damaged {
            id: u.entry.trim_end_matches(".md").to_string(),
            error: format!("cannot be parsed: {}", u.error),
        });
    }
    backup.items.retain(|bi| {
        let entry = bi.entry();
        let file_id = entry.trim_end_matches(".md");
        if bi.id() == file_id {
            return true;
        }
        damaged.push(Damaged {
            id: file_id.to_string(),
            error: format!("its id field says {:?}", bi.id()),
        });
        false
    });
    damaged.sort_by(|a, b| a.id.cmp(&b.id));
    for (id, e) in &state.blobs {
        backup.blobs.insert(
            id.to_string(),
            BlobLocation {
                entry: blob_path(id),
                offset: 0,
                size: e.size,
                part: 0,
            },
        );
    }
    let resources: HashSet<&str> = backup
        .items
        .iter()
        .filter(|bi| bi.item_type() == ItemType::Resource)
        .map(|bi| bi.id())
        .collect();
    let damaged_ids: HashSet<&str> = damaged.iter().map(|d| d.id.as_str()).collect();
    let orphan_blobs = state
        .blobs
        .keys()
        .filter(|id| !resources.contains(id.as_str()) && !damaged_ids.contains(id.as_str()))
        .map(|id| id.to_string())
        .collect();
    let blobless = resources
        .iter()
        .filter(|id| !state.blobs.contains_key(id))
        .map(|id| id.to_string())
        .collect();
    Ok(SourceView {
        backup,
        info_json,
        damaged,
        blobless,
        orphan_blobs,
        foreign: state.foreign.iter().map(|e| e.path.clone()).collect(),
    })
}

/// The destination's copy `dest` holds the source's item `src`: same parsed fields, and each
/// stamp the same (a verbatim copy keeps `updated_time`) or later (a mirror onto a destination
/// clients use stamps what it writes with the migration time, so they take it).
fn identical(dest: &Item, src: &Item) -> bool {
    let time = |f: &str, v: &str| match f {
        "updated_time" => crate::item::parse_time(v),
        _ => v.parse::<i64>().ok(),
    };
    dest.same_content(src)
        && STAMP_FIELDS.iter().all(|f| {
            let (d, s) = (dest.get(f).unwrap_or(""), src.get(f).unwrap_or(""));
            d == s || matches!((time(f, d), time(f, s)), (Some(d), Some(s)) if d > s)
        })
}

/// The destination's copies that are already identical to the source's items. Where the
/// listing has no sizes (Joplin Server), the blob of an identical resource is compared too:
/// otherwise a second `--mode mirror` run would copy every blob again as a replacement. With
/// `checksum` blobs are compared on every destination, so one damaged in place is replaced.
async fn fetch_identical(
    dest: &SyncTarget,
    backup: &Arc<Backup>,
    state: &TargetState,
    transfers: usize,
    checksum: bool,
) -> Result<Comparisons> {
    let sizes = dest.storage.capabilities().listing_sizes;
    let wanted: Vec<usize> = backup
        .items
        .iter()
        .enumerate()
        .filter(|(_, bi)| {
            state
                .items
                .get(bi.id())
                .is_some_and(|e| !sizes || e.size == bi.size())
        })
        .map(|(i, _)| i)
        .collect();
    let fetched = stream::iter(wanted)
        .map(|i| async move {
            let bi = &backup.items[i];
            let data = match dest.storage.get(&item_path(bi.id())).await {
                Ok(data) => data,
                Err(e) if e.is_not_found() => return Ok(None),
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("reading {} on the destination", item_path(bi.id()))))
                }
            };
            let Some((theirs, mine)) = Item::parse_bytes(&data)
                .ok()
                .zip(backup.item(bi).ok())
                .filter(|(theirs, mine)| identical(theirs, mine))
            else {
                return Ok(None);
            };
            let mut copy = TargetCopy::of(&theirs, &mine);
            if (!sizes || checksum) && state.blobs.contains_key(bi.id()) {
                let differs = crate::verify::check_blob(dest, backup, bi, None).await;
                copy.blob_same = Some(differs.is_none());
            }
            // A migrate copies bytes as they are, unstamped: no time to beat.
            Ok(Some((i, copy, 0)))
        })
        .buffer_unordered(transfers.max(1));
    Comparisons::gather(fetched).await
}

/// Read the source's password, only when the source has a user name.
fn source_password(args: &MigrateArgs) -> Result<Option<GivenPassword>> {
    let Some(user) = args.from_username.as_ref().filter(|u| !u.is_empty()) else {
        // A user in the URL would otherwise be asked the destination's password.
        let authority = args
            .from
            .split_once("://")
            .map(|(_, r)| r.split('/').next().unwrap_or(""));
        if authority.is_some_and(|a| a.contains('@')) {
            bail!("--from has a user name in its URL: give it as --from-username USER instead");
        }
        return Ok(None);
    };
    if let Some(f) = &args.from_password_file {
        let text = std::fs::read_to_string(f).map_err(|e| {
            anyhow::anyhow!("--from-password-file {}: cannot read it ({e})", f.display())
        })?;
        return Ok(Some(GivenPassword(
            text.lines().next().unwrap_or("").to_string(),
        )));
    }
    if let Ok(p) = std::env::var(FROM_PASSWORD_ENV) {
        if !p.is_empty() {
            return Ok(Some(GivenPassword(p)));
        }
    }
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return Ok(Some(GivenPassword(rpassword::prompt_password(format!(
            "Password for {user} on the source {}: ",
            args.from
        ))?)));
    }
    bail!(
        "the source needs {user}'s password: set {FROM_PASSWORD_ENV}, or pass \
         --from-password-file FILE (not a terminal, so no prompt)"
    )
}

/// The source's target options, built from the `--from-*` options.
pub fn source_args(args: &MigrateArgs) -> Result<TargetArgs> {
    Ok(TargetArgs {
        target: args.from.clone(),
        backend: args.from_backend,
        username: args.from_username.clone(),
        // Read only when the source has a user (from --from-username or its named target).
        password_file: args.from_password_file.clone(),
        endpoint: args.from_endpoint.clone(),
        region: args.from_region.clone(),
        path_style: args.from_path_style,
        create_bucket: false,
        multipart_threshold: args.target.multipart_threshold,
        given_password: source_password(args)?,
        password_env_default: Some(FROM_PASSWORD_ENV),
        named: None,
        option_prefix: "from-",
    })
}

/// Item files or blobs of one migration run, for the `--json` report.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Counts {
    /// On the source (items: readable ones; blobs: those of resource items).
    pub source: usize,
    /// This run had to copy them (not on the destination yet, or different there).
    pub to_copy: usize,
    pub copied: usize,
    /// Already identical on the destination, or copied by an interrupted run (journal).
    pub already_there: usize,
    pub failed: usize,
}

#[derive(Default)]
pub struct MigrateSummary {
    pub source: String,
    pub destination: String,
    pub items: Counts,
    pub blobs: Counts,
    /// `None` when the source lists no sizes (Joplin Server) and attachments are copied.
    pub bytes_to_copy: Option<u64>,
    pub copied_bytes: u64,
    pub uploaded: usize,
    pub unchanged: usize,
    pub deleted: usize,
    pub snapshot: Option<PathBuf>,
    pub verify: Option<VerifyReport>,
    /// The source's info.json was written to the destination.
    pub info_written: bool,
    pub info_differs: bool,
    pub damaged: Vec<Damaged>,
    pub orphan_blobs: usize,
    pub foreign: usize,
    pub dry_run: bool,
    pub timings: Timings,
    pub source_pacer: PacerCounts,
    pub destination_pacer: PacerCounts,
}

fn pacer_json(c: &PacerCounts) -> serde_json::Value {
    serde_json::json!({
        "requests": c.requests,
        "retries": c.retries,
        "rate_limited": c.rate_limited,
    })
}

impl MigrateSummary {
    /// The `--json` report (README, "Scripting").
    pub fn json(&self, args: &MigrateArgs) -> serde_json::Value {
        serde_json::json!({
            "command": "migrate",
            "source": self.source,
            "destination": self.destination,
            "mode": match args.mode {
                MigrateMode::New => "new",
                MigrateMode::Mirror => "mirror",
            },
            "check": args.check,
            "dry_run": self.dry_run,
            "items": self.items,
            "blobs": self.blobs,
            "bytes_to_copy": self.bytes_to_copy,
            "copied_bytes": self.copied_bytes,
            "deleted": self.deleted,
            "damaged": self.damaged.iter().map(|d| serde_json::json!({
                "id": d.id,
                "error": d.error,
            })).collect::<Vec<_>>(),
            "orphan_blobs": self.orphan_blobs,
            "foreign_files": self.foreign,
            "info_json_written": self.info_written,
            "info_json_differs": self.info_differs,
            "snapshot": self.snapshot,
            "verify": self.verify,
            "timings": self.timings,
            "source_requests": pacer_json(&self.source_pacer),
            "destination_requests": pacer_json(&self.destination_pacer),
        })
    }
}

pub async fn run(args: &MigrateArgs) -> Result<MigrateSummary> {
    let progress = Progress::new(args.quiet);
    let src_args = source_args(args)?;
    let src_paced = open_paced(&src_args, &args.pacer, Folder::Existing).context(
        "opening the source (--from; its options are --from-backend, --from-username, \
         --from-password-file, --from-endpoint, --from-region, --from-path-style)",
    )?;
    let src = SyncTarget::new(src_paced.clone());
    // `--check` only reads: a missing destination is a mistyped path, not a copy to make.
    let dest_folder = if args.check {
        Folder::Existing
    } else {
        Folder::CreatedIfMissing
    };
    let paced = open_paced(&args.target, &args.pacer, dest_folder)
        .context("opening the destination (--to)")?;
    let transfers = paced.options().transfers;
    let dest_paced = paced.clone();
    let dest = SyncTarget::new(paced);
    if src.describe() == dest.describe() {
        return Err(Refusal(format!(
            "--from and --to are the same target ({}); nothing was changed",
            dest.describe()
        ))
        .into());
    }

    let mut timings = Timings::default();
    let mut stage = std::time::Instant::now();
    progress.say(&format!("reading the source {}", src.describe()));
    let view = read_source(&src, src_paced.options().transfers).await?;
    let source_blobs = view
        .backup
        .items
        .iter()
        .filter(|bi| bi.item_type() == ItemType::Resource && !view.blobless.contains(bi.id()))
        .count();
    // What every outcome reports; completed below as the run goes.
    let mut summary = MigrateSummary {
        source: src.describe(),
        destination: dest.describe(),
        items: Counts {
            source: view.backup.items.len(),
            ..Default::default()
        },
        blobs: Counts {
            source: source_blobs,
            ..Default::default()
        },
        damaged: view.damaged.clone(),
        orphan_blobs: view.orphan_blobs.len(),
        foreign: view.foreign.len(),
        ..Default::default()
    };
    for d in &view.damaged {
        crate::note!(
            "warning: source item {} is damaged and is not copied: {}",
            d.id,
            d.error
        );
    }
    if !view.orphan_blobs.is_empty() {
        crate::note!(
            "note: {} blob(s) on the source belong to no resource item; they are not copied",
            view.orphan_blobs.len()
        );
    }
    if !view.foreign.is_empty() {
        crate::note!(
            "note: {} file(s) at the source's root are not Joplin items; they are not copied",
            view.foreign.len()
        );
    }
    let damaged_ids: HashSet<String> = view.damaged.iter().map(|d| d.id.clone()).collect();
    let backup = Arc::new(view.backup);
    let state = dest.state().await?;
    let info_now = match dest.storage.get(INFO_JSON).await {
        Ok(b) => Some(b),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(anyhow::Error::new(e).context("reading info.json on the destination")),
    };
    timings.add("read source", stage);
    stage = std::time::Instant::now();
    let info_same_json = |a: &Option<Bytes>, b: &Option<Bytes>| match (a, b) {
        (Some(a), Some(b)) => {
            serde_json::from_slice::<serde_json::Value>(a).ok()
                == serde_json::from_slice::<serde_json::Value>(b).ok()
        }
        (None, _) => true,
        (Some(_), None) => false,
    };

    if args.check {
        let report = compare(
            &dest,
            &src,
            &backup,
            &damaged_ids,
            &view.blobless,
            &state,
            transfers,
        )
        .await?;
        timings.add("verify", stage);
        return Ok(MigrateSummary {
            verify: Some(report),
            info_differs: !info_same_json(&view.info_json, &info_now),
            timings,
            source_pacer: src_paced.counts(),
            destination_pacer: dest_paced.counts(),
            ..summary
        });
    }

    dest.check_writable(&state, args.safety.force)?;
    let journal_dir = args
        .journal
        .journal_dir
        .clone()
        .unwrap_or_else(crate::journal::default_dir);
    let from_key = PathBuf::from(format!("migrate-from:{}", src.describe()));
    let journal_key = crate::journal::key(
        &from_key,
        &dest.describe(),
        &format!("migrate mode={:?}", args.mode),
    );
    let resumed = if args.journal.fresh {
        None
    } else {
        Journal::peek(&journal_dir, &journal_key)
    };
    if resumed.is_some() {
        progress.say("resuming an interrupted migration from this source into this destination");
    }
    let occupied = !state.items.is_empty() || !state.blobs.is_empty();
    if args.mode == MigrateMode::New && occupied && resumed.is_none() {
        return Err(Refusal(format!(
            "the destination {} already holds {} item(s) and {} blob(s); nothing was changed. \
             Migrate into an empty target, or pass --mode mirror to make it an exact copy of \
             the source (it is snapshotted first).",
            dest.describe(),
            state.items.len(),
            state.blobs.len()
        ))
        .into());
    }

    // A mirror onto a destination clients already sync with (it has info.json) stamps every
    // item it writes with the migration time, as a restore does: a client holding a later copy
    // of an item would keep it, and the devices would disagree for good. (A resumed run does
    // as the run it resumes did.)
    let stamping = match &resumed {
        Some(r) => r.stamp_ms != 0,
        None => args.mode == MigrateMode::Mirror && state.info.is_some(),
    };
    let existing = fetch_identical(&dest, &backup, &state, transfers, args.checksum).await?;
    let validation = Validation {
        skipped_ids: damaged_ids.clone(),
        ..Default::default()
    };
    let opts = PlanOptions {
        mode: Mode::Mirror,
        rewrite_unchanged: args.rewrite_unchanged,
        ..Default::default()
    };
    let set = plan::restore_set(&backup, &validation);
    let mut plan = plan::plan(&backup, &validation, &set, &state, &existing, &opts)?;
    drop(set);
    // A resource the source holds without its blob is copied as it is: item only.
    for (_, uploads) in plan.phases.iter_mut() {
        uploads.retain(|u| !(u.blob && view.blobless.contains(u.id(&backup))));
    }
    plan.phases.retain(|(_, u)| !u.is_empty());
    if args.mode == MigrateMode::New {
        plan.deletes.clear();
    }
    if let Some(r) = &resumed {
        let sizes = dest.storage.capabilities().listing_sizes;
        if crate::restore::journal_holds(&dest, &state, r, args.safety.dry_run)
            .await?
            .0
        {
            // Items are copied as they are, or stamped (every stamp serialises to one length).
            plan::skip_done(&mut plan, &backup, &state, &r.done, sizes, |u| {
                let bi = u.item(&backup);
                match stamping {
                    false => Some(bi.size()),
                    true => backup
                        .item(bi)
                        .ok()
                        .map(|it| plan::stamped(&it, plan::SAMPLE_STAMP).serialize().len() as u64),
                }
            });
        }
        // A blob written just before a kill, whose journal line never made it.
        plan::skip_identical_blobs(&mut plan, &dest, &backup, &state, None, transfers, |id| {
            backup.blob_size(id)
        })
        .await;
    }
    let info_changes = view.info_json.is_some() && info_now.as_deref() != view.info_json.as_deref();
    if info_changes && !args.safety.force {
        refuse_dropping_encryption(
            &dest.describe(),
            info_now.as_deref(),
            view.info_json.as_deref(),
        )?;
    }
    let planned_blobs = plan.uploads().filter(|u| u.blob).count();
    let planned_items = plan.upload_count() - planned_blobs;
    summary.items.to_copy = planned_items;
    summary.items.already_there = summary.items.source.saturating_sub(planned_items);
    summary.blobs.to_copy = planned_blobs;
    summary.blobs.already_there = summary.blobs.source.saturating_sub(planned_blobs);
    // Joplin Server lists no sizes: its attachments count 0 until they are read.
    let sizes_known = src.storage.capabilities().listing_sizes || planned_blobs == 0;
    summary.bytes_to_copy = sizes_known.then(|| plan.upload_bytes());
    summary.unchanged = plan.unchanged;
    timings.add("plan", stage);
    stage = std::time::Instant::now();
    crate::say!(
        "Migrate {} → {}: copy {} file(s) ({}; {} replace existing ones), {} already \
         there, delete {}{}",
        src.describe(),
        dest.describe(),
        plan.upload_count(),
        match summary.bytes_to_copy {
            Some(b) => format!("{b} bytes"),
            None => format!(
                "{} bytes of items, and {planned_blobs} attachment(s) whose size the source does \
                 not list",
                plan.upload_bytes()
            ),
        },
        plan.overwrites(),
        plan.unchanged,
        plan.deletes.len(),
        if info_changes {
            ", write info.json"
        } else {
            ""
        }
    );
    if stamping && plan.upload_count() > 0 {
        crate::say!(
            "The destination is one clients sync with: the items copied are stamped with the \
             migration time (their `updated_time`), so every client takes them over its own \
             copies; all else is copied as it is."
        );
    }
    // A dry run is when people look: it warns as the run would (only clients that synced the
    // destination, which then has info.json, can meet the fail-safe).
    if state.info.is_some() {
        plan.warn_of_fail_safe(dest.storage.capabilities().change_feed);
    }
    if args.safety.dry_run {
        for (phase, uploads) in &plan.phases {
            crate::say!("copy {} ({}):", phase.label(), uploads.len());
            for u in uploads.iter().take(100) {
                crate::say!(
                    "  {}{} {:?}{}",
                    if u.blob { "blob " } else { "" },
                    u.id(&backup),
                    backup.title(u.item(&backup)),
                    if u.overwrite { " (replaces)" } else { "" }
                );
            }
        }
        if !plan.deletes.is_empty() {
            crate::say!("delete ({}):", plan.deletes.len());
            for d in plan.deletes.iter().take(100) {
                crate::say!("  {}", d.path);
            }
        }
        crate::say!("dry run: nothing was changed");
        return Ok(MigrateSummary {
            dry_run: true,
            timings,
            source_pacer: src_paced.counts(),
            destination_pacer: dest_paced.counts(),
            ..summary
        });
    }
    let destructive = plan.is_destructive() || (info_changes && info_now.is_some() && occupied);
    if destructive
        && !args.safety.yes
        && !confirm(&format!(
            "This replaces {} and deletes {} file(s) on {}. Continue?",
            plan.overwrites(),
            plan.deletes.len(),
            dest.describe()
        ))?
    {
        return Err(Refusal(
            "not confirmed; nothing was changed (not a terminal? pass --yes)".into(),
        )
        .into());
    }
    crate::safety::begin_writing();
    let mut snapshot = None;
    if destructive && !args.safety.force {
        let ours = resumed.as_ref().map_or(&[][..], |r| &r.lock_ids[..]);
        dest.refuse_active_locks(&state, ours).await?;
    }
    // A resumed run keeps the first run's snapshot; without one, a new snapshot would only
    // hold the half-migrated destination.
    let earlier = resumed.as_ref().and_then(|r| r.snapshot.clone());
    if (destructive && resumed.is_none()) || earlier.is_some() {
        snapshot = args
            .safety
            .snapshot_resuming(
                earlier.as_deref(),
                destructive && resumed.is_none(),
                false,
                &dest,
                transfers,
                &progress,
                None,
            )
            .await?;
    }

    if snapshot.is_some() {
        timings.add("snapshot", stage);
        stage = std::time::Instant::now();
    }
    summary.snapshot = snapshot.clone();

    // The source's info.json replaces the default one ensure_layout would write.
    let mut layout_state = state.clone();
    if view.info_json.is_some() {
        layout_state.info = Some(serde_json::Value::Null);
    }
    dest.ensure_layout(&layout_state).await?;
    // As a restore stamps: never ahead of the destination's clock, and past the second of the
    // newest file there, so clients that list by modification time see every write.
    let (stamp_ms, clock_offset) = if stamping && plan.upload_count() > 0 {
        let (remote_now, offset) = dest.remote_clock().await?;
        dest.wait_past_newest_second(&state, remote_now, offset)
            .await;
        (Some(crate::target::stamp_now(offset)), offset)
    } else {
        (None, 0)
    };
    let journal = Journal::begin(
        &journal_dir,
        &journal_key,
        resumed,
        JournalStart {
            // (Marks a stamping run for a resumed one, even if this one writes nothing.)
            stamp_ms: stamp_ms.unwrap_or(if stamping { 1 } else { 0 }),
            id_seed: 0,
            backup: from_key,
            target: dest.describe(),
            snapshot: snapshot.clone(),
        },
    )?;
    let (lock, journal) = journal
        .lock(&dest, args.safety.force, snapshot.is_some())
        .await?;
    // As in `restore`: the plan came from a listing of the destination taken before the lock.
    let (lock, journal) =
        crate::restore::relist_for_plan(&dest, lock, &state, &plan, journal).await?;
    let lock = match view.info_json.as_ref().filter(|_| info_changes) {
        Some(info) => {
            let lock = dest.write_info_under(lock, info.clone()).await?;
            summary.info_written = true;
            lock
        }
        None => lock,
    };
    let exec = Executor {
        target: &dest,
        clock_offset,
        backup: backup.clone(),
        stamp_ms,
        transfers,
        progress: &progress,
        journal: Some(&journal),
        keyring: None,
        after_target: Vec::new(),
        // A destination clients sync with: what one writes while the mirror runs is kept, not
        // deleted last (its client would then delete it too). A new backend: what the plan says.
        spare_changed: stamping,
        deleting: Default::default(),
        snapshot: snapshot.clone(),
    };
    let Some(outcome) = crate::safety::unless_interrupted(exec.run(&plan)).await else {
        let _ = lock.release().await;
        bail!(
            "interrupted: nothing more is being copied; {}. Run the same command again to \
             resume and finish (journal: {}).",
            if exec.started_deleting() {
                "part of what the source lacks may already be deleted on the destination"
            } else {
                "nothing was deleted"
            },
            journal.path().display()
        );
    };
    outcome.say_spared("source", "migration");
    summary.uploaded = outcome.uploaded;
    summary.copied_bytes = outcome.uploaded_bytes;
    summary.deleted = outcome.deleted;
    summary.items.copied = outcome.uploaded - outcome.uploaded_blobs;
    summary.blobs.copied = outcome.uploaded_blobs;
    let deletes: HashSet<&str> = plan.deletes.iter().map(|d| d.path.as_str()).collect();
    // (A failed delete is listed in `failures` but is no failed copy.)
    for f in outcome
        .failures
        .iter()
        .filter(|f| !deletes.contains(f.path.as_str()))
    {
        if f.path.starts_with(".resource/") {
            summary.blobs.failed += 1;
        } else {
            summary.items.failed += 1;
        }
    }
    timings.add("copy", stage);
    stage = std::time::Instant::now();
    if !outcome.ok() {
        let _ = lock.release().await;
        summary.timings = timings;
        summary.source_pacer = src_paced.counts();
        summary.destination_pacer = dest_paced.counts();
        crate::report::set_result(summary.json(args));
        let mut msg = format!(
            "the migration stopped while {}: {} file(s) copied, {} failed.\n",
            outcome.stopped_at.as_deref().unwrap_or("writing"),
            outcome.uploaded,
            outcome.failures.len()
        );
        for f in outcome.failures.iter().take(20) {
            msg.push_str(&format!("  {}: {}\n", f.what, f.error));
        }
        msg.push_str(&format!(
            "{}. Fix the cause and run the same command again: files already copied are skipped.",
            if outcome.deleted > 0 {
                "Part of what the source lacks was already deleted on the destination"
            } else {
                "Nothing was deleted"
            }
        ));
        return Err(exit::Failed::from_outcome(msg, &outcome).into());
    }
    // A destination clients already sync with (it had info.json) and that they follow by its
    // change feed: the same risk as a restore's for items it lacked.
    if dest.storage.capabilities().change_feed && state.info.is_some() {
        // The destination holds the copy now: a rerun in the default mode would be refused.
        plan.caution_on_change_feed(
            "the same migrate again with --mode mirror --rewrite-unchanged",
        );
    }
    let verify = if args.no_verify {
        None
    } else {
        progress.say("verifying the destination against the source");
        let after = dest.state().await?;
        Some(
            compare(
                &dest,
                &src,
                &backup,
                &damaged_ids,
                &view.blobless,
                &after,
                transfers,
            )
            .await?,
        )
    };
    let info_after = if view.info_json.is_some() {
        dest.storage.get(INFO_JSON).await.ok()
    } else {
        None
    };
    if verify.is_some() {
        timings.add("verify", stage);
    }
    lock.release().await?;
    journal.finish()?;
    Ok(MigrateSummary {
        verify,
        info_differs: !info_same_json(&view.info_json, &info_after),
        timings,
        source_pacer: src_paced.counts(),
        destination_pacer: dest_paced.counts(),
        ..summary
    })
}

/// Destination × source: items by parsed fields as stored (encrypted ones stay encrypted, so no
/// password is needed; Joplin Server re-serialises items), blobs byte for byte. `skip` ids (damaged
/// on the source) are neither required nor extra; `blobless` resources need no blob.
pub async fn compare(
    dest: &SyncTarget,
    src: &SyncTarget,
    backup: &Backup,
    skip: &HashSet<String>,
    blobless: &HashSet<String>,
    state: &TargetState,
    transfers: usize,
) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let ids: HashSet<&str> = backup.items.iter().map(|bi| bi.id()).collect();
    let resources: HashSet<&str> = backup
        .items
        .iter()
        .filter(|bi| bi.item_type() == ItemType::Resource)
        .map(|bi| bi.id())
        .collect();
    for id in state.items.keys() {
        if !ids.contains(id.as_str()) && !skip.contains(id.as_str()) {
            report.differences.push(Difference::Extra {
                path: item_path(id),
            });
        }
    }
    for id in state.blobs.keys() {
        if !resources.contains(id.as_str()) && !skip.contains(id.as_str()) {
            report.differences.push(Difference::Extra {
                path: blob_path(id),
            });
        }
    }
    let checks: Vec<Vec<Difference>> = stream::iter(backup.items.iter())
        .map(|bi| async move {
            let mut diffs = Vec::new();
            let id = bi.id().to_string();
            if !state.items.contains_key(id.as_str()) {
                diffs.push(Difference::Missing {
                    id,
                    what: backup.describe(bi),
                });
                return diffs;
            }
            match dest
                .storage
                .get(&item_path(&id))
                .await
                .map_err(|e| e.to_string())
                .and_then(|d| Item::parse_bytes(&d).map_err(|e| e.to_string()))
            {
                Err(error) => diffs.push(Difference::Unreadable {
                    id: id.clone(),
                    what: backup.describe(bi),
                    error,
                }),
                Ok(remote) => {
                    // The source's items are in memory (read from the source target).
                    let mine = backup
                        .item(bi)
                        .unwrap_or_else(|_| Item::from_props(Vec::new()));
                    if !identical(&remote, &mine) {
                        let mut fields = mine.differing_fields(&remote);
                        for f in STAMP_FIELDS {
                            if remote.get(f).unwrap_or("") != mine.get(f).unwrap_or("") {
                                fields.push(f.to_string());
                            }
                        }
                        diffs.push(Difference::Differs {
                            id: id.clone(),
                            what: backup.describe(bi),
                            fields,
                        });
                    }
                }
            }
            if bi.item_type() == ItemType::Resource && !blobless.contains(&id) {
                let path = blob_path(&id);
                match dest.storage.get(&path).await {
                    Err(_) => diffs.push(Difference::BlobMissing {
                        id,
                        what: backup.describe(bi),
                    }),
                    Ok(theirs) => match src.storage.get(&path).await {
                        Ok(ours) if ours == theirs => {}
                        Ok(_) => diffs.push(Difference::BlobDiffers {
                            id,
                            what: backup.describe(bi),
                        }),
                        Err(e) => diffs.push(Difference::Unreadable {
                            id,
                            what: format!("the source's blob of {}", backup.describe(bi)),
                            error: e.to_string(),
                        }),
                    },
                }
            }
            diffs
        })
        .buffer_unordered(transfers.max(1))
        .collect()
        .await;
    report.checked_items = backup.items.len();
    report.checked_blobs = resources
        .iter()
        .filter(|id| !blobless.contains(**id))
        .count();
    for d in checks {
        report.differences.extend(d);
    }
    Ok(report)
}

/// Run `migrate` and print its outcome; returns the exit code.
pub async fn main(args: &MigrateArgs) -> Result<i32> {
    let s = run(args).await?;
    crate::report::set_result(s.json(args));
    let mut code = exit::OK;
    if !args.check && !s.dry_run {
        crate::say!(
            "Migrated: {} file(s) copied, {} already there, {} deleted.",
            s.uploaded,
            s.unchanged,
            s.deleted
        );
    }
    if let Some(snap) = &s.snapshot {
        crate::say!("Snapshot of the destination kept at {}", snap.display());
    }
    if let Some(r) = &s.verify {
        if r.ok() && !s.info_differs {
            crate::say!(
                "{}: {} items and {} blobs on the destination match the source.",
                if args.check { "OK" } else { "Verified" },
                r.checked_items,
                r.checked_blobs
            );
        } else {
            let n = r.differences.len() + usize::from(s.info_differs);
            crate::say!("{n} difference(s) between the destination and the source:");
            if s.info_differs {
                crate::say!("  info.json differs");
            }
            for d in &r.differences {
                match d {
                    // The source stands where the other commands have a backup.
                    Difference::Extra { path } => crate::say!("  not on the source: {path}"),
                    d => crate::say!("  {d}"),
                }
            }
            if r.blob_damaged() {
                crate::say!(
                    "A blob whose size is right is kept as it is: run `migrate --mode mirror \
                     --checksum` to compare every blob byte for byte and replace those that \
                     differ."
                );
            }
            code = exit::DIFFERENCES;
        }
    }
    if !s.damaged.is_empty() {
        crate::say!(
            "INCOMPLETE: {} damaged source item(s) were not copied:",
            s.damaged.len()
        );
        for d in &s.damaged {
            crate::say!("  {}: {}", d.id, d.error);
        }
        crate::say!(
            "Repair them on the source (sync a Joplin client that holds them, or restore them \
             from a backup), then run the same command with --mode mirror."
        );
        if code == exit::OK {
            code = exit::FAILED;
        }
        // The run itself went through, so no error reaches `main`: the report says it here.
        if let Some(mut v) = crate::report::take_result() {
            v["error"] = serde_json::json!(format!(
                "INCOMPLETE: {} damaged source item(s) were not copied (see `damaged`)",
                s.damaged.len()
            ));
            crate::report::set_result(v);
        }
    }
    Ok(code)
}

/// The source's info.json replaces the destination's: refused, when the destination uses
/// end-to-end encryption, if that turns it off or drops master keys it holds (clients then
/// upload their notes unencrypted there, or lose the key to items encrypted with it);
/// `--force` does it anyway (the snapshot keeps the old info.json).
fn refuse_dropping_encryption(dest: &str, now: Option<&[u8]>, source: Option<&[u8]>) -> Result<()> {
    let parse = |b: Option<&[u8]>| {
        b.and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
            .map(|v| crate::e2ee::keys::E2eeInfo::from_info(&v))
            .unwrap_or_default()
    };
    let (now, source) = (parse(now), parse(source));
    let dropped: Vec<&str> = now
        .keys
        .iter()
        .filter(|k| !source.keys.iter().any(|s| s.id == k.id))
        .map(|k| k.id.as_str())
        .collect();
    if !now.enabled {
        // Keys a destination keeps after encryption was turned off there lock nothing the
        // mirror leaves: every item is the source's.
        return Ok(());
    }
    if !source.enabled {
        crate::refuse!(
            "{dest} uses end-to-end encryption and the source does not: copying the source's \
             info.json there turns encryption off and drops its master key(s), and clients then \
             sync their notes unencrypted. Migrate into another destination, turn encryption on \
             for the source first, or pass --force to do it anyway."
        );
    }
    if !dropped.is_empty() {
        crate::refuse!(
            "{dest} holds master key(s) the source lacks ({}): copying the source's info.json \
             there drops them, and items encrypted with them can no longer be read. Migrate into \
             another destination, or pass --force to do it anyway (the snapshot keeps the old \
             info.json).",
            dropped.join(", ")
        );
    }
    Ok(())
}
