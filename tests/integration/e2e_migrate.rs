//! `migrate --from T1 --to T2`, judged by the real Joplin CLI: a profile that synced T1 is
//! pointed at T2 and syncs with nothing lost and nothing duplicated; a fresh profile on T2 gets
//! the same content (with the master password where the target is encrypted).

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::joplin::{assert_manifest_eq, Profile};
use support::jserver::{self, EmulatorConfig, USER};
use support::s3::{jr_s3, jr_s3_env, S3Kind, S3Server};
use support::webdav::{self as dav, DavServer};
use support::{jr, jr_env, jr_ok, sample_jex, text};

const PW: &str = "migrate-master-pw";

/// A Joplin CLI profile that filled `target` (a folder) with the sample's content, optionally
/// with E2EE on. Returns the profile and its manifest.
fn filled(dir: &Path, target: &Path, e2ee: bool) -> (Profile, Value) {
    std::fs::create_dir_all(target).unwrap();
    fill(dir, folder_config(target), e2ee)
}

/// A Joplin CLI profile that filled the sync target of `config` with the sample's content,
/// optionally with E2EE on. Returns the profile and its manifest.
fn fill(dir: &Path, config: Value, e2ee: bool) -> (Profile, Value) {
    let p = Profile::new(dir.join("owner"));
    p.configure(config);
    let jex = sample_jex();
    let mut cmds = vec![format!("import \"{}\" --format jex", jex.display())];
    if e2ee {
        cmds.push(format!("e2ee enable --password \"{PW}\""));
    }
    cmds.push("sync".into());
    let out = p.batch(&cmds);
    assert!(!out.contains("Last error"), "{out}");
    p.sync();
    let m = p.manifest();
    assert!(m["counts"]["notes"].as_u64().unwrap() > 5, "{m}");
    (p, m)
}

/// The sample restored into the folder `target` (a source to migrate from).
fn restore_sample(target: &Path) {
    jr_ok(&[
        "restore",
        sample_jex().to_str().unwrap(),
        "--target",
        target.to_str().unwrap(),
        "-q",
    ]);
}

/// Item files and blobs of a folder target with the sha256 of their bytes.
fn files(target: &Path) -> Vec<(String, String)> {
    use sha2::{Digest, Sha256};
    let mut out = Vec::new();
    for sub in ["", ".resource"] {
        let Ok(rd) = std::fs::read_dir(target.join(sub)) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            // (Not the fs backend's `.jr-tmp-*` leftovers of a killed write.)
            if p.is_file()
                && !name.starts_with('.')
                && (sub == ".resource" || name.ends_with(".md"))
            {
                let key = if sub.is_empty() {
                    name
                } else {
                    format!("{sub}/{name}")
                };
                out.push((key, hex::encode(Sha256::digest(std::fs::read(&p).unwrap()))));
            }
        }
    }
    out.sort();
    out
}

fn no_conflicts(p: &Profile, context: &str) {
    assert!(
        p.conflict_bodies().is_empty(),
        "{context}: conflict copies appeared"
    );
}

/// A fresh profile on `config`'s target gets `want` (decrypting with the password if `e2ee`).
fn fresh_matches(dir: &Path, mut config: Value, e2ee: bool, want: &Value, context: &str) {
    let p = Profile::new(dir);
    if e2ee {
        config["encryption.masterPassword"] = Value::from(PW);
    }
    p.configure(config);
    let mut got = Value::Null;
    // E2EE: the items are decrypted after the sync that downloaded them, and resources only
    // once their item is decrypted: a few rounds, each in one CLI start-up.
    for _ in 0..3 {
        let out = if e2ee {
            p.batch(&["sync".into(), "e2ee decrypt".into()])
        } else {
            p.sync()
        };
        assert!(
            !out.contains("Last error") && !out.contains("Fail-safe"),
            "{context}: joplin sync reported an error:\n{out}"
        );
        got = p.manifest();
        if !e2ee || &got == want {
            break;
        }
    }
    assert_manifest_eq(&got, want, context);
    no_conflicts(&p, context);
}

/// The owner's profile, pointed at `config`'s target, syncs (twice: the first may upload what
/// the new target type lacks) and holds `want`, with no conflict copies.
fn switched_matches(owner: &Profile, config: Value, want: &Value, context: &str) {
    owner.configure(config);
    owner.sync();
    owner.sync();
    assert_manifest_eq(&owner.manifest(), want, context);
    no_conflicts(owner, context);
}

fn folder_config(path: &Path) -> Value {
    serde_json::json!({"sync.target": 2, "sync.2.path": path.to_str().unwrap()})
}

