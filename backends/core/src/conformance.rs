//! One conformance suite every backend runs (object_store's `integration.rs` idea).
//!
//! Call [`run_all`] on an empty target root. Each check panics with a message naming the
//! backend and what broke.

use bytes::Bytes;

use crate::{Entry, Storage, StorageError};

fn names(entries: &[crate::Entry]) -> Vec<String> {
    let mut v: Vec<String> = entries.iter().map(|e| e.path.clone()).collect();
    v.sort();
    v
}

/// A file `blob` of 600 kB in `dir` and a slice of it sent at 300 kB/s: an upload of about
/// 1.9 s, for timeouts of 1 s. Returns the slice and the file's bytes.
pub fn slow_upload(dir: &std::path::Path) -> (crate::FileSlice, Bytes) {
    let local = dir.join("blob");
    let data = pattern(600_000, 5);
    std::fs::write(&local, &data).expect("write the local file");
    let slice = crate::FileSlice::new(&local, 0, 600_000).paced(crate::Pace::new(300_000));
    (slice, data)
}

/// `s` (a storage on a server that takes connections and never answers, its timeout 1 s) fails
/// an upload within 10 s, as a transient error the pacer retries, naming the file and the wait.
/// `dir`: where the local file goes.
pub async fn upload_never_answered(s: &dyn Storage, dir: &std::path::Path) {
    let local = dir.join("blob");
    std::fs::write(&local, vec![1u8; 10_000]).expect("write the local file");
    let slice = crate::FileSlice::new(&local, 0, 10_000);
    let e = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        s.put_file(".resource/x", &slice),
    )
    .await
    .expect("the timeout ends the upload")
    .unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains(".resource/x") && msg.contains("no progress for 1 s (--timeout)"),
        "{msg}"
    );
}

/// Deterministic pseudo-random bytes (no RNG dependency, same on every run).
pub fn pattern(len: usize, seed: u8) -> Bytes {
    let mut state = 0x9E37_79B9u32 ^ seed as u32;
    let mut v = Vec::with_capacity(len);
    for _ in 0..len {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        v.push((state >> 24) as u8);
    }
    Bytes::from(v)
}

pub async fn run_all(s: &dyn Storage) {
    let who = s.describe();
    s.ensure_root()
        .await
        .unwrap_or_else(|e| panic!("{who}: ensure_root: {e}"));
    s.ensure_root()
        .await
        .unwrap_or_else(|e| panic!("{who}: ensure_root twice: {e}"));
    empty_root_lists_empty(s, &who).await;
    put_get_overwrite(s, &who).await;
    zero_and_large(s, &who).await;
    nested_and_mkdir(s, &who).await;
    odd_names(s, &who).await;
    missing_things(s, &who).await;
    stat_and_list_sizes(s, &who).await;
    bulk_calls(s, &who).await;
    cleanup(s, &who).await;
}

async fn empty_root_lists_empty(s: &dyn Storage, who: &str) {
    let files: Vec<_> = s
        .list("")
        .await
        .unwrap_or_else(|e| panic!("{who}: list root: {e}"))
        .into_iter()
        .filter(|e| !e.is_dir)
        .collect();
    assert!(
        files.is_empty(),
        "{who}: a fresh root must hold no files, got {:?}",
        names(&files)
    );
}

async fn put_get_overwrite(s: &dyn Storage, who: &str) {
    s.put("a.md", Bytes::from_static(b"first"))
        .await
        .unwrap_or_else(|e| panic!("{who}: put a.md: {e}"));
    assert_eq!(&s.get("a.md").await.unwrap()[..], b"first", "{who}: get");
    s.put("a.md", Bytes::from_static(b"second, longer"))
        .await
        .unwrap();
    assert_eq!(
        &s.get("a.md").await.unwrap()[..],
        b"second, longer",
        "{who}: overwrite"
    );
    s.put("a.md", Bytes::from_static(b"3")).await.unwrap();
    assert_eq!(
        &s.get("a.md").await.unwrap()[..],
        b"3",
        "{who}: overwrite with shorter content must not keep a tail"
    );
}

async fn zero_and_large(s: &dyn Storage, who: &str) {
    s.put("empty.md", Bytes::new())
        .await
        .unwrap_or_else(|e| panic!("{who}: put 0 bytes: {e}"));
    assert_eq!(
        s.get("empty.md").await.unwrap().len(),
        0,
        "{who}: 0-byte get"
    );
    let big = pattern(5 * 1024 * 1024 + 17, 7);
    s.mkdir(".resource").await.unwrap();
    s.put(".resource/big", big.clone())
        .await
        .unwrap_or_else(|e| panic!("{who}: put 5 MiB: {e}"));
    let back = s.get(".resource/big").await.unwrap();
    assert!(
        back == big,
        "{who}: multi-MB blob must round-trip byte for byte"
    );
    put_file_slices(s, who).await;
}

