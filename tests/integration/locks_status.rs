//! Lock discipline and `status`/`unlock` on a filesystem target.

use crate::support;

use std::path::Path;
use std::time::{Duration, SystemTime};

use support::{jr, jr_ok, sample_jex, text, tree_hashes};

fn restored(dir: &Path) -> std::path::PathBuf {
    let t = dir.join("target");
    jr_ok(&[
        "restore",
        sample_jex().to_str().unwrap(),
        "--target",
        t.to_str().unwrap(),
        "-q",
    ]);
    t
}

fn put_lock(target: &Path, name: &str, age: Duration) {
    let p = target.join("locks").join(name);
    std::fs::write(&p, r#"{"type":1,"clientType":1,"clientId":"other"}"#).unwrap();
    let f = std::fs::File::options().write(true).open(&p).unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
}

#[test]
fn an_active_lock_of_another_client_stops_the_restore_until_forced() {
    let dir = tempfile::tempdir().unwrap();
    let t = restored(dir.path());
    std::fs::remove_file(t.join("7241f91bc84849938247fa679a076b7b.md")).unwrap();
    put_lock(&t, "1_1_deadbeef.json", Duration::from_secs(10));
    let before = tree_hashes(&t);
    let jex = sample_jex();
    let journals = dir.path().join("journals");
    let args = [
        "restore",
        jex.to_str().unwrap(),
        "--target",
        t.to_str().unwrap(),
        "--yes",
        "--journal-dir",
        journals.to_str().unwrap(),
    ];
    let o = jr(&args);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(
        text(&o).contains("active sync lock (desktop client deadbeef"),
        "{}",
        text(&o)
    );
    assert_eq!(before, tree_hashes(&t));
    // Refused before it wrote anything: no journal, so the next run is no resume.
    let left = std::fs::read_dir(&journals).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "a journal was left by a run that never started");
    let o = jr(&[&args[..], &["--force"]].concat());
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("resuming"), "{}", text(&o));
    assert!(t.join("7241f91bc84849938247fa679a076b7b.md").exists());
}

/// A clear, asked nothing and taking no snapshot, takes its lock before listing: another
/// client's active lock stops it with nothing deleted and no lock of ours left; both ways of
/// clearing refuse alike.
#[test]
fn an_active_lock_of_another_client_stops_a_clear_in_either_order() {
    let dir = tempfile::tempdir().unwrap();
    let t = restored(dir.path());
    put_lock(&t, "1_1_deadbeef.json", Duration::from_secs(10));
    let before = tree_hashes(&t);
    let target = t.to_str().unwrap();
    let snaps = dir.path().join("snaps");
    for extra in [
        &["--no-snapshot"][..],
        &["--snapshot-dir", snaps.to_str().unwrap()][..],
    ] {
        let o = jr(&[&["clear", "--target", target, "--yes"][..], extra].concat());
        assert_eq!(o.status.code(), Some(4), "{extra:?}: {}", text(&o));
        assert!(
            text(&o).contains("active sync lock (desktop client deadbeef"),
            "{extra:?}: {}",
            text(&o)
        );
        assert_eq!(before, tree_hashes(&t), "{extra:?}");
    }
}

