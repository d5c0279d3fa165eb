//! The practical upper bound for moving a sync folder over HTTP: a minimal HTTP/1.1 client that
//! sends one request per file over `conns` keep-alive connections (no retries, no listing, no
//! verification), streaming each body from disk. Used for raw PUTs (upload) and raw DELETEs
//! (clear) against Apache WebDAV, s3s-fs (SigV4, UNSIGNED-PAYLOAD) and the Joplin Server
//! emulator.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// One request: method, path (already URL-encoded, with any query), extra headers and an
/// optional body file.
#[derive(Clone, Debug)]
pub struct Job {
    pub method: &'static str,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<PathBuf>,
}

impl Job {
    pub fn new(method: &'static str, path: String) -> Job {
        Job {
            method,
            path,
            headers: Vec::new(),
            body: None,
        }
    }
}

/// How requests are authenticated.
#[derive(Clone)]
pub enum Auth {
    /// A fixed header (Basic auth, X-API-AUTH).
    Header(String, String),
    /// AWS SigV4 with UNSIGNED-PAYLOAD: (access key, secret, region).
    SigV4(String, String, String),
}

pub struct Outcome {
    pub requests: usize,
    pub failures: usize,
    pub first_failure: Option<String>,
}

/// Send `jobs` to 127.0.0.1:`port` over `conns` keep-alive connections, in parallel.
pub fn run(port: u16, jobs: Vec<Job>, conns: usize, auth: &Auth) -> std::io::Result<Outcome> {
    let jobs = Arc::new(jobs);
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let first = Arc::new(Mutex::new(None::<String>));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for _ in 0..conns.max(1) {
        let (jobs, next, failures, first, sent, auth) = (
            jobs.clone(),
            next.clone(),
            failures.clone(),
            first.clone(),
            sent.clone(),
            auth.clone(),
        );
        handles.push(std::thread::spawn(move || -> std::io::Result<()> {
            let mut conn: Option<Conn> = None;
            // Bounded by the number of jobs: each iteration takes one.
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(job) = jobs.get(i) else {
                    return Ok(());
                };
                if conn.is_none() {
                    conn = Some(Conn::open(port)?);
                }
                let c = conn.as_mut().unwrap();
                let (status, close) = c.send(port, job, &auth)?;
                sent.fetch_add(1, Ordering::SeqCst);
                if !(200..300).contains(&status) {
                    failures.fetch_add(1, Ordering::SeqCst);
                    first
                        .lock()
                        .unwrap()
                        .get_or_insert_with(|| format!("{} {} -> {status}", job.method, job.path));
                }
                if close {
                    conn = None;
                }
            }
        }));
    }
    for h in handles {
        h.join().expect("raw client thread")?;
    }
    let first_failure = first.lock().unwrap().clone();
    Ok(Outcome {
        requests: sent.load(Ordering::SeqCst),
        failures: failures.load(Ordering::SeqCst),
        first_failure,
    })
}

/// Send jobs one after another on one connection (directory creation before the PUTs).
pub fn run_serial(port: u16, jobs: Vec<Job>, auth: &Auth) -> std::io::Result<Outcome> {
    run(port, jobs, 1, auth)
}

