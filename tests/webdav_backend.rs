//! The WebDAV backend against real servers: the shared conformance suite on Apache mod_dav and
//! rclone, plus what only WebDAV has (root creation, auth, listings of odd base URLs).

mod support;

use backend_core::{Storage, StorageError};
use backend_webdav::{parse_target, Secret, WebDavConfig, WebDavStorage};
use bytes::Bytes;
use support::webdav::{DavServer, PASS, USER};

fn storage(url: &str, password: &str) -> WebDavStorage {
    let (url, _) = parse_target(url).unwrap();
    WebDavStorage::new(WebDavConfig {
        url,
        username: Some(USER.into()),
        password: Some(Secret::new(password)),
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_apache() {
    let srv = DavServer::apache();
    // Two missing levels: ensure_root must create the parent too.
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