#[test]
fn a_stale_lock_does_not_block_and_unlock_removes_only_stale_and_our_locks() {
    let dir = tempfile::tempdir().unwrap();
    let t = restored(dir.path());
    put_lock(&t, "1_2_stale0.json", Duration::from_secs(600));
    jr_ok(&[
        "restore",
        sample_jex().to_str().unwrap(),
        "--target",
        t.to_str().unwrap(),
        "--yes",
    ]);
    put_lock(&t, "1_1_active0.json", Duration::from_secs(5));
    // A killed run of ours on this machine, and one whose lock names no process (another
    // machine's, or an older version's): both active.
    std::fs::write(
        t.join("locks/2_3_ours0.json"),
        support::our_lock_body("ours0", support::ended_pid()),
    )
    .unwrap();
    std::fs::write(
        t.join("locks/2_3_elsewhere0.json"),
        r#"{"type":2,"clientType":3,"clientId":"elsewhere0","app":"joplin-restore"}"#,
    )
    .unwrap();
    let status = jr_ok(&["status", "--target", t.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(v["locks"].as_array().unwrap().len(), 4, "{status}");
    let out = jr_ok(&["unlock", "--target", t.to_str().unwrap()]);
    assert!(out.contains("2 lock(s) removed, 2 active"), "{out}");
    let left = || {
        let mut names: Vec<String> = std::fs::read_dir(t.join("locks"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    };
    assert_eq!(left(), ["1_1_active0.json", "2_3_elsewhere0.json"], "{out}");
    let out = jr_ok(&[
        "--json",
        "unlock",
        "--target",
        t.to_str().unwrap(),
        "--force",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["removed"].as_u64(), v["kept"].as_u64()),
        (Some(2), Some(0)),
        "{v}"
    );
    assert!(left().is_empty(), "{out}");
}

/// `unlock` keeps the lock of a run of ours that is still writing (it names its process):
/// removing it would let a second run write over the first. `--force` removes it.
#[test]
fn unlock_keeps_the_lock_of_a_run_still_writing_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("target");
    let jex = sample_jex();
    let mut child = support::spawn(&[
        "restore",
        jex.to_str().unwrap(),
        "--target",
        t.to_str().unwrap(),
        "--yes",
        "--no-snapshot",
        "--bwlimit",
        "20k",
        "-q",
    ]);
    let lock = || {
        std::fs::read_dir(t.join("locks")).ok().and_then(|d| {
            d.flatten()
                .map(|e| e.path())
                .find(|p| p.to_string_lossy().ends_with(".json"))
        })
    };
    for _ in 0..200 {
        if lock().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let held = lock().expect("the restore never took its lock");
    let out = jr_ok(&["unlock", "--target", t.to_str().unwrap()]);
    let still = lock();
    let forced = jr_ok(&["unlock", "--target", t.to_str().unwrap(), "--force"]);
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        out.contains("0 lock(s) removed, 1 active") && out.contains("still going"),
        "{out}"
    );
    assert_eq!(still, Some(held), "{out}");
    assert!(forced.contains("1 lock(s) removed"), "{forced}");
}

#[test]
fn status_reports_version_encryption_counts_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let t = restored(dir.path());
    let v: serde_json::Value = serde_json::from_str(&jr_ok(&[
        "status",
        "--target",
        t.to_str().unwrap(),
        "--json",
    ]))
    .unwrap();
    assert_eq!(v["sync_version"], 3);
    assert_eq!(v["e2ee"], false);
    assert_eq!(v["items"]["note"], 10);
    assert_eq!(v["items"]["notebook"], 7);
    assert_eq!(v["items"]["resource"], 3);
    assert_eq!(v["items"]["tag"], 3);
    assert_eq!(v["items"]["note-tag link"], 4);
    assert_eq!(v["blobs"], 3);
    assert_eq!(v["total_bytes"], 219114);
    let text = jr_ok(&["status", "--target", t.to_str().unwrap()]);
    assert!(text.contains("End-to-end encryption: off"), "{text}");
}

#[test]
fn our_lock_is_released_after_a_restore() {
    let dir = tempfile::tempdir().unwrap();
    let t = restored(dir.path());
    assert_eq!(std::fs::read_dir(t.join("locks")).unwrap().count(), 0);
}

/// A restore that replaces files is refused for an active lock before its snapshot: no copy
/// of the whole target is made (and left behind) for a run that cannot go on.
#[test]
fn an_active_lock_stops_a_destructive_restore_before_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let t = restored(dir.path());
    let note = t.join("7241f91bc84849938247fa679a076b7b.md");
    let text0 = std::fs::read_to_string(&note).unwrap();
    std::fs::write(&note, format!("Edited elsewhere\n{text0}")).unwrap();
    put_lock(&t, "1_1_deadbeef.json", Duration::from_secs(10));
    let snaps = dir.path().join("snaps");
    let jex = sample_jex();
    let args = [
        "restore",
        jex.to_str().unwrap(),
        "--target",
        t.to_str().unwrap(),
        "--yes",
        "--snapshot-dir",
        snaps.to_str().unwrap(),
    ];
    let o = jr(&args);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("active sync lock (desktop client deadbeef"),
        "{}",
        text(&o)
    );
    let made = std::fs::read_dir(&snaps).map(|d| d.count()).unwrap_or(0);
    assert_eq!(made, 0, "a snapshot was made: {}", text(&o));
    let o = jr(&[&args[..], &["--force"]].concat());
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("Snapshot"), "{}", text(&o));
}

