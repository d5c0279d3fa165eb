//! joplin-restore: restore a Joplin backup straight into a sync target, keeping IDs.
//!
//! Stages: [`backup`] (read) → [`validate`] → [`plan`] → [`execute`] → [`verify`], with
//! [`snapshot`] before anything destructive. Storage backends live in `backends/`.

pub mod backup;
pub mod blob_name;
pub mod clear;
pub mod client;
pub mod config;
pub mod e2ee;
pub mod execute;
pub mod exit;
pub mod export;
pub mod generate;
pub mod id;
pub mod inspect;
pub mod item;
pub mod journal;
pub mod merge;
pub mod migrate;
pub mod newids;
pub mod open;
pub mod plan;
pub mod progress;
pub mod report;
pub mod restore;
pub mod rollback;
pub mod safety;
pub mod selection;
pub mod snapshot;
pub mod status;
pub mod target;
pub mod validate;
pub mod verify;
