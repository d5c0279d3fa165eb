//! End to end on a filesystem sync target, judged by the real Joplin CLI.

use crate::support;

use support::joplin::{assert_manifest_eq, Profile};
use support::{jr, jr_ok, sample_jex, sample_manifest, text};

#[test]
fn fresh_client_syncs_exactly_the_backup_with_original_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    let out = jr_ok(&[
        "restore",
        sample_jex().to_str().unwrap(),
        "--target",
        target.to_str().unwrap(),
    ]);
    assert!(out.contains("Checked: 27 items and 3 blobs"), "{out}");
    jr_ok(&[
        "verify",
        sample_jex().to_str().unwrap(),
        "--target",
        target.to_str().unwrap(),
    ]);

    let p = Profile::new(tmp.path().join("fresh"));
    p.use_folder(&target);
    p.sync();
    assert_manifest_eq(
        &p.manifest(),
        &sample_manifest(),
        "fresh profile after restore",
    );
}

/// Restore the sample, let a client sync it, then make the target's content older and different
/// through that client (notes deleted, edited, renamed, extra note and notebook), synced.
fn stale_setup(tmp: &std::path::Path) -> (std::path::PathBuf, Profile) {
    let target = tmp.join("target");
    jr_ok(&[
        "restore",
        sample_jex().to_str().unwrap(),
        "--target",
        target.to_str().unwrap(),
    ]);
    let p = Profile::new(tmp.join("stale"));
    p.use_folder(&target);
    p.sync();
    p.edit_after_the_backup();
    p.sync();
    (target, p)
}

fn restore_again(tmp: &std::path::Path, target: &std::path::Path, extra: &[&str]) {
    let snaps = tmp.join("snaps");
    let mut args = vec![
        "restore",
        sample_jex().to_str().unwrap().to_string().leak(),
        "--target",
        target.to_str().unwrap(),
        "--yes",
        "--snapshot-dir",
        snaps.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = jr(&args);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("Snapshot of the target"), "{out}");
}

/// A client that synced an older, different content of the target ends with exactly the backup
/// after the restore: deleted notes come back, edits are replaced, extra items go.
#[test]
fn stale_client_converges_to_the_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let (target, p) = stale_setup(tmp.path());
    restore_again(tmp.path(), &target, &[]);
    p.sync();
    assert_manifest_eq(
        &p.manifest(),
        &sample_manifest(),
        "stale profile after restore",
    );
    assert!(p.conflict_bodies().is_empty(), "no conflict expected");
    jr_ok(&[
        "verify",
        sample_jex().to_str().unwrap(),
        "--target",
        target.to_str().unwrap(),
    ]);
}

/// A device whose clock runs ahead edits a note after the backup: its edit carries a time
/// minutes in the future. A restore stamped "now" would lose to it on that device (Joplin keeps
/// the later copy) while `verify` says OK: the restore stamps that item just after the copy it
/// replaces, says so, and the device takes the backup's.
#[test]
fn an_edit_from_a_device_whose_clock_runs_ahead_is_still_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let (target, p) = stale_setup(tmp.path());
    // The device's clock, 10 minutes ahead, stamped its edit (as Joplin does, with its own
    // clock), and it synced the edit.
    let ahead = joplin_restore::target::now_ms() + 10 * 60 * 1000;
    let changed = rusqlite::Connection::open(p.dir.join("database.sqlite"))
        .unwrap()
        .execute(
            "UPDATE notes SET body = 'edited on a device whose clock runs ahead', \
             updated_time = ?1, user_updated_time = ?1 \
             WHERE id = '3151c3990c044f74b984078dd0bc8a4c'",
            [ahead],
        )
        .unwrap();
    assert_eq!(changed, 1);
    p.sync();
    let on_target =
        std::fs::read_to_string(target.join("3151c3990c044f74b984078dd0bc8a4c.md")).unwrap();
    assert!(
        on_target.contains("edited on a device whose clock runs ahead"),
        "{on_target}"
    );

    let snaps = tmp.path().join("snaps");
    let o = jr(&[
        "restore",
        sample_jex().to_str().unwrap(),
        "--target",
        target.to_str().unwrap(),
        "--yes",
        "--snapshot-dir",
        snaps.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("1 item(s) on the target carry a time up to"),
        "{}",
        text(&o)
    );
    p.sync();
    assert_manifest_eq(
        &p.manifest(),
        &sample_manifest(),
        "the device after the restore",
    );
}

