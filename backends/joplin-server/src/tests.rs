//! The backend against the Joplin Server EMULATOR (`tests/joplin-server-emulator`), one test per
//! trap documented in `joplin-server-api.md`.

use super::*;
use backend_core::pacer::{Paced, PacerOptions};
use joplin_server_emulator::{Emulator, EmulatorConfig};

const USER: &str = "admin@localhost";

fn backend(url: &str, password: &str) -> JoplinServer {
    backend_with_timeout(url, password, Duration::from_secs(30))
}

fn backend_with_timeout(url: &str, password: &str, timeout: Duration) -> JoplinServer {
    JoplinServer::new(JoplinServerConfig {
        base_url: url.to_string(),
        username: USER.into(),
        password: Password::new(password),
        timeout,
    })
    .unwrap()
}

/// An upload that takes longer than the timeout but keeps going (a large attachment on a slow
/// link, or under --bwlimit) goes through: the timeout is for no progress, not for a request's
/// length (a total timeout failed it on every attempt).
#[tokio::test]
async fn a_slow_upload_outlasting_the_timeout_goes_through() {
    let emu = Emulator::start(EmulatorConfig::default()).await;
    let s = backend_with_timeout(&emu.url(), "admin", Duration::from_secs(1));
    let dir = tempfile::tempdir().unwrap();
    let (slice, data) = backend_core::conformance::slow_upload(dir.path());
    let started = std::time::Instant::now();
    s.put_file(".resource/slow", &slice).await.unwrap();
    assert!(
        started.elapsed() > Duration::from_secs(1),
        "the upload was not slow"
    );
    assert_eq!(emu.content(USER, ".resource/slow").unwrap(), data.to_vec());
}

fn item(id: &str, title: &str, extra: &str) -> String {
    format!(
        "{title}\n\nbody of {title}\n\nid: {id}\nparent_id: \ncreated_time: 2024-01-01T00:00:00.000Z\n\
         updated_time: 2024-01-02T00:00:00.000Z\n{extra}type_: 1"
    )
}

fn id(n: usize) -> String {
    format!("{n:032x}")
}

#[tokio::test]
async fn conformance_against_the_emulator() {
    let emu = Emulator::start(EmulatorConfig::default()).await;
    let s = backend(&emu.url(), "admin");
    backend_core::conformance::run_all(&s).await;
    let st = emu.stats();
    assert_eq!(st.logins, 1, "one login per run: {st:?}");
    assert!(st.json_puts.is_empty(), "never PUT content as JSON: {st:?}");
}

#[tokio::test]
async fn blobs_go_as_octet_stream_byte_exact() {
    let emu = Emulator::start(EmulatorConfig::default()).await;
    let s = backend(&emu.url(), "admin");
    let blob = backend_core::conformance::pattern(300_000, 3);
    s.put(".resource/abc", blob.clone()).await.unwrap();
    assert_eq!(emu.content(USER, ".resource/abc").unwrap(), blob.to_vec());
    assert!(emu.stats().json_puts.is_empty());
}

#[tokio::test]
async fn wrong_password_says_what_to_check() {
    let emu = Emulator::start(EmulatorConfig::default()).await;
    let s = backend(&emu.url(), "nope");
    let e = s.ensure_root().await.unwrap_err();
    assert!(matches!(e, StorageError::Auth(_)), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("--username") && msg.contains("JOPLIN_RESTORE_PASSWORD"),
        "{msg}"
    );
    assert!(
        !msg.contains("nope"),
        "the password must never be shown: {msg}"
    );
}

#[tokio::test]
async fn wrong_origin_is_a_config_error_naming_app_base_url() {
    let emu = Emulator::start(EmulatorConfig::default()).await;
    let url = format!("http://localhost:{}", emu.addr().port());
    let s = backend(&url, "admin");
    let e = s.ensure_root().await.unwrap_err();
    assert!(matches!(e, StorageError::Config(_)), "{e:?}");
    assert!(e.to_string().contains("APP_BASE_URL"), "{e}");
}

