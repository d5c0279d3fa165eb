//! End to end against the Joplin Server EMULATOR (`tests/joplin-server-emulator`): our binary
//! restores, verifies and reports problems the way it must against a real Joplin Server, and
//! the real Joplin CLI (`sync.target 9`) syncing from the emulator judges what it wrote.

use crate::support;

use support::joplin::{assert_holds_exactly, assert_manifest_eq, Profile};
use support::jserver::{self, jr_server, use_emulator, EmulatorConfig, PASSWORD, USER};
use support::{sample_jex, sample_manifest, text};

/// `restore --yes` of the sample over what the emulator holds, with a snapshot in `snaps`;
/// its standard output.
fn restore_over(emu: &jserver::Emulator, snaps: &std::path::Path) -> String {
    let jex = sample_jex();
    let o = jr_server(
        emu,
        PASSWORD,
        &[
            "restore",
            jex.to_str().unwrap(),
            "--yes",
            "--snapshot-dir",
            snaps.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// An emulator every CLI command can log in to: each is a process that logs in, more than the
/// 10 logins a minute one IP gets (a real server run with JOPLIN_IS_TESTING has no limit).
fn emulator_for_clients() -> (tokio::runtime::Runtime, jserver::Emulator) {
    jserver::start(EmulatorConfig {
        login_limit: 1000,
        ..EmulatorConfig::default()
    })
}

/// The sample restored into the emulator, and a client in `dir` that synced it, then made
/// [`Profile::edit_after_the_backup`] and synced those edits.
fn restored_and_edited(emu: &jserver::Emulator, dir: &std::path::Path) -> Profile {
    let jex = sample_jex();
    let o = jr_server(emu, PASSWORD, &["restore", jex.to_str().unwrap(), "-q"]);
    assert!(o.status.success(), "{}", text(&o));
    let p = Profile::new(dir);
    use_emulator(&p, emu);
    p.sync();
    p.edit_after_the_backup();
    p.sync();
    p
}

#[test]
fn fresh_client_syncs_exactly_the_backup_with_original_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let (_rt, emu) = jserver::start(EmulatorConfig::default());
    let jex = sample_jex();
    let o = jr_server(&emu, PASSWORD, &["restore", jex.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let p = Profile::new(tmp.path().join("fresh"));
    use_emulator(&p, &emu);
    emu.reset_stats();
    p.sync();
    let st = emu.stats();
    // The items come in the change feed (`jopItem`), as from Joplin Server 3.x: the client
    // downloads only info.json and the 3 blobs, not the 27 items one by one.
    assert!(st.deltas >= 1 && st.gets <= 10, "{st:?}");
    assert_manifest_eq(
        &p.manifest(),
        &sample_manifest(),
        "fresh profile after a restore into Joplin Server",
    );
}

/// A client that synced, then deleted, edited and added items, converges to the backup after
/// a restore: the restore's writes and deletions reach it through the change feed, and its
/// own extra items are removed, without conflicts.
#[test]
fn stale_client_converges_to_the_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let (_rt, emu) = emulator_for_clients();
    let p = restored_and_edited(&emu, &tmp.path().join("stale"));
    let snaps = tmp.path().join("snaps");
    restore_over(&emu, &snaps);
    p.sync();
    assert_holds_exactly(
        &p,
        &sample_manifest(),
        "stale profile after a restore into Joplin Server",
    );
}

#[test]
fn restore_then_verify_the_sample() {
    let (_rt, emu) = jserver::start(EmulatorConfig::default());
    let jex = sample_jex();
    let o = jr_server(&emu, PASSWORD, &["restore", jex.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("Checked: 27 items and 3 blobs"), "{out}");
    let st = emu.stats();
    assert_eq!(st.logins, 1, "one login per run: {st:?}");
    assert!(st.json_puts.is_empty(), "{st:?}");
    assert!(
        emu.locks(USER).is_empty(),
        "the lock is released: {:?}",
        emu.locks(USER)
    );
    assert!(st.lock_posts >= 1 && st.lock_deletes >= 1, "{st:?}");
    let names = emu.names(USER);
    assert!(names.contains(&"info.json".to_string()), "{names:?}");
    assert_eq!(
        names.iter().filter(|n| n.starts_with(".resource/")).count(),
        3
    );
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("locks/") || n.starts_with("temp/")),
        "{names:?}"
    );

    let o = jr_server(&emu, PASSWORD, &["verify", jex.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));

    // A second run finds everything in place and writes nothing: the server lists no sizes,
    // so the blobs are compared byte for byte instead of being sent (and fetched by every
    // client) again.
    let again = || {
        emu.reset_stats();
        let o = jr_server(
            &emu,
            PASSWORD,
            &["restore", jex.to_str().unwrap(), "--yes", "--no-snapshot"],
        );
        assert!(o.status.success(), "{}", text(&o));
        emu.stats()
    };
    // (The one single PUT is the clock probe, temp/timeCheck….)
    let st = again();
    assert_eq!((st.single_puts, st.batch_items), (1, 0), "{st:?}");
    // A blob changed on the server is put back, with its resource; nothing else.
    let blob = ".resource/8c9f67d46dce4ef0af0f5826f53330a6";
    emu.insert_raw(USER, blob, b"changed by someone");
    let st = again();
    assert_eq!((st.single_puts, st.batch_items), (2, 1), "{st:?}");
    assert_ne!(emu.content(USER, blob).unwrap(), b"changed by someone");

    // A partial restore reads the target's copies of what it selected, not of the whole
    // backup: Overview and its three parent notebooks (the listing and info.json aside).
    emu.reset_stats();
    let o = jr_server(
        &emu,
        PASSWORD,
        &["restore", jex.to_str().unwrap(), "--only", "note:Overview"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let st = emu.stats();
    assert!(st.gets <= 6, "{st:?}");
}

#[test]
fn five_thousand_items_go_in_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let jex = tmp.path().join("big.jex");
    jserver::write_jex(&jex, 4999, None);
    let (_rt, emu) = jserver::start(EmulatorConfig::default());
    let o = jr_server(
        &emu,
        PASSWORD,
        &["restore", jex.to_str().unwrap(), "--quiet"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Checked: 5000 items"),
        "{}",
        text(&o)
    );
    let st = emu.stats();
    assert_eq!(st.batch_items, 5000, "{st:?}");
    // ≤ 1 request per ~100 items: 1 folder batch + 50 note batches, plus slack.
    assert!(st.batch_puts <= 55, "{st:?}");
    assert!(
        st.single_puts <= 3,
        "only info.json and the clock probe go singly: {st:?}"
    );
    assert_eq!(st.logins, 1, "{st:?}");
    assert_eq!(emu.names(USER).len(), 5001);
}

#[test]
fn wrong_password_says_what_to_fix() {
    let (_rt, emu) = jserver::start(EmulatorConfig::default());
    let o = jr_server(&emu, "wrong", &["restore", sample_jex().to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("refused the login"), "{}", text(&o));
    assert!(err.contains("JOPLIN_RESTORE_PASSWORD"), "{}", text(&o));
    assert!(
        !err.contains("wrong"),
        "never print the password: {}",
        text(&o)
    );
    assert!(emu.names(USER).is_empty());
}

#[test]
fn missing_password_without_a_terminal_says_how_to_give_it() {
    let (_rt, emu) = jserver::start(EmulatorConfig::default());
    let t = jserver::target(&emu);
    let o = support::jr(&[
        "verify",
        sample_jex().to_str().unwrap(),
        "--target",
        &t,
        "--username",
        USER,
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("JOPLIN_RESTORE_PASSWORD") && err.contains("--password-file"),
        "{err}"
    );
}

#[test]
fn password_file_works() {
    let (_rt, emu) = jserver::start(EmulatorConfig::default());
    let tmp = tempfile::tempdir().unwrap();
    let pw = tmp.path().join("pw");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    let t = jserver::target(&emu);
    let o = support::jr(&[
        "restore",
        sample_jex().to_str().unwrap(),
        "--target",
        &t,
        "--username",
        USER,
        "--password-file",
        pw.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
}

/// A rate-limited login waits what the server's Retry-After asks and goes on; a wait of
/// seconds is said on stderr, so the run does not look hung.
#[test]
fn rate_limited_login_waits_and_goes_on() {
    let (_rt, emu) = jserver::start(EmulatorConfig {
        login_limit: 1,
        login_window: std::time::Duration::from_secs(5),
        retry_after_secs: 5,
        ..Default::default()
    });
    // One failed attempt uses up the budget.
    let o = jr_server(&emu, "wrong", &["verify", sample_jex().to_str().unwrap()]);
    assert!(!o.status.success());
    let o = jr_server(&emu, PASSWORD, &["restore", sample_jex().to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(emu.stats().logins_rate_limited >= 1, "{:?}", emu.stats());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        err.matches("before retrying, as the server asked (Retry-After)")
            .count(),
        1,
        "{err}"
    );
}

#[test]
fn oversized_item_is_reported_by_id_and_title() {
    let tmp = tempfile::tempdir().unwrap();
    let jex = tmp.path().join("big.jex");
    jserver::write_jex(&jex, 20, Some((7, 50_000)));
    let (_rt, emu) = jserver::start(EmulatorConfig::default());
    emu.set_max_item_size(20_000);
    let o = jr_server(
        &emu,
        PASSWORD,
        &["restore", jex.to_str().unwrap(), "--quiet"],
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    let id = jserver::note_id(7);
    assert!(err.contains(&id) && err.contains("Note 7"), "{}", text(&o));
    assert!(err.contains("too large"), "{}", text(&o));
    // The other notes of the phase were written.
    let names = emu.names(USER);
    assert_eq!(
        names.iter().filter(|n| n.ends_with(".md")).count(),
        20,
        "{names:?}"
    );
    assert!(!names.contains(&format!("{id}.md")));
}

#[test]
fn target_url_must_say_its_kind() {
    let o = support::jr(&[
        "verify",
        sample_jex().to_str().unwrap(),
        "--target",
        "http://127.0.0.1:1/",
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--backend joplin-server"),
        "{}",
        text(&o)
    );
}

#[test]
fn clear_leaves_only_info_json() {
    let tmp = tempfile::tempdir().unwrap();
    let jex = tmp.path().join("big.jex");
    // 1,000 items: more listing pages than are asked for at once, so clearing must not skip
    // any page beyond the first window.
    jserver::write_jex(&jex, 999, None);
    let (_rt, emu) = jserver::start(EmulatorConfig::default());
    let o = jr_server(
        &emu,
        PASSWORD,
        &["restore", jex.to_str().unwrap(), "--quiet"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let before = emu.names(USER).len();
    assert!(before > 1000, "{before}");
    let snaps = tmp.path().join("snaps");
    let o = jr_server(
        &emu,
        PASSWORD,
        &[
            "--json",
            "clear",
            "--yes",
            "--quiet",
            "--transfers",
            "2",
            "--snapshot-dir",
            snaps.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(emu.names(USER), vec!["info.json".to_string()]);
    assert!(emu.locks(USER).is_empty());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["deleted"], before - 1, "{v}");
    assert_eq!(
        support::stage_names(&v),
        ["list", "snapshot", "lock", "delete"],
        "{v}"
    );
}

/// `status` shows the server's own locks (`/api/locks`), and `unlock` removes the ones whose
/// client stopped refreshing them, never an active one.
#[test]
fn status_and_unlock_see_the_servers_locks() {
    let (_rt, emu) = jserver::start(EmulatorConfig::default());
    let o = jr_server(
        &emu,
        PASSWORD,
        &["restore", sample_jex().to_str().unwrap(), "-q"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    emu.add_lock(USER, 1, 1, "desktopA");
    emu.add_lock_at(USER, 2, 2, "phoneB", now - 10 * 60 * 1000);

    let o = jr_server(&emu, PASSWORD, &["--json", "status"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // The server's listing gives no sizes: the total is unknown, not 0.
    assert_eq!(v["blobs"], 3, "{v}");
    assert!(v["total_bytes"].is_null(), "{v}");
    let locks = v["locks"].as_array().unwrap();
    assert_eq!(locks.len(), 2, "{v}");
    let desktop = locks
        .iter()
        .find(|l| l["server_key"] == "1_1_desktopA")
        .unwrap();
    assert_eq!(desktop["kind"], "sync", "{v}");
    assert_eq!(desktop["active"], true, "{v}");
    let phone = locks
        .iter()
        .find(|l| l["server_key"] == "2_2_phoneB")
        .unwrap();
    assert_eq!(phone["kind"], "exclusive", "{v}");
    assert_eq!(phone["active"], false, "{v}");
    assert!(phone["age_secs"].as_i64().unwrap() >= 599, "{v}");

    let o = jr_server(&emu, PASSWORD, &["unlock"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("1 lock(s) removed, 1 active"), "{out}");
    let left: Vec<String> = emu
        .locks(USER)
        .iter()
        .map(|l| l.client_id.clone())
        .collect();
    assert_eq!(left, vec!["desktopA".to_string()]);

    // desktopA's active lock stops a clear before its snapshot, with exit 4 (refused).
    let tmp = tempfile::tempdir().unwrap();
    let snaps = tmp.path().join("snaps");
    let o = jr_server(
        &emu,
        PASSWORD,
        &["clear", "--yes", "--snapshot-dir", snaps.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(!snaps.exists(), "a snapshot was taken: {}", text(&o));

    // A lock of a killed run of ours (its journal, in the default journal folder, names the
    // lock's client id and the run's process, gone) is ours: `unlock` removes it though it
    // is active.
    let state = tmp.path().join("state");
    let journals = state.join("joplin-restore/journals");
    std::fs::create_dir_all(&journals).unwrap();
    let start = serde_json::json!({"start": {
        "backup": "b", "target": "t", "stamp_ms": 0, "id_seed": 0, "lock_id": "ourkilledrun",
        "pid": support::ended_pid(), "host": support::host_name(),
    }});
    std::fs::write(
        journals.join("0123456789abcdef01234567.jsonl"),
        format!("{start}\n"),
    )
    .unwrap();
    emu.add_lock(USER, 2, 3, "ourkilledrun");
    let o = support::jr_env(
        &[
            "unlock",
            "--target",
            &jserver::target(&emu),
            "--username",
            USER,
        ],
        &[
            ("JOPLIN_RESTORE_PASSWORD", PASSWORD),
            ("XDG_STATE_HOME", state.to_str().unwrap()),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let left: Vec<String> = emu
        .locks(USER)
        .iter()
        .map(|l| l.client_id.clone())
        .collect();
    assert_eq!(left, vec!["desktopA".to_string()], "{}", text(&o));
}

/// A note shared on the server it was backed up from: its share does not exist here, so it is
/// written unshared, and that counts as the backup's copy: `verify` passes and a second
/// restore writes nothing again.
#[test]
fn a_note_whose_share_is_gone_is_restored_unshared_and_stays_in_sync() {
    let tmp = tempfile::tempdir().unwrap();
    let jex = tmp.path().join("shared.jex");
    let mut out = tar::Builder::new(Vec::new());
    let mut src = tar::Archive::new(std::fs::File::open(sample_jex()).unwrap());
    for e in src.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        if name == "7cf9bead95744245a9011f01c8222d5a.md" {
            let text = String::from_utf8(data).unwrap();
            assert!(text.contains("\nshare_id: \n"), "{text}");
            data = text
                .replace("\nshare_id: \n", "\nshare_id: 5Ssw5sIkYmr1fKwjOLaKxB\n")
                .replace("\nis_shared: 0\n", "\nis_shared: 1\n")
                .into_bytes();
        }
        let mut h = e.header().clone();
        h.set_size(data.len() as u64);
        h.set_cksum();
        out.append(&h, data.as_slice()).unwrap();
    }
    std::fs::write(&jex, out.into_inner().unwrap()).unwrap();
    let j = jex.to_str().unwrap();

    let (_rt, emu) = jserver::start(EmulatorConfig::default());
    let o = jr_server(&emu, PASSWORD, &["restore", j, "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    // The warning reaches a pipe without colour codes.
    assert!(
        text(&o).contains("restored unshared") && !text(&o).contains('\u{1b}'),
        "{}",
        text(&o)
    );
    let o = jr_server(&emu, PASSWORD, &["verify", j]);
    assert!(o.status.success(), "{}", text(&o));
    let o = jr_server(&emu, PASSWORD, &["restore", j, "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("Restored: 0 file(s) uploaded"),
        "{}",
        text(&o)
    );
}

/// An end-to-end encrypted Joplin Server target: the real CLI turns E2EE on through the
/// emulator, we restore with the master password, and a fresh CLI profile decrypts exactly
/// the backup (the server parses and re-serialises every encrypted item on the way).
#[test]
fn encrypted_target_fresh_client_decrypts_exactly_the_backup() {
    const MASTER: &str = "Server pw ß 2";
    let tmp = tempfile::tempdir().unwrap();
    let (_rt, emu) = emulator_for_clients();
    let owner = Profile::new(tmp.path().join("owner"));
    use_emulator(&owner, &emu);
    let out = owner.batch(&[
        format!("e2ee enable --password \"{MASTER}\""),
        "sync".into(),
    ]);
    assert!(!out.contains("Last error"), "{out}");
    let info: serde_json::Value =
        serde_json::from_slice(&emu.content(USER, "info.json").unwrap()).unwrap();
    assert_eq!(info["e2ee"]["value"], true, "E2EE not enabled: {info}");

    let jex = sample_jex();
    let t = jserver::target(&emu);
    let o = support::jr_env(
        &[
            "restore",
            jex.to_str().unwrap(),
            "--target",
            &t,
            "--username",
            USER,
            "--yes",
        ],
        &[
            ("JOPLIN_RESTORE_PASSWORD", PASSWORD),
            ("JOPLIN_RESTORE_MASTER_PASSWORD", MASTER),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("Verified: 27 items and 3 blobs"), "{out}");
    let items: Vec<String> = emu
        .names(USER)
        .into_iter()
        .filter(|n| joplin_server_emulator::is_joplin_item_name(n))
        .collect();
    assert_eq!(items.len(), 27, "{items:?}");
    for n in &items {
        let c = String::from_utf8(emu.content(USER, n).unwrap()).unwrap();
        assert!(
            c.contains("\nencryption_applied: 1\n"),
            "{n} is plain:\n{c}"
        );
    }

    let want = sample_manifest();
    for (who, p) in [
        ("fresh", Profile::new(tmp.path().join("fresh"))),
        ("owner", owner),
    ] {
        if who == "fresh" {
            use_emulator(&p, &emu);
        }
        p.run(&["config", "encryption.masterPassword", MASTER]);
        // Decryption and blob downloads take a few rounds.
        for _ in 0..3 {
            p.sync();
            p.run(&["e2ee", "decrypt"]);
            if p.manifest() == want {
                break;
            }
        }
        assert_holds_exactly(
            &p,
            &want,
            &format!("{who} profile, encrypted Joplin Server"),
        );
    }
}

/// Restore over a client's newer content, then roll back: the client that synced the restore
/// comes back to its own content through the change feed, without conflicts.
#[test]
fn rollback_brings_a_client_that_synced_the_restore_back() {
    let tmp = tempfile::tempdir().unwrap();
    let (_rt, emu) = emulator_for_clients();
    let p = restored_and_edited(&emu, &tmp.path().join("client"));
    let before = p.manifest();
    assert_ne!(before, sample_manifest());

    let snaps = tmp.path().join("snaps");
    let out = restore_over(&emu, &snaps);
    let snap = out
        .lines()
        .find_map(|l| l.strip_prefix("Snapshot of the target: "))
        .unwrap_or_else(|| panic!("no snapshot printed:\n{out}"))
        .trim()
        .to_string();
    p.sync();
    assert_manifest_eq(
        &p.manifest(),
        &sample_manifest(),
        "client after the restore",
    );

    let o = jr_server(
        &emu,
        PASSWORD,
        &[
            "rollback",
            &snap,
            "--yes",
            "--snapshot-dir",
            tmp.path().join("snaps2").to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("Verified: the target matches the snapshot"),
        "{out}"
    );
    // The items the restore had deleted are back as new items: the rollback names the rerun
    // for a client that missed the deletion.
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("note (Joplin Server)")
            && err.contains("rollback again with --rewrite-unchanged"),
        "{err}"
    );
    p.sync();
    assert_holds_exactly(&p, &before, "client after the rollback");
    // That rerun writes every item again; the client stays as it is.
    let o = jr_server(
        &emu,
        PASSWORD,
        &[
            "rollback",
            &snap,
            "--yes",
            "--no-snapshot",
            "--rewrite-unchanged",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    p.sync();
    assert_manifest_eq(&p.manifest(), &before, "client after the rewrite");
}

/// `--mode clear-first` on Joplin Server deletes first only what the backup lacks and rewrites
/// the rest in place: deleting and re-creating every item made a client that synced before
/// delete them all at its next sync (it reads each deletion and new copy in one sync).
#[test]
fn clear_first_keeps_a_synced_client_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let (_rt, emu) = emulator_for_clients();
    let p = restored_and_edited(&emu, &tmp.path().join("client"));
    let jex = sample_jex();
    let o = jr_server(
        &emu,
        PASSWORD,
        &[
            "restore",
            jex.to_str().unwrap(),
            "--mode",
            "clear-first",
            "--yes",
            "--no-snapshot",
        ],
    );
    let all = text(&o);
    assert!(o.status.success(), "{all}");
    assert!(
        all.contains("deletes first only what the backup lacks"),
        "{all}"
    );
    p.sync();
    assert_holds_exactly(&p, &sample_manifest(), "client after a clear-first restore");
}

/// The core use case on Joplin Server: a note deleted for good on one client comes back. A
/// client that had not synced since the deletion reads the deletion and the new copy in one
/// sync and drops the note (the Joplin client's doing); the restore says so, and the rerun it
/// names brings the note back to that client too.
#[test]
fn a_note_brought_back_reaches_a_client_that_missed_its_deletion() {
    const OVERVIEW: &str = "2ebc0432f27d42fdb982a925c8734636";
    let tmp = tempfile::tempdir().unwrap();
    let (_rt, emu) = emulator_for_clients();
    let jex = sample_jex();
    let o = jr_server(&emu, PASSWORD, &["restore", jex.to_str().unwrap(), "-q"]);
    assert!(o.status.success(), "{}", text(&o));
    let (a, b) = (
        Profile::new(tmp.path().join("a")),
        Profile::new(tmp.path().join("b")),
    );
    for p in [&a, &b] {
        use_emulator(p, &emu);
        p.sync();
    }
    a.run(&["rmnote", "-f", "--permanent", OVERVIEW]);
    a.sync();
    let o = jr_server(
        &emu,
        PASSWORD,
        &["restore", jex.to_str().unwrap(), "--yes", "--no-snapshot"],
    );
    let all = text(&o);
    assert!(o.status.success(), "{all}");
    assert!(
        all.contains("note (Joplin Server): 1 item(s) were written")
            && all.contains("--rewrite-unchanged"),
        "{all}"
    );
    a.sync();
    b.sync();
    let o = jr_server(
        &emu,
        PASSWORD,
        &[
            "restore",
            jex.to_str().unwrap(),
            "--yes",
            "--no-snapshot",
            "--rewrite-unchanged",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    for (who, p) in [("a", &a), ("b", &b)] {
        p.sync();
        assert_holds_exactly(
            p,
            &sample_manifest(),
            &format!("client {who} after the rewrite"),
        );
    }
}

/// A migration from Joplin Server without the source's user names the source's option: the
/// destination's `--username` is not it.
#[test]
fn migrate_from_joplin_server_asks_for_from_username() {
    let tmp = tempfile::tempdir().unwrap();
    let (_rt, emu) = jserver::start(EmulatorConfig::default());
    let dest = tmp.path().join("dest");
    let o = support::jr_env(
        &[
            "migrate",
            "--from",
            &jserver::target(&emu),
            "--to",
            dest.to_str().unwrap(),
            "--username",
            USER,
        ],
        &[("JOPLIN_RESTORE_FROM_PASSWORD", PASSWORD)],
    );
    let all = text(&o);
    assert!(!o.status.success(), "{all}");
    assert!(all.contains("pass --from-username"), "{all}");
    assert!(!dest.exists(), "nothing written: {all}");
}