#[test]
fn folder_to_folder_keeps_bytes_and_the_client_just_switches() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let dst = tmp.path().join("dst");
    let (owner, want) = filled(tmp.path(), &src, false);

    // Dry run writes nothing.
    let out = jr_ok(&[
        "migrate",
        "--from",
        src.to_str().unwrap(),
        "--to",
        dst.to_str().unwrap(),
        "--dry-run",
    ]);
    assert!(out.contains("dry run: nothing was changed"), "{out}");
    assert!(!dst.join("info.json").exists());

    let out = jr_ok(&[
        "migrate",
        "--from",
        src.to_str().unwrap(),
        "--to",
        dst.to_str().unwrap(),
        "-q",
    ]);
    assert!(out.contains("Verified:"), "{out}");
    assert_eq!(
        files(&src),
        files(&dst),
        "every item and blob copied verbatim"
    );
    assert_eq!(
        std::fs::read(src.join("info.json")).unwrap(),
        std::fs::read(dst.join("info.json")).unwrap()
    );
    let out = jr_ok(&[
        "migrate",
        "--from",
        src.to_str().unwrap(),
        "--to",
        dst.to_str().unwrap(),
        "--check",
    ]);
    assert!(out.starts_with("OK:"), "{out}");

    // A second migrate into the now non-empty destination is refused (exit 4) by default.
    let o = jr(&[
        "migrate",
        "--from",
        src.to_str().unwrap(),
        "--to",
        dst.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("--mode mirror"), "{}", text(&o));

    // The same profile points at the new folder and syncs: nothing lost, nothing duplicated.
    switched_matches(
        &owner,
        folder_config(&dst),
        &want,
        "owner switched to the copy",
    );
    fresh_matches(
        &tmp.path().join("fresh"),
        folder_config(&dst),
        false,
        &want,
        "fresh profile on the copy",
    );
}

