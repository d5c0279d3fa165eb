//! **EMULATOR** of the Joplin Server 3.1 HTTP API, for tests only. It is not Joplin Server and
//! must never be used as one.
//!
//! It reproduces what `shared/spec/joplin-server-api.md` documents a live 3.1 server doing,
//! including every trap a client can fall into:
//! - origin check (`Host` must match the configured base URL, else 404 plain text),
//! - `Content-Type` decides how a PUT body is read: octet-stream = raw bytes, JSON = silently
//!   stored EMPTY, text/plain = 415, missing = 500,
//! - `<32 alnum>.md` names are parsed as Joplin items: trailing newline or garbage → 500
//!   "Missing required property: type_", missing `updated_time` → 500 SQL error, unknown
//!   `share_id` → 422, and GET returns the server's re-serialisation (fields in lib order,
//!   missing ones empty, unknown ones dropped),
//! - batch uploads limited to 1,048,576 UTF-16 units (names + bodies) → 413, per-item errors,
//! - listings: offset cursor or `page=N`, `updated_time desc` by default or any `order_by`
//!   (`name` is read in index order), 100-item page limit (`limit=101` → 400),
//! - login rate limit (10 per 60 s → 429 + `Retry-After`),
//! - the `delta` change feed (create/update/delete of `<32>.md` items and `.resource/` blobs,
//!   compressed per page, `jopItem` as the server parses it, `resyncRequired` on an unknown
//!   cursor), so a real Joplin client can sync from it,
//! - advisory locks with 409 `hasSyncLock` / `hasExclusiveLock`, 3-minute TTL,
//! - `X-API-MIN-VERSION` → 412, 403 on missing/expired sessions.
//!
//! Every request is counted per route in [`Stats`] so tests can check request budgets.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use serde_json::{json, Value};

/// The version the emulator claims to be.
pub const SERVER_VERSION: &str = "3.1.0";

/// How the emulated server is set up.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// `(email, password)` of the users that exist.
    pub users: Vec<(String, String)>,
    /// Login attempts allowed per window and IP (the server: 10 per 60 s).
    pub login_limit: u32,
    pub login_window: Duration,
    /// The `Retry-After` seconds sent with a 429 (the server: 60; tests use less).
    pub retry_after_secs: u64,
    /// Per-user `max_item_size` in bytes; 0 = unlimited (admin).
    pub max_item_size: usize,
    /// Batch limit in UTF-16 units (the server: 1 MB = 1,048,576).
    pub batch_limit: usize,
    /// Share ids that exist on this server.
    pub shares: Vec<String>,
    /// Lock TTL (the server: 3 minutes).
    pub lock_ttl: Duration,
    /// When set, the host:port clients must use (APP_BASE_URL); default: the bound address
    /// as `127.0.0.1:<port>`.
    pub app_host: Option<String>,
    /// Port to listen on (127.0.0.1 only); 0 = a free one.
    pub port: u16,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            users: vec![("admin@localhost".into(), "admin".into())],
            login_limit: 10,
            login_window: Duration::from_secs(60),
            retry_after_secs: 60,
            max_item_size: 0,
            batch_limit: 1_048_576,
            shares: vec![],
            lock_ttl: Duration::from_secs(180),
            app_host: None,
            port: 0,
        }
    }
}

/// Requests seen, by route.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub logins: u64,
    pub logins_rate_limited: u64,
    pub single_puts: u64,
    pub batch_puts: u64,
    pub batch_items: u64,
    pub gets: u64,
    pub deletes: u64,
    pub listings: u64,
    /// `GET …/delta` requests.
    pub deltas: u64,
    pub lock_posts: u64,
    pub lock_deletes: u64,
    pub total: u64,
    /// Requests answered 403 because of a missing/unknown session.
    pub forbidden: u64,
    /// Names PUT with a JSON content type (stored empty: a client bug).
    pub json_puts: Vec<String>,
}

#[derive(Debug, Clone)]
struct StoredItem {
    id: String,
    content: Vec<u8>,
    created_time: i64,
    updated_time: i64,
    /// Insertion sequence, for a stable order among equal times.
    seq: u64,
}

#[derive(Debug, Clone)]
pub struct Lock {
    pub kind: u32,
    pub client_type: u32,
    pub client_id: String,
    pub id: String,
    pub updated_time: i64,
}

impl Lock {
    /// Active as upstream `activeLock` judges: refreshed within the TTL, by `updatedTime`.
    fn active(&self, ttl: Duration) -> bool {
        now_ms() - self.updated_time < ttl.as_millis() as i64
    }
}

#[derive(Debug, Default)]
struct UserData {
    /// By name, as an index on the name column keeps them: a listing in name order reads
    /// its page off the index instead of sorting every item for every page.
    items: BTreeMap<String, StoredItem>,
    locks: Vec<Lock>,
    /// The change log behind `delta`, oldest first.
    changes: Vec<Change>,
}

/// One row of the server's `changes` table: only Joplin items (`<32>.md`) and `.resource/`
/// blobs are recorded, as upstream `ItemModel` does.
#[derive(Debug, Clone)]
struct Change {
    /// Global counter: the cursor a client resumes from.
    counter: u64,
    item_id: String,
    item_name: String,
    /// 1 create, 2 update, 3 delete.
    kind: u8,
    updated_time: i64,
}

const CHANGE_CREATE: u8 = 1;
const CHANGE_UPDATE: u8 = 2;
const CHANGE_DELETE: u8 = 3;

fn has_changes(name: &str) -> bool {
    is_joplin_item_name(name) || name.starts_with(".resource/")
}

/// Fields lib stores as INT or NUMERIC (`Database.formatValue` → `Number`), by item type;
/// the four `*_time` of every item are parsed from ISO text to ms first.
fn numeric_fields(type_: u32) -> &'static [&'static str] {
    match type_ {
        1 => &[
            "is_conflict",
            "is_todo",
            "todo_due",
            "todo_completed",
            "order",
            "encryption_applied",
            "markup_language",
            "is_shared",
            "deleted_time",
        ],
        2 => &["encryption_applied", "is_shared", "deleted_time"],
        4 => &[
            "encryption_applied",
            "encryption_blob_encrypted",
            "size",
            "is_shared",
            "blob_updated_time",
            "ocr_status",
            "ocr_driver_id",
        ],
        5 | 6 => &["encryption_applied", "is_shared"],
        9 => &["encryption_method"],
        13 => &["item_type", "item_updated_time", "encryption_applied"],
        _ => &[],
    }
}

/// JS `Number(text)` as JSON: `""` is 0, anything unparsable NaN (JSON null).
fn js_number(v: &str) -> Value {
    let v = v.trim();
    if v.is_empty() {
        return json!(0);
    }
    match v.parse::<i64>() {
        Ok(n) => json!(n),
        Err(_) => v
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
    }
}

