//! WebDAV sync target (Joplin `sync.target 6`; Nextcloud's target 5 is WebDAV too).
//!
//! Requests go through `reqwest_dav` (URL + Basic auth); listings are parsed by our own
//! [`multistatus`] parser because servers disagree on prefixes, href forms and escaping. The HTTP
//! agent is HTTP/1.1 with a keep-alive pool, rustls with certificate verification on.

pub mod location;
pub mod multistatus;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use backend_core::{
    parse_retry_after, Capabilities, CredentialHints, Entry, ExtraRequests, ListSink, Result,
    Storage, StorageError,
};
use bytes::Bytes;
use reqwest::header::{HeaderValue, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use url::Url;

pub use location::{is_webdav_url, parse_target};

/// A password that never shows in `Debug` output or logs.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<hidden>")
    }
}

/// What [`WebDavStorage::new`] needs.
#[derive(Debug, Clone)]
pub struct WebDavConfig {
    /// Base URL of the collection (see [`parse_target`]).
    pub url: Url,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// How long a request may go without progress (rclone's `--timeout`): no answer, no bytes
    /// of one, no chunk of an upload taken.
    pub timeout: Duration,
}

pub struct WebDavStorage {
    dav: reqwest_dav::Client,
    /// The same server through a client with no read timeout of its own: uploads of files,
    /// which run as long as their size takes and are timed out by idleness instead
    /// (reqwest's read timeout runs from the start of a request until its answer).
    uploads: reqwest_dav::Client,
    timeout: Duration,
    base: Url,
    /// Decoded path of the base collection, no trailing slash.
    base_path: String,
    username: Option<String>,
    password: Option<Secret>,
    /// Appended to "cannot reach" / "not a WebDAV collection" errors (the CLI says how to pick
    /// another kind of server for the same URL).
    other_kind_hint: Option<String>,
    /// How the user gives the credentials, for 401/403 advice.
    credentials: CredentialHints,
    /// Whether a missing base collection is an error (commands that only read: a mistyped URL
    /// is not an empty target) rather than an empty target (created on the first write).
    existing_root: bool,
}

// Hand-written: `reqwest_dav::Client`'s own Debug would print the password.
impl fmt::Debug for WebDavStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebDavStorage")
            .field("url", &self.base.as_str())
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Read the rest of a small answer (Apache sends an HTML page with 201 Created): a response
/// dropped unread closes its connection, and every request then pays a new one.
async fn drain(resp: Response) {
    let _ = resp.bytes().await;
}

/// A PROPFIND answer up to this size is parsed from memory, a larger one from a temp file.
const SPOOL_IN_MEMORY: usize = 1 << 20;

const PROPFIND_BODY: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<d:propfind xmlns:d="DAV:"><d:prop><d:resourcetype/><d:getlastmodified/><d:getcontentlength/></d:prop></d:propfind>"#;

/// Parallel requests. Joplin itself uses 5 (`sync.maxConcurrentConnections`); 8 keeps a
/// CPU-bound server (bcrypt Basic auth on every request) busy, and the pacer backs off when a
/// host throttles (429/503). Shared hosting: `--transfers 2 --tpslimit 4`.
const DEFAULT_TRANSFERS: usize = 8;

fn propfind() -> Method {
    Method::from_bytes(b"PROPFIND").expect("valid method")
}
fn mkcol() -> Method {
    Method::from_bytes(b"MKCOL").expect("valid method")
}

