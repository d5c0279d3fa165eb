//! What every command that changes a target shares: dry run, confirmation, the snapshot taken
//! before anything destructive, lock overrides, and the resume journal's options.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::progress::Progress;
use crate::target::SyncTarget;

/// `--dry-run`, `--yes`, `--snapshot-dir`, `--no-snapshot`, `--force`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SafetyArgs {
    /// Print what would change on the target; change nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Do not ask before replacing or deleting anything on the target.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Where to keep the snapshot of the target taken before anything on it is replaced or
    /// deleted (default: ~/.local/share/joplin-restore/snapshots).
    #[arg(long, value_name = "DIR")]
    pub snapshot_dir: Option<PathBuf>,
    /// Do not snapshot the target first (you lose the way back).
    #[arg(long)]
    pub no_snapshot: bool,
    /// Go on even if another client holds a lock or the folder does not look like a sync
    /// target.
    #[arg(long)]
    pub force: bool,
}

/// `--journal-dir`, `--fresh`: where an interrupted run is picked up from.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct JournalArgs {
    /// Where the resume journal lives (default: ~/.local/state/joplin-restore/journals).
    #[arg(long, value_name = "DIR")]
    pub journal_dir: Option<PathBuf>,
    /// Start over: ignore the journal of an interrupted run of the same command.
    #[arg(long)]
    pub fresh: bool,
}

impl SafetyArgs {
    /// The snapshot a destructive step needs (none with `--no-snapshot`).
    pub async fn snapshot(
        &self,
        target: &SyncTarget,
        transfers: usize,
        progress: &Progress,
        listed: Option<&[String]>,
    ) -> Result<Option<PathBuf>> {
        if self.no_snapshot {
            crate::note!(
                "warning: --no-snapshot: replaced and deleted files cannot be brought back"
            );
            return Ok(None);
        }
        Ok(Some(
            take_snapshot(
                target,
                self.snapshot_dir.as_deref(),
                transfers,
                progress,
                listed,
            )
            .await?,
        ))
    }

    /// The snapshot of a run that may continue an interrupted one: the earlier run's snapshot
    /// (taken before anything was changed) when it is still there, since a new one would hold
    /// the half-written target; else a new one when `needed`. When a client wrote to the
    /// target after the interrupted run stopped (`changed_since`), what it wrote is in no
    /// snapshot: a new one is taken as well (and named), before this run replaces or deletes
    /// any of it.
    #[allow(clippy::too_many_arguments)]
    pub async fn snapshot_resuming(
        &self,
        earlier: Option<&Path>,
        needed: bool,
        changed_since: bool,
        target: &SyncTarget,
        transfers: usize,
        progress: &Progress,
        listed: Option<&[String]>,
    ) -> Result<Option<PathBuf>> {
        if let Some(first) = earlier {
            if crate::snapshot::is_complete(first) {
                progress.say(&format!(
                    "keeping the snapshot taken before the interrupted run changed anything: {}",
                    first.display()
                ));
                if needed && changed_since && !self.no_snapshot {
                    let since = self.snapshot(target, transfers, progress, listed).await?;
                    if let Some(since) = since {
                        crate::note!(
                            "note: the target changed after the interrupted run stopped (a \
                             client synced): its state now is kept in a second snapshot, {} \
                             (the first, {}, is the one to roll back to for the target as it \
                             was before the restore)",
                            since.display(),
                            first.display()
                        );
                    }
                }
                return Ok(Some(first.to_path_buf()));
            }
            crate::note!(
                "warning: {} (the snapshot taken before the interrupted run changed anything) \
                 is gone; a new snapshot can only hold the target as that run left it",
                first.display()
            );
        }
        if !needed {
            return Ok(None);
        }
        self.snapshot(target, transfers, progress, listed).await
    }
}

