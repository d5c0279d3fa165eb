//! The one small async trait every sync-target backend implements.
//!
//! Backends know nothing about Joplin items: they move named byte blobs. Paths are relative to
//! the target's root and use `/` (`info.json`, `abc.md`, `.resource/abc`, `locks/2_3_x.json`).
//! Cross-cutting behaviour (throttling, retries) lives in wrappers that implement the same trait
//! ([`pacer::Paced`]), in the spirit of Arrow's `object_store`.

use std::fmt;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;

pub mod body;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod pacer;

pub use body::{stalled_upload, unless_idle, FileSlice, Pace, Progress};

/// How long an HTTP request may go without progress (no answer, no bytes of one, no chunk of
/// an upload taken) before it fails and is retried: rclone's `--timeout` default.
/// How the user gives this target's credentials, for error messages: a migration's source
/// takes them from other options than its destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialHints {
    /// The user name option, e.g. "--username or JOPLIN_RESTORE_USERNAME".
    pub username: String,
    /// Where the password comes from, e.g. "JOPLIN_RESTORE_PASSWORD, --password-file or the
    /// prompt".
    pub password: String,
}

impl Default for CredentialHints {
    fn default() -> Self {
        CredentialHints {
            username: "--username or JOPLIN_RESTORE_USERNAME".into(),
            password: "JOPLIN_RESTORE_PASSWORD, --password-file or the prompt".into(),
        }
    }
}

pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// One file or directory as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Full path relative to the target root, without a trailing slash.
    pub path: String,
    pub size: u64,
    /// What the server reports as the modification time; Joplin's delta relies on it.
    pub modified: Option<SystemTime>,
    pub is_dir: bool,
}

impl Entry {
    /// The last path component.
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// A lock held in a backend's lock service (Joplin Server's `/api/locks`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLock {
    /// What [`Storage::remove_server_lock`] takes (`<type>_<clientType>_<clientId>`).
    pub key: String,
    /// 1 = sync lock, 2 = exclusive lock (Joplin's `LockType`).
    pub kind: u32,
    /// Joplin's `LockClientType`: 1 desktop, 2 mobile, 3 CLI.
    pub client_type: u32,
    pub client_id: String,
    /// Last refresh, in ms since the epoch (server clock).
    pub updated_ms: i64,
}

/// Error classes, not error sources: the pacer decides retries from the class alone
/// (rclone's `shouldRetry` split), the CLI turns each class into advice.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{path}: not found")]
    NotFound { path: String },
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("rate limited by the server: {message}")]
    RateLimited {
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("temporary failure: {message}")]
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("the target is out of space: {0} (free space or raise the quota, then rerun: finished uploads are skipped)")]
    InsufficientStorage(String),
    #[error("{path}: too large for the server: {message}")]
    TooLarge { path: String, message: String },
    #[error("{0}")]
    Rejected(String),
    #[error("{0}")]
    Config(String),
}

impl StorageError {
    pub fn not_found(path: impl Into<String>) -> Self {
        StorageError::NotFound { path: path.into() }
    }
    pub fn transient(message: impl fmt::Display) -> Self {
        StorageError::Transient {
            message: message.to_string(),
            retry_after: None,
        }
    }
    /// Whether trying the same request again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StorageError::RateLimited { .. } | StorageError::Transient { .. }
        )
    }
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            StorageError::RateLimited { retry_after, .. }
            | StorageError::Transient { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound { .. })
    }

    /// Classify an HTTP status the way every HTTP backend should.
    pub fn from_http(status: u16, path: &str, detail: &str, retry_after: Option<Duration>) -> Self {
        let message = match (detail.is_empty(), status) {
            // The backend said nothing of what to check: say it here, once.
            (true, 401 | 403) => format!(
                "{path}: HTTP {status}: check the username and password (or keys) for this target"
            ),
            (true, _) => format!("{path}: HTTP {status}"),
            (false, _) => format!("{path}: HTTP {status}: {detail}"),
        };
        match status {
            401 | 403 => StorageError::Auth(message),
            404 => StorageError::not_found(path),
            413 => StorageError::TooLarge {
                path: path.to_string(),
                message,
            },
            429 => StorageError::RateLimited {
                message,
                retry_after,
            },
            507 => StorageError::InsufficientStorage(message),
            408 | 500 | 502 | 503 | 504 => StorageError::Transient {
                message,
                retry_after,
            },
            _ => StorageError::Rejected(message),
        }
    }
}