/// The item as upstream's `itemToJoplinItem` hands it to clients in a delta: lib's
/// `BaseItem.unserialize` of the stored text (known fields only, times in ms, INT fields as
/// numbers, coordinates as fixed-point text, escapes undone in text fields; revisions' diffs
/// parsed as JSON). Built from the stored re-serialisation, which holds every field.
fn jop_item(content: &[u8]) -> Value {
    let text = String::from_utf8_lossy(content);
    let Ok(item) = Serialized::parse(&text) else {
        return Value::Null;
    };
    let get = |k: &str| item.get(k);
    let Some(type_) = item.type_() else {
        return Value::Null;
    };
    let known = fields_for(type_).unwrap_or(&[]);
    let numeric = numeric_fields(type_);
    let unescape = |v: &str| {
        v.replace("\\n", "\n")
            .replace("\\r", "\r")
            .replace("\\\n", "\\n")
            .replace("\\\r", "\\r")
    };
    let mut out = serde_json::Map::new();
    // Read bottom up, as lib does (the JSON's key order).
    for (k, v) in item.props.iter().rev() {
        if !known.contains(k) {
            continue;
        }
        let value = match *k {
            "created_time" | "updated_time" | "user_created_time" | "user_updated_time" => {
                json!(parse_iso_ms(v).unwrap_or(0))
            }
            "latitude" | "longitude" => json!(format!("{:.8}", v.parse::<f64>().unwrap_or(0.0))),
            "altitude" => json!(format!("{:.4}", v.parse::<f64>().unwrap_or(0.0))),
            "title_diff" | "body_diff" if v.is_empty() => json!(""),
            "title_diff" | "body_diff" => serde_json::from_str(&unescape(v)).unwrap_or(Value::Null),
            _ if numeric.contains(k) => js_number(v),
            _ => json!(unescape(v)),
        };
        out.insert(k.to_string(), value);
    }
    // Title and body: the lines above the properties (the first one, then the rest for notes).
    let head = item.head();
    if !head.is_empty() {
        out.insert("title".into(), json!(unescape(head[0])));
        if type_ == 1 {
            out.insert(
                "body".into(),
                json!(head.get(2..).unwrap_or(&[]).join("\n")),
            );
        }
    }
    // What the server keeps in columns rather than in the JSON, put back as itemToJoplinItem
    // does: the parent id (empty when none) and encryption_applied as a number.
    out.insert("parent_id".into(), json!(get("parent_id").unwrap_or("")));
    out.insert(
        "encryption_applied".into(),
        js_number(get("encryption_applied").unwrap_or("0")),
    );
    out.insert("type_".into(), json!(type_));
    Value::Object(out)
}

/// `jop_updated_time` of a stored item: the `updated_time` of a Joplin item, 0 otherwise.
fn jop_updated_time(name: &str, content: &[u8]) -> i64 {
    if !is_joplin_item_name(name) {
        return 0;
    }
    let text = String::from_utf8_lossy(content);
    Serialized::parse(&text)
        .ok()
        .and_then(|item| item.get("updated_time").and_then(parse_iso_ms))
        .unwrap_or(0)
}

#[derive(Debug, Default)]
struct State {
    /// token → user email
    sessions: HashMap<String, String>,
    users: HashMap<String, UserData>,
    /// Login attempts per client IP (`X-Real-IP`, else the socket's).
    login_attempts: HashMap<String, Vec<Instant>>,
    seq: u64,
    last_time: i64,
    stats: Stats,
}

struct Inner {
    cfg: Mutex<EmulatorConfig>,
    state: Mutex<State>,
    host: String,
}

/// A running emulator; stops when dropped.
pub struct Emulator {
    inner: Arc<Inner>,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JoplinServerEmulator({})", self.addr)
    }
}

fn new_token(n: u64) -> String {
    // 22 chars of base62, like the server's ids.
    const A: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    (0..22)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            A[(x % 62) as usize] as char
        })
        .collect()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

impl Emulator {
    /// Start on 127.0.0.1 with a free port.
    pub async fn start(cfg: EmulatorConfig) -> Emulator {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", cfg.port))
            .await
            .unwrap_or_else(|e| panic!("cannot listen on 127.0.0.1:{}: {e}", cfg.port));
        let addr = listener.local_addr().unwrap();
        let host = cfg
            .app_host
            .clone()
            .unwrap_or_else(|| format!("127.0.0.1:{}", addr.port()));
        let mut state = State::default();
        for (email, _) in &cfg.users {
            state.users.insert(email.clone(), UserData::default());
        }
        let inner = Arc::new(Inner {
            cfg: Mutex::new(cfg),
            state: Mutex::new(state),
            host,
        });
        let srv = inner.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    continue;
                };
                let srv = srv.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let srv = srv.clone();
                        async move {
                            let mut r = srv.handle(req, peer).await;
                            common_headers(&mut r);
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Emulator { inner, addr, task }
    }

    /// Start on a background runtime thread, for synchronous tests that run our binary. The
    /// emulator lives as long as the returned runtime.
    pub fn start_blocking(cfg: EmulatorConfig) -> (tokio::runtime::Runtime, Emulator) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let emu = rt.block_on(Emulator::start(cfg));
        (rt, emu)
    }

    /// The base URL clients must use (what APP_BASE_URL would be).
    pub fn url(&self) -> String {
        format!("http://{}", self.inner.host)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stats(&self) -> Stats {
        self.inner.state.lock().unwrap().stats.clone()
    }

    pub fn reset_stats(&self) {
        self.inner.state.lock().unwrap().stats = Stats::default();
    }

    /// Forget every session, as if they expired: the next request gets 403.
    pub fn expire_sessions(&self) {
        self.inner.state.lock().unwrap().sessions.clear();
    }

    pub fn set_max_item_size(&self, n: usize) {
        self.inner.cfg.lock().unwrap().max_item_size = n;
    }

    /// Names stored for a user, sorted.
    pub fn names(&self, email: &str) -> Vec<String> {
        let st = self.inner.state.lock().unwrap();
        let mut v: Vec<String> = st
            .users
            .get(email)
            .map(|u| u.items.keys().cloned().collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// The stored content of one name (what GET content returns).
    pub fn content(&self, email: &str, name: &str) -> Option<Vec<u8>> {
        let st = self.inner.state.lock().unwrap();
        st.users
            .get(email)?
            .items
            .get(name)
            .map(|i| i.content.clone())
    }

    /// Put content directly, bypassing HTTP (test setup).
    /// Put content directly, bypassing HTTP and validation (test setup): stored as another
    /// client's upload would be, change feed included.
    pub fn insert_raw(&self, email: &str, name: &str, content: &[u8]) {
        self.inner.store(email, name, content.to_vec());
    }

    /// Locks currently held by a user (expired ones dropped).
    pub fn locks(&self, email: &str) -> Vec<Lock> {
        let ttl = self.inner.cfg.lock().unwrap().lock_ttl;
        let st = self.inner.state.lock().unwrap();
        st.users
            .get(email)
            .map(|u| u.locks.iter().filter(|l| l.active(ttl)).cloned().collect())
            .unwrap_or_default()
    }

    /// Add a lock as another client would.
    pub fn add_lock(&self, email: &str, kind: u32, client_type: u32, client_id: &str) {
        let t = self.inner.state.lock().unwrap().tick();
        self.add_lock_at(email, kind, client_type, client_id, t);
    }

    /// Add a lock whose `updatedTime` says `updated_time` (ms): a client that stopped refreshing
    /// it. The server still lists it; clients judge it expired by that time.
    pub fn add_lock_at(
        &self,
        email: &str,
        kind: u32,
        client_type: u32,
        client_id: &str,
        updated_time: i64,
    ) {
        let mut st = self.inner.state.lock().unwrap();
        let t = updated_time;
        st.users.entry(email.into()).or_default().locks.push(Lock {
            kind,
            client_type,
            client_id: client_id.into(),
            id: new_token(t as u64),
            updated_time: t,
        });
    }
}

impl State {
    /// Server clock in ms, strictly increasing so `updated_time desc` is a stable order.
    fn tick(&mut self) -> i64 {
        self.seq += 1;
        let t = now_ms().max(self.last_time);
        self.last_time = t;
        t
    }
}

type Resp = Response<Full<Bytes>>;

/// What the server's middleware adds to every answer, errors and plain-text ones included.
fn common_headers(r: &mut Resp) {
    let h = r.headers_mut();
    for (k, v) in [
        ("vary", "Origin"),
        ("content-security-policy", "frame-ancestors 'none'"),
        ("x-frame-options", "DENY"),
        ("keep-alive", "timeout=5"),
    ] {
        if !h.contains_key(k) {
            h.insert(k, hyper::header::HeaderValue::from_static(v));
        }
    }
}

fn json_resp(status: u16, v: &Value) -> Resp {
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json; charset=utf-8")
        .header("Vary", "Origin")
        .body(Full::new(Bytes::from(v.to_string())))
        .unwrap()
}

fn err(status: u16, msg: &str) -> Resp {
    json_resp(status, &json!({ "error": msg }))
}

fn err_code(status: u16, msg: &str, code: Value) -> Resp {
    json_resp(status, &json!({ "error": msg, "code": code }))
}

/// SQLite's `LIKE`: `%` any run, `_` any one character, ASCII letters without case.
fn sql_like(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'%', rest)) => (0..=text.len()).any(|i| sql_like(rest, &text[i..])),
        Some((b'_', rest)) => {
            // One UTF-8 character.
            let len = match text.first() {
                None => return false,
                Some(b) if *b < 0x80 => 1,
                Some(b) if *b >= 0xF0 => 4,
                Some(b) if *b >= 0xE0 => 3,
                Some(_) => 2,
            };
            text.len() >= len && sql_like(rest, &text[len..])
        }
        Some((c, rest)) => text
            .split_first()
            .is_some_and(|(t, more)| t.eq_ignore_ascii_case(c) && sql_like(rest, more)),
    }
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

