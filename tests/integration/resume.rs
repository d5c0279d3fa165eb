//! Interrupted runs resume: kill -9 at random points (during clear and during upload), rerun
//! until done, verify; nothing the journal recorded as done is uploaded again.

use crate::support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use joplin_restore::generate::{write_jex, GenSpec};
use support::{jr_ok, signal, text};

fn generated(dir: &Path, seed: u64, notes: usize) -> PathBuf {
    let p = dir.join(format!("gen-{seed}.jex"));
    let spec = GenSpec {
        notes,
        notebooks: 20,
        tags: 5,
        attachments: 40,
        attachment_bytes: 4096,
        seed,
    };
    write_jex(&spec, &p).unwrap();
    p
}

/// Paths the journal in `dir` says are done.
fn journal_done(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap_or_default();
        for line in text.lines() {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                if let Some(p) = v.pointer("/done/path").and_then(|p| p.as_str()) {
                    out.push(p.to_string());
                }
            }
        }
    }
    out
}

fn mtimes(target: &Path, paths: &[String]) -> HashMap<String, SystemTime> {
    paths
        .iter()
        .filter_map(|p| {
            let m = std::fs::metadata(target.join(p)).ok()?.modified().ok()?;
            Some((p.clone(), m))
        })
        .collect()
}

/// Deterministic delays in [300, 2800) ms.
fn delays(seed: u64, n: usize) -> Vec<u64> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            300 + s % 2500
        })
        .collect()
}

