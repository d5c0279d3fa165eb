//! Named targets from a config file, like rclone's remotes: `--target nextcloud:` stands for
//! the URL, account, password source and transfer limits written once under `[targets.nextcloud]`.
//!
//! The file is TOML, at `--config FILE`, else `$JOPLIN_RESTORE_CONFIG`, else
//! `<config dir>/joplin-restore/config.toml` (`~/.config` on Linux). Keys are the command-line
//! option names. Options given on the command line or in the environment win over the file.
//! Passwords are never stored in it: only where to read them (`password-file`, `password-env`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::open::{parse_size, BackendKind};

/// Keys that would put a secret in the file; refused with a pointer to the safe keys.
const SECRET_KEYS: &[&str] = &[
    "password",
    "pass",
    "secret",
    "token",
    "aws-secret-access-key",
    "aws_secret_access_key",
    "secret-access-key",
];

/// One `[targets.NAME]` table.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NamedTarget {
    /// Folder path, file:///…, s3://BUCKET[/PREFIX], WebDAV URL or joplin-server+http(s)://….
    pub target: String,
    pub backend: Option<BackendKind>,
    pub username: Option<String>,
    /// File whose first line is the password (`~/` allowed).
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub path_style: Option<bool>,
    pub create_bucket: Option<bool>,
    /// Profile in ~/.aws/credentials and ~/.aws/config for an S3 target.
    pub aws_profile: Option<String>,
    /// e.g. "8M".
    pub multipart_threshold: Option<String>,
    pub transfers: Option<usize>,
    pub tpslimit: Option<f64>,
    /// e.g. "2M".
    pub bwlimit: Option<String>,
    pub retries: Option<u32>,
    /// e.g. "60s" (`--timeout`).
    pub timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    targets: BTreeMap<String, NamedTarget>,
}

/// The loaded file: where it is and its named targets.
#[derive(Debug, Default)]
pub struct Config {
    pub path: PathBuf,
    pub exists: bool,
    pub targets: BTreeMap<String, NamedTarget>,
}

static CONFIG_PATH: OnceLock<PathBuf> = OnceLock::new();

/// Set by `--config` before any target is opened.
pub fn set_path(path: PathBuf) {
    let _ = CONFIG_PATH.set(path);
}

/// `--config`, else `$JOPLIN_RESTORE_CONFIG`, else the platform's config dir.
pub fn path() -> PathBuf {
    if let Some(p) = CONFIG_PATH.get() {
        return p.clone();
    }
    if let Some(p) = std::env::var_os("JOPLIN_RESTORE_CONFIG").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    dirs::config_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("joplin-restore")
        .join("config.toml")
}

/// `NAME:` (rclone's remote syntax): letters, digits, `_`, `-`, `.`, at least two characters
/// so that a Windows drive (`C:`) is never taken for a name.
pub fn target_name(target: &str) -> Option<&str> {
    let name = target.trim().strip_suffix(':')?;
    let ok = name.len() >= 2
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    ok.then_some(name)
}

impl Config {
    /// Read the config file; a missing file is an empty config.
    pub fn load() -> Result<Config> {
        Self::load_from(&path())
    }

