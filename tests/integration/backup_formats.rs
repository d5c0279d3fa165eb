//! Every layout the Backup plugin writes (and a hand-made zip of one) is read as the same
//! backup: `inspect` shows it, `restore` puts it into a folder target that `verify` and the real
//! Joplin CLI find equal to the sample the sets were made from.

use crate::support;

use std::path::Path;
use std::process::Output;

use support::formats::{layout, password, zip_folder};
use support::joplin::{assert_manifest_eq, Profile};
use support::{jr, jr_env, sample_jex, sample_manifest, text, tree_hashes};

const PASSWORD_ENV: &str = "JOPLIN_RESTORE_BACKUP_PASSWORD";
/// What `inspect` says of the sample profile (examples/sample.jex).
const COUNTS: &str =
    "7 notebooks, 8 notes, 2 to-dos (1 done), 3 tags (4 links), 3 resources (205277 bytes)";
const PROFILE_FILES: &[&str] = &[
    "profile/ (5 files):",
    "keymap-desktop.json (50 bytes)",
    "plugins/com.example.plugin.jpl (10240 bytes)",
    "settings.json (112 bytes)",
    "userchrome.css (27 bytes)",
    "userstyle.css (26 bytes)",
];
/// Every layout in the fixtures; all were made from the sample profile.
const LAYOUTS: &[&str] = &[
    "folder",
    "per-item-7z",
    "one-7z",
    "one-7z-password",
    "per-notebook",
];

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Run with the fixture's archive password in the environment.
fn jr_pw(args: &[&str]) -> Output {
    let pw = password();
    jr_env(args, &[(PASSWORD_ENV, pw.as_str())])
}

fn ok(o: Output, what: &str) -> String {
    assert!(o.status.success(), "{what}:\n{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn inspect_shows_every_layout_with_its_profile_files() {
    for name in LAYOUTS {
        let out = ok(jr_pw(&["inspect", s(&layout(name))]), name);
        assert!(out.contains(COUNTS), "{name}: {out}");
        assert!(out.contains("Validation: no problems"), "{name}: {out}");
        for f in PROFILE_FILES {
            assert!(out.contains(f), "{name}: no {f:?} in\n{out}");
        }
    }
    let folder = ok(jr(&["inspect", s(&layout("folder"))]), "folder");
    assert!(
        folder.contains("2 backup set(s) in this folder"),
        "{folder}"
    );
    assert!(
        folder.contains("    default/202611231200") && folder.contains("2026-11-23 12:00"),
        "{folder}"
    );
    assert!(
        folder.contains("  * default/202611241200"),
        "newest is chosen: {folder}"
    );
    let one = ok(jr(&["inspect", s(&layout("one-7z"))]), "one-7z");
    assert!(one.contains("  * 202611241200.7z"), "{one}");
    let per = ok(jr(&["inspect", s(&layout("per-notebook"))]), "per-notebook");
    assert!(per.contains("6 JEX files (one per notebook)"), "{per}");
    assert!(per.contains("Personal_Projects_Alpha.jex"), "{per}");
    assert!(
        per.contains("recreated it at the top level as \"Personal\""),
        "{per}"
    );
    // One per-item archive stands for its whole set, profile included.
    let item = ok(
        jr(&[
            "inspect",
            s(&layout("per-item-7z").join("all_notebooks.jex.7z")),
        ]),
        "all_notebooks.jex.7z",
    );
    assert!(
        item.contains(COUNTS) && item.contains(PROFILE_FILES[0]),
        "{item}"
    );
}

#[test]
fn unpacked_archives_leave_nothing_in_tmpdir() {
    let tmp = tempfile::tempdir().unwrap();
    let pw = password();
    for name in ["one-7z-password", "per-item-7z"] {
        let o = jr_env(
            &["inspect", s(&layout(name))],
            &[(PASSWORD_ENV, pw.as_str()), ("TMPDIR", s(tmp.path()))],
        );
        ok(o, name);
    }
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn every_layout_restores_into_a_folder_target_and_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    for name in LAYOUTS {
        let target = tmp.path().join(name);
        let out = ok(
            jr_pw(&["restore", s(&layout(name)), "--target", s(&target)]),
            name,
        );
        assert!(
            out.contains("Checked: 27 items and 3 blobs"),
            "{name}: {out}"
        );
        let v = ok(
            jr_pw(&["verify", s(&layout(name)), "--target", s(&target)]),
            name,
        );
        assert!(v.starts_with("OK: 27 items and 3 blobs"), "{name}: {v}");
        // The single-JEX layouts hold the sample itself, byte for byte. (The per-notebook set
        // lacks the note-less `Personal` notebook, recreated with its child's dates: the real
        // client checks it below.)
        if *name != "per-notebook" {
            ok(
                jr(&["verify", s(&sample_jex()), "--target", s(&target)]),
                &format!("{name} against the sample"),
            );
        }
    }
}

fn restore_and_sync(tmp: &Path, backup: &Path, extra: &[&str], env: &[(&str, &str)]) -> Profile {
    let target = tmp.join("target");
    let mut args = vec!["restore", s(backup), "--target", s(&target)];
    args.extend_from_slice(extra);
    let out = ok(jr_env(&args, env), "restore");
    assert!(out.contains("Checked: 27 items and 3 blobs"), "{out}");
    let p = Profile::new(tmp.join("client"));
    p.use_folder(&target);
    p.sync();
    p
}

#[test]
fn password_protected_7z_gives_the_real_client_the_sample() {
    let tmp = tempfile::tempdir().unwrap();
    let pw_file = tmp.path().join("pw.txt");
    // The first line is the password: an editor's blank line after it is not part of it.
    std::fs::write(&pw_file, format!("{}\n\n", password())).unwrap();
    let p = restore_and_sync(
        tmp.path(),
        &layout("one-7z-password").join("JoplinBackup.7z"),
        &["--backup-password-file", s(&pw_file)],
        &[],
    );
    assert_manifest_eq(&p.manifest(), &sample_manifest(), "7z with password");
}

#[test]
fn per_notebook_set_gives_the_real_client_the_whole_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let p = restore_and_sync(tmp.path(), &layout("per-notebook"), &[], &[]);
    assert_manifest_eq(&p.manifest(), &sample_manifest(), "per-notebook set");
}

