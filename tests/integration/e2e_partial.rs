//! Partial restore into a live target (`--only`), judged by the real Joplin CLI.

use crate::support;

use std::collections::BTreeMap;

use support::joplin::{assert_manifest_eq, Profile};
use support::{jr_ok, sample_jex, sample_manifest, tree_hashes};

#[test]
fn a_deleted_notebook_comes_back_and_nothing_else_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    let t = target.to_str().unwrap();
    jr_ok(&[
        "restore",
        sample_jex().to_str().unwrap(),
        "--target",
        t,
        "-q",
    ]);
    let p = Profile::new(tmp.path().join("client"));
    p.use_folder(&target);
    p.sync();
    // One notebook deleted for good (with its notes, attachments' note, tagged notes), one moved
    // to the trash; plus an unrelated new note that the partial restore must not touch.
    p.batch(&[
        "rmbook -f -p Journal".into(),
        "rmbook -f 日本語ノート".into(),
        "use Alpha".into(),
        "mknote \"Written after the backup\"".into(),
    ]);
    p.sync();
    let before: BTreeMap<String, String> = tree_hashes(&target).into_iter().collect();

    let out = jr_ok(&[
        "restore",
        sample_jex().to_str().unwrap(),
        "--target",
        t,
        "--only",
        "notebook:Personal/Journal",
        "--only",
        "notebook:Personal/日本語ノート",
        "--yes",
        "--snapshot-dir",
        tmp.path().join("snaps").to_str().unwrap(),
    ]);
    assert!(
        out.contains("Kept the target's own copy"),
        "the parent notebook stays: {out}"
    );
    let after: BTreeMap<String, String> = tree_hashes(&target).into_iter().collect();
    // The selection: Journal and 日本語ノート with their notes, attachments, tags and links.
    let selected = [
        "33891a5cf6a84c18ab0b4de1404c88b2",
        "334a66b3000143889e50f9c9097c0cc8",
        "7ee20fb52f3c439d9b0cbe6d895d4de4",
        "0006b457342a4b078515990fa709441b",
        "8c9f67d46dce4ef0af0f5826f53330a6",
        "57802a35e45342b38b20b51a9d7004c0",
        "e2a1fd3d4baf4fda81d162843a25cf29",
        "7241f91bc84849938247fa679a076b7b",
        "ab6c66342c45449ea8fc4003803b2378",
    ];
    for (path, hash) in &before {
        if selected.iter().any(|id| path.contains(id)) || path.starts_with("locks") {
            continue;
        }
        if path.ends_with(".md") || path.starts_with(".resource/") {
            assert_eq!(after.get(path), Some(hash), "{path} changed or vanished");
        }
    }
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        if path.ends_with(".md") {
            assert!(
                selected.iter().any(|id| path.contains(id))
                    || sample_manifest()
                        .to_string()
                        .contains(path.trim_end_matches(".md")),
                "unexpected new file {path}"
            );
        }
    }

    p.sync();
    let mut want = sample_manifest();
    // The client keeps its note written after the backup; everything else is the backup again.
    let got = p.manifest();
    let extra: Vec<&serde_json::Value> = got["notes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["title"] == "Written after the backup")
        .collect();
    assert_eq!(extra.len(), 1, "the unrelated note stays, once");
    let mut without = got.clone();
    without["notes"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["title"] != "Written after the backup");
    without["counts"]["notes"] = serde_json::json!(without["notes"].as_array().unwrap().len());
    want["counts"] = without["counts"].clone();
    assert_manifest_eq(&without, &want, "client after the partial restore");
    assert_eq!(got["counts"]["notes"], 11);
}

