//! The primary machine: the Joplin client's own profile folder and its Data API.
//!
//! - [`profiles`]: find profiles (desktop, CLI, portable, multi-profile sub-folders) and describe
//!   them (size, notes, sync target, E2EE, whether Joplin runs on them);
//! - [`reset`]: move a profile aside (never delete) so Joplin starts fresh;
//! - [`customise`]: put back keymap, CSS, templates and plugins from a backup set's `profile/`;
//! - [`data_api`]: a throttled, retrying client of a running Joplin's Data API;
//! - [`import`]: wipe a running client and import a backup through the Data API, keeping IDs.

pub mod cli;
pub mod customise;
pub mod data_api;
pub mod import;
pub mod profiles;
pub mod reset;

use std::path::PathBuf;

/// A sibling-safe timestamp for folder names (`20261124-120000`).
pub fn stamp() -> String {
    chrono::Local::now().format("%Y%m%d-%H%M%S").to_string()
}

/// `base` itself if free, else `base-2`, `base-3`, … (bounded).
pub fn free_path(base: PathBuf) -> std::io::Result<PathBuf> {
    if !base.exists() {
        return Ok(base);
    }
    for n in 2..1000 {
        let p = PathBuf::from(format!("{}-{n}", base.display()));
        if !p.exists() {
            return Ok(p);
        }
    }
    Err(std::io::Error::other(format!(
        "{} and 998 numbered variants already exist",
        base.display()
    )))
}
