//! The WebDAV backend against real servers: the shared conformance suite on Apache mod_dav and
//! rclone, plus what only WebDAV has (root creation, auth, listings of odd base URLs).

use crate::support;

use backend_core::{Storage, StorageError};
use backend_webdav::{parse_target, Secret, WebDavConfig, WebDavStorage};
use bytes::Bytes;
use std::time::Duration;
use support::webdav::{DavServer, FaultProxy, PASS, USER};

fn storage(url: &str, password: &str) -> WebDavStorage {
    storage_with_timeout(url, password, backend_core::DEFAULT_TIMEOUT)
}

fn storage_with_timeout(url: &str, password: &str, timeout: Duration) -> WebDavStorage {
    let (url, _) = parse_target(url).unwrap();
    WebDavStorage::new(WebDavConfig {
        url,
        username: Some(USER.into()),
        password: Some(Secret::new(password)),
        timeout,
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_apache() {
    let srv = DavServer::apache();
    // The target's own collection is created, only inside an existing one.
    srv.make_collection("parent");
    let s = storage(&srv.url("parent/Joplin"), PASS);
    backend_core::conformance::run_all(&s).await;
    assert!(srv.data.join("parent/Joplin/.resource").is_dir());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_rclone() {
    let srv = DavServer::rclone();
    let s = storage(&srv.url("Joplin"), PASS);
    backend_core::conformance::run_all(&s).await;
}

/// A base URL with a space and non-ASCII characters lists its own children, not itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_base_url() {
    let srv = DavServer::apache();
    srv.make_collection("My Notes");
    for url in [
        srv.url("My%20Notes/J%C3%B6plin"),
        srv.url("My Notes/Jöplin2"),
    ] {
        let s = storage(&url, PASS);
        s.ensure_root().await.unwrap();
        s.mkdir(".resource").await.unwrap();
        s.put("info.json", Bytes::from_static(b"{}")).await.unwrap();
        let mut names: Vec<String> = s
            .list("")
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.path)
            .collect();
        names.sort();
        assert_eq!(names, vec![".resource", "info.json"], "{url}");
        assert!(s.list(".resource").await.unwrap().is_empty());
    }
    assert!(srv.data.join("My Notes/Jöplin/info.json").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_an_auth_error_naming_the_user() {
    let srv = DavServer::apache();
    srv.make_collection("Joplin");
    let s = storage(&srv.url("Joplin"), "not-the-password");
    for e in [
        s.list("").await.unwrap_err(),
        s.put("a.md", Bytes::from_static(b"x")).await.unwrap_err(),
        s.ensure_root().await.unwrap_err(),
    ] {
        assert!(matches!(e, StorageError::Auth(_)), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("HTTP 401") && msg.contains("\"joplin\""),
            "{msg}"
        );
        assert!(!msg.contains("not-the-password"), "{msg}");
        assert!(!e.is_retryable());
    }
    assert!(!srv.data.join("Joplin/a.md").exists());
}

/// A folder whose PROPFIND answer is over a MiB (parsed from a temp file, not memory) lists
/// every file once with its size, whether collected or streamed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_folder_lists_every_file_once() {
    let srv = DavServer::apache();
    let s = storage(&srv.url("Joplin"), PASS);
    s.ensure_root().await.unwrap();
    let n = 5_000;
    let files: Vec<(String, Bytes)> = (0..n)
        .map(|i| (format!("{i:032x}.md"), Bytes::from(vec![b'x'; i % 50])))
        .collect();
    let failed = s.put_many(files).await;
    assert!(failed.is_empty(), "{failed:?}");
    let listed = s.list("").await.unwrap();
    assert_eq!(listed.len(), n);
    let mut names: Vec<&str> = listed.iter().map(|e| e.path.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), n, "a file listed twice");
    for e in &listed {
        let i = usize::from_str_radix(e.path.trim_end_matches(".md"), 16).unwrap();
        assert_eq!(e.size, (i % 50) as u64, "{}", e.path);
    }
    let mut streamed = Vec::new();
    s.list_each("", &backend_core::Unpaced, &mut streamed)
        .await
        .unwrap();
    assert_eq!(streamed.len(), n);
}

/// Modification times are what Joplin's delta compares: they must be current, to the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_times_are_current() {
    let srv = DavServer::rclone();
    let s = storage(&srv.url("Joplin"), PASS);
    s.ensure_root().await.unwrap();
    let before = std::time::SystemTime::now() - std::time::Duration::from_secs(2);
    s.put("a.md", Bytes::from_static(b"x")).await.unwrap();
    let e = s.stat("a.md").await.unwrap().unwrap();
    assert!(e.modified.unwrap() >= before, "{e:?}");
    assert!(s.capabilities().coarse_mtime);
}

/// A redirect is reported with the address to use, never followed (a followed PUT would turn
/// into a GET and look like a success).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_reported_not_followed() {
    let srv = DavServer::apache();
    srv.make_collection("Joplin");
    let s = storage(&format!("http://127.0.0.1:{}/moved/Joplin", srv.port), PASS);
    let e = s.put("a.md", Bytes::from_static(b"x")).await.unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("redirects (HTTP 301)"), "{msg}");
    assert!(
        msg.contains(&format!("http://127.0.0.1:{}/dav/Joplin/a.md", srv.port)),
        "{msg}"
    );
    assert!(!srv.data.join("Joplin/a.md").exists());
}

