//! Named targets from the config file (`--target NAME:`), as a user writes them: a folder with
//! transfer limits, a WebDAV account whose password is in a file or a variable, an S3 store
//! whose keys come from an AWS profile; and the mistakes (unknown name, a password in the file).

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use support::s3::{S3Kind, S3Server, REGION};
use support::webdav::{DavServer, PASS, USER};
use support::{sample_jex, text, tree_hashes};

/// Our binary with `config` as the config file (through the environment, as a cron job would
/// set it), a private HOME, no password variables and no AWS keys from the caller.
fn jr_cfg(home: &Path, config: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_joplin-restore"));
    c.args(args)
        .stdin(std::process::Stdio::null())
        .env("HOME", home)
        .env("JOPLIN_RESTORE_CONFIG", config)
        .env("AWS_EC2_METADATA_DISABLED", "true");
    for k in [
        "JOPLIN_RESTORE_PASSWORD",
        "JOPLIN_RESTORE_FROM_PASSWORD",
        "JOPLIN_RESTORE_USERNAME",
        "JOPLIN_RESTORE_TARGET",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
    ] {
        c.env_remove(k);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run joplin-restore")
}

fn ok(o: Output) -> Value {
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap_or(Value::Null)
}

fn jex() -> String {
    sample_jex().display().to_string()
}

struct Setup {
    _tmp: tempfile::TempDir,
    home: PathBuf,
    config: PathBuf,
}

impl Setup {
    fn run(&self, args: &[&str]) -> Output {
        jr_cfg(&self.home, &self.config, args, &[])
    }
    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        jr_cfg(&self.home, &self.config, args, env)
    }
}

fn setup(config_text: &str) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let config = tmp.path().join("config.toml");
    std::fs::write(&config, config_text).unwrap();
    Setup {
        home,
        config,
        _tmp: tmp,
    }
}