/// A lock a joplin-restore run left that may still be writing (it names no process on this
/// machine: another machine's, or an older version's) is called ours, with `unlock` as the way
/// out, both where a restore checks before its snapshot and where it takes the lock; the
/// refusal exits 4. One whose run on this machine is gone (killed) is removed, said, and the
/// run goes on (a `clear` or `rollback` rerun after a kill -9 was refused for 3 minutes).
#[test]
fn a_lock_of_another_joplin_restore_run_is_named_as_ours() {
    let dir = tempfile::tempdir().unwrap();
    let t = restored(dir.path());
    std::fs::write(
        t.join("locks/2_3_elsewhere0.json"),
        r#"{"type":2,"clientType":3,"clientId":"elsewhere0","app":"joplin-restore"}"#,
    )
    .unwrap();
    let jex = sample_jex();
    let args = [
        "restore",
        jex.to_str().unwrap(),
        "--target",
        t.to_str().unwrap(),
        "--yes",
        "--no-snapshot",
    ];
    let note = t.join("7241f91bc84849938247fa679a076b7b.md");
    let text0 = std::fs::read_to_string(&note).unwrap();
    // Only an upload (the lock is met when taken), then a replacement (met before the snapshot).
    let prepare: [&dyn Fn(); 2] = [&|| std::fs::remove_file(&note).unwrap(), &|| {
        std::fs::write(&note, format!("Edited elsewhere\n{text0}")).unwrap()
    }];
    for change in prepare {
        change();
        let o = jr(&args);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(4), "{out}");
        assert!(
            out.contains("another joplin-restore run holds an active exclusive lock")
                && out.contains("joplin-restore unlock"),
            "{out}"
        );
        assert!(!out.contains("Joplin client"), "{out}");
    }
    jr_ok(&["unlock", "--target", t.to_str().unwrap(), "--force"]);

    // A killed run of ours on this machine: `status` says its run is gone, though the lock is
    // fresh, and the next run (a restore, or a clear) removes it and goes on.
    for (i, command) in [
        &args[..],
        &[
            "clear",
            "--target",
            t.to_str().unwrap(),
            "--yes",
            "--no-snapshot",
        ][..],
    ]
    .into_iter()
    .enumerate()
    {
        std::fs::write(
            t.join(format!("locks/2_3_killed{i}.json")),
            support::our_lock_body(&format!("killed{i}"), support::ended_pid()),
        )
        .unwrap();
        let status = jr_ok(&["status", "--target", t.to_str().unwrap()]);
        assert!(
            status.contains("(joplin-restore, its run is gone) — `unlock` removes it"),
            "{status}"
        );
        let o = jr(command);
        let out = text(&o);
        assert!(o.status.success(), "{out}");
        assert!(
            out.contains(&format!("removed the lock locks/2_3_killed{i}.json"))
                && out.contains("ended without releasing it"),
            "{out}"
        );
        if i == 0 {
            let back = std::fs::read_to_string(&note).unwrap();
            assert!(back.starts_with("urgent\n\nid: 7241f91b"), "{back}");
        }
    }
    assert!(!note.exists(), "the clear went through");
}