/// Certificate verification is on: a self-signed server is refused with a message that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_certificates_are_refused() {
    let srv = DavServer::rclone_self_signed_tls();
    assert!(srv.root_url.starts_with("https://"));
    let s = storage(&srv.url("Joplin"), PASS);
    let e = s.ensure_root().await.unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("TLS certificate was not accepted"), "{msg}");
    assert!(!e.is_retryable(), "{msg}");
    assert!(!srv.data.join("Joplin").exists());
}

/// HTTP/1.1 keep-alive: sequential requests share a connection instead of opening one each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_reuses_connections() {
    let srv = DavServer::apache();
    let s = storage(&srv.url("Joplin"), PASS);
    s.ensure_root().await.unwrap();
    for i in 0..30 {
        s.put(&format!("k{i}.md"), Bytes::from_static(b"x"))
            .await
            .unwrap();
    }
    // Apache writes the log line after the response: wait (bounded) for all 30.
    let mut log = String::new();
    for _ in 0..50 {
        log = srv.access_log();
        if log.matches("\"PUT /dav/Joplin/k").count() == 30 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let ports: std::collections::BTreeSet<&str> = log
        .lines()
        .filter(|l| l.contains("\"PUT /dav/Joplin/k"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(log.matches("\"PUT /dav/Joplin/k").count(), 30, "{log}");
    assert!(
        ports.iter().all(|p| p
            .strip_prefix("127.0.0.1:")
            .is_some_and(|n| n.parse::<u16>().is_ok())),
        "the log must show each client port: {ports:?}"
    );
    assert!(
        ports.len() <= 3,
        "30 sequential PUTs used {} connections:\n{log}",
        ports.len()
    );
}

/// 429 with Retry-After is classed as rate limiting with the server's delay, and the pacer's
/// retries get the upload through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limiting_is_retried_after_the_servers_delay() {
    use backend_core::pacer::{Paced, PacerOptions};
    let srv = DavServer::apache();
    srv.make_collection("Joplin");
    let proxy = FaultProxy::rate_limited(srv.port, 3);
    let url = format!("http://127.0.0.1:{}/dav/Joplin", proxy.port);
    let bare = storage(&url, PASS);
    match bare.put("a.md", Bytes::from_static(b"x")).await {
        Err(StorageError::RateLimited { retry_after, .. }) => {
            assert_eq!(retry_after, Some(std::time::Duration::from_secs(1)))
        }
        other => panic!("want RateLimited, got {other:?}"),
    }
    let paced = Paced::new(
        std::sync::Arc::new(storage(&url, PASS)),
        PacerOptions {
            retries: 5,
            ..Default::default()
        },
    );
    paced.put("a.md", Bytes::from_static(b"x")).await.unwrap();
    assert_eq!(paced.counts().rate_limited, 2);
    assert_eq!(
        proxy.puts_refused.load(std::sync::atomic::Ordering::SeqCst),
        3
    );
    assert_eq!(std::fs::read(srv.data.join("Joplin/a.md")).unwrap(), b"x");
}

/// An upload that takes longer than the timeout but keeps going (a large attachment on a slow
/// link, or under --bwlimit) goes through: the timeout is for a request making no progress,
/// not for its length (it failed every attempt once it outlasted the timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_outlasting_the_timeout_goes_through() {
    let srv = DavServer::apache();
    srv.make_collection("Joplin");
    let s = storage_with_timeout(&srv.url("Joplin"), PASS, Duration::from_secs(1));
    s.ensure_root().await.unwrap();
    s.mkdir(".resource").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (slice, data) = backend_core::conformance::slow_upload(dir.path());
    let started = std::time::Instant::now();
    s.put_file(".resource/slow", &slice).await.unwrap();
    assert!(
        started.elapsed() > Duration::from_secs(1),
        "the upload was not slow"
    );
    assert!(std::fs::read(srv.data.join("Joplin/.resource/slow")).unwrap() == data[..]);
}

/// A server that takes an upload and never answers fails it once the timeout passes with no
/// progress, as a transient error the pacer retries, naming the file and the wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_the_server_never_answers_times_out() {
    let silent = support::SilentServer::start();
    let port = silent.port;
    let s = storage_with_timeout(
        &format!("http://127.0.0.1:{port}/dav/Joplin"),
        PASS,
        Duration::from_secs(1),
    );
    let dir = tempfile::tempdir().unwrap();
    backend_core::conformance::upload_never_answered(&s, dir.path()).await;
    drop(silent);
}