/// `put_file` sends exactly the slice (offset and length inside a larger local file), large
/// enough to be a multipart upload on S3, and an empty slice is an empty file.
async fn put_file_slices(s: &dyn Storage, who: &str) {
    let local = std::env::temp_dir().join(format!(
        "jr-conformance-{}-{:?}.bin",
        std::process::id(),
        std::thread::current().id()
    ));
    let whole = pattern(9 * 1024 * 1024 + 4099, 11);
    std::fs::write(&local, &whole).expect("write the local file");
    let slice = crate::FileSlice::new(&local, 4099, 9 * 1024 * 1024);
    let put = s.put_file(".resource/big", &slice).await;
    let empty = s
        .put_file("empty.md", &crate::FileSlice::new(&local, 17, 0))
        .await;
    // Under --bwlimit the pacer hands a paced slice: its body waits chunk by chunk (S3 sends
    // it as a streamed body of its own, not a file the SDK reads; here in multipart parts).
    let paced_slice = slice.paced(crate::Pace::new(1024 * 1024 * 1024));
    let paced = s.put_file(".resource/paced", &paced_slice).await;
    let _ = std::fs::remove_file(&local);
    put.unwrap_or_else(|e| panic!("{who}: put_file 9 MiB slice: {e}"));
    paced.unwrap_or_else(|e| panic!("{who}: put_file of a paced slice: {e}"));
    let back = s.get(".resource/paced").await.unwrap();
    assert!(
        back == whole.slice(4099..),
        "{who}: a paced put_file must send exactly the slice ({} bytes back)",
        back.len()
    );
    s.delete(".resource/paced").await.unwrap();
    empty.unwrap_or_else(|e| panic!("{who}: put_file 0 bytes: {e}"));
    let back = s.get(".resource/big").await.unwrap();
    assert!(
        back == whole.slice(4099..),
        "{who}: put_file must send exactly the slice ({} bytes back)",
        back.len()
    );
    assert_eq!(
        s.get("empty.md").await.unwrap().len(),
        0,
        "{who}: empty slice"
    );
    // get_file writes the same bytes, replacing what the local file held.
    std::fs::write(&local, b"old content that is longer than nothing").unwrap();
    let n = s.get_file(".resource/big", &local).await;
    let back = std::fs::read(&local);
    let n0 = s.get_file("empty.md", &local).await;
    let back0 = std::fs::read(&local);
    let missing = s.get_file("no-such-file.md", &local).await;
    let _ = std::fs::remove_file(&local);
    let n = n.unwrap_or_else(|e| panic!("{who}: get_file: {e}"));
    assert_eq!(n, 9 * 1024 * 1024, "{who}: get_file length");
    assert!(
        back.unwrap() == whole.slice(4099..),
        "{who}: get_file must write the file's bytes"
    );
    assert_eq!(n0.unwrap(), 0, "{who}: get_file of an empty file");
    assert!(back0.unwrap().is_empty(), "{who}: get_file truncates");
    assert!(
        missing.as_ref().is_err_and(StorageError::is_not_found),
        "{who}: get_file of a missing file is NotFound: {missing:?}"
    );
}

