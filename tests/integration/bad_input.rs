//! The bad-input corpus: every case gets a clear error naming what is wrong, and the target is
//! byte-identical before and after (nothing is written before the whole backup validated).

use crate::support;

use std::path::{Path, PathBuf};

use support::{jr, jr_ok, sample_jex, text, tree_hashes};

/// The sample's entries, in order: (name, bytes).
fn sample_entries() -> Vec<(String, Vec<u8>)> {
    let mut a = tar::Archive::new(std::fs::File::open(sample_jex()).unwrap());
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            (name, data)
        })
        .collect()
}

/// One tar header block with a raw name (no sanitising, so we can write hostile names).
fn header(name: &str, size: u64, kind: tar::EntryType, link: &str) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    {
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    h.set_size(size);
    h.set_mode(0o644);
    h.set_entry_type(kind);
    h.set_cksum();
    h
}

fn tar_bytes(entries: &[(String, Vec<u8>)], extra: &[(tar::Header, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let h = header(name, data.len() as u64, tar::EntryType::Regular, "");
        b.append(&h, data.as_slice()).unwrap();
    }
    for (h, data) in extra {
        b.append(h, data.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

fn replace(entries: &mut [(String, Vec<u8>)], name: &str, f: impl Fn(&str) -> String) {
    let e = entries.iter_mut().find(|(n, _)| n == name).unwrap();
    e.1 = f(std::str::from_utf8(&e.1).unwrap()).into_bytes();
}

const NOTE: &str = "7cf9bead95744245a9011f01c8222d5a.md";
const TAG: &str = "7241f91bc84849938247fa679a076b7b.md";
const RESOURCE: &str = "8c9f67d46dce4ef0af0f5826f53330a6.md";
const BLOB: &str = "resources/8c9f67d46dce4ef0af0f5826f53330a6.txt";

/// A target that already holds the sample (so an accidental write would show).
fn filled_target(dir: &Path) -> PathBuf {
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

/// Restore `backup` into a filled target; assert it fails, mentions every `needles`, and left
/// the target untouched.
fn refuses(case: &str, backup: &[u8], needles: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let target = filled_target(dir.path());
    let file = dir.path().join(format!("{case}.jex"));
    std::fs::write(&file, backup).unwrap();
    let snaps = dir.path().join("snaps");
    let code = restore_is_refused(case, &file, &target, &snaps, needles);
    // A backup that is damaged or has problems is refused (4), as the README says.
    assert_eq!(code, Some(4), "{case}");
    assert!(!snaps.exists(), "{case}: no snapshot before validation");
}

/// Restore `backup` into `target`; assert it fails, mentions every `needles`, and left the
/// target untouched.
fn restore_is_refused(
    case: &str,
    backup: &Path,
    target: &Path,
    snaps: &Path,
    needles: &[&str],
) -> Option<i32> {
    let before = tree_hashes(target);
    let o = jr(&[
        "restore",
        backup.to_str().unwrap(),
        "--target",
        target.to_str().unwrap(),
        "--yes",
        "--snapshot-dir",
        snaps.to_str().unwrap(),
    ]);
    let out = text(&o);
    assert!(!o.status.success(), "{case}: restore must fail:\n{out}");
    for n in needles {
        assert!(
            out.contains(n),
            "{case}: the error must mention {n:?}:\n{out}"
        );
    }
    assert_eq!(before, tree_hashes(target), "{case}: the target changed");
    o.status.code()
}

#[test]
fn truncated_jex() {
    let data = std::fs::read(sample_jex()).unwrap();
    refuses("truncated", &data[..data.len() / 2], &["truncated"]);
    // Cut inside an entry's header or data (a download stopped anywhere): refused too.
    for cut in [700, 3000, data.len() / 3] {
        refuses(&format!("truncated-at-{cut}"), &data[..cut], &["truncated"]);
    }
}

/// A JEX cut exactly between two entries (or in the padding after one) still reads as a tar
/// of fewer entries: only its missing end marker tells. Refused, or the restore would delete
/// what the cut lost.
#[test]
fn jex_cut_between_two_entries() {
    let data = std::fs::read(sample_jex()).unwrap();
    let last = data.iter().rposition(|b| *b != 0).unwrap();
    let at_boundary = (last + 1).div_ceil(512) * 512;
    for (case, cut) in [
        ("cut-at-boundary", at_boundary),
        ("cut-in-padding", last + 1),
    ] {
        refuses(case, &data[..cut], &["no end marker", "cut short"]);
    }
}

/// Notebooks whose parents loop (Personal under its own Journal) show nowhere in Joplin.
#[test]
fn notebook_parents_in_a_loop() {
    let mut e = sample_entries();
    replace(&mut e, "c92807ad73ea40938d12cd5a105b5efe.md", |s| {
        s.replace(
            "\nparent_id: \n",
            "\nparent_id: 33891a5cf6a84c18ab0b4de1404c88b2\n",
        )
    });
    refuses(
        "parent-loop",
        &tar_bytes(&e, &[]),
        &["[missing-parent]", "lead back to it", "Personal", "Journal"],
    );
}

#[test]
fn not_a_tar() {
    refuses(
        "text",
        b"just some notes I typed\n".repeat(40).as_slice(),
        &["not a JEX"],
    );
}

#[test]
fn empty_file() {
    refuses("empty", b"", &["empty"]);
}

#[test]
fn gzip_compressed_jex() {
    refuses(
        "gz",
        &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3],
        &["gzip"],
    );
}

#[test]
fn empty_tar() {
    refuses(
        "emptytar",
        &tar_bytes(&[], &[]),
        &["no items", "--allow empty", "deletes everything on it"],
    );
}

/// A JEX packed from the folder above its files: nothing at the JEX's places, so it reads as
/// empty; the refusal says why rather than only pointing at `--allow empty`.
#[test]
fn jex_packed_from_the_folder_above() {
    let e: Vec<(String, Vec<u8>)> = sample_entries()
        .into_iter()
        .map(|(n, d)| (format!("export/{n}"), d))
        .collect();
    refuses(
        "packed-above",
        &tar_bytes(&e, &[]),
        &[
            "outside the JEX layout",
            "export/",
            "packed from another folder",
        ],
    );
}

#[test]
fn parent_dir_entry() {
    let e = sample_entries();
    let bad = (
        header("../evil.md", 3, tar::EntryType::Regular, ""),
        b"abc".to_vec(),
    );
    refuses("dotdot", &tar_bytes(&e, &[bad]), &["../evil.md", ".."]);
}

#[test]
fn absolute_entry() {
    let e = sample_entries();
    let bad = (
        header("/etc/evil.md", 3, tar::EntryType::Regular, ""),
        b"abc".to_vec(),
    );
    refuses(
        "absolute",
        &tar_bytes(&e, &[bad]),
        &["/etc/evil.md", "absolute"],
    );
}

#[test]
fn symlink_entry() {
    let e = sample_entries();
    let bad = (
        header("link.md", 0, tar::EntryType::Symlink, "/etc/passwd"),
        vec![],
    );
    refuses(
        "symlink",
        &tar_bytes(&e, &[bad]),
        &["link.md", "links or devices"],
    );
}

#[test]
fn hardlink_entry() {
    let e = sample_entries();
    let bad = (header("hard.md", 0, tar::EntryType::Link, NOTE), vec![]);
    refuses(
        "hardlink",
        &tar_bytes(&e, &[bad]),
        &["hard.md", "links or devices"],
    );
}

#[test]
fn device_entry() {
    let e = sample_entries();
    let bad = (header("dev.md", 0, tar::EntryType::Char, ""), vec![]);
    refuses(
        "device",
        &tar_bytes(&e, &[bad]),
        &["dev.md", "links or devices"],
    );
}

#[test]
fn huge_header_size() {
    let e = sample_entries();
    let mut bytes = tar_bytes(&e, &[]);
    // Rewrite the first header's size to 8 GiB, fixing its checksum, so the entry claims bytes
    // the file does not have.
    let mut h = tar::Header::from_byte_slice(&bytes[..512]).clone();
    h.set_size(8 << 30);
    h.set_cksum();
    bytes[..512].copy_from_slice(h.as_bytes());
    refuses("huge", &bytes, &["claims", "truncated"]);
}

#[test]
fn broken_metadata_line() {
    let mut e = sample_entries();
    replace(&mut e, NOTE, |s| {
        s.replace("is_todo: 0", "is_todo 0 without a colon")
    });
    refuses(
        "metadata",
        &tar_bytes(&e, &[]),
        &[NOTE, "unreadable-item", "invalid property"],
    );
}

#[test]
fn missing_type() {
    let mut e = sample_entries();
    replace(&mut e, TAG, |s| s.replace("\ntype_: 5", ""));
    refuses("notype", &tar_bytes(&e, &[]), &[TAG, "type_"]);
}

#[test]
fn unknown_type() {
    let mut e = sample_entries();
    replace(&mut e, TAG, |s| s.replace("type_: 5", "type_: 99"));
    refuses("type99", &tar_bytes(&e, &[]), &[TAG, "unknown-type"]);
}

/// An item still encrypted in the backup (Joplin's exports of early 2018 could hold them):
/// refused, since no client reads it without the old key; allowed, it is left out.
#[test]
fn encrypted_item() {
    let mut e = sample_entries();
    replace(&mut e, NOTE, |s| {
        s.replace("encryption_applied: 0", "encryption_applied: 1")
    });
    refuses("encrypted", &tar_bytes(&e, &[]), &[NOTE, "encrypted-item"]);
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target");
    restore_allowing(dir.path(), &e, &target, "encrypted-item");
    assert!(!target.join(NOTE).exists());
}

#[test]
fn invalid_utf8_title() {
    let mut e = sample_entries();
    let t = e.iter_mut().find(|(n, _)| n == TAG).unwrap();
    t.1.splice(0..0, [0xff, 0xfe]);
    refuses("utf8", &tar_bytes(&e, &[]), &[TAG, "UTF-8"]);
}

#[test]
fn bad_date() {
    let mut e = sample_entries();
    replace(&mut e, NOTE, |s| {
        let i = s.find("created_time: ").unwrap();
        let end = s[i..].find('\n').unwrap() + i;
        format!("{}created_time: yesterday{}", &s[..i], &s[end..])
    });
    refuses(
        "date",
        &tar_bytes(&e, &[]),
        &[NOTE, "bad-date", "yesterday"],
    );
}

/// A number field that is not a number (a client's NOT NULL constraint fails on the NaN and its
/// sync stops there, so no client got anything) is refused, naming the item and the field;
/// allowed, the item is left out and the rest restored.
#[test]
fn bad_number() {
    let mut e = sample_entries();
    replace(&mut e, NOTE, |s| {
        s.replace("\nis_todo: 0\n", "\nis_todo: maybe\n")
    });
    replace(&mut e, RESOURCE, |s| {
        let i = s.find("\nsize: ").unwrap() + 1;
        let end = s[i..].find('\n').unwrap() + i;
        format!("{}size: big{}", &s[..i], &s[end..])
    });
    let jex = tar_bytes(&e, &[]);
    refuses(
        "number",
        &jex,
        &[
            NOTE,
            RESOURCE,
            "bad-number",
            "is_todo \"maybe\"",
            "size \"big\"",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("number.jex");
    std::fs::write(&file, &jex).unwrap();
    let target = dir.path().join("t");
    let o = jr(&[
        "restore",
        file.to_str().unwrap(),
        "--target",
        target.to_str().unwrap(),
        "--allow",
        "bad-number",
        "-q",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!target.join(NOTE).exists(), "the bad item is left out");
    assert!(!target.join(RESOURCE).exists(), "the bad item is left out");
    assert!(target.join(TAG).exists(), "the rest is restored");
}

#[test]
fn bad_id() {
    let mut e = sample_entries();
    replace(&mut e, TAG, |s| {
        s.replace("id: 7241f91bc84849938247fa679a076b7b", "id: XYZ")
    });
    refuses("badid", &tar_bytes(&e, &[]), &[TAG, "bad-id"]);
}

#[test]
fn id_differs_from_file_name() {
    let mut e = sample_entries();
    replace(&mut e, TAG, |s| {
        s.replace(
            "id: 7241f91bc84849938247fa679a076b7b",
            "id: 00000000000000000000000000000001",
        )
    });
    refuses(
        "mismatch",
        &tar_bytes(&e, &[]),
        &[TAG, "differs from its file name"],
    );
}

#[test]
fn duplicate_ids() {
    let mut e = sample_entries();
    let dup = e.iter().find(|(n, _)| n == TAG).unwrap().clone();
    e.push(dup);
    refuses(
        "dup",
        &tar_bytes(&e, &[]),
        &[
            TAG,
            "duplicate-id",
            &format!("the archive holds {TAG} twice"),
        ],
    );
}

#[test]
fn orphaned_note() {
    let mut e = sample_entries();
    replace(&mut e, NOTE, |s| {
        s.replace(
            "parent_id: 0318ad5af63c4f109df1974eca82715a",
            "parent_id: 99999999999999999999999999999999",
        )
    });
    refuses("orphan", &tar_bytes(&e, &[]), &[NOTE, "missing-parent"]);
}

#[test]
fn resource_without_blob() {
    let mut e = sample_entries();
    e.retain(|(n, _)| n != BLOB);
    refuses("noblob", &tar_bytes(&e, &[]), &[RESOURCE, "missing-blob"]);
}

#[test]
fn blob_size_mismatch() {
    let mut e = sample_entries();
    e.iter_mut()
        .find(|(n, _)| n == BLOB)
        .unwrap()
        .1
        .extend_from_slice(b"extra");
    refuses(
        "size",
        &tar_bytes(&e, &[]),
        &[RESOURCE, "blob-size-mismatch"],
    );
}

#[test]
fn note_tag_to_missing_tag() {
    let mut e = sample_entries();
    e.retain(|(n, _)| n != TAG);
    refuses(
        "notetag",
        &tar_bytes(&e, &[]),
        &["orphan-note-tag", "7241f91bc84849938247fa679a076b7b"],
    );
}

/// Restore a JEX of `entries` into `target` accepting problems of `class`; it must succeed.
fn restore_allowing(dir: &Path, entries: &[(String, Vec<u8>)], target: &Path, class: &str) {
    let file = dir.join(format!("{class}.jex"));
    std::fs::write(&file, tar_bytes(entries, &[])).unwrap();
    let o = jr(&[
        "restore",
        file.to_str().unwrap(),
        "--target",
        target.to_str().unwrap(),
        "--allow",
        class,
        "--yes",
        "--snapshot-dir",
        dir.join("snaps").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
}

/// An archive holding one item file twice: allowed, the first copy is restored (the copies
/// share their entry name, which must not make the restore leave out both and then delete the
/// target's copy).
#[test]
fn allowed_duplicate_restores_the_first_copy() {
    let dir = tempfile::tempdir().unwrap();
    let target = filled_target(dir.path());
    let mut e = sample_entries();
    let dup = e.iter().find(|(n, _)| n == TAG).unwrap().clone();
    e.push(dup);
    restore_allowing(dir.path(), &e, &target, "duplicate-id");
    let tag = std::fs::read_to_string(target.join(TAG)).expect("the tag is on the target");
    assert!(
        tag.contains("id: 7241f91bc84849938247fa679a076b7b"),
        "{tag}"
    );
}

/// A stray copy of an item under another file name (its id differs from the name): allowed,
/// only the misnamed file is left out; the item's own file is still restored.
#[test]
fn allowed_misnamed_copy_leaves_the_item_itself_restored() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("fresh");
    let mut e = sample_entries();
    let (_, tag) = e.iter().find(|(n, _)| n == TAG).unwrap().clone();
    e.push(("ffffffffffffffffffffffffffffffff.md".into(), tag));
    restore_allowing(dir.path(), &e, &target, "bad-id");
    let tag = std::fs::read_to_string(target.join(TAG)).expect("the tag is on the target");
    assert!(
        tag.contains("id: 7241f91bc84849938247fa679a076b7b"),
        "{tag}"
    );
    assert!(!target.join("ffffffffffffffffffffffffffffffff.md").exists());
    jr_ok(&[
        "verify",
        sample_jex().to_str().unwrap(),
        "--target",
        target.to_str().unwrap(),
    ]);
}

/// Allowing a class restores the rest and leaves the problem item alone on the target.
#[test]
fn allowed_problem_is_skipped_and_the_rest_restored() {
    let dir = tempfile::tempdir().unwrap();
    let target = filled_target(dir.path());
    let mut e = sample_entries();
    e.retain(|(n, _)| n != BLOB);
    let blob_before =
        std::fs::read(target.join(".resource/8c9f67d46dce4ef0af0f5826f53330a6")).unwrap();
    restore_allowing(dir.path(), &e, &target, "missing-blob");
    // The resource the backup could not restore keeps its target copy, blob included.
    assert_eq!(
        std::fs::read(target.join(".resource/8c9f67d46dce4ef0af0f5826f53330a6")).unwrap(),
        blob_before
    );
    assert!(target.join(RESOURCE).exists());
}

/// An unreadable item, allowed, is left out and its copy on the target left alone (its file
/// names its id): it was deleted as "not in the backup".
#[test]
fn allowed_unreadable_item_leaves_the_targets_copy() {
    let dir = tempfile::tempdir().unwrap();
    let target = filled_target(dir.path());
    const PLAIN_NOTE: &str = "ecaa6cabdc8a42edb9844691b64bc0f4.md";
    let before = std::fs::read(target.join(PLAIN_NOTE)).unwrap();
    let mut e = sample_entries();
    let note = e.iter_mut().find(|(n, _)| n == PLAIN_NOTE).unwrap();
    note.1.splice(0..0, [0xff, 0xfe, 0xfd]);
    refuses(
        "unreadable",
        &tar_bytes(&e, &[]),
        &["[unreadable-item]", PLAIN_NOTE],
    );
    restore_allowing(dir.path(), &e, &target, "unreadable-item");
    assert_eq!(std::fs::read(target.join(PLAIN_NOTE)).unwrap(), before);
    // The report names the item by the id its file carries.
    let file = dir.path().join("unreadable-item.jex");
    let o = jr(&["--json", "inspect", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "inspect exits 3 on problems");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let problem = &v["problems"][0];
    assert_eq!(problem["class"], "unreadable-item", "{v}");
    assert_eq!(problem["id"], "ecaa6cabdc8a42edb9844691b64bc0f4", "{v}");
}

/// A blob whose resource item is missing from the backup is a problem (the restore would
/// delete the target's resource and leave notes linking a resource that is gone); allowed,
/// the target's resource and blob stay.
#[test]
fn blob_without_its_resource_item() {
    let dir = tempfile::tempdir().unwrap();
    let target = filled_target(dir.path());
    let blob = target.join(".resource/8c9f67d46dce4ef0af0f5826f53330a6");
    let before = (
        std::fs::read(target.join(RESOURCE)).unwrap(),
        std::fs::read(&blob).unwrap(),
    );
    let mut e = sample_entries();
    e.retain(|(n, _)| n != RESOURCE);
    refuses(
        "orphan-blob",
        &tar_bytes(&e, &[]),
        &[
            "[orphan-blob]",
            "8c9f67d46dce4ef0af0f5826f53330a6.md is not in the backup",
        ],
    );
    restore_allowing(dir.path(), &e, &target, "orphan-blob");
    let after = (
        std::fs::read(target.join(RESOURCE)).unwrap(),
        std::fs::read(&blob).unwrap(),
    );
    assert!(after == before, "the resource or its blob changed");
}

/// A target the restore must not write to: refused with `code` (4 for an unsafe target, 1 for
/// a damaged one that cannot be read).
fn refuses_target(case: &str, prepare: impl Fn(&Path), needles: &[&str], code: i32) {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target");
    std::fs::create_dir_all(&target).unwrap();
    prepare(&target);
    let snaps = dir.path().join("snaps");
    let got = restore_is_refused(case, &sample_jex(), &target, &snaps, needles);
    assert_eq!(got, Some(code), "{case}: exit code");
}

#[test]
fn target_with_another_sync_version() {
    refuses_target(
        "version",
        |t| std::fs::write(t.join("info.json"), r#"{"version": 2}"#).unwrap(),
        &["sync version 2", "joplin sync --upgrade"],
        4,
    );
}

/// Joplin before sync version 3 kept `.sync/version.txt` and no info.json (its master keys were
/// items): Joplin reads that as version 1 and upgrades it itself. Writing a fresh info.json
/// over it would skip the upgrade and drop an encrypted target's keys: refused, as version 2.
#[test]
fn target_in_the_layout_before_info_json() {
    refuses_target(
        "legacy",
        |t| {
            std::fs::create_dir_all(t.join(".sync")).unwrap();
            std::fs::write(t.join(".sync/version.txt"), "1").unwrap();
            std::fs::write(
                t.join("e2a1fd3d4baf4fda81d162843a25cf29.md"),
                "id: e2a1fd3d4baf4fda81d162843a25cf29\ntype_: 9",
            )
            .unwrap();
        },
        &[
            ".sync/version.txt and no info.json",
            "joplin sync --upgrade",
        ],
        4,
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".sync")).unwrap();
    std::fs::write(dir.path().join(".sync/version.txt"), "2").unwrap();
    let out = jr_ok(&["status", "--target", dir.path().to_str().unwrap()]);
    assert!(out.contains("Sync version: 1 (.sync/version.txt"), "{out}");
}

/// A target a newer Joplin wrote: the tool is what is old, not the target.
#[test]
fn target_with_a_newer_sync_version() {
    refuses_target(
        "newer",
        |t| std::fs::write(t.join("info.json"), r#"{"version": 4}"#).unwrap(),
        &["sync version 4", "Update joplin-restore"],
        4,
    );
}

#[test]
fn target_with_unreadable_info_json() {
    refuses_target(
        "badinfo",
        |t| std::fs::write(t.join("info.json"), "{not json").unwrap(),
        &["info.json is not valid JSON"],
        1,
    );
}

#[test]
fn target_that_is_not_a_sync_target() {
    refuses_target(
        "notjoplin",
        |t| {
            std::fs::write(t.join("thesis.docx"), "my thesis").unwrap();
            std::fs::write(t.join("photo.jpg"), "jpeg").unwrap();
        },
        &["not a Joplin sync target", "thesis.docx"],
        4,
    );
}

/// A folder that holds only folders (`~/Documents`, a Nextcloud home) is someone's files too;
/// a new disk's `lost+found` is not.
#[test]
fn target_that_holds_only_folders_is_not_a_sync_target() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    std::fs::create_dir_all(disk.join("lost+found")).unwrap();
    jr_ok(&[
        "restore",
        sample_jex().to_str().unwrap(),
        "--target",
        disk.to_str().unwrap(),
        "-q",
    ]);
    refuses_target(
        "documents",
        |t| {
            std::fs::create_dir_all(t.join("Taxes2025")).unwrap();
            std::fs::write(t.join("Taxes2025/return.pdf"), "pdf").unwrap();
        },
        &["not a Joplin sync target", "Taxes2025/"],
        4,
    );
}

#[test]
fn clear_refuses_a_folder_that_is_not_a_sync_target() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("thesis.docx"), "my thesis").unwrap();
    let before = tree_hashes(dir.path());
    // Asked nothing and taking no snapshot, a clear locks before it lists: not here, where a
    // lock file would land among someone's documents.
    for extra in [&[][..], &["--no-snapshot"][..]] {
        let target = dir.path().to_str().unwrap();
        let o = jr(&[&["clear", "--target", target, "--yes"][..], extra].concat());
        assert_eq!(o.status.code(), Some(4), "{extra:?}: {}", text(&o));
        assert!(
            text(&o).contains("not a Joplin sync target"),
            "{extra:?}: {}",
            text(&o)
        );
        assert_eq!(before, tree_hashes(dir.path()), "{extra:?}");
    }
}

#[test]
fn snapshot_that_cannot_be_written_stops_before_any_change() {
    let dir = tempfile::tempdir().unwrap();
    let target = filled_target(dir.path());
    // A snapshot "folder" that is a file: creating it fails like a full or read-only disk would.
    let blocker = dir.path().join("snaps");
    std::fs::write(&blocker, "not a folder").unwrap();
    let mut e = sample_entries();
    replace(&mut e, NOTE, |s| s.replace("Roadmap", "Roadmap v2"));
    let file = dir.path().join("changed.jex");
    std::fs::write(&file, tar_bytes(&e, &[])).unwrap();
    let before = tree_hashes(&target);
    let o = jr(&[
        "restore",
        file.to_str().unwrap(),
        "--target",
        target.to_str().unwrap(),
        "--yes",
        "--snapshot-dir",
        blocker.to_str().unwrap(),
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("snapshot"), "{}", text(&o));
    assert_eq!(before, tree_hashes(&target));
}

#[test]
fn dry_run_changes_nothing_and_non_interactive_needs_yes() {
    let dir = tempfile::tempdir().unwrap();
    let target = filled_target(dir.path());
    let mut e = sample_entries();
    e.retain(|(n, _)| n != NOTE && !n.starts_with("392ebac8"));
    let file = dir.path().join("smaller.jex");
    std::fs::write(&file, tar_bytes(&e, &[])).unwrap();
    // The note the backup lacks sits in the target's trash: deleted for good, and said so.
    let on_target = target.join(NOTE);
    let item = std::fs::read_to_string(&on_target).unwrap();
    assert!(item.contains("\ndeleted_time: 0\n"), "{item}");
    std::fs::write(
        &on_target,
        item.replace("\ndeleted_time: 0\n", "\ndeleted_time: 1796657000000\n"),
    )
    .unwrap();
    let before = tree_hashes(&target);
    let args = [
        "restore",
        file.to_str().unwrap(),
        "--target",
        target.to_str().unwrap(),
    ];
    let o = jr(&[&args[..], &["--dry-run"]].concat());
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!(
            "note {} (\"Roadmap\") — in the trash",
            NOTE.trim_end_matches(".md")
        )),
        "dry run lists the deletion, by title, and that it is in the trash: {}",
        text(&o)
    );
    let o = jr(&args);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("--yes"), "{}", text(&o));
    assert_eq!(before, tree_hashes(&target));
}

/// A mistyped folder target: commands that read a target say it does not exist instead of
/// reporting an empty target; restore creates a new target folder only inside an existing one
/// (a typo in a parent, or an unmounted disk, must not become a fresh tree of folders).
#[test]
fn a_missing_target_folder_is_named_not_taken_for_an_empty_target() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-sync-folder");
    let m = missing.to_str().unwrap();
    let sample = sample_jex();
    let s = sample.to_str().unwrap();
    let out = tmp.path().join("export.jex");
    for args in [
        vec!["verify", s, "--target", m],
        vec!["diff", s, "--target", m],
        vec!["status", "--target", m],
        vec!["unlock", "--target", m],
        vec!["clear", "--target", m, "--yes"],
        vec!["export", "--target", m, out.to_str().unwrap()],
        vec![
            "migrate",
            "--from",
            m,
            "--target",
            tmp.path().join("to").to_str().unwrap(),
            "--yes",
        ],
    ] {
        let o = jr(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o));
        assert!(
            text(&o).contains(&format!("{m}: no such folder")),
            "{args:?}: {}",
            text(&o)
        );
    }
    assert!(!missing.exists() && !out.exists() && !tmp.path().join("to").exists());
    // `migrate --check` only compares: a missing destination is named too.
    let from = tmp.path().join("from");
    jr_ok(&["restore", s, "--target", from.to_str().unwrap(), "-q"]);
    let o = jr(&[
        "migrate",
        "--from",
        from.to_str().unwrap(),
        "--to",
        m,
        "--check",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("{m}: no such folder")),
        "{}",
        text(&o)
    );
    assert!(!missing.exists());

    let typo = tmp.path().join("mnt-typo").join("joplin");
    let o = jr(&["restore", s, "--target", typo.to_str().unwrap(), "--yes"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("its parent folder") && text(&o).contains("mnt-typo"),
        "{}",
        text(&o)
    );
    assert!(
        !tmp.path().join("mnt-typo").exists(),
        "restore made the typo's folders"
    );

    let file = tmp.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let o = jr(&["restore", s, "--target", file.to_str().unwrap(), "--yes"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("is a file, not a folder"), "{}", text(&o));

    // A new folder inside an existing one is the normal first restore.
    let fresh = tmp.path().join("new-sync-folder");
    jr_ok(&[
        "restore",
        s,
        "--target",
        fresh.to_str().unwrap(),
        "--yes",
        "-q",
    ]);
    assert!(fresh.join("info.json").is_file());
}

/// A zip holding the sample JEX, as a user zips a backup set: its bytes.
fn zip_of_the_sample() -> Vec<u8> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default();
    zip.start_file("all_notebooks.jex", opts).unwrap();
    zip.write_all(&std::fs::read(sample_jex()).unwrap())
        .unwrap();
    zip.finish().unwrap().into_inner()
}

/// A 7z or zip backup cut short (a download stopped) is a damaged backup: refused (exit 4), as
/// the README says, naming the file; an empty 7z too.
#[test]
fn truncated_archives_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let seven = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/backup-sets/one-7z/JoplinBackup/202611241200.7z");
    let data = std::fs::read(seven).unwrap();
    let zip_data = zip_of_the_sample();
    for (name, bytes) in [
        ("half.7z", &data[..data.len() / 2]),
        ("head.7z", &data[..100]),
        ("half.zip", &zip_data[..zip_data.len() / 2]),
    ] {
        let case = dir.path().join(format!("case-{name}"));
        std::fs::create_dir_all(&case).unwrap();
        let target = filled_target(&case);
        let file = case.join(name);
        std::fs::write(&file, bytes).unwrap();
        let snaps = case.join("snaps");
        let code = restore_is_refused(name, &file, &target, &snaps, &[name, "damaged"]);
        assert_eq!(code, Some(4), "{name}");
        assert!(!snaps.exists(), "{name}");
    }
}

/// A zip whose compressed data is damaged (its checksum fails) is a damaged backup (exit 4);
/// a 7z that cannot be unpacked for lack of room (here: a file-size limit) is not called
/// damaged, nor refused: exit 1, saying where it unpacks and what to do.
#[cfg(unix)]
#[test]
fn damaged_zip_data_is_refused_and_no_room_is_not_damage() {
    let dir = tempfile::tempdir().unwrap();
    let zipped = dir.path().join("flipped.zip");
    let mut data = zip_of_the_sample();
    for b in &mut data[2000..2064] {
        *b ^= 0x5a;
    }
    std::fs::write(&zipped, &data).unwrap();
    let o = jr(&["inspect", zipped.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("damaged"), "{}", text(&o));

    let seven = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/backup-sets/one-7z/JoplinBackup/202611241200.7z");
    let o = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f 8; exec {} inspect {}",
            env!("CARGO_BIN_EXE_joplin-restore"),
            seven.display()
        ))
        .env("TMPDIR", dir.path())
        .envs(support::xdg_env())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("cannot unpack") && !text(&o).contains("damaged"),
        "{}",
        text(&o)
    );
}

/// An empty 7z is only its signature header; it must be called empty, not damaged.
#[test]
fn empty_7z_archive() {
    let dir = tempfile::tempdir().unwrap();
    let target = filled_target(dir.path());
    let mut bytes = vec![b'7', b'z', 0xBC, 0xAF, 0x27, 0x1C, 0, 4];
    bytes.extend_from_slice(&0x0fd5_9b8d_u32.to_le_bytes()); // CRC32 of the 20 zero bytes after it
    bytes.extend_from_slice(&[0; 20]);
    let file = dir.path().join("backup.7z");
    std::fs::write(&file, &bytes).unwrap();
    let snaps = dir.path().join("snaps");
    restore_is_refused(
        "empty 7z",
        &file,
        &target,
        &snaps,
        &["backup.7z is an empty 7z archive", "holds no files"],
    );
    assert!(!snaps.exists());
}

/// A zip of something else is named as the file the user gave, not the temp folder it was
/// unpacked to.
#[test]
fn zip_without_a_backup() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let target = filled_target(dir.path());
    let file = dir.path().join("photos.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&file).unwrap());
    let opts = zip::write::SimpleFileOptions::default();
    zip.start_file("holiday/readme.txt", opts).unwrap();
    zip.write_all(b"not a backup").unwrap();
    zip.finish().unwrap();
    let snaps = dir.path().join("snaps");
    restore_is_refused(
        "zip without a backup",
        &file,
        &target,
        &snaps,
        &["photos.zip holds no backup", "no .jex"],
    );
    let o = jr(&["inspect", file.to_str().unwrap()]);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        !out.contains("joplin-restore-"),
        "the temp folder must not be named:\n{out}"
    );
    assert!(!snaps.exists());
}