#[test]
fn dry_run_lists_what_a_partial_restore_adds() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    let t = target.to_str().unwrap();
    jr_ok(&[
        "restore",
        sample_jex().to_str().unwrap(),
        "--target",
        t,
        "-q",
    ]);
    std::fs::remove_file(target.join("2ebc0432f27d42fdb982a925c8734636.md")).unwrap();
    let before = tree_hashes(&target);
    let out = jr_ok(&[
        "restore",
        sample_jex().to_str().unwrap(),
        "--target",
        t,
        "--only",
        "note:Overview",
        "--dry-run",
    ]);
    assert!(
        out.contains("2ebc0432f27d42fdb982a925c8734636 \"Overview\""),
        "{out}"
    );
    assert!(out.contains("delete 0"), "{out}");
    assert!(
        out.contains("dry run: nothing was changed") && !out.contains("Restored:"),
        "{out}"
    );
    assert_eq!(before, tree_hashes(&target));
}

/// The target still has an attachment's resource item but lost its file: `--only` on the note
/// keeps the item (the target's copy) but puts the file back, so `verify` finds the target
/// whole; a bare notebook title selects that notebook, and an ambiguous one asks for a path.
#[test]
fn a_lost_attachment_file_comes_back_with_its_note() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    let t = target.to_str().unwrap();
    let jex = sample_jex();
    let j = jex.to_str().unwrap();
    jr_ok(&["restore", j, "--target", t, "-q"]);
    let blob = target.join(".resource/57802a35e45342b38b20b51a9d7004c0");
    let bytes = std::fs::read(&blob).unwrap();
    std::fs::remove_file(&blob).unwrap();
    let out = jr_ok(&["restore", j, "--target", t, "--only", "note:Attachments"]);
    assert!(out.contains("Kept the target's own copy"), "{out}");
    assert_eq!(std::fs::read(&blob).unwrap(), bytes, "{out}");
    jr_ok(&["verify", j, "--target", t]);

    // "Journal" is Personal/Journal: found by its title alone.
    let out = jr_ok(&[
        "restore",
        j,
        "--target",
        t,
        "--only",
        "Journal",
        "--dry-run",
    ]);
    assert!(out.contains("dry run: nothing was changed"), "{out}");
}

/// The tags of one note, by title, in the client's database.
fn tags_of(p: &Profile, note: &str) -> Vec<String> {
    let mut t: Vec<String> = p
        .query(&format!(
            "SELECT tags.title FROM note_tags JOIN tags ON tags.id = note_tags.tag_id \
             WHERE note_tags.note_id = '{note}' ORDER BY tags.title"
        ))
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    t.dedup();
    t
}

/// `restore SAMPLE --target T ARGS…`, which must succeed; its output.
fn sample_into(t: &str, args: &[&str]) -> String {
    let jex = sample_jex();
    let mut all = vec!["restore", jex.to_str().unwrap(), "--target", t];
    all.extend(args);
    jr_ok(&all)
}