#[test]
fn named_folder_target_carries_its_limits_and_the_command_line_wins() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("sync");
    let other = tmp.path().join("copy");
    let s = setup(&format!(
        "[targets.home]\ntarget = {:?}\ntransfers = 3\ntpslimit = 500\nbwlimit = \"50M\"\n\
         retries = 4\n\n[targets.copy]\ntarget = {:?}\n",
        folder.display().to_string(),
        other.display().to_string()
    ));
    let run = |args: &[&str]| s.run(args);

    let r = ok(run(&[
        "--json",
        "restore",
        &jex(),
        "--target",
        "home:",
        "--yes",
    ]));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["limits"]["transfers"], 3, "{r}");
    assert_eq!(r["limits"]["tpslimit"], 500.0, "{r}");
    assert_eq!(r["limits"]["bwlimit"], 50 * 1024 * 1024, "{r}");
    assert_eq!(r["limits"]["retries"], 4, "{r}");
    assert!(folder.join("info.json").is_file());
    assert_eq!(r["verify"]["differences"], serde_json::json!([]), "{r}");

    // Options on the command line win over the file.
    let r = ok(run(&[
        "--json",
        "restore",
        &jex(),
        "--target",
        "home:",
        "--dry-run",
        "--transfers",
        "1",
        "--bwlimit",
        "1M",
    ]));
    assert_eq!(r["limits"]["transfers"], 1, "{r}");
    assert_eq!(r["limits"]["bwlimit"], 1024 * 1024, "{r}");
    assert_eq!(r["limits"]["tpslimit"], 500.0, "{r}");

    // `verify` and `migrate` take names too (the source side of a migrate as well).
    let o = run(&["verify", &jex(), "--target", "home:"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = run(&["migrate", "--from", "home:", "--to", "copy:", "--yes", "-q"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(tree_hashes(&folder), tree_hashes(&other));

    // `targets` lists them for people and for scripts.
    let o = run(&["targets"]);
    let listing = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{}", text(&o));
    assert!(listing.contains("home:  fs"), "{listing}");
    assert!(listing.contains("--transfers 3"), "{listing}");
    let v = ok(run(&["--json", "targets"]));
    assert_eq!(v["targets"][0]["name"], "copy", "{v}");
    assert_eq!(v["targets"][1]["name"], "home", "{v}");
    assert_eq!(v["targets"][1]["kind"], "fs", "{v}");
    assert_eq!(v["exists"], true, "{v}");
}

#[test]
fn named_webdav_target_reads_its_password_from_a_file_or_a_variable() {
    let srv = DavServer::apache();
    let url = srv.url("Joplin");
    let s = setup(&format!(
        "[targets.dav]\ntarget = {url:?}\nusername = \"{USER}\"\n\
         password-file = \"~/dav.pass\"\ntpslimit = 100\n\n\
         [targets.dav-env]\ntarget = {url:?}\nusername = \"{USER}\"\n\
         password-env = \"MY_DAV_PASSWORD\"\n"
    ));
    std::fs::write(s.home.join("dav.pass"), format!("{PASS}\n")).unwrap();
    let r = ok(s.run(&["--json", "restore", &jex(), "--target", "dav:", "--yes"]));
    assert_eq!(r["verify"]["differences"], serde_json::json!([]), "{r}");
    assert_eq!(r["limits"]["tpslimit"], 100.0, "{r}");
    assert!(srv.data.join("Joplin/info.json").is_file());

    let o = s.run_env(
        &["verify", &jex(), "--target", "dav-env:"],
        &[("MY_DAV_PASSWORD", PASS)],
    );
    assert!(o.status.success(), "{}", text(&o));

    // The variable is not set: the error names it; no prompt without a terminal.
    let o = s.run(&["verify", &jex(), "--target", "dav-env:"]);
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("MY_DAV_PASSWORD"), "{err}");
    // A wrong password in the file is the server's refusal, said as such.
    std::fs::write(s.home.join("dav.pass"), "wrong\n").unwrap();
    let o = s.run(&["verify", &jex(), "--target", "dav:"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(!String::from_utf8_lossy(&o.stderr).contains(PASS));
    // The environment wins over the config file, as for every option.
    let o = s.run_env(
        &["verify", &jex(), "--target", "dav:"],
        &[("JOPLIN_RESTORE_PASSWORD", PASS)],
    );
    assert!(o.status.success(), "{}", text(&o));

    // A password inside a URL is refused, and never shown, in every place a URL goes.
    std::fs::write(
        &s.config,
        "[targets.leaky]\ntarget = \"s3://bucket\"\nendpoint = \"http://key:s3cr3t@127.0.0.1:1\"\n\n\
         [targets.leaky-js]\ntarget = \"joplin-server+http://me:s3cr3t@127.0.0.1:1/\"\n\n\
         [targets.leaky-dav]\ntarget = \"http://me:s3cr3t@127.0.0.1:1/dav/\"\n",
    )
    .unwrap();
    for t in ["leaky:", "leaky-js:", "leaky-dav:"] {
        let o = s.run(&["status", "--target", t]);
        assert_eq!(o.status.code(), Some(4), "{t}: {}", text(&o));
        assert!(
            text(&o).contains("contains a password"),
            "{t}: {}",
            text(&o)
        );
        assert!(!text(&o).contains("s3cr3t"), "{t}: {}", text(&o));
    }
    let o = s.run(&["--json", "targets"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("s3cr3t"), "{}", text(&o));
}

#[test]
fn named_s3_target_takes_its_keys_from_an_aws_profile() {
    let server = S3Server::start(S3Kind::S3sFs);
    let s = setup(&format!(
        "[targets.store]\ntarget = \"s3://notes\"\nendpoint = {:?}\npath-style = true\n\
         create-bucket = true\nregion = \"{REGION}\"\naws-profile = \"joplin-lab\"\n\n\
         [targets.wrong-profile]\ntarget = \"s3://notes\"\nendpoint = {:?}\npath-style = true\n\
         region = \"{REGION}\"\naws-profile = \"nobody\"\n",
        server.endpoint, server.endpoint
    ));
    let aws = s.home.join(".aws");
    std::fs::create_dir_all(&aws).unwrap();
    std::fs::write(
        aws.join("credentials"),
        format!(
            "[default]\naws_access_key_id = nobody\naws_secret_access_key = nothing\n\n\
             [joplin-lab]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            server.access_key, server.secret_key
        ),
    )
    .unwrap();
    std::fs::write(aws.join("config"), "").unwrap();
    let r = ok(s.run(&["--json", "restore", &jex(), "--target", "store:", "--yes"]));
    assert_eq!(r["verify"]["differences"], serde_json::json!([]), "{r}");
    assert!(server.dir.path().join("data/notes/info.json").is_file());

    let o = s.run(&["verify", &jex(), "--target", "wrong-profile:"]);
    assert!(!o.status.success(), "{}", text(&o));
    // Missing keys are said at once (not retried as a network fault), naming the profile.
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("profile \"nobody\""), "{err}");
    assert!(err.contains("authentication failed"), "{err}");
}

#[test]
fn unknown_names_and_plain_text_passwords_are_refused_before_anything_is_touched() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("sync");
    let s = setup(&format!(
        "[targets.home]\ntarget = {:?}\n",
        folder.display().to_string()
    ));
    let o = s.run(&["restore", &jex(), "--target", "hme:", "--yes"]);
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(err.contains("hme") && err.contains("home:"), "{err}");
    assert!(!folder.exists());

    std::fs::write(
        &s.config,
        format!(
            "[targets.home]\ntarget = {:?}\npassword = \"hunter2\"\n",
            folder.display().to_string()
        ),
    )
    .unwrap();
    let o = s.run(&["restore", &jex(), "--target", "home:", "--yes"]);
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(err.contains("password-file"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    assert!(!folder.exists());

    // No config file at all: the error says where it looked and how to make one.
    std::fs::remove_file(&s.config).unwrap();
    let o = s.run(&["restore", &jex(), "--target", "home:", "--yes"]);
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(err.contains(&s.config.display().to_string()), "{err}");
}
