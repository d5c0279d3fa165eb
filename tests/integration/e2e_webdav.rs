//! End to end on a WebDAV sync target (Apache mod_dav), judged by the real Joplin CLI
//! (`sync.target 6`), plus the faults a WebDAV user meets: wrong password, server down, a full
//! disk in the middle of the upload.

use crate::support;

use std::path::Path;
use std::sync::atomic::Ordering;

use support::joplin::{assert_manifest_eq, Profile};
use support::webdav::{jr_dav, use_webdav, DavServer, FaultProxy, USER};
use support::{jr_env, sample_jex, sample_manifest, text, tree_hashes};

fn jex() -> String {
    sample_jex().to_str().unwrap().to_string()
}

/// Run our binary against a WebDAV URL (password through the environment); must succeed.
fn jr_dav_ok(args: &[&str]) -> String {
    let o = jr_dav(args);
    assert!(o.status.success(), "joplin-restore {args:?}:\n{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn restore(url: &str, extra: &[&str]) -> String {
    let mut args = vec!["restore", jex().leak(), "--target", url, "--username", USER];
    args.extend_from_slice(extra);
    jr_dav_ok(&args)
}

#[test]
fn fresh_client_syncs_exactly_the_backup_with_original_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = DavServer::apache();
    // The collection does not exist yet: the restore creates it (Joplin's driver would not).
    let url = srv.url("Joplin");
    let out = restore(&url, &[]);
    assert!(out.contains("Checked: 27 items and 3 blobs"), "{out}");
    // The webdav:// form and the username from the environment reach the same target.
    let o = jr_env(
        &[
            "verify",
            &jex(),
            "--target",
            &url.replace("http://", "webdav://"),
        ],
        &[
            ("JOPLIN_RESTORE_USERNAME", USER),
            ("JOPLIN_RESTORE_PASSWORD", support::webdav::PASS),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));

    let p = Profile::new(tmp.path().join("fresh"));
    use_webdav(&p, &url);
    p.sync();
    assert_manifest_eq(
        &p.manifest(),
        &sample_manifest(),
        "fresh profile after restore",
    );
}

/// rclone serve webdav lists `.sync/`, `.lock/` and hands out other hrefs than Apache.
#[test]
fn fresh_client_syncs_the_backup_from_rclone() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = DavServer::rclone();
    let url = srv.url("Joplin");
    let out = restore(&url, &[]);
    assert!(out.contains("Checked: 27 items and 3 blobs"), "{out}");
    let p = Profile::new(tmp.path().join("fresh"));
    use_webdav(&p, &url);
    p.sync();
    assert_manifest_eq(
        &p.manifest(),
        &sample_manifest(),
        "fresh profile via rclone",
    );
    // A rerun finds everything in place and uploads nothing.
    let out = restore(&url, &[]);
    assert!(out.contains("upload 0 files"), "{out}");
}

/// As in e2e_fs: a client that synced an older, different content converges to the backup.
#[test]
fn stale_client_converges_to_the_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = DavServer::apache();
    let url = srv.url("Joplin");
    restore(&url, &[]);
    let p = Profile::new(tmp.path().join("stale"));
    use_webdav(&p, &url);
    p.sync();
    p.edit_after_the_backup();
    p.sync();

    let snaps = tmp.path().join("snaps");
    // No pause here on purpose: the client's edits and the restore may share a second, which
    // Apache's 1-second getlastmodified cannot tell apart (the stamp must not be floored).
    let out = restore(&url, &["--yes", "--snapshot-dir", snaps.to_str().unwrap()]);
    assert!(out.contains("Snapshot of the target"), "{out}");
    p.sync();
    assert_manifest_eq(
        &p.manifest(),
        &sample_manifest(),
        "stale profile after restore",
    );
    assert!(p.conflict_bodies().is_empty(), "no conflict expected");
    jr_dav_ok(&["verify", &jex(), "--target", &url, "--username", USER]);
}

fn data_files(dir: &Path) -> Vec<(String, String)> {
    tree_hashes(dir)
}

#[test]
fn wrong_password_is_a_clear_401_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = DavServer::apache();
    let url = srv.url("Joplin");
    restore(&url, &[]);
    let before = data_files(&srv.data);
    let pwfile = tmp.path().join("pw");
    std::fs::write(&pwfile, "not-the-password\n").unwrap();
    // --password-file wins over the (right) password in the environment.
    let o = jr_env(
        &[
            "restore",
            &jex(),
            "--target",
            &url,
            "--username",
            USER,
            "--password-file",
            pwfile.to_str().unwrap(),
            "--yes",
            "--rewrite-unchanged",
        ],
        &[("JOPLIN_RESTORE_PASSWORD", support::webdav::PASS)],
    );
    let all = text(&o);
    assert_eq!(o.status.code(), Some(4), "{all}");
    assert!(all.contains("authentication failed"), "{all}");
    assert!(all.contains("HTTP 401"), "{all}");
    assert!(all.contains("\"joplin\""), "{all}");
    assert!(!all.contains("not-the-password"), "{all}");
    assert_eq!(
        data_files(&srv.data),
        before,
        "the target must be untouched"
    );
}

