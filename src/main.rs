use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use clap::{Parser, Subcommand};

use joplin_restore::backup::{Backup, BackupOptions};
use joplin_restore::clear::{self, ClearArgs};
use joplin_restore::e2ee::PasswordArgs;
use joplin_restore::exit;
use joplin_restore::export::{self, ExportArgs};
use joplin_restore::open::{open_paced, without_credentials, Folder, PacerArgs, TargetArgs};
use joplin_restore::restore::{self, RestoreArgs};
use joplin_restore::rollback::{self, RollbackArgs};
use joplin_restore::target::SyncTarget;
use joplin_restore::validate::{validate, ProblemClass};
use joplin_restore::verify::VerifyMode;
use joplin_restore::{inspect, plan, report, status, verify};
use serde_json::json;

/// Restore a Joplin backup (JEX) straight into a sync target, keeping every ID, so clients
/// just sync.
#[derive(Parser)]
#[command(name = "joplin-restore", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Print one JSON report on stdout (human messages go to stderr); see the README for the
    /// fields.
    #[arg(long, global = true)]
    json: bool,
    /// Write the log (with `-v`/`-vv` detail) to this file, appended, instead of stderr
    /// (messages and progress stay on the terminal).
    #[arg(long, global = true, value_name = "FILE")]
    log_file: Option<PathBuf>,
    /// More log output (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Config file with named targets (`--target NAME:`); default
    /// ~/.config/joplin-restore/config.toml (see `joplin-restore targets`).
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "JOPLIN_RESTORE_CONFIG"
    )]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Show what a backup holds: notebook tree, counts, validation problems.
    Inspect {
        /// A .jex, a backup set folder, the Backup plugin's folder of sets, or a .7z/.zip.
        #[arg(value_name = "BACKUP")]
        backup: PathBuf,
        #[command(flatten)]
        opts: BackupOptions,
    },
    /// Write a backup into a sync target, keeping IDs; snapshot first, verify after.
    Restore(Box<RestoreArgs>),
    /// Delete every item and blob on a sync target (snapshot first); info.json stays.
    Clear(Box<ClearArgs>),
    /// Put a target back as a snapshot shows it, so that every client follows.
    Rollback(Box<RollbackArgs>),
    /// Copy a whole sync target to another (--from T1 --to T2), byte for byte with the same
    /// ids, E2EE keys and encrypted items included; --check compares the two.
    #[command(
        after_help = "The destination is --to TARGET (same as --target) with --username, --password-file, \
--endpoint, --region, --path-style, --create-bucket; the source is --from SOURCE with --from-backend, \
--from-username, --from-password-file (or env JOPLIN_RESTORE_FROM_PASSWORD), --from-endpoint, \
--from-region, --from-path-style.\n\nExample: joplin-restore migrate --from ~/Joplin-sync --to s3://bucket \
--endpoint http://127.0.0.1:9000 --path-style\n\nExit: 0 copied and verified; 1 failed or incomplete \
(damaged source items, listed by id); 3 differences; 4 refused. See docs/migrate.md."
    )]
    Migrate(Box<joplin_restore::migrate::MigrateArgs>),
    /// What is on a target: sync version, E2EE and keys, item counts, locks.
    Status {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        pacer: PacerArgs,
    },
    /// Remove locks left on a target: stale ones (not refreshed for 3 minutes) and those of
    /// joplin-restore runs on this machine that are gone; never an active one without --force.
    Unlock {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        pacer: PacerArgs,
        /// Remove active locks too: another client's mid-sync, or a run of ours this machine
        /// cannot see (on another machine). Only when you know that client or run is gone.
        #[arg(long)]
        force: bool,
    },
    /// Write a JEX of a sync target's live notes, notebooks, tags and attachments (server-side
    /// backup; Joplin imports it).
    Export(Box<ExportArgs>),
    /// What a restore would change: items added, changed and removed, by type and title.
    Diff(Box<CompareArgs>),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to standard output: the tool's, or one command's
    /// (`man restore`, `man client reset`: the joplin-restore-restore(1) the tool's page names).
    Man {
        /// The command (and subcommand) whose page to print.
        command: Vec<String>,
    },
    /// Work on this machine's Joplin client: profiles, reset, customisations, Data API import.
    Client {
        #[command(subcommand)]
        cmd: joplin_restore::client::cli::ClientCommand,
    },
    /// Compare a target with a backup; exit 3 on any difference.
    Verify(Box<CompareArgs>),
    /// List the named targets of the config file (use them as `--target NAME:`).
    #[command(after_help = TARGETS_HELP)]
    Targets,
}

