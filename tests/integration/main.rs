//! The integration suite, one test binary: every module below runs against real peers on
//! 127.0.0.1 (the real Joplin CLI as the judge). One binary links once and lets the test
//! runner overlap slow, mostly waiting tests of different modules.

mod support;

mod backup_formats;
mod bad_input;
mod client_api;
mod client_profiles;
mod config;
mod e2e_e2ee;
mod e2e_export;
mod e2e_fs;
mod e2e_joplin_server;
mod e2e_migrate;
mod e2e_partial;
mod e2e_rollback;
mod e2e_s3;
mod e2e_webdav;
mod e2ee_fixture;
mod faults;
mod json_report;
mod locks_status;
mod memory;
mod resume;
mod s3_backend;
mod terminal;
mod webdav_backend;