#[test]
fn mirror_mode_makes_a_different_destination_an_exact_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let dst = tmp.path().join("dst");
    let (_owner, _want) = filled(tmp.path(), &src, false);
    // The destination holds other content first.
    let gen = tmp.path().join("other.jex");
    joplin_restore::generate::write_jex(
        &joplin_restore::generate::GenSpec {
            notes: 30,
            notebooks: 3,
            tags: 2,
            attachments: 2,
            attachment_bytes: 100,
            seed: 5,
        },
        &gen,
    )
    .unwrap();
    jr_ok(&[
        "restore",
        gen.to_str().unwrap(),
        "--target",
        dst.to_str().unwrap(),
        "-q",
    ]);
    let snaps = tmp.path().join("snaps");
    let out = jr_ok(&[
        "migrate",
        "--from",
        src.to_str().unwrap(),
        "--to",
        dst.to_str().unwrap(),
        "--mode",
        "mirror",
        "--yes",
        "-q",
        "--snapshot-dir",
        snaps.to_str().unwrap(),
    ]);
    assert!(out.contains("Snapshot of the target"), "{out}");
    assert!(out.contains("Verified:"), "{out}");
    // The destination was a target clients sync with (a restore wrote it): the items written
    // carry the migration's stamp, everything else is the source's. Blobs are byte for byte.
    assert!(out.contains("stamped with the migration time"), "{out}");
    let names = |fs: &[(String, String)]| fs.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    let blobs = |fs: Vec<(String, String)>| {
        fs.into_iter()
            .filter(|(n, _)| !n.ends_with(".md"))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&files(&src)), names(&files(&dst)));
    assert_eq!(blobs(files(&src)), blobs(files(&dst)));
    let o = jr(&[
        "migrate",
        "--from",
        src.to_str().unwrap(),
        "--to",
        dst.to_str().unwrap(),
        "--check",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // --check compares only, and reports a changed item by id and an extra one as not on
    // the source, with exit 3.
    let (name, _) = files(&dst)
        .into_iter()
        .find(|(n, _)| n.ends_with(".md"))
        .unwrap();
    let text0 = std::fs::read_to_string(dst.join(&name)).unwrap();
    std::fs::write(dst.join(&name), format!("Changed title\n{text0}")).unwrap();
    let stray = format!("{}.md", "e".repeat(32));
    std::fs::write(dst.join(&stray), &text0).unwrap();
    let o = jr(&[
        "migrate",
        "--from",
        src.to_str().unwrap(),
        "--to",
        dst.to_str().unwrap(),
        "--check",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        text(&o).contains(name.trim_end_matches(".md")),
        "{}",
        text(&o)
    );
    assert!(
        text(&o).contains(&format!("not on the source: {stray}")),
        "{}",
        text(&o)
    );
}

/// A mirror onto a destination clients already sync with: a client that edited, deleted and
/// added notes there takes the source's versions at its next sync (items written are stamped
/// with the migration time), as does a fresh one; unstamped, the client kept its edit while
/// the destination and `--check` said everything matched. Deleting most of a destination's
/// items warns about Joplin's fail-safe, in the dry run too.
#[test]
fn mirror_onto_a_destination_in_use_is_taken_by_its_clients() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let dst = tmp.path().join("dst");
    let (_owner, want) = filled(tmp.path(), &src, false);
    jr_ok(&[
        "migrate",
        "--from",
        src.to_str().unwrap(),
        "--to",
        dst.to_str().unwrap(),
        "-q",
    ]);
    let b = Profile::new(tmp.path().join("b"));
    b.use_folder(&dst);
    b.sync();
    // (The source was filled by a Joplin import: its ids are not the sample's.)
    let notes = b.query("SELECT id FROM notes ORDER BY id LIMIT 2");
    b.batch(&[
        format!("rmnote -f {}", notes[0][0]),
        format!("set {} body \"edited on the destination\"", notes[1][0]),
        "mkbook \"Extra notebook\"".into(),
        "mknote \"Extra note\"".into(),
    ]);
    b.sync();
    assert_ne!(b.manifest(), want, "the client changed nothing");
    let snaps = tmp.path().join("snaps");
    let mirror = |extra: &[&str]| {
        let mut args = vec![
            "migrate",
            "--from",
            src.to_str().unwrap(),
            "--to",
            dst.to_str().unwrap(),
            "--mode",
            "mirror",
            "--yes",
            "-q",
            "--snapshot-dir",
            snaps.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        jr_ok(&args)
    };
    let out = mirror(&[]);
    assert!(out.contains("stamped with the migration time"), "{out}");
    assert!(
        !out.contains("Fail-safe"),
        "deletes two items of many: {out}"
    );
    let synced = b.sync();
    assert!(!synced.contains("Last error"), "{synced}");
    assert_manifest_eq(
        &b.manifest(),
        &want,
        "the client that edited the destination",
    );
    fresh_matches(
        &tmp.path().join("fresh"),
        folder_config(&dst),
        false,
        &want,
        "fresh profile on the mirrored destination",
    );
    // Run again: nothing to copy (the stamped copies count as the source's), --check agrees.
    let again = mirror(&[]);
    assert!(again.contains("0 file(s) copied"), "{again}");
    let o = jr(&[
        "migrate",
        "--from",
        src.to_str().unwrap(),
        "--to",
        dst.to_str().unwrap(),
        "--check",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // A source that shares nothing with the destination: the mirror deletes every item there.
    let other = tmp.path().join("other");
    let gen = tmp.path().join("other.jex");
    joplin_restore::generate::write_jex(
        &joplin_restore::generate::GenSpec {
            notes: 5,
            notebooks: 1,
            tags: 1,
            attachments: 0,
            attachment_bytes: 0,
            seed: 9,
        },
        &gen,
    )
    .unwrap();
    jr_ok(&[
        "restore",
        gen.to_str().unwrap(),
        "--target",
        other.to_str().unwrap(),
        "-q",
    ]);
    let o = jr(&[
        "migrate",
        "--from",
        other.to_str().unwrap(),
        "--to",
        dst.to_str().unwrap(),
        "--mode",
        "mirror",
        "--dry-run",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("of the items on the target") && text(&o).contains("Fail-safe"),
        "{}",
        text(&o)
    );
}

#[test]
fn encrypted_folder_to_s3_stays_encrypted_and_clients_follow() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let (owner, want) = filled(tmp.path(), &src, true);
    let info: Value =
        serde_json::from_slice(&std::fs::read(src.join("info.json")).unwrap()).unwrap();
    assert_eq!(info["e2ee"]["value"], true, "{info}");

    let server = S3Server::start(S3Kind::S3sFs);
    let o = jr_s3(
        &server,
        &[
            "migrate",
            "--from",
            src.to_str().unwrap(),
            "--to",
            "s3://joplin",
            "--endpoint",
            &server.endpoint,
            "--path-style",
            "--create-bucket",
            "-q",
        ],
    );
    assert!(o.status.success(), "{}\n{}", text(&o), server.log());
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Verified:"),
        "{}",
        text(&o)
    );
    // s3s-fs keeps objects as plain files: the same bytes, still encrypted.
    let bucket = server.dir.path().join("data/joplin");
    assert_eq!(files(&src), files(&bucket));
    assert_eq!(
        std::fs::read(src.join("info.json")).unwrap(),
        std::fs::read(bucket.join("info.json")).unwrap()
    );

    switched_matches(
        &owner,
        server.joplin_config("joplin"),
        &want,
        "owner switched to S3",
    );
    fresh_matches(
        &tmp.path().join("fresh"),
        server.joplin_config("joplin"),
        true,
        &want,
        "fresh profile on S3",
    );
}

#[test]
fn folder_to_joplin_server_and_back_to_a_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let back = tmp.path().join("back");
    let (owner, want) = filled(tmp.path(), &src, false);
    let (_rt, emu) = jserver::start(EmulatorConfig::default());
    let server = jserver::target(&emu);
    let o = jr_env(
        &[
            "migrate",
            "--from",
            src.to_str().unwrap(),
            "--to",
            &server,
            "--username",
            USER,
            "-q",
        ],
        &[("JOPLIN_RESTORE_PASSWORD", jserver::PASSWORD)],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Verified:"),
        "{}",
        text(&o)
    );
    // Again, as a mirror: the server lists no sizes, yet nothing is copied or replaced (the
    // blobs are compared), so it needs no confirmation (no terminal here) and writes nothing.
    emu.reset_stats();
    let o = jr_env(
        &[
            "migrate",
            "--from",
            src.to_str().unwrap(),
            "--to",
            &server,
            "--username",
            USER,
            "--mode",
            "mirror",
            "-q",
        ],
        &[("JOPLIN_RESTORE_PASSWORD", jserver::PASSWORD)],
    );
    assert!(o.status.success(), "second migrate: {}", text(&o));
    let st = emu.stats();
    assert_eq!(
        (st.single_puts, st.batch_puts, st.deletes),
        (0, 0, 0),
        "the second migrate wrote or deleted: {}",
        text(&o)
    );

    let pwfile = tmp.path().join("pw");
    std::fs::write(&pwfile, format!("{}\n", jserver::PASSWORD)).unwrap();
    let o = jr(&[
        "migrate",
        "--from",
        &server,
        "--from-username",
        USER,
        "--from-password-file",
        pwfile.to_str().unwrap(),
        "--to",
        back.to_str().unwrap(),
        "-q",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    // The server lists no sizes: the plan says its attachments' bytes are unknown rather
    // than counting them 0.
    assert!(
        text(&o).contains("attachment(s) whose size the source does not list"),
        "{}",
        text(&o)
    );
    // Joplin Server re-serialises items, so compare parsed content: the CLI is the judge.
    switched_matches(
        &owner,
        folder_config(&back),
        &want,
        "owner switched to the round trip",
    );
    fresh_matches(
        &tmp.path().join("fresh"),
        folder_config(&back),
        false,
        &want,
        "fresh profile on the round trip",
    );
}

#[test]
fn a_damaged_source_item_is_reported_and_the_rest_is_copied() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let dst = tmp.path().join("dst");
    restore_sample(&src);
    let victim = "2ebc0432f27d42fdb982a925c8734636";
    assert!(src.join(format!("{victim}.md")).is_file());
    std::fs::write(src.join(format!("{victim}.md")), b"\xff\xfe garbage \x00").unwrap();
    let o = jr(&[
        "migrate",
        "--from",
        src.to_str().unwrap(),
        "--to",
        dst.to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("INCOMPLETE") && out.contains(victim),
        "{}",
        text(&o)
    );
    let copied = files(&dst);
    assert_eq!(
        copied.len() + 1,
        files(&src).len(),
        "all but the damaged item"
    );
    assert!(!dst.join(format!("{victim}.md")).exists());
}

fn journal_done(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.map(|e| {
        std::fs::read_to_string(e.unwrap().path())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"done\""))
            .count()
    })
    .sum()
}

#[test]
fn kill_9_mid_migrate_resumes_and_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let dst = tmp.path().join("dst");
    let journals = tmp.path().join("journals");
    let gen = tmp.path().join("big.jex");
    joplin_restore::generate::write_jex(
        &joplin_restore::generate::GenSpec {
            notes: 1500,
            notebooks: 10,
            tags: 5,
            attachments: 30,
            attachment_bytes: 4096,
            seed: 3,
        },
        &gen,
    )
    .unwrap();
    jr_ok(&[
        "restore",
        gen.to_str().unwrap(),
        "--target",
        src.to_str().unwrap(),
        "-q",
    ]);
    let args: Vec<String> = [
        "migrate",
        "--from",
        src.to_str().unwrap(),
        "--to",
        dst.to_str().unwrap(),
        "-q",
        "--tpslimit",
        "500",
        "--journal-dir",
        journals.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut kills = 0;
    let mut progress_seen = 0;
    let mut finished = false;
    // Each run reads the whole source first (~3 s at 500 requests/s), then copies.
    for delay in [4500u64, 5000, 5500, 6000, 6000, 7000, 8000, 9000] {
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
                assert!(status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                finished = true;
                break;
            }
            None => {
                child.kill().unwrap();
                child.wait().unwrap();
                kills += 1;
                progress_seen = progress_seen.max(journal_done(&journals));
            }
        }
    }
    assert!(
        kills >= 2,
        "the migration finished too early to test interruption"
    );
    assert!(
        progress_seen > 0,
        "the journal recorded progress before a kill"
    );
    if !finished {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = jr(&a);
        assert!(o.status.success(), "final run: {}", text(&o));
    }
    assert_eq!(
        journal_done(&journals),
        0,
        "a finished migration leaves no journal"
    );
    let out = jr_ok(&[
        "migrate",
        "--from",
        src.to_str().unwrap(),
        "--to",
        dst.to_str().unwrap(),
        "--check",
    ]);
    assert!(out.starts_with("OK:"), "{out}");
    assert_eq!(files(&src), files(&dst));
}

/// Names of the item files and blobs of a folder target.
fn names(target: &Path) -> Vec<String> {
    files(target).into_iter().map(|(n, _)| n).collect()
}

fn webdav_config(url: &str) -> Value {
    serde_json::json!({
        "sync.target": 6,
        "sync.6.path": url,
        "sync.6.username": dav::USER,
        "sync.6.password": dav::PASS,
    })
}

/// The real Joplin CLI fills a WebDAV collection on Apache; `migrate` copies it to s3s-fs
/// (byte for byte), and through the Joplin Server emulator on to a folder. Fresh profiles on the
/// copies get the same content (E2EE: with the master password, on the folder that went through
/// Joplin Server). Then the profile that filled WebDAV is switched to S3, then to the folder,
/// each a sync target type it never used: Joplin keeps `sync_items` and `sync.<id>.context` per
/// type, so it uploads every item once over the identical copy (with E2EE: encrypted afresh)
/// and the delta changes nothing. It keeps exactly its content, with no conflict copies and no
/// new file on the target.
fn webdav_to_s3_and_via_joplin_server_to_a_folder(e2ee: bool) {
    let started = std::time::Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let srv = DavServer::apache();
    let dav_dir = srv.make_collection("Joplin");
    let url = srv.url("Joplin");
    let (owner, want) = fill(tmp.path(), webdav_config(&url), e2ee);
    let source = files(&dav_dir);
    assert!(
        source.iter().any(|(n, _)| n.starts_with(".resource/")),
        "{source:?}"
    );
    let from = ["--from", url.as_str(), "--from-username", dav::USER];
    let from_pw = ("JOPLIN_RESTORE_FROM_PASSWORD", dav::PASS.to_string());

    // WebDAV → S3 (s3s-fs keeps objects as plain files: compare bytes).
    let s3 = S3Server::start(S3Kind::S3sFs);
    let mut env = s3.env();
    env.push(from_pw.clone());
    let mut args = vec!["migrate"];
    args.extend_from_slice(&from);
    args.extend_from_slice(&[
        "--to",
        "s3://joplin",
        "--endpoint",
        &s3.endpoint,
        "--path-style",
        "--create-bucket",
        "-q",
    ]);
    let o = jr_s3_env(&env, &args);
    assert!(o.status.success(), "{}\n{}", text(&o), s3.log());
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Verified:"),
        "{}",
        text(&o)
    );
    let bucket = s3.dir.path().join("data/joplin");
    assert_eq!(files(&bucket), source, "WebDAV → S3: every file verbatim");
    assert_eq!(
        std::fs::read(dav_dir.join("info.json")).unwrap(),
        std::fs::read(bucket.join("info.json")).unwrap()
    );
    if e2ee {
        let (items, blobs) = support::e2ee::assert_no_plaintext(&bucket);
        assert!(items > 20 && blobs > 0, "{items} items, {blobs} blobs");
    }

    // WebDAV → Joplin Server → folder.
    let (_rt, emu) = jserver::start(EmulatorConfig::default());
    let server = jserver::target(&emu);
    let mut args = vec!["migrate"];
    args.extend_from_slice(&from);
    args.extend_from_slice(&["--to", &server, "--username", USER, "-q"]);
    let o = jr_env(
        &args,
        &[
            (from_pw.0, dav::PASS),
            ("JOPLIN_RESTORE_PASSWORD", jserver::PASSWORD),
        ],
    );
    assert!(o.status.success(), "WebDAV → Joplin Server: {}", text(&o));
    let back = tmp.path().join("back");
    let o = jr_env(
        &[
            "migrate",
            "--from",
            &server,
            "--from-username",
            USER,
            "--to",
            back.to_str().unwrap(),
            "-q",
        ],
        &[(from_pw.0, jserver::PASSWORD)],
    );
    assert!(o.status.success(), "Joplin Server → folder: {}", text(&o));
    assert_eq!(names(&back), names(&dav_dir), "the same files came back");
    // Blobs are never re-serialised: byte for byte through Joplin Server too.
    let blobs = |v: Vec<(String, String)>| -> Vec<(String, String)> {
        v.into_iter()
            .filter(|(n, _)| n.starts_with(".resource/"))
            .collect()
    };
    assert_eq!(blobs(files(&back)), blobs(source.clone()));
    eprintln!("filled and migrated in {:?}", started.elapsed());

    // Fresh profiles judge the copies themselves (the owner's first sync on a new target type
    // uploads everything again). E2EE: the chain through Joplin Server, which re-serialises the
    // encrypted items; the S3 copy is byte for byte the WebDAV one.
    let label = if e2ee { "E2EE " } else { "" };
    if !e2ee {
        fresh_matches(
            &tmp.path().join("fresh-s3"),
            s3.joplin_config("joplin"),
            e2ee,
            &want,
            &format!("{label}fresh profile on S3"),
        );
    }
    fresh_matches(
        &tmp.path().join("fresh-folder"),
        folder_config(&back),
        e2ee,
        &want,
        &format!("{label}fresh profile on the folder"),
    );
    eprintln!("fresh profiles done in {:?}", started.elapsed());

    // The owner moves to S3, then to the folder.
    let context = format!("{label}owner switched from WebDAV to S3");
    switched_matches(&owner, s3.joplin_config("joplin"), &want, &context);
    assert_eq!(
        names(&bucket),
        names(&dav_dir),
        "{context}: no new file on S3"
    );
    if e2ee {
        // The client re-uploaded every item and blob (fresh IVs): nothing counted as synced.
        let after = files(&bucket);
        let same: Vec<_> = after.iter().filter(|f| source.contains(f)).collect();
        assert!(same.is_empty(), "{context}: not re-uploaded: {same:?}");
    }
    owner.use_folder(&back);
    owner.sync();
    let context = format!("{label}owner switched from S3 to the folder");
    assert_manifest_eq(&owner.manifest(), &want, &context);
    no_conflicts(&owner, &context);
    assert_eq!(names(&back), names(&dav_dir), "{context}: no new file");
    eprintln!("done in {:?}", started.elapsed());
}