/// An edit the client has not synced when the restore happens is never lost: by default it stays
/// the current version (the restore skips items the target already holds as in the backup);
/// with --rewrite-unchanged the backup wins and the edit survives as a conflict copy.
#[test]
fn unsynced_local_edits_are_never_lost() {
    const NOTE: &str = "7cf9bead95744245a9011f01c8222d5a";
    let edit = |p: &Profile| {
        p.run(&["set", NOTE, "body", "unsynced local edit"]);
    };
    let body_of =
        |p: &Profile| p.query(&format!("SELECT body FROM notes WHERE id = '{NOTE}'"))[0][0].clone();

    let tmp = tempfile::tempdir().unwrap();
    let (target, p) = stale_setup(tmp.path());
    edit(&p);
    restore_again(tmp.path(), &target, &[]);
    p.sync();
    assert_eq!(body_of(&p), "unsynced local edit");

    let tmp2 = tempfile::tempdir().unwrap();
    let (target2, p2) = stale_setup(tmp2.path());
    edit(&p2);
    restore_again(tmp2.path(), &target2, &["--rewrite-unchanged"]);
    p2.sync();
    assert_manifest_eq(
        &p2.manifest(),
        &sample_manifest(),
        "after --rewrite-unchanged",
    );
    let conflicts = p2.conflict_bodies();
    assert!(
        conflicts.iter().any(|b| b.contains("unsynced local edit")),
        "the unsynced edit must survive as a conflict copy; conflicts: {conflicts:?}"
    );
}

