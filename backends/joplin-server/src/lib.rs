//! Joplin Server sync target (Joplin `sync.target 9`) over its HTTP API.
//!
//! What the live server does, and why this backend does what it does, is in
//! `shared/spec/joplin-server-api.md`. In short:
//! - log in once (`POST /api/sessions`; the server allows 10 logins per minute per IP), reuse
//!   the token in `X-API-AUTH`, log in again once when a request gets 403;
//! - the base URL is used exactly as given: the server compares the `Host` header with its
//!   `APP_BASE_URL` and answers 404 "Invalid origin" otherwise;
//! - single uploads are `PUT /api/items/root:/<name>:/content` with
//!   `Content-Type: application/octet-stream` — a JSON content type is accepted and stores an
//!   EMPTY item;
//! - `<id>.md` items go in batches through `PUT /api/batch_items`, each batch under 1 MB counted
//!   in UTF-16 units (JS string length) including names; per-item errors are read back;
//! - items are parsed by the server: no trailing newline, `updated_time` and `type_` present, and
//!   a `share_id` the server does not know is refused (422), so it is blanked and sent again;
//! - listings are paginated by offset (100 per page, the maximum): pages are asked for by
//!   number in name order, several at a time;
//! - locks are the server's own (`/api/locks`), not lock files.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use backend_core::{
    parse_retry_after, Capabilities, Entry, ExtraRequests, ListSink, Result, Storage, StorageError,
};
use bytes::Bytes;
use futures::{stream, StreamExt};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Value};
use tokio::sync::{Mutex, RwLock};

/// Oldest server API we speak (what Joplin's own client sends).
pub const MIN_VERSION: &str = "2.6.0";
/// The server refuses batches over 1,048,576 UTF-16 units; keep a margin for the JSON around.
pub const BATCH_LIMIT_UNITS: usize = 1_000_000;
/// Listing page size: the server's maximum (`limit=101` → 400).
pub const PAGE_LIMIT: usize = 100;
/// Upper bound on listing pages followed in one `list` (10 million names).
const MAX_PAGES: usize = 100_000;
/// Listing pages requested side by side (as many as the transfers of a raw keep-alive client).
const LISTING_PAGES_IN_FLIGHT: usize = 8;
/// Joplin lock types and client types (`LockType.Exclusive`, `LockClientType.Cli`).
const LOCK_EXCLUSIVE: u32 = 2;
const CLIENT_CLI: u32 = 3;

/// Characters percent-encoded in a name inside `root:/<name>:`; `/` stays (names are paths).
const NAME_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// A password that never shows in `Debug` output.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn new(s: impl Into<String>) -> Self {
        Password(s.into())
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<hidden>")
    }
}

#[derive(Debug, Clone)]
pub struct JoplinServerConfig {
    /// `http(s)://host:port[/prefix]`, exactly as the server's APP_BASE_URL.
    pub base_url: String,
    /// The account's email.
    pub username: String,
    pub password: Password,
    /// How long a request may go without progress (rclone's `--timeout`): no answer, no bytes
    /// of one, no chunk of an upload taken.
    pub timeout: Duration,
}

#[derive(Debug)]
pub struct JoplinServer {
    base: String,
    username: String,
    password: Password,
    client: reqwest::Client,
    /// The same server with no read timeout: uploads of files, which run as long as their size
    /// takes and are timed out by idleness instead (reqwest's read timeout runs from the start
    /// of a request until its answer).
    uploads: reqwest::Client,
    timeout: Duration,
    token: RwLock<Option<String>>,
    /// Held while logging in, so parallel requests do not log in several times (and hit the
    /// server's 10-per-minute login limit).
    login: Mutex<()>,
    /// How the user gives the credentials, for login advice.
    credentials: backend_core::CredentialHints,
}

/// `<32 alphanumerics>.md`: what the server parses as a Joplin item.
pub fn is_item_name(name: &str) -> bool {
    name.len() == 35
        && name.ends_with(".md")
        && name[..32].bytes().all(|b| b.is_ascii_alphanumeric())
}

fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

/// The pages of a listing read one after another: a write between two page requests can
/// shift a name from the end of one page onto the start of the next, and that twin is dropped.
/// Compared with the page before, not by sort order: the server's order (case-insensitive on a
/// real Joplin Server) need not be Rust's byte order.
#[derive(Default)]
struct PageTwins {
    previous: std::collections::HashSet<String>,
}