fn kill_and_resume(mode: &str, seed: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    let journals = tmp.path().join("journals");
    // The target first holds a different collection, so the restore clears/deletes and uploads.
    let old = generated(tmp.path(), seed + 100, 1200);
    jr_ok(&[
        "restore",
        old.to_str().unwrap(),
        "--target",
        target.to_str().unwrap(),
        "-q",
    ]);
    let backup = generated(tmp.path(), seed, 1900);
    let args: Vec<String> = [
        "restore",
        backup.to_str().unwrap(),
        "--target",
        target.to_str().unwrap(),
        "--mode",
        mode,
        "--yes",
        "-q",
        "--tpslimit",
        "600",
        "--no-snapshot",
        "--journal-dir",
        journals.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();

    let mut kills = 0;
    let mut finished = false;
    for (round, delay) in delays(seed, 10).into_iter().enumerate() {
        let done_before = journal_done(&journals);
        let times_before = mtimes(&target, &done_before);
        let mut child = support::command()
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        match child.try_wait().unwrap() {
            Some(status) => {
                let out = child.wait_with_output().unwrap();
                assert!(
                    status.success(),
                    "round {round}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                finished = true;
            }
            None => {
                child.kill().unwrap();
                child.wait().unwrap();
                kills += 1;
            }
        }
        // What the journal said was done before this round was not written again.
        let times_after = mtimes(&target, &done_before);
        for (p, t) in &times_before {
            if let Some(after) = times_after.get(p) {
                assert_eq!(
                    after, t,
                    "round {round}: {p} was uploaded again after the journal said done"
                );
            }
        }
        if finished {
            break;
        }
    }
    assert!(
        kills >= 3,
        "the restore finished too early to test interruption ({kills} kills)"
    );
    if !finished {
        let o = support::jr(&args.iter().map(|s| s.as_str()).collect::<Vec<_>>());
        assert!(o.status.success(), "final run: {}", text(&o));
    }
    support::assert_verified(&backup, &target);
    assert!(
        journal_done(&journals).is_empty(),
        "a finished restore leaves no journal"
    );
}

#[test]
fn mirror_restore_survives_kill_9_at_random_points() {
    kill_and_resume("mirror", 11);
}

#[test]
fn clear_first_restore_survives_kill_9_during_clear_and_upload() {
    kill_and_resume("clear-first", 23);
}

/// Joplin Server lists no sizes: a rerun after a kill still skips the attachment blobs the
/// journal recorded as done (they are on the server), instead of sending every blob again.
#[test]
fn joplin_server_resume_sends_no_finished_blob_again() {
    use support::jserver::{self, EmulatorConfig, PASSWORD, USER};
    let tmp = tempfile::tempdir().unwrap();
    let journals = tmp.path().join("journals");
    let backup = generated(tmp.path(), 31, 200);
    let (_rt, emu) = jserver::start(EmulatorConfig::default());
    let target = jserver::target(&emu);
    let args = [
        "restore",
        backup.to_str().unwrap(),
        "--target",
        &target,
        "--username",
        USER,
        "--yes",
        "-q",
        "--no-snapshot",
        "--journal-dir",
        journals.to_str().unwrap(),
    ];
    // Blobs go first; 10 a second gives time to stop the run among them.
    let mut child = support::command()
        .args(args)
        .args(["--tpslimit", "10"])
        .env("JOPLIN_RESTORE_PASSWORD", PASSWORD)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let blobs_done = || {
        journal_done(&journals)
            .into_iter()
            .filter(|p| p.starts_with(".resource/"))
            .count()
    };
    for _ in 0..600 {
        if blobs_done() >= 5 || child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let done = blobs_done() as u64;
    assert!(
        (5..40).contains(&done),
        "{done} blobs done when stopped: the run must stop among the 40 blobs"
    );

    emu.reset_stats();
    let o = support::jr_env(&args, &[("JOPLIN_RESTORE_PASSWORD", PASSWORD)]);
    assert!(o.status.success(), "rerun: {}", text(&o));
    // The rerun sends the 40 blobs less the finished ones, and at most info.json besides.
    let singles = emu.stats().single_puts;
    assert!(
        singles <= 40 - done + 1,
        "{singles} single PUTs after {done} blobs were done: finished blobs were sent again"
    );
    let out = support::jr_env(
        &[
            "verify",
            backup.to_str().unwrap(),
            "--target",
            &target,
            "--username",
            USER,
        ],
        &[("JOPLIN_RESTORE_PASSWORD", PASSWORD)],
    );
    assert!(out.status.success(), "{}", text(&out));
}

/// A 200-note restore (40 attachments) into a folder, with its own journal folder.
struct FolderRestore {
    _tmp: tempfile::TempDir,
    target: PathBuf,
    journals: PathBuf,
    backup: PathBuf,
}

impl FolderRestore {
    fn new(seed: u64) -> FolderRestore {
        let tmp = tempfile::tempdir().unwrap();
        FolderRestore {
            target: tmp.path().join("target"),
            journals: tmp.path().join("journals"),
            backup: generated(tmp.path(), seed, 200),
            _tmp: tmp,
        }
    }

    fn args(&self) -> Vec<&str> {
        vec![
            "restore",
            self.backup.to_str().unwrap(),
            "--target",
            self.target.to_str().unwrap(),
            "-q",
            "--journal-dir",
            self.journals.to_str().unwrap(),
        ]
    }

    /// Lock files on the target.
    fn locks(&self) -> usize {
        std::fs::read_dir(self.target.join("locks"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Start a slow run, let it write a few files (holding its lock), send it `signals` one
    /// after the other; its exit code and stderr.
    #[cfg(unix)]
    fn stop_while_writing(&self, signals: &[&str]) -> (Option<i32>, String) {
        let mut child = self.start_slow();
        wait_for_done(&self.journals, &mut child, 3, |_| true);
        assert!(
            journal_done(&self.journals).len() >= 3,
            "the run never started writing"
        );
        assert_eq!(self.locks(), 1, "the run holds its lock");
        for s in signals {
            signal(&child, s);
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The same command again finishes, and the target holds the backup.
    fn rerun_finishes(&self) {
        let o = support::jr(&self.args());
        assert!(o.status.success(), "rerun: {}", text(&o));
        support::assert_verified(&self.backup, &self.target);
    }

    /// Started at 10 requests a second: blobs go first, so there is time to stop the run
    /// among them. Its stderr is kept.
    fn start_slow(&self) -> std::process::Child {
        support::command()
            .args(self.args())
            .args(["--tpslimit", "10"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}

/// Run `args` + `extra` (quiet), kill -9 it once it journaled three files.
fn killed_mid_run(args: &[&str], extra: &[&str], journals: &Path) {
    let mut child = support::command()
        .args(args)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_done(journals, &mut child, 3, |_| true);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Wait (30 s at most, or until the run ends) for `n` journaled files that `which` accepts.
fn wait_for_done(
    journals: &Path,
    child: &mut std::process::Child,
    n: usize,
    which: impl Fn(&str) -> bool,
) {
    for _ in 0..600 {
        let done = journal_done(journals).iter().filter(|p| which(p)).count();
        if done >= n || child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A kill can fall between writing a blob and journaling it (blobs land before their resource
/// items). The rerun, without `--yes` and without a terminal, finds that blob with the backup's
/// bytes: it neither asks to replace it (asking would stop the run) nor writes it again.
#[test]
fn resume_takes_an_unjournaled_blob_with_the_backups_bytes_as_written() {
    let r = FolderRestore::new(41);
    let (target, journals, backup) = (&r.target, &r.journals, &r.backup);
    let args = r.args();
    let mut child = r.start_slow();
    let is_blob = |p: &str| p.starts_with(".resource/");
    wait_for_done(journals, &mut child, 3, is_blob);
    child.kill().unwrap();
    child.wait().unwrap();
    let done: Vec<String> = journal_done(journals)
        .into_iter()
        .filter(|p| is_blob(p))
        .collect();
    assert!(
        (3..40).contains(&done.len()),
        "{} blobs done when stopped: the run must stop among the 40 blobs",
        done.len()
    );
    // Forget the journal line of one blob, as if the kill had come just before it.
    let lost = done[0].clone();
    let id = lost.trim_start_matches(".resource/");
    assert!(
        !target.join(format!("{id}.md")).exists(),
        "the resource item of {lost} is not written yet"
    );
    let journal = std::fs::read_dir(journals)
        .unwrap()
        .next()
        .expect("a journal")
        .unwrap()
        .path();
    let kept: String = std::fs::read_to_string(&journal)
        .unwrap()
        .lines()
        .filter(|l| !(l.contains("\"done\"") && l.contains(&lost)))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&journal, kept).unwrap();
    assert!(!journal_done(journals).contains(&lost));
    let before = mtimes(target, std::slice::from_ref(&lost));

    let o = support::jr(&args);
    assert!(o.status.success(), "resumed run: {}", text(&o));
    assert_eq!(
        mtimes(target, std::slice::from_ref(&lost)),
        before,
        "{lost} was written again"
    );
    support::assert_verified(backup, target);
}

/// SIGTERM (`kill`, systemd, a container stop) is an interruption like Ctrl-C: the run stops
/// writing, says how to resume, and releases its lock, so the next run (or another client)
/// is not blocked by it; the same command then finishes.
#[cfg(unix)]
#[test]
fn sigterm_releases_the_lock_and_the_rerun_finishes() {
    let r = FolderRestore::new(53);
    let (code, err) = r.stop_while_writing(&["-TERM"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("interrupted") && err.contains("resume"),
        "{err}"
    );
    assert_eq!(r.locks(), 0, "the lock was left: {err}");
    r.rerun_finishes();
}

/// Two signals in a row (an impatient second Ctrl-C) while writing: the run ends at once
/// (exit 1, saying it was interrupted and how to go on), whichever of the two ended it, and the
/// same command then finishes: a lock the second signal left behind is this machine's own and
/// is reclaimed.
#[cfg(unix)]
#[test]
fn a_second_signal_while_stopping_ends_the_run_and_the_rerun_finishes() {
    let r = FolderRestore::new(59);
    let (code, err) = r.stop_while_writing(&["-TERM", "-TERM"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("interrupted") && err.contains("again"),
        "{err}"
    );
    r.rerun_finishes();
}

/// A stderr nobody reads any more (`2>&1 | head -1`, a closed terminal) is no reason to stop
/// a restore midway with its lock held: it goes on unread and finishes (it died with exit 101
/// on the first message, leaving the lock and half the items).
#[cfg(unix)]
#[test]
fn a_closed_stderr_does_not_stop_the_restore() {
    let r = FolderRestore::new(61);
    let (target, backup) = (&r.target, &r.backup);
    let mut args = r.args();
    args.retain(|a| *a != "-q");
    // --json: every human line goes to stderr.
    args.insert(0, "--json");
    let mut child = support::command()
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("\"ok\": true"), "{stdout}");
    let locks = std::fs::read_dir(target.join("locks"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(locks, 0, "a lock was left");
    support::assert_verified(backup, target);
}

/// SIGHUP (an ssh session or terminal gone, delivered once or twice) stops a restore as
/// SIGTERM does: it releases its lock and says how to resume, and the same command then
/// finishes. Under `nohup` (SIGHUP
/// ignored from the start) the run goes on to the end.
#[cfg(unix)]
#[test]
fn sighup_releases_the_lock_unless_the_run_was_started_with_nohup() {
    let r = FolderRestore::new(67);
    // Twice, as a closing terminal can deliver it: one event, not a second Ctrl-C that would
    // end the run at once with its lock left.
    let (code, err) = r.stop_while_writing(&["-HUP", "-HUP"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("interrupted") && err.contains("resume") && !err.contains("again while"),
        "{err}"
    );
    assert_eq!(r.locks(), 0, "the lock was left: {err}");

    // The rest under nohup, stopped by a hangup that it ignores.
    let mut child = Command::new("nohup")
        .arg(env!("CARGO_BIN_EXE_joplin-restore"))
        .envs(support::xdg_env())
        .args(r.args())
        .args(["--tpslimit", "40"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the rerun ended too early to test"
    );
    signal(&child, "-HUP");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(r.locks(), 0);
    support::assert_verified(&r.backup, &r.target);
}

/// Entries of the snapshot folder `dir` named `snapshot-…`: (complete, partial).
fn snapshots_in(dir: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut all: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    all.retain(|p| {
        p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("snapshot-")
    });
    all.into_iter()
        .partition(|p| !p.to_string_lossy().ends_with(".partial"))
}

/// Files copied so far into the (first) half-written snapshot under `dir`.
fn partial_files(dir: &Path) -> usize {
    let (_, partial) = snapshots_in(dir);
    partial
        .first()
        .and_then(|p| std::fs::read_dir(p.join("files")).ok())
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Wait (30 s at most, or until the run ends) until `ready` holds.
fn wait_until(child: &mut std::process::Child, ready: impl Fn() -> bool) {
    for _ in 0..600 {
        if ready() || child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `clear` stopped at each point leaves the target recoverable and no snapshot that pretends
/// to be whole: kill -9 mid-snapshot leaves a folder marked `.partial` that rollback refuses;
/// SIGTERM mid-snapshot removes its half-copy and changes nothing; SIGTERM mid-delete releases
/// the lock and names the rollback; the rerun finishes; the rollback, stopped by SIGTERM and run
/// again, brings everything back.
#[cfg(unix)]
#[test]
fn clear_stopped_mid_snapshot_or_mid_delete_leaves_the_target_recoverable() {
    let r = FolderRestore::new(67);
    let (target, backup) = (&r.target, &r.backup);
    jr_ok(&r.args());
    let snaps = r._tmp.path().join("snapshots");
    let filled = support::tree_hashes(target);
    let locks = || {
        std::fs::read_dir(target.join("locks"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let clear = |tps: &str| {
        support::command()
            .args(["clear", "--target", target.to_str().unwrap(), "--yes", "-q"])
            .args(["--snapshot-dir", snaps.to_str().unwrap(), "--tpslimit", tps])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };

    // kill -9 while the snapshot is being copied.
    let mut child = clear("10");
    wait_until(&mut child, || partial_files(&snaps) >= 3);
    child.kill().unwrap();
    child.wait().unwrap();
    let (complete, partial) = snapshots_in(&snaps);
    assert!(
        complete.is_empty(),
        "a killed snapshot looks complete: {complete:?}"
    );
    assert_eq!(partial.len(), 1, "{partial:?}");
    assert_eq!(
        support::tree_hashes(target),
        filled,
        "the target was changed"
    );
    let o = support::jr(&[
        "rollback",
        partial[0].to_str().unwrap(),
        "--target",
        target.to_str().unwrap(),
        "--yes",
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("incomplete snapshot"), "{}", text(&o));

    // SIGTERM while the snapshot is being copied.
    let mut child = clear("10");
    wait_until(&mut child, || {
        let (_, partial) = snapshots_in(&snaps);
        partial.len() == 2
    });
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, "-TERM");
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("interrupted while taking the snapshot"),
        "{err}"
    );
    assert!(
        err.contains(&*partial[0].to_string_lossy()) && err.contains("incomplete snapshot"),
        "the earlier half-written snapshot is not pointed out: {err}"
    );
    assert_eq!(
        snapshots_in(&snaps),
        (vec![], partial.clone()),
        "the interrupted snapshot was left behind"
    );
    assert_eq!(
        support::tree_hashes(target),
        filled,
        "the target was changed"
    );
    assert_eq!(locks(), 0);
    std::fs::remove_dir_all(&partial[0]).unwrap();

    // SIGTERM while deleting.
    let items = || support::count_items(target);
    let before = items();
    let mut child = clear("40");
    wait_until(&mut child, || items() + 5 <= before);
    signal(&child, "-TERM");
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let (complete, _) = snapshots_in(&snaps);
    assert_eq!(complete.len(), 1, "{err}");
    let snapshot = complete[0].to_str().unwrap();
    assert!(
        err.contains("interrupted") && err.contains(&format!("rollback {snapshot}")),
        "{err}"
    );
    assert!(items() > 0, "the clear finished before the signal: {err}");
    assert_eq!(locks(), 0, "the lock was left: {err}");
    let left = items();
    let rerun = support::jr(&[
        "--json",
        "clear",
        "--target",
        target.to_str().unwrap(),
        "--yes",
        "--no-snapshot",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&rerun.stdout).unwrap();
    assert_eq!(items(), 0);
    // The rerun names the snapshot of the whole target, which it did not take.
    assert!(
        text(&rerun).contains(&format!(
            "interrupted clear before this run took {snapshot}"
        )),
        "{}",
        text(&rerun)
    );
    assert_eq!(
        support::stage_names(&v),
        // --yes --no-snapshot: the lock first, then one listing under it.
        ["lock", "list", "snapshot", "delete"],
        "{v}"
    );
    let deleted = v["deleted"].as_u64().unwrap();
    assert!(deleted >= left as u64, "{v}");
    assert!(v["requests"].as_u64().unwrap() > deleted, "{v}");

    // SIGTERM while rolling back: the lock goes, the rerun finishes.
    let rollback = [
        "rollback",
        snapshot,
        "--target",
        target.to_str().unwrap(),
        "--yes",
    ];
    let mut child = support::spawn(&[&rollback[..], &["-q", "--tpslimit", "20"]].concat());
    wait_until(&mut child, || items() >= 5);
    signal(&child, "-TERM");
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("partly rolled back"), "{err}");
    assert_eq!(locks(), 0, "the lock was left: {err}");
    jr_ok(&rollback);
    support::assert_verified(backup, target);
}

/// A restore killed while it deletes what the backup lacks, then run again: the rerun keeps
/// and names the snapshot the first run took before it changed anything (a new one would hold
/// the half-pruned target), and rolling back from it brings back every deleted note.
#[cfg(unix)]
#[test]
fn a_resumed_restore_keeps_the_first_runs_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n).to_str().unwrap().to_string();
    let (target, snaps, journals) = (p("target"), p("snaps"), p("journals"));
    let backup = support::sample_jex();
    let backup = backup.to_str().unwrap();
    jr_ok(&[
        "restore",
        backup,
        "--target",
        &target,
        "-q",
        "--no-snapshot",
    ]);
    // 20 notes the backup lacks, copies of one of its notes under new ids: pruned last.
    let target_dir = Path::new(&target);
    let (note_id, note) = std::fs::read_dir(target_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .map(|p| {
            let id = p.file_stem().unwrap().to_string_lossy().into_owned();
            (id, std::fs::read_to_string(&p).unwrap())
        })
        .find(|(_, text)| text.ends_with("\ntype_: 1"))
        .expect("a note");
    let extras: Vec<(PathBuf, String)> = (0..20)
        .map(|i| {
            let id = format!("{:032x}", 0xe0e0_0000_u64 + i);
            (
                target_dir.join(format!("{id}.md")),
                note.replace(&note_id, &id),
            )
        })
        .collect();
    for (path, text) in &extras {
        std::fs::write(path, text).unwrap();
    }
    let items = support::count_items(target_dir);
    let args = [
        "restore",
        backup,
        "--target",
        &target,
        "--yes",
        "-q",
        "--snapshot-dir",
        &snaps,
        "--journal-dir",
        &journals,
    ];
    let mut child = support::command()
        .args(args)
        .args(["--tpslimit", "5"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(&mut child, || support::count_items(target_dir) + 5 <= items);
    child.kill().unwrap();
    child.wait().unwrap();
    let left = support::count_items(target_dir);
    assert!(left + 5 <= items, "the kill came before any delete");
    assert!(left + 20 > items, "the restore finished before the kill");
    let (first, _) = snapshots_in(Path::new(&snaps));
    assert_eq!(first.len(), 1, "{first:?}");

    let mut json = vec!["--json"];
    json.extend(args);
    let v: serde_json::Value = serde_json::from_str(&jr_ok(&json)).unwrap();
    assert_eq!(
        v["snapshot"].as_str(),
        first[0].to_str(),
        "the rerun must name the first run's snapshot: {v}"
    );
    assert_eq!(support::count_items(target_dir) + 20, items);
    let (all, _) = snapshots_in(Path::new(&snaps));
    assert_eq!(all, first, "no second snapshot of the half-pruned target");

    jr_ok(&[
        "rollback",
        first[0].to_str().unwrap(),
        "--target",
        &target,
        "--yes",
        "-q",
        "--exact",
        "--no-snapshot",
    ]);
    for (path, text) in &extras {
        assert_eq!(
            std::fs::read_to_string(path).ok().as_deref(),
            Some(text.as_str()),
            "{} not brought back",
            path.display()
        );
    }
}

/// A client that syncs an edit between an interrupted restore and its rerun: the rerun's copy
/// must be newer than that edit, or the client keeps it for good while every other client gets
/// the backup's (the rerun reused the first run's stamp). Judged by the real Joplin CLI.
#[cfg(unix)]
#[test]
fn a_client_edit_synced_between_the_kill_and_the_rerun_is_replaced() {
    use support::joplin::{assert_manifest_eq, Profile};
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    let journals = tmp.path().join("journals");
    let backup = support::sample_jex();
    let t = target.to_str().unwrap();
    jr_ok(&["restore", backup.to_str().unwrap(), "--target", t, "-q"]);
    let client = Profile::new(tmp.path().join("client"));
    client.use_folder(&target);
    client.sync();
    let args = [
        "restore",
        backup.to_str().unwrap(),
        "--target",
        t,
        "--yes",
        "-q",
        "--no-snapshot",
        "--rewrite-unchanged",
        "--journal-dir",
        journals.to_str().unwrap(),
    ];
    killed_mid_run(&args, &["--tpslimit", "4"], &journals);
    let done = journal_done(&journals);
    assert!((3..27).contains(&done.len()), "kill not mid-run: {done:?}");
    // A note the killed run had not rewritten yet, edited and synced by the client.
    let manifest = support::sample_manifest();
    let note = manifest["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_string())
        .find(|id| !done.contains(&format!("{id}.md")))
        .expect("a note not rewritten yet");
    std::thread::sleep(Duration::from_millis(50));
    client.run(&[
        "set",
        &note,
        "body",
        "edited between the kill and the rerun",
    ]);
    client.sync();
    jr_ok(&args);
    client.sync();
    assert_manifest_eq(
        &client.manifest(),
        &manifest,
        "client after the resumed restore",
    );
}

/// What a client writes between the kill and the rerun is in no snapshot: the rerun keeps
/// the first run's snapshot (the target before the restore) and takes a second one of the
/// target as it finds it, before replacing the client's edit; a note the client created, which
/// the backup lacks, is kept rather than deleted.
#[test]
fn work_synced_between_the_kill_and_the_rerun_is_kept_in_a_snapshot_or_on_the_target() {
    use support::joplin::Profile;
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    let journals = tmp.path().join("journals");
    let snaps = tmp.path().join("snapshots");
    let backup = support::sample_jex();
    let t = target.to_str().unwrap();
    jr_ok(&["restore", backup.to_str().unwrap(), "--target", t, "-q"]);
    let client = Profile::new(tmp.path().join("client"));
    client.use_folder(&target);
    client.sync();
    let args = [
        "restore",
        backup.to_str().unwrap(),
        "--target",
        t,
        "--yes",
        "-q",
        "--rewrite-unchanged",
        "--snapshot-dir",
        snaps.to_str().unwrap(),
        "--journal-dir",
        journals.to_str().unwrap(),
    ];
    killed_mid_run(&args, &["--tpslimit", "4"], &journals);
    let done = journal_done(&journals);
    assert!((3..27).contains(&done.len()), "kill not mid-run: {done:?}");
    let (first, _) = snapshots_in(&snaps);
    assert_eq!(first.len(), 1, "the first run's snapshot: {first:?}");
    let note = support::sample_manifest()["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_string())
        .find(|id| !done.contains(&format!("{id}.md")))
        .expect("a note not rewritten yet");
    std::thread::sleep(Duration::from_millis(50));
    client.run(&[
        "set",
        &note,
        "body",
        "edited between the kill and the rerun",
    ]);
    client.run(&["mknote", "Precious"]);
    client.sync();

    let out = support::jr(&args);
    let said = support::text(&out);
    assert!(said.contains("second snapshot"), "{said}");
    let (after, _) = snapshots_in(&snaps);
    assert_eq!(after.len(), 2, "{after:?}\n{said}");
    let second = after.iter().find(|p| !first.contains(p)).unwrap();
    let holds = |needle: &str| {
        support::tree_hashes(second).iter().any(|(rel, _)| {
            std::fs::read_to_string(second.join(rel)).is_ok_and(|t| t.contains(needle))
        })
    };
    assert!(holds("edited between the kill and the rerun"), "{said}");
    assert!(
        said.contains("written to the target after the interrupted run"),
        "{said}"
    );
    client.sync();
    let titles = client.query("SELECT title FROM notes WHERE title = 'Precious'");
    assert_eq!(titles.len(), 1, "the client's new note stays: {said}");
    let body = client.query(&format!("SELECT body FROM notes WHERE id = '{note}'"));
    assert_ne!(
        body[0][0], "edited between the kill and the rerun",
        "the backup's copy wins"
    );
}

/// A run stopped with `--no-snapshot` and rerun without it: the rerun's snapshot can only hold
/// the half-written target, and it says so rather than pass it for the target before the
/// restore.
#[cfg(unix)]
#[test]
fn a_rerun_after_a_no_snapshot_run_says_its_snapshot_is_half_written() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    let journals = tmp.path().join("journals");
    let t = target.to_str().unwrap();
    jr_ok(&[
        "restore",
        support::sample_jex().to_str().unwrap(),
        "--target",
        t,
        "-q",
    ]);
    let other = generated(tmp.path(), 7, 200);
    let mut args = vec![
        "restore",
        other.to_str().unwrap(),
        "--target",
        t,
        "--yes",
        "-q",
        "--journal-dir",
        journals.to_str().unwrap(),
    ];
    killed_mid_run(&args, &["--no-snapshot", "--tpslimit", "10"], &journals);
    let snaps = tmp.path().join("snaps");
    args.extend(["--snapshot-dir", snaps.to_str().unwrap()]);
    let o = support::jr(&args);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("the interrupted run took no snapshot")
            && text(&o).contains("half-written"),
        "{}",
        text(&o)
    );
    support::assert_verified(&other, &target);
}

/// A file the interrupted run finished can be changed before the rerun (a client syncs an
/// edit, a rollback runs) without changing its size: the rerun sees files newer than the
/// journal, compares everything again instead of trusting it, and the backup's copy wins.
/// The rerun may also spell the target differently (a trailing slash): it is the same
/// restore, whose journal it finishes.
#[test]
fn a_same_size_edit_after_the_kill_does_not_pass_for_done() {
    let r = FolderRestore::new(61);
    let (target, journals, backup) = (&r.target, &r.journals, &r.backup);
    let mut child = r.start_slow();
    let is_item = |p: &str| p.ends_with(".md");
    wait_for_done(journals, &mut child, 3, is_item);
    child.kill().unwrap();
    child.wait().unwrap();
    let done = journal_done(journals);
    let item = done
        .iter()
        .find(|p| is_item(p))
        .expect("an item file done")
        .clone();
    let path = target.join(&item);
    let text0 = std::fs::read_to_string(&path).unwrap();
    // One letter of the title changed: same size, other content.
    let first = text0.chars().next().unwrap();
    let swapped = if first == 'X' { 'Y' } else { 'X' };
    let edited = format!("{swapped}{}", &text0[first.len_utf8()..]);
    assert_eq!(edited.len(), text0.len());
    std::fs::write(&path, &edited).unwrap();
    let journal = std::fs::read_dir(journals)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let later = journal.metadata().unwrap().modified().unwrap() + Duration::from_secs(10);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(later)
        .unwrap();

    let spelled = format!("{}/", target.display());
    let o = support::jr(&[
        "restore",
        backup.to_str().unwrap(),
        "--target",
        &spelled,
        "--yes",
        "--journal-dir",
        journals.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "resumed run: {}", text(&o));
    assert!(
        text(&o).contains("every file is compared again"),
        "{}",
        text(&o)
    );
    assert_ne!(std::fs::read_to_string(&path).unwrap(), edited);
    support::assert_verified(backup, target);
    assert!(
        std::fs::read_dir(journals).unwrap().next().is_none(),
        "the rerun did not finish the first run's journal"
    );
}

/// A folder target holding the sample, with a journal folder of its own.
struct SampleTarget {
    _tmp: tempfile::TempDir,
    target: PathBuf,
    journals: PathBuf,
    jex: PathBuf,
}

impl SampleTarget {
    fn new() -> SampleTarget {
        let tmp = tempfile::tempdir().unwrap();
        let s = SampleTarget {
            target: tmp.path().join("target"),
            journals: tmp.path().join("journals"),
            jex: support::sample_jex(),
            _tmp: tmp,
        };
        jr_ok(&["restore", s.jex(), "--target", s.target(), "-q"]);
        s
    }
    fn jex(&self) -> &str {
        self.jex.to_str().unwrap()
    }
    fn target(&self) -> &str {
        self.target.to_str().unwrap()
    }
}

/// A partial restore killed after writing a note but before its note-tag links: the rerun
/// resumes and writes the links. The note on the target is this restore's own work, not a copy
/// the target keeps with its own tags (that rule would leave the links out for good).
#[test]
fn a_resumed_partial_restore_still_writes_the_links_of_notes_it_wrote() {
    const NOTE: &str = "0006b457342a4b078515990fa709441b.md";
    const LINKS: [&str; 2] = [
        "82f3835111a54f9bb50a2fcaca5f3158.md",
        "b21200b834ef46f7bb6391b88897ebfd.md",
    ];
    let s = SampleTarget::new();
    let (j, t) = (s.jex(), s.target());
    let (target, journals, jex) = (&s.target, &s.journals, &s.jex);
    for f in std::iter::once(NOTE).chain(LINKS) {
        std::fs::remove_file(target.join(f)).unwrap();
    }
    let args = [
        "restore",
        j,
        "--target",
        t,
        "--only",
        "note:Attachments",
        "--yes",
        "--journal-dir",
        journals.to_str().unwrap(),
    ];
    let mut slow = args.to_vec();
    // Half a second between requests: the kill lands between the note and its links (every
    // request before them, ~30 reads of the target's copies, takes ~15 s).
    slow.extend(["--tpslimit", "2"]);
    let mut child = support::spawn(&slow);
    wait_for_done(journals, &mut child, 1, |p| p == NOTE);
    signal(&child, "-KILL");
    let _ = child.wait();
    assert!(target.join(NOTE).exists(), "the note was written first");
    assert!(
        LINKS.iter().any(|l| !target.join(l).exists()),
        "killed before its links"
    );

    let o = support::jr(&args);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("resuming an interrupted restore"), "{out}");
    assert!(!out.contains("left out"), "{out}");
    for l in LINKS {
        assert!(
            target.join(l).exists(),
            "{l} missing after the rerun:\n{out}"
        );
    }
    support::assert_verified(jex, target);
}

/// A file the backup lacks that a client writes while the restore runs (clients from 3.2 on
/// sync through the lock) is kept at the end instead of deleted with the rest, and the check
/// shows it as extra (exit 3): the client's write is not lost.
#[test]
fn a_file_a_client_writes_during_the_restore_is_not_deleted_last() {
    const EXTRA: &str = "0123456789abcdef0123456789abcdef.md";
    let s = SampleTarget::new();
    let (j, t) = (s.jex(), s.target());
    let (target, journals) = (&s.target, &s.journals);
    let note = |body: &str| {
        format!(
            "Written after the backup\n\n{body}\n\nid: 0123456789abcdef0123456789abcdef\n\
             parent_id: c92807ad73ea40938d12cd5a105b5efe\ncreated_time: 2026-12-01T10:00:00.000Z\n\
             updated_time: 2026-12-01T10:00:00.000Z\ntype_: 1"
        )
    };
    std::fs::write(target.join(EXTRA), note("first")).unwrap();
    let mut child = support::spawn(&[
        "restore",
        j,
        "--target",
        t,
        "--yes",
        "--rewrite-unchanged",
        "--tpslimit",
        "5",
        "--journal-dir",
        journals.to_str().unwrap(),
    ]);
    wait_for_done(journals, &mut child, 1, |_| true);
    assert!(child.try_wait().unwrap().is_none(), "the run is writing");
    std::thread::sleep(Duration::from_millis(50));
    std::fs::write(target.join(EXTRA), note("edited while the restore ran")).unwrap();
    let o = child.wait_with_output().unwrap();
    let out = text(&o);
    assert!(out.contains("kept 1 file(s) the backup lacks"), "{out}");
    assert_eq!(
        o.status.code(),
        Some(3),
        "the check shows it as extra: {out}"
    );
    assert!(std::fs::read_to_string(target.join(EXTRA))
        .unwrap()
        .contains("edited while the restore ran"));
}

/// The same for a mirror migrate onto a destination clients sync with: a note a client writes
/// there while the mirror runs is kept, not deleted last with what the source lacks (its
/// client would then delete it too).
#[test]
fn a_file_a_client_writes_during_a_mirror_migrate_is_not_deleted_last() {
    const EXTRA: &str = "0123456789abcdef0123456789abcdef.md";
    let s = SampleTarget::new();
    let dst = s._tmp.path().join("dst");
    let d = dst.to_str().unwrap();
    jr_ok(&["migrate", "--from", s.target(), "--to", d, "-q"]);
    let note = std::fs::read_to_string(s.target.join("2ebc0432f27d42fdb982a925c8734636.md"))
        .unwrap()
        .replace(
            "2ebc0432f27d42fdb982a925c8734636",
            "0123456789abcdef0123456789abcdef",
        );
    std::fs::write(dst.join(EXTRA), &note).unwrap();
    let journals = s.journals.to_str().unwrap();
    let mut child = support::spawn(&[
        "migrate",
        "--from",
        s.target(),
        "--to",
        d,
        "--mode",
        "mirror",
        "--yes",
        "--rewrite-unchanged",
        "--tpslimit",
        "5",
        "--journal-dir",
        journals,
        "--snapshot-dir",
        s._tmp.path().join("snaps").to_str().unwrap(),
    ]);
    wait_for_done(&s.journals, &mut child, 1, |_| true);
    assert!(child.try_wait().unwrap().is_none(), "the run is writing");
    std::thread::sleep(Duration::from_millis(50));
    std::fs::write(dst.join(EXTRA), format!("{note}\n")).unwrap();
    let o = child.wait_with_output().unwrap();
    let out = text(&o);
    assert!(out.contains("kept 1 file(s) the source lacks"), "{out}");
    assert_eq!(
        o.status.code(),
        Some(3),
        "the check shows it as extra: {out}"
    );
    assert!(dst.join(EXTRA).exists(), "{out}");
}

/// Each item is stamped as it is written, not when the run began: behind `--tpslimit` the lock,
/// the second listing and the wait for a slot take seconds, and a copy stamped before a
/// client's edit of those seconds loses to it on that client for good. The stamp in each
/// written file is within a second of the file's own time.
#[test]
fn items_are_stamped_as_they_are_written() {
    let s = SampleTarget::new();
    jr_ok(&[
        "restore",
        s.jex(),
        "--target",
        s.target(),
        "--yes",
        "--rewrite-unchanged",
        "--tpslimit",
        "4",
        "--journal-dir",
        s.journals.to_str().unwrap(),
    ]);
    let mut checked = 0;
    for e in std::fs::read_dir(&s.target).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "md") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        let stamp = text
            .lines()
            .find_map(|l| l.strip_prefix("updated_time: "))
            .and_then(joplin_restore::item::parse_time)
            .unwrap();
        let written = std::fs::metadata(&p)
            .unwrap()
            .modified()
            .unwrap()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        assert!(
            (written - stamp).abs() < 1000,
            "{}: stamped {stamp}, written {written}",
            p.display()
        );
        checked += 1;
    }
    assert_eq!(checked, 27);
}

/// A client that syncs while a restore is deleting (here: after one stopped by Ctrl-C midway)
/// never finds a notebook gone while its notes are still there, which it would turn into
/// conflict copies that stay for good: notes, resources and links go first, notebooks last.
#[cfg(unix)]
#[test]
fn a_client_syncing_mid_deletion_keeps_no_conflict_copies() {
    use support::joplin::Profile;
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    let t = target.to_str().unwrap();
    let sample = support::sample_jex();
    jr_ok(&["restore", sample.to_str().unwrap(), "--target", t, "-q"]);
    let p = Profile::new(tmp.path().join("client"));
    p.use_folder(&target);
    // The new backup replaces nearly everything: past the fail-safe's threshold.
    p.configure(serde_json::json!({"sync.wipeOutFailSafe": false}));
    p.sync();
    let other = support::repo().join("tests/fixtures/e2ee-source.jex");
    let snaps = tmp.path().join("snaps");
    let args = [
        "restore",
        other.to_str().unwrap(),
        "--target",
        t,
        "--yes",
        "--snapshot-dir",
        snaps.to_str().unwrap(),
    ];
    // Slow enough to stop midway through the deletions (about 30 files at 2 a second).
    let mut child = support::command()
        .args(args)
        .args(["--tpslimit", "2"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut seen = String::new();
    while !seen.contains("deleting") {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(line) => seen.push_str(&(line + "\n")),
            Err(_) => assert!(
                std::time::Instant::now() < deadline && child.try_wait().unwrap().is_none(),
                "the restore never reached its deletions:\n{seen}"
            ),
        }
    }
    std::thread::sleep(Duration::from_secs(4));
    signal(&child, "-INT");
    let status = child.wait().unwrap();
    assert!(!status.success(), "stopped midway:\n{seen}");
    p.sync();
    jr_ok(&args);
    p.sync();
    let conflicts = p.query("SELECT title FROM notes WHERE is_conflict = 1");
    assert!(conflicts.is_empty(), "conflict copies left: {conflicts:?}");
    assert_eq!(
        p.query("SELECT count(*) FROM notes")[0][0],
        "1",
        "only the new backup's note"
    );
}

/// A rollback stopped midway and run again names, as the state before the rollback, the
/// snapshot the stopped run took before it changed anything: the rerun's own holds the target
/// half rolled back (undoing the rollback from it gave a mix).
#[cfg(unix)]
#[test]
fn a_rerun_rollback_names_the_first_runs_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    let t = target.to_str().unwrap();
    let snaps = tmp.path().join("snaps");
    let sample = support::sample_jex();
    jr_ok(&["restore", sample.to_str().unwrap(), "--target", t, "-q"]);
    let other = generated(tmp.path(), 7, 300);
    let out = jr_ok(&[
        "restore",
        other.to_str().unwrap(),
        "--target",
        t,
        "--yes",
        "-q",
        "--snapshot-dir",
        snaps.to_str().unwrap(),
    ]);
    let (taken, _) = snapshots_in(&snaps);
    assert_eq!(taken.len(), 1, "{out}");
    let sample_snapshot = taken[0].to_str().unwrap().to_string();

    let rollback_snaps = tmp.path().join("rollback-snaps");
    let rollback = [
        "rollback",
        &sample_snapshot,
        "--target",
        t,
        "--yes",
        "-q",
        "--snapshot-dir",
        rollback_snaps.to_str().unwrap(),
    ];
    let mut child = support::spawn(&[&rollback[..], &["--tpslimit", "20"]].concat());
    // Stopped once its snapshot is whole and the writing began.
    wait_until(&mut child, || !snapshots_in(&rollback_snaps).0.is_empty());
    std::thread::sleep(Duration::from_millis(1500));
    signal(&child, "-TERM");
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let (first, _) = snapshots_in(&rollback_snaps);
    assert_eq!(first.len(), 1, "{err}");
    let first = first[0].display().to_string();
    assert!(err.contains(&first), "{err}");

    let out = jr_ok(&rollback);
    assert_eq!(
        snapshots_in(&rollback_snaps).0.len(),
        2,
        "the rerun took its own"
    );
    assert!(
        out.contains(&format!(
            "Snapshot of the state before the rollback: {first}\n"
        )),
        "{out}"
    );
    support::assert_verified(&sample, &target);
}
