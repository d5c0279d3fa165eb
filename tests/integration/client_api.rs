//! `client import` and `client wipe` against the real Joplin CLI's Data API
//! (`joplin server start`, on a free loopback port set as the profile's `api.port`).

use crate::support;

use serde_json::json;
use support::data_api::{free_port, ApiServer};
use support::joplin::{assert_manifest_eq, Profile};
use support::{jr, jr_env, jr_ok, sample_jex, sample_manifest, text};

fn count(p: &Profile, sql: &str) -> i64 {
    p.query(sql)[0][0].parse().unwrap()
}

#[test]
fn import_keeps_ids_resumes_and_wipe_empties_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let p = Profile::new(tmp.path().join("client"));
    let server = ApiServer::start(&p);
    let dir = p.dir.to_str().unwrap();

    // A dry run reads what Joplin has and counts what it would create; it writes nothing.
    let dry = jr_ok(&[
        "client",
        "import",
        sample_jex().to_str().unwrap(),
        "--profile",
        dir,
        "--dry-run",
    ]);
    assert!(
        dry.contains(
            "create 7 notebook(s), 10 note(s), 3 resource(s), 3 tag(s), 4 note-tag link(s)"
        ) && dry.contains("dry run: nothing was changed"),
        "{dry}"
    );
    assert_eq!(count(&p, "SELECT count(*) FROM notes"), 0);
    assert_eq!(count(&p, "SELECT count(*) FROM folders"), 0);

    // Token and port come from the profile's settings.json.
    let out = jr_ok(&[
        "client",
        "import",
        sample_jex().to_str().unwrap(),
        "--profile",
        dir,
    ]);
    assert!(
        out.contains(
            "created 7 notebook(s), 10 note(s), 3 resource(s), 3 tag(s), 4 note-tag link(s)"
        ),
        "{out}"
    );
    assert!(
        !out.contains(&server.token),
        "the token must never be printed"
    );
    assert_manifest_eq(&p.manifest(), &sample_manifest(), "after client import");

    // `client profiles` sees the running CLI and the notes.
    let prof = jr_ok(&["client", "profiles", "--profile", dir, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&prof).unwrap();
    assert_eq!(v["profiles"][0]["notes"], 10, "{prof}");
    assert_eq!(v["profiles"][0]["running"]["running"], true, "{prof}");
    assert!(!prof.contains(&server.token));

    // Resume: a note lost and a note whose body never arrived (interrupted between POST and
    // PUT) are put right; everything else is skipped.
    server.call(
        "DELETE",
        "/notes/0006b457342a4b078515990fa709441b?permanent=1",
        None,
    );
    server.call(
        "PUT",
        "/notes/3151c3990c044f74b984078dd0bc8a4c",
        Some(json!({"body": ""})),
    );
    // And a to-do with no body that an earlier run created (its POST) and never finished (its
    // PUT): it lacked its completion (and due date, author) for good.
    server.call(
        "DELETE",
        "/notes/b85e537806544122a737980718019fa8?permanent=1",
        None,
    );
    server.call(
        "POST",
        "/notes",
        Some(json!({
            "id": "b85e537806544122a737980718019fa8",
            "parent_id": "33891a5cf6a84c18ab0b4de1404c88b2",
            "title": "Done task",
            "is_todo": 1,
            "user_created_time": 1795565632930i64,
            "user_updated_time": 1795565632943i64,
        })),
    );
    let out = jr_ok(&[
        "client",
        "import",
        sample_jex().to_str().unwrap(),
        "--profile",
        dir,
        "--tpslimit",
        "50",
        "--transfers",
        "3",
        "--bwlimit",
        "10M",
    ]);
    assert!(
        out.contains(
            "created 0 notebook(s), 1 note(s), 0 resource(s), 0 tag(s), 0 note-tag link(s)"
        ),
        "{out}"
    );
    assert!(
        out.contains("2 note(s) an earlier run left unfinished (no body, to-do state, author…) were completed"),
        "{out}"
    );
    assert_manifest_eq(&p.manifest(), &sample_manifest(), "after resumed import");

    // Some things in the trash, then wipe: nothing left, trash included.
    server.call("DELETE", "/notes/2ebc0432f27d42fdb982a925c8734636", None);
    server.call("DELETE", "/folders/1a3558223d884174b40dcb0cdfb8bfa3", None);
    assert!(count(&p, "SELECT count(*) FROM notes WHERE deleted_time != 0") > 0);
    // Importing again leaves trashed items where the user put them, and says so.
    let o = jr(&[
        "client",
        "import",
        sample_jex().to_str().unwrap(),
        "--profile",
        dir,
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("in the client's trash with the same id"), "{t}");
    assert!(t.contains("created 0 notebook(s), 0 note(s)"), "{t}");
    let refused = jr(&["client", "wipe", "--profile", dir]);
    assert_eq!(refused.status.code(), Some(4), "{}", text(&refused));
    assert_eq!(count(&p, "SELECT count(*) FROM notes"), 10);
    // A dry run counts and deletes nothing, even with --yes.
    let dry = jr_ok(&["client", "wipe", "--profile", dir, "--dry-run", "--yes"]);
    assert!(
        dry.contains("Would permanently delete 10 note(s), 7 notebook(s), 3 tag(s)"),
        "{dry}"
    );
    assert_eq!(count(&p, "SELECT count(*) FROM notes"), 10);

    // A profile that syncs would carry the wipe to its sync target at its next sync:
    // refused, nothing deleted, unless asked for by name.
    let settings_file = p.dir.join("settings.json");
    let settings = std::fs::read_to_string(&settings_file).unwrap();
    let mut synced: serde_json::Value = serde_json::from_str(&settings).unwrap();
    synced["sync.target"] = serde_json::json!(2);
    synced["sync.2.path"] = serde_json::json!(tmp.path().join("sync").to_str().unwrap());
    std::fs::write(&settings_file, synced.to_string()).unwrap();
    let refused = jr(&["client", "wipe", "--profile", dir, "--yes"]);
    let t = text(&refused);
    assert_eq!(refused.status.code(), Some(4), "{t}");
    assert!(
        t.contains("syncs with filesystem (2)")
            && t.contains("sync.target 0")
            && t.contains("--even-if-synced"),
        "{t}"
    );
    assert_eq!(count(&p, "SELECT count(*) FROM notes"), 10);
    let o = jr(&[
        "--json",
        "client",
        "wipe",
        "--profile",
        dir,
        "--yes",
        "--even-if-synced",
    ]);
    std::fs::write(&settings_file, settings).unwrap();
    let out = text(&o);
    assert!(
        out.contains("warning:") && out.contains("syncs with"),
        "{out}"
    );
    assert!(o.status.success() && out.contains("Wiped"), "{out}");
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["command"], "client wipe", "{v}");
    assert_eq!(v["deleted"]["notes"], 10, "{v}");
    for table in ["notes", "folders", "tags", "resources", "note_tags"] {
        assert_eq!(
            count(&p, &format!("SELECT count(*) FROM {table}")),
            0,
            "{table} not empty after wipe: {out}"
        );
    }

    // Import again into the wiped client: the same IDs come back, nothing stale. With
    // --json, stdout is one report with the counts (the human lines go to stderr).
    let out = jr_ok(&[
        "--json",
        "client",
        "import",
        sample_jex().to_str().unwrap(),
        "--profile",
        dir,
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["command"], "client import", "{v}");
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["created"]["notes"], 10, "{v}");
    assert_eq!(v["skipped"]["notes"], 0, "{v}");
    assert!(!out.contains(&server.token));
    assert_manifest_eq(&p.manifest(), &sample_manifest(), "import after wipe");
}

