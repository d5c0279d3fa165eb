//! A client of a running Joplin's Data API (the Web Clipper service) on 127.0.0.1.
//!
//! Finding it: `--port`, else the profile's `api.port`, else the first port from 41184 up to
//! 41194 whose `GET /ping` answers `JoplinClipperServer` *and* accepts our token
//! (`GET /auth/check?token=` → `{"valid":true}`); tokens are random per profile, so that also
//! tells which profile answers. The token comes from `--token-file`, the environment variable
//! `JOPLIN_RESTORE_API_TOKEN`, or the profile's `settings.json` (`api.token`); it is sent only
//! in the query string to 127.0.0.1 and never printed (reqwest errors are stripped of the URL).
//!
//! Every call goes through the same pacing as the sync-target backends: `--tpslimit` (governor,
//! burst 1), `--transfers` (parallel calls), `--retries` (connection errors, 429, 502-504 and
//! SQLite busy errors, with doubling backoff).

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::open::PacerArgs;

pub const ENV_TOKEN: &str = "JOPLIN_RESTORE_API_TOKEN";
pub const FIRST_PORT: u16 = 41184;
pub const LAST_PORT: u16 = 41194;
/// Largest page the API serves (`limit` > 100 is a 400).
const PAGE: usize = 100;
/// Bound on pages read from one list (10 million items).
const MAX_PAGES: usize = 100_000;

/// Where the running Joplin is and how to authenticate.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    /// The profile Joplin runs on (default: ~/.config/joplin-desktop, else ~/.config/joplin).
    /// Its settings.json gives the API token and port.
    #[arg(long, value_name = "DIR")]
    pub profile: Option<PathBuf>,
    /// Home folder to look for profiles in (default: your home).
    #[arg(long, value_name = "DIR", hide = true)]
    pub home: Option<PathBuf>,
    /// Data API port (default: the profile's api.port, else the first of 41184..41194 that
    /// accepts the token).
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// File holding the API token (Options > Web Clipper > Advanced options). Default: the
    /// token in the profile's settings.json, or the JOPLIN_RESTORE_API_TOKEN variable.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    #[command(flatten)]
    pub pacer: PacerArgs,
}

/// A failed call, with the API's own message (first line, no stack trace).
#[derive(Debug, thiserror::Error)]
#[error("{method} {path}: HTTP {status}: {message}")]
pub struct ApiError {
    pub method: Method,
    pub path: String,
    pub status: StatusCode,
    pub message: String,
}

pub enum Body {
    None,
    Json(Value),
    /// A file upload: the `data` part (file name, bytes) and the `props` JSON field.
    Upload {
        file_name: String,
        data: Vec<u8>,
        props: Value,
    },
}

pub struct DataApi {
    http: reqwest::Client,
    base: String,
    token: String,
    limiter: Option<DefaultDirectRateLimiter>,
    /// `--bwlimit` for uploads (each request waits for its bytes before it goes).
    bandwidth: Option<backend_core::Pace>,
    retries: u32,
    pub transfers: usize,
    requests: AtomicU64,
    retried: AtomicU64,
    /// The profile this Joplin runs on: the one whose settings hold the token in use.
    pub profile: Option<PathBuf>,
    /// `--dry-run`: reads go to Joplin, writes are only counted (`would_write`).
    pub dry_run: bool,
    would_write: AtomicU64,
}

impl std::fmt::Debug for DataApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataApi").field("base", &self.base).finish()
    }
}

fn http_client() -> Result<reqwest::Client> {
    // Plain HTTP on loopback, but reqwest (built with rustls for the backends) sets up TLS
    // anyway and needs a crypto provider. Ignore "already installed".
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(300))
        .no_proxy()
        .build()
        .context("cannot set up the HTTP client")
}

impl DataApi {
    pub fn new(port: u16, token: String, pacer: &PacerArgs) -> Result<DataApi> {
        let limiter = pacer.tpslimit.filter(|t| *t > 0.0).map(|tps| {
            RateLimiter::direct(
                Quota::with_period(Duration::from_secs_f64(1.0 / tps))
                    .expect("positive period")
                    .allow_burst(NonZeroU32::MIN),
            )
        });
        let bandwidth = pacer
            .bwlimit
            .filter(|b| *b > 0)
            .map(backend_core::Pace::new);
        Ok(DataApi {
            http: http_client()?,
            base: format!("http://127.0.0.1:{port}"),
            token,
            limiter,
            bandwidth,
            retries: pacer.retries.unwrap_or(crate::open::DEFAULT_RETRIES),
            // The API serves every call against one SQLite database: few at a time is best.
            transfers: pacer.transfers.unwrap_or(2).max(1),
            requests: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            profile: None,
            dry_run: false,
            would_write: AtomicU64::new(0),
        })
    }