impl PageTwins {
    /// The entries of `page` not already handed over with the page before it.
    fn fresh(&mut self, page: Vec<(String, i64)>) -> Vec<(String, i64)> {
        let names = page.iter().map(|(n, _)| n.clone()).collect();
        let previous = std::mem::replace(&mut self.previous, names);
        page.into_iter()
            .filter(|(n, _)| !previous.contains(n))
            .collect()
    }
}

fn ms_to_time(ms: i64) -> Option<SystemTime> {
    (ms > 0).then(|| UNIX_EPOCH + Duration::from_millis(ms as u64))
}

/// The error message inside a server answer: JSON `{"error": ...}` or the raw text.
fn server_message(text: &str) -> String {
    let msg = serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| text.trim().to_string());
    let mut m: String = msg.chars().take(300).collect();
    if m.len() < msg.len() {
        m.push('…');
    }
    m
}

/// Item validation failures come back as HTTP 500 but will never succeed on a retry.
fn is_item_validation(msg: &str) -> bool {
    msg.contains("Missing required property")
        || msg.contains("Invalid property format")
        || msg.contains("NOT NULL constraint failed")
        || msg.contains("Unsupported item type")
}

impl JoplinServer {
    pub fn new(cfg: JoplinServerConfig) -> Result<Self> {
        let base = cfg.base_url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(StorageError::Config(format!(
                "{base}: a Joplin Server URL must start with http:// or https://"
            )));
        }
        if cfg.username.is_empty() {
            return Err(StorageError::Config(
                "Joplin Server needs the account's email: pass --username or set JOPLIN_RESTORE_USERNAME".into(),
            ));
        }
        // ring: no cmake/NASM needed to build, unlike aws-lc-rs. Ignore "already installed".
        let _ = rustls::crypto::ring::default_provider().install_default();
        // A read timeout, not a total one: a large download on a slow link takes as long as
        // it takes while bytes keep coming.
        let client = |read_timeout: Option<Duration>| {
            let mut b = reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(30).min(cfg.timeout))
                .user_agent(concat!("joplin-restore/", env!("CARGO_PKG_VERSION")));
            if let Some(t) = read_timeout {
                b = b.read_timeout(t);
            }
            b.build()
                .map_err(|e| StorageError::Config(format!("HTTP client: {e}")))
        };
        let uploads = client(None)?;
        let client = client(Some(cfg.timeout))?;
        Ok(JoplinServer {
            base,
            username: cfg.username,
            password: cfg.password,
            client,
            uploads,
            timeout: cfg.timeout,
            token: RwLock::new(None),
            login: Mutex::new(()),
            credentials: backend_core::CredentialHints::default(),
        })
    }

    /// How the user gives this server's credentials (a migration's source: other options).
    pub fn with_credential_hints(mut self, hints: backend_core::CredentialHints) -> Self {
        self.credentials = hints;
        self
    }

    fn item_url(&self, name: &str, suffix: &str) -> String {
        format!(
            "{}/api/items/root:/{}:{suffix}",
            self.base,
            utf8_percent_encode(name, NAME_SET)
        )
    }

    /// Turn a failed answer into an error class, with advice the user can act on.
    fn classify(
        &self,
        status: u16,
        path: &str,
        text: &str,
        retry_after: Option<Duration>,
    ) -> StorageError {
        let msg = server_message(text);
        if status == 404 && text.starts_with("Invalid origin") {
            return StorageError::Config(format!(
                "{}: the server refused the address ({msg}). Joplin Server only answers on the exact \
                 host and port of its APP_BASE_URL: use that URL (e.g. localhost vs 127.0.0.1 matters).",
                self.base
            ));
        }
        match status {
            412 => StorageError::Config(format!(
                "{}: {msg} (this tool needs Joplin Server {MIN_VERSION} or later)",
                self.base
            )),
            409 => StorageError::Rejected(format!("{path}: the server rejected it: {msg}")),
            422 => StorageError::Rejected(format!("{path}: the server rejected the item: {msg}")),
            415 => StorageError::Rejected(format!("{path}: HTTP 415: {msg}")),
            500 if is_item_validation(&msg) => StorageError::Rejected(format!(
                "{path}: the server could not parse the item ({msg}); the item in the backup is damaged"
            )),
            _ => StorageError::from_http(status, path, &msg, retry_after),
        }
    }

    fn net_err(&self, path: &str, e: reqwest::Error) -> StorageError {
        if e.is_builder() {
            return StorageError::Config(format!("{}: {e}", self.base));
        }
        if e.is_timeout() && !e.is_connect() {
            return StorageError::transient(format!(
                "{path}: Joplin Server at {} sent nothing for {} s (--timeout): it is down, \
                 overloaded or unreachable; a longer --timeout waits more",
                self.base,
                self.timeout.as_secs()
            ));
        }
        StorageError::transient(format!(
            "{path}: cannot reach Joplin Server at {} ({e})",
            self.base
        ))
    }

    /// `POST /api/sessions`; stores and returns the token.
    async fn log_in(&self) -> Result<String> {
        let url = format!("{}/api/sessions", self.base);
        let r = self
            .client
            .post(&url)
            .header("X-API-MIN-VERSION", MIN_VERSION)
            .json(&json!({"email": self.username, "password": self.password.0}))
            .send()
            .await
            .map_err(|e| self.net_err("login", e))?;
        let status = r.status().as_u16();
        let retry_after = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let text = r.text().await.unwrap_or_default();
        match status {
            200 => {
                let v: Value = serde_json::from_str(&text).map_err(|_| {
                    StorageError::transient(format!(
                        "login: unexpected answer: {}",
                        server_message(&text)
                    ))
                })?;
                let tok = v
                    .get("id")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| {
                        StorageError::transient("login: the answer holds no session id")
                    })?
                    .to_string();
                *self.token.write().await = Some(tok.clone());
                Ok(tok)
            }
            403 => Err(StorageError::Auth(format!(
                "Joplin Server at {} refused the login for {:?}: {}. Check the email ({}) and the \
                 password ({})",
                self.base,
                self.username,
                server_message(&text),
                self.credentials.username,
                self.credentials.password
            ))),
            429 => Err(StorageError::RateLimited {
                message: format!(
                    "Joplin Server at {} allows only a few logins per minute: {}",
                    self.base,
                    server_message(&text)
                ),
                retry_after,
            }),
            _ => Err(self.classify(status, "login", &text, retry_after)),
        }
    }

    /// The current token, logging in when there is none. `stale`: a token the server refused;
    /// log in again unless another request already did.
    async fn token(&self, stale: Option<&str>) -> Result<String> {
        if let Some(t) = self.token.read().await.clone() {
            if Some(t.as_str()) != stale {
                return Ok(t);
            }
        }
        let _guard = self.login.lock().await;
        if let Some(t) = self.token.read().await.clone() {
            if Some(t.as_str()) != stale {
                return Ok(t);
            }
        }
        self.log_in().await
    }

    /// Send one authenticated request; on 403 log in again once and resend.
    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<(&'static str, Payload)>,
        path: &str,
    ) -> Result<(u16, Option<Duration>, Bytes)> {
        let mut stale: Option<String> = None;
        for attempt in 0..2 {
            let token = self.token(stale.as_deref()).await?;
            let client = match &body {
                Some((_, Payload::File(_))) => &self.uploads,
                _ => &self.client,
            };
            let mut rb = client
                .request(method.clone(), url)
                .header("X-API-AUTH", &token)
                .header("X-API-MIN-VERSION", MIN_VERSION);
            let mut progress = None;
            match &body {
                Some((ctype, Payload::Bytes(data))) => {
                    rb = rb.header("Content-Type", *ctype).body(data.clone());
                }
                Some((ctype, Payload::File(src))) => {
                    // Opened again on each attempt: the body streams and cannot be cloned.
                    let file = src.body().await.map_err(|e| src.error(path, e))?;
                    progress = Some(file.progress());
                    rb = rb
                        .header("Content-Type", *ctype)
                        .header("Content-Length", src.len)
                        .body(reqwest::Body::wrap(file));
                }
                None => {}
            }
            let answer = async {
                let r = rb.send().await.map_err(|e| self.net_err(path, e))?;
                let status = r.status().as_u16();
                // Only a refusal's headers are read: no copy of every answer's.
                let retry_after = (!(200..300).contains(&status))
                    .then(|| r.headers().get("retry-after"))
                    .flatten()
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                let data = r.bytes().await.map_err(|e| self.net_err(path, e))?;
                Ok::<_, StorageError>((status, retry_after, data))
            };
            // An upload is timed out by idleness (no chunk taken, no answer), not its length.
            let (status, retry_after, data) = match &progress {
                None => answer.await?,
                Some(p) => backend_core::unless_idle(answer, p, self.timeout)
                    .await
                    .ok_or_else(|| backend_core::stalled_upload(path, self.timeout))??,
            };
            if status == 403 && attempt == 0 {
                tracing::debug!("{path}: 403, logging in again");
                stale = Some(token);
                continue;
            }
            return Ok((status, retry_after, data));
        }
        unreachable!("the loop returns on its second pass")
    }

    /// Send and require 200; other statuses become errors.
    async fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<(&'static str, Payload)>,
        path: &str,
    ) -> Result<Bytes> {
        let (status, retry_after, data) = self.send(method, url, body, path).await?;
        if (200..300).contains(&status) {
            return Ok(data);
        }
        Err(self.classify(status, path, &String::from_utf8_lossy(&data), retry_after))
    }

    /// Every name under `dir` (`""` = all) with its `updated_time`, handed to `each` page by
    /// page in name order. Pages are asked for by number, `LISTING_PAGES_IN_FLIGHT` side by
    /// side: the server's offset pages are independent requests, and a unique sort key keeps
    /// them from overlapping while nothing writes (the default `updated_time` order ties on
    /// items written in the same millisecond). A write between two page requests can shift a
    /// name onto the next page too: that twin is skipped ([`PageTwins`]). Callers finish the
    /// listing before deleting: deleting while paging shifts the pages under it and skips
    /// items.
    async fn each_name(
        &self,
        dir: &str,
        extra: &dyn ExtraRequests,
        mut each: impl FnMut(String, i64) + Send,
    ) -> Result<()> {
        let base = if dir.is_empty() {
            format!("{}/api/items/root:/:/children", self.base)
        } else {
            format!(
                "{}/api/items/root:/{}/*:/children",
                self.base,
                utf8_percent_encode(dir.trim_end_matches('/'), NAME_SET)
            )
        };
        let mut twins = PageTwins::default();
        let mut hand_over = |names: Vec<(String, i64)>| {
            for (name, t) in twins.fresh(names) {
                each(name, t);
            }
        };
        let (first, more) = self.listing_page(&base, dir, 1).await?;
        hand_over(first);
        if !more {
            return Ok(());
        }
        // Pages after the first go side by side, handed over in page order; the stream stops
        // at the first page that is not full (the pages asked for beyond it are dropped unsent
        // or unread).
        let base = base.as_str();
        let mut pages = stream::iter(2..=MAX_PAGES)
            .map(|n| async move {
                extra.admit().await;
                self.listing_page(base, dir, n).await
            })
            .buffered(LISTING_PAGES_IN_FLIGHT.min(extra.at_once()));
        while let Some(page) = pages.next().await {
            let (names, more) = page?;
            hand_over(names);
            if !more {
                return Ok(());
            }
        }
        Err(StorageError::Rejected(format!(
            "listing {dir:?}: more than {} pages; stopping",
            MAX_PAGES
        )))
    }

    /// One page of a listing (1-based) in name order: its names and `updated_time`s, and
    /// whether it was full (the server's `has_more`: a next page may hold more).
    async fn listing_page(
        &self,
        base: &str,
        dir: &str,
        page: usize,
    ) -> Result<(Vec<(String, i64)>, bool)> {
        let url = format!("{base}?limit={PAGE_LIMIT}&order_by=name&order_dir=asc&page={page}");
        let data = self
            .call(
                reqwest::Method::GET,
                &url,
                None,
                &format!("{dir}/ (listing page {page})"),
            )
            .await?;
        let v: Value = serde_json::from_slice(&data).map_err(|e| {
            StorageError::transient(format!("listing {dir:?}: unexpected answer ({e})"))
        })?;
        let items = v.get("items").and_then(Value::as_array);
        let names: Vec<(String, i64)> = items
            .into_iter()
            .flatten()
            .filter_map(|it| {
                let name = it.get("name").and_then(Value::as_str)?;
                let t = it.get("updated_time").and_then(Value::as_i64).unwrap_or(0);
                Some((name.to_string(), t))
            })
            .collect();
        let more = v.get("has_more").and_then(Value::as_bool).unwrap_or(false) && !names.is_empty();
        Ok((names, more))
    }

    /// A single upload, with the share retry (see [`blank_share`]).
    async fn put_one(&self, path: &str, data: Bytes) -> Result<()> {
        let data = prepare(path, data)?;
        let url = self.item_url(path, "/content");
        let r = self
            .call(
                reqwest::Method::PUT,
                &url,
                Some(("application/octet-stream", Payload::Bytes(data.clone()))),
                path,
            )
            .await;
        match r {
            Err(StorageError::Rejected(m)) if is_share_error(&m) && is_item_name(path) => {
                let Some(fixed) = blank_share(&data) else {
                    return Err(StorageError::Rejected(m));
                };
                tracing::warn!(
                    "{path}: its share does not exist on this server; restored unshared"
                );
                self.call(
                    reqwest::Method::PUT,
                    &url,
                    Some(("application/octet-stream", Payload::Bytes(fixed))),
                    path,
                )
                .await
                .map(|_| ())
            }
            other => other.map(|_| ()),
        }
    }

    /// One `PUT /api/batch_items`; per-item outcomes.
    async fn put_batch(&self, files: &[(String, String)]) -> Vec<(String, Result<()>)> {
        let items: Vec<Value> = files
            .iter()
            .map(|(n, b)| json!({"name": n, "body": b}))
            .collect();
        let body = Bytes::from(json!({ "items": items }).to_string());
        let url = format!("{}/api/batch_items", self.base);
        let what = format!("batch of {} items", files.len());
        let data = match self
            .call(
                reqwest::Method::PUT,
                &url,
                Some(("application/json", Payload::Bytes(body))),
                &what,
            )
            .await
        {
            Ok(d) => d,
            Err(e) => {
                // The whole batch failed the same way; report it for every item.
                return files
                    .iter()
                    .map(|(n, _)| (n.clone(), Err(same_error(&e, n))))
                    .collect();
            }
        };
        let v: Value = match serde_json::from_slice(&data) {
            Ok(v) => v,
            Err(e) => {
                let err = StorageError::transient(format!("batch upload: unexpected answer ({e})"));
                return files
                    .iter()
                    .map(|(n, _)| (n.clone(), Err(same_error(&err, n))))
                    .collect();
            }
        };
        files
            .iter()
            .map(|(n, _)| {
                let r = match v.pointer("/items").and_then(|i| i.get(n)) {
                    None => Err(StorageError::transient(format!(
                        "{n}: the server did not report this item in the batch answer"
                    ))),
                    Some(entry) => match entry.get("error").filter(|e| !e.is_null()) {
                        None => Ok(()),
                        Some(e) => {
                            let code =
                                e.get("httpCode").and_then(Value::as_u64).unwrap_or(500) as u16;
                            let msg = e
                                .get("message")
                                .and_then(Value::as_str)
                                .unwrap_or("unknown error");
                            Err(self.classify(code, n, &json!({"error": msg}).to_string(), None))
                        }
                    },
                };
                (n.clone(), r)
            })
            .collect()
    }
}