async fn nested_and_mkdir(s: &dyn Storage, who: &str) {
    s.mkdir("locks").await.unwrap();
    s.mkdir("locks")
        .await
        .unwrap_or_else(|e| panic!("{who}: mkdir of an existing dir must succeed: {e}"));
    s.put("locks/2_3_abc.json", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    let root = s.list("").await.unwrap();
    let files: Vec<_> = root.iter().filter(|e| !e.is_dir).cloned().collect();
    assert!(
        !names(&files).iter().any(|n| n.contains('/')),
        "{who}: root listing must not descend: {:?}",
        names(&root)
    );
    assert!(
        names(&files).contains(&"a.md".to_string()),
        "{who}: root lists a.md: {:?}",
        names(&root)
    );
    let res = s.list(".resource").await.unwrap();
    assert_eq!(
        names(&res),
        vec![".resource/big".to_string()],
        "{who}: list .resource"
    );
    let locks = s.list("locks").await.unwrap();
    assert_eq!(names(&locks), vec!["locks/2_3_abc.json".to_string()]);
    assert_eq!(locks[0].name(), "2_3_abc.json");
}

async fn odd_names(s: &dyn Storage, who: &str) {
    for name in [
        "with space.md",
        "ünïcödé 日本.md",
        "percent%20sign.md",
        "plus+amp&.md",
    ] {
        s.put(name, Bytes::from(name.as_bytes().to_vec()))
            .await
            .unwrap_or_else(|e| panic!("{who}: put {name:?}: {e}"));
        assert_eq!(
            &s.get(name).await.unwrap()[..],
            name.as_bytes(),
            "{who}: get {name:?}"
        );
    }
    let listed = names(&s.list("").await.unwrap());
    for name in ["with space.md", "ünïcödé 日本.md", "percent%20sign.md"] {
        assert!(
            listed.contains(&name.to_string()),
            "{who}: listing must decode {name:?}; got {listed:?}"
        );
    }
}

async fn missing_things(s: &dyn Storage, who: &str) {
    match s.get("nope.md").await {
        Err(StorageError::NotFound { .. }) => {}
        other => panic!("{who}: get of a missing file must be NotFound, got {other:?}"),
    }
    s.delete("nope.md")
        .await
        .unwrap_or_else(|e| panic!("{who}: deleting a missing file must succeed: {e}"));
    assert!(
        s.stat("nope.md").await.unwrap().is_none(),
        "{who}: stat missing"
    );
    let listed = s
        .list("no-such-dir")
        .await
        .unwrap_or_else(|e| panic!("{who}: listing a missing dir must be empty: {e}"));
    assert!(listed.is_empty(), "{who}: missing dir lists empty");
}

async fn stat_and_list_sizes(s: &dyn Storage, who: &str) {
    let sizes = s.capabilities().listing_sizes;
    let st = s
        .stat("a.md")
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{who}: stat a.md"));
    if sizes {
        assert_eq!(st.size, 1, "{who}: stat size");
    }
    assert!(!st.is_dir);
    assert!(st.modified.is_some(), "{who}: stat must report a time");
    let root = s.list("").await.unwrap();
    // The streamed listing hands over the same entries.
    let mut each: Vec<Entry> = Vec::new();
    s.list_each("", &crate::Unpaced, &mut each)
        .await
        .unwrap_or_else(|e| panic!("{who}: list_each root: {e}"));
    let sorted = |v: &[Entry]| {
        let mut v = v.to_vec();
        v.sort_by(|a, b| a.path.cmp(&b.path));
        v
    };
    assert_eq!(
        sorted(&each),
        sorted(&root),
        "{who}: list_each differs from list"
    );
    let a = root.iter().find(|e| e.path == "a.md").unwrap();
    if sizes {
        assert_eq!(a.size, 1, "{who}: listing size");
    }
    assert!(a.modified.is_some(), "{who}: listing must report a time");
    let big = s.stat(".resource/big").await.unwrap().unwrap();
    if sizes {
        assert_eq!(big.size, 9 * 1024 * 1024);
    }
}

async fn bulk_calls(s: &dyn Storage, who: &str) {
    let files: Vec<(String, Bytes)> = (0..25)
        .map(|i| (format!("bulk{i:02}.md"), Bytes::from(format!("item {i}"))))
        .collect();
    let failed = s.put_many(files.clone()).await;
    assert!(failed.is_empty(), "{who}: put_many failed: {failed:?}");
    for (p, d) in &files {
        assert_eq!(
            &s.get(p).await.unwrap(),
            d,
            "{who}: put_many content of {p}"
        );
    }
    let paths: Vec<String> = files.iter().map(|(p, _)| p.clone()).collect();
    let failed = s.delete_many(&paths).await;
    assert!(failed.is_empty(), "{who}: delete_many failed: {failed:?}");
    let left: Vec<String> = names(&s.list("").await.unwrap())
        .into_iter()
        .filter(|n| n.starts_with("bulk"))
        .collect();
    assert!(left.is_empty(), "{who}: delete_many left {left:?}");
}

async fn cleanup(s: &dyn Storage, who: &str) {
    let mut all = Vec::new();
    for dir in ["", ".resource", "locks"] {
        for e in s.list(dir).await.unwrap() {
            if !e.is_dir {
                all.push(e.path);
            }
        }
    }
    let failed = s.delete_many(&all).await;
    assert!(failed.is_empty(), "{who}: cleanup: {failed:?}");
    let left: Vec<_> = s
        .list("")
        .await
        .unwrap()
        .into_iter()
        .filter(|e| !e.is_dir)
        .collect();
    assert!(
        left.is_empty(),
        "{who}: files left after delete: {:?}",
        names(&left)
    );
}
