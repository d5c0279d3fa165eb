//! `export` (server-side JEX) and `diff`, judged by the real Joplin CLI.

use crate::support;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::joplin::Profile;
use support::{jr, jr_ok, sample_jex, text};

/// A profile's content without ids (a JEX import gives new ones): notebooks by path, notes by
/// notebook path and title with bodies whose `:/id` links are blanked, tags, attachments.
fn shape(p: &Profile) -> Value {
    let folders = p.query("SELECT id, parent_id, title FROM folders WHERE deleted_time = 0");
    let path_of = |mut id: String| {
        let mut parts = Vec::new();
        for _ in 0..64 {
            let Some(f) = folders.iter().find(|f| f[0] == id) else {
                break;
            };
            parts.push(f[2].clone());
            id = f[1].clone();
        }
        parts.reverse();
        parts.join("/")
    };
    let link = regex::Regex::new(r":/[0-9a-fA-F]{32}").unwrap();
    let mut notebooks: Vec<String> = folders.iter().map(|f| path_of(f[0].clone())).collect();
    notebooks.sort();
    let tag_rows = p.query("SELECT id, title FROM tags");
    let links = p.query("SELECT note_id, tag_id FROM note_tags");
    let mut notes: Vec<Value> = p
        .query("SELECT id, parent_id, title, body, is_todo, todo_completed FROM notes WHERE is_conflict = 0 AND deleted_time = 0")
        .into_iter()
        .map(|n| {
            let mut tags: Vec<String> = links
                .iter()
                .filter(|l| l[0] == n[0])
                .filter_map(|l| tag_rows.iter().find(|t| t[0] == l[1]).map(|t| t[1].clone()))
                .collect();
            tags.sort();
            json!({
                "notebook": path_of(n[1].clone()),
                "title": n[2],
                "body": hex::encode(Sha256::digest(link.replace_all(&n[3], ":/ID").as_bytes())),
                "todo": [n[4], if n[5] == "0" { "0" } else { "1" }],
                "tags": tags,
            })
        })
        .collect();
    notes.sort_by_key(|n| n.to_string());
    let mut resources: Vec<Value> = p
        .query("SELECT id, title, mime, file_extension FROM resources")
        .into_iter()
        .map(|r| {
            // Where Joplin keeps the blob: the JEX naming, minus `resources/`.
            let name = joplin_restore::blob_name::jex_blob_name(&r[0], &r[3], &r[2]);
            let blob = std::fs::read(p.dir.join(name)).unwrap_or_default();
            json!({"title": r[1], "mime": r[2], "sha256": hex::encode(Sha256::digest(&blob))})
        })
        .collect();
    resources.sort_by_key(|r| r.to_string());
    let mut tags: Vec<String> = tag_rows.iter().map(|t| t[1].clone()).collect();
    tags.sort();
    json!({"notebooks": notebooks, "notes": notes, "resources": resources, "tags": tags})
}

#[test]
fn export_of_a_target_a_real_client_filled_imports_back_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    // The real client fills the target with its own serialisation (its import gives new ids).
    let src = Profile::new(tmp.path().join("src"));
    src.run(&["import", "--format", "jex", sample_jex().to_str().unwrap()]);
    src.use_folder(&target);
    src.sync();
    // Something in the trash: it must not be exported. And an attachment whose file name has
    // no extension: Joplin keeps it as `<id>.bin` (from its MIME type), and its import looks
    // for it under that name only.
    let no_ext = tmp.path().join("Makefile");
    std::fs::write(&no_ext, "all:\n\techo restored\n").unwrap();
    src.batch(&[
        "use Journal".into(),
        "mknote \"Trashed later\"".into(),
        "rmnote -f \"Trashed later\"".into(),
        "mknote \"Build notes\"".into(),
        format!("attach \"Build notes\" \"{}\"", no_ext.display()),
    ]);
    src.sync();
    let want = shape(&src);
    let attached = want["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["title"] == "Makefile")
        .cloned()
        .expect("the client did not attach the file");
    assert_eq!(
        attached["sha256"],
        hex::encode(Sha256::digest(std::fs::read(&no_ext).unwrap())),
        "{attached}"
    );

    let out_jex = tmp.path().join("server-side.jex");
    let out = jr_ok(&[
        "export",
        "--target",
        target.to_str().unwrap(),
        out_jex.to_str().unwrap(),
    ]);
    assert!(out.contains("Left out: 1 in the trash"), "{out}");
    // What we wrote is a valid, clean JEX by our own validator too.
    let inspect = jr_ok(&["inspect", out_jex.to_str().unwrap()]);
    assert!(inspect.contains("Validation: no problems"), "{inspect}");

    let dst = Profile::new(tmp.path().join("dst"));
    dst.run(&["import", "--format", "jex", out_jex.to_str().unwrap()]);
    assert_eq!(shape(&dst), want);
}

