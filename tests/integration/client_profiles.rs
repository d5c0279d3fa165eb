//! `client profiles`, `client reset` and `client customise` on temporary home trees laid out as
//! on Linux, macOS and Windows (Joplin uses `<home>/.config/<app>` on all three), plus the
//! Windows portable build's `JoplinProfile`.

use crate::support;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use support::{jr, jr_ok, repo, text, tree_hashes};

/// A profile folder as Joplin leaves it: settings.json and a database with `notes` and
/// `settings` tables (`live` notes, plus one in the trash and one conflict, not counted).
fn fake_profile(dir: &Path, live: usize, settings: Value, db_settings: &[(&str, &str)]) {
    std::fs::create_dir_all(dir.join("resources")).unwrap();
    std::fs::write(dir.join("settings.json"), settings.to_string()).unwrap();
    let db = rusqlite::Connection::open(dir.join("database.sqlite")).unwrap();
    db.execute_batch(
        "CREATE TABLE notes (id TEXT PRIMARY KEY, title TEXT, is_conflict INT DEFAULT 0, \
         deleted_time INT DEFAULT 0); CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT);",
    )
    .unwrap();
    for i in 0..live {
        db.execute(
            "INSERT INTO notes (id, title) VALUES (?1, 'n')",
            [format!("{i:032x}")],
        )
        .unwrap();
    }
    db.execute_batch(
        "INSERT INTO notes VALUES ('trashed', 't', 0, 1700000000000); \
         INSERT INTO notes VALUES ('conflict', 'c', 1, 0);",
    )
    .unwrap();
    for (k, v) in db_settings {
        db.execute("INSERT INTO settings VALUES (?1, ?2)", [k, v])
            .unwrap();
    }
}

fn profiles_json(args: &[&str]) -> Vec<Value> {
    let mut a = vec!["client", "profiles", "--json"];
    a.extend_from_slice(args);
    let out = jr_ok(&a);
    assert!(!out.contains("hunter2"), "a secret was printed:\n{out}");
    assert!(
        !out.contains("me@example.com"),
        "a user name was printed:\n{out}"
    );
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["command"], "client profiles");
    serde_json::from_value::<Vec<Value>>(report["profiles"].clone()).unwrap()
}

fn by_path<'a>(list: &'a [Value], p: &Path) -> &'a Value {
    list.iter()
        .find(|v| v["path"].as_str() == Some(p.to_str().unwrap()))
        .unwrap_or_else(|| panic!("{} not listed in {list:#?}", p.display()))
}

fn desktop_with_subprofile(root: &Path) {
    fake_profile(
        root,
        3,
        json!({"sync.target": 9, "sync.9.path": "https://joplin.example.com",
               "sync.9.username": "me@example.com", "api.token": "hunter2"}),
        &[("encryption.enabled", "1"), ("sync.9.password", "hunter2")],
    );
    std::fs::write(
        root.join("profiles.json"),
        r#"{"version":2,"currentProfileId":"abc12345","profiles":[{"name":"Default","id":"default"},{"name":"Work","id":"abc12345"}]}"#,
    )
    .unwrap();
    fake_profile(
        &root.join("profile-abc12345"),
        5,
        json!({"sync.target": 2, "sync.2.path": "/mnt/share/joplin"}),
        &[],
    );
}