#[test]
fn webdav_filled_by_joplin_to_s3_and_via_joplin_server_to_a_folder() {
    webdav_to_s3_and_via_joplin_server_to_a_folder(false);
}

#[test]
fn encrypted_webdav_filled_by_joplin_to_s3_and_via_joplin_server_to_a_folder() {
    webdav_to_s3_and_via_joplin_server_to_a_folder(true);
}

/// `migrate --json` of a run that fails midway (the WebDAV server answers 507 Insufficient
/// Storage) and of its rerun, which resumes.
fn migrate_json(args: &[&str]) -> (i32, Value, String) {
    let o = dav::jr_dav(args);
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}):\n{}", text(&o)));
    (o.status.code().unwrap(), v, text(&o))
}

/// The sample in a folder, migrating to Apache WebDAV through a proxy whose disk fills up after
/// six PUTs (info.json, the lock, some blobs).
struct FullDisk {
    tmp: tempfile::TempDir,
    src: PathBuf,
    journals: PathBuf,
    srv: DavServer,
    proxy: dav::FaultProxy,
    url: String,
}

impl FullDisk {
    fn new() -> FullDisk {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        let journals = tmp.path().join("journals");
        restore_sample(&src);
        let srv = DavServer::apache();
        let proxy = dav::FaultProxy::new(srv.port, 6);
        let url = format!("http://127.0.0.1:{}/dav/Joplin", proxy.port);
        FullDisk {
            tmp,
            src,
            journals,
            srv,
            proxy,
            url,
        }
    }