#[tokio::test]
async fn login_rate_limit_waits_retry_after_and_goes_on() {
    let emu = Emulator::start(EmulatorConfig {
        login_limit: 2,
        retry_after_secs: 1,
        login_window: Duration::from_secs(3),
        ..Default::default()
    })
    .await;
    // Two failed logins use up the budget.
    for _ in 0..2 {
        assert!(backend(&emu.url(), "bad").ensure_root().await.is_err());
    }
    let good: Arc<dyn Storage> = Arc::new(backend(&emu.url(), "admin"));
    let paced = Paced::new(good, PacerOptions::default());
    paced.put("a.txt", Bytes::from_static(b"x")).await.unwrap();
    let st = emu.stats();
    assert!(st.logins_rate_limited >= 1, "{st:?}");
    assert!(paced.counts().rate_limited >= 1);
    assert_eq!(emu.content(USER, "a.txt").unwrap(), b"x");
}

#[tokio::test]
async fn expired_session_logs_in_again_once() {
    let emu = Emulator::start(EmulatorConfig::default()).await;
    let s = backend(&emu.url(), "admin");
    s.put("a.txt", Bytes::from_static(b"1")).await.unwrap();
    emu.expire_sessions();
    assert_eq!(&s.get("a.txt").await.unwrap()[..], b"1");
    assert_eq!(emu.stats().logins, 2);
}

#[tokio::test]
async fn parallel_requests_log_in_once() {
    let emu = Emulator::start(EmulatorConfig::default()).await;
    let s = Arc::new(backend(&emu.url(), "admin"));
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.put(&format!("f{i}.txt"), Bytes::from_static(b"x")).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(emu.stats().logins, 1);
}

#[tokio::test]
async fn trailing_newline_is_dropped_before_upload() {
    let emu = Emulator::start(EmulatorConfig::default()).await;
    let s = backend(&emu.url(), "admin");
    let name = format!("{}.md", id(1));
    s.put(&name, Bytes::from(format!("{}\n", item(&id(1), "T", ""))))
        .await
        .unwrap();
    let failed = s
        .put_many(vec![(
            format!("{}.md", id(2)),
            Bytes::from(format!("{}\n\n", item(&id(2), "U", ""))),
        )])
        .await;
    assert!(failed.is_empty(), "{failed:?}");
    let back = String::from_utf8(s.get(&name).await.unwrap().to_vec()).unwrap();
    assert!(back.starts_with("T\n\nbody of T"), "{back}");
}

#[tokio::test]
async fn missing_updated_time_is_refused_with_a_reason() {
    let emu = Emulator::start(EmulatorConfig::default()).await;
    let s = backend(&emu.url(), "admin");
    let bad = item(&id(1), "T", "").replace("updated_time: 2024-01-02T00:00:00.000Z\n", "");
    let name = format!("{}.md", id(1));
    let e = s.put(&name, Bytes::from(bad.clone())).await.unwrap_err();
    assert!(
        !e.is_retryable() && e.to_string().contains("updated_time"),
        "{e}"
    );
    let failed = s.put_many(vec![(name.clone(), Bytes::from(bad))]).await;
    assert_eq!(failed.len(), 1);
    assert!(!failed[0].1.is_retryable());
}

#[tokio::test]
async fn server_side_validation_500_is_not_retried() {
    // Bypass `prepare` by sending a body the server cannot parse but that has both keys.
    let emu = Emulator::start(EmulatorConfig::default()).await;
    let s = backend(&emu.url(), "admin");
    let e = s
        .call(
            reqwest::Method::PUT,
            &s.item_url(&format!("{}.md", id(1)), "/content"),
            Some((
                "application/octet-stream",
                Payload::Bytes(Bytes::from_static(b"plain markdown\n")),
            )),
            "x",
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::Rejected(_)), "{e:?}");
}

#[tokio::test]
async fn unknown_share_is_blanked_and_the_item_stored() {
    let emu = Emulator::start(EmulatorConfig::default()).await;
    let s = backend(&emu.url(), "admin");
    let body = item(&id(1), "Shared", "is_shared: 1\nshare_id: nosuchshare\n");
    let failed = s
        .put_many(vec![(format!("{}.md", id(1)), Bytes::from(body.clone()))])
        .await;
    assert!(failed.is_empty(), "{failed:?}");
    s.put(
        &format!("{}.md", id(2)),
        Bytes::from(body.replace(&id(1), &id(2))),
    )
    .await
    .unwrap();
    for n in [1, 2] {
        let back = String::from_utf8(emu.content(USER, &format!("{}.md", id(n))).unwrap()).unwrap();
        assert!(
            back.contains("\nshare_id: \n") && back.contains("\nis_shared: 0\n"),
            "{back}"
        );
    }
}