/// Parse an HTTP `Retry-After` value: delta-seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// A failure writing a download to a local file: not retryable (disk full, permissions).
pub fn local_write_error(path: &str, dest: &std::path::Path, e: std::io::Error) -> StorageError {
    StorageError::Config(format!(
        "{path}: cannot write {}: {e} (disk full? free space or choose another folder)",
        dest.display()
    ))
}

/// A download being written to a local file chunk by chunk (for [`Storage::get_file`]); every
/// local failure is a [`local_write_error`].
pub struct Download<'a> {
    out: tokio::fs::File,
    path: &'a str,
    dest: &'a std::path::Path,
    written: u64,
}

impl<'a> Download<'a> {
    pub async fn create(path: &'a str, dest: &'a std::path::Path) -> Result<Download<'a>> {
        let out = tokio::fs::File::create(dest)
            .await
            .map_err(|e| local_write_error(path, dest, e))?;
        Ok(Download {
            out,
            path,
            dest,
            written: 0,
        })
    }

    pub async fn write(&mut self, chunk: &[u8]) -> Result<()> {
        tokio::io::AsyncWriteExt::write_all(&mut self.out, chunk)
            .await
            .map_err(|e| local_write_error(self.path, self.dest, e))?;
        self.written += chunk.len() as u64;
        Ok(())
    }

    /// Flush; returns the bytes written.
    pub async fn finish(mut self) -> Result<u64> {
        tokio::io::AsyncWriteExt::flush(&mut self.out)
            .await
            .map_err(|e| local_write_error(self.path, self.dest, e))?;
        Ok(self.written)
    }
}

/// What a backend is good at, so callers can pick sensible defaults.
#[derive(Debug, Clone, Copy)]
pub struct Capabilities {
    /// Parallel requests that suit this kind of server (`--transfers` default).
    pub default_transfers: usize,
    /// Whether `put_many` is a real batch call (Joplin Server) rather than a loop.
    pub batch_put: bool,
    /// Whether a listing's `modified` has only 1-second resolution.
    pub coarse_mtime: bool,
    /// Whether `list`/`stat` report real sizes. Joplin Server's listing has no size (0 is
    /// reported), so callers must not compare sizes to decide whether content changed.
    pub listing_sizes: bool,
    /// Whether `delete_many` is a real bulk call (S3 DeleteObjects) rather than one request
    /// per file; the pacer then paces the call, not each file.
    pub bulk_delete: bool,
    /// Whether clients learn of changes from the server's change feed (Joplin Server's
    /// `delta`) rather than by comparing a listing with what they synced. There a name deleted
    /// and written again is a new item after a deletion: a client that reads both in one sync
    /// drops it (it "updates" the copy it just deleted, and deletes notebooks last), and no
    /// fail-safe stops a client from deleting what the target lost.
    pub change_feed: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            default_transfers: 8,
            batch_put: false,
            coarse_mtime: false,
            listing_sizes: true,
            bulk_delete: false,
            change_feed: false,
        }
    }
}

/// Paces the extra requests of one call that sends several (the pages of a listing fetched
/// side by side): the pacer admitted the call itself as one request, and each further request
/// waits here for the request-rate limit and is counted, so `--tpslimit` and `--transfers`
/// hold inside the call too.
#[async_trait]
pub trait ExtraRequests: Send + Sync {
    /// Wait until one more request may go, and count it.
    async fn admit(&self);
    /// How many of them may be in flight at once.
    fn at_once(&self) -> usize;
}

/// Where [`Storage::list_each`] hands a listing's entries, as they come.
pub trait ListSink: Send {
    fn add(&mut self, entry: Entry);
    /// The listing starts over (the pacer retries one that failed part way): forget what was
    /// added so far.
    fn restart(&mut self);
}

impl ListSink for Vec<Entry> {
    fn add(&mut self, entry: Entry) {
        self.push(entry);
    }
    fn restart(&mut self) {
        self.clear();
    }
}

/// [`Storage::list`] of a backend whose [`Storage::list_each`] streams: all it hands over.
pub async fn list_through_each<S: Storage + ?Sized>(s: &S, dir: &str) -> Result<Vec<Entry>> {
    let mut all = Vec::new();
    s.list_each(dir, &Unpaced, &mut all).await?;
    Ok(all)
}