fn query_map(q: Option<&str>) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        m.insert(decode(k), decode(&v.replace('+', " ")));
    }
    m
}

fn version_tuple(v: &str) -> Vec<u64> {
    v.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

/// Field lists per item type, in lib's order (lib 3.4.1+, as a 3.5.1 client writes them).
fn fields_for(type_: u32) -> Option<&'static [&'static str]> {
    Some(match type_ {
        1 => &[
            "id",
            "parent_id",
            "created_time",
            "updated_time",
            "is_conflict",
            "latitude",
            "longitude",
            "altitude",
            "author",
            "source_url",
            "is_todo",
            "todo_due",
            "todo_completed",
            "source",
            "source_application",
            "application_data",
            "order",
            "user_created_time",
            "user_updated_time",
            "encryption_cipher_text",
            "encryption_applied",
            "markup_language",
            "is_shared",
            "share_id",
            "conflict_original_id",
            "master_key_id",
            "user_data",
            "deleted_time",
        ],
        2 => &[
            "id",
            "created_time",
            "updated_time",
            "user_created_time",
            "user_updated_time",
            "encryption_cipher_text",
            "encryption_applied",
            "parent_id",
            "is_shared",
            "share_id",
            "master_key_id",
            "icon",
            "user_data",
            "deleted_time",
        ],
        4 => &[
            "id",
            "mime",
            "filename",
            "created_time",
            "updated_time",
            "user_created_time",
            "user_updated_time",
            "file_extension",
            "encryption_cipher_text",
            "encryption_applied",
            "encryption_blob_encrypted",
            "size",
            "is_shared",
            "share_id",
            "master_key_id",
            "user_data",
            "blob_updated_time",
            "ocr_text",
            "ocr_details",
            "ocr_status",
            "ocr_error",
            "ocr_driver_id",
        ],
        5 => &[
            "id",
            "created_time",
            "updated_time",
            "user_created_time",
            "user_updated_time",
            "encryption_cipher_text",
            "encryption_applied",
            "is_shared",
            "parent_id",
            "user_data",
        ],
        6 => &[
            "id",
            "note_id",
            "tag_id",
            "created_time",
            "updated_time",
            "user_created_time",
            "user_updated_time",
            "encryption_cipher_text",
            "encryption_applied",
            "is_shared",
        ],
        // Master keys (sync targets before info.json held them) and note revisions: lib's
        // column order of `master_keys` and `revisions`; neither has a title.
        9 => &[
            "id",
            "created_time",
            "updated_time",
            "source_application",
            "encryption_method",
            "checksum",
            "content",
        ],
        13 => &[
            "id",
            "parent_id",
            "item_type",
            "item_id",
            "item_updated_time",
            "title_diff",
            "body_diff",
            "metadata_diff",
            "encryption_cipher_text",
            "encryption_applied",
            "updated_time",
            "created_time",
        ],
        _ => return None,
    })
}

/// The server's error for an item body it cannot take: (HTTP status, message).
type ItemError = (u16, String);

/// `^[0-9a-zA-Z]{32}\.md$`: the names the server parses as Joplin items.
pub fn is_joplin_item_name(name: &str) -> bool {
    name.len() == 35
        && name.ends_with(".md")
        && name[..32].bytes().all(|b| b.is_ascii_alphanumeric())
}

fn parse_iso_ms(s: &str) -> Option<i64> {
    // YYYY-MM-DDTHH:mm:ss.SSSZ
    let b = s.as_bytes();
    if b.len() != 24 || b[4] != b'-' || b[10] != b'T' || b[23] != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (h, mi, se, ms) = (n(11..13)?, n(14..16)?, n(17..19)?, n(20..23)?);
    // days from civil (Howard Hinnant)
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(((days * 24 + h) * 60 + mi) * 60_000 + se * 1000 + ms)
}

/// A serialised item split as lib's `BaseItem.unserialize` reads it, from the bottom: the
/// property lines after the last blank line (in file order), and the lines above it.
struct Serialized<'a> {
    lines: Vec<&'a str>,
    props: Vec<(&'a str, &'a str)>,
    /// Index of the blank line above the properties, if there is one.
    split: Option<usize>,
}

