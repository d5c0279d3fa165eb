//! Turn `--target` and its options into a storage backend, wrapped in the pacer.
//!
//! Forms: a local path or `file:///path` (filesystem target); `joplin-server+http(s)://host:port/`
//! or `--backend joplin-server` with an `http(s)://` URL (Joplin Server); `s3://BUCKET[/PREFIX]`
//! (S3 and S3-compatible stores, with `--endpoint`, `--region`, `--path-style`, `--create-bucket`;
//! credentials only from the AWS environment/profile chain); any other `https://…`, `http://…`,
//! or `webdavs://…`, `webdav://…` (WebDAV, e.g. `https://host/remote.php/dav/files/USER/Joplin`);
//! `NAME:` (a named target from the config file, see [`crate::config`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use backend_core::pacer::{Paced, PacerOptions};
use backend_core::Storage;
use backend_fs::FsStorage;
use backend_s3::{S3Options, S3Storage};
use backend_webdav::{WebDavConfig, WebDavStorage};

use crate::config::{self, Config};

/// Where the sync target is and how to reach it.
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// The sync target: a folder path (Joplin's "File system" target), file:///path, or
    /// s3://BUCKET[/PREFIX] (Joplin's S3 target syncs the bucket's root), or a WebDAV URL
    /// (https://host/remote.php/dav/files/USER/Joplin, http://…, webdav(s)://…). S3 keys come
    /// from the AWS chain: AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY, or AWS_PROFILE. NAME: is a
    /// named target from the config file (see `joplin-restore targets`).
    #[arg(
        long,
        short = 't',
        visible_alias = "to",
        value_name = "TARGET",
        env = "JOPLIN_RESTORE_TARGET"
    )]
    pub target: String,
    /// What kind of target --target is, when its form does not say it (an http(s):// URL).
    #[arg(long, value_enum, value_name = "KIND")]
    pub backend: Option<BackendKind>,
    /// Account for servers that need one (Joplin Server: the account's email).
    #[arg(long, value_name = "USER", env = "JOPLIN_RESTORE_USERNAME")]
    pub username: Option<String>,
    /// Read the password from this file (first line). Otherwise: env JOPLIN_RESTORE_PASSWORD,
    /// else a prompt on the terminal.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// S3: endpoint URL of a non-AWS store (MinIO, Ceph, Garage, s3s…), e.g. http://127.0.0.1:9000.
    #[arg(long, value_name = "URL", env = "JOPLIN_RESTORE_S3_ENDPOINT")]
    pub endpoint: Option<String>,
    /// S3: region of the bucket (default: AWS_REGION, the profile's region, else us-east-1).
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// S3: path-style addressing (http://host/bucket/key), needed by MinIO and most self-hosted
    /// stores (Joplin's "Force path style").
    #[arg(long)]
    pub path_style: bool,
    /// S3: create the bucket when it does not exist.
    #[arg(long)]
    pub create_bucket: bool,
    /// S3: blobs larger than this go up as multipart uploads (default 8M; parts are this size,
    /// at least 5M).
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub multipart_threshold: Option<u64>,
    /// A password already read by the caller (e.g. `migrate --from-password-file`); never argv.
    #[arg(skip)]
    pub given_password: Option<GivenPassword>,
    /// The environment variable read for the password when nothing else gives it (default
    /// JOPLIN_RESTORE_PASSWORD; a migrate source uses JOPLIN_RESTORE_FROM_PASSWORD).
    #[arg(skip)]
    pub password_env_default: Option<&'static str>,
    /// Filled from a config file's named target (`--target NAME:`).
    #[arg(skip)]
    pub named: Option<NamedSettings>,
    /// How this target's options are spelled in messages: "" (`--username`) or "from-" for a
    /// migration's source (`--from-username`).
    #[arg(skip)]
    pub option_prefix: &'static str,
}

/// What a named target adds that has no command-line option.
#[derive(Debug, Clone, Default)]
pub struct NamedSettings {
    pub name: String,
    pub password_env: Option<String>,
    /// The config file's `password-file`: after the command line and the environment.
    pub password_file: Option<PathBuf>,
    pub aws_profile: Option<String>,
}