/// As [`sample_into`] with `--json`: the report.
fn sample_into_json(t: &str, args: &[&str]) -> serde_json::Value {
    let jex = sample_jex();
    let mut all = vec!["restore", jex.to_str().unwrap(), "--target", t, "--json"];
    all.extend(args);
    let o = support::jr(&all);
    assert!(o.status.success(), "{}", support::text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

const OPEN_TASK: &str = "fb4361754fce4fa9ab7a4ee9d50fc08b";
const ROADMAP: &str = "7cf9bead95744245a9011f01c8222d5a";

/// A note the target keeps keeps its tags as the user left them: restoring its notebook does
/// not put back a tag the user took off. Naming the tag (`tag:urgent`) does.
#[test]
fn a_kept_note_keeps_its_tags_unless_the_tag_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    let t = target.to_str().unwrap().to_string();
    sample_into(&t, &["-q"]);
    let p = Profile::new(tmp.path().join("client"));
    p.use_folder(&target);
    p.sync();
    p.run(&["tag", "remove", "urgent", OPEN_TASK]);
    p.sync();
    assert!(tags_of(&p, OPEN_TASK).is_empty());

    let out = sample_into(&t, &["--only", "notebook:Personal/Journal", "--yes"]);
    assert!(out.contains("left out 1 note-tag link(s)"), "{out}");
    // The JSON report says the same (a second run: nothing left to write, the link still out).
    let v = sample_into_json(&t, &["--only", "notebook:Personal/Journal", "--yes"]);
    assert_eq!(v["partial"]["left_out_links"], 1, "{v}");
    assert!(v["partial"]["kept"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!(OPEN_TASK)));
    p.sync();
    assert!(
        tags_of(&p, OPEN_TASK).is_empty(),
        "the tag the user took off stays off"
    );
    assert_eq!(tags_of(&p, "0006b457342a4b078515990fa709441b").len(), 2);

    sample_into(&t, &["--only", "tag:urgent", "--yes"]);
    p.sync();
    assert_eq!(tags_of(&p, OPEN_TASK), ["urgent"], "a named tag goes back");
}

/// A target with its own tag of a backup tag's title (another id, another case): the restored
/// note gets the target's tag, as Joplin's own import does, and no client shows two.
#[test]
fn a_tag_the_target_has_by_title_is_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    let t = target.to_str().unwrap().to_string();
    let p = Profile::new(tmp.path().join("client"));
    p.use_folder(&target);
    p.batch(&[
        "mkbook Home".into(),
        "use Home".into(),
        "mknote Mine".into(),
        "tag add WORK Mine".into(),
    ]);
    p.sync();
    let theirs = p.query("SELECT id FROM tags");
    assert_eq!(theirs.len(), 1);

    let dry = sample_into(&t, &["--only", "note:Roadmap", "-n"]);
    assert!(dry.contains("the target has a tag of that title"), "{dry}");
    let v = sample_into_json(&t, &["--only", "note:Roadmap", "--yes"]);
    assert_eq!(
        v["partial"]["reused_tags"],
        serde_json::json!([{
            "title": "work",
            "backup_id": "b3ef053da1bb4864b6e51293d9730359",
            "target_id": theirs[0][0],
        }]),
        "{v}"
    );
    assert!(
        !target.join("b3ef053da1bb4864b6e51293d9730359.md").exists(),
        "the backup's tag is not written"
    );
    p.sync();
    assert_eq!(
        p.query("SELECT id FROM tags"),
        theirs,
        "one tag of that title"
    );
    assert_eq!(tags_of(&p, ROADMAP), ["WORK"]);
    // A second run finds everything in place.
    let again = sample_into(&t, &["--only", "note:Roadmap", "--yes"]);
    assert!(again.contains("upload 0 files"), "{again}");
    // --overwrite writes the note and its link again, still to the target's tag.
    sample_into(&t, &["--only", "note:Roadmap", "--overwrite", "--yes"]);
    p.sync();
    assert_eq!(p.query("SELECT id FROM tags"), theirs);
    assert_eq!(tags_of(&p, ROADMAP), ["WORK"]);
}

/// The target renamed one of the backup's own tags (same id) to the title of a backup tag it
/// no longer has: that renamed tag is the one of that title, and a fresh client shows one.
#[test]
fn a_tag_renamed_on_the_target_is_found_by_its_new_title() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    let t = target.to_str().unwrap().to_string();
    sample_into(&t, &["-q"]);
    // "urgent" (7241…) renamed "WORK"; "work" (b3ef…) and Roadmap's link to it deleted.
    let urgent = target.join("7241f91bc84849938247fa679a076b7b.md");
    let text = std::fs::read_to_string(&urgent).unwrap();
    std::fs::write(&urgent, text.replacen("urgent\n", "WORK\n", 1)).unwrap();
    for f in [
        "b3ef053da1bb4864b6e51293d9730359.md",
        "392ebac8e2c84f1dada91adf852e2069.md",
    ] {
        std::fs::remove_file(target.join(f)).unwrap();
    }
    let out = sample_into(&t, &["--only", "note:Roadmap", "--overwrite", "--yes"]);
    assert!(out.contains("7241f91bc84849938247fa679a076b7b"), "{out}");
    assert!(!target.join("b3ef053da1bb4864b6e51293d9730359.md").exists());
    let p = Profile::new(tmp.path().join("client"));
    p.use_folder(&target);
    p.sync();
    assert_eq!(
        p.query("SELECT title FROM tags WHERE lower(title) = 'work'"),
        [["WORK".to_string()]]
    );
    assert_eq!(tags_of(&p, ROADMAP), ["WORK"]);
}

