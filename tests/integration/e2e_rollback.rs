//! Snapshot and rollback, judged by the real Joplin CLI: a rollback must bring every client back,
//! not just the files.

use crate::support;

use std::path::Path;

use support::joplin::{assert_manifest_eq, Profile};
use support::{jr_ok, sample_jex, sample_manifest, tree_hashes};

/// The snapshot folder a command printed.
fn snapshot_path(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("Snapshot of the target: "))
        .unwrap_or_else(|| panic!("no snapshot printed:\n{stdout}"))
        .trim()
        .to_string()
}

/// A target holding the client's own content: the sample plus two new notes and an edit.
fn client_content(tmp: &Path) -> (std::path::PathBuf, Profile) {
    let target = tmp.join("target");
    jr_ok(&[
        "restore",
        sample_jex().to_str().unwrap(),
        "--target",
        target.to_str().unwrap(),
        "-q",
    ]);
    let p = Profile::new(tmp.join("client"));
    p.use_folder(&target);
    p.sync();
    p.batch(&[
        "use Journal".into(),
        "mknote \"Written after the backup\"".into(),
        "mknote \"Also after the backup\"".into(),
        "set 3151c3990c044f74b984078dd0bc8a4c body \"edited after the backup\"".into(),
    ]);
    p.sync();
    (target, p)
}

#[test]
fn rollback_brings_a_client_that_synced_the_restore_back() {
    let tmp = tempfile::tempdir().unwrap();
    let (target, p) = client_content(tmp.path());
    let t = target.to_str().unwrap();
    let before = p.manifest();
    assert_ne!(before, sample_manifest());

    let out = jr_ok(&[
        "restore",
        sample_jex().to_str().unwrap(),
        "--target",
        t,
        "--yes",
        "--snapshot-dir",
        tmp.path().join("snaps").to_str().unwrap(),
    ]);
    let snap = snapshot_path(&out);
    p.sync();
    assert_manifest_eq(
        &p.manifest(),
        &sample_manifest(),
        "client after the restore",
    );

    // A dry run shows the plan, changes nothing and claims no verification.
    let restored = support::tree_hashes(&target);
    let o = support::jr(&["rollback", &snap, "--target", t, "--dry-run"]);
    assert!(o.status.success(), "{}", support::text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.contains("dry run: nothing was changed"), "{out}");
    // Said before anything is confirmed: client work since the snapshot goes too.
    assert!(
        support::text(&o)
            .contains("whatever clients synced since (edits, new notes, deletions) is undone too"),
        "{}",
        support::text(&o)
    );
    assert!(
        !out.contains("Verified") && !out.contains("Rolled back"),
        "{out}"
    );
    // By title: the notes the restore deleted come back.
    assert!(out.contains("\"Written after the backup\""), "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&jr_ok(&["--json", "rollback", &snap, "--target", t, "-n"])).unwrap();
    assert_eq!(
        (v["dry_run"].clone(), v["verify"].clone()),
        (true.into(), serde_json::Value::Null),
        "{v}"
    );
    assert!(v["would"]["upload"].as_u64().unwrap() >= 2, "{v}");
    assert_eq!(support::tree_hashes(&target), restored);

    let out = jr_ok(&[
        "rollback",
        &snap,
        "--target",
        t,
        "--yes",
        "--snapshot-dir",
        tmp.path().join("snaps2").to_str().unwrap(),
    ]);
    assert!(
        out.contains("Verified: the target matches the snapshot"),
        "{out}"
    );
    p.sync();
    assert_manifest_eq(&p.manifest(), &before, "client after the rollback");
    assert!(p.conflict_bodies().is_empty());
}

#[test]
fn exact_rollback_without_a_sync_in_between_is_byte_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let (target, _p) = client_content(tmp.path());
    let t = target.to_str().unwrap();
    let before = tree_hashes(&target);
    let out = jr_ok(&[
        "restore",
        sample_jex().to_str().unwrap(),
        "--target",
        t,
        "--yes",
        "--snapshot-dir",
        tmp.path().join("snaps").to_str().unwrap(),
    ]);
    assert_ne!(before, tree_hashes(&target));
    let snap = snapshot_path(&out);
    let v: serde_json::Value = serde_json::from_str(&jr_ok(&[
        "--json",
        "rollback",
        &snap,
        "--target",
        t,
        "--exact",
        "--yes",
        "--no-snapshot",
    ]))
    .unwrap();
    assert_eq!(before, tree_hashes(&target));
    assert_eq!(
        support::stage_names(&v),
        ["read snapshot", "list", "plan", "write", "verify"],
        "{v}"
    );
    let written = v["uploaded"].as_u64().unwrap() + v["deleted"].as_u64().unwrap();
    assert!(
        written > 0 && v["requests"].as_u64().unwrap() > written,
        "every write and the listings are requests: {v}"
    );
}

