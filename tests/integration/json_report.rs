//! `--json`: one machine-readable report on stdout, for scripts and cron (schema in README).

use crate::support;

use serde_json::Value;
use support::formats::layout;
use support::{jr, sample_jex, text};

fn report(args: &[&str]) -> (i32, Value) {
    let o = jr(args);
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}):\n{}", text(&o)));
    (o.status.code().unwrap(), v)
}

#[test]
fn restore_verify_and_errors_report_as_documented() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().join("target");
    let jex = sample_jex();
    let (code, v) = report(&[
        "restore",
        jex.to_str().unwrap(),
        "--target",
        t.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0);
    assert_eq!(v["command"], "restore");
    assert_eq!(v["backup"]["set"], Value::Null, "a single JEX: {v}");
    assert_eq!(v["backup"]["jex_files"], 1);
    assert_eq!(v["ok"], true);
    assert_eq!(v["exit_code"], 0);
    assert_eq!(v["uploaded"], 30);
    assert_eq!(v["uploaded_bytes"], 219114);
    assert_eq!(v["deleted"], 0);
    assert_eq!(v["retries"], 0);
    assert!(v["requests"].as_u64().unwrap() >= 30);
    assert_eq!(v["verify_mode"], "quick");
    assert_eq!(v["verify"]["checked_items"], 27);
    assert_eq!(v["verify"]["differences"].as_array().unwrap().len(), 0);
    assert_eq!(
        support::stage_names(&v),
        ["read and validate", "plan", "snapshot", "write", "verify"]
    );

    std::fs::remove_file(t.join("2ebc0432f27d42fdb982a925c8734636.md")).unwrap();
    let (code, v) = report(&[
        "verify",
        jex.to_str().unwrap(),
        "--target",
        t.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 3);
    assert_eq!(v["ok"], false);
    let d = &v["report"]["differences"][0];
    assert_eq!(d["kind"], "missing");
    assert_eq!(d["id"], "2ebc0432f27d42fdb982a925c8734636");

    let (code, v) = report(&[
        "restore",
        "/nonexistent.jex",
        "--target",
        t.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 1);
    assert_eq!(v["command"], "restore");
    assert!(v["error"].as_str().unwrap().contains("/nonexistent.jex"));
}

#[test]
fn refusals_report_exit_4_and_inspect_lists_problems() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.jex");
    let mut b = tar::Builder::new(Vec::new());
    let item = "T\n\nid: 0000000000000000000000000000000a\nparent_id: 99999999999999999999999999999999\ntype_: 1";
    let mut h = tar::Header::new_ustar();
    h.set_size(item.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(
        &mut h,
        "0000000000000000000000000000000a.md",
        item.as_bytes(),
    )
    .unwrap();
    std::fs::write(&bad, b.into_inner().unwrap()).unwrap();
    // Problems found: exit 3, as `verify` does on differences, so a script checking its
    // backups learns of them.
    let (code, v) = report(&["inspect", bad.to_str().unwrap(), "--json"]);
    assert_eq!(code, 3);
    assert_eq!(v["ok"], false);
    assert_eq!(v["problems"][0]["class"], "missing-parent");
    assert_eq!(v["counts"]["notes"], 1);
    let t = tmp.path().join("t");
    let (code, v) = report(&[
        "restore",
        bad.to_str().unwrap(),
        "--target",
        t.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 4);
    assert!(v["error"]
        .as_str()
        .unwrap()
        .contains("--allow missing-parent"));
}

#[test]
fn migrate_reports_counts_and_damaged_items_by_id() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let dst = tmp.path().join("dst");
    let jex = sample_jex();
    let o = jr(&[
        "restore",
        jex.to_str().unwrap(),
        "--target",
        src.to_str().unwrap(),
        "-q",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let victim = "2ebc0432f27d42fdb982a925c8734636";
    let original = std::fs::read(src.join(format!("{victim}.md"))).unwrap();
    std::fs::write(src.join(format!("{victim}.md")), b"not an item").unwrap();
    let migrate = |extra: &[&str]| {
        let mut args = vec![
            "migrate",
            "--from",
            src.to_str().unwrap(),
            "--to",
            dst.to_str().unwrap(),
            "--json",
            "-q",
        ];
        args.extend_from_slice(extra);
        report(&args)
    };

    let (code, v) = migrate(&["--dry-run"]);
    assert_eq!(code, 1, "a damaged item makes the run incomplete: {v}");
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["items"]["to_copy"], 26, "{v}");
    assert_eq!(v["items"]["copied"], 0, "{v}");
    assert!(!dst.join("info.json").exists());

    let (code, v) = migrate(&[]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["command"], "migrate");
    assert_eq!(v["ok"], false);
    assert_eq!(v["source"], format!("folder {}", src.display()));
    assert_eq!(v["destination"], format!("folder {}", dst.display()));
    assert_eq!(v["mode"], "new");
    assert_eq!(v["check"], false);
    assert_eq!(v["dry_run"], false);
    let want_items = serde_json::json!({
        "source": 26, "to_copy": 26, "copied": 26, "already_there": 0, "failed": 0
    });
    assert_eq!(v["items"], want_items, "{v}");
    let want_blobs = serde_json::json!({
        "source": 3, "to_copy": 3, "copied": 3, "already_there": 0, "failed": 0
    });
    assert_eq!(v["blobs"], want_blobs, "{v}");
    let size = |dir: &std::path::Path| -> u64 {
        let mut n = 0;
        for sub in ["", ".resource"] {
            for e in std::fs::read_dir(dir.join(sub)).unwrap() {
                let p = e.unwrap().path();
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                if p.is_file() && (!sub.is_empty() || name.ends_with(".md")) {
                    n += std::fs::metadata(&p).unwrap().len();
                }
            }
        }
        n
    };
    assert_eq!(v["copied_bytes"], size(&dst), "{v}");
    assert_eq!(v["bytes_to_copy"], v["copied_bytes"]);
    assert_eq!(v["damaged"][0]["id"], victim, "{v}");
    assert!(v["damaged"][0]["error"]
        .as_str()
        .unwrap()
        .contains("cannot be parsed"));
    assert_eq!(v["damaged"].as_array().unwrap().len(), 1);
    // Every failed report has its `error` (the README's promise).
    assert_eq!(v["ok"], false, "{v}");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("INCOMPLETE")),
        "{v}"
    );
    assert_eq!(v["info_json_written"], true);
    assert_eq!(v["info_json_differs"], false);
    assert_eq!(v["verify"]["checked_items"], 26);
    assert_eq!(v["verify"]["differences"].as_array().unwrap().len(), 0);
    assert!(v["destination_requests"]["requests"].as_u64().unwrap() >= 29);
    assert!(v["source_requests"]["requests"].as_u64().unwrap() >= 29);
    let stages: Vec<&str> = v["timings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["read source", "plan", "copy", "verify"]);

    // Once the damaged item is repaired, mirror copies just that one.
    std::fs::write(src.join(format!("{victim}.md")), original).unwrap();
    let (code, v) = migrate(&["--mode", "mirror", "--yes"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["mode"], "mirror");
    assert_eq!(v["items"]["copied"], 1, "{v}");
    assert_eq!(v["items"]["already_there"], 26, "{v}");
    assert_eq!(v["blobs"]["already_there"], 3, "{v}");
    assert_eq!(v["damaged"].as_array().unwrap().len(), 0);
    assert_eq!(v["info_json_written"], false, "{v}");

    // --check compares only: nothing to copy, the comparison in `verify`.
    let (code, v) = migrate(&["--check"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["check"], true);
    assert_eq!(v["items"]["copied"], 0, "{v}");
    assert_eq!(v["verify"]["checked_items"], 27, "{v}");
    assert_eq!(v["verify"]["checked_blobs"], 3, "{v}");
    assert_eq!(v["verify"]["differences"].as_array().unwrap().len(), 0);
}

/// `--verify quick` checks from one listing: it reports the same counts, and its reads are
/// only listings (no item or blob is downloaded again).
#[test]
fn quick_verify_reads_no_item_back() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().join("target");
    let jex = sample_jex();
    let args = |mode: &'static str| {
        vec![
            "restore".to_string(),
            jex.display().to_string(),
            "--target".into(),
            t.display().to_string(),
            "--json".into(),
            "--fresh".into(),
            "--verify".into(),
            mode.into(),
        ]
    };
    let run = |mode| {
        let a = args(mode);
        report(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let (code, quick) = run("quick");
    assert_eq!(code, 0, "{quick}");
    assert_eq!(quick["verify_mode"], "quick");
    assert_eq!(quick["verify"]["checked_items"], 27);
    assert_eq!(quick["verify"]["checked_blobs"], 3);
    assert_eq!(quick["verify"]["differences"], serde_json::json!([]));
    // Nothing to upload the second time: the requests left are the plan's and the check's.
    let (_, quick2) = run("quick");
    let (_, full2) = run("full");
    assert_eq!(quick2["uploaded"], 0, "{quick2}");
    assert!(
        full2["requests"].as_u64().unwrap() >= quick2["requests"].as_u64().unwrap() + 30,
        "full re-reads 27 items and 3 blobs: quick {} vs full {}",
        quick2["requests"],
        full2["requests"]
    );
}

/// SIGTERM (or Ctrl-C) while a restore still reads and plans: it ends at once with its JSON
/// report (it died with exit 143 and nothing on stdout), and nothing was changed.
#[cfg(unix)]
#[test]
fn a_restore_stopped_while_it_plans_still_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().join("target");
    let jex = sample_jex();
    let (j, target) = (jex.to_str().unwrap(), t.to_str().unwrap());
    support::jr_ok(&["restore", j, "--target", target, "-q"]);
    let before = support::tree_hashes(&t);
    let snaps = tmp.path().join("snaps");
    // At 2 requests a second, comparing the 27 copies on the target takes over 10 s.
    let child = support::spawn(&[
        "--json",
        "restore",
        j,
        "--target",
        target,
        "--yes",
        "--tpslimit",
        "2",
        "--snapshot-dir",
        snaps.to_str().unwrap(),
    ]);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    support::signal(&child, "-TERM");
    let o = child.wait_with_output().unwrap();
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}):\n{}", text(&o)));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(v["command"], "restore", "{v}");
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(
        v["error"], "interrupted before this run changed anything",
        "{v}"
    );
    assert_eq!(support::tree_hashes(&t), before);
    assert!(!snaps.exists(), "a snapshot was started");
}

/// A restore from a 7z archive stopped while it still plans ends at once, and the folder the
/// archive was unpacked into (private, in TMPDIR) goes with it: an exit from the signal watcher
/// runs no destructors, so the unpacked notes would otherwise stay behind in the temp folder.
#[cfg(unix)]
#[test]
fn an_interrupted_restore_from_an_archive_leaves_no_unpacked_copy() {
    use std::process::Stdio;
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().join("target");
    let archive = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/backup-sets/one-7z/JoplinBackup/202611241200.7z");
    let (a, target) = (archive.to_str().unwrap(), t.to_str().unwrap());
    support::jr_ok(&["restore", a, "--target", target, "-q"]);
    let private_tmp = tmp.path().join("tmp");
    std::fs::create_dir(&private_tmp).unwrap();
    let unpacked = || -> Vec<String> {
        std::fs::read_dir(&private_tmp)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("joplin-restore-"))
            .collect()
    };
    // At 2 requests a second, comparing the copies on the target takes over 10 s.
    let child = support::command()
        .args(["restore", a, "--target", target, "--yes", "--tpslimit", "2"])
        .env("TMPDIR", &private_tmp)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded: 10 s for the unpacked folder to appear.
    for _ in 0..100 {
        if !unpacked().is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        !unpacked().is_empty(),
        "the archive was never unpacked into TMPDIR"
    );
    std::thread::sleep(std::time::Duration::from_millis(1000));
    support::signal(&child, "-TERM");
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("interrupted before this run changed anything"),
        "{}",
        text(&o)
    );
    assert_eq!(unpacked(), Vec::<String>::new(), "{}", text(&o));
}