#[test]
fn linux_home_desktop_cli_and_subprofiles() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home/me");
    let config = home.join(".config");
    desktop_with_subprofile(&config.join("joplin-desktop"));
    fake_profile(
        &config.join("joplin"),
        2,
        json!({"sync.target": 8, "sync.8.path": "notes-bucket", "sync.8.url": "https://s3.example.com/",
               "sync.8.username": "me@example.com"}),
        &[],
    );
    fake_profile(&config.join("joplin-desktop-work"), 1, json!({}), &[]);
    // What `client reset` moved aside is no live profile (its name starts as an alt instance's).
    fake_profile(
        &config.join("joplin-desktop-old.reset-20261201T000000Z"),
        1,
        json!({}),
        &[],
    );
    std::fs::create_dir_all(config.join("unrelated-app")).unwrap();

    let list = profiles_json(&["--home", home.to_str().unwrap()]);
    assert_eq!(list.len(), 4, "{list:#?}");

    let d = by_path(&list, &config.join("joplin-desktop"));
    assert_eq!(d["kind"], "desktop");
    assert_eq!(d["name"], "Default");
    assert_eq!(d["notes"], 3);
    assert_eq!(d["e2ee"], true);
    assert_eq!(d["sync_target"]["name"], "Joplin Server");
    assert_eq!(d["sync_target"]["location"], "https://joplin.example.com");
    assert_eq!(d["running"]["running"], false);

    let w = by_path(&list, &config.join("joplin-desktop/profile-abc12345"));
    assert_eq!(w["name"], "Work");
    assert_eq!(w["notes"], 5);
    assert_eq!(w["root"], config.join("joplin-desktop").to_str().unwrap());
    assert_eq!(w["sync_target"]["name"], "filesystem");
    assert_eq!(w["sync_target"]["location"], "/mnt/share/joplin");
    assert_eq!(w["e2ee"], false);

    let c = by_path(&list, &config.join("joplin"));
    assert_eq!(c["kind"], "cli");
    assert_eq!(c["notes"], 2);
    assert_eq!(c["sync_target"]["name"], "S3");
    assert_eq!(
        c["sync_target"]["location"],
        "https://s3.example.com/ bucket notes-bucket"
    );
    assert_eq!(
        by_path(&list, &config.join("joplin-desktop-work"))["kind"],
        "desktop-alt-instance"
    );

    // The text report says the same, without secrets.
    let out = jr_ok(&["client", "profiles", "--home", home.to_str().unwrap()]);
    assert!(
        out.contains("sync target: Joplin Server (9) https://joplin.example.com"),
        "{out}"
    );
    assert!(out.contains("end-to-end encryption: on"), "{out}");
    assert!(
        !out.contains("hunter2") && !out.contains("me@example.com"),
        "{out}"
    );
}

#[test]
fn macos_home_uses_dot_config_not_application_support() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("Users/me");
    // Electron's userData folder holds caches, not the Joplin profile.
    fake_profile(
        &home.join("Library/Application Support/Joplin"),
        9,
        json!({}),
        &[],
    );
    fake_profile(&home.join(".config/joplin-desktop"), 4, json!({}), &[]);
    let list = profiles_json(&["--home", home.to_str().unwrap()]);
    assert_eq!(list.len(), 1, "{list:#?}");
    assert_eq!(list[0]["notes"], 4);
    assert!(list[0]["sync_target"].is_null());
}

#[test]
fn windows_home_and_portable_profile() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("C/Users/me");
    fake_profile(&home.join("AppData/Roaming/Joplin"), 9, json!({}), &[]);
    fake_profile(
        &home.join(".config/joplin-desktop"),
        6,
        json!({"sync.target": 6, "sync.6.path": "https://dav.example.com/joplin"}),
        &[],
    );
    let portable = tmp.path().join("D/PortableApps/Joplin");
    fake_profile(&portable.join("JoplinProfile"), 7, json!({}), &[]);
    let list = profiles_json(&[
        "--home",
        home.to_str().unwrap(),
        "--portable",
        portable.to_str().unwrap(),
    ]);
    assert_eq!(list.len(), 2, "{list:#?}");
    let d = by_path(&list, &home.join(".config/joplin-desktop"));
    assert_eq!(d["sync_target"]["name"], "WebDAV");
    assert_eq!(d["notes"], 6);
    let p = by_path(&list, &portable.join("JoplinProfile"));
    assert_eq!(p["kind"], "portable");
    assert_eq!(p["notes"], 7);
}

fn set_lock(root: &Path, age: Duration) {
    let f = std::fs::File::create(root.join("lock")).unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
}

fn siblings_starting(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect();
    v.sort();
    v
}

