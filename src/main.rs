use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use clap::{Parser, Subcommand};

use joplin_restore::backup::{Backup, BackupOptions};
use joplin_restore::clear::{self, ClearArgs};
use joplin_restore::exit;
use joplin_restore::export::{self, ExportArgs};
use joplin_restore::open::{open_paced, PacerArgs, TargetArgs};
use joplin_restore::restore::{self, RestoreArgs};
use joplin_restore::rollback::{self, RollbackArgs};
use joplin_restore::target::SyncTarget;
use joplin_restore::validate::{validate, ProblemClass};
use joplin_restore::{inspect, plan, status, verify};

/// Restore a Joplin backup (JEX) straight into a sync target, keeping every ID, so clients
/// just sync.
#[derive(Parser)]
#[command(name = "joplin-restore", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// More log output (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
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
    /// What is on a target: sync version, E2EE and keys, item counts, locks.
    Status {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        pacer: PacerArgs,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove locks left on a target by joplin-restore or by clients that are gone (stale).
    Unlock {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        pacer: PacerArgs,
    },
    /// Write a JEX of a sync target's live notes, notebooks, tags and attachments (server-side
    /// backup; Joplin imports it).
    Export(Box<ExportArgs>),
    /// What a restore would change: items added, changed and removed, by type and title.
    Diff {
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
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to standard output.
    Man,
    /// Compare a target with a backup; exit 3 on any difference.
    Verify {
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
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("JOPLIN_RESTORE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(cli.command)) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit::code_for(&e) as u8)
        }
    }
}

async fn run(cmd: Command) -> Result<i32> {
    match cmd {
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd, "joplin-restore", &mut buf);
            write_stdout(&buf)?;
            Ok(exit::OK)
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            let mut buf = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut buf)?;
            write_stdout(&buf)?;
            Ok(exit::OK)
        }
        Command::Inspect { backup, opts } => {
            let b = Backup::open_with(&backup, &opts)?;
            let v = validate(&b);
            print!("{}", inspect::report(&b, &v));
            Ok(exit::OK)
        }
        Command::Restore(args) => {
            let s = restore::run(&args).await?;
            println!(
                "Restored: {} file(s) uploaded, {} already up to date, {} deleted.",
                s.uploaded, s.unchanged, s.deleted
            );
            if let Some(snap) = &s.snapshot {
                println!("Snapshot kept at {}", snap.display());
            }
            match &s.verify {
                Some(r) if !r.ok() => {
                    print_differences(r);
                    Ok(exit::DIFFERENCES)
                }
                Some(r) => {
                    println!(
                        "Verified: {} items and {} blobs match the backup.",
                        r.checked_items, r.checked_blobs
                    );
                    Ok(exit::OK)
                }
                None => Ok(exit::OK),
            }
        }
        Command::Clear(args) => {
            let s = clear::run(&args).await?;
            println!("Cleared: {} file(s) deleted.", s.deleted);
            if let Some(snap) = &s.snapshot {
                println!("Snapshot kept at {}", snap.display());
            }
            Ok(exit::OK)
        }
        Command::Rollback(args) => {
            let s = rollback::run(&args).await?;
            println!(
                "Rolled back: {} file(s) written, {} deleted.",
                s.uploaded, s.deleted
            );
            if let Some(snap) = &s.snapshot {
                println!(
                    "Snapshot of the state before the rollback: {}",
                    snap.display()
                );
            }
            if s.verify.ok() {
                println!("Verified: the target matches the snapshot.");
                Ok(exit::OK)
            } else {
                print_differences(&s.verify);
                Ok(exit::DIFFERENCES)
            }
        }
        Command::Status {
            target,
            pacer,
            json,
        } => {
            let s = status::status(&target, &pacer).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                status::print(&s);
            }
            Ok(exit::OK)
        }
        Command::Unlock { target, pacer } => {
            let (removed, kept) = status::unlock(&target, &pacer).await?;
            println!("{removed} lock(s) removed, {kept} active lock(s) of other clients kept.");
            Ok(exit::OK)
        }
        Command::Export(args) => {
            let s = export::run(&args).await?;
            println!(
                "Exported {} items and {} attachment blobs ({} bytes) to {}.",
                s.items,
                s.blobs,
                s.bytes,
                args.out.display()
            );
            if s.skipped_trash + s.skipped_conflicts > 0 {
                println!(
                    "Left out: {} in the trash, {} conflict copies (--include-trash, --include-conflicts).",
                    s.skipped_trash, s.skipped_conflicts
                );
            }
            Ok(exit::OK)
        }
        Command::Diff {
            backup,
            opts,
            target,
            pacer,
            allow,
        } => {
            let (b, v) = restore::read_and_validate(&backup, &opts, &allow)?;
            let b = Arc::new(b);
            let paced = open_paced(&target, &pacer)?;
            let transfers = paced.options().transfers;
            let t = SyncTarget::new(paced);
            let state = t.state().await?;
            let set: Vec<usize> = plan::restore_set(&b, &v).iter().map(|(i, _)| *i).collect();
            let r = verify::verify(&t, b.clone(), &set, &v.skipped_ids, &state, transfers).await?;
            let report = verify::diff_report(&t, &r).await;
            print!("{report}");
            Ok(if r.ok() { exit::OK } else { exit::DIFFERENCES })
        }
        Command::Verify {
            backup,
            opts,
            target,
            pacer,
            allow,
        } => {
            let (b, v) = restore::read_and_validate(&backup, &opts, &allow)?;
            let b = Arc::new(b);
            let paced = open_paced(&target, &pacer)?;
            let transfers = paced.options().transfers;
            let t = SyncTarget::new(paced);
            let state = t.state().await?;
            let set: Vec<usize> = plan::restore_set(&b, &v).iter().map(|(i, _)| *i).collect();
            let r = verify::verify(&t, b.clone(), &set, &v.skipped_ids, &state, transfers).await?;
            if r.ok() {
                println!(
                    "OK: {} items and {} blobs on {} match the backup.",
                    r.checked_items,
                    r.checked_blobs,
                    t.describe()
                );
                Ok(exit::OK)
            } else {
                print_differences(&r);
                Ok(exit::DIFFERENCES)
            }
        }
    }
}

/// Write to stdout; a closed pipe (`| head`) is not an error.
fn write_stdout(data: &[u8]) -> Result<()> {
    use std::io::Write;
    match std::io::stdout().write_all(data) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn print_differences(r: &verify::VerifyReport) {
    println!(
        "{} difference(s) between the target and the backup:",
        r.differences.len()
    );
    for d in &r.differences {
        println!("  {d}");
    }
}