/// A command line clap refuses still gives `--json` its one report on stdout (exit 2), with
/// clap's message on stderr; help is not an error.
#[test]
fn usage_errors_report_in_json_too() {
    let jex = sample_jex();
    let o = jr(&[
        "restore",
        "--json",
        jex.to_str().unwrap(),
        "--target",
        "/nonexistent/t",
        "--transfers",
        "0",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}):\n{}", text(&o)));
    assert_eq!(v["command"], "restore", "{v}");
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["exit_code"], 2, "{v}");
    assert!(v["error"].as_str().unwrap().contains("--transfers"), "{v}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("--transfers"));
    // The message names what is missing (clap puts it on the lines after the first).
    let o = jr(&["--json", "restore", "--target", "/nonexistent/t"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let error = v["error"].as_str().unwrap();
    assert!(
        error.contains("not provided") && error.contains("<BACKUP>") && !error.contains("Usage"),
        "{v}"
    );
    let help = jr(&["--json", "--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("Usage:"));
}

/// `--dry-run --json` says what the run would do, not a run that did nothing.
#[test]
fn dry_runs_report_what_they_would_do() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().join("target");
    let jex = sample_jex();
    let (j, target) = (jex.to_str().unwrap(), t.to_str().unwrap());
    let o = jr(&["--json", "restore", j, "--target", target, "--dry-run"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["dry_run"], true, "{v}");
    assert_eq!(v["would"]["upload"], 30, "{v}");
    assert_eq!(v["would"]["delete"], 0, "{v}");
    support::jr_ok(&["restore", j, "--target", target, "-q"]);
    let before = support::tree_hashes(&t);
    let o = jr(&["--json", "clear", "--target", target, "--dry-run"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["dry_run"], true, "{v}");
    assert_eq!(v["would_delete"], 30, "{v}");
    assert!(!text(&o).contains("Cleared:"), "{}", text(&o));
    assert_eq!(support::tree_hashes(&t), before);
}

/// Which set of the plugin's folder was read, and by what date, is in the report: a script
/// restoring "the newest" can check it.
#[test]
fn the_set_read_is_reported_with_its_date() {
    let folder = layout("folder");
    let (code, v) = report(&["inspect", folder.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{v}");
    let b = &v["backup"];
    assert_eq!(b["set"]["name"], "default/202611241200", "{v}");
    assert_eq!(b["set"]["date"], "2026-11-24T12:00");
    assert_eq!(b["set"]["dated_by"], "name");
    let names: Vec<&str> = b["sets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default/202611231200", "default/202611241200"]);
}