    /// `migrate` from the folder to the proxy, then `extra`.
    fn args<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut a = vec![
            "migrate",
            "--from",
            self.src.to_str().unwrap(),
            "--to",
            &self.url,
            "--username",
            dav::USER,
            "--journal-dir",
            self.journals.to_str().unwrap(),
        ];
        a.extend_from_slice(extra);
        a
    }
}

/// A blob written just before a kill whose journal line never made it (the window between the
/// write and the line): the resumed run finds it on the destination with the source's bytes,
/// so it neither asks to replace it (no terminal here: asking would fail the run) nor copies it
/// again.
#[test]
fn resume_takes_an_unjournaled_blob_with_the_same_bytes_as_copied() {
    let fd = FullDisk::new();
    let (srv, proxy) = (&fd.srv, &fd.proxy);
    let (src, journals) = (&fd.src, &fd.journals);
    let args = fd.args(&["-q"]);
    let o = dav::jr_dav(&args);
    assert!(!o.status.success(), "{}", text(&o));
    // Forget the journal line of a blob that landed without its resource item.
    let dest = srv.data.join("Joplin");
    let journal = std::fs::read_dir(journals)
        .unwrap()
        .next()
        .expect("a journal")
        .unwrap()
        .path();
    let lines = std::fs::read_to_string(&journal).unwrap();
    let lost = lines
        .lines()
        .find(|l| {
            l.contains("\"done\"")
                && l.split(".resource/")
                    .nth(1)
                    .and_then(|rest| rest.get(..32))
                    .is_some_and(|id| !dest.join(format!("{id}.md")).exists())
        })
        .unwrap_or_else(|| panic!("no blob landed without its resource item:\n{lines}"))
        .to_string();
    let kept: String = lines
        .lines()
        .filter(|l| *l != lost)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&journal, kept).unwrap();
    proxy.heal();
    let o = dav::jr_dav(&args);
    assert!(o.status.success(), "resumed run: {}", text(&o));
    assert_eq!(files(&dest), files(src));
}