impl WebDavStorage {
    pub fn new(cfg: WebDavConfig) -> Result<Self> {
        // ring: no cmake/NASM needed to build, unlike aws-lc-rs. Ignore "already installed".
        let _ = rustls::crypto::ring::default_provider().install_default();
        let agent = |read_timeout: Option<Duration>| {
            let mut b = reqwest::Client::builder()
                // HTTP/1.1 keep-alive is what every WebDAV server supports well.
                .http1_only()
                // Never follow redirects: reqwest would turn a redirected PUT into a GET that
                // "succeeds". A redirect is reported with the URL to use instead.
                .redirect(reqwest::redirect::Policy::none())
                // Below Apache's default KeepAliveTimeout (5 s), so we rarely reuse a connection
                // the server is closing at that moment.
                .pool_idle_timeout(Duration::from_secs(4))
                .connect_timeout(Duration::from_secs(30).min(cfg.timeout))
                .user_agent(concat!("joplin-restore/", env!("CARGO_PKG_VERSION")));
            if let Some(t) = read_timeout {
                b = b.read_timeout(t);
            }
            b.build()
                .map_err(|e| StorageError::Config(format!("cannot set up HTTPS: {}", chain(&e))))
        };
        let auth = match (&cfg.username, &cfg.password) {
            (Some(u), Some(p)) => reqwest_dav::Auth::Basic(u.clone(), p.expose().to_string()),
            (Some(u), None) => reqwest_dav::Auth::Basic(u.clone(), String::new()),
            _ => reqwest_dav::Auth::Anonymous,
        };
        let dav = |agent: reqwest::Client| {
            reqwest_dav::ClientBuilder::new()
                .set_agent(agent)
                .set_host(cfg.url.as_str().trim_end_matches('/').to_string())
                .set_auth(auth.clone())
                .build()
                .map_err(|e| StorageError::Config(format!("{}: {e}", cfg.url)))
        };
        let uploads = dav(agent(None)?)?;
        let dav = dav(agent(Some(cfg.timeout))?)?;
        Ok(WebDavStorage {
            dav,
            uploads,
            timeout: cfg.timeout,
            base_path: location::decoded_base_path(&cfg.url),
            base: cfg.url,
            username: cfg.username,
            password: cfg.password,
            other_kind_hint: None,
            existing_root: false,
            credentials: CredentialHints::default(),
        })
    }

    /// How the user gives this target's credentials (a migration's source: other options).
    pub fn with_credential_hints(mut self, hints: CredentialHints) -> Self {
        self.credentials = hints;
        self
    }

    /// A sentence added to errors that suggest the URL is not a WebDAV server at all.
    pub fn with_other_kind_hint(mut self, hint: impl Into<String>) -> Self {
        self.other_kind_hint = Some(hint.into());
        self
    }

    /// A missing base collection is an error, not an empty target (for commands that only
    /// read it: `status`, `verify`, `export`, `clear`, a migration's source).
    pub fn with_existing_root(mut self) -> Self {
        self.existing_root = true;
        self
    }

    fn hint(&self) -> String {
        self.other_kind_hint
            .as_ref()
            .map(|h| format!(" {h}"))
            .unwrap_or_default()
    }

    /// The full URL of a target-relative path, for messages (never holds credentials).
    fn url_of(&self, path: &str) -> String {
        format!("{}{}", self.base, location::encode_path(path))
    }

    fn server(&self) -> String {
        match (self.base.host_str(), self.base.port_or_known_default()) {
            (Some(h), Some(p)) => format!("{}://{h}:{p}", self.base.scheme()),
            _ => self.base.to_string(),
        }
    }

    async fn request(&self, method: Method, path: &str) -> Result<RequestBuilder> {
        self.request_on(&self.dav, method, path).await
    }

    /// [`Self::request`] through `client` (`self.uploads` for a file upload).
    async fn request_on(
        &self,
        client: &reqwest_dav::Client,
        method: Method,
        path: &str,
    ) -> Result<RequestBuilder> {
        client
            .start_request(method, &location::encode_path(path))
            .await
            .map_err(|e| StorageError::Config(format!("{}: {e}", self.url_of(path))))
    }

    /// Send, mapping transport errors. Statuses are left to the caller.
    async fn send(&self, req: RequestBuilder, path: &str) -> Result<Response> {
        req.send().await.map_err(|e| self.transport_error(&e, path))
    }