/// The id of the note a client syncs while a run is under way.
const NEW_NOTE: &str = "0123456789abcdef0123456789abcdef";

/// A client syncs a new note into `target`: the sample's note 2ebc… (as on `from`) under the
/// id [`NEW_NOTE`]. Its path.
fn sync_new_note(from: &Path, target: &Path) -> std::path::PathBuf {
    let note = std::fs::read_to_string(from.join("2ebc0432f27d42fdb982a925c8734636.md")).unwrap();
    let path = target.join(format!("{NEW_NOTE}.md"));
    std::fs::write(
        &path,
        note.replace("2ebc0432f27d42fdb982a925c8734636", NEW_NOTE),
    )
    .unwrap();
    path
}

/// How many snapshots in `snaps` hold the note [`sync_new_note`] wrote.
fn snapshots_with_new_note(snaps: &Path) -> usize {
    std::fs::read_dir(snaps)
        .unwrap()
        .flatten()
        .filter(|e| e.path().join(format!("files/{NEW_NOTE}.md")).is_file())
        .count()
}

/// Start a run that snapshots into `snaps` and return once its snapshot is under way (a
/// `.partial` folder there), within 10 s.
fn start_and_wait_for_snapshot(args: &[&str], snaps: &Path) -> std::process::Child {
    let child = support::spawn(args);
    let snapshotting = || {
        std::fs::read_dir(snaps).is_ok_and(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        })
    };
    for _ in 0..200 {
        if snapshotting() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(snapshotting(), "{args:?} never started its snapshot");
    child
}

/// Another writer between a restore's listing and its lock (a client syncing a new note, or a
/// second joplin-restore run, while the first takes its snapshot): the first run's plan is
/// stale and its snapshot lacks the new note, which the restore would then delete. It is
/// refused (exit 4) with nothing written; its rerun snapshots the note and restores. A writer
/// that deletes files the snapshot is copying stops the snapshot with a message saying so.
#[test]
fn a_restore_whose_target_changed_before_it_took_the_lock_writes_nothing() {
    use joplin_restore::generate::{write_jex, GenSpec};
    let dir = tempfile::tempdir().unwrap();
    let t = restored(dir.path());
    let target = t.to_str().unwrap();
    let gen = |seed: u64| {
        let p = dir.path().join(format!("gen-{seed}.jex"));
        let spec = GenSpec {
            notes: 30,
            notebooks: 3,
            tags: 2,
            attachments: 2,
            attachment_bytes: 1000,
            seed,
        };
        write_jex(&spec, &p).unwrap();
        p
    };
    let (first, second) = (gen(1), gen(2));
    let snaps = dir.path().join("snaps");
    let journals = dir.path().join("journals");
    let first_args = [
        "restore",
        first.to_str().unwrap(),
        "--target",
        target,
        "--yes",
        "--snapshot-dir",
        snaps.to_str().unwrap(),
        "--journal-dir",
        journals.to_str().unwrap(),
    ];
    // Slow: its snapshot of the sample's 31 files takes seconds at 4 requests a second; `meddle`
    // runs as soon as it started.
    let run_first_while = |meddle: &dyn Fn()| {
        let mut args = first_args.to_vec();
        args.extend(["--tpslimit", "4"]);
        let child = start_and_wait_for_snapshot(&args, &snaps);
        meddle();
        child.wait_with_output().unwrap()
    };

    // A client syncs a new note meanwhile.
    let before = tree_hashes(&t);
    let new_note = t.join(format!("{NEW_NOTE}.md"));
    let o = run_first_while(&|| {
        sync_new_note(&t, &t);
    });
    let out = text(&o);
    assert_eq!(o.status.code(), Some(4), "{out}");
    assert!(
        out.contains("changed after this run read it") && out.contains("nothing was written"),
        "{out}"
    );
    assert!(new_note.exists(), "{out}");
    let files = |mut h: Vec<(String, String)>| {
        h.retain(|(p, _)| !p.starts_with("locks/") && !p.starts_with(NEW_NOTE));
        h
    };
    assert_eq!(files(tree_hashes(&t)), files(before), "{out}");
    // Nothing to resume: the rerun reads the target afresh, its snapshot holds the new note.
    let out = jr_ok(&first_args);
    jr_ok(&["verify", first.to_str().unwrap(), "--target", target]);
    assert_eq!(
        snapshots_with_new_note(&snaps),
        1,
        "the new note is in no snapshot: {out}"
    );

    // A second restore deletes files while the first copies them.
    jr_ok(&[
        "restore",
        sample_jex().to_str().unwrap(),
        "--target",
        target,
        "--yes",
        "-q",
    ]);
    let o = run_first_while(&|| {
        jr_ok(&[
            "restore",
            second.to_str().unwrap(),
            "--target",
            target,
            "--yes",
            "-q",
            "--no-snapshot",
        ]);
    });
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains("was deleted from the target while the snapshot was taken")
            && !out.contains("disk full"),
        "{out}"
    );
    jr_ok(&["verify", second.to_str().unwrap(), "--target", target]);
}

