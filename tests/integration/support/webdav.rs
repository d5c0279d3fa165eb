//! Real WebDAV servers for the tests, started by the test itself on 127.0.0.1: Apache mod_dav
//! (from its own temporary config, like `shared/tools/real-servers.sh`) and `rclone serve
//! webdav`; plus a tiny fault-injecting proxy. Everything is stopped on drop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::joplin::Profile;

pub const USER: &str = "joplin";
pub const PASS: &str = "joplinpass";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait (bounded) until something accepts connections on the port.
fn wait_port(port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{what} did not answer on 127.0.0.1:{port} within 20 s; its log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// An htpasswd file (bcrypt, which both Apache and rclone read); password via stdin, not argv.
fn htpasswd(file: &Path) {
    let mut c = Command::new("htpasswd")
        .args(["-c", "-B", "-i"])
        .arg(file)
        .arg(USER)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("htpasswd (apt package apache2-utils; run scripts/install-test-deps.sh)");
    c.stdin.take().unwrap().write_all(PASS.as_bytes()).unwrap();
    assert!(c.wait().unwrap().success(), "htpasswd failed");
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Apache,
    Rclone,
}

/// One running WebDAV server with its data folder.
pub struct DavServer {
    pub kind: Kind,
    pub port: u16,
    /// URL of the server's WebDAV root, with a trailing slash.
    pub root_url: String,
    /// The folder the server serves.
    pub data: PathBuf,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl DavServer {
    pub fn apache() -> DavServer {
        let dir = tempfile::tempdir().unwrap();
        // Apache drops to www-data when started as root: it must reach and own its folders.
        let root = is_root();
        if root {
            Command::new("chmod")
                .arg("755")
                .arg(dir.path())
                .status()
                .unwrap();
        }
        let d = dir.path();
        for sub in ["data", "lock", "logs", "run"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        htpasswd(&d.join("htpasswd"));
        if root {
            let ok = Command::new("chown")
                .args(["-R", "www-data:www-data"])
                .arg(d.join("data"))
                .arg(d.join("lock"))
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown www-data failed");
        }
        let port = free_port();
        let user_lines = if root {
            "User www-data\nGroup www-data\n"
        } else {
            ""
        };
        let m = "/usr/lib/apache2/modules";
        let conf = format!(
            r#"ServerRoot "{d}"
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile {d}/run/httpd.pid
ErrorLog {d}/logs/error.log
LogLevel warn
LoadModule mpm_event_module {m}/mod_mpm_event.so
LoadModule authz_core_module {m}/mod_authz_core.so
LoadModule authz_user_module {m}/mod_authz_user.so
LoadModule authn_core_module {m}/mod_authn_core.so
LoadModule authn_file_module {m}/mod_authn_file.so
LoadModule auth_basic_module {m}/mod_auth_basic.so
LoadModule dav_module {m}/mod_dav.so
LoadModule dav_fs_module {m}/mod_dav_fs.so
LoadModule mime_module {m}/mod_mime.so
LoadModule alias_module {m}/mod_alias.so
TypesConfig /etc/mime.types
{user_lines}StartServers 1
ServerLimit 2
ThreadsPerChild 16
MaxRequestWorkers 32
LogFormat "%h:%{{remote}}p %u %t \"%r\" %>s %b %D" davlog
CustomLog {d}/logs/access.log davlog
DAVLockDB {d}/lock/DAVLock
DocumentRoot {d}/data
LimitRequestBody 0
<Directory />
  Require all denied
</Directory>
Redirect 301 /moved http://127.0.0.1:{port}/dav
Alias /dav {d}/data
<Location /dav>
  DAV On
  AuthType Basic
  AuthName "joplin-dav"
  AuthUserFile {d}/htpasswd
  Require valid-user
</Location>
<Directory {d}/data>
  Options None
  AllowOverride None
</Directory>
"#,
            d = d.display()
        );
        let conf_path = d.join("httpd.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new("/usr/sbin/apache2")
            .arg("-f")
            .arg(&conf_path)
            .arg("-DFOREGROUND")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("logs/stderr.log")).unwrap())
            .spawn()
            .expect("start /usr/sbin/apache2 (run scripts/install-test-deps.sh)");
        let s = DavServer {
            kind: Kind::Apache,
            port,
            root_url: format!("http://127.0.0.1:{port}/dav/"),
            data: d.join("data"),
            child: Some(child),
            dir,
        };
        wait_port(port, "Apache", &s.dir.path().join("logs/error.log"));
        s
    }

    pub fn rclone() -> DavServer {
        Self::start_rclone(false)
    }

    /// rclone over https with a fresh self-signed certificate (no client trusts it).
    pub fn rclone_self_signed_tls() -> DavServer {
        Self::start_rclone(true)
    }

    fn start_rclone(tls: bool) -> DavServer {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("data")).unwrap();
        htpasswd(&d.join("htpasswd"));
        let port = free_port();
        let log = d.join("rclone.log");
        let mut cmd = Command::new("rclone");
        cmd.args(["serve", "webdav"])
            .arg(d.join("data"))
            .args(["--addr", &format!("127.0.0.1:{port}"), "--htpasswd"])
            .arg(d.join("htpasswd"))
            .args(["--config", "/dev/null"]);
        if tls {
            let ok = Command::new("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                ])
                .args([
                    "-subj",
                    "/CN=127.0.0.1",
                    "-addext",
                    "subjectAltName=IP:127.0.0.1",
                ])
                .arg("-keyout")
                .arg(d.join("key.pem"))
                .arg("-out")
                .arg(d.join("cert.pem"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("openssl (run scripts/install-test-deps.sh)")
                .success();
            assert!(ok, "openssl could not make a test certificate");
            cmd.arg("--cert")
                .arg(d.join("cert.pem"))
                .arg("--key")
                .arg(d.join("key.pem"));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start rclone (run scripts/install-test-deps.sh)");
        let s = DavServer {
            kind: Kind::Rclone,
            port,
            root_url: format!("{}://127.0.0.1:{port}/", if tls { "https" } else { "http" }),
            data: d.join("data"),
            child: Some(child),
            dir,
        };
        wait_port(port, "rclone", &log);
        s
    }

    /// URL of a collection below the server root (not created).
    pub fn url(&self, name: &str) -> String {
        format!("{}{name}", self.root_url)
    }

    /// Create a collection directly on disk, owned like the server's own files.
    pub fn make_collection(&self, name: &str) -> PathBuf {
        let p = self.data.join(name);
        std::fs::create_dir_all(&p).unwrap();
        if self.kind == Kind::Apache && is_root() {
            Command::new("chown")
                .args(["-R", "www-data:www-data"])
                .arg(&self.data)
                .status()
                .unwrap();
        }
        p
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("logs/access.log")).unwrap_or_default()
    }
}

impl Drop for DavServer {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if self.kind == Kind::Apache {
            // A graceful stop also ends the www-data worker processes.
            let _ = Command::new("/usr/sbin/apache2")
                .arg("-f")
                .arg(self.dir.path().join("httpd.conf"))
                .args(["-k", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Point a Joplin CLI profile at a WebDAV collection (sync.target 6).
pub fn use_webdav(p: &Profile, url: &str) {
    p.configure(json!({
        "sync.target": 6,
        "sync.6.path": url,
        "sync.6.username": USER,
        "sync.6.password": PASS,
    }));
}

/// `joplin-restore` arguments and environment for a WebDAV target.
pub fn jr_dav(args: &[&str]) -> std::process::Output {
    super::jr_env(args, &[("JOPLIN_RESTORE_PASSWORD", PASS)])
}

/// A one-request-per-connection HTTP/1.1 proxy to a server on 127.0.0.1 that answers
/// `507 Insufficient Storage` to every PUT once `puts_allowed` PUTs went through, and
/// `429 Too Many Requests` (`Retry-After: 1`) to the first `throttled` requests.
pub struct FaultProxy {
    pub port: u16,
    /// Chaos mode: faults injected so far (429, 500, 503, reset, delay).
    pub chaos_faults: Arc<AtomicUsize>,
    puts_allowed: Arc<AtomicUsize>,
    /// Requests answered 507 or 429.
    pub puts_refused: Arc<AtomicUsize>,
    throttled: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    pub fn new(upstream_port: u16, puts_allowed: usize) -> FaultProxy {
        Self::start(upstream_port, puts_allowed, 0, None)
    }

    /// Chaos: each request has `percent` % chance of a fault — 429 with `Retry-After: 1`, 500,
    /// 503, a connection reset without an answer, or a 0.3 s delay — chosen by a seeded PRNG.
    pub fn chaos(upstream_port: u16, percent: u64, seed: u64) -> FaultProxy {
        Self::start(upstream_port, usize::MAX, 0, Some((percent, seed)))
    }

    /// Answer the first `n` requests with 429 and `Retry-After: 1`, then forward everything.
    pub fn rate_limited(upstream_port: u16, n: usize) -> FaultProxy {
        Self::start(upstream_port, usize::MAX, n, None)
    }

    fn start(
        upstream_port: u16,
        puts_allowed: usize,
        throttled: usize,
        chaos: Option<(u64, u64)>,
    ) -> FaultProxy {
        let faults = Arc::new(AtomicUsize::new(0));
        let rng = Arc::new(std::sync::Mutex::new(chaos.map(|c| c.1 | 1).unwrap_or(1)));
        let percent = chaos.map(|c| c.0).unwrap_or(0);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let allowed = Arc::new(AtomicUsize::new(puts_allowed));
        let refused = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let throttled = Arc::new(AtomicUsize::new(throttled));
        let (a, r, s, t) = (
            allowed.clone(),
            refused.clone(),
            stop.clone(),
            throttled.clone(),
        );
        let (rng_c, f) = (rng.clone(), faults.clone());
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (a, r, t) = (a.clone(), r.clone(), t.clone());
                // Decide this connection's fault up front, from the shared seeded PRNG.
                let fault = (percent > 0).then(|| {
                    let mut x = rng_c.lock().unwrap();
                    *x ^= *x << 13;
                    *x ^= *x >> 7;
                    *x ^= *x << 17;
                    ((*x % 100) < percent).then_some((*x >> 8) % 5)
                });
                let fault = fault.flatten();
                if fault.is_some() {
                    f.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::spawn(move || {
                    let _ = serve_one(conn, upstream_port, &a, &r, &t, fault);
                });
            }
        });
        FaultProxy {
            port,
            chaos_faults: faults,
            puts_allowed: allowed,
            puts_refused: refused,
            throttled,
            stop,
            accept: Some(accept),
        }
    }

    /// Let every PUT through from now on.
    pub fn heal(&self) {
        self.puts_allowed.store(usize::MAX, Ordering::SeqCst);
        self.throttled.store(0, Ordering::SeqCst);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn serve_one(
    client: TcpStream,
    upstream_port: u16,
    allowed: &AtomicUsize,
    refused: &AtomicUsize,
    throttled: &AtomicUsize,
    fault: Option<u64>,
) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = Vec::new();
    let mut content_length = 0usize;
    let mut method = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if method.is_empty() {
            method = line.split(' ').next().unwrap_or("").to_string();
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            content_length = v.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        if !lower.starts_with("connection:") {
            head.extend_from_slice(line.as_bytes());
        }
    }
    head.extend_from_slice(b"Connection: close\r\n\r\n");
    let mut body = vec![0u8; content_length];
    reader.read_exact(&mut body)?;
    let mut client = client;
    let answer = |client: &mut TcpStream, status: &str, extra: &str| -> std::io::Result<()> {
        client.write_all(
            format!("HTTP/1.1 {status}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )?;
        client.shutdown(Shutdown::Both)
    };
    match fault {
        Some(0) => return answer(&mut client, "429 Too Many Requests", "Retry-After: 1\r\n"),
        Some(1) => return answer(&mut client, "500 Internal Server Error", ""),
        Some(2) => return answer(&mut client, "503 Service Unavailable", ""),
        // A reset: close without any answer.
        Some(3) => return client.shutdown(Shutdown::Both),
        Some(_) => std::thread::sleep(Duration::from_millis(300)),
        None => {}
    }
    if throttled
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        refused.fetch_add(1, Ordering::SeqCst);
        client.write_all(
            b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?;
        return client.shutdown(Shutdown::Both);
    }
    if method == "PUT" {
        let ok = allowed
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if !ok {
            refused.fetch_add(1, Ordering::SeqCst);
            client.write_all(
                b"HTTP/1.1 507 Insufficient Storage\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )?;
            return client.shutdown(Shutdown::Both);
        }
    }
    let mut up = TcpStream::connect(("127.0.0.1", upstream_port))?;
    up.set_read_timeout(Some(Duration::from_secs(60)))?;
    up.write_all(&head)?;
    up.write_all(&body)?;
    std::io::copy(&mut up, &mut client)?;
    client.shutdown(Shutdown::Both)
}