#[test]
fn reset_refuses_while_the_lock_is_fresh_and_moves_aside_otherwise() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let config = home.join(".config");
    let root = config.join("joplin-desktop");
    desktop_with_subprofile(&root);
    set_lock(&root, Duration::from_secs(2));
    let before = tree_hashes(&root);

    // Running (lock refreshed 2 s ago): refused, nothing moved, for the root and a sub-profile.
    for args in [
        vec!["--home", home.to_str().unwrap()],
        vec!["--profile", root.to_str().unwrap()],
        vec!["--profile", "SUB"],
    ] {
        let sub = root.join("profile-abc12345");
        let args: Vec<&str> = args
            .iter()
            .map(|a| {
                if *a == "SUB" {
                    sub.to_str().unwrap()
                } else {
                    a
                }
            })
            .collect();
        let mut a = vec!["client", "reset", "--yes"];
        a.extend(args);
        let o = jr(&a);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(4), "{t}");
        assert!(
            t.contains("Joplin is running") && t.contains("Quit Joplin"),
            "{t}"
        );
    }
    assert_eq!(tree_hashes(&root), before);

    // Not confirmed (no terminal, no --yes): nothing moved.
    set_lock(&root, Duration::from_secs(120));
    let o = jr(&["client", "reset", "--home", home.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(root.is_dir());
    // A dry run says where the profile would go and moves nothing.
    let out = jr_ok(&[
        "client",
        "reset",
        "--home",
        home.to_str().unwrap(),
        "--dry-run",
    ]);
    assert!(
        out.contains("Would move") && out.contains("joplin-desktop.reset-"),
        "{out}"
    );
    assert!(root.is_dir() && siblings_starting(&config, "joplin-desktop.reset-").is_empty());

    // A stale lock (force-quit app) does not block; the folder moves to a sibling intact.
    let before = tree_hashes(&root);
    let out = jr_ok(&["client", "reset", "--home", home.to_str().unwrap(), "--yes"]);
    assert!(!root.exists(), "{out}");
    let moved = siblings_starting(&config, "joplin-desktop.reset-");
    assert_eq!(moved.len(), 1, "{out}");
    assert_eq!(tree_hashes(&moved[0]), before);
    assert!(
        out.contains(&format!("mv {} {}", moved[0].display(), root.display())),
        "{out}"
    );
    // The root carries its sub-profile: said before it moves.
    assert!(
        out.contains("its 1 other profile(s) (Work)") && out.contains("move with it"),
        "{out}"
    );

    // The same command again "to be sure", with the CLI's profile there too: it would move
    // that one next. Refused (exit 2), nothing moved; --profile names it if it is meant.
    let cli = config.join("joplin");
    fake_profile(&cli, 2, json!({}), &[]);
    let o = jr(&["client", "reset", "--home", home.to_str().unwrap(), "--yes"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains("was reset already") && t.contains(&format!("--profile {}", cli.display())),
        "{t}"
    );
    // Naming where the copy went (no listing shows it).
    assert!(
        t.contains(&format!("moved aside next to it: {}", moved[0].display())),
        "{t}"
    );
    assert!(cli.is_dir() && siblings_starting(&config, "joplin.reset-").is_empty());
    // Also after `client customise` put the desktop's files back (no profile there yet).
    customise_ok(&fixture_set(), &root);
    assert!(root.join("keymap-desktop.json").is_file());
    let o = jr(&["client", "reset", "--home", home.to_str().unwrap(), "--yes"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(cli.is_dir());
    jr_ok(&[
        "client",
        "reset",
        "--profile",
        cli.to_str().unwrap(),
        "--yes",
    ]);
    assert!(!cli.exists() && siblings_starting(&config, "joplin.reset-").len() == 1);
}

#[test]
fn reset_of_a_subprofile_moves_only_its_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("joplin-desktop");
    desktop_with_subprofile(&root);
    let sub = root.join("profile-abc12345");
    let out = jr_ok(&[
        "client",
        "reset",
        "--profile",
        sub.to_str().unwrap(),
        "--yes",
    ]);
    assert!(!sub.exists());
    assert!(root.join("profiles.json").is_file(), "{out}");
    assert!(root.join("database.sqlite").is_file());
    assert_eq!(siblings_starting(&root, "profile-abc12345.reset-").len(), 1);
    assert!(out.contains("stays listed in profiles.json"), "{out}");

    let o = jr(&[
        "client",
        "reset",
        "--profile",
        tmp.path().to_str().unwrap(),
        "--yes",
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("does not look like a Joplin profile"));
}

/// `client customise --from FROM --profile PROFILE`.
fn customise(from: &Path, profile: &Path) -> std::process::Output {
    jr(&[
        "client",
        "customise",
        "--from",
        from.to_str().unwrap(),
        "--profile",
        profile.to_str().unwrap(),
    ])
}

/// [`customise`], which must succeed; its stdout.
fn customise_ok(from: &Path, profile: &Path) -> String {
    let o = customise(from, profile);
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn fixture_set() -> PathBuf {
    repo().join("tests/fixtures/client/backup-set")
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn customise_round_trip_with_backup_of_what_it_replaces() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("joplin-desktop");
    fake_profile(&root, 1, json!({"sync.target": 9, "locale": "fr_FR"}), &[]);
    std::fs::write(root.join("userstyle.css"), "body { color: red; }").unwrap();
    let settings_before = read(&root.join("settings.json"));
    let fx = fixture_set().join("profile");

    let out = customise_ok(&fixture_set(), &root);
    for f in [
        "keymap-desktop.json",
        "userchrome.css",
        "userstyle.css",
        "plugins/com.example.plugin.jpl",
    ] {
        assert_eq!(read(&root.join(f)), read(&fx.join(f)), "{f}: {out}");
    }
    assert_eq!(
        read(&root.join("settings.json")),
        settings_before,
        "settings.json needs --settings"
    );
    assert!(
        out.contains("4 file(s) put back, 0 already identical"),
        "{out}"
    );
    let backups = siblings_starting(tmp.path(), "joplin-desktop.customise-backup-");
    assert_eq!(backups.len(), 1, "{out}");
    assert_eq!(
        read(&backups[0].join("userstyle.css")),
        b"body { color: red; }"
    );
    // Files Joplin must update later are writable even when the backup's are not.
    assert!(!std::fs::metadata(root.join("keymap-desktop.json"))
        .unwrap()
        .permissions()
        .readonly());

    // Again, from the profile/ folder itself: nothing to do, nothing backed up.
    let out = customise_ok(&fx, &root);
    assert!(
        out.contains("0 file(s) put back, 4 already identical"),
        "{out}"
    );
    assert_eq!(
        siblings_starting(tmp.path(), "joplin-desktop.customise-backup-").len(),
        1
    );

    // settings.json only on request, and the old one is kept.
    std::thread::sleep(Duration::from_millis(1100));
    let out = jr_ok(&[
        "client",
        "customise",
        "--settings",
        "--from",
        fx.to_str().unwrap(),
        "--profile",
        root.to_str().unwrap(),
    ]);
    assert_eq!(
        read(&root.join("settings.json")),
        read(&fx.join("settings.json")),
        "{out}"
    );
    let backups = siblings_starting(tmp.path(), "joplin-desktop.customise-backup-");
    assert_eq!(backups.len(), 2, "{out}");
    assert_eq!(read(&backups[1].join("settings.json")), settings_before);
}

#[test]
fn customise_a_subprofile_puts_shared_files_in_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("joplin-desktop");
    desktop_with_subprofile(&root);
    let sub = root.join("profile-abc12345");
    // A set with templates/ too (older plugin versions saved them).
    let set = tmp.path().join("set");
    let fx = fixture_set().join("profile");
    std::fs::create_dir_all(set.join("profile/templates")).unwrap();
    for f in ["keymap-desktop.json", "userchrome.css", "userstyle.css"] {
        std::fs::copy(fx.join(f), set.join("profile").join(f)).unwrap();
    }
    std::fs::write(set.join("profile/templates/meeting.md"), "# Meeting\n").unwrap();
    customise_ok(&set, &sub);
    assert_eq!(
        read(&sub.join("keymap-desktop.json")),
        read(&fx.join("keymap-desktop.json"))
    );
    assert_eq!(read(&sub.join("templates/meeting.md")), b"# Meeting\n");
    assert_eq!(
        read(&root.join("userchrome.css")),
        read(&fx.join("userchrome.css"))
    );
    assert!(!sub.join("userchrome.css").exists());
    assert!(!root.join("keymap-desktop.json").exists());
}

#[test]
fn customise_refuses_while_joplin_runs_and_names_a_bad_source() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("joplin-desktop");
    fake_profile(&root, 1, json!({}), &[]);
    set_lock(&root, Duration::from_secs(1));
    let before = tree_hashes(&root);
    let o = customise(&fixture_set(), &root);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert_eq!(tree_hashes(&root), before);

    std::fs::remove_file(root.join("lock")).unwrap();
    let empty = tmp.path().join("not-a-set");
    std::fs::create_dir_all(&empty).unwrap();
    let o = customise(&empty, &root);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains(empty.to_str().unwrap()) && t.contains("profile/"),
        "{t}"
    );

    // A folder that is no profile (a typo: `--profile ~`) is refused, nothing written; an
    // empty one is taken.
    let other = tmp.path().join("documents");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("letter.txt"), "dear").unwrap();
    let before = tree_hashes(&other);
    let o = customise(&fixture_set(), &other);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(4), "{t}");
    assert!(t.contains("does not look like a Joplin profile"), "{t}");
    assert_eq!(tree_hashes(&other), before);
    let fresh = tmp.path().join("fresh-profile");
    std::fs::create_dir_all(&fresh).unwrap();
    std::fs::write(fresh.join(".DS_Store"), "").unwrap();
    customise_ok(&fixture_set(), &fresh);
    assert!(fresh.join("keymap-desktop.json").is_file());
}