#[test]
fn new_ids_gives_the_same_tree_with_new_ids_and_working_links() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    jr_ok(&[
        "restore",
        sample_jex().to_str().unwrap(),
        "--target",
        target.to_str().unwrap(),
        "--new-ids",
    ]);
    let p = Profile::new(tmp.path().join("fresh"));
    p.use_folder(&target);
    p.sync();
    let got = p.manifest();
    let want = sample_manifest();
    assert_eq!(got["counts"], want["counts"]);
    let old_ids: Vec<&str> = want["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    for n in got["notes"].as_array().unwrap() {
        assert!(
            !old_ids.contains(&n["id"].as_str().unwrap()),
            "note kept its old id"
        );
    }
    // Same titles, same folder titles.
    let titles = |m: &serde_json::Value, k: &str| {
        let mut v: Vec<String> = m[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["title"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(titles(&got, "notes"), titles(&want, "notes"));
    assert_eq!(titles(&got, "folders"), titles(&want, "folders"));
    assert_eq!(titles(&got, "tags"), titles(&want, "tags"));
    // Every `:/id` link in every body points at an item the client has.
    let ids: std::collections::HashSet<String> = p
        .query("SELECT id FROM notes UNION SELECT id FROM resources UNION SELECT id FROM folders")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    let re = regex::Regex::new(r":/([0-9a-fA-F]{32})").unwrap();
    let mut links = 0;
    for r in p.query("SELECT body FROM notes") {
        for c in re.captures_iter(&r[0]) {
            links += 1;
            assert!(
                ids.contains(&c[1]),
                "dangling link :/{} in {:?}",
                &c[1],
                r[0]
            );
        }
    }
    assert!(
        links >= 4,
        "the sample has note and resource links; found {links}"
    );
    // Blobs arrived under the new ids.
    let blobs = p.manifest()["resources"].clone();
    let mut got_sha: Vec<String> = blobs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["sha256"].as_str().unwrap().to_string())
        .collect();
    let mut want_sha: Vec<String> = want["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["sha256"].as_str().unwrap().to_string())
        .collect();
    got_sha.sort();
    want_sha.sort();
    assert_eq!(got_sha, want_sha);
}

/// `clear` on a target a real client filled leaves only info.json (and empty folders); a fresh
/// client then syncs an empty notebook list, without an error.
#[test]
fn clear_leaves_only_info_json_and_a_fresh_client_sees_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    let filler = Profile::new(tmp.path().join("filler"));
    filler.batch(&[
        "mkbook \"Work\"".into(),
        "mknote \"Meeting\"".into(),
        "set Meeting body \"agenda\"".into(),
        "tag add urgent Meeting".into(),
    ]);
    filler.use_folder(&target);
    filler.sync();
    let info_before = std::fs::read(target.join("info.json")).unwrap();

    let out = jr_ok(&[
        "clear",
        "--target",
        target.to_str().unwrap(),
        "--yes",
        "--snapshot-dir",
        tmp.path().join("snaps").to_str().unwrap(),
    ]);
    assert!(out.contains("Cleared"), "{out}");
    let files: Vec<String> = support::tree_hashes(&target)
        .into_iter()
        .filter(|(p, _)| !p.ends_with('/'))
        .map(|(p, _)| p)
        .filter(|p| !p.starts_with(".sync/"))
        .collect();
    assert_eq!(files, vec!["info.json".to_string()]);
    assert_eq!(
        std::fs::read(target.join("info.json")).unwrap(),
        info_before
    );

    let fresh = Profile::new(tmp.path().join("fresh"));
    fresh.use_folder(&target);
    fresh.sync();
    let m = fresh.manifest();
    assert_eq!(m["counts"]["notes"], 0);
    assert_eq!(m["counts"]["folders"], 0);
}

/// A blob damaged in place (same size, other bytes) and synced by a client: a restore trusts
/// the size and keeps it, `verify` finds it and names `--checksum`, and a restore with
/// `--checksum` writes that blob and its resource item (stamped, so the client fetches the
/// blob again) and nothing else; the client then holds intact attachments. `migrate --mode
/// mirror --checksum` repairs a migrated copy the same way.
#[test]
fn a_blob_damaged_in_place_is_replaced_with_checksum() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    let (jex, t) = (sample_jex(), target.to_str().unwrap().to_string());
    let jex = jex.to_str().unwrap();
    jr_ok(&["restore", jex, "--target", &t, "-q"]);
    let pristine = support::tree_hashes(&target);
    let id = "57802a35e45342b38b20b51a9d7004c0";
    let blob = target.join(".resource").join(id);
    let flip = |path: &std::path::Path| {
        let mut b = std::fs::read(path).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 1;
        std::fs::write(path, b).unwrap();
    };
    flip(&blob);
    let p = Profile::new(tmp.path().join("client"));
    p.use_folder(&target);
    p.sync();
    assert_ne!(
        p.manifest(),
        sample_manifest(),
        "the client got the damaged blob"
    );

    let out = jr_ok(&["restore", jex, "--target", &t, "--yes"]);
    assert!(out.contains("0 file(s) uploaded"), "{out}");
    let o = jr(&["verify", jex, "--target", &t]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        said.contains("blob differs") && said.contains("--checksum"),
        "{said}"
    );
    // `diff` lists it as changed and says that only --checksum makes a restore replace it.
    let o = jr(&["diff", jex, "--target", &t]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        said.contains(&format!("blob of resource {id}")) && said.contains("--checksum"),
        "{said}"
    );

    let out = jr_ok(&["restore", jex, "--target", &t, "--yes", "--checksum"]);
    assert!(out.contains("2 file(s) uploaded"), "{out}");
    jr_ok(&["verify", jex, "--target", &t]);
    let repaired = support::tree_hashes(&target);
    let changed: Vec<&str> = repaired
        .iter()
        .filter(|f| !pristine.contains(f))
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(
        changed,
        [format!("{id}.md")],
        "only the resource item is new"
    );
    p.sync();
    assert_manifest_eq(&p.manifest(), &sample_manifest(), "client after --checksum");

    let copy = tmp.path().join("copy");
    let c = copy.to_str().unwrap();
    jr_ok(&["migrate", "--from", &t, "--to", c, "-q"]);
    flip(&copy.join(".resource").join(id));
    let mirror = [
        "migrate", "--from", &t, "--to", c, "--mode", "mirror", "--yes",
    ];
    let o = jr(&mirror);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("--checksum"),
        "{}",
        text(&o)
    );
    let o = jr(&[&mirror[..], &["--checksum"]].concat());
    assert!(o.status.success(), "{}", text(&o));
    // The copy had been migrated to before (clients may sync it): the resource item written
    // with its repaired blob is stamped, so they fetch the blob again; all else is as it was.
    let item = format!("{id}.md");
    let but_item = |t: Vec<(String, String)>| {
        t.into_iter()
            .filter(|(name, _)| *name != item)
            .collect::<Vec<_>>()
    };
    assert_eq!(but_item(support::tree_hashes(&copy)), but_item(repaired));
    let o = jr(&["migrate", "--from", &t, "--to", c, "--check"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// A `file://` URL as a file manager copies it (spaces and accents percent-encoded) names the
/// folder itself, not a new folder called `my%20notes`.
#[test]
fn a_file_url_target_is_decoded() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("my notes é");
    std::fs::create_dir(&folder).unwrap();
    let url = format!(
        "file://{}/my%20notes%20%C3%A9",
        tmp.path().to_str().unwrap()
    );
    jr_ok(&["restore", sample_jex().to_str().unwrap(), "--target", &url]);
    assert!(folder.join("info.json").is_file());
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    jr_ok(&["verify", sample_jex().to_str().unwrap(), "--target", &url]);
}

/// `verify`/`diff` against a target that holds nothing at all (a mistyped URL or prefix reads
/// that way on WebDAV and S3) say so next to the list of missing items.
#[test]
fn verify_against_an_empty_target_points_at_the_target() {
    let tmp = tempfile::tempdir().unwrap();
    for cmd in ["verify", "diff"] {
        let o = jr(&[
            cmd,
            sample_jex().to_str().unwrap(),
            "--target",
            tmp.path().to_str().unwrap(),
        ]);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(3), "{out}");
        assert!(
            out.contains("holds nothing at all") && out.contains("check --target"),
            "{cmd}: {out}"
        );
    }
    // A folder with other files (a Joplin profile, say): said to be no sync target.
    let profile = tmp.path().join("profile");
    std::fs::create_dir_all(&profile).unwrap();
    std::fs::write(profile.join("settings.json"), "{}").unwrap();
    std::fs::write(profile.join("database.sqlite"), "").unwrap();
    for cmd in ["verify", "diff"] {
        let o = jr(&[
            cmd,
            sample_jex().to_str().unwrap(),
            "--target",
            profile.to_str().unwrap(),
        ]);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(3), "{out}");
        assert!(
            out.contains("holds no Joplin sync data") && out.contains("not a sync target"),
            "{cmd}: {out}"
        );
    }
}

