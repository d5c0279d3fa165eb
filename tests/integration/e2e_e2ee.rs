//! End to end on an end-to-end encrypted filesystem target, judged by the real Joplin CLI: the
//! target is encrypted by the CLI itself, we restore into it, a fresh CLI profile decrypts
//! everything and holds exactly the backup.

use crate::support;

use std::path::{Path, PathBuf};

use support::e2ee::assert_no_plaintext;
use support::joplin::{assert_manifest_eq, Profile};
use support::{jr, jr_env, sample_jex, sample_manifest, text, tree_hashes};

const PASSWORD: &str = "Restore pw ß 1";
const ENV: &str = "JOPLIN_RESTORE_MASTER_PASSWORD";

/// A filesystem target on which the real CLI turned E2EE on and synced.
fn encrypted_target(tmp: &Path) -> PathBuf {
    let target = tmp.join("target");
    std::fs::create_dir_all(&target).unwrap();
    let p = Profile::new(tmp.join("owner"));
    p.use_folder(&target);
    // In one node process: a lone `e2ee enable` can exit before its settings are saved
    // (the key is generated, then lost).
    let out = p.batch(&[
        format!("e2ee enable --password \"{PASSWORD}\""),
        "sync".into(),
    ]);
    assert!(!out.contains("Last error"), "{out}");
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(target.join("info.json")).unwrap()).unwrap();
    assert_eq!(
        info["e2ee"]["value"], true,
        "the CLI did not enable E2EE: {info}"
    );
    target
}

fn restore(target: &Path, env: &[(&str, &str)], extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "restore",
        sample_jex().to_str().unwrap().to_string().leak(),
        "--target",
        target.to_str().unwrap(),
        "--yes",
        "--no-snapshot",
        "-q",
    ];
    args.extend_from_slice(extra);
    jr_env(&args, env)
}

#[test]
fn fresh_client_decrypts_exactly_the_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let target = encrypted_target(tmp.path());

    let o = restore(&target, &[(ENV, PASSWORD)], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("Verified: 27 items and 3 blobs"), "{out}");
    assert_eq!(assert_no_plaintext(&target), (27, 3));

    // Verify decrypts and compares; the password may come from a file too.
    let pw_file = tmp.path().join("pw.txt");
    std::fs::write(&pw_file, format!("{PASSWORD}\n")).unwrap();
    let o = jr_env(
        &[
            "verify",
            sample_jex().to_str().unwrap(),
            "--target",
            target.to_str().unwrap(),
            "--master-password-file",
            pw_file.to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(!String::from_utf8_lossy(&o.stdout).contains(PASSWORD));

    // Restoring again compares with the decrypted copies: nothing to write.
    let before = tree_hashes(&target);
    let o = restore(&target, &[(ENV, PASSWORD)], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("0 file(s) uploaded, 27 already up to date"),
        "{out}"
    );
    let after: Vec<_> = tree_hashes(&target)
        .into_iter()
        .filter(|(p, _)| !p.starts_with("locks/") && !p.starts_with("temp/"))
        .collect();
    let before: Vec<_> = before
        .into_iter()
        .filter(|(p, _)| !p.starts_with("locks/") && !p.starts_with("temp/"))
        .collect();
    assert_eq!(before, after, "an unchanged restore rewrote files");

    // A fresh client: sync, give the master password, decrypt (blobs come with the next sync).
    let p = Profile::new(tmp.path().join("fresh"));
    p.use_folder(&target);
    p.sync();
    // The profile listing reads the state the client keeps (syncInfoCache), as Joplin does.
    let listed = jr_env(
        &[
            "client",
            "profiles",
            "--json",
            "--profile",
            p.dir.to_str().unwrap(),
        ],
        &[],
    );
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed["profiles"][0]["e2ee"], true, "{listed}");
    p.run(&["config", "encryption.masterPassword", PASSWORD]);
    let want = sample_manifest();
    let mut got = serde_json::Value::Null;
    for _ in 0..3 {
        p.run(&["e2ee", "decrypt"]);
        p.sync();
        got = p.manifest();
        if got == want {
            break;
        }
    }
    assert_manifest_eq(&got, &want, "fresh profile after an encrypted restore");
}