#[test]
fn missing_password_without_a_terminal_says_how_to_give_one() {
    let srv = DavServer::apache();
    let o = jr_env(
        &["status", "--target", &srv.url("Joplin"), "--username", USER],
        &[("JOPLIN_RESTORE_PASSWORD", "")],
    );
    let all = text(&o);
    assert!(!o.status.success(), "{all}");
    assert!(
        all.contains("JOPLIN_RESTORE_PASSWORD") && all.contains("--password-file"),
        "{all}"
    );
}

#[test]
fn server_down_is_a_clear_connection_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/dav/Joplin");
    let o = jr_dav(&["restore", &jex(), "--target", &url, "--username", USER]);
    let all = text(&o);
    assert_eq!(o.status.code(), Some(1), "{all}");
    assert!(
        all.contains(&format!("cannot reach http://127.0.0.1:{port}")),
        "{all}"
    );
    assert!(all.contains("running"), "{all}");
}

/// The disk fills up after a few PUTs: the restore stops, says what it uploaded and what failed,
/// deletes nothing; once there is space again the same command finishes the job.
#[test]
fn insufficient_storage_mid_upload_stops_and_a_rerun_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = DavServer::apache();
    srv.make_collection("Joplin");
    let proxy = FaultProxy::new(srv.port, 12);
    let url = format!("http://127.0.0.1:{}/dav/Joplin", proxy.port);
    let args = ["restore", &jex(), "--target", &url, "--username", USER];
    let o = jr_dav(&args);
    let all = text(&o);
    assert_eq!(o.status.code(), Some(1), "{all}");
    assert!(proxy.puts_refused.load(Ordering::SeqCst) > 0);
    assert!(all.contains("out of space"), "{all}");
    assert!(all.contains("HTTP 507"), "{all}");
    assert!(all.contains("file(s) uploaded"), "{all}");
    assert!(all.contains("run the same command again"), "{all}");
    let partial = support::count_items(&srv.data.join("Joplin"));
    assert!(
        partial < 27,
        "only part of the items may be there, got {partial}"
    );

    proxy.heal();
    let out = jr_dav_ok(&args);
    assert!(out.contains("Checked: 27 items and 3 blobs"), "{out}");
    let p = Profile::new(tmp.path().join("fresh"));
    use_webdav(&p, &srv.url("Joplin"));
    p.sync();
    assert_manifest_eq(&p.manifest(), &sample_manifest(), "after the rerun");
}

/// `clear` on a WebDAV target a real client filled leaves only info.json (and empty folders);
/// a fresh client syncs an empty notebook list. The client that filled it is stopped by
/// Joplin's fail-safe instead of losing its notes.
#[test]
fn clear_leaves_only_info_json_and_a_fresh_client_sees_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = DavServer::apache();
    let target = srv.make_collection("Joplin");
    let url = srv.url("Joplin");
    let filler = Profile::new(tmp.path().join("filler"));
    filler.batch(&[
        "mkbook \"Work\"".into(),
        "mknote \"Meeting\"".into(),
        "set Meeting body \"agenda\"".into(),
        "tag add urgent Meeting".into(),
    ]);
    use_webdav(&filler, &url);
    filler.sync();
    let info_before = std::fs::read(target.join("info.json")).unwrap();

    let out = jr_dav_ok(&[
        "clear",
        "--target",
        &url,
        "--username",
        USER,
        "--yes",
        "--snapshot-dir",
        tmp.path().join("snaps").to_str().unwrap(),
    ]);
    assert!(out.contains("Cleared"), "{out}");
    let files: Vec<String> = tree_hashes(&target)
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| !p.ends_with('/') && !p.starts_with(".sync/"))
        .collect();
    assert_eq!(files, vec!["info.json".to_string()]);
    assert_eq!(
        std::fs::read(target.join("info.json")).unwrap(),
        info_before
    );

    let fresh = Profile::new(tmp.path().join("fresh"));
    use_webdav(&fresh, &url);
    fresh.sync();
    let m = fresh.manifest();
    assert_eq!(m["counts"]["notes"], 0);
    assert_eq!(m["counts"]["folders"], 0);

    // The filler would lose 100 % of its items: Joplin's fail-safe stops it, notes kept.
    let o = filler.sync_unchecked();
    assert!(o.contains("Fail-safe"), "{o}");
    assert_eq!(filler.manifest()["counts"]["notes"], 1);
}