/// `rollback` too lists the target again under its lock: a note a client synced while the
/// rollback took its own snapshot stops it with nothing written.
#[test]
fn a_rollback_whose_target_changed_before_it_took_the_lock_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let t = restored(dir.path());
    let target = t.to_str().unwrap();
    let snaps = dir.path().join("snaps");
    let s = snaps.to_str().unwrap();
    // The whole sample in a snapshot (taken by a clear), then the sample restored again.
    let clear_snaps = dir.path().join("clear-snaps");
    let o = jr_ok(&[
        "clear",
        "--target",
        target,
        "--yes",
        "--snapshot-dir",
        clear_snaps.to_str().unwrap(),
    ]);
    let full = o
        .lines()
        .find_map(|l| l.strip_prefix("Snapshot of the target: "))
        .unwrap()
        .trim()
        .to_string();
    // With one note edited, the rollback replaces it: destructive, so it snapshots first.
    jr_ok(&[
        "restore",
        sample_jex().to_str().unwrap(),
        "--target",
        target,
        "-q",
    ]);
    let note = std::fs::read_to_string(t.join("2ebc0432f27d42fdb982a925c8734636.md")).unwrap();
    std::fs::write(
        t.join("2ebc0432f27d42fdb982a925c8734636.md"),
        note.replacen("Overview", "Edited", 1),
    )
    .unwrap();
    let child = start_and_wait_for_snapshot(
        &[
            "rollback",
            &full,
            "--target",
            target,
            "--yes",
            "--tpslimit",
            "4",
            "--snapshot-dir",
            s,
        ],
        &snaps,
    );
    sync_new_note(&t, &t);
    let o = child.wait_with_output().unwrap();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(4), "{out}");
    assert!(out.contains("changed after this run read it"), "{out}");
    let edited = std::fs::read_to_string(t.join("2ebc0432f27d42fdb982a925c8734636.md")).unwrap();
    assert!(edited.contains("Edited"), "the rollback wrote: {out}");
    jr_ok(&[
        "rollback",
        &full,
        "--target",
        target,
        "--yes",
        "-q",
        "--snapshot-dir",
        s,
    ]);
    jr_ok(&["verify", sample_jex().to_str().unwrap(), "--target", target]);
}