/// With `--json`, `client reset` and `client customise` print one JSON report on stdout (the
/// human lines go to stderr), naming what moved where and what was put back.
#[test]
fn reset_and_customise_report_json() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("joplin-desktop");
    fake_profile(&root, 1, json!({"sync.target": 9}), &[]);
    // A dry run names where the profile would go, and moves nothing.
    let o = jr(&[
        "--json",
        "client",
        "reset",
        "--profile",
        root.to_str().unwrap(),
        "--dry-run",
    ]);
    let v: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    assert_eq!(v["dry_run"], true, "{v}");
    assert!(
        v["would_move_to"]
            .as_str()
            .is_some_and(|p| p.starts_with(&format!("{}.reset-", root.display()))),
        "{v}"
    );
    assert!(root.is_dir());
    let o = jr(&[
        "--json",
        "client",
        "reset",
        "--profile",
        root.to_str().unwrap(),
        "--yes",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let v: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    assert_eq!(v["command"], "client reset", "{v}");
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["from"], root.to_str().unwrap(), "{v}");
    let moved = PathBuf::from(v["moved_to"].as_str().unwrap());
    assert!(
        moved.join("database.sqlite").is_file() && !root.exists(),
        "{v}"
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("To undo"),
        "{}",
        text(&o)
    );

    fake_profile(&root, 1, json!({"sync.target": 9}), &[]);
    let o = jr(&[
        "--json",
        "client",
        "customise",
        "--from",
        fixture_set().to_str().unwrap(),
        "--profile",
        root.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let v: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    assert_eq!(v["command"], "client customise", "{v}");
    let written: Vec<&str> = v["summary"]["written"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        written.contains(&root.join("userstyle.css").to_str().unwrap()),
        "{v}"
    );
}

/// A Joplin CLI (or a desktop before 3.3) leaves no lock file: a running process whose
/// `--profile` is the profile is found in the process list, and reset refuses while it runs.
#[cfg(target_os = "linux")]
#[test]
fn reset_refuses_while_a_joplin_process_uses_the_profile() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("joplin");
    fake_profile(&root, 1, json!({"sync.target": 2}), &[]);
    // Stands in for `node …/bin/joplin --profile DIR`: an interpreter running a script named
    // joplin (NUL-separated arguments, as /proc shows them).
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = bin.join("joplin");
    std::fs::write(&script, "#!/bin/sh\nwhile :; do sleep 0.2; done\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    // Started from the profile's parent with a relative --profile: resolved against that
    // process's own folder, not ours.
    let mut child = Kill(
        std::process::Command::new("/bin/sh")
            .arg(&script)
            .arg("--profile")
            .arg("joplin")
            .current_dir(tmp.path())
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id();
    let reset = || {
        jr(&[
            "client",
            "reset",
            "--profile",
            root.to_str().unwrap(),
            "--yes",
        ])
    };
    let o = reset();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(4), "{t}");
    assert!(
        t.contains("Joplin is running") && t.contains(&format!("process {pid}")),
        "{t}"
    );
    assert!(root.join("database.sqlite").is_file(), "{t}");
    let listed = profiles_json(&["--profile", root.to_str().unwrap()]);
    assert_eq!(listed[0]["running"]["running"], true, "{listed:#?}");

    let _ = child.0.kill();
    let _ = child.0.wait();
    // A clipper-pid.txt left by an earlier `joplin server start`, whose pid now belongs to an
    // unrelated live process (this test), does not count.
    std::fs::write(root.join("clipper-pid.txt"), std::process::id().to_string()).unwrap();
    let o = reset();
    assert!(o.status.success(), "{}", text(&o));
    assert!(!root.exists());
}

/// `client profiles` shows where a profile syncs, never credentials: a WebDAV URL with
/// `user:password@` and a `?token=` query are shown without them.
#[test]
fn profiles_never_show_credentials_in_a_sync_url() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("joplin");
    fake_profile(
        &root,
        1,
        json!({"sync.target": 6,
               "sync.6.path": "https://alice:hunter2@dav.example.org/Joplin?token=s3cr3t"}),
        &[],
    );
    for json in [false, true] {
        let mut args = vec!["client", "profiles", "--profile", root.to_str().unwrap()];
        if json {
            args.insert(0, "--json");
        }
        let o = jr(&args);
        let t = text(&o);
        assert!(o.status.success(), "{t}");
        assert!(t.contains("https://dav.example.org/Joplin"), "{t}");
        // Neither the user, the password nor a token in the query.
        assert!(
            !t.contains("hunter2") && !t.contains("alice") && !t.contains("s3cr3t"),
            "{t}"
        );
    }
}

/// The README's "fully resetting a machine": reset, then customise before Joplin starts again.
/// The reset profile does not exist any more: customise creates it (the default one, or the
/// --profile given) and puts the files in, not into another profile that still exists (the
/// CLI's); a --profile whose parent is missing is refused.
#[test]
fn customise_right_after_a_reset_creates_the_profile() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let root = home.join(".config/joplin-desktop");
    fake_profile(&root, 2, json!({"sync.target": 2}), &[]);
    let cli = home.join(".config/joplin");
    fake_profile(&cli, 1, json!({"sync.target": 2}), &[]);
    let cli_before = support::tree_hashes(&cli);
    let h = home.to_str().unwrap();
    let out = jr_ok(&["client", "reset", "--home", h, "--yes"]);
    assert!(!root.exists(), "{out}");
    assert!(out.contains("client customise --from"), "{out}");

    let set = fixture_set();
    let out = jr_ok(&[
        "client",
        "customise",
        "--from",
        set.to_str().unwrap(),
        "--home",
        h,
    ]);
    assert!(out.contains("Created the profile folder"), "{out}");
    for f in [
        "keymap-desktop.json",
        "userstyle.css",
        "plugins/com.example.plugin.jpl",
    ] {
        assert_eq!(
            read(&root.join(f)),
            read(&set.join("profile").join(f)),
            "{f}: {out}"
        );
    }
    assert_eq!(
        support::tree_hashes(&cli),
        cli_before,
        "the CLI profile changed: {out}"
    );
    // Run again before Joplin starts: the same profile, not the CLI's, nor a new one.
    std::fs::remove_file(root.join("userstyle.css")).unwrap();
    let again = jr_ok(&[
        "client",
        "customise",
        "--from",
        set.to_str().unwrap(),
        "--home",
        h,
    ]);
    assert!(!again.contains("Created the profile folder"), "{again}");
    assert!(root.join("userstyle.css").is_file(), "{again}");
    assert_eq!(support::tree_hashes(&cli), cli_before, "{again}");

    // A home with no Joplin at all: the first run makes the desktop's folder, the second
    // finds it there and says so no more.
    let bare = tmp.path().join("bare-home");
    std::fs::create_dir_all(&bare).unwrap();
    let b = bare.to_str().unwrap();
    let args = [
        "client",
        "customise",
        "--from",
        set.to_str().unwrap(),
        "--home",
        b,
    ];
    let first = jr_ok(&args);
    assert!(first.contains("Created the profile folder"), "{first}");
    let second = jr_ok(&args);
    assert!(!second.contains("Created the profile folder"), "{second}");
    assert!(bare.join(".config/joplin-desktop/userstyle.css").is_file());

    let sub = tmp.path().join("elsewhere/joplin");
    let o = customise(&set, &sub);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("neither it nor its parent folder exists"),
        "{}",
        text(&o)
    );
    assert!(!sub.exists());
    std::fs::create_dir_all(sub.parent().unwrap()).unwrap();
    customise_ok(&set, &sub);
    assert!(sub.join("keymap-desktop.json").is_file());
}