/// A copy of an error for another path (errors are not `Clone`).
fn same_error(e: &StorageError, path: &str) -> StorageError {
    match e {
        StorageError::NotFound { .. } => StorageError::not_found(path),
        StorageError::Auth(m) => StorageError::Auth(m.clone()),
        StorageError::RateLimited {
            message,
            retry_after,
        } => StorageError::RateLimited {
            message: message.clone(),
            retry_after: *retry_after,
        },
        StorageError::Transient {
            message,
            retry_after,
        } => StorageError::Transient {
            message: message.clone(),
            retry_after: *retry_after,
        },
        StorageError::InsufficientStorage(m) => StorageError::InsufficientStorage(m.clone()),
        StorageError::TooLarge { message, .. } => StorageError::TooLarge {
            path: path.to_string(),
            message: message.clone(),
        },
        StorageError::Rejected(m) => StorageError::Rejected(m.clone()),
        StorageError::Config(m) => StorageError::Config(m.clone()),
    }
}

fn is_share_error(msg: &str) -> bool {
    msg.contains("share not found")
}

/// Check an upload before it goes out. Items must end right after `type_: N` (a trailing
/// newline makes the server fail with "Missing required property: type_"); trailing line
/// breaks carry no content (Joplin trims every property line), so they are dropped.
/// A request body: bytes in memory, or a local file slice streamed (and reopened per attempt).
enum Payload {
    Bytes(Bytes),
    File(backend_core::FileSlice),
}