#[tokio::test]
async fn known_share_is_kept() {
    let emu = Emulator::start(EmulatorConfig {
        shares: vec!["myshare".into()],
        ..Default::default()
    })
    .await;
    let s = backend(&emu.url(), "admin");
    let body = item(&id(1), "Shared", "is_shared: 1\nshare_id: myshare\n");
    assert!(s
        .put_many(vec![(format!("{}.md", id(1)), Bytes::from(body))])
        .await
        .is_empty());
    let back = String::from_utf8(emu.content(USER, &format!("{}.md", id(1))).unwrap()).unwrap();
    assert!(back.contains("\nshare_id: myshare\n"), "{back}");
}

#[tokio::test]
async fn batches_stay_under_the_limit_in_utf16_units() {
    let emu = Emulator::start(EmulatorConfig::default()).await;
    let s = backend(&emu.url(), "admin");
    // "😀" is 4 bytes of UTF-8 but 2 UTF-16 units; "é" 2 bytes but 1 unit. 12 items of
    // 150k units each = 1.8M units: must be split; each alone fits.
    let files: Vec<(String, Bytes)> = (0..12)
        .map(|i| {
            let fill = if i % 2 == 0 {
                "😀".repeat(75_000)
            } else {
                "é".repeat(150_000)
            };
            (
                format!("{}.md", id(i)),
                Bytes::from(item(&id(i), &format!("N{i}"), "").replace("body of", &fill)),
            )
        })
        .collect();
    // One item over the limit on its own goes through a single PUT.
    let huge = item(&id(99), "Huge", "").replace("body of", &"x".repeat(1_100_000));
    let mut all = files.clone();
    all.push((format!("{}.md", id(99)), Bytes::from(huge)));
    let failed = s.put_many(all).await;
    assert!(failed.is_empty(), "{failed:?}");
    let st = emu.stats();
    assert!(st.batch_puts >= 2, "{st:?}");
    assert_eq!(st.single_puts, 1, "{st:?}");
    assert_eq!(emu.names(USER).len(), 13);
}

#[tokio::test]
async fn oversized_item_fails_alone_with_413() {
    let emu = Emulator::start(EmulatorConfig::default()).await;
    emu.set_max_item_size(10_000);
    let s = backend(&emu.url(), "admin");
    let mut files: Vec<(String, Bytes)> = (0..5)
        .map(|i| {
            (
                format!("{}.md", id(i)),
                Bytes::from(item(&id(i), "small", "")),
            )
        })
        .collect();
    files.push((
        format!("{}.md", id(9)),
        Bytes::from(item(&id(9), "big", "").replace("body of", &"y".repeat(20_000))),
    ));
    let failed = s.put_many(files).await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, format!("{}.md", id(9)));
    assert!(
        matches!(failed[0].1, StorageError::TooLarge { .. }),
        "{:?}",
        failed[0].1
    );
    assert_eq!(emu.names(USER).len(), 5);
}

#[tokio::test]
async fn listing_reads_every_page_side_by_side_and_clearing_gets_everything() {
    let emu = Emulator::start(EmulatorConfig::default()).await;
    // 950 + 30 names: 10 pages for the root, so the pages after the first go in two windows.
    for i in 0..950 {
        emu.insert_raw(USER, &format!("{}.md", id(i)), b"x");
    }
    for i in 0..30 {
        emu.insert_raw(USER, &format!(".resource/{}", id(i)), b"b");
    }
    let s = backend(&emu.url(), "admin");
    let root = s.list("").await.unwrap();
    let files: Vec<_> = root.iter().filter(|e| !e.is_dir).collect();
    let unique: std::collections::BTreeSet<&str> = files.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(files.len(), 950, "every name once");
    assert_eq!(unique.len(), 950);
    assert!(root.iter().any(|e| e.is_dir && e.path == ".resource"));
    let listings_root = emu.stats().listings;
    // 10 pages hold names; at most the rest of the last window of 8 is asked for beyond them.
    assert!((10..=10 + 7).contains(&listings_root), "{listings_root}");
    assert_eq!(s.list(".resource").await.unwrap().len(), 30);
    assert_eq!(
        emu.stats().listings,
        listings_root + 1,
        "one page: no more asked"
    );
    let mut all: Vec<String> = files.iter().map(|e| e.path.clone()).collect();
    all.extend(
        s.list(".resource")
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.path),
    );
    assert!(s.delete_many(&all).await.is_empty());
    assert!(emu.names(USER).is_empty(), "{:?}", emu.names(USER));
}