/// Multipart threshold when neither the command line nor the config file sets one.
pub const DEFAULT_MULTIPART_THRESHOLD: u64 = 8 * 1024 * 1024;
/// Retries per request when neither the command line nor the config file sets them.
pub const DEFAULT_RETRIES: u32 = 10;

impl TargetArgs {
    pub fn multipart_threshold(&self) -> u64 {
        self.multipart_threshold
            .unwrap_or(DEFAULT_MULTIPART_THRESHOLD)
    }
}

/// A password handed over in code; redacted in `Debug`.
#[derive(Clone, Default)]
pub struct GivenPassword(pub String);

impl std::fmt::Debug for GivenPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GivenPassword(***)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// A local folder (Joplin's "File system" target).
    Fs,
    /// Joplin Server (Joplin's sync target 9).
    JoplinServer,
    /// WebDAV, Nextcloud (Joplin's sync targets 6 and 5): the default for http(s):// URLs.
    Webdav,
}

/// The password: --password-file (or the config's password-file), the config's password-env,
/// env JOPLIN_RESTORE_PASSWORD, or a terminal prompt. Never argv, never the config file itself.
fn password(args: &TargetArgs, what: &str) -> Result<String> {
    if let Some(p) = &args.given_password {
        return Ok(p.0.clone());
    }
    let read_file = |f: &Path| {
        let text = std::fs::read_to_string(f)
            .map_err(|e| anyhow::anyhow!("password file {}: cannot read it ({e})", f.display()))?;
        anyhow::Ok(text.lines().next().unwrap_or("").to_string())
    };
    // The command line, then the environment, then the config file (as for every option).
    if let Some(f) = &args.password_file {
        return read_file(f);
    }
    // An empty variable counts as unset (e.g. cleared with `JOPLIN_RESTORE_PASSWORD=`).
    let default_var = args
        .password_env_default
        .unwrap_or("JOPLIN_RESTORE_PASSWORD");
    if let Some(p) = std::env::var(default_var).ok().filter(|p| !p.is_empty()) {
        return Ok(p);
    }
    let configured = args.named.as_ref().and_then(|n| n.password_env.clone());
    if let Some(var) = &configured {
        if let Some(p) = std::env::var(var).ok().filter(|p| !p.is_empty()) {
            return Ok(p);
        }
    }
    if let Some(f) = args.named.as_ref().and_then(|n| n.password_file.as_deref()) {
        return read_file(f);
    }
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return Ok(rpassword::prompt_password(format!(
            "Password for {what}: "
        ))?);
    }
    match configured {
        Some(var) => bail!(
            "{what} needs a password: the config file says password-env = \"{var}\", but ${var} \
             is not set (nor {default_var}; not a terminal, so no prompt)"
        ),
        None => bail!(
            "{what} needs a password: set {default_var}, or pass --password-file FILE \
             (not a terminal, so no prompt)"
        ),
    }
}

