//! End to end on an S3 sync target (Joplin `sync.target 8`) served by s3s-fs on 127.0.0.1,
//! judged by the real Joplin CLI: restore → a client syncs → the manifest equals the backup's.

use crate::support;

use std::path::Path;

use backend_core::Storage;
use backend_s3::S3Storage;
use bytes::Bytes;
use futures::StreamExt;
use support::counting_proxy::CountingProxy;
use support::joplin::{assert_manifest_eq, Profile};
use support::s3::{jr_s3, jr_s3_env, S3Kind, S3Server};
use support::{sample_jex, sample_manifest, text, tree_hashes};

const BUCKET: &str = "joplin";

fn args<'a>(head: &[&'a str], server: &'a [String], tail: &[&'a str]) -> Vec<&'a str> {
    let mut v: Vec<&str> = head.to_vec();
    v.extend(server.iter().map(String::as_str));
    v.extend_from_slice(tail);
    v
}

fn jr_s3_ok(server: &S3Server, args: &[&str]) -> String {
    let o = jr_s3(server, args);
    assert!(
        o.status.success(),
        "joplin-restore {args:?} failed:\n{}\n--- server log\n{}",
        text(&o),
        server.log()
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn restore_fresh(server: &S3Server, extra: &[&str]) -> String {
    let jex = sample_jex();
    let t = server.target_args(BUCKET);
    jr_s3_ok(
        server,
        &args(&["restore", jex.to_str().unwrap()], &t, extra),
    )
}

fn verify(server: &S3Server) {
    let jex = sample_jex();
    let t = server.target_args(BUCKET);
    let out = jr_s3_ok(server, &args(&["verify", jex.to_str().unwrap()], &t, &[]));
    assert!(out.contains("OK:"), "{out}");
}

fn profile_on(server: &S3Server, dir: &Path) -> Profile {
    let p = Profile::new(dir);
    p.configure(server.joplin_config(BUCKET));
    p
}

#[test]
fn fresh_client_syncs_exactly_the_backup_from_s3() {
    let server = S3Server::start(S3Kind::S3sFs);
    // The bucket does not exist yet: --create-bucket makes it.
    let out = restore_fresh(&server, &["--create-bucket"]);
    assert!(out.contains("Checked: 27 items and 3 blobs"), "{out}");

    verify(&server);

    // Joplin's layout: keys at the bucket root, blobs under .resource/ without extension.
    let data = server.dir.path().join("data").join(BUCKET);
    assert!(data.join("info.json").is_file());
    let items = std::fs::read_dir(&data)
        .unwrap()
        .filter(|e| {
            let n = e.as_ref().unwrap().file_name();
            n.to_string_lossy().ends_with(".md")
        })
        .count();
    assert_eq!(items, 27);
    assert_eq!(
        std::fs::read_dir(data.join(".resource")).unwrap().count(),
        3
    );

    let tmp = tempfile::tempdir().unwrap();
    let p = profile_on(&server, &tmp.path().join("fresh"));
    p.sync();
    assert_manifest_eq(
        &p.manifest(),
        &sample_manifest(),
        "fresh profile after S3 restore",
    );
}

/// Same as the filesystem case: a client that synced an older, different content converges to
/// the backup after a second restore (deleted notes back, edits replaced, extras gone).
#[test]
fn stale_client_converges_to_the_backup_on_s3() {
    let server = S3Server::start(S3Kind::S3sFs);
    server.create_bucket(BUCKET);
    restore_fresh(&server, &[]);
    let tmp = tempfile::tempdir().unwrap();
    let p = profile_on(&server, &tmp.path().join("stale"));
    p.sync();
    p.edit_after_the_backup();
    p.sync();

    let snaps = tmp.path().join("snaps");
    let out = restore_fresh(
        &server,
        &["--yes", "--snapshot-dir", snaps.to_str().unwrap()],
    );
    assert!(out.contains("Snapshot of the target"), "{out}");
    p.sync();
    assert_manifest_eq(
        &p.manifest(),
        &sample_manifest(),
        "stale profile after S3 restore",
    );
    assert!(p.conflict_bodies().is_empty(), "no conflict expected");
    verify(&server);
}

/// A bucket holding the restored sample plus filler items up to `objects` in all (ids from
/// `first_id` on), and the target options that reach it through a request-counting proxy.
fn filled_behind_a_counting_proxy(
    objects: usize,
    first_id: u64,
) -> (S3Server, CountingProxy, Vec<String>) {
    let server = S3Server::start(S3Kind::S3sFs);
    server.create_bucket(BUCKET);
    restore_fresh(&server, &[]); // info.json + 27 items + 3 blobs
    let extra = objects - 30;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let s = S3Storage::new(server.options(BUCKET)).unwrap();
        let s = &s;
        let failed: Vec<String> = futures::stream::iter(0..extra)
            .map(|i| async move {
                let p = format!("{:032x}.md", first_id + i as u64);
                s.put(&p, Bytes::from(format!("filler {i}")))
                    .await
                    .err()
                    .map(|e| format!("{p}: {e}"))
            })
            .buffer_unordered(16)
            .filter_map(|r| async move { r })
            .collect()
            .await;
        assert!(failed.is_empty(), "{failed:?}");
    });
    let proxy = CountingProxy::start(server.port);
    let t = vec![
        "--target".to_string(),
        format!("s3://{BUCKET}"),
        "--endpoint".to_string(),
        proxy.endpoint.clone(),
        "--path-style".to_string(),
    ];
    (server, proxy, t)
}

