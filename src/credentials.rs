//! Where a server password comes from: never the command line (it would show in `ps` and shell
//! history). In order: `--password-file` (asked for explicitly, so it wins), then
//! `JOPLIN_RESTORE_PASSWORD`, then an interactive prompt.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{bail, Context, Result};
use backend_webdav::Secret;

pub const PASSWORD_ENV: &str = "JOPLIN_RESTORE_PASSWORD";

/// The password for `user` at `server`, or `None` when no username is set (anonymous access).
pub fn password_for(
    user: Option<&str>,
    server: &str,
    password_file: Option<&Path>,
) -> Result<Option<Secret>> {
    if let Some(f) = password_file {
        let raw = std::fs::read_to_string(f)
            .with_context(|| format!("--password-file {}: cannot read it", f.display()))?;
        // A file written by `echo` ends with a newline that is not part of the password.
        let p = raw.strip_suffix('\n').unwrap_or(&raw);
        let p = p.strip_suffix('\r').unwrap_or(p);
        if p.is_empty() {
            bail!("--password-file {}: the file is empty", f.display());
        }
        return Ok(Some(Secret::new(p)));
    }
    if let Ok(p) = std::env::var(PASSWORD_ENV) {
        if !p.is_empty() {
            return Ok(Some(Secret::new(p)));
        }
    }
    let Some(user) = user else {
        return Ok(None);
    };
    if !std::io::stdin().is_terminal() {
        bail!(
            "no password for user {user:?} on {server}: set {PASSWORD_ENV} or pass \
             --password-file FILE (there is no terminal to ask on)"
        );
    }
    let p = rpassword::prompt_password(format!("Password for {user} on {server}: "))
        .context("reading the password from the terminal")?;
    Ok(Some(Secret::new(p)))
}