    fn transport_error(&self, e: &reqwest::Error, path: &str) -> StorageError {
        let why = chain(e);
        let lower = why.to_ascii_lowercase();
        if lower.contains("certificate") || lower.contains("invalidcert") {
            return StorageError::Config(format!(
                "{}: the server's TLS certificate was not accepted ({why}). Fix the certificate \
                 or its chain on the server, or use the URL whose name the certificate holds.",
                self.server()
            ));
        }
        if e.is_connect() {
            // Not retried: a server that refuses connections or a wrong name will not change
            // within a few seconds, and the user should know at once.
            return StorageError::Rejected(format!(
                "cannot reach {} ({why}). Check that the WebDAV server is running and that the \
                 --target URL is right, then rerun.{}",
                self.server(),
                self.hint()
            ));
        }
        if e.is_timeout() {
            return StorageError::transient(format!(
                "{}: the server sent nothing for {} s (--timeout): it is down, overloaded or \
                 unreachable; a longer --timeout waits more",
                self.url_of(path),
                self.timeout.as_secs()
            ));
        }
        // Connections closed mid-request: worth another try.
        StorageError::transient(format!("{}: {why}", self.url_of(path)))
    }

    /// A non-success answer as an error: its status class, or, when the body is an S3 error
    /// document (a WebDAV URL given for an S3 store's port), what the target really is.
    async fn answer_error(&self, mut resp: Response, path: &str) -> StorageError {
        let plain = self.status_error(&resp, path);
        if resp.status().is_redirection() {
            return plain;
        }
        let status = resp.status().as_u16();
        // Error documents are small; stop reading a long page early.
        let mut body = Vec::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            body.extend_from_slice(&chunk);
            if body.len() > 16 * 1024 {
                break;
            }
        }
        match s3_error_code(&String::from_utf8_lossy(&body)) {
            Some(code) => StorageError::Config(format!(
                "{}: it answered with an S3 error ({code}, HTTP {status}): this is an S3 store, \
                 not WebDAV. Give it as --target s3://BUCKET --endpoint http://HOST:PORT.",
                self.url_of(path)
            )),
            None => plain,
        }
    }

    /// Turn a non-success status into the matching error class.
    fn status_error(&self, resp: &Response, path: &str) -> StorageError {
        let status = resp.status();
        if status.is_redirection() {
            let to = resp
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("another address");
            return StorageError::Config(format!(
                "{}: the server redirects (HTTP {}) to {to}. Use the address it redirects to \
                 (its collection URL, e.g. https:// instead of http://) as --target.",
                self.url_of(path),
                status.as_u16()
            ));
        }
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let detail = match status.as_u16() {
            401 => match &self.username {
                Some(u) => format!(
                    "the server refused user {u:?} with this password. Check the username ({}) \
                     and the password ({})",
                    self.credentials.username, self.credentials.password
                ),
                None => format!(
                    "the server wants a username and password: pass {} (the password comes \
                     from {})",
                    self.credentials.username, self.credentials.password
                ),
            },
            403 => match &self.username {
                Some(u) => format!("access denied for user {u:?}: check that it may write here"),
                None => format!(
                    "access denied: pass {} for an account that may write here",
                    self.credentials.username
                ),
            },
            409 => "the folder it belongs in does not exist".to_string(),
            _ => status.canonical_reason().unwrap_or("").to_string(),
        };
        StorageError::from_http(status.as_u16(), &self.url_of(path), &detail, retry_after)
    }

    /// PROPFIND with our property list: the 207 answer, `None` on 404.
    async fn propfind_answer(&self, path: &str, depth: &'static str) -> Result<Option<Response>> {
        let req = self
            .request(propfind(), path)
            .await?
            .header("Depth", HeaderValue::from_static(depth))
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/xml; charset=utf-8"),
            )
            .body(PROPFIND_BODY);
        let resp = self.send(req, path).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if resp.status() != StatusCode::MULTI_STATUS {
            if resp.status().is_success() {
                return Err(StorageError::Rejected(format!(
                    "{}: PROPFIND answered HTTP {} instead of 207: this URL is not a WebDAV \
                     collection. Check the --target URL (Nextcloud: \
                     https://HOST/remote.php/dav/files/USER/FOLDER).{}",
                    self.url_of(path),
                    resp.status().as_u16(),
                    self.hint()
                )));
            }
            if matches!(resp.status().as_u16(), 405 | 501) {
                // A plain web server or a Joplin Server on that port (an S3 store says so in
                // its error document, which `answer_error` reads).
                let status = resp.status().as_u16();
                return Err(match self.answer_error(resp, path).await {
                    named @ StorageError::Config(_) => named,
                    _ => StorageError::Config(format!(
                        "{}: the server does not speak WebDAV (PROPFIND answered HTTP {status}). \
                         Check the --target URL (Nextcloud: \
                         https://HOST/remote.php/dav/files/USER/FOLDER).{}",
                        self.url_of(path),
                        self.hint()
                    )),
                });
            }
            return Err(self.answer_error(resp, path).await);
        }
        Ok(Some(resp))
    }

    fn unreadable_listing(&self, path: &str, e: String) -> StorageError {
        StorageError::Rejected(format!(
            "{}: cannot read the server's listing: {e}",
            self.url_of(path)
        ))
    }

    /// PROPFIND with our property list; `None` on 404.
    async fn propfind(
        &self,
        path: &str,
        depth: &'static str,
    ) -> Result<Option<Vec<multistatus::DavResponse>>> {
        let Some(resp) = self.propfind_answer(path, depth).await? else {
            return Ok(None);
        };
        let body = resp
            .bytes()
            .await
            .map_err(|e| self.transport_error(&e, path))?;
        multistatus::parse(&body)
            .map(Some)
            .map_err(|e| self.unreadable_listing(path, e))
    }

    /// [`Self::propfind`], handing each response to `on` as it is read; `false` on 404. The
    /// answer is spooled (in memory up to a few MiB, then to a temp file) and parsed from
    /// there: a folder of 100,000 files answers tens of MB of XML.
    async fn propfind_each(
        &self,
        path: &str,
        depth: &'static str,
        on: &mut (dyn FnMut(multistatus::DavResponse) + Send),
    ) -> Result<bool> {
        use std::io::{Seek, Write};
        let Some(mut resp) = self.propfind_answer(path, depth).await? else {
            return Ok(false);
        };
        let local = |e: std::io::Error| {
            StorageError::Config(format!(
                "cannot keep the listing of {} in a temp file: {e} (is the temp folder full? \
                 set TMPDIR)",
                self.url_of(path)
            ))
        };
        let mut spool = tempfile::spooled_tempfile(SPOOL_IN_MEMORY);
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| self.transport_error(&e, path))?
        {
            spool.write_all(&chunk).map_err(local)?;
        }
        spool.rewind().map_err(local)?;
        multistatus::parse_each(std::io::BufReader::new(spool), on)
            .map_err(|e| self.unreadable_listing(path, e))?;
        Ok(true)
    }

    /// MKCOL on an absolute URL; `Ok(true)` when created or already there, `Ok(false)` on 409
    /// (parent missing). Goes through the reqwest agent because it may address collections
    /// above the base URL, which reqwest_dav cannot.
    async fn mkcol_url(&self, url: &Url) -> Result<bool> {
        let mut req = self.dav.agent.request(mkcol(), url.as_str());
        if let Some(u) = &self.username {
            req = req.basic_auth(u, self.password.as_ref().map(|p| p.expose()));
        }
        let shown = url.path().to_string();
        let resp = req
            .send()
            .await
            .map_err(|e| self.transport_error(&e, &shown))?;
        match resp.status().as_u16() {
            200..=299 | 405 => Ok(true),
            409 => Ok(false),
            _ => Err(self.answer_error(resp, "").await),
        }
    }

    fn to_entry(&self, dir: &str, r: &multistatus::DavResponse) -> Entry {
        let name = r.name();
        Entry {
            path: if dir.is_empty() {
                name.to_string()
            } else {
                format!("{dir}/{name}")
            },
            size: r.size,
            modified: r.modified,
            is_dir: r.is_dir,
        }
    }
}