#[test]
fn export_refuses_to_overwrite_and_to_read_a_non_target() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("x.jex");
    std::fs::write(&out, "keep me").unwrap();
    let o = jr(&[
        "export",
        "--target",
        tmp.path().to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(4), "refused: {}", text(&o));
    assert!(text(&o).contains("--overwrite"), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "keep me");
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let o = jr(&[
        "export",
        "--target",
        empty.to_str().unwrap(),
        tmp.path().join("y.jex").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("nothing to export"), "{}", text(&o));
    // A JEX into a folder that does not exist: the folder is named, before any reading.
    let nowhere = tmp.path().join("no-such-dir").join("z.jex");
    let o = jr(&[
        "export",
        "--target",
        empty.to_str().unwrap(),
        nowhere.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("the folder") && text(&o).contains("no-such-dir does not exist"),
        "{}",
        text(&o)
    );
}

#[test]
fn diff_lists_added_changed_and_removed_by_title() {
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
    let o = jr(&["diff", sample_jex().to_str().unwrap(), "--target", t]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("exactly the backup"));
    // Remove one note, edit another, add a stray one.
    std::fs::remove_file(target.join("2ebc0432f27d42fdb982a925c8734636.md")).unwrap();
    let p = target.join("3151c3990c044f74b984078dd0bc8a4c.md");
    let edited = std::fs::read_to_string(&p)
        .unwrap()
        .replacen("Café ☕ notes", "Renamed", 1);
    std::fs::write(&p, edited).unwrap();
    let stray = std::fs::read_to_string(target.join("7cf9bead95744245a9011f01c8222d5a.md"))
        .unwrap()
        .replace(
            "7cf9bead95744245a9011f01c8222d5a",
            "0123456789abcdef0123456789abcdef",
        )
        .replacen("Roadmap", "Stray note", 1);
    std::fs::write(target.join("0123456789abcdef0123456789abcdef.md"), stray).unwrap();
    let o = jr(&["diff", sample_jex().to_str().unwrap(), "--target", t]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("1 added by a restore"), "{out}");
    assert!(out.contains("\"Overview\""), "{out}");
    assert!(out.contains("1 changed by a restore"), "{out}");
    assert!(out.contains("\"Café ☕ notes\"): title"), "{out}");
    assert!(out.contains("1 removed by a restore"), "{out}");
    assert!(out.contains("\"Stray note\""), "{out}");
    // A dry run names what it would delete by title too.
    let out = jr_ok(&[
        "restore",
        sample_jex().to_str().unwrap(),
        "--target",
        t,
        "--dry-run",
    ]);
    assert!(
        out.contains("delete (1):\n  note 0123456789abcdef0123456789abcdef (\"Stray note\")"),
        "{out}"
    );
}

/// `diff` against an end-to-end encrypted target, with the master password: what a restore
/// would remove is named by its decrypted title, not only its id.
#[test]
fn diff_of_an_encrypted_target_names_what_goes_by_title() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    let fixture = support::repo().join("tests/fixtures/e2ee-target");
    let o = std::process::Command::new("cp")
        .args(["-a", fixture.to_str().unwrap(), target.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(o.success());
    let o = support::jr_env(
        &[
            "diff",
            sample_jex().to_str().unwrap(),
            "--target",
            target.to_str().unwrap(),
        ],
        &[(
            "JOPLIN_RESTORE_MASTER_PASSWORD",
            "correct horse battery staple",
        )],
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(out.contains("(\"Encrypted note\")"), "{out}");
}

/// `export` of the end-to-end encrypted target the real Joplin CLI wrote: with the master
/// password every item and blob is decrypted into a plaintext JEX equal to the same profile's
/// own plaintext export, and the real CLI imports it.
#[test]
fn export_of_an_encrypted_target_decrypts_everything() {
    use joplin_restore::backup::Backup;
    let tmp = tempfile::tempdir().unwrap();
    let fixtures = support::repo().join("tests/fixtures");
    let out = tmp.path().join("plain.jex");
    let target = fixtures.join("e2ee-target");
    let before = support::tree_hashes(&target);
    // Without the password: refused, nothing written.
    let o = support::jr(&[
        "export",
        "--target",
        target.to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("master password"), "{}", text(&o));
    // Only restore has --allow-plaintext: export does not suggest it.
    assert!(!text(&o).contains("--allow-plaintext"), "{}", text(&o));
    assert!(!out.exists());
    let o = support::jr_env(
        &[
            "export",
            "--target",
            target.to_str().unwrap(),
            out.to_str().unwrap(),
        ],
        &[(
            "JOPLIN_RESTORE_MASTER_PASSWORD",
            "correct horse battery staple",
        )],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        before,
        support::tree_hashes(&target),
        "export must not write to the target"
    );

    let got = Backup::open(&out).unwrap();
    let want = Backup::open(&fixtures.join("e2ee-source.jex")).unwrap();
    assert_eq!(got.items.len(), want.items.len());
    for w in &want.items {
        let g = got
            .items
            .iter()
            .find(|g| g.id() == w.id())
            .unwrap_or_else(|| panic!("{} missing from the export", w.id()));
        let (g, w) = (got.item(g).unwrap(), want.item(w).unwrap());
        assert!(
            g.same_content(&w),
            "{} differs: {:?}",
            w.id(),
            g.differing_fields(&w)
        );
    }
    for id in want.blobs.keys() {
        assert_eq!(
            got.read_blob(id).unwrap(),
            want.read_blob(id).unwrap(),
            "blob {id}"
        );
    }
    let p = Profile::new(tmp.path().join("dst"));
    p.run(&["import", "--format", "jex", out.to_str().unwrap()]);
    let notes = p.query("SELECT title, body FROM notes");
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0][0], "Encrypted note");
}

/// A target where a client turned E2EE off: info.json says off, but what that client did not
/// change stays encrypted (Joplin re-uploads only what it changes). `export` with the master
/// password decrypts those too; without it, it refuses and writes nothing (it exported the
/// plain items alone, leaving out the encrypted attachment their note still links, and said
/// nothing).
#[test]
fn export_of_a_target_with_e2ee_turned_off_decrypts_what_stayed_encrypted() {
    use joplin_restore::backup::Backup;
    let tmp = tempfile::tempdir().unwrap();
    let fixtures = support::repo().join("tests/fixtures");
    let target = tmp.path().join("target");
    let o = std::process::Command::new("cp")
        .args([
            "-a",
            fixtures.join("e2ee-target").to_str().unwrap(),
            target.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(o.success());
    let info_path = target.join("info.json");
    let mut info: Value = serde_json::from_slice(&std::fs::read(&info_path).unwrap()).unwrap();
    info["e2ee"]["value"] = json!(false);
    std::fs::write(&info_path, info.to_string()).unwrap();
    // The client re-uploaded the note it decrypted, in clear.
    let want = Backup::open(&fixtures.join("e2ee-source.jex")).unwrap();
    let note = want
        .items
        .iter()
        .find(|bi| bi.item_type() == joplin_restore::item::ItemType::Note)
        .unwrap();
    std::fs::write(
        target.join(format!("{}.md", note.id())),
        want.raw(note).unwrap(),
    )
    .unwrap();

    let out = tmp.path().join("out.jex");
    let args = [
        "export",
        "--target",
        target.to_str().unwrap(),
        out.to_str().unwrap(),
    ];
    let o = jr(&args);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(
        text(&o).contains("still end-to-end encrypted although E2EE is turned off"),
        "{}",
        text(&o)
    );
    assert!(!out.exists());
    // A password meant for another target is said not to open the key; the refusal stands.
    let o = support::jr_env(&args, &[("JOPLIN_RESTORE_MASTER_PASSWORD", "not this one")]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(
        text(&o).contains("does not open its old key"),
        "{}",
        text(&o)
    );
    let o = support::jr_env(
        &args,
        &[(
            "JOPLIN_RESTORE_MASTER_PASSWORD",
            "correct horse battery staple",
        )],
    );
    assert!(o.status.success(), "{}", text(&o));
    let got = Backup::open(&out).unwrap();
    assert_eq!(got.items.len(), want.items.len());
    for id in want.blobs.keys() {
        assert_eq!(
            got.read_blob(id).unwrap(),
            want.read_blob(id).unwrap(),
            "blob {id}"
        );
    }
}