#[test]
fn rollback_refuses_a_damaged_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let (target, _p) = client_content(tmp.path());
    let t = target.to_str().unwrap();
    let out = jr_ok(&[
        "restore",
        sample_jex().to_str().unwrap(),
        "--target",
        t,
        "--yes",
        "--snapshot-dir",
        tmp.path().join("snaps").to_str().unwrap(),
    ]);
    let snap = snapshot_path(&out);
    let item = std::fs::read_dir(Path::new(&snap).join("files"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "md"))
        .unwrap();
    std::fs::write(&item, "tampered").unwrap();
    let before = tree_hashes(&target);
    let o = support::jr(&["rollback", &snap, "--target", t, "--yes"]);
    assert!(!o.status.success());
    assert!(
        support::text(&o).contains("does not match its manifest"),
        "{}",
        support::text(&o)
    );
    assert_eq!(before, tree_hashes(&target));
}

/// A snapshot rolled back into another target than the one it was taken of is refused (it
/// deleted the whole other target and wrote the snapshot's notes); `--force` overrides. A
/// relative target path names the same target as the absolute one.
#[test]
fn rollback_refuses_a_snapshot_of_another_target() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    let snaps = tmp.path().join("snaps");
    for t in [&a, &b] {
        jr_ok(&[
            "restore",
            sample_jex().to_str().unwrap(),
            "--target",
            t.to_str().unwrap(),
            "-q",
        ]);
    }
    let out = jr_ok(&[
        "clear",
        "--target",
        a.to_str().unwrap(),
        "--yes",
        "--snapshot-dir",
        snaps.to_str().unwrap(),
    ]);
    let snap = snapshot_path(&out);
    std::fs::remove_file(b.join("2ebc0432f27d42fdb982a925c8734636.md")).unwrap();
    let before = tree_hashes(&b);
    let o = support::jr(&["rollback", &snap, "--target", b.to_str().unwrap(), "--yes"]);
    let text = support::text(&o);
    assert_eq!(o.status.code(), Some(4), "{text}");
    assert!(
        text.contains("is a snapshot of folder") && text.contains("--force"),
        "{text}"
    );
    assert_eq!(before, tree_hashes(&b));
    let o = support::jr(&[
        "rollback",
        &snap,
        "--target",
        b.to_str().unwrap(),
        "--yes",
        "--force",
    ]);
    assert!(o.status.success(), "{}", support::text(&o));
    assert!(b.join("2ebc0432f27d42fdb982a925c8734636.md").is_file());
    // Run from the targets' parent with a relative path: the same target as `a`.
    let o = support::command()
        .args(["rollback", &snap, "--target", "a", "--yes", "-q"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", support::text(&o));
    jr_ok(&[
        "verify",
        sample_jex().to_str().unwrap(),
        "--target",
        a.to_str().unwrap(),
    ]);
}

/// An attachment changed in place without changing its size (here by `restore --checksum`
/// repairing one): a rollback compares blobs by size, keeps it, and its check says so with the
/// option that does put the snapshot's bytes back for every client (`--rewrite-unchanged`),
/// comparing against the snapshot, not "the backup".
#[test]
fn a_same_size_blob_is_put_back_with_rewrite_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    let t = target.to_str().unwrap();
    let jex = sample_jex();
    jr_ok(&["restore", jex.to_str().unwrap(), "--target", t, "-q"]);
    let blob = std::fs::read_dir(target.join(".resource"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| std::fs::metadata(p).unwrap().len() > 0)
        .unwrap();
    let mut damaged = std::fs::read(&blob).unwrap();
    damaged[0] ^= 0xff;
    std::fs::write(&blob, &damaged).unwrap();
    let out = jr_ok(&[
        "restore",
        jex.to_str().unwrap(),
        "--target",
        t,
        "--checksum",
        "--yes",
    ]);
    let snapshot = snapshot_path(&out);
    assert_ne!(
        std::fs::read(&blob).unwrap(),
        damaged,
        "--checksum repaired it"
    );

    let o = support::jr(&["rollback", &snapshot, "--target", t, "--yes"]);
    assert_eq!(o.status.code(), Some(3), "{}", support::text(&o));
    let said = support::text(&o);
    assert!(
        said.contains("between the target and the snapshot")
            && said.contains("--rewrite-unchanged"),
        "{said}"
    );
    jr_ok(&[
        "rollback",
        &snapshot,
        "--target",
        t,
        "--yes",
        "--rewrite-unchanged",
    ]);
    assert_eq!(
        std::fs::read(&blob).unwrap(),
        damaged,
        "the snapshot's bytes are back"
    );

    // A snapshot that lost its manifest is named for that, not for an interrupted run.
    std::fs::remove_file(Path::new(&snapshot).join("snapshot-manifest.json")).unwrap();
    let o = support::jr(&["rollback", &snapshot, "--target", t, "--yes"]);
    assert_eq!(o.status.code(), Some(4), "{}", support::text(&o));
    let said = support::text(&o);
    assert!(said.contains("lost its snapshot-manifest.json"), "{said}");
}