    pub fn describe(&self) -> String {
        match &self.profile {
            Some(p) => format!("the Joplin Data API at {} ({})", self.base, p.display()),
            None => format!("the Joplin Data API at {}", self.base),
        }
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn retried(&self) -> u64 {
        self.retried.load(Ordering::Relaxed)
    }

    /// Wait until `n` bytes may be sent under `--bwlimit`.
    async fn take_bytes(&self, n: usize) {
        if let Some(pace) = &self.bandwidth {
            pace.take(n as u64).await;
        }
    }

    /// One call with pacing and retries; returns the response text.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Body,
    ) -> Result<String, anyhow::Error> {
        if self.dry_run && method != Method::GET {
            // Nothing the import does with an answer needs more than success.
            self.would_write.fetch_add(1, Ordering::Relaxed);
            return Ok(String::new());
        }
        let mut backoff = Duration::from_millis(200);
        let mut attempt = 0u32;
        loop {
            if let Some(l) = &self.limiter {
                l.until_ready().await;
            }
            self.requests.fetch_add(1, Ordering::Relaxed);
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", self.base))
                .query(&[("token", self.token.as_str())])
                .query(query);
            req = match &body {
                Body::None => req,
                Body::Json(v) => {
                    let text = v.to_string();
                    self.take_bytes(text.len()).await;
                    req.header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(text)
                }
                Body::Upload {
                    file_name,
                    data,
                    props,
                } => {
                    self.take_bytes(data.len()).await;
                    let part =
                        reqwest::multipart::Part::bytes(data.clone()).file_name(file_name.clone());
                    let form = reqwest::multipart::Form::new()
                        .text("props", props.to_string())
                        .part("data", part);
                    req.multipart(form)
                }
            };
            let retryable: anyhow::Error = match req.send().await {
                Err(e) => anyhow!(
                    "{method} {path}: cannot reach {}: {}",
                    self.base,
                    e.without_url()
                ),
                Ok(resp) => {
                    let status = resp.status();
                    let text = resp
                        .text()
                        .await
                        .map_err(|e| anyhow!("{method} {path}: {}", e.without_url()))?;
                    if status.is_success() {
                        return Ok(text);
                    }
                    let err = ApiError {
                        method: method.clone(),
                        path: path.to_string(),
                        status,
                        message: error_message(&text),
                    };
                    let transient = matches!(status.as_u16(), 429 | 502 | 503 | 504)
                        || (status.is_server_error()
                            && (err.message.contains("SQLITE_BUSY")
                                || err.message.contains("database is locked")));
                    if !transient {
                        return Err(err.into());
                    }
                    err.into()
                }
            };
            if attempt >= self.retries {
                return Err(retryable.context(format!("gave up after {} retries", self.retries)));
            }
            attempt += 1;
            self.retried.fetch_add(1, Ordering::Relaxed);
            tracing::info!("retry {attempt}: {retryable:#}");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value> {
        let t = self.call(Method::GET, path, query, Body::None).await?;
        serde_json::from_str(&t).with_context(|| format!("GET {path}: the answer is not JSON"))
    }

    /// Writes a dry run counted instead of sending.
    pub fn would_write(&self) -> u64 {
        self.would_write.load(Ordering::Relaxed)
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<Value> {
        let t = self.call(Method::POST, path, &[], Body::Json(body)).await?;
        Ok(serde_json::from_str(&t).unwrap_or(Value::Null))
    }

    pub async fn put(&self, path: &str, body: Value) -> Result<Value> {
        let t = self.call(Method::PUT, path, &[], Body::Json(body)).await?;
        Ok(serde_json::from_str(&t).unwrap_or(Value::Null))
    }

    pub async fn delete(&self, path: &str, query: &[(&str, &str)]) -> Result<()> {
        self.call(Method::DELETE, path, query, Body::None).await?;
        Ok(())
    }

    pub async fn upload(
        &self,
        path: &str,
        file_name: String,
        data: Vec<u8>,
        props: Value,
    ) -> Result<Value> {
        let t = self
            .call(
                Method::POST,
                path,
                &[],
                Body::Upload {
                    file_name,
                    data,
                    props,
                },
            )
            .await?;
        Ok(serde_json::from_str(&t).unwrap_or(Value::Null))
    }

    /// Every item of a paginated list (`{items, has_more}`), 100 per page.
    pub async fn list_all(&self, path: &str, query: &[(&str, &str)]) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        let limit = PAGE.to_string();
        for page in 1..=MAX_PAGES {
            let p = page.to_string();
            let mut q: Vec<(&str, &str)> = query.to_vec();
            q.push(("limit", &limit));
            q.push(("page", &p));
            q.push(("order_by", "id"));
            q.push(("order_dir", "ASC"));
            let v = self.get(path, &q).await?;
            let items = v["items"]
                .as_array()
                .ok_or_else(|| anyhow!("GET {path}: no `items` in the answer"))?;
            out.extend(items.iter().cloned());
            if !v["has_more"].as_bool().unwrap_or(false) || items.is_empty() {
                return Ok(out);
            }
        }
        bail!("GET {path}: more than {MAX_PAGES} pages; stopped")
    }
}

/// The API's `{"error": "..."}` without the stack trace.
fn error_message(text: &str) -> String {
    let msg = serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| text.to_string());
    let first = msg.split("\n\n").next().unwrap_or("").trim();
    let first = first.trim_end_matches(':').trim();
    first.chars().take(500).collect()
}

/// The token: `--token-file`, else the environment, else the profile's settings.
fn find_token(args: &ApiArgs, profile: Option<&Path>, settings: &Value) -> Result<String> {
    if let Some(f) = &args.token_file {
        let t = std::fs::read_to_string(f)
            .with_context(|| format!("--token-file {}: cannot read it", f.display()))?;
        let t = t.trim().to_string();
        if t.is_empty() {
            bail!("--token-file {} is empty: put the API token in it (Joplin: Options > Web Clipper > Advanced options)", f.display());
        }
        return Ok(t);
    }
    if let Ok(t) = std::env::var(ENV_TOKEN) {
        if !t.trim().is_empty() {
            return Ok(t.trim().to_string());
        }
    }
    if let Some(t) = settings["api.token"].as_str().filter(|t| !t.is_empty()) {
        return Ok(t.to_string());
    }
    match profile {
        Some(p) => bail!(
            "no API token in {}: enable the Web Clipper service in Joplin (Options > Web Clipper), \
             or pass --token-file FILE (or set {ENV_TOKEN})",
            p.join("settings.json").display()
        ),
        None => bail!(
            "no Joplin profile found to read the API token from: pass --profile DIR, --token-file FILE \
             or set {ENV_TOKEN}"
        ),
    }
}

/// Find the running Joplin and check the token.
pub async fn connect(args: &ApiArgs) -> Result<DataApi> {
    let explicit_token =
        args.token_file.is_some() || std::env::var(ENV_TOKEN).is_ok_and(|t| !t.trim().is_empty());
    let profile = match super::profiles::choose(args.profile.as_deref(), args.home.as_deref()) {
        Ok(p) => Some(p),
        Err(e) if explicit_token && args.profile.is_none() => {
            tracing::debug!("no profile: {e:#}");
            None
        }
        Err(e) => return Err(e),
    };
    let settings = match &profile {
        Some(p) => super::profiles::read_settings(p)?,
        None => Value::Null,
    };
    let token = find_token(args, profile.as_deref(), &settings)?;
    let mut ports: Vec<u16> = Vec::new();
    if let Some(p) = args.port {
        ports.push(p);
    } else {
        if let Some(p) = settings["api.port"]
            .as_u64()
            .filter(|p| *p > 0 && *p < 65536)
        {
            ports.push(p as u16);
        }
        let first = ports.first().copied();
        ports.extend((FIRST_PORT..=LAST_PORT).filter(|p| Some(*p) != first));
    }
    let http = http_client()?;
    let mut wrong_token = Vec::new();
    for port in &ports {
        let base = format!("http://127.0.0.1:{port}");
        let ping = http
            .get(format!("{base}/ping"))
            .timeout(Duration::from_secs(3))
            .send()
            .await;
        let Ok(ping) = ping else { continue };
        if ping.text().await.ok().as_deref() != Some("JoplinClipperServer") {
            continue;
        }
        let check: Option<Value> = match http
            .get(format!("{base}/auth/check"))
            .query(&[("token", token.as_str())])
            .timeout(Duration::from_secs(5))
            .send()
            .await
        {
            Ok(r) => r.json().await.ok(),
            Err(_) => None,
        };
        if check.as_ref().and_then(|v| v["valid"].as_bool()) == Some(true) {
            // The profile this Joplin runs on only when its own token is the one in use: a
            // token given by --token-file or the environment may be another profile's.
            let runs_on = profile.filter(|_| settings["api.token"].as_str() == Some(&token));
            let mut api = DataApi::new(*port, token, &args.pacer)?;
            api.profile = runs_on;
            return Ok(api);
        }
        wrong_token.push(*port);
    }
    let from = match (&args.token_file, &profile) {
        (Some(f), _) => format!("--token-file {}", f.display()),
        (None, _) if explicit_token => ENV_TOKEN.to_string(),
        (None, Some(p)) => p.join("settings.json").display().to_string(),
        (None, None) => "?".into(),
    };
    if !wrong_token.is_empty() {
        // Wrong credentials: a refusal (exit 4), as a wrong password is elsewhere.
        crate::refuse!(
            "Joplin's Data API answers on 127.0.0.1 port(s) {wrong_token:?} but refuses the token \
             from {from}: that Joplin runs on another profile. Pass --profile DIR for the profile \
             it runs on, or --token-file with the token shown in its Options > Web Clipper."
        );
    }
    let where_ = match args.port {
        Some(p) => format!("127.0.0.1:{p}"),
        None => format!("127.0.0.1 ports {}", describe_ports(&ports)),
    };
    bail!(
        "no Joplin Data API answers on {where_}. Start Joplin and enable the Web Clipper \
         service (Options > Web Clipper > Enable), or with the CLI run \
         `joplin --profile DIR server start`; then run this again."
    )
}

fn describe_ports(ports: &[u16]) -> String {
    ports
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_lose_the_stack_trace() {
        let t = r#"{"error":"Not Found: \n\nError: Not Found\n    at getOneModel (x.js:19:19)"}"#;
        assert_eq!(error_message(t), "Not Found");
        assert_eq!(error_message("plain"), "plain");
    }
}