#[test]
fn token_from_file_or_env_and_wrong_token_is_refused_without_showing_it() {
    let tmp = tempfile::tempdir().unwrap();
    let p = Profile::new(tmp.path().join("client"));
    let server = ApiServer::start(&p);
    let port = server.port.to_string();
    // No profile at all: the token file and --port are enough.
    let home = tmp.path().join("empty-home");
    std::fs::create_dir_all(&home).unwrap();
    let tf = tmp.path().join("token.txt");
    std::fs::write(&tf, format!("{}\n", server.token)).unwrap();
    let wipe = [
        "client",
        "wipe",
        "--yes",
        "--home",
        home.to_str().unwrap(),
        "--port",
        &port,
        "--token-file",
        tf.to_str().unwrap(),
    ];
    // Which profile that Joplin runs on, and so whether it syncs, cannot be told: refused.
    let o = jr(&wipe);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(4), "{t}");
    assert!(
        t.contains("cannot be told") && t.contains("--even-if-synced"),
        "{t}"
    );
    // A profile that is found but holds another token is not the one that Joplin runs on:
    // its (lack of a) sync target says nothing; still refused.
    let other = home.join(".config/joplin-desktop");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(
        other.join("settings.json"),
        r#"{"api.token":"someone-else"}"#,
    )
    .unwrap();
    let o = jr(&wipe);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("cannot be told"), "{}", text(&o));
    let out = jr_ok(&[&wipe[..], &["--even-if-synced"]].concat());
    assert!(out.contains("Wiped"), "{out}");

    let o = jr_env(
        &[
            "client",
            "wipe",
            "--yes",
            "--even-if-synced",
            "--home",
            home.to_str().unwrap(),
            "--port",
            &port,
        ],
        &[("JOPLIN_RESTORE_API_TOKEN", &server.token)],
    );
    assert!(o.status.success(), "{}", text(&o));

    let secret = "0123456789abcdef-not-the-token";
    let o = jr_env(
        &[
            "client",
            "import",
            sample_jex().to_str().unwrap(),
            "--home",
            home.to_str().unwrap(),
            "--port",
            &port,
        ],
        &[("JOPLIN_RESTORE_API_TOKEN", secret)],
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(4), "{t}");
    assert!(t.contains("refuses the token"), "{t}");
    assert!(!t.contains(secret), "{t}");
    assert_eq!(count(&p, "SELECT count(*) FROM notes"), 0);
}