#[test]
fn wrong_or_missing_password_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let target = encrypted_target(tmp.path());
    let before = tree_hashes(&target);

    let o = restore(&target, &[(ENV, "not the password")], &[]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("does not open") && err.contains("Nothing was changed"),
        "{err}"
    );
    assert!(
        !err.contains("not the password"),
        "the password must never be printed"
    );
    assert_eq!(tree_hashes(&target), before);

    // No password and no terminal: refuse and say how to give it.
    let o = restore(&target, &[], &[]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(ENV) && err.contains("--master-password-file"),
        "{err}"
    );
    assert!(err.contains("nothing was changed"), "{err}");
    assert_eq!(tree_hashes(&target), before);

    // `verify` only reads: it says what the password is needed for instead.
    let o = jr_env(
        &[
            "verify",
            sample_jex().to_str().unwrap(),
            "--target",
            target.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cannot be decrypted") && !err.contains("nothing was changed"),
        "{err}"
    );
}

#[test]
fn allow_plaintext_is_an_explicit_warned_opt_out() {
    let tmp = tempfile::tempdir().unwrap();
    let target = encrypted_target(tmp.path());
    let o = restore(&target, &[], &["--allow-plaintext"]);
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--allow-plaintext") && err.contains("in clear"),
        "{err}"
    );
    let note = std::fs::read_to_string(target.join("7cf9bead95744245a9011f01c8222d5a.md")).unwrap();
    assert!(note.contains("encryption_applied: 0"), "{note}");

    // With the password, verify flags every clear item; a restore with it encrypts them all.
    let o = jr_env(
        &[
            "verify",
            sample_jex().to_str().unwrap(),
            "--target",
            target.to_str().unwrap(),
        ],
        &[(ENV, PASSWORD)],
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("not encrypted"));
    let o = restore(&target, &[(ENV, PASSWORD)], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(assert_no_plaintext(&target), (27, 3));
}