const TARGETS_HELP: &str = "\
The config file (TOML; --config FILE, env JOPLIN_RESTORE_CONFIG, default \
~/.config/joplin-restore/config.toml) names targets so that `--target NAME:` stands for all \
their options. Keys are the command-line option names; options given on the command line or in \
the environment win. Passwords are never written in it: give a file (password-file) or an \
environment variable (password-env).

Example:

  [targets.nextcloud]
  target = \"https://cloud.example.com/remote.php/dav/files/alice/Joplin\"
  username = \"alice\"
  password-file = \"~/.config/joplin-restore/nextcloud.pass\"
  tpslimit = 4          # Nextcloud throttles bursts
  transfers = 2

  [targets.minio]
  target = \"s3://joplin\"
  endpoint = \"http://127.0.0.1:9000\"
  path-style = true
  aws-profile = \"minio\"  # keys from ~/.aws/credentials

  [targets.server]
  target = \"joplin-server+https://joplin.example.com\"
  username = \"alice@example.com\"
  password-env = \"JOPLIN_SERVER_PASSWORD\"

Keys: target, backend, username, password-file, password-env, endpoint, region, path-style, \
create-bucket, aws-profile, multipart-threshold, transfers, tpslimit, bwlimit, retries, timeout.";

/// A backup and a target to compare (`verify`, `diff`).
#[derive(clap::Args)]
struct CompareArgs {
    /// A .jex, a backup set folder, the Backup plugin's folder of sets, or a .7z/.zip.
    #[arg(value_name = "BACKUP")]
    backup: PathBuf,
    #[command(flatten)]
    opts: BackupOptions,
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    pacer: PacerArgs,
    /// Problem classes accepted in the backup (as for restore).
    #[arg(long = "allow", value_enum, value_name = "PROBLEM")]
    allow: Vec<ProblemClass>,
    #[command(flatten)]
    password: PasswordArgs,
}