/// A target already holding the sample, to show a refused restore leaves it as it was.
fn populated_target(tmp: &Path) -> std::path::PathBuf {
    let target = tmp.join("target");
    ok(
        jr(&["restore", s(&sample_jex()), "--target", s(&target)]),
        "seed",
    );
    target
}

fn refused(o: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "should fail:\n{}", text(o));
    for n in needles {
        assert!(err.contains(n), "no {n:?} in:\n{}", text(o));
    }
}

#[test]
fn missing_or_wrong_password_is_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let target = populated_target(tmp.path());
    let before = tree_hashes(&target);
    let archive = layout("one-7z-password").join("JoplinBackup.7z");
    let args = ["restore", s(&archive), "--target", s(&target), "--yes"];

    let none = jr(&args);
    refused(&none, &[s(&archive), "password-protected", PASSWORD_ENV]);
    assert_eq!(none.status.code(), Some(4), "refused: {}", text(&none));

    let wrong = jr_env(&args, &[(PASSWORD_ENV, "not the password")]);
    refused(&wrong, &[s(&archive), "wrong password", PASSWORD_ENV]);
    assert_eq!(wrong.status.code(), Some(4), "refused: {}", text(&wrong));
    assert!(
        !String::from_utf8_lossy(&wrong.stderr).contains("not the password"),
        "the password must never be printed"
    );

    let missing_file = tmp.path().join("no-such-file");
    let o = jr(&[
        "restore",
        s(&archive),
        "--target",
        s(&target),
        "--backup-password-file",
        s(&missing_file),
    ]);
    refused(&o, &[s(&missing_file)]);
    assert_eq!(tree_hashes(&target), before);
}