impl<'a> Serialized<'a> {
    /// `Err(line)`: a property line without `:`.
    fn parse(text: &'a str) -> Result<Self, &'a str> {
        let lines: Vec<&str> = text.split('\n').collect();
        let mut props = Vec::new();
        let mut split = None;
        for (i, raw) in lines.iter().enumerate().rev() {
            let line = raw.trim();
            if line.is_empty() {
                split = Some(i);
                break;
            }
            let p = line.find(':').ok_or(line)?;
            props.push((line[..p].trim(), line[p + 1..].trim()));
        }
        props.reverse();
        Ok(Serialized {
            lines,
            props,
            split,
        })
    }

    fn get(&self, key: &str) -> Option<&'a str> {
        self.props.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    fn type_(&self) -> Option<u32> {
        self.get("type_").and_then(|t| t.parse().ok())
    }

    /// The lines above the properties: title, blank, body.
    fn head(&self) -> &[&'a str] {
        &self.lines[..self.split.unwrap_or(0)]
    }
}

/// Parse like lib's `BaseItem.unserialize` and re-serialise like `BaseItem.serialize`.
fn reserialize(body: &[u8], shares: &[String], batch: bool) -> Result<Vec<u8>, ItemError> {
    let text = String::from_utf8_lossy(body);
    let item = match Serialized::parse(&text) {
        Ok(item) => item,
        Err(line) => {
            let msg = if batch {
                format!("Invalid property format: {line}: {text}")
            } else {
                format!("Missing required property: type_: {text}")
            };
            return Err((500, msg));
        }
    };
    let get = |k: &str| item.get(k);
    let Some(type_) = item.type_() else {
        let msg = if batch && item.split.is_some() && item.split != Some(item.lines.len() - 1) {
            format!("Invalid property format: {text}")
        } else {
            format!("Missing required property: type_: {text}")
        };
        return Err((500, msg));
    };
    let Some(fields) = fields_for(type_) else {
        return Err((500, format!("Unsupported item type: {type_}")));
    };
    if get("updated_time").and_then(parse_iso_ms).is_none() {
        return Err((
            500,
            "SQLITE_CONSTRAINT: NOT NULL constraint failed: items.jop_updated_time".into(),
        ));
    }
    if let Some(share) = get("share_id").filter(|s| !s.is_empty()) {
        if !shares.iter().any(|s| s == share) {
            return Err((422, format!("share not found: {share}")));
        }
    }
    let head = item.head();
    let has_title = !matches!(type_, 6 | 9 | 13);
    let title = head.first().map(|s| s.to_string()).unwrap_or_default();
    let body = if type_ == 1 && head.len() > 2 {
        head[2..].join("\n")
    } else {
        String::new()
    };
    let mut parts: Vec<String> = Vec::new();
    if has_title {
        parts.push(title);
    }
    if !body.is_empty() {
        parts.push(body);
    }
    let mut out_props: Vec<String> = fields
        .iter()
        .map(|f| {
            let v = get(f).unwrap_or(if *f == "encryption_applied" { "0" } else { "" });
            format!("{f}: {v}")
        })
        .collect();
    out_props.push(format!("type_: {type_}"));
    parts.push(out_props.join("\n"));
    Ok(parts.join("\n\n").into_bytes())
}

fn content_type_of(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    if !name.contains('.') || name.rsplit('/').next().is_some_and(|n| !n.contains('.')) {
        return "";
    }
    match ext {
        "md" => "text/markdown",
        "json" => "application/json",
        "txt" => "text/plain",
        _ => "application/octet-stream",
    }
}

enum ItemPath {
    /// `root:/<name>:` (or a bare name)
    Name(String),
    Root,
}

#[allow(clippy::result_large_err)]
fn parse_item_path(seg: &str) -> Result<ItemPath, Resp> {
    if seg == "root" || seg == "root:/:" {
        return Ok(ItemPath::Root);
    }
    if let Some(rest) = seg.strip_prefix("root:/") {
        let Some(inner) = rest.strip_suffix(':') else {
            return Err(err(400, &format!("Invalid path format: {seg}")));
        };
        return Ok(ItemPath::Name(decode(inner)));
    }
    if seg.starts_with("root:") {
        return Err(err(400, &format!("Invalid path format: {seg}")));
    }
    Ok(ItemPath::Name(decode(seg)))
}

impl Inner {
    async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Resp {
        self.state.lock().unwrap().stats.total += 1;
        // Origin check: built from the Host header, must equal APP_BASE_URL's host:port.
        let host = req
            .headers()
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_string();
        if host != self.host {
            return Response::builder()
                .status(404)
                .header("Content-Type", "text/plain; charset=utf-8")
                .body(Full::new(Bytes::from(format!(
                    "Invalid origin: http://{host}"
                ))))
                .unwrap();
        }
        if let Some(v) = req
            .headers()
            .get("x-api-min-version")
            .and_then(|v| v.to_str().ok())
        {
            if version_tuple(v) > version_tuple(SERVER_VERSION) {
                return err(
                    412,
                    &format!(
                        "Joplin Server v{v} is required but v{SERVER_VERSION} is installed. Please upgrade Joplin Server."
                    ),
                );
            }
        }
        let method = req.method().clone();
        let client_ip = req
            .headers()
            .get("x-real-ip")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .unwrap_or_else(|| peer.ip().to_string());
        let path = req.uri().path().to_string();
        let query = query_map(req.uri().query());
        let ctype = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(|s| {
                s.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        let token = req
            .headers()
            .get("x-api-auth")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| {
                req.headers()
                    .get("cookie")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|c| {
                        c.split(';')
                            .find_map(|kv| kv.trim().strip_prefix("sessionId=").map(str::to_string))
                    })
            });
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return err(400, "could not read the body"),
        };
        let Some(rest) = path.strip_prefix("/api/") else {
            return err(
                404,
                &format!("Path not found: {}", path.trim_start_matches('/')),
            );
        };
        if rest == "ping" {
            return json_resp(
                200,
                &json!({"status":"ok","message":"Joplin Server is running"}),
            );
        }
        if rest == "sessions" {
            if method != Method::POST {
                return err(400, &format!("Not allowed: {method} api/sessions"));
            }
            return self.login(&client_ip, ctype.as_deref(), &body);
        }
        if rest.starts_with("sessions/") {
            return err(400, "Not allowed");
        }
        // Everything else needs a session.
        let user = {
            let mut st = self.state.lock().unwrap();
            match &token {
                None => {
                    st.stats.forbidden += 1;
                    return err(403, "Forbidden");
                }
                Some(t) => match st.sessions.get(t) {
                    Some(u) => u.clone(),
                    None => {
                        st.stats.forbidden += 1;
                        return err(403, "Your session has expired. Please login again.");
                    }
                },
            }
        };
        let needs_body = matches!(method, Method::PUT | Method::POST | Method::PATCH);
        if needs_body && ctype.is_none() {
            return err(
                500,
                "Cannot read properties of undefined (reading 'startsWith')",
            );
        }
        if rest == "batch_items" {
            if method != Method::PUT {
                return err(400, &format!("Not allowed: {method} api/batch_items"));
            }
            return self.batch(&user, ctype.as_deref(), &body);
        }
        if rest == "batch" {
            // The generic multi-request route exists but is switched off.
            return err(500, "Not enabled");
        }
        if rest == "locks" || rest.starts_with("locks/") {
            return self.locks(&user, &method, rest, ctype.as_deref(), &body);
        }
        let Some(items_rest) = rest.strip_prefix("items/") else {
            return err(404, &format!("Path not found: api/{rest}"));
        };
        // Split "<item path>[/children|/content|/delta]" — the item path may contain '/'
        // inside "root:/...:", so split after the closing colon.
        let (item_seg, action) = if let Some(r) = items_rest.strip_prefix("root:/") {
            match r.find(':') {
                Some(i) => {
                    let (a, b) = r.split_at(i + 1);
                    (format!("root:/{a}"), b.trim_start_matches('/').to_string())
                }
                None => match r.split_once('/') {
                    Some((a, b)) => (format!("root:/{a}"), b.to_string()),
                    None => (format!("root:/{r}"), String::new()),
                },
            }
        } else {
            match items_rest.split_once('/') {
                Some((a, b)) => (a.to_string(), b.to_string()),
                None => (items_rest.to_string(), String::new()),
            }
        };
        let target = match parse_item_path(&item_seg) {
            Ok(t) => t,
            Err(r) => return r,
        };
        match (method.clone(), action.as_str(), target) {
            (Method::GET, "children", t) => {
                let prefix = match t {
                    ItemPath::Root => String::new(),
                    ItemPath::Name(n) => n,
                };
                self.children(&user, &prefix, &query)
            }
            (Method::GET, "delta", ItemPath::Root) => self.delta(&user, &query),
            (Method::GET, "content", ItemPath::Name(n)) => self.get_content(&user, &n),
            (Method::GET, "", ItemPath::Name(n)) => self.get_meta(&user, &n),
            (Method::PUT, "content", ItemPath::Name(n)) => {
                self.put_content(&user, &n, ctype.as_deref(), &body)
            }
            (Method::DELETE, "", ItemPath::Name(n)) => self.delete(&user, &n),
            (Method::DELETE, "", ItemPath::Root) => err(400, "Deleting the root is not allowed"),
            (Method::HEAD, _, _) => err(400, "HEAD not allowed"),
            (m, _, _) => err(404, &format!("Not found: {m} api/items/:id")),
        }
    }