/// Set once a command is about to change a target: an interrupt from then on says the target
/// may be partly changed and how to finish.
static WRITING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Called by a command right before its first change to a target.
pub fn begin_writing() {
    WRITING.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Whether the running command may have started changing a target.
pub fn writing() -> bool {
    WRITING.load(std::sync::atomic::Ordering::SeqCst)
}

/// How many stages are answering Ctrl-C and SIGTERM themselves right now.
static ANSWERING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Held while a stage answers signals itself ([`unless_interrupted`]); the signal watcher in
/// `main` ends the run in every other stage.
struct SignalsAnswered(());

impl SignalsAnswered {
    fn here() -> Self {
        ANSWERING.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        SignalsAnswered(())
    }
}

impl Drop for SignalsAnswered {
    fn drop(&mut self) {
        ANSWERING.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Set when a stage run by [`unless_interrupted`] saw a signal: it is ending the run itself.
static TAKEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether a stage answers signals itself right now, or has taken one and is ending the run.
pub fn signals_answered() -> bool {
    ANSWERING.load(std::sync::atomic::Ordering::SeqCst) > 0
        || TAKEN.load(std::sync::atomic::Ordering::SeqCst)
}

/// Whether a stage has taken a signal and is ending the run.
pub fn signal_taken() -> bool {
    TAKEN.load(std::sync::atomic::Ordering::SeqCst)
}

/// Run `work` as a stage that answers Ctrl-C and SIGTERM itself: `None` when a signal came
/// first, and the caller then stops writing and releases its lock. The signal is marked as
/// taken, so the watcher in `main` leaves the ending to the caller (a second signal aside).
pub async fn unless_interrupted<T>(work: impl std::future::Future<Output = T>) -> Option<T> {
    let _answered = SignalsAnswered::here();
    tokio::select! {
        v = work => Some(v),
        _ = signal() => {
            TAKEN.store(true, std::sync::atomic::Ordering::SeqCst);
            None
        }
    }
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM (what `kill`, systemd and container runtimes send)
/// or SIGHUP (the terminal or ssh session went away) — unless SIGHUP was ignored when the run
/// started (`nohup`), which then keeps it going.
pub async fn signal() -> Interrupt {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let answer_hangup = !hangup_ignored_at_start();
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            let mut hup = if answer_hangup {
                signal(SignalKind::hangup()).ok()
            } else {
                None
            };
            let hangup = async {
                match hup.as_mut() {
                    Some(h) => {
                        h.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            return tokio::select! {
                _ = tokio::signal::ctrl_c() => Interrupt::CtrlC,
                _ = term.recv() => Interrupt::Term,
                _ = hangup => Interrupt::Hangup,
            };
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    Interrupt::CtrlC
}

/// Which signal [`signal`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    CtrlC,
    Term,
    /// The terminal or session went away. A closing terminal can deliver it twice (the shell
    /// passes its own on to its jobs, the kernel signals the old foreground group): one event.
    Hangup,
}

/// Whether SIGHUP was ignored before this process answered any signal (`nohup` sets that).
/// Read once, before the first handler replaces the disposition.
#[cfg(unix)]
fn hangup_ignored_at_start() -> bool {
    static IGNORED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *IGNORED.get_or_init(|| {
        // SAFETY: sigaction with a null new action only reads the current disposition into
        // `old`, a zeroed plain C struct.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(libc::SIGHUP, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction == libc::SIG_IGN
        }
    })
}

/// Ask on the terminal; `false` when stdin is not a terminal (scripts must pass --yes).
pub fn confirm(question: &str) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Ok(false);
    }
    crate::report::err(&format!("{question} [y/N] "));
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// Snapshot the whole target before a destructive step; prints where it went. `listed`: the
/// target's files from a listing just made (saves listing it again).
pub async fn take_snapshot(
    target: &SyncTarget,
    dir: Option<&Path>,
    transfers: usize,
    progress: &Progress,
    listed: Option<&[String]>,
) -> Result<PathBuf> {
    let dir = dir
        .map(PathBuf::from)
        .unwrap_or_else(crate::snapshot::default_dir);
    progress.say(&format!("taking a snapshot into {}", dir.display()));
    // On a signal, dropping `take` removes its half-written folder.
    let Some(taken) =
        unless_interrupted(crate::snapshot::take(target, &dir, transfers, listed)).await
    else {
        anyhow::bail!(
            "interrupted while taking the snapshot: nothing on the target was changed and the \
             unfinished snapshot was removed. Run the same command again to start over."
        );
    };
    let path = taken.context("the snapshot failed, so nothing on the target was changed")?;
    crate::say!("Snapshot of the target: {}", path.display());
    Ok(path)
}

/// What a `clear` or `rollback` stopped after it began changing a target leaves behind (a
/// small file in the default journal folder, whatever `--snapshot-dir` the rerun gets): the
/// snapshot it took before changing anything. The rerun takes its own of the half-changed
/// target, but names this one as the way back. Any command that then finishes on the target
/// (`clear`, `rollback`, `restore`) forgets it: the target is whole again, and a later run's
/// own snapshot is the way back.
pub struct Interrupted {
    dir: PathBuf,
    command: &'static str,
    target: String,
}

/// The commands that leave an [`Interrupted`] record.
const RECORDING: [&str; 2] = ["clear", "rollback"];

impl Interrupted {
    pub fn for_target(command: &'static str, target: &str) -> Interrupted {
        Interrupted::in_dir(&crate::journal::default_dir(), command, target)
    }

    fn in_dir(dir: &Path, command: &'static str, target: &str) -> Interrupted {
        Interrupted {
            dir: dir.to_path_buf(),
            command,
            target: target.to_string(),
        }
    }

    fn path(&self, command: &str) -> PathBuf {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(self.target.as_bytes());
        self.dir.join(format!(
            "interrupted-{command}-{}.txt",
            hex::encode(&digest[..8])
        ))
    }

    /// The snapshot an interrupted run of the same command on the same target took, while it
    /// is still whole.
    pub fn earlier(&self) -> Option<PathBuf> {
        let text = std::fs::read_to_string(self.path(self.command)).ok()?;
        let snapshot = PathBuf::from(text.trim_end());
        crate::snapshot::is_complete(&snapshot).then_some(snapshot)
    }

    /// The snapshot of the whole target: the interrupted run's, else this run's own.
    pub fn whole(&self, own: Option<&Path>) -> Option<PathBuf> {
        self.earlier().or_else(|| own.map(Path::to_path_buf))
    }

    /// This run stopped part way: remember `snapshot` for the rerun (the earliest one stays).
    /// Best effort: without it the interrupt message still names the snapshot.
    pub fn record(&self, snapshot: Option<&Path>) {
        let Some(snapshot) = snapshot else {
            return;
        };
        if self.earlier().is_none() {
            let _ = std::fs::create_dir_all(&self.dir);
            let _ = std::fs::write(self.path(self.command), snapshot.display().to_string());
        }
    }

    /// A command finished on the target: the interrupted run's snapshot, if any, is named as
    /// the way back (`own`, this run's, holds the target `half` changed), and then forgotten
    /// with every record of the target.
    pub fn finished(&self, own: Option<&Path>, half: &str) {
        if let Some(first) = self.earlier() {
            crate::note!(
                "note: the interrupted {cmd} before this run took {} before it changed \
                 anything: roll back from that one for the target as it was before the {cmd}{}",
                first.display(),
                match own {
                    Some(this) => format!(" ({} holds it {half})", this.display()),
                    None => String::new(),
                },
                cmd = self.command
            );
        }
        for command in RECORDING {
            let _ = std::fs::remove_file(self.path(command));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interrupted_run_names_its_first_whole_snapshot_until_one_finishes() {
        let tmp = tempfile::tempdir().unwrap();
        let first = tmp.path().join("snapshot-1");
        let second = tmp.path().join("snapshot-2");
        for s in [&first, &second] {
            std::fs::create_dir_all(s).unwrap();
            std::fs::write(s.join(crate::snapshot::MANIFEST), b"{}").unwrap();
        }
        let note = Interrupted::in_dir(tmp.path(), "rollback", "folder /x");
        assert_eq!(note.earlier(), None);
        note.record(Some(&first));
        // A second interruption keeps the first snapshot: it holds the target whole.
        note.record(Some(&second));
        assert_eq!(note.earlier(), Some(first.clone()));
        let other = Interrupted::in_dir(tmp.path(), "rollback", "folder /y");
        assert_eq!(other.earlier(), None, "another target");
        // A snapshot deleted since is no way back.
        std::fs::remove_file(first.join(crate::snapshot::MANIFEST)).unwrap();
        assert_eq!(note.earlier(), None);
        note.record(Some(&second));
        assert_eq!(note.earlier(), Some(second.clone()));
        // A restore (or a clear) that finishes on the target forgets a rollback's record: the
        // target is whole again.
        Interrupted::in_dir(tmp.path(), "restore", "folder /x").finished(None, "");
        assert_eq!(note.earlier(), None);
        note.record(Some(&second));
        note.finished(None, "");
        assert_eq!(note.earlier(), None);
    }
}