#[test]
fn corrupt_or_truncated_7z_is_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let target = populated_target(tmp.path());
    let before = tree_hashes(&target);
    let good = std::fs::read(layout("one-7z").join("202611241200.7z")).unwrap();
    let mut flipped = good.clone();
    flipped[5000] ^= 0xff;
    let cases = [
        ("flipped.7z", flipped),
        ("truncated.7z", good[..good.len() / 2].to_vec()),
    ];
    for (name, data) in cases {
        let f = tmp.path().join(name);
        std::fs::write(&f, data).unwrap();
        let o = jr(&["restore", s(&f), "--target", s(&target), "--yes"]);
        refused(&o, &[s(&f), "damaged"]);
    }
    assert_eq!(tree_hashes(&target), before);
}

#[test]
fn hand_made_zip_of_a_set_or_of_the_plugin_folder_restores() {
    let tmp = tempfile::tempdir().unwrap();
    let set_zip = tmp.path().join("set.zip");
    zip_folder(&layout("folder").join("default/202611241200"), &set_zip);
    let out = ok(jr(&["inspect", s(&set_zip)]), "set.zip");
    assert!(
        out.contains(COUNTS) && out.contains(PROFILE_FILES[0]),
        "{out}"
    );
    let target = tmp.path().join("target");
    ok(
        jr(&["restore", s(&set_zip), "--target", s(&target)]),
        "restore set.zip",
    );
    ok(
        jr(&["verify", s(&sample_jex()), "--target", s(&target)]),
        "verify",
    );

    let base_zip = tmp.path().join("base.zip");
    zip_folder(&layout("folder"), &base_zip);
    let out = ok(
        jr(&["inspect", s(&base_zip), "--set", "202611231200"]),
        "base.zip",
    );
    assert!(out.contains("  * default/202611231200"), "{out}");
    // An empty zip says which file it was.
    let empty = tmp.path().join("empty.zip");
    zip_folder(&tmp.path().join("target/locks"), &empty);
    let o = jr(&["inspect", s(&empty)]);
    refused(&o, &["inside", s(&empty)]);
}

#[test]
fn set_option_chooses_a_set_and_unknown_names_are_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let base = layout("folder");
    let out = ok(
        jr(&["inspect", s(&base), "--set", "default/202611231200"]),
        "--set",
    );
    assert!(out.contains("  * default/202611231200"), "{out}");
    let target = tmp.path().join("target");
    ok(
        jr(&[
            "restore",
            s(&base),
            "--set",
            "202611231200",
            "--target",
            s(&target),
        ]),
        "restore --set",
    );
    // Without --set the newest is read, and the run says which.
    let o = jr(&["restore", s(&base), "--target", s(&target), "--yes"]);
    let newest = text(&o);
    assert!(o.status.success(), "{newest}");
    assert!(
        newest
            .contains("backup set default/202611241200 of 2026-11-24 12:00 (2 sets in the folder"),
        "{newest}"
    );
    let o = jr(&["inspect", s(&base), "--set", "2020"]);
    refused(&o, &["no set named \"2020\"", "default/202611241200"]);
    let o = jr(&["inspect", s(&layout("per-notebook")), "--set", "x"]);
    refused(&o, &["--set x", "single backup"]);
}

/// The plugin's folder whose newest set is damaged (a backup cut short by a full disk): the
/// refusal names the older sets and the `--set` that takes the newest intact one, which then
/// restores.
#[test]
fn a_damaged_newest_set_names_the_older_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("JoplinBackup");
    for set in ["202611231200", "202611241200", "202612311200"] {
        std::fs::create_dir_all(base.join("default").join(set)).unwrap();
    }
    let jex = std::fs::read(sample_jex()).unwrap();
    for set in ["202611231200", "202611241200"] {
        std::fs::write(
            base.join("default").join(set).join("all_notebooks.jex"),
            &jex,
        )
        .unwrap();
    }
    std::fs::write(
        base.join("default/202612311200/all_notebooks.jex"),
        &jex[..jex.len() / 2],
    )
    .unwrap();
    let target = populated_target(tmp.path());
    let before = tree_hashes(&target);
    let o = jr(&["restore", s(&base), "--target", s(&target), "--yes"]);
    refused(
        &o,
        &[
            "truncated",
            "newest of the 3 backup sets",
            "try --set default/202611241200",
        ],
    );
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert_eq!(tree_hashes(&target), before);
    ok(
        jr(&[
            "restore",
            s(&base),
            "--set",
            "default/202611241200",
            "--target",
            s(&target),
            "--yes",
        ]),
        "the older set",
    );
}