/// `clear` of a 3,000-object target deletes with DeleteObjects, 1000 keys a request: at most
/// 5 delete requests on the wire, counted by a proxy between our binary and the server; and
/// with `--yes --no-snapshot` it lists the target once, under its lock.
#[test]
fn clear_of_3000_objects_uses_at_most_5_delete_requests() {
    let (server, proxy, t) = filled_behind_a_counting_proxy(3000, 0xc1ea_0000_0000);
    let out = jr_s3_ok(&server, &args(&["clear"], &t, &["--yes", "--no-snapshot"]));
    assert!(out.contains("Cleared: 3000 file(s) deleted"), "{out}");

    let requests = proxy.requests();
    let bulk = requests
        .iter()
        .filter(|l| l.starts_with("POST ") && l.contains("?delete"))
        .count();
    let single = requests.iter().filter(|l| l.starts_with("DELETE ")).count();
    assert!(
        !requests.iter().any(|l| l.starts_with("UNPARSED")),
        "the proxy could not follow every request: {requests:?}"
    );
    assert!(
        (1..=5).contains(&bulk),
        "expected ≤ 5 DeleteObjects requests, saw {bulk}"
    );
    // Only the lock file goes with a single DELETE.
    assert!(single <= 2, "{single} single DELETE requests: {requests:?}");
    // With --yes and no snapshot the lock comes first and the target is listed once, under
    // it (not for the plan and again under the lock).
    let listed_resources = requests
        .iter()
        .filter(|l| l.contains("list-type=2") && l.contains("prefix=.resource%2F"))
        .count();
    assert_eq!(listed_resources, 1, "`.resource/` listings: {requests:#?}");
    let lock_put = requests
        .iter()
        .position(|l| l.starts_with("PUT ") && l.contains("/locks/"))
        .expect("no lock written");
    let first_listing = requests
        .iter()
        .position(|l| l.contains("list-type=2") && !l.contains("prefix=locks"))
        .expect("no listing");
    assert!(
        lock_put < first_listing,
        "the target was listed before the lock: {requests:#?}"
    );

    // What is left: info.json only.
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let s = S3Storage::new(server.options(BUCKET)).unwrap();
        let left: Vec<String> = s
            .list("")
            .await
            .unwrap()
            .into_iter()
            .filter(|e| !e.is_dir)
            .map(|e| e.path)
            .collect();
        assert_eq!(left, vec!["info.json".to_string()]);
        assert!(s.list(".resource").await.unwrap().is_empty());
    });
}

/// A wrong secret fails with a clear "signature does not match / access denied" error, never
/// shows the secret, and changes nothing on the server.
#[test]
fn wrong_secret_fails_clearly_and_changes_nothing() {
    let server = S3Server::start(S3Kind::S3sFs);
    server.create_bucket(BUCKET);
    restore_fresh(&server, &[]);
    let data = server.dir.path().join("data");
    let before = tree_hashes(&data);
    let jex = sample_jex();
    let t = server.target_args(BUCKET);
    let env = server.env_with_secret("not-the-secret-xyz");
    let o = jr_s3_env(
        &env,
        &args(
            &["restore", jex.to_str().unwrap()],
            &t,
            &["--yes", "--rewrite-unchanged"],
        ),
    );
    let all = text(&o);
    assert!(!o.status.success(), "{all}");
    assert!(
        all.contains("signature does not match or access is denied"),
        "{all}"
    );
    assert!(all.contains("AWS_SECRET_ACCESS_KEY"), "{all}");
    assert!(!all.contains("not-the-secret-xyz"), "secret leaked: {all}");
    assert_eq!(tree_hashes(&data), before, "nothing may change");
}