/// No limits: a backend called directly, without a pacer.
pub struct Unpaced;

#[async_trait]
impl ExtraRequests for Unpaced {
    async fn admit(&self) {}
    fn at_once(&self) -> usize {
        usize::MAX
    }
}

/// A sync target's storage. Implementations must be safe to call concurrently.
#[async_trait]
pub trait Storage: Send + Sync + fmt::Debug {
    /// Human-readable location with no secrets, e.g. `webdav https://host/dav/Joplin`.
    fn describe(&self) -> String;

    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// Make sure the target's root exists (create the folder / collection when missing).
    async fn ensure_root(&self) -> Result<()>;

    /// Files and directories directly inside `dir` (`""` is the root). A missing `dir` lists as
    /// empty. Order is unspecified.
    async fn list(&self, dir: &str) -> Result<Vec<Entry>>;

    /// [`Storage::list`], handing each entry to `sink` as it comes instead of returning them
    /// all, so the listing of a large target never sits in memory whole next to what the
    /// caller makes of it; every request after the first is admitted by `extra` (the pacer
    /// calls this one). Backends that read a listing in pieces override it (and `list`
    /// collects it: [`list_through_each`]); the default hands over what [`Storage::list`]
    /// returns.
    async fn list_each(
        &self,
        dir: &str,
        extra: &dyn ExtraRequests,
        sink: &mut dyn ListSink,
    ) -> Result<()> {
        let _ = extra;
        for e in self.list(dir).await? {
            sink.add(e);
        }
        Ok(())
    }

    /// The whole content of a file; [`StorageError::NotFound`] when missing.
    async fn get(&self, path: &str) -> Result<Bytes>;

    /// Download a file into the local file `dest` (created or truncated); returns its length.
    /// Backends that can stream override it so a large blob never sits in memory whole.
    async fn get_file(&self, path: &str, dest: &std::path::Path) -> Result<u64> {
        let data = self.get(path).await?;
        tokio::fs::write(dest, &data)
            .await
            .map_err(|e| local_write_error(path, dest, e))?;
        Ok(data.len() as u64)
    }

    /// Create or replace a file. Parent directories must exist (see [`Storage::mkdir`]).
    async fn put(&self, path: &str, data: Bytes) -> Result<()>;

    /// Create or replace a file with the bytes of a local file slice. Backends that can stream
    /// override it so a large blob never sits in memory whole; the default reads the slice and
    /// calls [`Storage::put`]. Called again on retry: implementations open the slice each time.
    async fn put_file(&self, path: &str, src: &FileSlice) -> Result<()> {
        let data = src.read_all().await.map_err(|e| src.error(path, e))?;
        self.put(path, data).await
    }

    /// Remove a file. Removing a missing file is not an error.
    async fn delete(&self, path: &str) -> Result<()>;

    /// Create a directory (one level). An existing directory is not an error. Backends without
    /// directories (S3) do nothing.
    async fn mkdir(&self, path: &str) -> Result<()>;

    /// Size and time of one file, `None` when missing.
    async fn stat(&self, path: &str) -> Result<Option<Entry>>;

    /// Remove several files; returns the ones that failed. Here one DELETE per file, as many
    /// side by side as suit the server (`default_transfers`); backends with a bulk call
    /// override it and say so in [`Capabilities::bulk_delete`].
    async fn delete_many(&self, paths: &[String]) -> Vec<(String, StorageError)> {
        delete_each(self, paths, self.capabilities().default_transfers).await
    }

    /// Take or refresh the target's own exclusive sync lock for `client_id` (Joplin Server's
    /// `/api/locks`). `Ok(false)`: the backend has no lock service, so callers use Joplin's
    /// lock files instead. A lock held by another client is an error saying who holds it.
    async fn acquire_server_lock(&self, client_id: &str) -> Result<bool> {
        let _ = client_id;
        Ok(false)
    }

    /// Release a lock taken with [`Storage::acquire_server_lock`].
    async fn release_server_lock(&self, client_id: &str) -> Result<()> {
        let _ = client_id;
        Ok(())
    }

    /// Every lock in the backend's own lock service; `None` when it has none (lock files are
    /// then listed like any file).
    async fn server_locks(&self) -> Result<Option<Vec<ServerLock>>> {
        Ok(None)
    }