/// A damaged JEX inside a zip is named through the zip (`backup.zip → all.jex`), not by the
/// temporary folder it was unpacked to, which is gone when the message is read.
#[test]
fn damaged_jex_in_a_zip_is_named_through_the_zip() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let target = filled_target(dir.path());
    let data = std::fs::read(sample_jex()).unwrap();
    let last = data.iter().rposition(|b| *b != 0).unwrap();
    let cut = &data[..(last + 1).div_ceil(512) * 512];
    let file = dir.path().join("backup.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&file).unwrap());
    zip.start_file(
        "all_notebooks.jex",
        zip::write::SimpleFileOptions::default(),
    )
    .unwrap();
    zip.write_all(cut).unwrap();
    zip.finish().unwrap();
    let snaps = dir.path().join("snaps");
    restore_is_refused(
        "damaged jex in a zip",
        &file,
        &target,
        &snaps,
        &["backup.zip → all_notebooks.jex", "no end marker"],
    );
    let out = text(&jr(&["inspect", file.to_str().unwrap()]));
    assert!(!out.contains("joplin-restore-"), "{out}");
}

/// A backup far smaller than the target (here one notebook against the sample): the dry run
/// warns of Joplin's fail-safe as the run itself does, before anyone confirms.
#[test]
fn dry_run_warns_of_the_fail_safe() {
    let dir = tempfile::tempdir().unwrap();
    let target = filled_target(dir.path());
    let one: Vec<(String, Vec<u8>)> = sample_entries()
        .into_iter()
        .filter(|(n, _)| n == "c92807ad73ea40938d12cd5a105b5efe.md")
        .collect();
    assert_eq!(one.len(), 1);
    let file = dir.path().join("one.jex");
    std::fs::write(&file, tar_bytes(&one, &[])).unwrap();
    let before = tree_hashes(&target);
    let o = jr(&[
        "restore",
        file.to_str().unwrap(),
        "--target",
        target.to_str().unwrap(),
        "--dry-run",
    ]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("warning: this deletes 96 % of the items on the target"),
        "{out}"
    );
    assert_eq!(tree_hashes(&target), before);
}