/// A bucket that does not exist: the error says to create it or pass --create-bucket, and no
/// bucket appears.
#[test]
fn missing_bucket_says_create_it() {
    let server = S3Server::start(S3Kind::S3sFs);
    let jex = sample_jex();
    let t = server.target_args("nosuchbucket");
    let o = jr_s3(&server, &args(&["restore", jex.to_str().unwrap()], &t, &[]));
    let all = text(&o);
    assert!(!o.status.success(), "{all}");
    assert!(all.contains("does not exist"), "{all}");
    assert!(all.contains("--create-bucket"), "{all}");
    assert!(!server.dir.path().join("data/nosuchbucket").exists());
    // A reading command never creates it, and with --create-bucket (a named target may
    // carry it) a missing bucket is still an error, not an empty target.
    for cmd in [vec!["status"], vec!["verify", jex.to_str().unwrap()]] {
        let o = jr_s3(&server, &args(&cmd, &t, &["--create-bucket"]));
        let all = text(&o);
        assert!(!o.status.success(), "{cmd:?}: {all}");
        assert!(all.contains("does not exist"), "{cmd:?}: {all}");
        assert!(!server.dir.path().join("data/nosuchbucket").exists());
    }
}

/// `clear` with its snapshot lists the target twice, not three times: the snapshot reuses the
/// listing the plan was made from (before, it listed the root and `.resource/` again); the
/// second listing is the one under the lock, which refuses a target a client changed while
/// the snapshot ran.
#[test]
fn clear_with_snapshot_lists_the_target_for_the_plan_and_under_the_lock_only() {
    let (server, proxy, t) = filled_behind_a_counting_proxy(2500, 0x5a95_0000_0000);
    let snaps = tempfile::tempdir().unwrap();
    let out = jr_s3_ok(
        &server,
        &args(
            &["clear"],
            &t,
            &["--yes", "--snapshot-dir", snaps.path().to_str().unwrap()],
        ),
    );
    assert!(out.contains("Cleared: 2500 file(s) deleted"), "{out}");
    let requests = proxy.requests();
    assert!(
        !requests.iter().any(|l| l.starts_with("UNPARSED")),
        "the proxy could not follow every request: {requests:?}"
    );
    let lists = |prefix: &str| {
        requests
            .iter()
            .filter(|l| {
                l.contains("list-type=2")
                    && (l.contains(&format!("prefix={prefix} "))
                        || l.contains(&format!("prefix={prefix}&")))
            })
            .count()
    };
    // Root, listed for the plan and under the lock (neither the snapshot nor an after-check
    // lists it again), each time: a first page of 1,000 names, then the rest side by side —
    // one listing per hex digit from the first page's last id on (here every id starts with 0:
    // that digit takes 2 pages for its 1,500 remaining ids) and the gaps between '9' and 'a'
    // and after 'f'.
    assert_eq!(lists(""), 6, "root listings: {requests:#?}");
    let by_digit: Vec<usize> = "0123456789abcdef"
        .chars()
        .map(|c| lists(&c.to_string()))
        .collect();
    assert_eq!(
        by_digit,
        [4, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2],
        "listings per first digit"
    );
    // `.resource/`: for the plan and under the lock.
    assert_eq!(
        lists(".resource%2F"),
        2,
        "`.resource/` listings: {requests:#?}"
    );
    // 2,500 keys: 3 DeleteObjects.
    let bulk = requests
        .iter()
        .filter(|l| l.starts_with("POST ") && l.contains("?delete"))
        .count();
    assert_eq!(bulk, 3, "{requests:#?}");
    let gets = requests
        .iter()
        .filter(|l| l.starts_with("GET ") && !l.contains("list-type"))
        .count();
    // The snapshot downloads every file once (plus info.json reads and the lock checks).
    assert!((2500..=2510).contains(&gets), "{gets} GETs");
}

/// A restore under a key prefix works for our own commands, and says that no Joplin client can
/// sync from there (Joplin's S3 target is a bucket's root).
#[test]
fn a_restore_under_a_prefix_says_joplin_cannot_sync_it() {
    let server = S3Server::start(S3Kind::S3sFs);
    server.create_bucket(BUCKET);
    let jex = sample_jex();
    let t = vec![
        "--target".to_string(),
        format!("s3://{BUCKET}/staging"),
        "--endpoint".to_string(),
        server.endpoint.clone(),
        "--path-style".to_string(),
    ];
    let o = jr_s3(
        &server,
        &args(&["restore", jex.to_str().unwrap()], &t, &["--yes"]),
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains(&format!(
            "s3://{BUCKET}/staging is a prefix inside the bucket"
        )) && out.contains("syncs a bucket's root only"),
        "{out}"
    );
    let o = jr_s3(&server, &args(&["verify", jex.to_str().unwrap()], &t, &[]));
    let v = text(&o);
    assert!(
        o.status.success() && v.contains("OK:") && !v.contains("prefix inside"),
        "{v}"
    );
}