/// `customise --from` takes every form `restore` takes: the plugin's folder of sets (newest),
/// a set archived as one 7z, per-item 7z archives (`profile.7z`), a password-protected set
/// (password from the environment, never from argv); each puts back the same profile files
/// as the unpacked set.
#[test]
fn customise_from_archived_sets_and_the_plugins_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let sets = repo().join("tests/fixtures/backup-sets");
    let want = sets.join("folder/JoplinBackup/default/202611241200/profile");
    let password = std::fs::read_to_string(sets.join("one-7z-password/PASSWORD.txt")).unwrap();
    let password = password.trim().rsplit(": ").next().unwrap().to_string();
    for (name, from) in [
        ("plugin-folder", sets.join("folder/JoplinBackup")),
        ("one-7z", sets.join("one-7z/JoplinBackup/202611241200.7z")),
        ("per-item-7z", sets.join("per-item-7z/JoplinBackup")),
        ("password", sets.join("one-7z-password/JoplinBackup")),
    ] {
        let dir = tmp.path().join(name);
        fake_profile(&dir, 1, json!({"sync.target": 2}), &[]);
        let o = support::jr_env(
            &[
                "client",
                "customise",
                "--from",
                from.to_str().unwrap(),
                "--profile",
                dir.to_str().unwrap(),
            ],
            &[("JOPLIN_RESTORE_BACKUP_PASSWORD", &password)],
        );
        assert!(o.status.success(), "{name}: {}", text(&o));
        for f in ["keymap-desktop.json", "userstyle.css", "userchrome.css"] {
            assert_eq!(read(&dir.join(f)), read(&want.join(f)), "{name}: {f}");
        }
    }
    // Without the password: refused with what to do, nothing put back.
    let dir = tmp.path().join("no-password");
    fake_profile(&dir, 1, json!({"sync.target": 2}), &[]);
    let o = customise(&sets.join("one-7z-password/JoplinBackup"), &dir);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("JOPLIN_RESTORE_BACKUP_PASSWORD"),
        "{}",
        text(&o)
    );
    assert!(!dir.join("keymap-desktop.json").exists());
}