/// A restore that replaced and deleted nothing takes no snapshot, and says so (the README's
/// "wrong restore → rollback with the snapshot path it printed" has no path then); one that
/// replaces something keeps one and prints where.
#[test]
fn a_restore_says_when_it_took_no_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().join("target");
    let snaps = tmp.path().join("snaps");
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
    let out = jr_ok(&args);
    assert!(out.contains("No snapshot was taken"), "{out}");
    assert!(!snaps.exists(), "{out}");
    // A note the target lost comes back: still only added.
    let note = t.join("7cf9bead95744245a9011f01c8222d5a.md");
    let original = std::fs::read_to_string(&note).unwrap();
    std::fs::remove_file(&note).unwrap();
    let out = jr_ok(&args);
    assert!(out.contains("No snapshot was taken"), "{out}");
    // A note changed on the target is replaced: snapshot first.
    std::fs::write(&note, original.replacen("\n\n", "\n\nedited ", 1)).unwrap();
    let out = jr_ok(&args);
    assert!(
        out.contains("Snapshot kept at") && !out.contains("No snapshot"),
        "{out}"
    );
}

/// A server URL whose `#…` or `?…` would be dropped (the run going to another collection) or
/// with a lone `%` is a usage error before anything is contacted; the message says how to
/// write them.
#[test]
fn a_target_url_with_a_fragment_or_query_is_refused() {
    for (url, needle) in [
        (
            "http://127.0.0.1:9/dav/Notes #2",
            "write `?` as %3F and `#` as %23",
        ),
        (
            "http://127.0.0.1:9/dav/x?folder=y",
            "takes no query or fragment",
        ),
        ("http://127.0.0.1:9/dav/50%", "as %25"),
    ] {
        let o = jr(&["restore", sample_jex().to_str().unwrap(), "--target", url]);
        assert_eq!(o.status.code(), Some(2), "{url}: {}", text(&o));
        assert!(text(&o).contains(needle), "{url}: {}", text(&o));
    }
}

/// A clear-first restore that fails after clearing says that files are already gone and where
/// the snapshot holding them is (it said nothing the backup lacks was deleted).
#[test]
fn a_failure_after_deleting_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    let (jex, t) = (sample_jex(), target.to_str().unwrap().to_string());
    let jex = jex.to_str().unwrap();
    jr_ok(&["restore", jex, "--target", &t, "-q"]);
    // A note the backup lacks, and a folder where one of the backup's notes must be written.
    let note = "3151c3990c044f74b984078dd0bc8a4c.md";
    let text0 = std::fs::read_to_string(target.join(note)).unwrap();
    std::fs::write(target.join(format!("{}.md", "e".repeat(32))), text0).unwrap();
    std::fs::remove_file(target.join(note)).unwrap();
    std::fs::create_dir(target.join(note)).unwrap();
    let snaps = tmp.path().join("snaps");
    let o = jr(&[
        "restore",
        jex,
        "--target",
        &t,
        "--mode",
        "clear-first",
        "--yes",
        "--retries",
        "0",
        "--snapshot-dir",
        snaps.to_str().unwrap(),
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("The target was cleared first (all or part of it); the snapshot")
            && text(&o).contains(snaps.to_str().unwrap()),
        "{}",
        text(&o)
    );
}