    fn login(&self, client_ip: &str, ctype: Option<&str>, body: &[u8]) -> Resp {
        let cfg = self.cfg.lock().unwrap().clone();
        let mut st = self.state.lock().unwrap();
        st.stats.logins += 1;
        let now = Instant::now();
        let attempts = st.login_attempts.entry(client_ip.to_string()).or_default();
        attempts.retain(|t| now.duration_since(*t) < cfg.login_window);
        if attempts.len() as u32 >= cfg.login_limit {
            st.stats.logins_rate_limited += 1;
            let mut r = err(
                429,
                "Too many login attempts. Please try again in 60 seconds.",
            );
            r.headers_mut().insert(
                "Retry-After",
                cfg.retry_after_secs.to_string().parse().unwrap(),
            );
            return r;
        }
        attempts.push(now);
        let (email, password) = match ctype {
            None => {
                return err(
                    500,
                    "Cannot read properties of undefined (reading 'startsWith')",
                )
            }
            Some("application/json") => {
                let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
                (
                    v["email"].as_str().unwrap_or("").to_string(),
                    v["password"].as_str().unwrap_or("").to_string(),
                )
            }
            Some("application/x-www-form-urlencoded") => {
                let m = query_map(Some(&String::from_utf8_lossy(body)));
                (
                    m.get("email").cloned().unwrap_or_default(),
                    m.get("password").cloned().unwrap_or_default(),
                )
            }
            Some(_) => return err_code(415, "Could not parse form: no parser found", json!(1003)),
        };
        if !cfg.users.iter().any(|(e, p)| *e == email && *p == password) {
            return err(403, "Invalid username or password");
        }
        let tok = new_token(st.seq + st.stats.logins);
        st.sessions.insert(tok.clone(), email.clone());
        json_resp(
            200,
            &json!({"id": tok, "user_id": new_token(email.len() as u64)}),
        )
    }

    /// Validate and transform a body about to be stored under `name`.
    fn accept(&self, name: &str, body: &[u8], batch: bool) -> Result<Vec<u8>, ItemError> {
        let cfg = self.cfg.lock().unwrap();
        // Upstream allows encrypted items 2.2 times the limit (the cipher text is bigger).
        let encrypted = is_joplin_item_name(name)
            && body
                .split(|b| *b == b'\n')
                .any(|l| l == b"encryption_applied: 1");
        let limit = if encrypted {
            (cfg.max_item_size as f64 * 2.2) as usize
        } else {
            cfg.max_item_size
        };
        if cfg.max_item_size > 0 && body.len() > limit {
            return Err((
                413,
                format!(
                    "Cannot save {} \"{name}\" because it is larger than the allowed limit ({} bytes)",
                    if is_joplin_item_name(name) { "item" } else { "file" },
                    cfg.max_item_size
                ),
            ));
        }
        if is_joplin_item_name(name) {
            reserialize(body, &cfg.shares, batch)
        } else {
            Ok(body.to_vec())
        }
    }

    /// Store and return the API view of the item (`created_time` only on create).
    fn store(&self, user: &str, name: &str, content: Vec<u8>) -> Value {
        let mut st = self.state.lock().unwrap();
        let t = st.tick();
        let seq = st.seq;
        let data = st.users.entry(user.into()).or_default();
        let (out, id, kind) = match data.items.get_mut(name) {
            Some(it) => {
                it.content = content;
                it.updated_time = t;
                it.seq = seq;
                (
                    json!({"name": name, "updated_time": t, "id": it.id}),
                    it.id.clone(),
                    CHANGE_UPDATE,
                )
            }
            None => {
                let id = new_token(seq);
                data.items.insert(
                    name.into(),
                    StoredItem {
                        id: id.clone(),
                        content,
                        created_time: t,
                        updated_time: t,
                        seq,
                    },
                );
                (
                    json!({"name": name, "id": id, "created_time": t, "updated_time": t}),
                    id,
                    CHANGE_CREATE,
                )
            }
        };
        if has_changes(name) {
            data.changes.push(Change {
                counter: seq,
                item_id: id,
                item_name: name.into(),
                kind,
                updated_time: t,
            });
        }
        out
    }

    fn put_content(&self, user: &str, name: &str, ctype: Option<&str>, body: &[u8]) -> Resp {
        self.state.lock().unwrap().stats.single_puts += 1;
        let raw: &[u8] = match ctype {
            Some("application/octet-stream") => body,
            // formidable puts JSON into "fields"; no file part → an EMPTY item. The trap.
            Some("application/json") => {
                self.state
                    .lock()
                    .unwrap()
                    .stats
                    .json_puts
                    .push(name.to_string());
                &[]
            }
            Some("multipart/form-data") => {
                return err(500, "emulator: multipart uploads are not emulated")
            }
            _ => return err_code(415, "Could not parse form: no parser found", json!(1003)),
        };
        match self.accept(name, raw, false) {
            Ok(c) => json_resp(200, &self.store(user, name, c)),
            Err((code, msg)) => err(code, &msg),
        }
    }