/// A JEX unpacked and packed again with `tar -cf x.jex .` names its entries `./…`; the Joplin
/// CLI imports it, and so the restore reads it as the same backup (not as an empty one).
#[test]
fn jex_repacked_with_dot_slash_names_is_the_same_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let dot = tmp.path().join("dot.jex");
    {
        let mut src = tar::Archive::new(std::fs::File::open(sample_jex()).unwrap());
        let mut out = tar::Builder::new(std::fs::File::create(&dot).unwrap());
        for e in src.entries().unwrap() {
            let mut e = e.unwrap();
            // Written into the header by hand: the tar crate's path setters drop `./`.
            let name = format!("./{}", e.path().unwrap().display());
            let mut h = e.header().clone();
            let field = &mut h.as_old_mut().name;
            field.fill(0);
            field[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            out.append(&h, &mut e).unwrap();
        }
        out.finish().unwrap();
    }
    let out = ok(jr(&["inspect", s(&dot)]), "inspect");
    assert!(out.contains(COUNTS), "{out}");
    assert!(!out.contains("ignoring"), "{out}");
    let p = restore_and_sync(tmp.path(), &dot, &[], &[]);
    assert_manifest_eq(&p.manifest(), &sample_manifest(), "./-named JEX");
}

/// 7-Zip's `-p` without `-mhe` encrypts the contents but not the list of names: such an
/// archive opens without a password and fails at its first entry. The password is then asked
/// for (here: from the environment) and the backup reads; without one the refusal says how to
/// give it.
#[test]
fn password_7z_with_plain_headers_asks_for_the_password() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("plain-headers.7z");
    let o = std::process::Command::new("7z")
        .args(["a", "-mhe=off", "-pSecret 42"])
        .arg(&archive)
        .arg(sample_jex())
        .output()
        .expect("7z (p7zip-full) is installed by scripts/install-test-deps.sh");
    assert!(o.status.success(), "{}", text(&o));
    let none = jr(&["inspect", s(&archive)]);
    assert!(!none.status.success(), "{}", text(&none));
    assert!(
        text(&none).contains("password-protected") && text(&none).contains(PASSWORD_ENV),
        "{}",
        text(&none)
    );
    let out = ok(
        jr_env(&["inspect", s(&archive)], &[(PASSWORD_ENV, "Secret 42")]),
        "inspect with the password",
    );
    assert!(out.contains(COUNTS), "{out}");
    let wrong = jr_env(&["inspect", s(&archive)], &[(PASSWORD_ENV, "nope")]);
    assert!(text(&wrong).contains("wrong password"), "{}", text(&wrong));
}