/// `clear` lists the target again under its lock too: a note a client synced while the clear
/// took its snapshot is in neither the snapshot nor the list of deletions, so the clear stops
/// with nothing deleted and its lock released; the rerun snapshots the note and clears.
#[test]
fn a_clear_whose_target_changed_before_it_took_the_lock_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let t = restored(dir.path());
    let target = t.to_str().unwrap();
    let snaps = dir.path().join("snaps");
    let s = snaps.to_str().unwrap();
    let before = tree_hashes(&t);
    let child = start_and_wait_for_snapshot(
        &[
            "clear",
            "--target",
            target,
            "--yes",
            "--tpslimit",
            "4",
            "--snapshot-dir",
            s,
        ],
        &snaps,
    );
    let new_note = sync_new_note(&t, &t);
    let o = child.wait_with_output().unwrap();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(4), "{out}");
    assert!(
        out.contains("changed after this run read it") && out.contains("nothing was written"),
        "{out}"
    );
    let mut after = tree_hashes(&t);
    after.retain(|(p, _)| !p.starts_with(NEW_NOTE));
    assert_eq!(after, before, "the refused clear changed the target: {out}");
    let locks: Vec<_> = std::fs::read_dir(t.join("locks"))
        .unwrap()
        .flatten()
        .collect();
    assert!(
        locks.is_empty(),
        "the refused clear left its lock: {locks:?}"
    );

    let out = jr_ok(&["clear", "--target", target, "--yes", "--snapshot-dir", s]);
    assert!(!new_note.exists(), "{out}");
    assert_eq!(
        snapshots_with_new_note(&snaps),
        1,
        "the new note is in no snapshot: {out}"
    );
}

/// `migrate` lists its destination again under its lock: a note a client synced there while
/// the mirror's snapshot ran would be deleted unsnapshotted, so the run stops with nothing
/// written and its lock released.
#[test]
fn a_migrate_whose_destination_changed_before_it_took_the_lock_writes_nothing() {
    use joplin_restore::generate::{write_jex, GenSpec};
    let dir = tempfile::tempdir().unwrap();
    let src = restored(dir.path());
    let dst = dir.path().join("dst");
    let other = dir.path().join("other.jex");
    let spec = GenSpec {
        notes: 20,
        notebooks: 2,
        tags: 1,
        attachments: 1,
        attachment_bytes: 100,
        seed: 7,
    };
    write_jex(&spec, &other).unwrap();
    jr_ok(&[
        "restore",
        other.to_str().unwrap(),
        "--target",
        dst.to_str().unwrap(),
        "-q",
    ]);
    let before = tree_hashes(&dst);
    let snaps = dir.path().join("snaps");
    let child = start_and_wait_for_snapshot(
        &[
            "migrate",
            "--from",
            src.to_str().unwrap(),
            "--to",
            dst.to_str().unwrap(),
            "--mode",
            "mirror",
            "--yes",
            "--tpslimit",
            "4",
            "--snapshot-dir",
            snaps.to_str().unwrap(),
        ],
        &snaps,
    );
    let new_note = sync_new_note(&src, &dst);
    let o = child.wait_with_output().unwrap();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(4), "{out}");
    assert!(out.contains("changed after this run read it"), "{out}");
    assert!(new_note.exists(), "{out}");
    let mut after = tree_hashes(&dst);
    after.retain(|(p, _)| !p.starts_with(NEW_NOTE));
    assert_eq!(
        after, before,
        "the refused migrate changed the destination: {out}"
    );
    let locks: Vec<_> = std::fs::read_dir(dst.join("locks"))
        .unwrap()
        .flatten()
        .collect();
    assert!(
        locks.is_empty(),
        "the refused migrate left its lock: {locks:?}"
    );
}