/// `--target NAME:` → the config file's `[targets.NAME]`, under what the command line and the
/// environment already set. Any other target comes back as it is.
pub fn resolve(args: &TargetArgs, pacer: &PacerArgs) -> Result<(TargetArgs, PacerArgs)> {
    let Some(name) = config::target_name(&args.target) else {
        return Ok((args.clone(), pacer.clone()));
    };
    let cfg = Config::load()?;
    let t = cfg.get(name)?;
    let size = |v: &Option<String>| v.as_deref().map(parse_size).transpose();
    let size_err = |e: String| anyhow::anyhow!("config file {}: {e}", cfg.path.display());
    let mut a = args.clone();
    a.target = t.target.clone();
    a.backend = a.backend.or(t.backend);
    a.username = a
        .username
        .filter(|u| !u.is_empty())
        .or_else(|| t.username.clone());
    a.endpoint = a.endpoint.or_else(|| t.endpoint.clone());
    a.region = a.region.or_else(|| t.region.clone());
    a.path_style |= t.path_style.unwrap_or(false);
    a.create_bucket |= t.create_bucket.unwrap_or(false);
    a.multipart_threshold = a
        .multipart_threshold
        .or(size(&t.multipart_threshold).map_err(size_err)?);
    a.named = Some(NamedSettings {
        name: name.to_string(),
        password_env: t.password_env.clone(),
        password_file: t.password_file_path(),
        // AWS_PROFILE in the environment wins over the file's, as every variable does.
        aws_profile: t
            .aws_profile
            .clone()
            .filter(|_| std::env::var("AWS_PROFILE").map_or(true, |p| p.is_empty())),
    });
    let mut p = pacer.clone();
    p.transfers = p.transfers.or(t.transfers);
    p.tpslimit = p.tpslimit.or(t.tpslimit);
    p.bwlimit = p.bwlimit.or(size(&t.bwlimit).map_err(size_err)?);
    p.retries = p.retries.or(t.retries);
    p.timeout = p.timeout.or(t
        .timeout
        .as_deref()
        .map(parse_duration)
        .transpose()
        .map_err(|e| anyhow::anyhow!("config file {}: timeout: {e}", cfg.path.display()))?);
    Ok((a, p))
}

fn open_joplin_server(args: &TargetArgs, url: &str, timeout: Duration) -> Result<Arc<dyn Storage>> {
    let username = args
        .username
        .clone()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| match args.option_prefix {
            "" => anyhow::anyhow!(
                "Joplin Server needs the account's email: pass --username or set \
                 JOPLIN_RESTORE_USERNAME"
            ),
            prefix => {
                anyhow::anyhow!("Joplin Server needs the account's email: pass --{prefix}username")
            }
        })?;
    let password = password(args, &format!("{username} on {url}"))?;
    let cfg = backend_joplin_server::JoplinServerConfig {
        base_url: url.to_string(),
        username,
        password: backend_joplin_server::Password::new(password),
        timeout,
    };
    let server = backend_joplin_server::JoplinServer::new(cfg)?
        .with_credential_hints(credential_hints(args));
    Ok(Arc::new(server))
}

/// How this target's credentials are given: a migration's source has its own options.
fn credential_hints(args: &TargetArgs) -> backend_core::CredentialHints {
    match args.option_prefix {
        "" => backend_core::CredentialHints::default(),
        prefix => backend_core::CredentialHints {
            username: format!("--{prefix}username"),
            password: format!(
                "{}, --{prefix}password-file or the prompt",
                args.password_env_default
                    .unwrap_or("JOPLIN_RESTORE_PASSWORD")
            ),
        },
    }
}

/// rclone-style transfer limits, shared by every command that talks to a target.
#[derive(Debug, Clone, clap::Args)]
pub struct PacerArgs {
    /// Parallel requests (default: what suits the backend).
    #[arg(long, value_name = "N", value_parser = parse_transfers)]
    pub transfers: Option<usize>,
    /// Requests per second, all transfers together (e.g. 10 or 0.5).
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub tpslimit: Option<f64>,
    /// Bytes per second, all transfers together (e.g. 512k, 10M).
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub bwlimit: Option<u64>,
    /// Retries per request on 429/5xx/connection errors, with backoff honouring Retry-After
    /// (default 10).
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,
    /// How long a request to a server may go without progress before it fails and is retried:
    /// no connection, no answer, no chunk of an upload taken; a long upload that keeps going
    /// is never cut (e.g. 30s, 5m; default 5m, as rclone). A download that stalls midway
    /// fails too (on S3 by the AWS SDK's own stall detection).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
}

/// `--timeout`: `90`, `90s`, `5m`, `1h` (plain numbers are seconds), at least one second.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let given = s.trim();
    let (num, unit) = match given.chars().last() {
        Some('s') => (&given[..given.len() - 1], 1.0),
        Some('m') => (&given[..given.len() - 1], 60.0),
        Some('h') => (&given[..given.len() - 1], 3600.0),
        _ => (given, 1.0),
    };
    match num.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v * unit >= 1.0 && v * unit <= 86_400.0 => {
            Ok(Duration::from_secs_f64(v * unit))
        }
        _ => Err(format!(
            "{given:?}: give a time from 1s to 24h, like 30s, 5m or 1h"
        )),
    }
}

