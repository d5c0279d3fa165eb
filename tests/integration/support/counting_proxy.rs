//! A tiny HTTP/1.1 forwarding proxy on 127.0.0.1 that records every request line passing
//! through it, so a test can count the requests a command really sent (e.g. DeleteObjects).
//!
//! It understands just enough HTTP to find request boundaries on keep-alive connections:
//! headers up to the blank line, then `Content-Length` bytes of body. Anything else
//! (chunked request bodies) is recorded as `UNPARSED` and the rest of the connection is
//! forwarded raw, so counts never silently come out low.
//!
//! [`CountingProxy::start_failing`] also answers requests whose line matches a predicate with a
//! `500 InternalError` itself (not forwarded), to test how a client cleans up after a failure.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

type Pred = Arc<dyn Fn(&str) -> bool + Send + Sync>;

pub struct CountingProxy {
    pub endpoint: String,
    port: u16,
    lines: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl CountingProxy {
    /// Forward 127.0.0.1:<new port> to 127.0.0.1:`upstream_port`.
    pub fn start(upstream_port: u16) -> Self {
        Self::start_failing(upstream_port, |_| false)
    }

    /// Like [`CountingProxy::start`], but requests whose line matches `fail` get a 500 from the
    /// proxy (recorded as `FAILED <line>`).
    pub fn start_failing(
        upstream_port: u16,
        fail: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> Self {
        let fail: Pred = Arc::new(fail);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (l2, s2) = (lines.clone(), stop.clone());
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream_port)) else {
                    continue;
                };
                let lines = l2.clone();
                let fail = fail.clone();
                let (c2, s3) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                // Responses: raw copy back.
                std::thread::spawn(move || {
                    let (mut from, mut to) = (s3, c2);
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(Shutdown::Write);
                });
                // Requests: parse boundaries and record each request line.
                std::thread::spawn(move || {
                    forward_requests(client, server, &lines, &*fail);
                });
            }
        });
        CountingProxy {
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
            lines,
            stop,
            accept: Some(accept),
        }
    }

    /// Every request line seen so far (`POST /bucket?delete HTTP/1.1`).
    pub fn requests(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub fn count(&self, pred: impl Fn(&str) -> bool) -> usize {
        self.requests().iter().filter(|l| pred(l)).count()
    }

    pub fn reset(&self) {
        self.lines.lock().unwrap().clear();
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn forward_requests(
    client: TcpStream,
    mut server: TcpStream,
    lines: &Mutex<Vec<String>>,
    fail: &(dyn Fn(&str) -> bool + Send + Sync),
) {
    let mut back = client.try_clone().unwrap();
    let mut reader = BufReader::new(client);
    // Bounded: a connection carries far fewer requests than this in any test.
    for _ in 0..1_000_000 {
        let mut head = Vec::new();
        let mut first = String::new();
        let mut content_length: Option<u64> = None;
        let mut chunked = false;
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => {
                    let _ = server.shutdown(Shutdown::Write);
                    return;
                }
                Ok(_) => {}
            }
            head.extend_from_slice(line.as_bytes());
            if first.is_empty() {
                first = line.trim_end().to_string();
                continue;
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                content_length = v.trim().parse().ok();
            }
            if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            }
        }
        if fail(&first) && !chunked {
            lines.lock().unwrap().push(format!("FAILED {first}"));
            let mut body = (&mut reader).take(content_length.unwrap_or(0));
            let _ = std::io::copy(&mut body, &mut std::io::sink());
            let msg = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InternalError</Code>\
                       <Message>injected by the test proxy</Message></Error>";
            let _ = write!(
                back,
                "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/xml\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{msg}",
                msg.len()
            );
            let _ = back.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
            return;
        }
        if server.write_all(&head).is_err() {
            return;
        }
        if chunked {
            lines.lock().unwrap().push(format!("UNPARSED {first}"));
            let _ = std::io::copy(&mut reader, &mut server);
            return;
        }
        lines.lock().unwrap().push(first);
        let n = content_length.unwrap_or(0);
        if n > 0 {
            let mut body = (&mut reader).take(n);
            if std::io::copy(&mut body, &mut server).is_err() {
                return;
            }
        }
    }
}