    pub fn load_from(path: &Path) -> Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Config {
                    path: path.to_path_buf(),
                    exists: false,
                    targets: BTreeMap::new(),
                })
            }
            Err(e) => bail!("config file {}: cannot read it ({e})", path.display()),
        };
        let raw: toml::Table = toml::from_str(&text).map_err(|e| {
            // The message and the line only: the parser's own report quotes the line, which
            // may be a mistyped `password = …`.
            let line = e
                .span()
                .map(|r| text[..r.start.min(text.len())].matches('\n').count() + 1);
            anyhow::anyhow!(
                "config file {}: not valid TOML{}: {}",
                path.display(),
                line.map(|l| format!(" at line {l}")).unwrap_or_default(),
                e.message().trim()
            )
        })?;
        if let Some(toml::Value::Table(targets)) = raw.get("targets") {
            for (name, t) in targets {
                if let toml::Value::Table(t) = t {
                    if let Some(k) = t.keys().find(|k| SECRET_KEYS.contains(&k.as_str())) {
                        crate::refuse!(
                            "config file {}, [targets.{name}]: `{k}` would keep a secret in \
                             plain text, so it is not read. Put the password in a file readable \
                             only by you and write `password-file = \"…\"`, or in an environment \
                             variable and write `password-env = \"VAR\"`. S3 keys come from the \
                             AWS environment or `aws-profile`.",
                            path.display()
                        );
                    }
                }
            }
        }
        let file: ConfigFile = toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "config file {}: {}. Keys are: target, backend, username, password-file, \
                 password-env, endpoint, region, path-style, create-bucket, aws-profile, \
                 multipart-threshold, transfers, tpslimit, bwlimit, retries, timeout.",
                path.display(),
                e.message().trim()
            )
        })?;
        for (name, t) in &file.targets {
            // A name `--target NAME:` cannot reach would be listed but never used (a
            // one-letter `a:` is a Windows drive, read as a folder path).
            if target_name(&format!("{name}:")) != Some(name.as_str()) {
                bail!(
                    "config file {}, [targets.{name}]: a target name needs at least two \
                     characters, a letter first, then letters, digits, `_`, `-` or `.` (one \
                     letter followed by `:` is a Windows drive). Rename it.",
                    path.display()
                );
            }
            t.check(name)
                .with_context(|| format!("config file {}", path.display()))?;
        }
        Ok(Config {
            path: path.to_path_buf(),
            exists: true,
            targets: file.targets,
        })
    }

    /// The named target, or an error listing the names there are.
    pub fn get(&self, name: &str) -> Result<&NamedTarget> {
        if let Some(t) = self.targets.get(name) {
            return Ok(t);
        }
        if !self.exists {
            bail!(
                "--target {name}: names a configured target, but there is no config file at {} \
                 (set --config FILE or JOPLIN_RESTORE_CONFIG, or write [targets.{name}] there; \
                 see `joplin-restore targets --help`)",
                self.path.display()
            );
        }
        let known: Vec<&str> = self.targets.keys().map(|k| k.as_str()).collect();
        bail!(
            "--target {name}: no [targets.{name}] in {}; configured: {}",
            self.path.display(),
            if known.is_empty() {
                "none".to_string()
            } else {
                known
                    .iter()
                    .map(|k| format!("{k}:"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )
    }
}

impl NamedTarget {
    fn check(&self, name: &str) -> Result<()> {
        if self.target.trim().is_empty() {
            bail!("[targets.{name}]: `target` is missing or empty (the folder or URL to sync to)");
        }
        if target_name(&self.target).is_some() {
            bail!(
                "[targets.{name}]: target = {:?} names another configured target; write the \
                 folder or URL itself",
                self.target
            );
        }
        for (key, v) in [
            ("multipart-threshold", &self.multipart_threshold),
            ("bwlimit", &self.bwlimit),
        ] {
            if let Some(v) = v {
                parse_size(v).map_err(|e| anyhow::anyhow!("[targets.{name}]: {key}: {e}"))?;
            }
        }
        if let Some(v) = &self.timeout {
            crate::open::parse_duration(v)
                .map_err(|e| anyhow::anyhow!("[targets.{name}]: timeout: {e}"))?;
        }
        if self.tpslimit.is_some_and(|t| t.is_nan() || t <= 0.0) {
            bail!("[targets.{name}]: tpslimit must be more than zero");
        }
        if self.transfers == Some(0) {
            bail!("[targets.{name}]: transfers must be at least 1");
        }
        if let Some(v) = &self.password_env {
            if v.is_empty() || v.contains('=') {
                bail!("[targets.{name}]: password-env must name an environment variable");
            }
        }
        Ok(())
    }

    /// `password-file` with a leading `~/` made absolute.
    pub fn password_file_path(&self) -> Option<PathBuf> {
        let p = self.password_file.as_ref()?;
        match p.strip_prefix("~") {
            Ok(rest) => dirs::home_dir().map(|h| h.join(rest)),
            Err(_) => Some(p.clone()),
        }
    }

    /// What kind of target this is, for listings.
    pub fn kind(&self) -> &'static str {
        let t = self.target.trim();
        if t.starts_with("joplin-server+") || self.backend == Some(BackendKind::JoplinServer) {
            "joplin-server"
        } else if t.starts_with("s3://") {
            "s3"
        } else if backend_webdav::is_webdav_url(t) {
            "webdav"
        } else {
            "fs"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.toml");
        std::fs::write(&p, text).unwrap();
        // The whole chain, as the CLI prints it.
        Config::load_from(&p).map_err(|e| anyhow::anyhow!("{e:#}"))
    }

    #[test]
    fn names_follow_rclone_and_spare_drive_letters() {
        assert_eq!(target_name("nextcloud:"), Some("nextcloud"));
        assert_eq!(target_name("my-s3.backup_2:"), Some("my-s3.backup_2"));
        assert_eq!(target_name("C:"), None);
        assert_eq!(target_name("s3://bucket"), None);
        assert_eq!(target_name("./folder"), None);
        assert_eq!(target_name("nextcloud"), None);
        assert_eq!(target_name("2fa:"), None);
    }

    #[test]
    fn reads_every_key() {
        let c = load(
            r#"
[targets.cloud]
target = "https://cloud.example.com/remote.php/dav/files/alice/Joplin"
username = "alice"
password-file = "~/.config/joplin-restore/cloud.pass"
tpslimit = 4
transfers = 2
bwlimit = "1M"
retries = 20
timeout = "90s"

[targets.minio]
target = "s3://joplin"
endpoint = "http://127.0.0.1:9000"
region = "eu-west-1"
path-style = true
create-bucket = true
aws-profile = "minio"
multipart-threshold = "16M"
password-env = "UNUSED"

[targets.server]
target = "https://joplin.example.com"
backend = "joplin-server"
"#,
        )
        .unwrap();
        assert!(c.exists);
        let cloud = c.get("cloud").unwrap();
        assert_eq!(cloud.username.as_deref(), Some("alice"));
        assert_eq!(cloud.tpslimit, Some(4.0));
        assert_eq!(cloud.timeout.as_deref(), Some("90s"));
        assert_eq!(cloud.transfers, Some(2));
        assert_eq!(cloud.retries, Some(20));
        assert_eq!(cloud.kind(), "webdav");
        let home = dirs::home_dir().unwrap();
        assert_eq!(
            cloud.password_file_path().unwrap(),
            home.join(".config/joplin-restore/cloud.pass")
        );
        let minio = c.get("minio").unwrap();
        assert_eq!(minio.kind(), "s3");
        assert_eq!(minio.path_style, Some(true));
        assert_eq!(minio.aws_profile.as_deref(), Some("minio"));
        assert_eq!(c.get("server").unwrap().kind(), "joplin-server");
        let err = c.get("nope").unwrap_err().to_string();
        assert!(err.contains("cloud:, minio:, server:"), "{err}");
    }

    #[test]
    fn refuses_plain_text_secrets_and_unknown_keys() {
        let err = load("[targets.a]\ntarget = \"/tmp/x\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("at least two"), "{err:#}");
        let text = "[targets.xy]\ntarget = \"/tmp/x\"\npassword = \"hunter2\"\n";
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("c.toml"), text).unwrap();
        let refused = Config::load_from(&dir.path().join("c.toml")).unwrap_err();
        assert_eq!(crate::exit::code_for(&refused), crate::exit::REFUSED);
        let err = load(text).unwrap_err().to_string();
        assert!(err.contains("password-file"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let err = load("[targets.xy]\ntarget = \"/tmp/x\"\ntpslimt = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("tpslimt") && err.contains("tpslimit"), "{err}");
        let err = load("[targets.xy]\ntarget = \"/tmp/x\"\nbwlimit = \"fast\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("bwlimit"), "{err}");
        let err = load("[targets.xy]\ntarget = \"/tmp/x\"\ntimeout = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("timeout") && err.contains("30s, 5m"), "{err}");
        let err = load("[targets.xy]\ntarget = \"other:\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("another configured target"), "{err}");
        let err = load("targets = [").unwrap_err().to_string();
        assert!(err.contains("not valid TOML"), "{err}");
        // A mistyped password line is not quoted back.
        for bad in ["password = hunter2", "password = 'hunter2"] {
            let err = load(&format!("[targets.xy]\ntarget = \"/tmp/x\"\n{bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("not valid TOML at line 3"), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn missing_file_is_empty_and_says_where() {
        let c = Config::load_from(Path::new("/nonexistent/joplin-restore.toml")).unwrap();
        assert!(!c.exists);
        let err = c.get("cloud").unwrap_err().to_string();
        assert!(err.contains("/nonexistent/joplin-restore.toml"), "{err}");
    }
}