fn prepare(path: &str, data: Bytes) -> Result<Bytes> {
    if !is_item_name(path) {
        return Ok(data);
    }
    let trimmed_len = data
        .iter()
        .rposition(|b| *b != b'\n' && *b != b'\r')
        .map(|i| i + 1)
        .unwrap_or(0);
    let data = data.slice(..trimmed_len);
    let text = std::str::from_utf8(&data)
        .map_err(|_| StorageError::Rejected(format!("{path}: the item is not UTF-8 text")))?;
    let props = text.rsplit('\n').take_while(|l| !l.trim().is_empty());
    let mut has_type = false;
    let mut has_time = false;
    for l in props {
        let key = l.split(':').next().unwrap_or("").trim();
        let val = l.split_once(':').map(|x| x.1.trim()).unwrap_or("");
        has_type |= key == "type_" && !val.is_empty();
        has_time |= key == "updated_time" && !val.is_empty();
    }
    if !has_type || !has_time {
        return Err(StorageError::Rejected(format!(
            "{path}: the item has no {}; Joplin Server refuses it. The item in the backup is damaged.",
            if has_type { "updated_time" } else { "type_" }
        )));
    }
    Ok(data)
}

/// The item with `share_id` emptied and `is_shared` 0, or `None` if it has no share.
/// Restoring onto a server where that share does not exist is refused (422) otherwise.
fn blank_share(data: &[u8]) -> Option<Bytes> {
    let text = std::str::from_utf8(data).ok()?;
    let lines: Vec<&str> = text.split('\n').collect();
    let start = lines
        .iter()
        .rposition(|l| l.trim().is_empty())
        .map(|i| i + 1)
        .unwrap_or(0);
    let mut changed = false;
    let mut out: Vec<String> = lines[..start].iter().map(|s| s.to_string()).collect();
    for l in &lines[start..] {
        let key = l.split(':').next().unwrap_or("").trim();
        let val = l.split_once(':').map(|x| x.1.trim()).unwrap_or("");
        if key == "share_id" && !val.is_empty() {
            out.push("share_id: ".into());
            changed = true;
        } else if key == "is_shared" && val != "0" && !val.is_empty() {
            out.push("is_shared: 0".into());
            changed = true;
        } else {
            out.push(l.to_string());
        }
    }
    changed.then(|| Bytes::from(out.join("\n")))
}