/// Folder → Apache WebDAV as the destination: a disk that fills up midway stops the copy with
/// the failed files listed by path in `--json`; the same command finishes after the disk is
/// healed (resumed: what landed is not copied again); `--check` finds the two identical and a
/// fresh Joplin CLI profile on the WebDAV target gets exactly the sample's content.
#[test]
fn folder_to_webdav_survives_a_full_disk_and_a_fresh_client_gets_it() {
    let fd = FullDisk::new();
    let (tmp, srv, proxy, url) = (&fd.tmp, &fd.srv, &fd.proxy, &fd.url);
    let src = &fd.src;
    let args = fd.args(&["--json", "-q"]);
    let (code, v, all) = migrate_json(&args);
    assert_eq!(code, 1, "{all}");
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["command"], "migrate");
    assert_eq!(v["source"], format!("folder {}", src.display()), "{v}");
    assert!(
        v["destination"].as_str().unwrap().contains(url.as_str()),
        "{v}"
    );
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("run the same command again"),
        "{v}"
    );
    let failures = v["failures"].as_array().unwrap();
    assert!(!failures.is_empty(), "{v}");
    let mut failed_blobs = 0;
    for f in failures {
        let path = f["path"].as_str().unwrap();
        if path.starts_with(".resource/") {
            failed_blobs += 1;
        } else {
            assert!(path.ends_with(".md") && path.len() == 35, "{f}");
        }
        assert!(f["error"].as_str().unwrap().contains("HTTP 507"), "{f}");
    }
    let n = |v: &Value| v.as_u64().unwrap();
    let (items, blobs) = (&v["items"], &v["blobs"]);
    assert_eq!((n(&items["source"]), n(&blobs["source"])), (27, 3), "{v}");
    assert_eq!(n(&blobs["failed"]), failed_blobs, "{v}");
    assert_eq!(
        n(&items["failed"]) + n(&blobs["failed"]),
        failures.len() as u64
    );
    assert!(n(&items["copied"]) + n(&blobs["copied"]) > 0, "{v}");
    assert!(n(&items["copied"]) < 27, "{v}");
    assert!(v["verify"].is_null(), "{v}");
    let landed = (n(&items["copied"]), n(&blobs["copied"]));

    proxy.heal();
    let (code, v, all) = migrate_json(&args);
    assert_eq!(code, 0, "{all}");
    assert_eq!(v["ok"], true);
    let (items, blobs) = (&v["items"], &v["blobs"]);
    // Resumed: exactly what landed before is skipped, the rest is copied.
    assert_eq!(
        (n(&items["already_there"]), n(&blobs["already_there"])),
        landed,
        "{v}"
    );
    assert_eq!(n(&items["copied"]) + landed.0, 27, "{v}");
    assert_eq!(n(&blobs["copied"]) + landed.1, 3, "{v}");
    assert_eq!((n(&items["failed"]), n(&blobs["failed"])), (0, 0), "{v}");
    assert_eq!(v["verify"]["checked_items"], 27, "{v}");
    assert_eq!(v["verify"]["checked_blobs"], 3, "{v}");
    assert_eq!(v["verify"]["differences"].as_array().unwrap().len(), 0);
    // The destination is verbatim (Apache stores the files as they came).
    assert_eq!(files(&srv.data.join("Joplin")), files(src));

    let o = dav::jr_dav(&[
        "migrate",
        "--from",
        src.to_str().unwrap(),
        "--to",
        &srv.url("Joplin"),
        "--username",
        dav::USER,
        "--check",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let p = Profile::new(tmp.path().join("fresh"));
    dav::use_webdav(&p, &srv.url("Joplin"));
    p.sync();
    assert_manifest_eq(
        &p.manifest(),
        &support::sample_manifest(),
        "fresh profile on the WebDAV copy",
    );
}

/// A mirror migrate into a Joplin Server that clients already use warns, as a restore does,
/// when it writes items the server lacked (one deleted there earlier and now copied back), and
/// names `--rewrite-unchanged`, which writes every item again.
#[test]
fn mirror_into_a_used_joplin_server_cautions_and_rewrites_on_request() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    restore_sample(&src);
    // The same folder without one note: mirroring it deletes that note on the server.
    let less = tmp.path().join("less");
    std::fs::create_dir_all(less.join(".resource")).unwrap();
    let mut notes = Vec::new();
    for (name, _) in files(&src) {
        let from = src.join(&name);
        if name.ends_with(".md")
            && std::fs::read_to_string(&from)
                .unwrap()
                .contains("\ntype_: 1")
        {
            notes.push(name.clone());
        }
        std::fs::copy(&from, less.join(&name)).unwrap();
    }
    std::fs::copy(src.join("info.json"), less.join("info.json")).unwrap();
    let gone = notes.first().expect("the sample has notes").clone();
    std::fs::remove_file(less.join(&gone)).unwrap();
    // Items and blobs: a rewritten resource takes its blob along.
    let written = files(&src).len() as u64;

    let (_rt, emu) = jserver::start(EmulatorConfig::default());
    let server = jserver::target(&emu);
    let migrate = |from: &Path, extra: &[&str]| {
        let mut args = vec![
            "migrate",
            "--from",
            from.to_str().unwrap(),
            "--to",
            &server,
            "--username",
            USER,
            "--mode",
            "mirror",
            "--yes",
            "-q",
        ];
        args.extend_from_slice(extra);
        let o = jr_env(&args, &[("JOPLIN_RESTORE_PASSWORD", jserver::PASSWORD)]);
        assert!(o.status.success(), "migrate {extra:?}: {}", text(&o));
        text(&o)
    };
    migrate(&less, &[]);
    emu.reset_stats();
    let out = migrate(&src, &[]);
    // (One delete: the temp file of the clock probe a stamping mirror makes.)
    assert_eq!(emu.stats().deletes, 1, "{out}");
    assert!(
        out.contains("note (Joplin Server): 1 item(s) were written that the target did not have")
            && out.contains("the same migrate again with --mode mirror --rewrite-unchanged"),
        "no caution for the note copied back: {out}"
    );

    emu.reset_stats();
    let out = migrate(&src, &["--rewrite-unchanged"]);
    let st = emu.stats();
    // (Plus the clock probe's temp file, written and deleted.)
    assert_eq!(
        (st.single_puts + st.batch_items, st.deletes),
        (written + 1, 1),
        "--rewrite-unchanged should write each of the {written} items and blobs once: {out}"
    );
    assert!(!out.contains("note (Joplin Server)"), "{out}");
}

