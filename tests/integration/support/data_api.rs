//! The real Joplin CLI's Data API (`joplin --profile DIR server start`) on 127.0.0.1, started
//! on a free port and killed when dropped; plus a tiny HTTP client for test set-up calls.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::joplin::{joplin_bin, Profile};

pub struct ApiServer {
    pub port: u16,
    pub token: String,
    child: Child,
}

/// A port nobody listens on right now (outside Joplin's 41184.. scan range).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl ApiServer {
    /// Set `api.port` on the profile and start its Data API; waits (bounded) for `/ping`.
    pub fn start(p: &Profile) -> ApiServer {
        let port = free_port();
        p.configure(json!({"api.port": port}));
        let settings: Value =
            serde_json::from_slice(&std::fs::read(p.dir.join("settings.json")).unwrap()).unwrap();
        let token = settings["api.token"]
            .as_str()
            .expect("the CLI wrote api.token")
            .to_string();
        let log = std::fs::File::create(p.dir.join("server-test.log")).unwrap();
        // Joplin's Data API leaves a copy of every uploaded attachment in the temp folder:
        // keep them in the profile's, which goes with the test.
        let tmp = p.dir.join("tmp-uploads");
        std::fs::create_dir_all(&tmp).unwrap();
        let child = Command::new(joplin_bin())
            .arg("--profile")
            .arg(&p.dir)
            .args(["server", "start"])
            .env("TMPDIR", &tmp)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start joplin server");
        let mut s = ApiServer { port, token, child };
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Ok((200, body)) = s.raw("GET", "/ping", None, false) {
                if body.contains("JoplinClipperServer") {
                    return s;
                }
            }
            if let Ok(Some(st)) = s.child.try_wait() {
                let log =
                    std::fs::read_to_string(p.dir.join("server-test.log")).unwrap_or_default();
                panic!("joplin server start exited ({st}) before answering:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "joplin server start did not answer /ping on port {port} within 180 s"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// One HTTP/1.1 call with `Connection: close`; returns (status, body).
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        with_token: bool,
    ) -> std::io::Result<(u16, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        let sep = if path.contains('?') { '&' } else { '?' };
        let target = if with_token {
            format!("{path}{sep}token={}", self.token)
        } else {
            path.to_string()
        };
        let data = body.map(|b| b.to_string()).unwrap_or_default();
        write!(
            stream,
            "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{data}",
            data.len()
        )?;
        let mut resp = Vec::new();
        stream.read_to_end(&mut resp)?;
        let text = String::from_utf8_lossy(&resp).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((status, body))
    }

    /// An authenticated call that must succeed.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> String {
        let (status, text) = self
            .raw(method, path, body.as_ref(), true)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert!(
            (200..300).contains(&status),
            "{method} {path}: HTTP {status}: {text}"
        );
        text
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