/// An error and its causes on one line.
/// The `<Code>` of an S3 error document (`<Error><Code>NoSuchBucket</Code>…`), if `body` is one.
fn s3_error_code(body: &str) -> Option<String> {
    let rest = &body[body.find("<Error>")?..];
    let start = rest.find("<Code>")? + "<Code>".len();
    let len = rest[start..].find("</Code>")?;
    Some(&rest[start..start + len])
        .filter(|c| !c.is_empty() && c.len() < 64)
        .map(str::to_string)
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

#[async_trait]
impl Storage for WebDavStorage {
    fn describe(&self) -> String {
        match &self.username {
            Some(u) => format!("webdav {} (user {u})", self.base),
            None => format!("webdav {}", self.base),
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            default_transfers: DEFAULT_TRANSFERS,
            batch_put: false,
            // Apache and most servers report getlastmodified to the second.
            coarse_mtime: true,
            // getcontentlength is reported for every file.
            listing_sizes: true,
            // No bulk delete: one DELETE per file.
            bulk_delete: false,
            // Clients compare a listing with what they synced.
            change_feed: false,
        }
    }

    async fn ensure_root(&self) -> Result<()> {
        if let Some(v) = self.propfind("", "0").await? {
            return match v.first() {
                Some(r) if !r.is_dir => Err(StorageError::Rejected(format!(
                    "{} is a file, not a folder: point --target at a folder",
                    self.base
                ))),
                _ => Ok(()),
            };
        }
        // Joplin's own driver does not create the root; we create it, but only inside an
        // existing collection: a typo in a parent (or the wrong account's home) must not turn
        // into a new tree of folders that no client syncs (as for folder targets).
        if !self.mkcol_url(&self.base).await? {
            // The base always ends in '/': ".." is its parent collection.
            let parent = self.base.join("..").unwrap_or_else(|_| self.base.clone());
            return Err(StorageError::Config(format!(
                "cannot create {}: its parent collection {} does not exist on the server. Check \
                 the --target URL (a typo?), or create the parent first if a new target there is \
                 meant.",
                self.base, parent
            )));
        }
        Ok(())
    }

    async fn list(&self, dir: &str) -> Result<Vec<Entry>> {
        backend_core::list_through_each(self, dir).await
    }

    /// One PROPFIND (Depth 1), each entry handed over as the answer is read.
    async fn list_each(
        &self,
        dir: &str,
        _extra: &dyn ExtraRequests,
        sink: &mut dyn ListSink,
    ) -> Result<()> {
        let dir = dir.trim_matches('/');
        let req_path = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let self_path = if dir.is_empty() {
            self.base_path.clone()
        } else {
            format!("{}/{dir}", self.base_path)
        };
        let mut saw_self = false;
        let mut first_is_dir = None;
        // The first entry waits for the end: a server behind a path-rewriting proxy reports
        // other hrefs than we asked for, and then it is the collection itself (listed first).
        let mut first: Option<Entry> = None;
        {
            let mut on = |r: multistatus::DavResponse| {
                first_is_dir.get_or_insert(r.is_dir);
                if r.path == self_path {
                    saw_self = true;
                } else if r.name().is_empty() {
                } else if first.is_none() {
                    first = Some(self.to_entry(dir, &r));
                } else {
                    sink.add(self.to_entry(dir, &r));
                }
            };
            if !self.propfind_each(&req_path, "1", &mut on).await? {
                if dir.is_empty() && self.existing_root {
                    return Err(StorageError::Config(format!(
                        "{}: no such collection on the server (HTTP 404). Check the --target \
                         URL: the folder your Joplin clients sync to (Nextcloud: \
                         https://HOST/remote.php/dav/files/USER/FOLDER).",
                        self.url_of("")
                    )));
                }
                return Ok(());
            }
        }
        if let Some(e) = first {
            if saw_self || first_is_dir != Some(true) {
                sink.add(e);
            }
        }
        Ok(())
    }

    async fn get(&self, path: &str) -> Result<Bytes> {
        let req = self.request(Method::GET, path).await?;
        let resp = self.send(req, path).await?;
        if !resp.status().is_success() {
            return Err(self.answer_error(resp, path).await);
        }
        resp.bytes()
            .await
            .map_err(|e| self.transport_error(&e, path))
    }

    /// Streams the body to the file chunk by chunk.
    async fn get_file(&self, path: &str, dest: &std::path::Path) -> Result<u64> {
        let req = self.request(Method::GET, path).await?;
        let mut resp = self.send(req, path).await?;
        if !resp.status().is_success() {
            return Err(self.answer_error(resp, path).await);
        }
        let mut out = backend_core::Download::create(path, dest).await?;
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| self.transport_error(&e, path))?
        {
            out.write(&chunk).await?;
        }
        out.finish().await
    }

    async fn put(&self, path: &str, data: Bytes) -> Result<()> {
        let req = self
            .request(Method::PUT, path)
            .await?
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            )
            .body(data);
        let resp = self.send(req, path).await?;
        if !resp.status().is_success() {
            return Err(self.answer_error(resp, path).await);
        }
        drain(resp).await;
        Ok(())
    }

    /// Streams the slice: a large blob never sits in memory whole. Timed out when it goes
    /// `timeout` with no chunk taken and no answer, however long the whole upload takes.
    async fn put_file(&self, path: &str, src: &backend_core::FileSlice) -> Result<()> {
        let body = src.body().await.map_err(|e| src.error(path, e))?;
        let progress = body.progress();
        let req = self
            .request_on(&self.uploads, Method::PUT, path)
            .await?
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            )
            .header(reqwest::header::CONTENT_LENGTH, src.len)
            .body(reqwest::Body::wrap(body));
        let stalled = || backend_core::stalled_upload(&self.url_of(path), self.timeout);
        let resp = backend_core::unless_idle(self.send(req, path), &progress, self.timeout)
            .await
            .ok_or_else(stalled)??;
        let answered = async {
            if !resp.status().is_success() {
                return Err(self.answer_error(resp, path).await);
            }
            drain(resp).await;
            Ok(())
        };
        tokio::time::timeout(self.timeout, answered)
            .await
            .map_err(|_| stalled())?
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let req = self.request(Method::DELETE, path).await?;
        let resp = self.send(req, path).await?;
        match resp.status() {
            s if s.is_success() || s == StatusCode::NOT_FOUND => {
                drain(resp).await;
                Ok(())
            }
            _ => Err(self.answer_error(resp, path).await),
        }
    }

    async fn mkdir(&self, path: &str) -> Result<()> {
        let p = format!("{}/", path.trim_matches('/'));
        let req = self.request(mkcol(), &p).await?;
        let resp = self.send(req, path).await?;
        match resp.status().as_u16() {
            // 405 Method Not Allowed: the collection exists (RFC 4918 §9.3.1).
            200..=299 | 405 => {
                drain(resp).await;
                Ok(())
            }
            _ => Err(self.answer_error(resp, path).await),
        }
    }

    async fn stat(&self, path: &str) -> Result<Option<Entry>> {
        let Some(v) = self.propfind(path, "0").await? else {
            return Ok(None);
        };
        Ok(v.first().map(|r| Entry {
            path: path.to_string(),
            size: r.size,
            modified: r.modified,
            is_dir: r.is_dir,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_error_documents_are_recognised() {
        let doc = r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>NotImplemented</Code><Message>Unknown operation</Message></Error>"#;
        assert_eq!(s3_error_code(doc).as_deref(), Some("NotImplemented"));
        assert_eq!(
            s3_error_code("<html><body>Method Not Allowed</body></html>"),
            None
        );
        assert_eq!(s3_error_code("<Error><Code></Code></Error>"), None);
    }

    #[test]
    fn debug_and_describe_hide_the_password() {
        let (url, _) = parse_target("https://h.example/dav/Joplin").unwrap();
        let s = WebDavStorage::new(WebDavConfig {
            url,
            username: Some("joplin".into()),
            password: Some(Secret::new("hunter2-very-secret")),
            timeout: backend_core::DEFAULT_TIMEOUT,
        })
        .unwrap();
        let shown = format!("{s:?} {} {:?}", s.describe(), s.password);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("joplin"), "{shown}");
        assert!(s.capabilities().coarse_mtime);
    }

    #[tokio::test]
    async fn connection_refused_is_a_clear_non_retryable_error() {
        // Bind then drop a listener: its port is very likely closed afterwards.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let (url, _) = parse_target(&format!("http://127.0.0.1:{port}/dav/J")).unwrap();
        let s = WebDavStorage::new(WebDavConfig {
            url,
            username: None,
            password: None,
            timeout: backend_core::DEFAULT_TIMEOUT,
        })
        .unwrap();
        let e = s.get("info.json").await.unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("cannot reach http://127.0.0.1:{port}")),
            "{msg}"
        );
        assert!(!e.is_retryable(), "{msg}");
    }
}