#[test]
fn no_running_joplin_says_how_to_start_one() {
    let tmp = tempfile::tempdir().unwrap();
    let prof = tmp.path().join("p");
    std::fs::create_dir_all(&prof).unwrap();
    std::fs::write(prof.join("settings.json"), r#"{"api.token":"abc"}"#).unwrap();
    let port = free_port().to_string();
    let o = jr(&[
        "client",
        "import",
        sample_jex().to_str().unwrap(),
        "--profile",
        prof.to_str().unwrap(),
        "--port",
        &port,
    ]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("no Joplin Data API answers"), "{t}");
    assert!(t.contains("server start"), "{t}");
}

/// Joplin already has a tag of the same title under another id ("URGENT"): its notes are
/// linked to that tag instead of failing with Joplin's "tag already exists" on every rerun.
/// A tagged note in the trash keeps one link: a rerun does not add it again (a tag's note
/// list leaves trashed notes out).
#[test]
fn import_links_to_a_same_title_tag_and_reruns_add_no_duplicate_links() {
    let tmp = tempfile::tempdir().unwrap();
    let p = Profile::new(tmp.path().join("client"));
    let server = ApiServer::start(&p);
    let dir = p.dir.to_str().unwrap();
    let answer = server.call("POST", "/tags", Some(json!({"title": "URGENT"})));
    // The answer may come chunked: the JSON object inside it.
    let object = &answer[answer.find('{').unwrap()..=answer.rfind('}').unwrap()];
    let theirs: serde_json::Value = serde_json::from_str(object).unwrap();
    let theirs = theirs["id"].as_str().unwrap().to_string();
    let import = || {
        let o = jr(&[
            "client",
            "import",
            sample_jex().to_str().unwrap(),
            "--profile",
            dir,
        ]);
        assert!(o.status.success(), "{}", text(&o));
        text(&o)
    };
    let out = import();
    assert!(
        out.contains("tag \"urgent\" (7241f91bc84849938247fa679a076b7b) exists in Joplin already"),
        "{out}"
    );
    let links_of = |tag: &str| {
        count(
            &p,
            &format!("SELECT count(*) FROM note_tags WHERE tag_id = '{tag}'"),
        )
    };
    // "Attachments" and "Open task" carry urgent in the backup.
    assert_eq!(links_of(&theirs), 2, "{out}");
    assert_eq!(links_of("7241f91bc84849938247fa679a076b7b"), 0, "{out}");

    // "Roadmap" (tagged work) goes to the trash; the rerun leaves its one link alone.
    server.call("DELETE", "/notes/7cf9bead95744245a9011f01c8222d5a", None);
    // The tag's own list leaves the trashed note out: the case the import must see through.
    let listed = server.call(
        "GET",
        "/tags/b3ef053da1bb4864b6e51293d9730359/notes?fields=id",
        None,
    );
    assert!(
        !listed.contains("7cf9bead95744245a9011f01c8222d5a"),
        "{listed}"
    );
    let links_of_note = || {
        count(
            &p,
            "SELECT count(*) FROM note_tags WHERE note_id = '7cf9bead95744245a9011f01c8222d5a'",
        )
    };
    let before = links_of_note();
    assert!(before >= 1);
    for _ in 0..2 {
        import();
        assert_eq!(links_of_note(), before);
    }
}

/// A backup accepted with `--allow missing-blob --allow missing-parent` imports the rest and
/// exits 0: the attachment without its file is left out and named (the Data API makes none
/// without a file), the note without a notebook is imported and named (Joplin shows it under
/// "All notes" only). Before, the first failed the import every run and said to rerun.
#[test]
fn allowed_problems_import_the_rest_and_are_named() {
    const RESOURCE: &str = "8c9f67d46dce4ef0af0f5826f53330a6";
    const NOTE: &str = "7cf9bead95744245a9011f01c8222d5a";
    let tmp = tempfile::tempdir().unwrap();
    let jex = tmp.path().join("damaged.jex");
    {
        let mut out = tar::Builder::new(std::fs::File::create(&jex).unwrap());
        let mut a = tar::Archive::new(std::fs::File::open(sample_jex()).unwrap());
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().to_string();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            if name.starts_with(&format!("resources/{RESOURCE}")) {
                continue;
            }
            if name == format!("{NOTE}.md") {
                let text = String::from_utf8(data).unwrap();
                data = text
                    .lines()
                    .map(|l| {
                        if l.starts_with("parent_id: ") {
                            "parent_id: 99999999999999999999999999999999".to_string()
                        } else {
                            l.to_string()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
                    .into_bytes();
            }
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            out.append_data(&mut h, &name, data.as_slice()).unwrap();
        }
        out.finish().unwrap();
    }
    let p = Profile::new(tmp.path().join("client"));
    let _server = ApiServer::start(&p);
    let dir = p.dir.to_str().unwrap();
    let args = [
        "client",
        "import",
        jex.to_str().unwrap(),
        "--profile",
        dir,
        "--allow",
        "missing-blob",
        "--allow",
        "missing-parent",
    ];
    let o = jr(&args);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(
        t.contains("1 attachment(s) have no file in the backup") && t.contains(RESOURCE),
        "{t}"
    );
    assert!(
        t.contains("1 note(s) have a notebook that is in neither") && t.contains(NOTE),
        "{t}"
    );
    assert_eq!(count(&p, "SELECT count(*) FROM notes"), 10, "{t}");
    assert_eq!(count(&p, "SELECT count(*) FROM resources"), 2, "{t}");
    // A rerun has nothing left to do and still exits 0.
    let o = jr(&args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// An import stopped midway (Ctrl-C, SIGTERM) says that a rerun finishes it, and the rerun
/// does: the client then holds exactly the backup.
#[cfg(unix)]
#[test]
fn an_interrupted_import_says_how_to_finish_and_the_rerun_does() {
    let tmp = tempfile::tempdir().unwrap();
    let p = Profile::new(tmp.path().join("client"));
    let _server = ApiServer::start(&p);
    let dir = p.dir.to_str().unwrap();
    let jex = sample_jex();
    let args = ["client", "import", jex.to_str().unwrap(), "--profile", dir];
    // At 4 requests a second the sample's ~40 calls take about 10 s.
    let mut slow = args.to_vec();
    slow.extend(["--tpslimit", "4"]);
    let child = support::spawn(&slow);
    std::thread::sleep(std::time::Duration::from_millis(3000));
    support::signal(&child, "-TERM");
    let o = child.wait_with_output().unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("interrupted") && t.contains("Run the same command again to finish"),
        "{t}"
    );
    let out = jr_ok(&args);
    assert!(out.contains("created"), "{out}");
    assert_manifest_eq(&p.manifest(), &sample_manifest(), "after the rerun");
}

/// An attachment keeps its MIME type and original file name (Joplin's upload took the type
/// from the file's extension and left the name empty).
#[test]
fn import_keeps_attachment_mime_type_and_file_name() {
    use std::io::Read;
    let tmp = tempfile::tempdir().unwrap();
    // The sample with one attachment's type and name set as a user's own file would have them.
    let jex = tmp.path().join("named.jex");
    let mut from = tar::Archive::new(std::fs::File::open(sample_jex()).unwrap());
    let mut to = tar::Builder::new(std::fs::File::create(&jex).unwrap());
    for e in from.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_path_buf();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        if path.to_str() == Some("57802a35e45342b38b20b51a9d7004c0.md") {
            data = String::from_utf8(data)
                .unwrap()
                .replace("mime: application/octet-stream", "mime: application/x-test")
                .replace("\nfilename: \n", "\nfilename: my notes.bin\n")
                .into_bytes();
        }
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        to.append_data(&mut h, &path, &data[..]).unwrap();
    }
    to.finish().unwrap();
    drop(to);

    let p = Profile::new(tmp.path().join("client"));
    let _server = ApiServer::start(&p);
    jr_ok(&[
        "client",
        "import",
        jex.to_str().unwrap(),
        "--profile",
        p.dir.to_str().unwrap(),
    ]);
    let r = p.query(
        "SELECT mime, filename, file_extension FROM resources \
         WHERE id = '57802a35e45342b38b20b51a9d7004c0'",
    );
    assert_eq!(
        r,
        vec![vec![
            "application/x-test".to_string(),
            "my notes.bin".to_string(),
            "bin".to_string()
        ]]
    );
}