/// Read the backup, list the target and compare them, decrypting where the target is encrypted.
async fn compare(
    a: &CompareArgs,
) -> Result<(
    SyncTarget,
    verify::VerifyReport,
    Option<Arc<joplin_restore::e2ee::Keyring>>,
)> {
    let (b, v) = restore::read_and_validate(&a.backup, &a.opts, &a.allow)?;
    let b = Arc::new(b);
    let paced = open_paced(&a.target, &a.pacer, Folder::Existing)?;
    let transfers = paced.options().transfers;
    let t = SyncTarget::new(paced);
    let state = t.state().await?;
    if state.is_empty() && state.foreign.is_empty() {
        // A mistyped URL, bucket or prefix reads as an empty target on WebDAV and S3.
        joplin_restore::note!(
            "note: {} holds nothing at all (no info.json, no items): if that is not expected, \
             check --target.",
            t.describe()
        );
    } else if state.is_empty() {
        // Another folder (a Joplin profile, a parent of the sync folder): every item "missing".
        joplin_restore::note!(
            "note: {} holds no Joplin sync data (no info.json, no items), only {} other \
             file(s): it is not a sync target. Check --target (a Joplin profile folder is not \
             one; the sync folder is the one set in Joplin's synchronisation options).",
            t.describe(),
            state.foreign.len()
        );
    }
    let keyring = restore::keyring_for(&t, &state, &a.password, None).await?;
    let set: Vec<usize> = plan::restore_set(&b, &v).iter().map(|(i, _)| *i).collect();
    // Not extra: what a restore leaves alone (skipped items, notebooks above a kept real
    // copy of a made-up notebook).
    let mut expected = v.skipped_ids.clone();
    expected.extend(plan::above_kept_recreated(&t, &b, &state, keyring.as_deref()).await?);
    let seen = verify::Seen::from_state(&b, &set, &expected, &state);
    drop(state);
    let r = verify::verify(&t, b.clone(), &set, &seen, transfers, keyring.as_deref()).await?;
    Ok((t, r, keyring))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let level = match cli.verbose {
        // The AWS SDK warns at length while it looks for credentials (instance metadata…);
        // the error that follows says what is missing.
        0 => "warn,aws_config=error",
        1 => "info",
        _ => "debug",
    };
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("JOPLIN_RESTORE_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level))
    };
    match &cli.log_file {
        Some(path) => match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            Ok(file) => tracing_subscriber::fmt()
                .with_env_filter(filter())
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init(),
            Err(e) => {
                joplin_restore::note!("error: --log-file {}: {e}", path.display());
                return ExitCode::from(exit::FAILED as u8);
            }
        },
        None => tracing_subscriber::fmt()
            .with_env_filter(filter())
            // A closed stderr must not turn into a panic (its own report would use eprintln!).
            .log_internal_errors(false)
            // Colour codes only for a terminal, not a log file or a pipe.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .init(),
    }
    // `clear` sends thousands of small bodiless requests and has no work of its own to spread
    // over cores: on one thread a request and the connection task that sends it run side by
    // side, with no cross-thread wake-up per request (a third less CPU and time against the
    // Joplin Server emulator; bench/README.md). Every other command reads, hashes, encrypts or
    // signs, and keeps the multi-threaded runtime.
    let mut runtime = match cli.command {
        Command::Clear(_) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let rt = runtime.enable_all().build().expect("tokio runtime");
    joplin_restore::report::set_json(cli.json);
    if let Some(c) = &cli.config {
        joplin_restore::config::set_path(c.clone());
    }
    let name = command_name(&cli.command);
    watch_interrupts(name, cli.json);
    let (code, error) = match rt.block_on(run(cli.command)) {
        Ok(code) => (code, None),
        Err(e) => {
            joplin_restore::note!("error: {e:#}");
            (exit::code_for(&e), Some(e))
        }
    };
    if cli.json {
        let mut v = joplin_restore::report::take_result()
            .unwrap_or_else(|| serde_json::json!({ "command": name }));
        if let Some(f) = error
            .as_ref()
            .and_then(|e| e.downcast_ref::<exit::Failed>())
        {
            v["failures"] = serde_json::json!(f.failures);
        }
        print_json_report(v, code, error.map(|e| format!("{e:#}")));
    }
    ExitCode::from(code as u8)
}

/// A command line clap refuses (exit 2): its message on stderr as usual and, with `--json`
/// anywhere on the line, the one JSON report on stdout too, so scripts read every outcome
/// the same way. Help and version output are not errors.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let json = std::env::args_os().any(|a| a == "--json");
    if !json || matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        e.exit();
    }
    let _ = e.print();
    let command = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_default();
    // The error and what it names (the missing arguments are on the lines after the first),
    // without clap's usage and help lines.
    let text = e.to_string();
    let message = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .trim_start_matches("error: ")
        .to_string();
    print_json_report(
        serde_json::json!({ "command": command }),
        exit::USAGE,
        Some(message),
    );
    ExitCode::from(exit::USAGE as u8)
}

/// The `--json` report on stdout: the command's result `v` with `ok`, `exit_code` and the
/// error, if any.
fn print_json_report(mut v: serde_json::Value, code: i32, error: Option<String>) {
    v["ok"] = serde_json::json!(code == exit::OK);
    v["exit_code"] = serde_json::json!(code);
    if let Some(e) = error {
        v["error"] = serde_json::json!(e);
    }
    let _ = write_stdout(
        format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default()).as_bytes(),
    );
}

