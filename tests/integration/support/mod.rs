//! Test harness shared by the integration tests: the real Joplin CLI as the judge, manifests
//! read from its database, and our own binary.
#![allow(dead_code)]

pub mod counting_proxy;
pub mod data_api;
pub mod e2ee;
pub mod formats;
pub mod joplin;
pub mod jserver;
pub mod s3;
pub mod webdav;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where `scripts/install-test-deps.sh` put the peers (Joplin CLI, servers).
pub fn tools() -> PathBuf {
    std::env::var_os("JR_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".tools"))
}

pub fn sample_jex() -> PathBuf {
    repo().join("examples/sample.jex")
}

pub fn sample_manifest() -> serde_json::Value {
    let p = repo().join("examples/sample.manifest.json");
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// Our binary, its default snapshot and journal folders (`XDG_DATA_HOME`, `XDG_STATE_HOME`)
/// in this test process's own folder under the build folder, so tests never fill the user's
/// `~/.local`. Every run in one test process shares them: a rerun finds its run's journal.
pub fn command() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_joplin-restore"));
    c.envs(xdg_env());
    c
}

/// The environment [`command`] sets, for a test that starts our binary through a shell.
pub fn xdg_env() -> [(&'static str, PathBuf); 2] {
    static HOME: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let home = HOME.get_or_init(|| {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("xdg-{}", std::process::id()))
    });
    [
        ("XDG_DATA_HOME", home.join("data")),
        ("XDG_STATE_HOME", home.join("state")),
    ]
}

/// Run our binary; returns the output (never panics on a non-zero exit).
/// Start our binary in the background: no stdin, stdout and stderr piped (read them with
/// `wait_with_output`).
pub fn spawn(args: &[&str]) -> Child {
    command()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start joplin-restore")
}

/// Send `sig` (`-TERM`, `-INT`, `-KILL`) to a running child.
pub fn signal(child: &Child, sig: &str) {
    let kill = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success(), "kill {sig} {}", child.id());
}

pub fn jr(args: &[&str]) -> Output {
    jr_env(args, &[])
}

pub fn jr_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = command();
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    output_within(c, JR_LIMIT, "joplin-restore")
}

/// The longest any one run of our binary may take in a test.
pub const JR_LIMIT: std::time::Duration = std::time::Duration::from_secs(600);

/// `cmd.output()` with no stdin, bounded: a command still running after `limit` (a prompt
/// nobody answers, a hang) is killed and the test fails with what it printed so far.
pub fn output_within(mut cmd: Command, limit: std::time::Duration, what: &str) -> Output {
    use std::io::Read;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let (o, e) = (out.join().unwrap(), err.join().unwrap());
            panic!(
                "{what} still running after {limit:?}: killed.\n--- stdout\n{}\n--- stderr\n{}",
                String::from_utf8_lossy(&o),
                String::from_utf8_lossy(&e)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Assert our binary succeeded and return its stdout.
pub fn jr_ok(args: &[&str]) -> String {
    let o = jr(args);
    assert!(
        o.status.success(),
        "joplin-restore {args:?} failed:\n{}",
        text(&o)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Assert `verify BACKUP --target TARGET` (a folder) finds no difference.
pub fn assert_verified(backup: &Path, target: &Path) {
    let out = jr_ok(&[
        "verify",
        backup.to_str().unwrap(),
        "--target",
        target.to_str().unwrap(),
    ]);
    assert!(out.starts_with("OK:"), "{out}");
}

/// How many item files (`*.md`) a sync folder holds.
pub fn count_items(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "md")
        })
        .count()
}

/// The stage names of a `--json` report's `timings`, in order.
pub fn stage_names(report: &serde_json::Value) -> Vec<String> {
    report["timings"]
        .as_array()
        .unwrap_or_else(|| panic!("no timings in {report}"))
        .iter()
        .map(|s| s["stage"].as_str().unwrap().to_string())
        .collect()
}

/// Every file below `dir` with its sha256, for before/after comparisons.
pub fn tree_hashes(dir: &Path) -> Vec<(String, String)> {
    use sha2::{Digest, Sha256};
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            if p.is_dir() {
                out.push((format!("{rel}/"), String::new()));
                walk(base, &p, out);
            } else {
                let data = std::fs::read(&p).unwrap();
                out.push((rel, hex::encode(Sha256::digest(&data))));
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The id of a process that has ended (a lock or journal naming it names a killed run).
pub fn ended_pid() -> u32 {
    let mut c = std::process::Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

/// This machine's host name, as joplin-restore records it in its locks and journals.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

/// The body of a lock file a joplin-restore run with process `pid` on this machine wrote.
pub fn our_lock_body(client_id: &str, pid: u32) -> String {
    serde_json::json!({
        "type": 2, "clientType": 3, "clientId": client_id, "app": "joplin-restore",
        "pid": pid, "host": host_name(),
    })
    .to_string()
}

/// A server on 127.0.0.1 that accepts connections and never reads or answers (a hung server),
/// until dropped (at most a minute).
pub struct SilentServer {
    pub port: u16,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    held: Option<std::thread::JoinHandle<()>>,
}

impl SilentServer {
    pub fn start() -> SilentServer {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = done.clone();
        let held = std::thread::spawn(move || {
            let mut conns = Vec::new();
            listener.set_nonblocking(true).unwrap();
            let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while std::time::Instant::now() < until && !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((c, _)) => conns.push(c),
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
                }
            }
        });
        SilentServer {
            port,
            done,
            held: Some(held),
        }
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.done.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(h) = self.held.take() {
            let _ = h.join();
        }
    }
}