struct Conn {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Conn {
    fn open(port: u16) -> std::io::Result<Conn> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(120)))?;
        Ok(Conn {
            r: BufReader::with_capacity(64 * 1024, s.try_clone()?),
            w: s,
        })
    }

    /// Send one request and read its whole answer: (status, server closes the connection).
    fn send(&mut self, port: u16, job: &Job, auth: &Auth) -> std::io::Result<(u16, bool)> {
        let host = format!("127.0.0.1:{port}");
        let file = match &job.body {
            Some(p) => Some(std::fs::File::open(p)?),
            None => None,
        };
        let len = match &file {
            Some(f) => f.metadata()?.len(),
            None => 0,
        };
        let mut head = format!("{} {} HTTP/1.1\r\nHost: {host}\r\n", job.method, job.path);
        for (k, v) in &job.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        match auth {
            Auth::Header(k, v) => head.push_str(&format!("{k}: {v}\r\n")),
            Auth::SigV4(ak, sk, region) => {
                for (k, v) in sigv4(job.method, &job.path, &host, ak, sk, region) {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
            }
        }
        if file.is_some() || job.method == "PUT" || job.method == "POST" {
            head.push_str(&format!("Content-Length: {len}\r\n"));
        }
        head.push_str("\r\n");
        self.w.write_all(head.as_bytes())?;
        if let Some(mut f) = file {
            // std copies File → TcpStream with sendfile/splice on Linux: no user-space buffer.
            std::io::copy(&mut f, &mut self.w)?;
        }
        self.read_response(job.method == "HEAD")
    }

    fn read_response(&mut self, head_only: bool) -> std::io::Result<(u16, bool)> {
        let mut line = String::new();
        self.r.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut len: Option<u64> = None;
        let mut chunked = false;
        let mut close = line.starts_with("HTTP/1.0");
        for _ in 0..200 {
            line.clear();
            if self.r.read_line(&mut line)? == 0 {
                return Err(std::io::Error::other("connection closed in headers"));
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
            let l = line.to_ascii_lowercase();
            if let Some(v) = l.strip_prefix("content-length:") {
                len = v.trim().parse().ok();
            } else if l.starts_with("transfer-encoding:") && l.contains("chunked") {
                chunked = true;
            } else if l.starts_with("connection:") && l.contains("close") {
                close = true;
            }
        }
        if head_only || status == 204 || status == 304 {
            return Ok((status, close));
        }
        if chunked {
            // Bounded: a response body has far fewer chunks than this.
            for _ in 0..1_000_000 {
                line.clear();
                self.r.read_line(&mut line)?;
                let n = u64::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)
                    .map_err(|_| std::io::Error::other("bad chunk size"))?;
                if n == 0 {
                    // Trailers until the blank line.
                    for _ in 0..100 {
                        line.clear();
                        if self.r.read_line(&mut line)? == 0 || line.trim().is_empty() {
                            break;
                        }
                    }
                    break;
                }
                std::io::copy(&mut (&mut self.r).take(n), &mut std::io::sink())?;
                line.clear();
                self.r.read_line(&mut line)?;
            }
        } else if let Some(n) = len {
            std::io::copy(&mut (&mut self.r).take(n), &mut std::io::sink())?;
        } else {
            // No length: the body runs to the end of the connection.
            std::io::copy(&mut self.r, &mut std::io::sink())?;
            close = true;
        }
        Ok((status, close))
    }
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("hmac key");
    m.update(data.as_bytes());
    m.finalize().into_bytes().to_vec()
}

/// SigV4 headers for a path-style request with an unsigned payload. `path` is already
/// URL-encoded and may carry a query (its parameters must be sorted and encoded already).
fn sigv4(
    method: &str,
    path: &str,
    host: &str,
    ak: &str,
    sk: &str,
    region: &str,
) -> Vec<(String, String)> {
    let now = chrono::Utc::now();
    let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
    let day = now.format("%Y%m%d").to_string();
    let (uri, query) = path.split_once('?').unwrap_or((path, ""));
    let query = query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            if kv.contains('=') {
                kv.to_string()
            } else {
                format!("{kv}=")
            }
        })
        .collect::<Vec<_>>()
        .join("&");
    let payload = "UNSIGNED-PAYLOAD";
    let signed = "host;x-amz-content-sha256;x-amz-date";
    let canonical = format!(
        "{method}\n{uri}\n{query}\nhost:{host}\nx-amz-content-sha256:{payload}\nx-amz-date:{amz_date}\n\n{signed}\n{payload}"
    );
    let scope = format!("{day}/{region}/s3/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let k = hmac(format!("AWS4{sk}").as_bytes(), &day);
    let k = hmac(&k, region);
    let k = hmac(&k, "s3");
    let k = hmac(&k, "aws4_request");
    let sig = hex::encode(hmac(&k, &to_sign));
    vec![
        ("x-amz-date".into(), amz_date),
        ("x-amz-content-sha256".into(), payload.into()),
        (
            "Authorization".into(),
            format!(
                "AWS4-HMAC-SHA256 Credential={ak}/{scope}, SignedHeaders={signed}, Signature={sig}"
            ),
        ),
    ]
}
