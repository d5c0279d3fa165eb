//! Turn `--target` and its options into a storage backend, wrapped in the pacer.
//!
//! Forms: a local path or `file:///path` (filesystem target); `https://…`, `http://…`,
//! `webdavs://…`, `webdav://…` (WebDAV, e.g. `https://host/remote.php/dav/files/USER/Joplin`).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Result};
use backend_core::pacer::{Paced, PacerOptions};
use backend_core::Storage;
use backend_fs::FsStorage;
use backend_webdav::{WebDavConfig, WebDavStorage};

/// Where the sync target is and how to reach it.
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// The sync target: a folder path (Joplin's "File system" target), file:///path, or a
    /// WebDAV URL (https://host/remote.php/dav/files/USER/Joplin, http://…, webdav(s)://…).
    #[arg(
        long,
        short = 't',
        value_name = "TARGET",
        env = "JOPLIN_RESTORE_TARGET"
    )]
    pub target: String,
    /// Username for the server (WebDAV). The password comes from JOPLIN_RESTORE_PASSWORD,
    /// --password-file or a prompt, never from the command line.
    #[arg(long, value_name = "USER", env = "JOPLIN_RESTORE_USERNAME")]
    pub username: Option<String>,
    /// Read the server password from this file (its first line).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
}

/// rclone-style transfer limits, shared by every command that talks to a target.
#[derive(Debug, Clone, clap::Args)]
pub struct PacerArgs {
    /// Parallel requests (default: what suits the backend).
    #[arg(long, value_name = "N")]
    pub transfers: Option<usize>,
    /// Requests per second, all transfers together (e.g. 10 or 0.5).
    #[arg(long, value_name = "RATE")]
    pub tpslimit: Option<f64>,
    /// Bytes per second, all transfers together (e.g. 512k, 10M).
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub bwlimit: Option<u64>,
    /// Retries per request on 429/5xx/connection errors, with backoff honouring Retry-After.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub retries: u32,
}

/// `512k`, `10M`, `1.5G`, plain bytes; binary multiples like rclone.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1024f64),
        Some('m' | 'M') => (&s[..s.len() - 1], 1024f64 * 1024.0),
        Some('g' | 'G') => (&s[..s.len() - 1], 1024f64 * 1024.0 * 1024.0),
        _ => (s, 1f64),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 512k, 10M or 1G"))?;
    if v.is_nan() || v <= 0.0 {
        return Err(format!("{s:?} must be more than zero"));
    }
    Ok((v * mult) as u64)
}

/// Open the backend named by `--target`, without the pacer.
pub fn open_storage(args: &TargetArgs) -> Result<Arc<dyn Storage>> {
    let t = args.target.trim();
    if let Some(rest) = t.strip_prefix("file://") {
        return Ok(Arc::new(FsStorage::new(PathBuf::from(rest))));
    }
    if backend_webdav::is_webdav_url(t) {
        return open_webdav(args, t);
    }
    if let Some((scheme, _)) = t.split_once("://") {
        bail!(
            "--target {t}: unknown kind of target {scheme:?}. Use a folder path (or file:///path) \
             or a WebDAV URL (https://…, http://…, webdavs://…, webdav://…)."
        );
    }
    if t.is_empty() {
        bail!("--target is empty: give the folder your Joplin clients sync to");
    }
    Ok(Arc::new(FsStorage::new(PathBuf::from(t))))
}

fn open_webdav(args: &TargetArgs, t: &str) -> Result<Arc<dyn Storage>> {
    let (url, url_user) =
        backend_webdav::parse_target(t).map_err(|e| anyhow::anyhow!("--target: {e}"))?;
    let username = args.username.clone().or(url_user);
    let server = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
    let password = crate::credentials::password_for(
        username.as_deref(),
        &server,
        args.password_file.as_deref(),
    )?;
    let storage = WebDavStorage::new(WebDavConfig {
        url,
        username,
        password,
    })?;
    Ok(Arc::new(storage))
}

/// The backend wrapped in the pacer, with per-backend defaults.
pub fn open_paced(args: &TargetArgs, pacer: &PacerArgs) -> Result<Arc<Paced>> {
    let storage = open_storage(args)?;
    let caps = storage.capabilities();
    let opts = PacerOptions {
        tps_limit: pacer.tpslimit,
        bw_limit: pacer.bwlimit,
        transfers: pacer.transfers.unwrap_or(caps.default_transfers).max(1),
        retries: pacer.retries,
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
    }
}