/// A stamping mirror of an end-to-end encrypted target (items copied as they are, encrypted)
/// stamps the envelope's `updated_time` only: an encrypted resource's `blob_updated_time` is
/// inside its cipher text and stays empty (a stamp there made every later `--check` report it
/// and every mirror copy it again).
#[test]
fn a_stamping_mirror_of_an_encrypted_target_checks_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let dst = tmp.path().join("dst");
    let fixture = support::repo().join("tests/fixtures/e2ee-target");
    let o = Command::new("cp")
        .args(["-a", fixture.to_str().unwrap(), src.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(o.success());
    let (s, d) = (src.to_str().unwrap(), dst.to_str().unwrap());
    jr_ok(&["migrate", "--from", s, "--to", d, "-q"]);
    // The destination lost the resource item: the mirror writes it again, stamped.
    std::fs::remove_file(dst.join("f3355f2dcd5b416384a29e83ae445708.md")).unwrap();
    let snaps = tmp.path().join("snaps");
    let mirror = [
        "migrate",
        "--from",
        s,
        "--to",
        d,
        "--mode",
        "mirror",
        "--yes",
        "--snapshot-dir",
        snaps.to_str().unwrap(),
    ];
    let out = jr_ok(&mirror);
    assert!(out.contains("stamped with the migration time"), "{out}");
    let item = std::fs::read_to_string(dst.join("f3355f2dcd5b416384a29e83ae445708.md")).unwrap();
    assert!(item.contains("\nblob_updated_time: \n"), "{item}");
    let o = jr(&["migrate", "--from", s, "--to", d, "--check"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let again = jr_ok(&mirror);
    assert!(again.contains("0 file(s) copied"), "{again}");
}

/// A mirror migrate copies the source's info.json: onto a destination that uses E2EE, from a
/// source that does not, that would turn encryption off there and drop its key (clients then
/// upload their notes in clear). Refused, saying so, before anything is written; `--force` goes
/// on.
#[test]
fn mirror_onto_an_encrypted_destination_from_a_plain_source_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("plain");
    restore_sample(&src);
    let dest = tmp.path().join("encrypted");
    let fixture = support::repo().join("tests/fixtures/e2ee-target");
    for e in walk_files(&fixture) {
        let to = dest.join(e.strip_prefix(&fixture).unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&e, &to).unwrap();
    }
    let before = support::tree_hashes(&dest);
    let args = [
        "migrate",
        "--from",
        src.to_str().unwrap(),
        "--to",
        dest.to_str().unwrap(),
        "--mode",
        "mirror",
        "--yes",
    ];
    let o = jr(&args);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(
        text(&o).contains("uses end-to-end encryption and the source does not"),
        "{}",
        text(&o)
    );
    assert_eq!(support::tree_hashes(&dest), before, "nothing written");
    let forced = jr(&[&args[..], &["--force"]].concat());
    assert!(forced.status.success(), "{}", text(&forced));
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(walk_files(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// A source that refuses the credentials says which options give the source's (`--from-…`),
/// not the destination's: following the old advice (`--username`) failed the same way.
#[test]
fn a_source_refusing_credentials_names_the_source_options() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = DavServer::apache();
    srv.make_collection("Joplin");
    let url = srv.url("Joplin");
    let to = tmp.path().join("dest");
    let to = to.to_str().unwrap();
    let o = jr(&["migrate", "--from", &url, "--to", to, "--yes"]);
    assert!(!o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("pass --from-username (the password comes from JOPLIN_RESTORE_FROM_PASSWORD, --from-password-file or the prompt)"),
        "{out}"
    );
    let o = jr_env(
        &[
            "migrate",
            "--from",
            &url,
            "--from-username",
            dav::USER,
            "--to",
            to,
            "--yes",
        ],
        &[("JOPLIN_RESTORE_FROM_PASSWORD", "wrong")],
    );
    assert!(!o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains(
            "Check the username (--from-username) and the password (JOPLIN_RESTORE_FROM_PASSWORD"
        ),
        "{out}"
    );
}