/// A note the user edited after the backup and then moved to the trash comes back as the
/// target holds it (the edit kept, out of the trash) by `--only note:…`; `--overwrite` puts
/// the backup's version instead. (It came back as the backup's version, the edit gone from
/// every client with nothing said.)
#[test]
fn a_note_edited_then_trashed_comes_back_with_the_edit() {
    const NOTE: &str = "3151c3990c044f74b984078dd0bc8a4c";
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    let t = target.to_str().unwrap();
    jr_ok(&[
        "restore",
        sample_jex().to_str().unwrap(),
        "--target",
        t,
        "-q",
    ]);
    let p = Profile::new(tmp.path().join("client"));
    p.use_folder(&target);
    p.sync();
    let row = |p: &Profile| {
        p.query(&format!(
            "SELECT title, body, deleted_time != 0 FROM notes WHERE id = '{NOTE}'"
        ))[0]
            .clone()
    };
    let original = row(&p);
    let title = original[0].clone();
    p.batch(&[
        format!("set {NOTE} body \"edited after the backup\""),
        format!("rmnote -f {NOTE}"),
    ]);
    p.sync();
    assert_eq!(row(&p)[2], "1", "the note is in the trash");
    let only = format!("note:{title}");
    let (jex, snaps) = (sample_jex(), tmp.path().join("snaps"));
    let restore = |extra: &[&str]| {
        let mut args = vec![
            "restore",
            jex.to_str().unwrap(),
            "--target",
            t,
            "--only",
            &only,
            "--yes",
            "--snapshot-dir",
            snaps.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        jr_ok(&args)
    };
    let dry = restore(&["--dry-run"]);
    assert!(dry.contains("come back as the target holds them"), "{dry}");
    let out = restore(&[]);
    assert!(out.contains("come back as the target holds them"), "{out}");
    p.sync();
    assert_eq!(
        row(&p),
        vec![title.clone(), "edited after the backup".into(), "0".into()]
    );
    // The backup's own version, asked for.
    p.batch(&[format!("rmnote -f {NOTE}")]);
    p.sync();
    restore(&["--overwrite"]);
    p.sync();
    assert_eq!(
        row(&p),
        vec![title.clone(), original[1].clone(), "0".into()]
    );
    // Only trashed, not edited: the backup's version comes back, and nothing claims an edit.
    p.batch(&[format!("rmnote -f {NOTE}")]);
    p.sync();
    let out = restore(&[]);
    assert!(!out.contains("come back as the target holds them"), "{out}");
    p.sync();
    assert_eq!(row(&p), vec![title, original[1].clone(), "0".into()]);
}

/// `--rewrite-unchanged` with `--only` and no `--overwrite` would rewrite nothing (a partial
/// restore keeps the target's copies), silently: refused as a usage error saying what to add.
#[test]
fn rewrite_unchanged_with_only_needs_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().join("t");
    let o = support::jr(&[
        "restore",
        sample_jex().to_str().unwrap(),
        "--target",
        t.to_str().unwrap(),
        "--only",
        "notebook:Personal",
        "--rewrite-unchanged",
        "--yes",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", support::text(&o));
    assert!(
        support::text(&o).contains("Add --overwrite"),
        "{}",
        support::text(&o)
    );
    assert!(!t.exists(), "nothing was written");
}