#[async_trait]
impl Storage for JoplinServer {
    fn describe(&self) -> String {
        format!("Joplin Server {} (user {})", self.base, self.username)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // The server has no limiter on items (only on logins), and 30 parallel PUTs were
            // served fine (spec); 8, like the raw keep-alive client, halves a clear's DELETEs.
            default_transfers: 8,
            batch_put: true,
            coarse_mtime: false,
            listing_sizes: false,
            // No bulk delete: one DELETE per item.
            bulk_delete: false,
            change_feed: true,
        }
    }

    /// Nothing to create on a server; logs in so bad credentials show up before any work.
    async fn ensure_root(&self) -> Result<()> {
        self.token(None).await.map(|_| ())
    }

    async fn list(&self, dir: &str) -> Result<Vec<Entry>> {
        backend_core::list_through_each(self, dir).await
    }

    /// Entries are handed over as the pages come (a large account's listing is never held
    /// whole); the directories, which are only name prefixes here, at the end.
    async fn list_each(
        &self,
        dir: &str,
        extra: &dyn ExtraRequests,
        sink: &mut dyn ListSink,
    ) -> Result<()> {
        let dir = dir.trim_matches('/');
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let mut dirs = std::collections::BTreeSet::new();
        self.each_name(dir, extra, |name, t| {
            let Some(rest) = name.strip_prefix(&prefix) else {
                return;
            };
            // Directories do not exist on the server; show each name prefix once.
            if let Some((d, _)) = rest.split_once('/') {
                if !dirs.contains(d) {
                    dirs.insert(d.to_string());
                }
                return;
            }
            sink.add(Entry {
                path: name,
                size: 0,
                modified: ms_to_time(t),
                is_dir: false,
            });
        })
        .await?;
        for d in dirs {
            sink.add(Entry {
                path: format!("{prefix}{d}"),
                size: 0,
                modified: None,
                is_dir: true,
            });
        }
        Ok(())
    }

    async fn get(&self, path: &str) -> Result<Bytes> {
        self.call(
            reqwest::Method::GET,
            &self.item_url(path, "/content"),
            None,
            path,
        )
        .await
    }

    /// Streams the content to the file chunk by chunk (same login retry as every request).
    async fn get_file(&self, path: &str, dest: &std::path::Path) -> Result<u64> {
        let url = self.item_url(path, "/content");
        let mut stale: Option<String> = None;
        for attempt in 0..2 {
            let token = self.token(stale.as_deref()).await?;
            let mut r = self
                .client
                .get(&url)
                .header("X-API-AUTH", &token)
                .header("X-API-MIN-VERSION", MIN_VERSION)
                .send()
                .await
                .map_err(|e| self.net_err(path, e))?;
            let status = r.status().as_u16();
            if status == 403 && attempt == 0 {
                tracing::debug!("{path}: 403, logging in again");
                stale = Some(token);
                continue;
            }
            if !(200..300).contains(&status) {
                let retry_after = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                let data = r.bytes().await.map_err(|e| self.net_err(path, e))?;
                return Err(self.classify(
                    status,
                    path,
                    &String::from_utf8_lossy(&data),
                    retry_after,
                ));
            }
            let mut out = backend_core::Download::create(path, dest).await?;
            while let Some(chunk) = r.chunk().await.map_err(|e| self.net_err(path, e))? {
                out.write(&chunk).await?;
            }
            return out.finish().await;
        }
        unreachable!("the loop returns on its second pass")
    }

    async fn put(&self, path: &str, data: Bytes) -> Result<()> {
        self.put_one(path, data).await
    }

    /// Blobs stream from the file; items (small, possibly rewritten by [`prepare`]) are read.
    async fn put_file(&self, path: &str, src: &backend_core::FileSlice) -> Result<()> {
        if is_item_name(path) {
            let data = src.read_all().await.map_err(|e| src.error(path, e))?;
            return self.put_one(path, data).await;
        }
        self.call(
            reqwest::Method::PUT,
            &self.item_url(path, "/content"),
            Some(("application/octet-stream", Payload::File(src.clone()))),
            path,
        )
        .await
        .map(|_| ())
    }

    async fn delete(&self, path: &str) -> Result<()> {
        match self
            .call(
                reqwest::Method::DELETE,
                &self.item_url(path, ""),
                None,
                path,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Directories are name prefixes on Joplin Server: nothing to create.
    async fn mkdir(&self, _path: &str) -> Result<()> {
        Ok(())
    }

    async fn stat(&self, path: &str) -> Result<Option<Entry>> {
        match self
            .call(reqwest::Method::GET, &self.item_url(path, ""), None, path)
            .await
        {
            Ok(data) => {
                let v: Value = serde_json::from_slice(&data).unwrap_or(Value::Null);
                let t = v.get("updated_time").and_then(Value::as_i64).unwrap_or(0);
                Ok(Some(Entry {
                    path: path.to_string(),
                    size: 0,
                    modified: ms_to_time(t),
                    is_dir: false,
                }))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Items through `PUT /api/batch_items` in batches under the 1 MB limit; anything that is
    /// not a UTF-8 text, or too big for a batch on its own, goes through a single PUT.
    async fn put_many(&self, files: Vec<(String, Bytes)>) -> Vec<(String, StorageError)> {
        let mut failed = Vec::new();
        let mut singles = Vec::new();
        let mut batches: Vec<Vec<(String, String)>> = vec![];
        let mut current: Vec<(String, String)> = vec![];
        let mut units = 0usize;
        for (path, data) in files {
            let data = match prepare(&path, data) {
                Ok(d) => d,
                Err(e) => {
                    failed.push((path, e));
                    continue;
                }
            };
            let Ok(text) = String::from_utf8(data.to_vec()) else {
                singles.push((path, data));
                continue;
            };
            let n = utf16_len(&path) + utf16_len(&text);
            if n > BATCH_LIMIT_UNITS {
                singles.push((path, data));
                continue;
            }
            if units + n > BATCH_LIMIT_UNITS && !current.is_empty() {
                batches.push(std::mem::take(&mut current));
                units = 0;
            }
            units += n;
            current.push((path, text));
        }
        if !current.is_empty() {
            batches.push(current);
        }
        for batch in batches {
            let results = self.put_batch(&batch).await;
            for ((path, r), (_, body)) in results.into_iter().zip(batch.iter()) {
                match r {
                    Ok(()) => {}
                    // Unknown share: blank it and send this one item again on its own.
                    Err(StorageError::Rejected(m)) if is_share_error(&m) => {
                        if let Err(e) = self.put_one(&path, Bytes::from(body.clone())).await {
                            failed.push((path, e));
                        }
                    }
                    // The batch as a whole was too big for the server: try the items singly.
                    Err(StorageError::TooLarge { message, .. })
                        if message.contains("Size of items") =>
                    {
                        if let Err(e) = self.put_one(&path, Bytes::from(body.clone())).await {
                            failed.push((path, e));
                        }
                    }
                    Err(e) => failed.push((path, e)),
                }
            }
        }
        for (path, data) in singles {
            if let Err(e) = self.put_one(&path, data).await {
                failed.push((path, e));
            }
        }
        failed
    }

    async fn acquire_server_lock(&self, client_id: &str) -> Result<bool> {
        let url = format!("{}/api/locks", self.base);
        let body = json!({"type": LOCK_EXCLUSIVE, "clientType": CLIENT_CLI, "clientId": client_id});
        match self
            .call(
                reqwest::Method::POST,
                &url,
                Some(("application/json", Payload::Bytes(Bytes::from(body.to_string())))),
                "locks",
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(StorageError::Rejected(m)) => Err(StorageError::Rejected(format!(
                "{}: another Joplin client is syncing or holds the lock ({m}). Wait for its sync to \
                 finish (locks expire 3 minutes after their last refresh) and run again.",
                self.base
            ))),
            Err(e) => Err(e),
        }
    }

    async fn release_server_lock(&self, client_id: &str) -> Result<()> {
        self.remove_server_lock(&format!("{LOCK_EXCLUSIVE}_{CLIENT_CLI}_{client_id}"))
            .await
    }

    async fn server_locks(&self) -> Result<Option<Vec<backend_core::ServerLock>>> {
        let url = format!("{}/api/locks", self.base);
        let body = self.call(reqwest::Method::GET, &url, None, "locks").await?;
        let v: Value = serde_json::from_slice(&body).map_err(|e| {
            StorageError::Rejected(format!("{url}: the lock list is not JSON ({e})"))
        })?;
        let items = v
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let num = |l: &Value, k: &str| l.get(k).and_then(Value::as_i64).unwrap_or(0);
        Ok(Some(
            items
                .iter()
                .map(|l| {
                    let client_id = l
                        .get("clientId")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    let (kind, client_type) = (num(l, "type") as u32, num(l, "clientType") as u32);
                    backend_core::ServerLock {
                        key: format!("{kind}_{client_type}_{client_id}"),
                        kind,
                        client_type,
                        client_id,
                        updated_ms: num(l, "updatedTime"),
                    }
                })
                .collect(),
        ))
    }

    async fn remove_server_lock(&self, key: &str) -> Result<()> {
        let url = format!(
            "{}/api/locks/{}",
            self.base,
            utf8_percent_encode(key, NAME_SET)
        );
        self.call(reqwest::Method::DELETE, &url, None, "locks")
            .await
            .map(|_| ())
    }
}

/// Build a backend; the shared pointer form the CLI uses.
pub fn open(cfg: JoplinServerConfig) -> Result<Arc<dyn Storage>> {
    Ok(Arc::new(JoplinServer::new(cfg)?))
}

#[cfg(test)]
mod tests;