/// Ctrl-C or SIGTERM: the stages that write answer it themselves (they stop writing and
/// release the lock first); in every other stage this watcher ends the run at once, as an
/// error that `--json` still reports, saying whether the target may have been changed. Ending
/// there is no worse than a kill: a run that began writing keeps its journal to resume from.
/// A thread of its own, so a question waiting on the terminal does not hold it up.
fn watch_interrupts(name: &'static str, json: bool) {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            // Set once a stage answered a signal: it is ending the run.
            let mut left_to_a_stage = false;
            let mut last_hangup: Option<std::time::Instant> = None;
            // Bounded: one pass per signal.
            for _ in 0..1000 {
                // A second signal while a stage is already stopping (releasing its lock on a
                // slow server) ends the run now, as a second Ctrl-C is meant to. Taken before
                // waiting (the stage marks this very signal taken too), and counted here (the
                // stage may not have marked the first one taken when this loop comes round).
                let taken_before = joplin_restore::safety::signal_taken();
                let got = joplin_restore::safety::signal().await;
                if got == joplin_restore::safety::Interrupt::Hangup {
                    // A closing terminal's second SIGHUP is the same event, not a second
                    // Ctrl-C: the stop that is under way goes on (releasing the lock).
                    let twin = last_hangup.is_some_and(|t| t.elapsed().as_secs() < 2);
                    last_hangup = Some(std::time::Instant::now());
                    if twin {
                        continue;
                    }
                }
                let again = left_to_a_stage || taken_before;
                if !again && joplin_restore::safety::signals_answered() {
                    left_to_a_stage = true;
                    continue;
                }
                // Commands that write without a stage of their own for signals (client
                // reset/customise, export's file, unlock) may be midway.
                let read_only_so_far = matches!(
                    name,
                    "restore"
                        | "clear"
                        | "rollback"
                        | "migrate"
                        | "inspect"
                        | "verify"
                        | "diff"
                        | "status"
                );
                let message = if again {
                    "interrupted again while stopping: ended at once. Run the same command again \
                     to finish; a lock it held expires within 3 minutes (`joplin-restore unlock` \
                     removes it sooner)"
                } else if joplin_restore::safety::writing() {
                    "interrupted after it began changing the target (taking its snapshot, \
                     locking, or checking what it wrote). Run the same command again to finish; \
                     a lock it held expires within 3 minutes (`joplin-restore unlock` removes \
                     it sooner)"
                } else if read_only_so_far {
                    "interrupted before this run changed anything"
                } else if name == "client import" {
                    "interrupted: what was imported so far stays in Joplin (a note may still \
                     lack its body). Run the same command again to finish: it skips what is \
                     there and completes those notes"
                } else if name == "client wipe" {
                    "interrupted: some items may be deleted already. Run the same command \
                     again to finish"
                } else {
                    "interrupted"
                };
                joplin_restore::note!("error: {message}");
                if json {
                    print_json_report(
                        serde_json::json!({ "command": name }),
                        exit::FAILED,
                        Some(message.to_string()),
                    );
                }
                joplin_restore::backup::archive::remove_unpacked();
                std::process::exit(exit::FAILED);
            }
        });
    });
}