/// A per-notebook set lacks the note-less `Personal` notebook, which the restore makes up from
/// the file names. A target that holds the real one keeps it (it was replaced by the made-up
/// copy: icon gone, dates changed), and the restore still checks out. The notebook above it
/// on the target (note-less too, so in no file of the set) stays as well: deleting it would
/// leave `Personal` under a parent that is gone.
#[test]
fn per_notebook_set_keeps_the_targets_real_copy_of_a_recreated_notebook() {
    let tmp = tempfile::tempdir().unwrap();
    let target = populated_target(tmp.path());
    let personal = target.join("c92807ad73ea40938d12cd5a105b5efe.md");
    let text = std::fs::read_to_string(&personal).unwrap();
    assert!(text.contains("\nicon: \n"), "{text}");
    assert!(text.contains("\nparent_id: \n"), "{text}");
    // `Archive`, above `Personal` on the target.
    const ARCHIVE: &str = "a4c41e0000000000000000000000a4c4";
    let archive = target.join(format!("{ARCHIVE}.md"));
    let archive_text = text.replacen("Personal\n", "Archive\n", 1).replace(
        "id: c92807ad73ea40938d12cd5a105b5efe",
        &format!("id: {ARCHIVE}"),
    );
    std::fs::write(&archive, &archive_text).unwrap();
    let with_icon = text
        .replace("\nicon: \n", "\nicon: {\"emoji\":\"📓\"}\n")
        .replace("\nparent_id: \n", &format!("\nparent_id: {ARCHIVE}\n"));
    std::fs::write(&personal, &with_icon).unwrap();
    let out = ok(
        jr(&[
            "restore",
            s(&layout("per-notebook")),
            "--target",
            s(&target),
            "--yes",
        ]),
        "per-notebook over the sample",
    );
    assert_eq!(
        std::fs::read_to_string(&personal).unwrap(),
        with_icon,
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(&archive).ok().as_deref(),
        Some(archive_text.as_str()),
        "{out}"
    );
    ok(
        jr(&["verify", s(&layout("per-notebook")), "--target", s(&target)]),
        "verify",
    );
}

/// The folder chosen in the plugin's settings (the one it makes `JoplinBackup/` in) is found
/// too: `inspect` lists its sets, `--set` takes a set's name with or without the prefix,
/// several profiles' sets still need `--set`, and the restore is the sample.
#[test]
fn the_folder_chosen_in_the_plugin_settings_is_searched() {
    let parent = layout("folder").parent().unwrap().to_path_buf();
    let out = ok(jr(&["inspect", s(&parent)]), "folder's parent");
    assert!(
        out.contains("2 backup set(s) in this folder")
            && out.contains("  * JoplinBackup/default/202611241200")
            && out.contains(COUNTS),
        "{out}"
    );
    let older = ok(
        jr(&["inspect", s(&parent), "--set", "default/202611231200"]),
        "--set without the prefix",
    );
    assert!(
        older.contains("Reading set JoplinBackup/default/202611231200"),
        "{older}"
    );

    // A second profile's sets beside the first.
    let tmp = tempfile::tempdir().unwrap();
    let two = tmp.path().join("backups");
    let from = layout("folder").join("default/202611241200");
    let copy = |to: &Path| {
        for e in walk(&from) {
            let rel = e.strip_prefix(&from).unwrap();
            let dest = to.join(rel);
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(&e, &dest).unwrap();
        }
    };
    copy(&two.join("JoplinBackup/default/202611241200"));
    copy(&two.join("JoplinBackup/profile-abc/202611251200"));
    let o = jr(&["inspect", s(&two)]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("several Joplin profiles") && text(&o).contains("--set"),
        "{}",
        text(&o)
    );
    let target = tmp.path().join("target");
    ok(
        jr(&[
            "restore",
            s(&two),
            "--set",
            "profile-abc/202611251200",
            "--target",
            s(&target),
            "-q",
        ]),
        "restore with --set",
    );
    ok(
        jr(&["verify", s(&sample_jex()), "--target", s(&target)]),
        "verify",
    );
}

/// Every file below `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Sets of the plugin before 0.4.1 kept keymap and CSS at the set's top level, without a
/// `profile/` folder: `inspect` lists them (as `client customise` finds them), not the JEX.
#[test]
fn inspect_lists_the_customisations_of_a_set_without_profile_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let set = tmp.path().join("202001011200");
    std::fs::create_dir_all(&set).unwrap();
    std::fs::copy(sample_jex(), set.join("all_notebooks.jex")).unwrap();
    std::fs::write(set.join("keymap-desktop.json"), "[]").unwrap();
    std::fs::write(set.join("userchrome.css"), "body {}").unwrap();
    let out = ok(jr(&["inspect", s(&set)]), "old set");
    assert!(out.contains("profile/ (2 files):"), "{out}");
    assert!(out.contains("keymap-desktop.json (2 bytes)"), "{out}");
    assert!(!out.contains("all_notebooks.jex ("), "{out}");
}