/// On a terminal the password is asked for, without echo. `script` (util-linux) gives the
/// command a pseudo-terminal; the password is typed only once the prompt is shown (like a person
/// would: typed at once, a loaded machine showed the echo still on for a moment).
#[test]
fn password_prompt_on_a_terminal_is_not_echoed() {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    use std::time::Duration;

    let srv = DavServer::apache();
    let url = srv.url("Joplin");
    restore(&url, &[]);
    let cmd = format!(
        "{} verify {} --target {url} --username {USER}",
        env!("CARGO_BIN_EXE_joplin-restore"),
        jex()
    );
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .envs(support::xdg_env())
        .env_remove("JOPLIN_RESTORE_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script (util-linux)");
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let mut stdin = child.stdin.take().unwrap();
    let mut typed = false;
    // Bounded: at most 60 s in all.
    while let Ok(chunk) = rx.recv_timeout(Duration::from_secs(60)) {
        seen.extend_from_slice(&chunk);
        if !typed && String::from_utf8_lossy(&seen).contains("Password for joplin on") {
            // rpassword writes the prompt first and switches echo off just after: let it.
            std::thread::sleep(Duration::from_secs(1));
            stdin
                .write_all(format!("{}\n", support::webdav::PASS).as_bytes())
                .unwrap();
            typed = true;
        }
    }
    let status = child.wait().unwrap();
    let out = String::from_utf8_lossy(&seen);
    assert!(typed, "no password prompt:\n{out}");
    assert!(status.success(), "{out}");
    assert!(out.contains("OK: 27 items and 3 blobs"), "{out}");
    assert!(
        !out.contains(support::webdav::PASS),
        "the password was echoed:\n{out}"
    );
}

/// Commands that only read a target (`status`, `verify`, `export`, `clear`) say a missing
/// WebDAV collection does not exist instead of reporting an empty target; `restore` still
/// creates it.
#[test]
fn a_missing_collection_is_an_error_for_reading_commands() {
    let srv = DavServer::apache();
    let url = srv.url("NoSuchFolder");
    for args in [
        vec!["status", "--target", &url, "--username", USER],
        vec!["clear", "--target", &url, "--username", USER, "--yes"],
    ] {
        let o = jr_dav(&args);
        let all = text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {all}");
        assert!(
            all.contains("no such collection on the server") && all.contains("NoSuchFolder"),
            "{args:?}: {all}"
        );
    }
    assert!(!srv.data.join("NoSuchFolder").exists());
    restore(&url, &[]);
    let out = jr_dav_ok(&["status", "--target", &url, "--username", USER]);
    assert!(out.contains("27"), "{out}");
}

/// A WebDAV URL that points at an S3 store (a port mix-up) says so and how to give an S3
/// target, instead of a bare HTTP status.
#[test]
fn a_webdav_url_at_an_s3_store_says_it_is_s3() {
    let s3 = support::s3::S3Server::start(support::s3::S3Kind::S3sFs);
    for url in [
        format!("http://127.0.0.1:{}/joplin", s3.port),
        format!("http://127.0.0.1:{}/Joplin", s3.port),
    ] {
        let o = jr_env(&["status", "--target", &url], &[]);
        let all = text(&o);
        assert_eq!(o.status.code(), Some(1), "{url}: {all}");
        assert!(
            all.contains("this is an S3 store") && all.contains("s3://BUCKET --endpoint"),
            "{url}: {all}"
        );
    }
}

/// `restore` creates its collection only inside an existing one: a typo in a parent is an
/// error, not a new tree of folders; and a collection holding only someone's folders is not
/// a sync target.
#[test]
fn restore_makes_no_tree_of_folders_and_refuses_a_folder_of_documents() {
    let srv = DavServer::apache();
    let restore_into = |url: &str| {
        let o = jr_dav(&[
            "restore",
            &jex(),
            "--target",
            url,
            "--username",
            USER,
            "--yes",
        ]);
        (o.status.code(), text(&o))
    };
    let (code, all) = restore_into(&srv.url("Joplni/sub/joplin"));
    assert_eq!(code, Some(1), "{all}");
    assert!(
        all.contains("its parent collection") && all.contains("Joplni/sub/"),
        "{all}"
    );
    assert!(!srv.data.join("Joplni").exists(), "{all}");

    let docs = srv.make_collection("Documents");
    std::fs::create_dir_all(docs.join("Work")).unwrap();
    std::fs::write(docs.join("Work/contract.pdf"), "pdf").unwrap();
    let before = data_files(&srv.data);
    let (code, all) = restore_into(&srv.url("Documents"));
    assert_eq!(code, Some(4), "{all}");
    assert!(
        all.contains("not a Joplin sync target") && all.contains("Work/"),
        "{all}"
    );
    assert_eq!(data_files(&srv.data), before, "{all}");
}

/// A WebDAV target without its `locks/` collection (copied without empty folders): Apache
/// answers the lock's PUT with 409; `clear` makes the collection and goes on.
#[test]
fn clear_makes_a_missing_locks_collection() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = DavServer::apache();
    let target = srv.make_collection("Joplin");
    let url = srv.url("Joplin");
    restore(&url, &["-q"]);
    std::fs::remove_dir_all(target.join("locks")).unwrap();
    jr_dav_ok(&[
        "clear",
        "--target",
        &url,
        "--username",
        USER,
        "--yes",
        "--snapshot-dir",
        tmp.path().join("snaps").to_str().unwrap(),
    ]);
    assert!(target.join("locks").is_dir());
    assert_eq!(support::count_items(&target), 0);
}
