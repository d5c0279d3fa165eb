//! The password of a password-protected (7z AES) backup.
//!
//! Asked for only when an archive turns out to be encrypted. Sources, first that applies:
//! `--backup-password-file`, env `JOPLIN_RESTORE_BACKUP_PASSWORD`, a prompt on the terminal.
//! Never taken from argv (other users can read it there), never printed or logged.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};

pub const PASSWORD_ENV: &str = "JOPLIN_RESTORE_BACKUP_PASSWORD";

/// A password plus where it came from (for messages; never the password itself).
#[derive(Clone)]
pub struct Secret {
    pub value: String,
    pub origin: String,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(from {})", self.origin)
    }
}

/// Hands out the backup password, asking at most once per run.
#[derive(Debug, Default)]
pub struct PasswordSource {
    file: Option<PathBuf>,
    cached: Mutex<Option<Secret>>,
}

impl PasswordSource {
    pub fn new(file: Option<PathBuf>) -> Self {
        PasswordSource {
            file,
            cached: Mutex::new(None),
        }
    }

    /// The password for `archive`, which has just been found to be encrypted.
    pub fn get(&self, archive: &Path) -> Result<Secret> {
        let mut cached = self.cached.lock().expect("poisoned");
        if let Some(s) = cached.as_ref() {
            return Ok(s.clone());
        }
        let secret = self.fetch(archive)?;
        *cached = Some(secret.clone());
        Ok(secret)
    }

    fn fetch(&self, archive: &Path) -> Result<Secret> {
        if let Some(file) = &self.file {
            let raw = std::fs::read_to_string(file).with_context(|| {
                format!(
                    "cannot read the backup password file {}: check the path given to \
                     --backup-password-file",
                    file.display()
                )
            })?;
            // The first line, as for every password file (an editor's final newline, or a
            // blank line after it, is not part of the password).
            let value = raw
                .lines()
                .next()
                .unwrap_or("")
                .trim_end_matches('\r')
                .to_string();
            return Ok(Secret {
                value,
                origin: format!("the password file {}", file.display()),
            });
        }
        if let Some(v) = std::env::var_os(PASSWORD_ENV) {
            return Ok(Secret {
                value: v.to_string_lossy().into_owned(),
                origin: format!("${PASSWORD_ENV}"),
            });
        }
        if std::io::stdin().is_terminal() {
            let value = rpassword::prompt_password(format!(
                "Password of the backup archive {}: ",
                archive.display()
            ))
            .context("cannot read the password from the terminal")?;
            return Ok(Secret {
                value,
                origin: "the password typed at the prompt".into(),
            });
        }
        Err(crate::exit::Refusal(format!(
            "{} is password-protected and no password was given. Set {PASSWORD_ENV}, or pass \
             --backup-password-file FILE, or run in a terminal to be asked.",
            archive.display()
        ))
        .into())
    }
}