/// `--transfers`: at least one.
fn parse_transfers(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "{s:?}: give a number of parallel requests, 1 or more"
        )),
    }
}

/// `--tpslimit`: a positive number of requests per second (leave it out for no limit).
fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "{s:?}: give requests per second above 0, like 10 or 0.5 (leave --tpslimit out for \
             no limit)"
        )),
    }
}

/// `512k`, `10M`, `1.5G`, plain bytes; binary multiples like rclone. A trailing `B`, `iB` or
/// `b` is the unit itself (`10MB`, `10MiB`, `512b`), not a size of its own.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let given = s.trim();
    let s = given
        .strip_suffix("iB")
        .or_else(|| given.strip_suffix('B'))
        .or_else(|| given.strip_suffix('b'))
        .unwrap_or(given);
    let (num, mult) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1024f64),
        Some('m' | 'M') => (&s[..s.len() - 1], 1024f64 * 1024.0),
        Some('g' | 'G') => (&s[..s.len() - 1], 1024f64 * 1024.0 * 1024.0),
        _ => (s, 1f64),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{given:?} is not a size like 512k, 10M or 1G"))?;
    if v.is_nan() || v <= 0.0 {
        return Err(format!("{given:?} must be more than zero"));
    }
    Ok((v * mult) as u64)
}

/// A URL with any `user:password@` taken out and query values masked (`?token=…`), for
/// showing (never credentials on screen, in reports or logs; the names stay, so a query that
/// does not belong there is still seen); anything that does not parse as a URL with a host is
/// shown as it is.
pub fn without_credentials(location: &str) -> String {
    match url::Url::parse(location) {
        Ok(mut u)
            if u.has_host()
                && (!u.username().is_empty() || u.password().is_some() || u.query().is_some()) =>
        {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            let names: Vec<String> = u.query_pairs().map(|(k, _)| k.into_owned()).collect();
            u.set_query(None);
            let mut shown = u.to_string();
            if !names.is_empty() {
                let masked: Vec<String> = names.iter().map(|k| format!("{k}=…")).collect();
                shown.push('?');
                shown.push_str(&masked.join("&"));
            }
            shown
        }
        _ => location.to_string(),
    }
}

/// Refuse a URL that carries a password (`http://user:secret@host`): it would be shown in
/// messages and reports, and sit in shell history. (The WebDAV backend refuses one as well,
/// for callers that open it directly.)
fn refuse_password_in(what: &str, url: &str) -> Result<()> {
    if url::Url::parse(url).is_ok_and(|u| u.password().is_some()) {
        crate::refuse!(
            "{what} {}: the URL contains a password: remove it, and give the password through \
             --password-file or JOPLIN_RESTORE_PASSWORD (S3 keys: AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY, or a profile)",
            without_credentials(url)
        );
    }
    Ok(())
}

/// A server URL (WebDAV, Joplin Server) whose `#…` or `?…` would be dropped (the run then goes
/// to another collection: `…/Notes #2` became `…/Notes `), or with a `%` that starts no
/// escape (the server answers 400): a usage error saying how to write them.
fn refuse_url_oddities(what: &str, url: &str) -> Result<()> {
    let lower = url.to_ascii_lowercase();
    if !["http://", "https://", "webdav://", "webdavs://"]
        .iter()
        .any(|s| lower.starts_with(s))
    {
        return Ok(());
    }
    let shown = without_credentials(url);
    if url.contains('#') || url.contains('?') {
        crate::usage_error!(
            "{what} {shown}: a target URL takes no query or fragment (`?`, `#`): everything \
             from there on would be dropped and another collection used. If they are part of \
             the folder's name, write `?` as %3F and `#` as %23."
        );
    }
    let b = url.as_bytes();
    let lone = (0..b.len()).any(|i| {
        b[i] == b'%'
            && !(i + 2 < b.len() && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit())
    });
    if lone {
        crate::usage_error!(
            "{what} {shown}: a `%` in a URL starts an escape like %20; write a `%` that is part \
             of the folder's name as %25."
        );
    }
    Ok(())
}

