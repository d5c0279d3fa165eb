//! Throttled, flaky servers: a restore of a generated 2,000-item backup through a proxy that
//! injects 10 % faults (429 with Retry-After, 500, 503, resets, delays) completes; the target
//! verifies, and the real Joplin CLI syncs it without duplicates.

use crate::support;

use std::sync::atomic::Ordering;

use joplin_restore::generate::{write_jex, GenSpec};
use support::joplin::Profile;
use support::s3::{jr_s3, S3Kind, S3Server};
use support::text;
use support::webdav::{jr_dav, use_webdav, DavServer, FaultProxy, USER};

/// A generated backup of 1,900 notes, 40 attachments and their notebooks, tags and links.
fn generated(dir: &std::path::Path) -> std::path::PathBuf {
    let jex = dir.join("gen.jex");
    let spec = GenSpec {
        notes: 1900,
        notebooks: 20,
        tags: 5,
        attachments: 40,
        attachment_bytes: 4096,
        seed: 5,
    };
    let items = write_jex(&spec, &jex).unwrap();
    assert!(items >= 2000, "{items}");
    jex
}

/// The client holds every note and attachment exactly once.
fn assert_client_has_everything_once(p: &Profile) {
    let n = p.query("SELECT count(*), count(DISTINCT id), count(DISTINCT title) FROM notes");
    assert_eq!(n[0], vec!["1900", "1900", "1900"]);
    let r = p.query("SELECT count(*) FROM resources");
    assert_eq!(r[0][0], "40");
}

#[test]
fn restore_through_ten_percent_faults_completes_and_the_client_syncs_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let jex = generated(tmp.path());
    let srv = DavServer::apache();
    srv.make_collection("Joplin");
    let proxy = FaultProxy::chaos(srv.port, 10, 42);
    let via_proxy = format!("http://127.0.0.1:{}/dav/Joplin", proxy.port);
    let o = jr_dav(&[
        "restore",
        jex.to_str().unwrap(),
        "--target",
        &via_proxy,
        "--username",
        USER,
        "--retries",
        "12",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let faults = proxy.chaos_faults.load(Ordering::SeqCst);
    assert!(
        faults > 100,
        "the proxy must really have injected faults: {faults}"
    );
    assert!(report["retries"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["verify"]["differences"].as_array().unwrap().len(), 0);

    // Straight to the server, without the proxy: the target holds exactly the backup.
    let direct = srv.url("Joplin");
    let o = jr_dav(&[
        "verify",
        jex.to_str().unwrap(),
        "--target",
        &direct,
        "--username",
        USER,
    ]);
    assert!(o.status.success(), "{}", text(&o));

    let p = Profile::new(tmp.path().join("client"));
    use_webdav(&p, &direct);
    p.sync();
    assert_client_has_everything_once(&p);
}

/// The same on S3 (s3s-fs, which checks every SigV4 signature through the proxy).
#[test]
fn s3_restore_through_ten_percent_faults_completes_and_the_client_syncs_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let jex = generated(tmp.path());
    let srv = S3Server::start(S3Kind::S3sFs);
    srv.create_bucket("joplin");
    let proxy = FaultProxy::chaos(srv.port, 10, 7);
    let via_proxy = format!("http://127.0.0.1:{}", proxy.port);
    let o = jr_s3(
        &srv,
        &[
            "restore",
            jex.to_str().unwrap(),
            "--target",
            "s3://joplin",
            "--endpoint",
            &via_proxy,
            "--path-style",
            "--retries",
            "12",
            "--json",
        ],
    );
    assert!(
        o.status.success(),
        "{}\n--- server log\n{}",
        text(&o),
        srv.log()
    );
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let faults = proxy.chaos_faults.load(Ordering::SeqCst);
    assert!(
        faults > 100,
        "the proxy must really have injected faults: {faults}"
    );
    assert!(report["retries"].as_u64().unwrap() > 0, "{report}");

    let mut direct = vec!["verify", jex.to_str().unwrap()];
    let t = srv.target_args("joplin");
    direct.extend(t.iter().map(String::as_str));
    let o = jr_s3(&srv, &direct);
    assert!(o.status.success(), "{}", text(&o));

    let p = Profile::new(tmp.path().join("client"));
    p.configure(srv.joplin_config("joplin"));
    p.sync();
    assert_client_has_everything_once(&p);
}

/// Attachments whose upload takes longer than `--timeout` (here under `--bwlimit`, as on a
/// slow link) go through with no retry: the timeout is for a request making no progress, not
/// for its length (reqwest's read timeout ran from a request's start to its answer, so such an
/// upload failed on every attempt). The real client then syncs both attachments.
#[test]
fn attachments_slower_than_the_timeout_still_restore() {
    let tmp = tempfile::tempdir().unwrap();
    let jex = tmp.path().join("slow.jex");
    let spec = GenSpec {
        notes: 6,
        notebooks: 2,
        tags: 1,
        attachments: 2,
        attachment_bytes: 400_000,
        seed: 11,
    };
    write_jex(&spec, &jex).unwrap();
    let srv = DavServer::apache();
    srv.make_collection("Joplin");
    let url = srv.url("Joplin");
    let started = std::time::Instant::now();
    let o = jr_dav(&[
        "restore",
        jex.to_str().unwrap(),
        "--target",
        &url,
        "--username",
        USER,
        "--bwlimit",
        "400k",
        "--timeout",
        "1s",
        "--retries",
        "0",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        started.elapsed() > std::time::Duration::from_secs(1),
        "800 kB at 400 kB/s cannot take under a second"
    );
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["retries"], 0, "{report}");
    assert_eq!(report["verify"]["differences"].as_array().unwrap().len(), 0);
    let p = Profile::new(tmp.path().join("client"));
    use_webdav(&p, &url);
    p.sync();
    let r = p.query("SELECT count(*), sum(size) FROM resources");
    assert_eq!(r[0][0], "2", "{r:?}");
}

/// `--timeout` reaches the backend: a server that takes connections and never answers fails
/// the command after about that long, not after the 5-minute default.
#[test]
fn a_server_that_never_answers_fails_after_the_timeout() {
    let silent = support::SilentServer::start();
    let port = silent.port;
    let started = std::time::Instant::now();
    let o = jr_dav(&[
        "status",
        "--target",
        &format!("http://127.0.0.1:{port}/dav/Joplin"),
        "--username",
        USER,
        "--timeout",
        "2s",
        "--retries",
        "0",
    ]);
    drop(silent);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "took {:?}: {}",
        started.elapsed(),
        text(&o)
    );
    assert!(
        text(&o).contains("sent nothing for 2 s (--timeout)"),
        "{}",
        text(&o)
    );
}
