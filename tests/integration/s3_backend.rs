//! The S3 backend against real S3 servers on 127.0.0.1: the shared conformance suite on s3s-fs
//! and s3rver (multipart included), pagination, bad credentials and missing buckets.

use crate::support;

use backend_core::pacer::{Paced, PacerOptions};
use backend_core::{Storage, StorageError};
use backend_s3::S3Storage;
use bytes::Bytes;
use support::s3::{S3Kind, S3Server};

async fn conformance_on(kind: S3Kind) {
    let server = S3Server::start(kind);
    server.create_bucket_async("conf").await;
    // Small threshold: the suite's 5 MiB + 17 B blob goes up in two parts.
    let mut o = server.options("conf");
    o.multipart_threshold = 5 * 1024 * 1024;
    o.part_size = 5 * 1024 * 1024;
    backend_core::conformance::run_all(&S3Storage::new(o).unwrap()).await;
    // And again under a key prefix, in the same (now empty) bucket.
    let mut o = server.options("conf");
    o.prefix = "some/prefix".into();
    let s = S3Storage::new(o).unwrap();
    backend_core::conformance::run_all(&s).await;
    let whole = S3Storage::new(server.options("conf")).unwrap();
    let root = whole.list("").await.unwrap();
    assert!(
        root.iter().all(|e| e.is_dir),
        "nothing may be left at the bucket root: {root:?}"
    );
}

#[tokio::test]
async fn conformance_s3s_fs() {
    conformance_on(S3Kind::S3sFs).await;
}

#[tokio::test]
async fn conformance_s3rver() {
    conformance_on(S3Kind::S3rver).await;
}

/// Joplin's key layout: `<id>.md` and `info.json` at the root, blobs under `.resource/`, no
/// directory objects; a root listing shows `.resource` as a directory only.
#[tokio::test]
async fn joplin_layout_and_pagination() {
    let server = S3Server::start(S3Kind::S3sFs);
    server.create_bucket_async("layout").await;
    let s = S3Storage::new(server.options("layout")).unwrap();
    s.mkdir(".resource").await.unwrap();
    s.mkdir("locks").await.unwrap();
    assert!(
        s.list("").await.unwrap().is_empty(),
        "mkdir must not create directory objects"
    );
    let files: Vec<(String, Bytes)> = (0..1234)
        .map(|i| (format!("{i:032x}.md"), Bytes::from(format!("item {i}"))))
        .collect();
    let failed = s.put_many(files).await;
    assert!(failed.is_empty(), "{failed:?}");
    s.put(
        ".resource/0123456789abcdef0123456789abcdef",
        Bytes::from_static(b"blob"),
    )
    .await
    .unwrap();
    s.put("info.json", Bytes::from_static(b"{}")).await.unwrap();
    // s3s-fs keeps objects as plain files named by key.
    let data = server.dir.path().join("data/layout");
    assert!(data.join("info.json").is_file());
    assert!(data
        .join(".resource/0123456789abcdef0123456789abcdef")
        .is_file());
    let root = s.list("").await.unwrap();
    let files = root.iter().filter(|e| !e.is_dir).count();
    assert_eq!(files, 1235, "1234 items + info.json over two listing pages");
    let unique: std::collections::HashSet<&str> = root.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(unique.len(), root.len(), "an entry listed twice");
    assert!(unique.contains(format!("{:032x}.md", 1233).as_str()));
    let dirs: Vec<&str> = root
        .iter()
        .filter(|e| e.is_dir)
        .map(|e| e.path.as_str())
        .collect();
    assert_eq!(dirs, vec![".resource"]);
    assert!(root.iter().all(|e| e.is_dir || e.modified.is_some()));
    let res = s.list(".resource").await.unwrap();
    assert_eq!(res.len(), 1);
    assert_eq!(res[0].name(), "0123456789abcdef0123456789abcdef");

    // Through the pacer the key-range listings after the first page are paced requests too:
    // counted, and no more at once than --transfers.
    let inner: std::sync::Arc<dyn Storage> = std::sync::Arc::new(s);
    let paced = Paced::new(
        inner,
        PacerOptions {
            transfers: 2,
            ..Default::default()
        },
    );
    let again = paced.list("").await.unwrap();
    assert_eq!(again.len(), root.len());
    assert!(
        paced.counts().requests > 2,
        "the first page and every range listed after it: {:?}",
        paced.counts()
    );
}

#[tokio::test]
async fn wrong_secret_is_an_auth_error_with_advice() {
    for kind in [S3Kind::S3sFs, S3Kind::S3rver] {
        let server = S3Server::start(kind);
        server.create_bucket_async("joplin").await;
        let mut o = server.options("joplin");
        // s3rver 3.7.1 checks only the access key id ("Signature version 4 calculation is
        // unimplemented"), so there a wrong key stands in for a wrong secret.
        o.static_credentials = Some(match kind {
            S3Kind::S3sFs => (server.access_key.into(), "wrong-secret".into()),
            S3Kind::S3rver => ("WRONGKEY".into(), "wrong-secret".into()),
        });
        let s = S3Storage::new(o).unwrap();
        for r in [
            s.ensure_root().await.map(|_| ()),
            s.list("").await.map(|_| ()),
            s.put("a.md", Bytes::from_static(b"x")).await,
            s.get("info.json").await.map(|_| ()),
        ] {
            match r {
                Err(StorageError::Auth(m)) => {
                    assert!(
                        m.contains("signature does not match or access is denied"),
                        "{m}"
                    );
                    assert!(
                        !m.contains("wrong-secret"),
                        "the secret must never be shown: {m}"
                    );
                }
                other => panic!("{kind:?}: expected an auth error, got {other:?}"),
            }
        }
        let good = S3Storage::new(server.options("joplin")).unwrap();
        assert!(
            good.list("").await.unwrap().is_empty(),
            "nothing was written"
        );
    }
}