/// Open the backend named by `--target` (after [`resolve`]), without the pacer.
/// `timeout`: how long an HTTP request may go without progress (`--timeout`).
fn open_storage(args: &TargetArgs, folder: Folder, timeout: Duration) -> Result<Arc<dyn Storage>> {
    let t = args.target.trim();
    if let Some(endpoint) = &args.endpoint {
        refuse_password_in("--endpoint", endpoint)?;
    }
    let url = t.strip_prefix("joplin-server+").unwrap_or(t);
    refuse_password_in("--target", url)?;
    refuse_url_oddities("--target", url)?;
    if let Some(url) = t.strip_prefix("joplin-server+") {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!("--target {t}: use joplin-server+http://host:port/ or joplin-server+https://…");
        }
        return open_joplin_server(args, url, timeout);
    }
    if args.backend == Some(BackendKind::JoplinServer) {
        if !(t.starts_with("http://") || t.starts_with("https://")) {
            bail!(
                "--backend joplin-server needs an http:// or https:// URL as --target, got {t:?}"
            );
        }
        return open_joplin_server(args, t, timeout);
    }
    if backend_webdav::is_webdav_url(t) {
        if args.backend == Some(BackendKind::Fs) {
            bail!("--backend fs needs a folder path, got the URL {t:?}");
        }
        return open_webdav(args, t, folder, timeout);
    }
    let is_s3 = t.starts_with("s3://");
    if !is_s3
        && (args.endpoint.is_some()
            || args.region.is_some()
            || args.path_style
            || args.create_bucket)
    {
        bail!(
            "--endpoint, --region, --path-style and --create-bucket are for S3 targets \
             (--target s3://BUCKET); {t} is not one"
        );
    }
    if is_s3 {
        let mut o = S3Options::from_url(t)?;
        o.endpoint = args.endpoint.clone();
        o.region = args.region.clone();
        o.path_style = args.path_style;
        // Reading commands never create the bucket: a missing one is a mistyped name, not
        // an empty target (a named target's `create-bucket = true` is for restores).
        o.create_bucket = args.create_bucket && folder != Folder::Existing;
        o.multipart_threshold = args.multipart_threshold();
        o.part_size = args.multipart_threshold().max(backend_s3::MIN_PART_SIZE);
        o.profile = args.named.as_ref().and_then(|n| n.aws_profile.clone());
        o.timeout = timeout;
        let prefix = o.prefix.trim_matches('/');
        if folder == Folder::CreatedIfMissing && !prefix.is_empty() {
            crate::note!(
                "note: s3://{}/{prefix} is a prefix inside the bucket: this tool reads and \
                 writes it, but Joplin's S3 target syncs a bucket's root only, so no client can \
                 sync from it (fine for a staging copy; `migrate` moves it to a bucket's root).",
                o.bucket
            );
        }
        return Ok(Arc::new(S3Storage::new(o)?));
    }
    if let Some(dir) = local_folder(t)? {
        // Absolute and without a trailing slash or `.` parts, so the target reads the same in
        // snapshots and journals however it was typed (a rerun must find its journal).
        let dir: PathBuf = std::path::absolute(&dir)
            .unwrap_or(dir)
            .components()
            .collect();
        return Ok(Arc::new(FsStorage::new(dir)));
    }
    if let Some((scheme, _)) = t.split_once("://") {
        bail!(
            "--target {t}: unknown kind of target {scheme:?}. Use a folder path (or file:///path), \
             s3://BUCKET[/PREFIX], a WebDAV URL (https://…, webdav://…) or \
             joplin-server+http(s)://host:port/."
        );
    }
    bail!("--target is empty: give the folder your Joplin clients sync to")
}

