//! `migrate --from T1 --to T2`, judged by the real Joplin CLI: a profile that synced T1 is
//! pointed at T2 and syncs with nothing lost and nothing duplicated; a fresh profile on T2 gets
//! the same content (with the master password where the target is encrypted).

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::joplin::{assert_manifest_eq, Profile};
use support::jserver::{self, EmulatorConfig, USER};
use support::s3::{jr_s3, S3Kind, S3Server};
use support::{jr, jr_env, jr_ok, sample_jex, text};

const PW: &str = "migrate-master-pw";

/// A Joplin CLI profile that filled `target` (a folder) with the sample's content, optionally
/// with E2EE on. Returns the profile and its manifest.
fn filled(dir: &Path, target: &Path, e2ee: bool) -> (Profile, Value) {
    std::fs::create_dir_all(target).unwrap();
    let p = Profile::new(dir.join("owner"));
    p.use_folder(target);
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
fn fresh_matches(dir: &Path, config: Value, e2ee: bool, want: &Value, context: &str) {
    let p = Profile::new(dir);
    p.configure(config);
    p.sync();
    let mut got = p.manifest();
    if e2ee {
        p.run(&["config", "encryption.masterPassword", PW]);
        for _ in 0..3 {
            p.run(&["e2ee", "decrypt"]);
            p.sync();
            got = p.manifest();
            if &got == want {
                break;
            }
        }
    }
    assert_manifest_eq(&got, want, context);
    no_conflicts(&p, context);
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
    owner.use_folder(&dst);
    owner.sync();
    owner.sync();
    assert_manifest_eq(&owner.manifest(), &want, "owner switched to the copy");
    no_conflicts(&owner, "owner switched to the copy");
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
    assert_eq!(files(&src), files(&dst));

    // --check compares only, and reports a changed item by id with exit 3.
    let (name, _) = files(&dst)
        .into_iter()
        .find(|(n, _)| n.ends_with(".md"))
        .unwrap();
    let text0 = std::fs::read_to_string(dst.join(&name)).unwrap();
    std::fs::write(dst.join(&name), format!("Changed title\n{text0}")).unwrap();
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

    owner.configure(server.joplin_config("joplin"));
    owner.sync();
    owner.sync();
    assert_manifest_eq(&owner.manifest(), &want, "owner switched to S3");
    no_conflicts(&owner, "owner switched to S3");
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
    // Joplin Server re-serialises items, so compare parsed content: the CLI is the judge.
    owner.use_folder(&back);
    owner.sync();
    owner.sync();
    assert_manifest_eq(&owner.manifest(), &want, "owner switched to the round trip");
    no_conflicts(&owner, "owner switched to the round trip");
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
    let jex = sample_jex();
    jr_ok(&[
        "restore",
        jex.to_str().unwrap(),
        "--target",
        src.to_str().unwrap(),
        "-q",
    ]);
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
        let mut child = Command::new(env!("CARGO_BIN_EXE_joplin-restore"))
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