#[tokio::test]
async fn missing_bucket_says_create_it_and_create_bucket_does() {
    let server = S3Server::start(S3Kind::S3sFs);
    let s = S3Storage::new(server.options("nobucket")).unwrap();
    for r in [s.ensure_root().await, s.list("").await.map(|_| ())] {
        match r {
            Err(e @ StorageError::Config(_)) => {
                let m = e.to_string();
                assert!(
                    m.contains("does not exist") && m.contains("--create-bucket"),
                    "{m}"
                );
            }
            other => panic!("expected a missing-bucket error, got {other:?}"),
        }
    }
    let mut o = server.options("nobucket");
    o.create_bucket = true;
    let s = S3Storage::new(o).unwrap();
    // Until ensure_root creates it, the missing bucket reads as an empty target.
    assert!(s.list("").await.unwrap().is_empty());
    assert!(s.get("info.json").await.unwrap_err().is_not_found());
    assert!(s.stat("info.json").await.unwrap().is_none());
    s.ensure_root().await.unwrap();
    s.ensure_root().await.unwrap();
    s.put("a.md", Bytes::from_static(b"x")).await.unwrap();
    assert_eq!(&s.get("a.md").await.unwrap()[..], b"x");
}

/// A multipart upload that fails half-way is aborted (no parts left on the server) and the
/// object is not created; the error is retryable so the pacer tries again.
#[tokio::test]
async fn failed_multipart_upload_is_aborted() {
    use support::counting_proxy::CountingProxy;
    let server = S3Server::start(S3Kind::S3sFs);
    server.create_bucket_async("mpu").await;
    let proxy = CountingProxy::start_failing(server.port, |l| {
        l.starts_with("PUT ") && l.contains("partNumber=2")
    });
    let mut o = server.options_at(&proxy.endpoint, "mpu");
    o.multipart_threshold = 5 * 1024 * 1024;
    o.part_size = 5 * 1024 * 1024;
    let s = S3Storage::new(o).unwrap();
    let blob = backend_core::conformance::pattern(12 * 1024 * 1024, 3);
    let err = s.put(".resource/big", blob.clone()).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let reqs = proxy.requests();
    let has = |pred: &dyn Fn(&str) -> bool| reqs.iter().any(|l| pred(l));
    assert!(
        has(&|l| l.starts_with("POST ") && l.contains("?uploads")),
        "{reqs:?}"
    );
    assert!(has(&|l| l.starts_with("FAILED PUT ")), "{reqs:?}");
    assert!(
        has(&|l| l.starts_with("DELETE ") && l.contains("uploadId=")),
        "AbortMultipartUpload expected: {reqs:?}"
    );
    assert!(
        !has(&|l| l.starts_with("POST ") && l.contains("uploadId=")),
        "no Complete: {reqs:?}"
    );
    assert!(s.stat(".resource/big").await.unwrap().is_none());
    // Through the proxy with nothing failing, the same upload works in three parts.
    let ok = S3Storage::new({
        let mut o = server.options("mpu");
        o.multipart_threshold = 5 * 1024 * 1024;
        o.part_size = 5 * 1024 * 1024;
        o
    })
    .unwrap();
    ok.put(".resource/big", blob.clone()).await.unwrap();
    assert!(ok.get(".resource/big").await.unwrap() == blob);
}

/// An upload that takes longer than `--timeout` but keeps going (a large attachment on a slow
/// link, or under --bwlimit) goes through: the SDK's read timeout, which runs from a request's
/// start, is lifted for uploads, single and multipart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_outlasting_the_timeout_goes_through() {
    let server = S3Server::start(S3Kind::S3sFs);
    server.create_bucket_async("slow").await;
    let dir = tempfile::tempdir().unwrap();
    let (slice, data) = backend_core::conformance::slow_upload(dir.path());
    for multipart in [false, true] {
        let mut o = server.options("slow");
        o.timeout = std::time::Duration::from_secs(1);
        if multipart {
            o.multipart_threshold = 100_000;
        }
        let s = S3Storage::new(o).unwrap();
        let started = std::time::Instant::now();
        s.put_file(".resource/slow", &slice)
            .await
            .unwrap_or_else(|e| panic!("multipart {multipart}: {e}"));
        assert!(
            started.elapsed() > std::time::Duration::from_secs(1),
            "the upload was not slow"
        );
        assert!(s.get(".resource/slow").await.unwrap() == data);
    }
}

/// A server that takes connections and never answers fails a request once `--timeout` passes
/// (it waited for ever), and an upload once it goes that long with no progress: transient
/// errors the pacer retries, naming the wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_times_out() {
    let silent = support::SilentServer::start();
    let mut o = backend_s3::S3Options::new("joplin");
    o.endpoint = Some(format!("http://127.0.0.1:{}", silent.port));
    o.region = Some("us-east-1".into());
    o.path_style = true;
    o.static_credentials = Some(("key".into(), "secret".into()));
    o.timeout = std::time::Duration::from_secs(1);
    let s = S3Storage::new(o).unwrap();
    let limit = std::time::Duration::from_secs(15);
    let e = tokio::time::timeout(limit, s.list(""))
        .await
        .expect("the timeout ends the listing")
        .unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    assert!(
        e.to_string().contains("sent nothing for 1 s (--timeout)"),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    backend_core::conformance::upload_never_answered(&s, dir.path()).await;
    drop(silent);
}
