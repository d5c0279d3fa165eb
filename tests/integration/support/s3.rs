//! Real S3 servers on 127.0.0.1 for the tests: s3s-fs (checks SigV4, plain files on disk) and
//! s3rver (checks SigV4), installed by `scripts/install-test-deps.sh`. Each test starts its own
//! server on a free port and the server is killed when the handle drops.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use backend_s3::{S3Options, S3Storage};
use serde_json::json;

pub const REGION: &str = "us-east-1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3Kind {
    S3sFs,
    S3rver,
}

pub struct S3Server {
    pub kind: S3Kind,
    pub endpoint: String,
    pub port: u16,
    pub access_key: &'static str,
    pub secret_key: &'static str,
    child: Child,
    pub dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn bin(rel: &str) -> PathBuf {
    let p = super::tools().join(rel);
    assert!(
        p.exists(),
        "{} is not installed: run `bash scripts/install-test-deps.sh` (or set JR_TOOLS)",
        p.display()
    );
    p
}

impl S3Server {
    pub fn start(kind: S3Kind) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let port = free_port();
        let (mut cmd, access_key, secret_key) = match kind {
            S3Kind::S3sFs => {
                let mut c = Command::new(bin("cargo-root/bin/s3s-fs"));
                c.args(["--host", "127.0.0.1", "--port", &port.to_string()])
                    .args(["--access-key", "labkey", "--secret-key", "labsecret"])
                    .arg(&data);
                (c, "labkey", "labsecret")
            }
            S3Kind::S3rver => {
                let mut c = Command::new(bin("s3rver/node_modules/.bin/s3rver"));
                c.arg("-d").arg(&data).args([
                    "-a",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "--no-vhost-buckets",
                ]);
                (c, "S3RVER", "S3RVER")
            }
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start the S3 server");
        let mut s = S3Server {
            kind,
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
            access_key,
            secret_key,
            child,
            dir,
        };
        s.wait_ready();
        s
    }

    /// Wait (at most 30 s) until the server answers HTTP.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "{:?} exited at start ({status}):\n{}",
                    self.kind,
                    self.log()
                );
            }
            if let Ok(mut c) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = c.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
                let mut buf = [0u8; 16];
                if matches!(c.read(&mut buf), Ok(n) if n > 0 && buf.starts_with(b"HTTP/")) {
                    return;
                }
            }
            if Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "{:?} did not answer on {}:\n{}",
            self.kind,
            self.endpoint,
            self.log()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Options for our backend against this server, with the server's keys.
    pub fn options(&self, bucket: &str) -> S3Options {
        self.options_at(&self.endpoint, bucket)
    }

    /// Same, through another endpoint (a proxy in front of this server).
    pub fn options_at(&self, endpoint: &str, bucket: &str) -> S3Options {
        let mut o = S3Options::new(bucket);
        o.endpoint = Some(endpoint.to_string());
        o.region = Some(REGION.into());
        o.path_style = true;
        o.static_credentials = Some((self.access_key.into(), self.secret_key.into()));
        o
    }

    pub async fn create_bucket_async(&self, bucket: &str) {
        use backend_core::Storage;
        let mut o = self.options(bucket);
        o.create_bucket = true;
        S3Storage::new(o)
            .unwrap()
            .ensure_root()
            .await
            .unwrap_or_else(|e| panic!("create bucket {bucket}: {e}\n{}", self.log()));
    }

    pub fn create_bucket(&self, bucket: &str) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(self.create_bucket_async(bucket));
    }

    /// Environment for our binary: the keys through the AWS chain, isolated from any
    /// ~/.aws of the machine running the tests.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        self.env_with_secret(self.secret_key)
    }

    pub fn env_with_secret(&self, secret: &str) -> Vec<(&'static str, String)> {
        let none = self.dir.path().join("empty-aws-config");
        if !none.exists() {
            std::fs::write(&none, "").unwrap();
        }
        let none = none.display().to_string();
        vec![
            ("AWS_ACCESS_KEY_ID", self.access_key.to_string()),
            ("AWS_SECRET_ACCESS_KEY", secret.to_string()),
            ("AWS_REGION", REGION.to_string()),
            ("AWS_CONFIG_FILE", none.clone()),
            ("AWS_SHARED_CREDENTIALS_FILE", none),
            ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ]
    }

    /// Our CLI's target options for `bucket` (credentials go through [`S3Server::env`]).
    pub fn target_args(&self, bucket: &str) -> Vec<String> {
        vec![
            "--target".into(),
            format!("s3://{bucket}"),
            "--endpoint".into(),
            self.endpoint.clone(),
            "--path-style".into(),
        ]
    }

    /// Joplin CLI settings for sync target 8 on this server (`real-servers.md` §4).
    pub fn joplin_config(&self, bucket: &str) -> serde_json::Value {
        json!({
            "sync.target": 8,
            "sync.8.path": bucket,
            "sync.8.url": self.endpoint,
            "sync.8.region": REGION,
            "sync.8.username": self.access_key,
            "sync.8.password": self.secret_key,
            "sync.8.forcePathStyle": true,
        })
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run our binary with the server's credentials in the environment.
pub fn jr_s3(server: &S3Server, args: &[&str]) -> std::process::Output {
    jr_s3_env(&server.env(), args)
}

pub fn jr_s3_env(env: &[(&'static str, String)], args: &[&str]) -> std::process::Output {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    super::jr_env(args, &env)
}