/// The folder of a filesystem target (`/path` or `file:///path`), once URLs, S3 and Joplin
/// Server were ruled out.
fn local_folder(t: &str) -> Result<Option<PathBuf>> {
    if t.starts_with("file://") {
        // A URL: percent-escapes decoded (`my%20notes`), `file://localhost/…` is local.
        let path = url::Url::parse(t)
            .ok()
            .and_then(|u| u.to_file_path().ok())
            .with_context(|| {
                format!(
                    "--target {t}: not a local file URL. Write it as file:///absolute/path \
                     (three slashes), or give the folder path itself."
                )
            })?;
        return Ok(Some(path));
    }
    Ok((!t.is_empty() && !t.contains("://")).then(|| PathBuf::from(t)))
}

/// What a command expects of a filesystem target's folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Folder {
    /// Read (verify, status, export, clear, a migration's source): a missing folder is a
    /// mistyped path, not an empty target.
    Existing,
    /// Written (restore, rollback, a migration's destination): created when missing, but only
    /// inside an existing folder, so a typo in a parent (or an unmounted disk) is not silently
    /// turned into a new tree of folders.
    CreatedIfMissing,
}

fn check_folder(args: &TargetArgs, folder: Folder) -> Result<()> {
    let t = args.target.trim();
    let remote = t.starts_with("joplin-server+")
        || t.starts_with("s3://")
        || args.backend == Some(BackendKind::JoplinServer)
        || backend_webdav::is_webdav_url(t);
    let Some(dir) = local_folder(t)?.filter(|_| !remote) else {
        return Ok(());
    };
    if dir.is_dir() {
        return Ok(());
    }
    if dir.exists() {
        bail!(
            "{}: this is a file, not a folder. Give the folder your Joplin clients sync \
             to.",
            dir.display()
        );
    }
    match folder {
        Folder::Existing => bail!(
            "{}: no such folder. Check the path (the folder your Joplin clients sync \
             to; see `joplin-restore targets` for named targets).",
            dir.display()
        ),
        Folder::CreatedIfMissing => {
            let parent = dir
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            if !parent.is_dir() {
                bail!(
                    "{}: its parent folder {} does not exist. Check the path (is a disk \
                     not mounted?), or create the parent first if a new target there is meant.",
                    dir.display(),
                    parent.display()
                );
            }
            Ok(())
        }
    }
}

/// WebDAV: the URL's collection; username from --username (or the URL); the password only
/// when there is a username (anonymous otherwise).
fn open_webdav(
    args: &TargetArgs,
    t: &str,
    folder: Folder,
    timeout: Duration,
) -> Result<Arc<dyn Storage>> {
    let (url, url_user) =
        backend_webdav::parse_target(t).map_err(|e| anyhow::anyhow!("--target: {e}"))?;
    let username = args.username.clone().filter(|u| !u.is_empty()).or(url_user);
    let server = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
    let password = match &username {
        Some(u) => Some(backend_webdav::Secret::new(password(
            args,
            &format!("{u} on {server}"),
        )?)),
        None => None,
    };
    let mut storage = WebDavStorage::new(WebDavConfig {
        url,
        username,
        password,
        timeout,
    })?;
    // http(s):// is WebDAV unless told otherwise: say how to reach a Joplin Server instead.
    if args.backend.is_none() && !t.to_ascii_lowercase().starts_with("webdav") {
        storage = storage.with_other_kind_hint(format!(
            "If this is a Joplin Server, write --target joplin-server+{t} or add \
             --backend joplin-server."
        ));
    }
    if folder == Folder::Existing {
        storage = storage.with_existing_root();
    }
    storage = storage.with_credential_hints(credential_hints(args));
    Ok(Arc::new(storage))
}