/// Through the pacer, every page of a listing is a paced request: counted, and sent no faster
/// than `--tpslimit` (the pages after the first go side by side inside one `list` call).
#[tokio::test]
async fn listing_pages_keep_to_the_pacers_limits() {
    let emu = Emulator::start(EmulatorConfig::default()).await;
    for i in 0..950 {
        emu.insert_raw(USER, &format!("{}.md", id(i)), b"x");
    }
    let inner: Arc<dyn Storage> = Arc::new(backend(&emu.url(), "admin"));
    inner.ensure_root().await.unwrap();
    let paced = Paced::new(
        inner,
        PacerOptions {
            tps_limit: Some(40.0),
            transfers: 2,
            ..Default::default()
        },
    );
    let t = std::time::Instant::now();
    assert_eq!(paced.list("").await.unwrap().len(), 950);
    let pages = emu.stats().listings;
    assert!(pages >= 10, "{pages}");
    // Each page went through the pacer: counted, and no burst past 40 a second.
    assert_eq!(paced.counts().requests, pages);
    let least = Duration::from_secs_f64((pages - 1) as f64 / 40.0);
    assert!(t.elapsed() >= least, "{:?} < {least:?}", t.elapsed());
}

#[tokio::test]
async fn locks_go_through_the_api_and_conflicts_say_who() {
    let emu = Emulator::start(EmulatorConfig::default()).await;
    let s = backend(&emu.url(), "admin");
    assert!(s.acquire_server_lock("me").await.unwrap());
    assert!(
        s.acquire_server_lock("me").await.unwrap(),
        "re-POST refreshes"
    );
    let locks = emu.locks(USER);
    assert_eq!(locks.len(), 1);
    assert_eq!((locks[0].kind, locks[0].client_type), (2, 3));
    s.release_server_lock("me").await.unwrap();
    assert!(emu.locks(USER).is_empty());

    emu.add_lock(USER, 1, 1, "desktop1");
    let e = s.acquire_server_lock("me").await.unwrap_err();
    assert!(!e.is_retryable());
    assert!(
        e.to_string().contains("active sync lock") && e.to_string().contains("Wait"),
        "{e}"
    );
}

#[test]
fn prepare_and_blank_share() {
    let name = format!("{}.md", id(1));
    let ok = prepare(&name, Bytes::from(format!("{}\r\n", item(&id(1), "T", "")))).unwrap();
    assert!(ok.ends_with(b"type_: 1"));
    assert!(prepare("info.json", Bytes::from_static(b"{}\n"))
        .unwrap()
        .ends_with(b"\n"));
    assert!(prepare(&name, Bytes::from_static(b"just text")).is_err());
    let b = blank_share(item(&id(1), "T", "is_shared: 1\nshare_id: s\n").as_bytes()).unwrap();
    let t = std::str::from_utf8(&b).unwrap();
    assert!(t.contains("\nis_shared: 0\nshare_id: \ntype_: 1"), "{t}");
    assert!(blank_share(item(&id(1), "T", "").as_bytes()).is_none());
}

#[test]
fn debug_hides_the_password() {
    let s = backend("http://127.0.0.1:1", "secret-pass");
    assert!(!format!("{s:?}").contains("secret-pass"));
}

/// Pages read side by side can repeat a name at their border (a write shifted it): each name
/// is handed over once, whatever order the server sorts in.
#[test]
fn a_name_shifted_onto_the_next_page_is_handed_over_once() {
    let page = |names: &[&str]| names.iter().map(|n| (n.to_string(), 1)).collect::<Vec<_>>();
    let names = |p: Vec<(String, i64)>| p.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
    let mut twins = PageTwins::default();
    assert_eq!(
        names(twins.fresh(page(&["a.md", "b.md", "c.md"]))),
        ["a.md", "b.md", "c.md"]
    );
    assert_eq!(names(twins.fresh(page(&["c.md", "d.md"]))), ["d.md"]);
    assert_eq!(names(twins.fresh(page(&["e.md"]))), ["e.md"]);
    // In the server's case-insensitive order a name may sort before the one handed over
    // last in byte order: it is still new, and kept.
    let mut twins = PageTwins::default();
    assert_eq!(
        names(twins.fresh(page(&["a.md", "B.md"]))),
        ["a.md", "B.md"]
    );
    assert_eq!(
        names(twins.fresh(page(&["B.md", "c.md", "D.md"]))),
        ["c.md", "D.md"]
    );
}