    fn batch(&self, user: &str, ctype: Option<&str>, body: &[u8]) -> Resp {
        let limit = self.cfg.lock().unwrap().batch_limit;
        self.state.lock().unwrap().stats.batch_puts += 1;
        if ctype != Some("application/json") {
            return err(500, "Cannot read properties of undefined (reading 'map')");
        }
        let v: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(_) => return err(400, "Invalid JSON"),
        };
        let Some(items) = v.get("items").and_then(Value::as_array) else {
            return err(500, "Cannot read properties of undefined (reading 'map')");
        };
        // JS string lengths: UTF-16 code units.
        let total: usize = items
            .iter()
            .map(|i| {
                i["name"].as_str().unwrap_or("").encode_utf16().count()
                    + i["body"].as_str().unwrap_or("").encode_utf16().count()
            })
            .sum();
        if total > limit {
            return err(
                413,
                &format!(
                    "Size of items ({:.2} MB) is over the limit ({} MB)",
                    total as f64 / 1_000_000.0,
                    limit / 1_048_576
                ),
            );
        }
        self.state.lock().unwrap().stats.batch_items += items.len() as u64;
        let mut out = serde_json::Map::new();
        for i in items {
            let name = i["name"].as_str().unwrap_or("").to_string();
            let body = i["body"].as_str().unwrap_or("");
            let r = match self.accept(&name, body.as_bytes(), true) {
                Ok(c) => json!({"item": self.store(user, &name, c), "error": null}),
                Err((code, msg)) => {
                    let mut e = json!({"message": msg, "stack": "Error: emulated\n    at batch"});
                    if code != 500 {
                        e["httpCode"] = json!(code);
                    }
                    json!({"item": null, "error": e})
                }
            };
            out.insert(name, r);
        }
        json_resp(200, &json!({"items": out, "has_more": false}))
    }

    fn get_content(&self, user: &str, name: &str) -> Resp {
        let mut st = self.state.lock().unwrap();
        st.stats.gets += 1;
        match st.users.get(user).and_then(|u| u.items.get(name)) {
            Some(it) => Response::builder()
                .status(200)
                .header("Content-Type", content_type_of(name))
                .body(Full::new(Bytes::from(it.content.clone())))
                .unwrap(),
            None => err(404, &format!("Not found: {name}")),
        }
    }

    fn get_meta(&self, user: &str, name: &str) -> Resp {
        let mut st = self.state.lock().unwrap();
        st.stats.gets += 1;
        match st.users.get(user).and_then(|u| u.items.get(name)) {
            Some(it) => json_resp(
                200,
                &json!({"id": it.id, "name": name, "updated_time": it.updated_time, "created_time": it.created_time}),
            ),
            None => err(404, &format!("Not found: {name}")),
        }
    }

    fn delete(&self, user: &str, name: &str) -> Resp {
        let mut st = self.state.lock().unwrap();
        st.stats.deletes += 1;
        let t = st.tick();
        let seq = st.seq;
        if let Some(u) = st.users.get_mut(user) {
            if let Some(gone) = u.items.remove(name) {
                if has_changes(name) {
                    u.changes.push(Change {
                        counter: seq,
                        item_id: gone.id,
                        item_name: name.into(),
                        kind: CHANGE_DELETE,
                        updated_time: t,
                    });
                }
            }
        }
        Response::builder()
            .status(200)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(Full::new(Bytes::new()))
            .unwrap()
    }

    /// `GET /api/items/root/delta`: the changes after `cursor` (a change counter), at most
    /// `limit` (default 200) raw rows, compressed per item as upstream `ChangeModel` does;
    /// changes of items deleted since are dropped (their delete change follows). Each change
    /// carries `jopItem`, the item as the server parsed it ("delta with items", on in 3.x):
    /// clients take it instead of downloading the item.
    fn delta(&self, user: &str, q: &HashMap<String, String>) -> Resp {
        let limit = q
            .get("limit")
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(200)
            .max(1);
        let mut st = self.state.lock().unwrap();
        st.stats.deltas += 1;
        let Some(data) = st.users.get(user) else {
            return json_resp(200, &json!({"items": [], "cursor": "", "has_more": false}));
        };
        let from = match q.get("cursor").filter(|c| !c.is_empty()) {
            None => 0,
            Some(c) => match c.parse::<u64>() {
                Ok(n) if data.changes.iter().any(|ch| ch.counter == n) => n,
                _ => {
                    return err_code(
                        400,
                        "Delta cursor is invalid and the complete data should be resynced",
                        json!("resyncRequired"),
                    )
                }
            },
        };
        let start = data.changes.partition_point(|c| c.counter <= from);
        let raw = &data.changes[start..(start + limit).min(data.changes.len())];
        // Per item: create+update → create, create+delete → nothing, update+delete → delete,
        // update+update → the last, delete+create → the create.
        let mut kept: Vec<(usize, &Change)> = Vec::new();
        let mut by_item: HashMap<&str, usize> = HashMap::new();
        for (i, c) in raw.iter().enumerate() {
            match by_item.get(c.item_id.as_str()).copied() {
                Some(k) if kept[k].1.kind == CHANGE_CREATE && c.kind == CHANGE_UPDATE => {}
                Some(k) if kept[k].1.kind == CHANGE_CREATE && c.kind == CHANGE_DELETE => {
                    kept[k].1 = c;
                    kept[k].0 = usize::MAX;
                }
                Some(k) => kept[k] = (i, c),
                None => {
                    by_item.insert(&c.item_id, kept.len());
                    kept.push((i, c));
                }
            }
        }
        kept.retain(|(i, _)| *i != usize::MAX);
        kept.sort_by_key(|(i, _)| *i);
        let live: HashMap<&str, &StoredItem> =
            data.items.values().map(|it| (it.id.as_str(), it)).collect();
        let items: Vec<Value> = kept
            .iter()
            .filter_map(|(_, c)| {
                let mut v = json!({
                    "id": format!("c{}", c.counter),
                    "item_id": c.item_id,
                    "item_name": c.item_name,
                    "type": c.kind,
                    "updated_time": c.updated_time,
                });
                if c.kind == CHANGE_DELETE {
                    v["jopItem"] = Value::Null;
                } else {
                    // Deleted since: the delete change that follows tells the client.
                    let it = live.get(c.item_id.as_str())?;
                    v["jop_updated_time"] = json!(jop_updated_time(&c.item_name, &it.content));
                    v["jopItem"] = if is_joplin_item_name(&c.item_name) {
                        jop_item(&it.content)
                    } else {
                        Value::Null
                    };
                }
                Some(v)
            })
            .collect();
        let cursor = match raw.last() {
            Some(c) => c.counter.to_string(),
            None => q.get("cursor").cloned().unwrap_or_default(),
        };
        json_resp(
            200,
            &json!({"items": items, "cursor": cursor, "has_more": raw.len() >= limit}),
        )
    }

    fn children(&self, user: &str, prefix: &str, q: &HashMap<String, String>) -> Resp {
        let (limit, page, order_by, dir) = if let Some(c) = q.get("cursor") {
            let Some(v) = base64::engine::general_purpose::STANDARD
                .decode(c)
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            else {
                return err(400, "Invalid cursor");
            };
            let limit = v["limit"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .or_else(|| v["limit"].as_u64())
                .unwrap_or(100);
            // The cursor holds the page it answered; the next one is asked for.
            let page = v["page"].as_u64().unwrap_or(0) + 1;
            (
                limit,
                page,
                v["order"][0]["by"]
                    .as_str()
                    .unwrap_or("updated_time")
                    .to_string(),
                v["order"][0]["dir"].as_str().unwrap_or("desc").to_string(),
            )
        } else {
            let limit: u64 = q.get("limit").and_then(|s| s.parse().ok()).unwrap_or(100);
            (
                limit,
                q.get("page").and_then(|s| s.parse().ok()).unwrap_or(1),
                q.get("order_by").cloned().unwrap_or("updated_time".into()),
                q.get("order_dir").cloned().unwrap_or("desc".into()),
            )
        };
        if limit > 100 {
            return err(400, &format!("Limit out of bond: {limit}"));
        }
        let limit = limit.max(1);
        let page = page.max(1);
        let mut st = self.state.lock().unwrap();
        st.stats.listings += 1;
        // Only a trailing "/*" is a wildcard (SQL LIKE 'prefix/%'); anything else matches
        // the exact name, which for a folder-like prefix is nothing.
        let like: Box<dyn Fn(&str) -> bool> = if prefix.is_empty() {
            Box::new(|_| true)
        } else if let Some(p) = prefix.strip_suffix("/*") {
            let pattern: Vec<u8> = format!("{p}/%").into_bytes();
            Box::new(move |n: &str| sql_like(&pattern, n.as_bytes()))
        } else {
            let p = prefix.to_string();
            Box::new(move |n: &str| n == p)
        };
        let start = ((page - 1) * limit) as usize;
        let row = |(n, it): (&String, &StoredItem)| json!({"id": it.id, "name": n, "updated_time": it.updated_time});
        let matching = st
            .users
            .get(user)
            .into_iter()
            .flat_map(|u| u.items.iter())
            .filter(|(n, _)| like(n));
        let items: Vec<Value> = if order_by == "name" && dir == "asc" {
            // Read off the index: no sort.
            matching.skip(start).take(limit as usize).map(row).collect()
        } else {
            let mut rows: Vec<(&String, &StoredItem)> = matching.collect();
            rows.sort_by(|a, b| {
                let o = if order_by == "name" {
                    a.0.cmp(b.0)
                } else if order_by == "created_time" {
                    (a.1.created_time, a.1.seq).cmp(&(b.1.created_time, b.1.seq))
                } else {
                    (a.1.updated_time, a.1.seq).cmp(&(b.1.updated_time, b.1.seq))
                };
                if dir == "asc" {
                    o
                } else {
                    o.reverse()
                }
            });
            rows.into_iter()
                .skip(start)
                .take(limit as usize)
                .map(row)
                .collect()
        };
        let has_more = items.len() as u64 == limit;
        let cursor = has_more.then(|| {
            base64::engine::general_purpose::STANDARD.encode(
                json!({"limit": limit.to_string(), "order": [{"by": order_by, "dir": dir}], "page": page})
                    .to_string(),
            )
        });
        json_resp(
            200,
            &json!({"items": items, "has_more": has_more, "cursor": cursor}),
        )
    }

    /// `/api/locks` as upstream `LockModel`: locks live in one list per user; an acquire
    /// drops the expired ones (by `updatedTime`) before judging, `GET` lists the list as
    /// stored, expired ones included (clients judge them by their time).
    fn locks(
        &self,
        user: &str,
        method: &Method,
        rest: &str,
        ctype: Option<&str>,
        body: &[u8],
    ) -> Resp {
        let ttl = self.cfg.lock().unwrap().lock_ttl;
        let mut st = self.state.lock().unwrap();
        let t = st.tick();
        let data = st.users.entry(user.into()).or_default();
        match (method, rest) {
            (&Method::GET, "locks") => {
                let items: Vec<Value> = data.locks.iter().map(lock_json).collect();
                json_resp(200, &json!({"items": items, "has_more": false}))
            }
            (&Method::POST, "locks") => {
                if ctype != Some("application/json") {
                    return err(400, "emulator: send locks as JSON");
                }
                let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
                let kind = v["type"].as_u64().unwrap_or(0) as u32;
                let ctype_n = v["clientType"].as_u64().unwrap_or(0) as u32;
                let cid = v["clientId"].as_str().unwrap_or("").to_string();
                if !(kind == 1 || kind == 2) {
                    return err(422, &format!("Invalid lock type: {}", v["type"]));
                }
                if !(1..=3).contains(&ctype_n) {
                    return err(
                        422,
                        &format!("Invalid lock client type: {}", v["clientType"]),
                    );
                }
                if cid.chars().count() > 64 {
                    return err(422, &format!("Invalid client ID length: {cid}"));
                }
                data.locks.retain(|l| l.active(ttl));
                let exclusive = data.locks.iter().position(|l| l.kind == 2);
                let refreshed = if kind == 1 {
                    if let Some(i) = exclusive {
                        return has_exclusive_lock(&data.locks[i]);
                    }
                    data.locks
                        .iter()
                        .position(|l| l.kind == 1 && l.client_type == ctype_n && l.client_id == cid)
                } else {
                    match exclusive {
                        // The same client id (whatever its type) refreshes its exclusive lock.
                        Some(i) if data.locks[i].client_id == cid => Some(i),
                        Some(i) => return has_exclusive_lock(&data.locks[i]),
                        None => {
                            if let Some(l) = data.locks.iter().find(|l| l.kind == 1) {
                                if l.client_id != cid {
                                    return err_code(
                                        409,
                                        &format!(
                                            "Cannot acquire exclusive lock because there is an active sync lock for client: {} #{}",
                                            l.client_type, l.client_id
                                        ),
                                        json!("hasSyncLock"),
                                    );
                                }
                                // Its own sync lock: upgraded to the exclusive one.
                                let own = l.id.clone();
                                data.locks.retain(|l| l.id != own);
                            }
                            None
                        }
                    }
                };
                if let Some(i) = refreshed {
                    // Upstream refreshes a sync lock in place and moves an exclusive one last.
                    data.locks[i].updated_time = t;
                    let out = lock_json(&data.locks[i]);
                    if kind == 2 {
                        let l = data.locks.remove(i);
                        data.locks.push(l);
                    }
                    return json_resp(200, &out);
                }
                let l = Lock {
                    kind,
                    client_type: ctype_n,
                    client_id: cid,
                    id: new_token(t as u64),
                    updated_time: t,
                };
                let out = lock_json(&l);
                data.locks.push(l);
                st.stats.lock_posts += 1;
                json_resp(200, &out)
            }
            (&Method::DELETE, r) if r.starts_with("locks/") => {
                let key = &r["locks/".len()..];
                data.locks
                    .retain(|l| format!("{}_{}_{}", l.kind, l.client_type, l.client_id) != key);
                st.stats.lock_deletes += 1;
                json_resp(200, &json!({}))
            }
            _ => err(400, &format!("Not allowed: {method} api/{rest}")),
        }
    }
}