/// A note larger than 64 MiB (a pasted image as base64, say) is a real Joplin note, not damage:
/// it restores like any other (only more than SQLite's 1 GB is refused).
#[test]
fn a_note_over_64_mib_is_restored() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = sample_entries();
    let big = "x".repeat(65 << 20);
    replace(&mut e, NOTE, |text| {
        text.replacen("\n\n", &format!("\n\n{big}\n"), 1)
    });
    let file = dir.path().join("big.jex");
    std::fs::write(&file, tar_bytes(&e, &[])).unwrap();
    let target = dir.path().join("target");
    let o = jr(&[
        "restore",
        file.to_str().unwrap(),
        "--target",
        target.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let written = std::fs::read_to_string(target.join(NOTE)).unwrap();
    assert!(written.contains(&big));
}

/// A zip entry that unpacks to more than its declared size (a zip bomb's trick) is refused
/// at one byte past that size, not written out whole.
#[test]
fn zip_entry_larger_than_declared_is_refused() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let target = filled_target(dir.path());
    let data = std::fs::read(sample_jex()).unwrap();
    let file = dir.path().join("backup.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&file).unwrap());
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("all_notebooks.jex", stored).unwrap();
    zip.write_all(&data).unwrap();
    zip.finish().unwrap();
    // Declare 100 bytes less in both the local and the central header.
    let mut bytes = std::fs::read(&file).unwrap();
    let declared = (data.len() - 100) as u32;
    let mut patched = 0;
    for (sig, at) in [(0x04034b50u32, 22), (0x02014b50u32, 24)] {
        let pos = bytes
            .windows(4)
            .position(|w| w == sig.to_le_bytes())
            .unwrap();
        bytes[pos + at..pos + at + 4].copy_from_slice(&declared.to_le_bytes());
        patched += 1;
    }
    assert_eq!(patched, 2);
    std::fs::write(&file, &bytes).unwrap();
    let snaps = dir.path().join("snaps");
    restore_is_refused(
        "zip entry larger than declared",
        &file,
        &target,
        &snaps,
        &["all_notebooks.jex", "unpacks to more than the"],
    );
}