    /// Remove one lock listed by [`Storage::server_locks`] (by its `key`).
    async fn remove_server_lock(&self, key: &str) -> Result<()> {
        Err(StorageError::Rejected(format!(
            "{}: no lock service to remove {key} from",
            self.describe()
        )))
    }

    /// Write several small files; returns the ones that failed. Backends with a batch call
    /// (Joplin Server) override it.
    async fn put_many(&self, files: Vec<(String, Bytes)>) -> Vec<(String, StorageError)> {
        let mut failed = Vec::new();
        for (p, data) in files {
            if let Err(e) = self.put(&p, data).await {
                failed.push((p, e));
            }
        }
        failed
    }

    /// Write `make()`'s bytes to `path`, made only as the request goes out (the pacer calls
    /// it once a request may start, and again for a retry): for content that carries the
    /// moment it is written, such as an item's restore stamp. `size` (about the bytes `make`
    /// returns) counts against `--bwlimit` before they are made.
    async fn put_made(&self, path: &str, size: u64, make: &MakeBody<'_>) -> Result<()> {
        let _ = size;
        self.put(path, make(path)?).await
    }

    /// [`Storage::put_many`] of bodies made as the request goes out (see
    /// [`Storage::put_made`]); `files` are paths with about the size of each body.
    async fn put_many_made(
        &self,
        files: Vec<(String, u64)>,
        make: &MakeBody<'_>,
    ) -> Vec<(String, StorageError)> {
        let (made, mut failed) = make_bodies(&files, make);
        failed.extend(self.put_many(made).await);
        failed
    }
}

/// Makes the body of a file from its path, as the request that writes it goes out.
pub type MakeBody<'a> = dyn Fn(&str) -> Result<Bytes> + Send + Sync + 'a;

/// Files to write, each with its body.
pub type Bodies = Vec<(String, Bytes)>;

/// The bodies `make` gives for `files` (paths with about their sizes), and the paths it
/// failed for.
pub fn make_bodies(
    files: &[(String, u64)],
    make: &MakeBody<'_>,
) -> (Bodies, Vec<(String, StorageError)>) {
    let mut made = Vec::with_capacity(files.len());
    let mut failed = Vec::new();
    for (p, _) in files {
        match make(p) {
            Ok(data) => made.push((p.clone(), data)),
            Err(e) => failed.push((p.clone(), e)),
        }
    }
    (made, failed)
}

/// `storage.delete(p)` for every path, `in_flight` at a time; the paths that failed.
pub async fn delete_each<S: Storage + ?Sized>(
    storage: &S,
    paths: &[String],
    in_flight: usize,
) -> Vec<(String, StorageError)> {
    use futures::StreamExt;
    let failed: Vec<Option<(String, StorageError)>> = futures::stream::iter(paths.iter().cloned())
        .map(|p| async move {
            let r = storage.delete(&p).await;
            r.err().map(|e| (p, e))
        })
        .buffer_unordered(in_flight.max(1))
        .collect()
        .await;
    failed.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_date() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        let later = SystemTime::now() + Duration::from_secs(120);
        let d = parse_retry_after(&httpdate::fmt_http_date(later)).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn http_status_classes() {
        assert!(matches!(
            StorageError::from_http(401, "a", "", None),
            StorageError::Auth(_)
        ));
        // The advice is said once: by the backend's detail when it gives one, else here.
        let bare = StorageError::from_http(401, "a", "", None).to_string();
        assert_eq!(bare.matches("check").count(), 1, "{bare}");
        let told = StorageError::from_http(401, "a", "pass --username", None).to_string();
        assert_eq!(told, "authentication failed: a: HTTP 401: pass --username");
        assert!(StorageError::from_http(404, "a", "", None).is_not_found());
        assert!(StorageError::from_http(429, "a", "", None).is_retryable());
        assert!(StorageError::from_http(503, "a", "", None).is_retryable());
        assert!(!StorageError::from_http(507, "a", "", None).is_retryable());
        assert!(!StorageError::from_http(400, "a", "", None).is_retryable());
        assert_eq!(
            StorageError::from_http(429, "a", "", Some(Duration::from_secs(3))).retry_after(),
            Some(Duration::from_secs(3))
        );
    }
}