/// The backend wrapped in the pacer, with per-backend defaults; `--target NAME:` is looked up
/// in the config file first.
/// `folder`: whether a filesystem target must exist already.
pub fn open_paced(args: &TargetArgs, pacer: &PacerArgs, folder: Folder) -> Result<Arc<Paced>> {
    let (args, pacer) = resolve(args, pacer)?;
    let (args, pacer) = (&args, &pacer);
    check_folder(args, folder)?;
    let timeout = pacer.timeout.unwrap_or(backend_core::DEFAULT_TIMEOUT);
    let storage = open_storage(args, folder, timeout)?;
    let caps = storage.capabilities();
    let opts = PacerOptions {
        tps_limit: pacer.tpslimit,
        bw_limit: pacer.bwlimit,
        transfers: pacer.transfers.unwrap_or(caps.default_transfers).max(1),
        retries: pacer.retries.unwrap_or(DEFAULT_RETRIES),
        ..Default::default()
    };
    Ok(Arc::new(Paced::new(storage, opts)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512k"), Ok(512 * 1024));
        assert_eq!(parse_size("10M"), Ok(10 * 1024 * 1024));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("fast").is_err());
        assert!(parse_size("0").is_err());
        assert_eq!(parse_rate("0.5"), Ok(0.5));
        for bad in ["0", "-1", "inf", "NaN", "fast"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_transfers("8"), Ok(8));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        for bad in ["0", "0.5s", "-1m", "soon", "2d", "25h", ""] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(parse_transfers("0").is_err());
    }

    #[test]
    fn local_folders() {
        let f = |t: &str| local_folder(t).unwrap();
        assert_eq!(f("/srv/sync"), Some(PathBuf::from("/srv/sync")));
        assert_eq!(f("rel/dir"), Some(PathBuf::from("rel/dir")));
        assert_eq!(f("file:///srv/sync"), Some(PathBuf::from("/srv/sync")));
        // Percent-escapes are decoded, as in any file URL a file manager copies.
        assert_eq!(
            f("file:///srv/my%20notes%20%C3%A9"),
            Some(PathBuf::from("/srv/my notes é"))
        );
        assert_eq!(f("file://localhost/srv/x"), Some(PathBuf::from("/srv/x")));
        assert_eq!(f("https://dav.example/x"), None);
        assert_eq!(f(""), None);
        // Another host, or a relative URL, is no local folder: said, not guessed.
        for t in ["file://nas/share", "file://srv/sync"] {
            let e = local_folder(t).unwrap_err().to_string();
            assert!(e.contains("file:///absolute/path"), "{t}: {e}");
        }
    }

    /// Shown URLs keep no user, password nor query value; query names stay.
    #[test]
    fn shown_urls_hold_no_credentials() {
        assert_eq!(
            without_credentials("https://bob:pw@dav.example.com/joplin?token=abc&x=1"),
            "https://dav.example.com/joplin?token=…&x=…"
        );
        assert_eq!(
            without_credentials("s3://bucket/Joplin?region=eu-west-1"),
            "s3://bucket/Joplin?region=…"
        );
        assert_eq!(
            without_credentials("https://dav.example.com/a b"),
            "https://dav.example.com/a b"
        );
        assert_eq!(without_credentials("/home/me/sync"), "/home/me/sync");
    }

    /// A server URL with `#`, `?` or a lone `%` is a usage error; a local path may hold them.
    #[test]
    fn server_urls_with_a_fragment_query_or_lone_percent_are_refused() {
        for bad in [
            "http://h/dav/Notes #2",
            "https://h/dav/x?folder=y",
            "webdav://h/dav/50%",
            "http://h/dav/%zz",
        ] {
            let e = refuse_url_oddities("--target", bad).unwrap_err();
            assert!(e.is::<crate::exit::Usage>(), "{bad}: {e:#}");
        }
        for ok in [
            "http://h/dav/Notes %232",
            "http://h/dav/a b/ü",
            "/home/me/50% #2?",
            "s3://bucket",
        ] {
            refuse_url_oddities("--target", ok).unwrap();
        }
    }

    /// Sizes as rclone writes them, with or without the unit's B.
    #[test]
    fn sizes_with_or_without_b() {
        for (given, want) in [
            ("512k", 512 * 1024),
            ("10M", 10 << 20),
            ("10MB", 10 << 20),
            ("10MiB", 10 << 20),
            ("1.5G", 3 << 29),
            ("4096", 4096),
            ("4096b", 4096),
        ] {
            assert_eq!(parse_size(given), Ok(want), "{given}");
        }
        for bad in ["", "B", "ten", "0", "-1M", "10MiBB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