/// Run 7-Zip in `dir` (the Backup plugin's own archiver makes the same archives).
fn seven_zip(dir: &Path, args: &[&str]) {
    let o = std::process::Command::new("7z")
        .current_dir(dir)
        .args(["a", "-bd"])
        .args(args)
        .output()
        .expect("7z (p7zip-full) is installed by scripts/install-test-deps.sh");
    assert!(o.status.success(), "7z {args:?}: {}", text(&o));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// The plugin's `exportFormat = raw` keeps the notes as Joplin's RAW export (`notes/`: the
/// `<id>.md` items and `resources/` a JEX holds, unpacked), IDs included: every layout of it
/// restores like a JEX. The RAW export is made by the real CLI, from a profile that imported
/// the sample (so with ids of its own); a fresh client syncing the restored folder holds that
/// profile's content under the same ids, and the RAW sets verify against the CLI's own JEX.
#[test]
fn raw_export_sets_restore_with_their_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let owner = Profile::new(tmp.path().join("owner"));
    owner.run(&["import", s(&sample_jex())]);
    let raw = tmp.path().join("raw");
    owner.run(&["export", "--format", "raw", s(&raw)]);
    let jex = tmp.path().join("owner.jex");
    owner.run(&["export", "--format", "jex", s(&jex)]);
    let profile = layout("folder").join("default/202611241200/profile");

    // "no" zip: the set folder holds `notes/` and `profile/`.
    let set = tmp.path().join("plain/JoplinBackup/202612071200");
    copy_dir(&raw, &set.join("notes"));
    copy_dir(&profile, &set.join("profile"));
    // "yes": one archive per entry, their files at the archive's root.
    let per_item = tmp.path().join("per-item/JoplinBackup/202612071200");
    std::fs::create_dir_all(&per_item).unwrap();
    seven_zip(&raw, &[s(&per_item.join("notes.7z")), "."]);
    seven_zip(&profile, &[s(&per_item.join("profile.7z")), "."]);
    // "yesone": the whole set in one archive.
    let one = tmp.path().join("JoplinBackup.7z");
    seven_zip(&set, &[s(&one), "notes", "profile"]);

    let layouts = [
        (tmp.path().join("plain/JoplinBackup"), "202612071200/notes"),
        (per_item.clone(), "202612071200/notes.7z"),
        (one.clone(), "JoplinBackup.7z → notes"),
        (raw.clone(), "raw"),
    ];
    for (i, (backup, shown)) in layouts.iter().enumerate() {
        let out = ok(jr(&["inspect", s(backup)]), shown);
        assert!(
            out.contains("RAW export format") && out.contains(shown),
            "{shown}: {out}"
        );
        assert!(out.contains(COUNTS), "{shown}: {out}");
        assert!(out.contains("Validation: no problems"), "{shown}: {out}");
        if *backup != raw {
            assert!(out.contains("profile/ (5 files):"), "{shown}: {out}");
        }
        let target = tmp.path().join(format!("target{i}"));
        let restored = ok(jr(&["restore", s(backup), "--target", s(&target)]), shown);
        assert!(
            restored.contains("Checked: 27 items and 3 blobs"),
            "{shown}: {restored}"
        );
        // The RAW export holds what the CLI's JEX of the same profile holds.
        ok(jr(&["verify", s(&jex), "--target", s(&target)]), shown);
    }
    let client = Profile::new(tmp.path().join("client"));
    client.use_folder(&tmp.path().join("target0"));
    client.sync();
    assert_manifest_eq(&client.manifest(), &owner.manifest(), "RAW set");
}