/// `--enable-e2ee` sets up encryption on a new target; the real CLI sees E2EE on, decrypts
/// everything with the password, and holds exactly the backup.
#[test]
fn enable_e2ee_on_a_new_target() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    let o = restore(&target, &[(ENV, PASSWORD)], &["--enable-e2ee"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("End-to-end encryption turned on"), "{out}");
    assert!(out.contains("Verified: 27 items and 3 blobs"), "{out}");
    assert_eq!(assert_no_plaintext(&target), (27, 3));

    // Refused on a target that already holds items in clear.
    let plain = tmp.path().join("plain");
    let o = restore(&plain, &[], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let before = tree_hashes(&plain);
    let o = restore(&plain, &[(ENV, PASSWORD)], &["--enable-e2ee"]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("only sets up encryption on a new target"));
    assert_eq!(tree_hashes(&plain), before);
    assert!(
        !text(&o).contains("start such clients afresh"),
        "{}",
        text(&o)
    );
    // Emptied first: allowed, and clients that synced it before are warned of.
    let c = jr(&[
        "clear",
        "--target",
        plain.to_str().unwrap(),
        "--yes",
        "--no-snapshot",
    ]);
    assert!(c.status.success(), "{}", text(&c));
    let o = restore(&plain, &[(ENV, PASSWORD)], &["--enable-e2ee"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("start such clients afresh"),
        "{}",
        text(&o)
    );

    // Another client's active lock refuses the run before encryption is turned on: nothing
    // written, info.json included.
    let locked = tmp.path().join("locked");
    std::fs::create_dir_all(locked.join("locks")).unwrap();
    std::fs::write(
        locked.join("locks/1_1_deadbeef.json"),
        r#"{"type":1,"clientType":1,"clientId":"deadbeef"}"#,
    )
    .unwrap();
    let o = restore(&locked, &[(ENV, PASSWORD)], &["--enable-e2ee"]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("active sync lock"), "{}", text(&o));
    assert!(!text(&o).contains("encryption turned on"), "{}", text(&o));
    let info: serde_json::Value = std::fs::read(locked.join("info.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    assert_ne!(info["e2ee"]["value"], true, "E2EE turned on: {info}");
    assert!(
        info["masterKeys"].as_array().is_none_or(|k| k.is_empty()),
        "{info}"
    );

    let p = Profile::new(tmp.path().join("fresh"));
    p.use_folder(&target);
    p.sync();
    assert!(p.run(&["e2ee", "status"]).contains("Enabled"));
    p.run(&["config", "encryption.masterPassword", PASSWORD]);
    let want = sample_manifest();
    let mut got = serde_json::Value::Null;
    for _ in 0..3 {
        p.run(&["e2ee", "decrypt"]);
        p.sync();
        got = p.manifest();
        if got == want {
            break;
        }
    }
    assert_manifest_eq(&got, &want, "fresh profile after --enable-e2ee");
}

/// Sync until the profile holds `want` (decryption and blob downloads take a few rounds).
fn converge(p: &Profile, want: &serde_json::Value) -> serde_json::Value {
    let mut got = serde_json::Value::Null;
    for _ in 0..3 {
        p.sync();
        p.run(&["e2ee", "decrypt"]);
        got = p.manifest();
        if &got == want {
            break;
        }
    }
    got
}

/// A client that edited the encrypted target after the restore (its own StringV1 uploads) ends
/// with exactly the backup after restoring again: the restore decrypts the client's items to
/// compare them, re-writes what differs, brings back what was deleted, deletes the extras.
#[test]
fn stale_client_of_an_encrypted_target_converges_to_the_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let target = encrypted_target(tmp.path());
    let o = restore(&target, &[(ENV, PASSWORD)], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let owner = Profile::new(tmp.path().join("owner"));
    owner.run(&["config", "encryption.masterPassword", PASSWORD]);
    let want = sample_manifest();
    assert_manifest_eq(
        &converge(&owner, &want),
        &want,
        "owner after the first restore",
    );

    owner.batch(&[
        "rmnote -f 2ebc0432f27d42fdb982a925c8734636".into(),
        "set 3151c3990c044f74b984078dd0bc8a4c body \"edited after the backup\"".into(),
        "use Journal".into(),
        "mknote \"Extra note not in the backup\"".into(),
    ]);
    owner.sync();
    assert_no_plaintext(&target);

    let o = restore(&target, &[(ENV, PASSWORD)], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    // The deleted note comes back, the edited one is replaced, the extra one goes; the rest
    // (decrypted and compared) is left alone.
    assert!(
        out.contains("2 file(s) uploaded, 25 already up to date, 1 deleted"),
        "{out}"
    );
    assert_no_plaintext(&target);
    assert_manifest_eq(
        &converge(&owner, &want),
        &want,
        "owner after restoring again",
    );
    assert!(owner.conflict_bodies().is_empty(), "no conflict expected");
}

/// A rollback needs no master password: the snapshot holds the target's encrypted form, which
/// is written back and compared as stored (its check called every encrypted item unreadable
/// and exited 3 before).
#[test]
fn rollback_of_an_encrypted_target_needs_no_password() {
    let tmp = tempfile::tempdir().unwrap();
    let target = encrypted_target(tmp.path());
    let t = target.to_str().unwrap();
    let o = restore(&target, &[(ENV, PASSWORD)], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let snaps = tmp.path().join("snaps");
    let s = snaps.to_str().unwrap();
    let o = jr_env(
        &["clear", "--target", t, "--yes", "-q", "--snapshot-dir", s],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let snapshot = std::fs::read_dir(&snaps)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let o = jr_env(
        &[
            "--json",
            "rollback",
            snapshot.to_str().unwrap(),
            "--target",
            t,
            "--yes",
            "-q",
        ],
        &[],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(o.status.code(), Some(0), "{v}\n{}", text(&o));
    assert_eq!(v["verify"]["differences"], serde_json::json!([]), "{v}");
    assert_eq!(v["verify"]["checked_items"], 27, "{v}");
    assert_eq!(assert_no_plaintext(&target), (27, 3));
    // Decrypted, every item is the backup's again.
    let o = jr_env(
        &["verify", sample_jex().to_str().unwrap(), "--target", t],
        &[(ENV, PASSWORD)],
    );
    assert!(o.status.success(), "{}", text(&o));
}