async fn run(cmd: Command) -> Result<i32> {
    match cmd {
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd, "joplin-restore", &mut buf);
            if shell == clap_complete::Shell::Bash {
                // clap_complete spells a hyphenated name's subcommand states two ways, so no
                // subcommand ever completes (clap-rs/clap#6421): use the loop's spelling.
                let text = String::from_utf8_lossy(&buf)
                    .replace("joplin__subcmd__restore__", "joplin__restore__");
                buf = text.into_bytes();
            }
            write_stdout(&buf)?;
            Ok(exit::OK)
        }
        Command::Man { command } => {
            let page = man_page_of(&command)?;
            let mut buf = Vec::new();
            clap_mangen::Man::new(page).render(&mut buf)?;
            write_stdout(&buf)?;
            Ok(exit::OK)
        }
        Command::Inspect { backup, opts } => {
            let b = Backup::open_with(&backup, &opts)?;
            let v = validate(&b);
            let text = inspect::report(&b, &v);
            report::set_result(json!({
                "command": "inspect",
                "backup": b.source_json(),
                "counts": inspect::counts(&b),
                "problems": v.problems.iter().map(|p| json!({
                    "class": p.class.flag(),
                    "entry": p.entry,
                    "id": p.id,
                    "title": p.title,
                    "message": p.message,
                })).collect::<Vec<_>>(),
            }));
            if report::json() {
                report::err(&text);
            } else {
                report::out(&text);
            }
            // A script checking its backups (cron after each backup) learns of problems from
            // the exit code, as it does of differences from `verify`.
            Ok(if v.problems.is_empty() {
                exit::OK
            } else {
                exit::DIFFERENCES
            })
        }
        Command::Restore(args) => {
            let s = restore::run(&args).await?;
            report::set_result(json!({
                "command": "restore",
                "backup": s.backup,
                "target": s.target,
                "uploaded": s.uploaded,
                "uploaded_bytes": s.uploaded_bytes,
                "unchanged": s.unchanged,
                "deleted": s.deleted,
                "snapshot": s.snapshot,
                "timings": s.timings,
                "requests": s.pacer.requests,
                "retries": s.pacer.retries,
                "rate_limited": s.pacer.rate_limited,
                "limits": s.limits,
                "verify_mode": s.verify_mode,
                "verify": s.verify,
                "dry_run": args.safety.dry_run,
                "would": s.planned,
                "partial": s.partial,
            }));
            if args.safety.dry_run {
                // The plan was printed; "Restored: 0 …" would read as a restore that did nothing.
                return Ok(exit::OK);
            }
            joplin_restore::say!(
                "Restored: {} file(s) uploaded, {} already up to date, {} deleted.",
                s.uploaded,
                s.unchanged,
                s.deleted
            );
            if let Some(snap) = &s.snapshot {
                joplin_restore::say!("Snapshot kept at {}", snap.display());
            } else if s.uploaded > 0 && !args.safety.no_snapshot {
                // So nobody looks for a path to roll back from that was never printed.
                joplin_restore::say!(
                    "No snapshot was taken: nothing on the target was replaced or deleted, \
                     files were only added."
                );
            }
            match &s.verify {
                Some(r) if !r.ok() => {
                    print_differences(r, "backup", RESTORE_CHECKSUM_HINT);
                    Ok(exit::DIFFERENCES)
                }
                Some(r) if s.verify_mode == VerifyMode::Quick => {
                    joplin_restore::say!(
                        "Checked: {} items and {} blobs are on the target, nothing extra \
                         (listing only; `verify` reads them back).",
                        r.checked_items,
                        r.checked_blobs
                    );
                    Ok(exit::OK)
                }
                Some(r) => {
                    joplin_restore::say!(
                        "Verified: {} items and {} blobs match the backup.",
                        r.checked_items,
                        r.checked_blobs
                    );
                    Ok(exit::OK)
                }
                None => Ok(exit::OK),
            }
        }
        Command::Migrate(args) => joplin_restore::migrate::main(&args).await,
        Command::Clear(args) => {
            let s = clear::run(&args).await?;
            report::set_result(json!({
                "command": "clear",
                "dry_run": s.would_delete.is_some(),
                "would_delete": s.would_delete,
                "deleted": s.deleted,
                "snapshot": s.snapshot,
                "timings": s.timings,
                "requests": s.pacer.requests,
                "retries": s.pacer.retries,
                "rate_limited": s.pacer.rate_limited,
            }));
            if s.would_delete.is_some() {
                // The list was printed; "Cleared: 0" would read as a clear that did nothing.
                return Ok(exit::OK);
            }
            joplin_restore::say!("Cleared: {} file(s) deleted.", s.deleted);
            if let Some(snap) = &s.snapshot {
                joplin_restore::say!("Snapshot kept at {}", snap.display());
            }
            Ok(exit::OK)
        }
        Command::Rollback(args) => {
            let s = rollback::run(&args).await?;
            let dry_run = args.safety.dry_run;
            report::set_result(json!({
                "command": "rollback",
                "dry_run": dry_run,
                "would": s.planned,
                "uploaded": s.uploaded,
                "deleted": s.deleted,
                "snapshot": s.snapshot,
                // A dry run checks nothing: no report rather than an empty (passing) one.
                "verify": (!dry_run).then_some(&s.verify),
                "timings": s.timings,
                "requests": s.pacer.requests,
                "retries": s.pacer.retries,
                "rate_limited": s.pacer.rate_limited,
            }));
            if dry_run {
                return Ok(exit::OK);
            }
            joplin_restore::say!(
                "Rolled back: {} file(s) written, {} deleted.",
                s.uploaded,
                s.deleted
            );
            if let Some(snap) = &s.snapshot {
                joplin_restore::say!(
                    "Snapshot of the state before the rollback: {}",
                    snap.display()
                );
            }
            if s.verify.ok() {
                joplin_restore::say!("Verified: the target matches the snapshot.");
                Ok(exit::OK)
            } else {
                print_differences(
                    &s.verify,
                    "snapshot",
                    "A blob whose size is right is kept as it is: run the rollback again with \
                     --rewrite-unchanged to write every item and blob of the snapshot again, \
                     stamped, so that clients take them too (--exact writes the bytes unstamped: \
                     clients that synced since keep theirs).",
                );
                Ok(exit::DIFFERENCES)
            }
        }
        Command::Targets => {
            let cfg = joplin_restore::config::Config::load()?;
            let list: Vec<_> = cfg
                .targets
                .iter()
                .map(|(name, t)| {
                    json!({
                        "name": name,
                        "kind": t.kind(),
                        "target": without_credentials(&t.target),
                        "username": t.username,
                        "password_file": t.password_file_path(),
                        "password_env": t.password_env,
                        "transfers": t.transfers,
                        "tpslimit": t.tpslimit,
                        "bwlimit": t.bwlimit,
                    })
                })
                .collect();
            report::set_result(json!({
                "command": "targets",
                "config": cfg.path,
                "exists": cfg.exists,
                "targets": list,
            }));
            if !report::json() {
                if !cfg.exists {
                    joplin_restore::say!(
                        "No config file at {} (see `joplin-restore targets --help`).",
                        cfg.path.display()
                    );
                } else {
                    joplin_restore::say!("Config file: {}", cfg.path.display());
                    if cfg.targets.is_empty() {
                        joplin_restore::say!("No [targets.NAME] tables in it.");
                    }
                    for (name, t) in &cfg.targets {
                        let mut extra = Vec::new();
                        if let Some(u) = &t.username {
                            extra.push(format!("user {u}"));
                        }
                        if let Some(n) = t.transfers {
                            extra.push(format!("--transfers {n}"));
                        }
                        if let Some(n) = t.tpslimit {
                            extra.push(format!("--tpslimit {n}"));
                        }
                        if let Some(n) = &t.bwlimit {
                            extra.push(format!("--bwlimit {n}"));
                        }
                        let extra = if extra.is_empty() {
                            String::new()
                        } else {
                            format!("  ({})", extra.join(", "))
                        };
                        joplin_restore::say!(
                            "{name}:  {}  {}{extra}",
                            t.kind(),
                            without_credentials(&t.target)
                        );
                    }
                }
            }
            Ok(exit::OK)
        }
        Command::Status { target, pacer } => {
            let s = status::status(&target, &pacer).await?;
            if report::json() {
                let mut v = serde_json::to_value(&s)?;
                v["command"] = json!("status");
                report::set_result(v);
            } else {
                status::print(&s);
            }
            Ok(exit::OK)
        }
        Command::Unlock {
            target,
            pacer,
            force,
        } => {
            let (removed, kept) = status::unlock(&target, &pacer, force).await?;
            report::set_result(json!({"command": "unlock", "removed": removed, "kept": kept}));
            joplin_restore::say!("{removed} lock(s) removed, {kept} active lock(s) kept.");
            Ok(exit::OK)
        }
        Command::Export(args) => {
            let s = export::run(&args).await?;
            report::set_result(json!({
                "command": "export",
                "out": args.out,
                "items": s.items,
                "blobs": s.blobs,
                "bytes": s.bytes,
                "skipped_trash": s.skipped_trash,
                "skipped_conflicts": s.skipped_conflicts,
            }));
            joplin_restore::say!(
                "Exported {} items and {} attachment blobs ({} bytes) to {}.",
                s.items,
                s.blobs,
                s.bytes,
                args.out.display()
            );
            if s.skipped_trash + s.skipped_conflicts > 0 {
                joplin_restore::say!(
                    "Left out: {} in the trash, {} conflict copies (--include-trash, --include-conflicts).",
                    s.skipped_trash, s.skipped_conflicts
                );
            }
            Ok(exit::OK)
        }
        Command::Diff(args) => {
            let (t, r, keyring) = compare(&args).await?;
            let mut text = verify::diff_report(&t, &r, keyring.as_deref()).await;
            // A changed blob of the right size is one a plain restore keeps.
            if r.blob_damaged() {
                text.push_str(RESTORE_CHECKSUM_HINT);
                text.push('\n');
            }
            report::set_result(json!({"command": "diff", "target": t.describe(), "report": r}));
            if report::json() {
                report::err(&text);
            } else {
                report::out(&text);
            }
            Ok(if r.ok() { exit::OK } else { exit::DIFFERENCES })
        }
        Command::Client { cmd } => joplin_restore::client::cli::run(cmd).await,
        Command::Verify(args) => {
            let (t, r, _) = compare(&args).await?;
            report::set_result(json!({"command": "verify", "target": t.describe(), "report": r}));
            if r.ok() {
                joplin_restore::say!(
                    "OK: {} items and {} blobs on {} match the backup.",
                    r.checked_items,
                    r.checked_blobs,
                    t.describe()
                );
                Ok(exit::OK)
            } else {
                print_differences(&r, "backup", RESTORE_CHECKSUM_HINT);
                Ok(exit::DIFFERENCES)
            }
        }
    }
}