/// The Markdown + Front Matter format keeps no ids: such a set is refused by name, saying
/// which formats restore, and nothing is written.
#[test]
fn markdown_export_sets_are_refused_with_the_formats_that_restore() {
    let tmp = tempfile::tempdir().unwrap();
    let owner = Profile::new(tmp.path().join("owner"));
    owner.run(&["import", s(&sample_jex())]);
    let set = tmp.path().join("JoplinBackup/202612071200");
    owner.run(&[
        "export",
        "--format",
        "md_frontmatter",
        s(&set.join("notes")),
    ]);
    let target = tmp.path().join("target");
    let o = jr(&[
        "restore",
        s(&tmp.path().join("JoplinBackup")),
        "--target",
        s(&target),
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("Markdown + Front Matter") && t.contains("no IDs") && t.contains("RAW"),
        "{t}"
    );
    assert!(!target.exists(), "nothing written: {t}");
    // The export folder itself (a plain `joplin export --format md_frontmatter`): the same
    // reason, not "holds no backup".
    let o = jr(&["inspect", s(&set.join("notes"))]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(4), "{t}");
    assert!(
        t.contains("holds Markdown files") && t.contains("no IDs") && t.contains("RAW"),
        "{t}"
    );
}

/// Set a file's modification time (a set's date when its name spells none).
fn set_mtime(file: &Path, when: &str) {
    let t = chrono::NaiveDateTime::parse_from_str(when, "%Y-%m-%d %H:%M").unwrap();
    let f = std::fs::File::options().write(true).open(file).unwrap();
    f.set_modified(t.and_utc().into()).unwrap();
}

/// Sets named without a date (`backupSetName` = a word) are dated by their files' times: a
/// zip or 7z of the whole backup folder keeps those times through the unpacking (they read
/// "now" there before, and the older set could be restored), and the newest is chosen.
#[test]
fn archives_of_the_backup_folder_keep_the_sets_file_times() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("JoplinBackup");
    let from = layout("folder").join("default/202611241200");
    for (set, when) in [
        ("Tuesday", "2026-12-01 12:00"),
        ("Monday", "2026-11-30 12:00"),
    ] {
        copy_dir(&from, &base.join(set));
        set_mtime(&base.join(set).join("all_notebooks.jex"), when);
    }
    let zip = tmp.path().join("all.zip");
    zip_folder(&base, &zip);
    seven_zip(tmp.path(), &[s(&tmp.path().join("all.7z")), "JoplinBackup"]);
    for archive in [zip, tmp.path().join("all.7z")] {
        let out = ok(jr(&["inspect", s(&archive)]), s(&archive));
        let chosen: Vec<&str> = out.lines().filter(|l| l.starts_with("  * ")).collect();
        assert!(
            chosen.len() == 1 && chosen[0].contains("Tuesday") && chosen[0].contains("(file time)"),
            "{out}"
        );
        assert!(
            out.contains("2026-11-30") || out.contains("2026-12-01"),
            "{out}"
        );
    }
}

/// What is not a usable RAW set says what it is: a zipped RAW export restores like the folder;
/// an empty `notes/` is no Markdown export; a sync target given as the backup is named one.
#[test]
fn raw_exports_zipped_empty_or_mistaken_for_a_target() {
    let tmp = tempfile::tempdir().unwrap();
    let owner = Profile::new(tmp.path().join("owner"));
    owner.run(&["import", s(&sample_jex())]);
    let raw = tmp.path().join("raw");
    owner.run(&["export", "--format", "raw", s(&raw)]);
    let zip = tmp.path().join("raw.zip");
    zip_folder(&raw, &zip);
    let out = ok(jr(&["inspect", s(&zip)]), "zipped RAW export");
    assert!(
        out.contains("RAW export format") && out.contains(COUNTS),
        "{out}"
    );

    let empty = tmp.path().join("JoplinBackup/202612071200");
    std::fs::create_dir_all(empty.join("notes/resources")).unwrap();
    let o = jr(&["inspect", s(&empty)]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("holds no notes"), "{}", text(&o));

    let target = tmp.path().join("target");
    ok(jr(&["restore", s(&raw), "--target", s(&target)]), "restore");
    let o = jr(&["inspect", s(&target)]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(
        text(&o).contains("is a Joplin sync target, not a backup") && text(&o).contains("export"),
        "{}",
        text(&o)
    );
}