/// SIGTERM while a restore checks what it wrote (a stage with no signal handling of its own)
/// ends the run there with a message saying the target may be partly changed: the signal used
/// to be swallowed until the whole verification had run. The same command run again finishes.
#[cfg(unix)]
#[test]
fn a_signal_while_the_restore_verifies_ends_it_there() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("target");
    let jex = sample_jex();
    let (j, target) = (jex.to_str().unwrap(), t.to_str().unwrap());
    // At 4 requests a second the 31 uploads take ~8 s and reading them back (--verify full)
    // as long again.
    let mut child = support::command()
        .args([
            "restore",
            j,
            "--target",
            target,
            "--tpslimit",
            "4",
            "--verify",
            "full",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    // Bounded: the restore's own lines, up to its verification.
    for _ in 0..200 {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        seen.push_str(&line);
        if line.contains("verifying the target") {
            break;
        }
    }
    assert!(seen.contains("verifying the target"), "{seen}");
    support::signal(&child, "-TERM");
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert_eq!(status.code(), Some(1), "{seen}{rest}");
    assert!(
        rest.contains("interrupted after it began changing the target")
            && rest.contains("Run the same command again"),
        "{rest}"
    );
    let out = jr_ok(&["restore", j, "--target", target]);
    assert!(out.contains("Checked: 27 items and 3 blobs"), "{out}");
}

/// A lock dated in the future (its client's clock runs ahead) is active, as Joplin counts it
/// (`now - updatedTime < ttl`): it stops a restore, `status` says how far ahead it is, and
/// `unlock` keeps it without `--force`.
#[test]
fn a_lock_dated_in_the_future_is_active() {
    let dir = tempfile::tempdir().unwrap();
    let t = restored(dir.path());
    let p = t.join("locks").join("1_1_fa57c10c.json");
    std::fs::write(&p, r#"{"type":1,"clientType":1,"clientId":"fa57c10c"}"#).unwrap();
    let f = std::fs::File::options().write(true).open(&p).unwrap();
    f.set_modified(SystemTime::now() + Duration::from_secs(3600))
        .unwrap();
    let tgt = t.to_str().unwrap();
    let jex = sample_jex();
    let o = jr(&["restore", jex.to_str().unwrap(), "--target", tgt, "--yes"]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("in the future"), "{}", text(&o));
    let status = jr_ok(&["status", "--target", tgt]);
    assert!(
        status.contains("Lock: active sync by desktop client fa57c10c, dated 3")
            && status.contains("s in the future"),
        "{status}"
    );
    jr_ok(&["unlock", "--target", tgt]);
    assert!(p.exists(), "unlock removed an active lock");
    jr_ok(&["unlock", "--target", tgt, "--force"]);
    assert!(!p.exists());
}

/// A target copied without its empty `locks/` folder (as the E2EE fixture is): `clear` makes it
/// for its lock, as `restore` does, instead of failing after its snapshot.
#[test]
fn a_target_without_a_locks_folder_gets_one_for_the_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let t = restored(tmp.path());
    std::fs::remove_dir_all(t.join("locks")).unwrap();
    let o = jr(&[
        "clear",
        "--target",
        t.to_str().unwrap(),
        "--yes",
        "--snapshot-dir",
        tmp.path().join("snaps").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(t.join("locks").is_dir());
    assert_eq!(support::count_items(&t), 0, "{}", text(&o));
}

/// `status` on a target with an item file that does not parse says what the count means: with
/// an active lock (a run writing: files half-written or gone since the listing) to look again
/// later, else how to find them.
#[test]
fn status_explains_unreadable_items() {
    let dir = tempfile::tempdir().unwrap();
    let t = restored(dir.path());
    std::fs::write(t.join("0123456789abcdef0123456789abcdef.md"), "half-writ").unwrap();
    let target = t.to_str().unwrap();
    let out = jr_ok(&["status", "--target", target]);
    assert!(
        out.contains("unreadable: 1 (item files that do not parse or vanished since the listing"),
        "{out}"
    );
    std::fs::write(
        t.join("locks/2_3_elsewhere0.json"),
        r#"{"type":2,"clientType":3,"clientId":"elsewhere0","app":"joplin-restore"}"#,
    )
    .unwrap();
    let out = jr_ok(&["status", "--target", target]);
    assert!(
        out.contains("unreadable: 1 (an active lock: someone is writing"),
        "{out}"
    );
}