fn command_name(c: &Command) -> &'static str {
    match c {
        Command::Inspect { .. } => "inspect",
        Command::Restore(_) => "restore",
        Command::Clear(_) => "clear",
        Command::Rollback(_) => "rollback",
        Command::Migrate(_) => "migrate",
        Command::Status { .. } => "status",
        Command::Unlock { .. } => "unlock",
        Command::Export(_) => "export",
        Command::Diff(_) => "diff",
        Command::Completions { .. } => "completions",
        Command::Man { .. } => "man",
        Command::Verify(_) => "verify",
        Command::Targets => "targets",
        Command::Client { cmd } => cmd.name(),
    }
}

/// The command whose man page `man WORDS…` asks for, named as the tool's own page refers to
/// it (`joplin-restore-client-reset`).
fn man_page_of(words: &[String]) -> Result<clap::Command> {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    // Fills in what clap derives late (the global options of every subcommand, `help`).
    cmd.build();
    let mut path = vec![cmd.get_name().to_string()];
    for word in words {
        let Some(sub) = cmd.find_subcommand(word).cloned() else {
            let known: Vec<&str> = cmd
                .get_subcommands()
                .map(|c| c.get_name())
                .filter(|n| *n != "help")
                .collect();
            joplin_restore::usage_error!(
                "`{}` has no command `{word}`: man pages exist for {}",
                path.join(" "),
                known.join(", ")
            );
        };
        path.push(sub.get_name().to_string());
        cmd = sub;
    }
    Ok(cmd.name(path.join("-")))
}

/// Write to stdout; a closed pipe (`| head`) is not an error.
fn write_stdout(data: &[u8]) -> Result<()> {
    use std::io::Write;
    match std::io::stdout().write_all(data) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// The differences, then `blob_hint` when a blob differs: what replaces it.
fn print_differences(r: &verify::VerifyReport, against: &str, blob_hint: &str) {
    joplin_restore::say!(
        "{} difference(s) between the target and the {against}:",
        r.differences.len()
    );
    for d in &r.differences {
        joplin_restore::say!("  {d}");
    }
    if r.blob_damaged() {
        joplin_restore::say!("{blob_hint}");
    }
}

/// After a restore or verify: a blob of the right size is trusted unless its bytes are read.
const RESTORE_CHECKSUM_HINT: &str = "A blob whose size is right is kept as it is: run the \
     restore with --checksum to compare every blob byte for byte and replace those that \
     differ.";