/// 409: another client holds the exclusive lock.
fn has_exclusive_lock(l: &Lock) -> Resp {
    err_code(
        409,
        &format!(
            "Cannot acquire lock because there is already an exclusive lock for client: {} #{}",
            l.client_type, l.client_id
        ),
        json!("hasExclusiveLock"),
    )
}

fn lock_json(l: &Lock) -> Value {
    json!({"id": l.id, "type": l.kind, "clientId": l.client_id, "clientType": l.client_type, "updatedTime": l.updated_time})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserialises_like_the_server() {
        let minimal = "T\n\nB\n\nid: 0123456789abcdef0123456789abcdef\nparent_id: \nupdated_time: 2024-01-01T00:00:00.000Z\nfoo_bar: 1\ntype_: 1";
        let out = String::from_utf8(reserialize(minimal.as_bytes(), &[], false).unwrap()).unwrap();
        assert!(out.starts_with("T\n\nB\n\nid: 0123"), "{out}");
        assert!(out.contains("\ncreated_time: \n"), "{out}");
        assert!(out.contains("\nencryption_applied: 0\n"), "{out}");
        assert!(!out.contains("foo_bar"), "{out}");
        assert!(out.ends_with("deleted_time: \ntype_: 1"), "{out}");
        let nl = format!("{minimal}\n");
        assert_eq!(reserialize(nl.as_bytes(), &[], false).unwrap_err().0, 500);
        let no_time = minimal.replace("updated_time: 2024-01-01T00:00:00.000Z\n", "");
        let e = reserialize(no_time.as_bytes(), &[], false).unwrap_err();
        assert!(e.1.contains("jop_updated_time"), "{e:?}");
        let shared = minimal.replace("foo_bar: 1", "share_id: abc");
        assert_eq!(
            reserialize(shared.as_bytes(), &[], false).unwrap_err().0,
            422
        );
        assert!(reserialize(shared.as_bytes(), &["abc".into()], false).is_ok());
    }

    fn inner() -> Inner {
        Inner {
            cfg: Mutex::new(EmulatorConfig::default()),
            state: Mutex::new(State::default()),
            host: "127.0.0.1:1".into(),
        }
    }

    fn delta(inner: &Inner, q: &[(&str, &str)]) -> (u16, Value) {
        let q: HashMap<String, String> = q
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let r = inner.delta("u", &q);
        let status = r.status().as_u16();
        let body = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(r.into_body().collect())
            .unwrap()
            .to_bytes();
        (status, serde_json::from_slice(&body).unwrap())
    }

    fn changes(v: &Value) -> Vec<(String, u64)> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["item_name"].as_str().unwrap().to_string(),
                    c["type"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn delta_compresses_a_page_and_resumes_from_its_cursor() {
        let inner = inner();
        let a = "a0000000000000000000000000000000.md";
        let b = "b0000000000000000000000000000000.md";
        let c = "c0000000000000000000000000000000.md";
        let item = |t: &str| format!("T\n\nid: x\nupdated_time: {t}\ntype_: 2").into_bytes();
        inner.store("u", a, item("2024-01-01T00:00:00.000Z"));
        inner.store("u", a, item("2024-01-02T00:00:00.000Z"));
        inner.store("u", b, item("2024-01-01T00:00:00.000Z"));
        inner.delete("u", b);
        inner.store("u", "info.json", b"{}".to_vec());
        inner.store("u", "locks/2_1_x.json", b"{}".to_vec());
        inner.store("u", ".resource/r1", b"blob".to_vec());
        let (st, v) = delta(&inner, &[]);
        assert_eq!(st, 200);
        // a: create+update → create; b: create+delete → nothing; info.json and locks/ are
        // not recorded; blobs are.
        assert_eq!(
            changes(&v),
            vec![(a.into(), 1), (".resource/r1".into(), 1)],
            "{v}"
        );
        assert_eq!(
            v["items"][0]["jop_updated_time"],
            json!(1_704_153_600_000i64)
        );
        assert_eq!(v["items"][1]["jop_updated_time"], json!(0));
        assert_eq!(v["has_more"], json!(false));
        let cursor = v["cursor"].as_str().unwrap().to_string();
        // Nothing new: the same cursor back, no items.
        let (_, v) = delta(&inner, &[("cursor", &cursor)]);
        assert_eq!(
            (changes(&v), v["cursor"].as_str()),
            (vec![], Some(cursor.as_str()))
        );
        inner.store("u", a, item("2024-01-03T00:00:00.000Z"));
        inner.delete("u", a);
        inner.store("u", c, item("2024-01-01T00:00:00.000Z"));
        // update+delete → delete (no jop_updated_time); a short page still says has_more
        // when the raw rows filled it.
        let (_, v) = delta(&inner, &[("cursor", &cursor), ("limit", "2")]);
        assert_eq!(changes(&v), vec![(a.into(), 3)], "{v}");
        assert!(v["items"][0].get("jop_updated_time").is_none(), "{v}");
        assert_eq!(v["has_more"], json!(true));
        let next = v["cursor"].as_str().unwrap().to_string();
        let (_, v) = delta(&inner, &[("cursor", &next), ("limit", "2")]);
        assert_eq!(changes(&v), vec![(c.into(), 1)], "{v}");
        assert_eq!(v["has_more"], json!(false));
        let (st, v) = delta(&inner, &[("cursor", "nonsense")]);
        assert_eq!(st, 400);
        assert_eq!(v["code"], json!("resyncRequired"));
    }

    /// A revision has no title: the server stores its properties alone, in lib's order.
    #[test]
    fn reserialises_a_revision() {
        let rev = "id: 0123456789abcdef0123456789abcdef\nparent_id: \nitem_type: 1\n\
                   item_id: 1123456789abcdef0123456789abcdef\nitem_updated_time: \
                   2024-01-01T00:00:00.000Z\ntitle_diff: \"[]\"\nbody_diff: x\n\
                   metadata_diff: {}\nencryption_cipher_text: \nencryption_applied: 0\n\
                   updated_time: 2024-01-01T00:00:00.000Z\ncreated_time: \
                   2024-01-01T00:00:00.000Z\ntype_: 13";
        let out = String::from_utf8(reserialize(rev.as_bytes(), &[], false).unwrap()).unwrap();
        assert_eq!(out, rev);
    }

    /// What a client gets in a delta: lib's parse of the stored note.
    #[test]
    fn jop_item_is_the_item_as_lib_parses_it() {
        let note = "Title\n\nline 1\nline 2\n\nid: 0123456789abcdef0123456789abcdef\n\
                    parent_id: 1123456789abcdef0123456789abcdef\n\
                    created_time: 2024-01-01T00:00:00.000Z\n\
                    updated_time: 2024-01-01T00:00:01.500Z\nis_conflict: 0\n\
                    latitude: 48.1\nlongitude: 0.00000000\naltitude: 0.0000\n\
                    author: a\\nb\ntodo_due: \norder: 1.5\nfoo_bar: 1\ntype_: 1";
        let v = jop_item(note.as_bytes());
        assert_eq!(v["title"], json!("Title"));
        assert_eq!(v["body"], json!("line 1\nline 2"));
        assert_eq!(v["updated_time"], json!(1_704_067_201_500i64));
        assert_eq!(v["latitude"], json!("48.10000000"));
        assert_eq!(v["author"], json!("a\nb"));
        assert_eq!(v["todo_due"], json!(0));
        assert_eq!(v["order"], json!(1.5));
        assert_eq!(v["type_"], json!(1));
        assert_eq!(v["encryption_applied"], json!(0));
        assert!(v.get("foo_bar").is_none(), "{v}");
    }

    #[test]
    fn iso_times() {
        assert_eq!(parse_iso_ms("1970-01-01T00:00:01.500Z"), Some(1500));
        assert_eq!(
            parse_iso_ms("2024-01-01T00:00:00.000Z"),
            Some(1_704_067_200_000)
        );
        assert_eq!(parse_iso_ms(""), None);
    }

    #[test]
    fn listing_prefixes_match_as_sql_like() {
        assert!(sql_like(b".resource/%", b".resource/abc"));
        assert!(sql_like(b".resource/%", b".RESOURCE/abc"));
        assert!(!sql_like(b".resource/%", b".resource"));
        assert!(sql_like(b"a_b/%", b"aXb/y.txt"));
        assert!(sql_like(b"a_b/%", "a\u{e9}b/y".as_bytes()));
        assert!(!sql_like(b"a_b/%", b"ab/y"));
    }

    #[test]
    fn item_names() {
        assert!(is_joplin_item_name("0123456789abcdef0123456789ABCDEF.md"));
        assert!(!is_joplin_item_name("0123456789abcdef0123456789abcde.md"));
        assert!(!is_joplin_item_name("info.json"));
    }
}
