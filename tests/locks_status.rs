//! Lock discipline and `status`/`unlock` on a filesystem target.

mod support;

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
    let args = [
        "restore",
        jex.to_str().unwrap(),
        "--target",
        t.to_str().unwrap(),
        "--yes",
    ];
    let o = jr(&args);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("active sync lock (desktop client deadbeef"),
        "{}",
        text(&o)
    );
    assert_eq!(before, tree_hashes(&t));
    let o = jr(&[&args[..], &["--force"]].concat());
    assert!(o.status.success(), "{}", text(&o));
    assert!(t.join("7241f91bc84849938247fa679a076b7b.md").exists());
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
    std::fs::write(
        t.join("locks/2_3_ours0.json"),
        r#"{"type":2,"clientType":3,"clientId":"ours0","app":"joplin-restore"}"#,
    )
    .unwrap();
    let status = jr_ok(&["status", "--target", t.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(v["locks"].as_array().unwrap().len(), 3, "{status}");
    let out = jr_ok(&["unlock", "--target", t.to_str().unwrap()]);
    assert!(out.contains("2 lock(s) removed, 1 active"), "{out}");
    let left: Vec<String> = std::fs::read_dir(t.join("locks"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, vec!["1_1_active0.json".to_string()]);
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

/// A lock a killed joplin-restore run left (not this restore's: no journal names it) is called
/// ours, with `unlock` as the way out, both where a restore checks before its snapshot and where
/// it takes the lock; the refusal exits 4.
#[test]
fn a_lock_of_another_joplin_restore_run_is_named_as_ours() {
    let dir = tempfile::tempdir().unwrap();
    let t = restored(dir.path());
    std::fs::write(
        t.join("locks/2_3_killed0.json"),
        r#"{"type":2,"clientType":3,"clientId":"killed0","app":"joplin-restore"}"#,
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
    jr_ok(&["unlock", "--target", t.to_str().unwrap()]);
    jr_ok(&args);
    let back = std::fs::read_to_string(&note).unwrap();
    assert!(back.starts_with("urgent\n\nid: 7241f91b"), "{back}");
}
