//! The performance benchmark of issue #11: `joplin-restore restore` against the real servers on
//! 127.0.0.1, next to the manual procedure (the real Joplin CLI importing the JEX and syncing),
//! the practical upper bound (raw keep-alive PUTs over 8 connections, see `rawhttp.rs`) and
//! `rclone copy --transfers 16`; the peak RSS of `restore` at 1× and 10× backup size; and the
//! requests and time of a `clear`. Prints tables with median/min/max and a verdict per target.
//!
//! Not part of the test suite: run it with `bench/run.sh` (see bench/README.md).

#[path = "../tests/integration/support/mod.rs"]
mod support;

mod rawhttp;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use joplin_restore::generate::{write_jex, GenSpec};
use rawhttp::{Auth, Job};
use serde_json::Value;
use support::joplin::Profile;
use support::jserver;
use support::s3::{S3Kind, S3Server};
use support::webdav::{self as dav, DavServer};

const USAGE: &str = "bench/run.sh [--notes N] [--attachments M] [--attachment-kb K] [--runs R] \
[--joplin-runs J] [--rclone-runs K] [--no-joplin] [--joplin-fs] [--rss-scale S] [--quick] [--keep] [--only ROWS] \
[--out FILE]\n  ROWS: comma list of fs,webdav,s3,jserver,raw,rclone,joplin,clear,rss";

#[derive(Debug, Clone)]
struct Opts {
    notes: usize,
    attachments: usize,
    attachment_kb: usize,
    runs: usize,
    joplin_runs: usize,
    joplin_fs: bool,
    rss_scale: usize,
    rclone_runs: usize,
    keep: bool,
    only: Option<Vec<String>>,
    out: Option<PathBuf>,
}

impl Opts {
    fn parse() -> Result<Opts> {
        let mut o = Opts {
            notes: 10_000,
            attachments: 1_000,
            attachment_kb: 300,
            runs: 3,
            joplin_runs: 1,
            joplin_fs: false,
            rss_scale: 10,
            rclone_runs: 1,
            keep: false,
            only: None,
            out: None,
        };
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut i = 0;
        let num = |i: usize| -> Result<usize> {
            args.get(i + 1)
                .with_context(|| format!("{} needs a value\n{USAGE}", args[i]))?
                .parse()
                .with_context(|| format!("{}: not a number\n{USAGE}", args[i]))
        };
        while i < args.len() {
            match args[i].as_str() {
                // `cargo bench` passes --bench to harness=false targets.
                "--bench" => {}
                "--notes" => (o.notes, i) = (num(i)?, i + 1),
                "--attachments" => (o.attachments, i) = (num(i)?, i + 1),
                "--attachment-kb" => (o.attachment_kb, i) = (num(i)?, i + 1),
                "--runs" => (o.runs, i) = (num(i)?.max(1), i + 1),
                "--joplin-runs" => (o.joplin_runs, i) = (num(i)?, i + 1),
                "--no-joplin" => o.joplin_runs = 0,
                "--joplin-fs" => o.joplin_fs = true,
                "--rss-scale" => (o.rss_scale, i) = (num(i)?, i + 1),
                "--rclone-runs" => (o.rclone_runs, i) = (num(i)?, i + 1),
                "--keep" => o.keep = true,
                "--quick" => {
                    o.notes = 200;
                    o.attachments = 20;
                    o.attachment_kb = 50;
                    o.runs = 1;
                    o.rss_scale = 3;
                }
                "--only" => {
                    let v = args.get(i + 1).context("--only needs a value")?;
                    o.only = Some(v.split(',').map(str::to_string).collect());
                    i += 1;
                }
                "--out" => {
                    o.out = Some(args.get(i + 1).context("--out needs a file")?.into());
                    i += 1;
                }
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                other => bail!("unknown argument {other}\n{USAGE}"),
            }
            i += 1;
        }
        Ok(o)
    }

    fn wants(&self, what: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|v| v.iter().any(|x| x == what))
    }

    fn spec(&self, scale: usize) -> GenSpec {
        GenSpec {
            notes: self.notes * scale,
            notebooks: (self.notes * scale / 100).clamp(5, 2_000),
            tags: (self.notes * scale / 200).clamp(5, 500),
            attachments: self.attachments * scale,
            attachment_bytes: self.attachment_kb * 1024,
            seed: 11,
        }
    }
}

/// One measured run.
#[derive(Debug, Clone, Default)]
struct Sample {
    secs: f64,
    requests: Option<u64>,
    rss_kb: Option<u64>,
    /// Seconds of the restore's own "write" stage (from its JSON report).
    write_secs: Option<f64>,
    /// Every stage of the restore's JSON report: (stage, seconds).
    stages: Vec<(String, f64)>,
    /// User + system CPU seconds of the child.
    cpu_secs: Option<f64>,
}

#[derive(Debug, Default)]
struct Row {
    what: String,
    samples: Vec<Sample>,
    /// Key of the row this one is compared with (its median time).
    baseline: Option<&'static str>,
    note: String,
}

struct Results {
    rows: BTreeMap<&'static str, Row>,
    order: Vec<&'static str>,
}

impl Results {
    fn add(&mut self, key: &'static str, what: &str, baseline: Option<&'static str>, s: Sample) {
        if !self.rows.contains_key(key) {
            self.order.push(key);
        }
        let r = self.rows.entry(key).or_default();
        r.what = what.to_string();
        r.baseline = baseline;
        r.samples.push(s);
    }

    fn note(&mut self, key: &'static str, note: String) {
        if let Some(r) = self.rows.get_mut(key) {
            r.note = note;
        }
    }

    fn median(&self, key: &str) -> Option<f64> {
        self.rows
            .get(key)
            .map(|r| median(r.samples.iter().map(|s| s.secs)))
    }

    fn median_rss(&self, key: &str) -> Option<f64> {
        let r = self.rows.get(key)?;
        let v: Vec<f64> = r
            .samples
            .iter()
            .filter_map(|s| s.rss_kb.map(|k| k as f64))
            .collect();
        (!v.is_empty()).then(|| median(v.into_iter()))
    }
}

/// "; client CPU 1.23 s" (median user + system time of our binary), when measured.
fn push_cpu(note: &mut String, r: &Row) {
    let cpu: Vec<f64> = r.samples.iter().filter_map(|s| s.cpu_secs).collect();
    if !cpu.is_empty() {
        note.push_str(&format!("; client CPU {}", fmt_s(median(cpu.into_iter()))));
    }
}

/// "stage 1.23 s" for each stage of the row's first sample that `keep` accepts, median over
/// the samples.
fn stage_medians(r: &Row, keep: impl Fn(&str) -> bool) -> Vec<String> {
    let Some(first) = r.samples.first() else {
        return Vec::new();
    };
    first
        .stages
        .iter()
        .map(|s| s.0.as_str())
        .filter(|n| keep(n))
        .map(|n| {
            let v = r
                .samples
                .iter()
                .filter_map(|s| s.stages.iter().find(|x| x.0 == n).map(|x| x.1));
            format!("{n} {}", fmt_s(median(v)))
        })
        .collect()
}

fn median(v: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = v.collect();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn log(msg: &str) {
    eprintln!("[bench {}] {msg}", chrono::Utc::now().format("%H:%M:%S"));
}

/// Our binary, built by cargo with the same (release) profile as this bench.
fn jr_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_joplin-restore"))
}

/// Run a command under `/usr/bin/time` (for the child's ru_maxrss); returns wall seconds, peak
/// RSS in KiB and stdout. Fails on a non-zero exit.
fn timed(
    program: &Path,
    args: &[String],
    env: &[(String, String)],
    work: &Path,
) -> Result<(f64, u64, String)> {
    timed_cpu(program, args, env, work).map(|(a, b, _, d)| (a, b, d))
}

/// [`timed`], also returning the child's user + system CPU seconds.
fn timed_cpu(
    program: &Path,
    args: &[String],
    env: &[(String, String)],
    work: &Path,
) -> Result<(f64, u64, f64, String)> {
    let rss_file = work.join("rss.txt");
    let mut c = Command::new("/usr/bin/time");
    c.arg("-f")
        .arg("%M %U %S")
        .arg("-o")
        .arg(&rss_file)
        .arg(program)
        .args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let t = Instant::now();
    let out = c
        .output()
        .with_context(|| format!("run {}", program.display()))?;
    let secs = t.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{} {:?} failed ({}):\n{}\n{}",
            program.display(),
            args,
            out.status,
            stdout.chars().take(3000).collect::<String>(),
            String::from_utf8_lossy(&out.stderr)
                .chars()
                .take(3000)
                .collect::<String>()
        );
    }
    let last = std::fs::read_to_string(&rss_file)
        .ok()
        .and_then(|s| s.lines().last().map(str::to_string))
        .unwrap_or_default();
    let f: Vec<f64> = last
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let rss = f.first().copied().unwrap_or(0.0) as u64;
    let cpu = f.get(1).copied().unwrap_or(0.0) + f.get(2).copied().unwrap_or(0.0);
    Ok((secs, rss, cpu, stdout))
}

fn timed_env_removed(
    program: &Path,
    args: &[String],
    work: &Path,
    remove: &[&str],
) -> Result<(f64, u64, String)> {
    let t = Instant::now();
    let out = Command::new(program)
        .args(args)
        .env_clear()
        .envs(std::env::vars().filter(|(k, _)| !remove.contains(&k.as_str())))
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {}", program.display()))?;
    let secs = t.elapsed().as_secs_f64();
    let _ = work;
    if !out.status.success() {
        bail!(
            "{} {:?} failed ({}):\n{}",
            program.display(),
            args,
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .chars()
                .take(3000)
                .collect::<String>()
        );
    }
    Ok((secs, 0, String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// `joplin-restore <args> --json`, timed; the sample carries the peak RSS and write stage.
fn jr(args: &[String], env: &[(String, String)], work: &Path) -> Result<(Sample, Value)> {
    let mut a = args.to_vec();
    a.push("--json".into());
    let (secs, rss, cpu, out) = timed_cpu(&jr_bin(), &a, env, work)?;
    let v: Value = serde_json::from_str(out.trim()).unwrap_or(Value::Null);
    let stages: Vec<(String, f64)> = v["timings"]
        .as_array()
        .map(|t| {
            t.iter()
                .map(|s| {
                    (
                        s["stage"].as_str().unwrap_or("?").to_string(),
                        s["seconds"].as_f64().unwrap_or(0.0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let write_secs = stages.iter().find(|s| s.0 == "write").map(|s| s.1);
    Ok((
        Sample {
            secs,
            requests: None,
            rss_kb: Some(rss),
            write_secs,
            stages,
            cpu_secs: Some(cpu),
        },
        v,
    ))
}

/// Restore arguments; `JR_BENCH_RESTORE_ARGS` (space-separated) adds options to every restore,
/// for experiments such as `--transfers 8 --no-verify`.
fn restore_args(jex: &Path, work: &Path, target: &[String]) -> Vec<String> {
    let mut a = vec!["restore".to_string(), jex.display().to_string()];
    a.extend_from_slice(target);
    if let Ok(extra) = std::env::var("JR_BENCH_RESTORE_ARGS") {
        a.extend(extra.split_whitespace().map(String::from));
    }
    a.extend(
        [
            "--yes",
            "--no-snapshot",
            "--quiet",
            "--journal-dir",
            &work.join("journals").display().to_string(),
        ]
        .map(String::from),
    );
    a
}

/// Clear arguments; `JR_BENCH_CLEAR_ARGS` (space-separated) adds options to every clear.
fn clear_args(target: &[String]) -> Vec<String> {
    let mut a = vec!["clear".to_string()];
    a.extend_from_slice(target);
    if let Ok(extra) = std::env::var("JR_BENCH_CLEAR_ARGS") {
        a.extend(extra.split_whitespace().map(String::from));
    }
    a.extend(["--yes", "--no-snapshot", "--quiet"].map(String::from));
    a
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn env_of(v: Vec<(&'static str, String)>) -> Vec<(String, String)> {
    v.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Files (relative paths) and folders of a finished sync folder.
fn sync_folder(dir: &Path) -> (Vec<String>, Vec<String>, u64) {
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    let mut bytes = 0;
    fn walk(base: &Path, d: &Path, f: &mut Vec<String>, ds: &mut Vec<String>, b: &mut u64) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            if p.is_dir() {
                ds.push(rel);
                walk(base, &p, f, ds, b);
            } else {
                *b += e.metadata().map(|m| m.len()).unwrap_or(0);
                f.push(rel);
            }
        }
    }
    walk(dir, dir, &mut files, &mut dirs, &mut bytes);
    files.sort();
    dirs.sort();
    (files, dirs, bytes)
}

fn dir_bytes(dir: &Path) -> u64 {
    sync_folder(dir).2
}

fn access_lines(d: &DavServer) -> u64 {
    d.access_log().lines().count() as u64
}

/// A Joplin Server emulator and its runtime (kept alive together).
struct Emu {
    _rt: tokio::runtime::Runtime,
    emu: jserver::Emulator,
}

impl Emu {
    fn start() -> Emu {
        let (rt, emu) = jserver::start(jserver::EmulatorConfig::default());
        Emu { _rt: rt, emu }
    }
    fn target(&self) -> Vec<String> {
        vec![
            "--target".into(),
            jserver::target(&self.emu),
            "--username".into(),
            jserver::USER.into(),
        ]
    }
    fn env(&self) -> Vec<(String, String)> {
        vec![("JOPLIN_RESTORE_PASSWORD".into(), jserver::PASSWORD.into())]
    }
    fn port(&self) -> u16 {
        self.emu.addr().port()
    }
    /// Log in like a client; the session token.
    fn login(&self) -> Result<String> {
        let body =
            serde_json::json!({"email": jserver::USER, "password": jserver::PASSWORD}).to_string();
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port()))?;
        use std::io::{Read, Write};
        write!(
            s,
            "POST /api/sessions HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port(),
            body.len()
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        let json = out.split("\r\n\r\n").nth(1).unwrap_or("");
        let v: Value = serde_json::from_str(json.trim()).context("login answer")?;
        Ok(v["id"].as_str().context("no session id")?.to_string())
    }
}

fn pct_path(name: &str) -> String {
    // Sync folder names are hex ids, `.resource/<id>`, `info.json`, `locks/…`, `temp/…`: all
    // safe in a URL path.
    name.to_string()
}

struct Ctx {
    opts: Opts,
    work: PathBuf,
    jex: PathBuf,
    /// The finished sync folder (from the filesystem restore): the raw clients' input.
    folder: PathBuf,
    files: Vec<String>,
    dirs: Vec<String>,
    bytes: u64,
    items: usize,
    res: Results,
}

fn main() -> Result<()> {
    let opts = Opts::parse()?;
    let base = std::env::var_os("JR_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&base)?;
    let tmp = tempfile::Builder::new()
        .prefix("jr-bench-")
        .tempdir_in(&base)?;
    let work = tmp.path().to_path_buf();
    log(&format!("work folder {}", work.display()));
    let jex = work.join("backup.jex");
    let t = Instant::now();
    let items = write_jex(&opts.spec(1), &jex)?;
    log(&format!(
        "generated {} ({} items, {:.1} MB) in {:.1} s",
        jex.display(),
        items,
        std::fs::metadata(&jex)?.len() as f64 / 1e6,
        t.elapsed().as_secs_f64()
    ));
    // The reference sync folder: one filesystem restore, outside the measurements.
    let folder = work.join("reference");
    std::fs::create_dir_all(&folder)?;
    jr(
        &restore_args(&jex, &work, &s(&["--target", folder.to_str().unwrap()])),
        &[],
        &work,
    )?;
    let (files, dirs, bytes) = sync_folder(&folder);
    log(&format!(
        "reference sync folder: {} files, {} folders, {:.1} MB",
        files.len(),
        dirs.len(),
        bytes as f64 / 1e6
    ));
    let mut cx = Ctx {
        opts: opts.clone(),
        work: work.clone(),
        jex,
        folder,
        files,
        dirs,
        bytes,
        items,
        res: Results {
            rows: BTreeMap::new(),
            order: Vec::new(),
        },
    };
    let dav = DavServer::apache();
    let s3 = S3Server::start(S3Kind::S3sFs);
    for run in 0..opts.runs {
        log(&format!("--- run {} of {}", run + 1, opts.runs));
        if opts.wants("fs") {
            or_log("fs", bench_fs(&mut cx, run));
        }
        if opts.wants("webdav") {
            or_log("webdav", bench_webdav(&mut cx, &dav, run));
        }
        if opts.wants("s3") {
            or_log("s3", bench_s3(&mut cx, &s3, run));
        }
        if opts.wants("jserver") {
            or_log("jserver", bench_jserver(&mut cx, run));
        }
        if opts.wants("raw") {
            or_log("raw webdav", raw_webdav(&mut cx, &dav, run));
            or_log("raw s3", raw_s3(&mut cx, &s3, run));
            or_log("raw jserver", raw_jserver(&mut cx, run));
        }
        if opts.wants("rclone") && run < opts.rclone_runs {
            or_log("rclone webdav", rclone_webdav(&mut cx, &dav, run));
            or_log("rclone s3", rclone_s3(&mut cx, &s3, run));
        }
    }
    if opts.wants("joplin") {
        for run in 0..opts.joplin_runs {
            or_log("joplin webdav", joplin_webdav(&mut cx, &dav, run));
            if opts.joplin_fs {
                or_log("joplin fs", joplin_fs(&mut cx, run));
            }
        }
    }
    let mut rss10 = None;
    if opts.wants("rss") && opts.rss_scale > 1 {
        match bench_rss(&mut cx) {
            Ok(v) => rss10 = Some(v),
            Err(e) => log(&format!("rss scale run failed: {e:#}")),
        }
    }
    let report = render(&cx, rss10);
    println!("{report}");
    if let Some(out) = &opts.out {
        std::fs::write(out, &report)?;
        log(&format!("table written to {}", out.display()));
    }
    drop(dav);
    drop(s3);
    if opts.keep {
        let kept = tmp.keep();
        log(&format!("kept {}", kept.display()));
    }
    Ok(())
}

fn or_log(what: &str, r: Result<()>) {
    if let Err(e) = r {
        log(&format!("{what} FAILED: {e:#}"));
    }
}

fn bench_fs(cx: &mut Ctx, run: usize) -> Result<()> {
    let target = cx.work.join(format!("fs-{run}"));
    std::fs::create_dir_all(&target)?;
    let t = s(&["--target", target.to_str().unwrap()]);
    let (sample, _) = jr(&restore_args(&cx.jex, &cx.work, &t), &[], &cx.work)?;
    log(&format!("restore → filesystem: {:.2} s", sample.secs));
    cx.res.add("fs", "restore → filesystem", None, sample);
    let (c, _) = jr(&clear_args(&t), &[], &cx.work)?;
    cx.res.add("fs_clear", "clear filesystem", None, c);
    std::fs::remove_dir_all(&target)?;
    Ok(())
}

fn bench_webdav(cx: &mut Ctx, d: &DavServer, run: usize) -> Result<()> {
    let name = format!("jr-{run}");
    d.make_collection(&name);
    let t = vec![
        "--target".into(),
        d.url(&name),
        "--username".into(),
        dav::USER.into(),
    ];
    let env = vec![("JOPLIN_RESTORE_PASSWORD".to_string(), dav::PASS.to_string())];
    let before = access_lines(d);
    let (mut sample, _) = jr(&restore_args(&cx.jex, &cx.work, &t), &env, &cx.work)?;
    sample.requests = Some(access_lines(d) - before);
    log(&format!(
        "restore → WebDAV: {:.2} s, {:?} requests",
        sample.secs, sample.requests
    ));
    cx.res.add(
        "webdav",
        "restore → Apache WebDAV",
        Some("raw_webdav"),
        sample,
    );
    let before = access_lines(d);
    let (mut c, _) = jr(&clear_args(&t), &env, &cx.work)?;
    c.requests = Some(access_lines(d) - before);
    log(&format!(
        "clear WebDAV: {:.2} s, {:?} requests",
        c.secs, c.requests
    ));
    cx.res.add(
        "webdav_clear",
        "clear Apache WebDAV",
        Some("raw_webdav_del"),
        c,
    );
    let _ = std::fs::remove_dir_all(d.data.join(&name));
    Ok(())
}

fn bench_s3(cx: &mut Ctx, s3: &S3Server, run: usize) -> Result<()> {
    let bucket = format!("jr-{run}");
    s3.create_bucket(&bucket);
    let t = s3.target_args(&bucket);
    let env = env_of(s3.env());
    let (mut sample, v) = jr(&restore_args(&cx.jex, &cx.work, &t), &env, &cx.work)?;
    // Requests as counted by our own pacer (a proxy would slow the timed run).
    sample.requests = v["requests"].as_u64();
    log(&format!("restore → s3s-fs: {:.2} s", sample.secs));
    cx.res
        .add("s3", "restore → s3s-fs (S3)", Some("raw_s3"), sample);
    // The clear goes through a counting proxy: its request count is a target of the issue.
    let proxy = support::counting_proxy::CountingProxy::start(s3.port);
    let tp = vec![
        "--target".into(),
        format!("s3://{bucket}"),
        "--endpoint".into(),
        proxy.endpoint.clone(),
        "--path-style".into(),
    ];
    let (mut c, _) = jr(&clear_args(&tp), &env, &cx.work)?;
    let reqs = proxy.requests();
    c.requests = Some(reqs.len() as u64);
    let bulk = reqs.iter().filter(|l| l.contains("?delete")).count();
    let single = reqs.iter().filter(|l| l.starts_with("DELETE ")).count();
    let lists = reqs.iter().filter(|l| l.starts_with("GET ")).count();
    log(&format!(
        "clear S3: {:.2} s, {} requests ({bulk} DeleteObjects, {single} DELETE, {lists} GET)",
        c.secs,
        reqs.len()
    ));
    cx.res
        .add("s3_clear", "clear s3s-fs (via counting proxy)", None, c);
    cx.res.note(
        "s3_clear",
        format!("{bulk} DeleteObjects, {single} single DELETE, {lists} GET/list"),
    );
    drop(proxy);
    let _ = std::fs::remove_dir_all(s3.dir.path().join("data").join(&bucket));
    Ok(())
}

fn bench_jserver(cx: &mut Ctx, _run: usize) -> Result<()> {
    let e = Emu::start();
    let t = e.target();
    e.emu.reset_stats();
    let (mut sample, _) = jr(&restore_args(&cx.jex, &cx.work, &t), &e.env(), &cx.work)?;
    sample.requests = Some(e.emu.stats().total);
    log(&format!(
        "restore → Joplin Server: {:.2} s, {:?} requests",
        sample.secs, sample.requests
    ));
    cx.res.add(
        "jserver",
        "restore → Joplin Server emulator",
        Some("raw_jserver"),
        sample,
    );
    // The same restore again: nothing changed, so ideally nothing is uploaded.
    e.emu.reset_stats();
    let (mut again, _) = jr(&restore_args(&cx.jex, &cx.work, &t), &e.env(), &cx.work)?;
    let st = e.emu.stats();
    again.requests = Some(st.total);
    cx.res.add(
        "jserver_again",
        "restore again (unchanged) → Joplin Server",
        None,
        again,
    );
    cx.res.note(
        "jserver_again",
        format!(
            "{} single PUTs, {} batch PUTs re-sent",
            st.single_puts, st.batch_puts
        ),
    );
    e.emu.reset_stats();
    let (mut c, _) = jr(&clear_args(&t), &e.env(), &cx.work)?;
    c.requests = Some(e.emu.stats().total);
    log(&format!(
        "clear Joplin Server: {:.2} s, {:?} requests",
        c.secs, c.requests
    ));
    cx.res.add(
        "jserver_clear",
        "clear Joplin Server emulator",
        Some("raw_jserver_del"),
        c,
    );
    Ok(())
}

/// PUT every file of the reference folder (folders first with MKCOL), then DELETE them.
fn raw_webdav(cx: &mut Ctx, d: &DavServer, run: usize) -> Result<()> {
    let name = format!("raw-{run}");
    d.make_collection(&name);
    use base64::Engine;
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", dav::USER, dav::PASS));
    let auth = Auth::Header("Authorization".into(), format!("Basic {basic}"));
    let prefix = format!("/dav/{name}/");
    let mkcols: Vec<Job> = cx
        .dirs
        .iter()
        .map(|dname| Job::new("MKCOL", format!("{prefix}{}/", pct_path(dname))))
        .collect();
    let puts = file_jobs(cx, "PUT", |f| format!("{prefix}{}", pct_path(f)));
    let n = mkcols.len() + puts.len();
    let t = Instant::now();
    let a = rawhttp::run_serial(d.port, mkcols, &auth)?;
    let b = rawhttp::run(d.port, puts, 8, &auth)?;
    let secs = t.elapsed().as_secs_f64();
    check(&a)?;
    check(&b)?;
    log(&format!("raw PUT WebDAV: {secs:.2} s, {n} requests"));
    cx.res.add(
        "raw_webdav",
        "raw keep-alive PUT ×8 → Apache WebDAV",
        None,
        Sample {
            secs,
            requests: Some(n as u64),
            ..Default::default()
        },
    );
    let dels: Vec<Job> = cx
        .files
        .iter()
        .filter(|f| f.as_str() != "info.json")
        .map(|f| Job::new("DELETE", format!("{prefix}{}", pct_path(f))))
        .collect();
    let n = dels.len();
    let t = Instant::now();
    let o = rawhttp::run(d.port, dels, 8, &auth)?;
    let secs = t.elapsed().as_secs_f64();
    check(&o)?;
    cx.res.add(
        "raw_webdav_del",
        "raw keep-alive DELETE ×8 → Apache WebDAV",
        None,
        Sample {
            secs,
            requests: Some(n as u64),
            ..Default::default()
        },
    );
    let _ = std::fs::remove_dir_all(d.data.join(&name));
    Ok(())
}

fn file_jobs(cx: &Ctx, method: &'static str, path: impl Fn(&str) -> String) -> Vec<Job> {
    cx.files
        .iter()
        .map(|f| Job {
            method,
            path: path(f),
            headers: vec![],
            body: Some(cx.folder.join(f)),
        })
        .collect()
}

fn check(o: &rawhttp::Outcome) -> Result<()> {
    if o.failures > 0 {
        bail!(
            "{} of {} requests failed, first: {}",
            o.failures,
            o.requests,
            o.first_failure.clone().unwrap_or_default()
        );
    }
    Ok(())
}

fn raw_s3(cx: &mut Ctx, s3: &S3Server, run: usize) -> Result<()> {
    let bucket = format!("raw-{run}");
    s3.create_bucket(&bucket);
    let auth = Auth::SigV4(
        s3.access_key.into(),
        s3.secret_key.into(),
        support::s3::REGION.into(),
    );
    let puts = file_jobs(cx, "PUT", |f| format!("/{bucket}/{}", pct_path(f)));
    let n = puts.len();
    let t = Instant::now();
    let o = rawhttp::run(s3.port, puts, 8, &auth)?;
    let secs = t.elapsed().as_secs_f64();
    check(&o)?;
    log(&format!("raw PUT S3: {secs:.2} s, {n} requests"));
    cx.res.add(
        "raw_s3",
        "raw keep-alive PUT ×8 → s3s-fs",
        None,
        Sample {
            secs,
            requests: Some(n as u64),
            ..Default::default()
        },
    );
    let _ = std::fs::remove_dir_all(s3.dir.path().join("data").join(&bucket));
    Ok(())
}

fn raw_jserver(cx: &mut Ctx, _run: usize) -> Result<()> {
    let e = Emu::start();
    let token = e.login()?;
    let auth = Auth::Header("X-API-AUTH".into(), token);
    let mut puts = file_jobs(cx, "PUT", |f| {
        format!("/api/items/root:/{}:/content", pct_path(f))
    });
    for j in &mut puts {
        j.headers
            .push(("Content-Type".into(), "application/octet-stream".into()));
    }
    let n = puts.len();
    e.emu.reset_stats();
    let t = Instant::now();
    let o = rawhttp::run(e.port(), puts, 8, &auth)?;
    let secs = t.elapsed().as_secs_f64();
    check(&o)?;
    log(&format!("raw PUT Joplin Server: {secs:.2} s, {n} requests"));
    cx.res.add(
        "raw_jserver",
        "raw keep-alive PUT ×8 → Joplin Server emulator",
        None,
        Sample {
            secs,
            requests: Some(n as u64),
            ..Default::default()
        },
    );
    let dels: Vec<Job> = cx
        .files
        .iter()
        .filter(|f| f.as_str() != "info.json")
        .map(|f| Job::new("DELETE", format!("/api/items/root:/{}:", pct_path(f))))
        .collect();
    let n = dels.len();
    let t = Instant::now();
    let o = rawhttp::run(e.port(), dels, 8, &auth)?;
    let secs = t.elapsed().as_secs_f64();
    check(&o)?;
    cx.res.add(
        "raw_jserver_del",
        "raw keep-alive DELETE ×8 → Joplin Server emulator",
        None,
        Sample {
            secs,
            requests: Some(n as u64),
            ..Default::default()
        },
    );
    Ok(())
}

fn rclone(args: &[String], work: &Path) -> Result<f64> {
    let conf = work.join("rclone.conf");
    std::fs::write(&conf, "")?;
    let mut a = args.to_vec();
    a.extend(s(&["--transfers", "16", "--config"]));
    a.push(conf.display().to_string());
    // rclone's S3 client refuses the machine's AWS_CA_BUNDLE on plain http.
    let (secs, _, _) = timed_env_removed(Path::new("rclone"), &a, work, &["AWS_CA_BUNDLE"])?;
    Ok(secs)
}

fn rclone_obscure(pass: &str) -> Result<String> {
    let o = Command::new("rclone").args(["obscure", pass]).output()?;
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn rclone_webdav(cx: &mut Ctx, d: &DavServer, run: usize) -> Result<()> {
    let name = format!("rclone-{run}");
    d.make_collection(&name);
    let mut a = s(&["copy", cx.folder.to_str().unwrap()]);
    a.push(format!(":webdav:{name}"));
    a.extend(s(&[
        "--webdav-url",
        &d.root_url,
        "--webdav-user",
        dav::USER,
    ]));
    a.push("--webdav-pass".into());
    a.push(rclone_obscure(dav::PASS)?);
    let before = access_lines(d);
    let secs = rclone(&a, &cx.work)?;
    let requests = Some(access_lines(d) - before);
    log(&format!(
        "rclone → WebDAV: {secs:.2} s, {requests:?} requests"
    ));
    cx.res.add(
        "rclone_webdav",
        "rclone copy --transfers 16 → Apache WebDAV",
        Some("raw_webdav"),
        Sample {
            secs,
            requests,
            ..Default::default()
        },
    );
    let _ = std::fs::remove_dir_all(d.data.join(&name));
    Ok(())
}

fn rclone_s3(cx: &mut Ctx, s3: &S3Server, run: usize) -> Result<()> {
    let bucket = format!("rclone-{run}");
    s3.create_bucket(&bucket);
    let mut a = s(&["copy", cx.folder.to_str().unwrap()]);
    a.push(format!(":s3:{bucket}"));
    a.extend(s(&[
        "--s3-provider",
        "Other",
        "--s3-endpoint",
        &s3.endpoint,
        "--s3-access-key-id",
        s3.access_key,
        "--s3-secret-access-key",
        s3.secret_key,
        "--s3-region",
        support::s3::REGION,
        "--s3-force-path-style=true",
        "--s3-no-check-bucket",
    ]));
    let secs = rclone(&a, &cx.work)?;
    log(&format!("rclone → S3: {secs:.2} s"));
    cx.res.add(
        "rclone_s3",
        "rclone copy --transfers 16 → s3s-fs",
        Some("raw_s3"),
        Sample {
            secs,
            ..Default::default()
        },
    );
    let _ = std::fs::remove_dir_all(s3.dir.path().join("data").join(&bucket));
    Ok(())
}

/// The manual procedure with the real Joplin CLI: a fresh profile imports the JEX, then syncs
/// it into an empty target. Wall clock of both commands (node start-up included).
fn joplin_manual(
    cx: &mut Ctx,
    key: &'static str,
    what: &str,
    baseline: Option<&'static str>,
    profile: &Profile,
) -> Result<()> {
    let bin = support::joplin::joplin_bin();
    let pdir = profile.dir.display().to_string();
    let (ti, _, _) = timed(
        &bin,
        &s(&[
            "--profile",
            &pdir,
            "import",
            cx.jex.to_str().unwrap(),
            "--format",
            "jex",
        ]),
        &[],
        &cx.work,
    )?;
    log(&format!("{what}: import {ti:.1} s"));
    let (ts, _, out) = timed(&bin, &s(&["--profile", &pdir, "sync"]), &[], &cx.work)?;
    if out.contains("Last error") || out.contains("Fail-safe") {
        bail!(
            "joplin sync reported an error:\n{}",
            out.chars().take(2000).collect::<String>()
        );
    }
    log(&format!("{what}: sync {ts:.1} s"));
    cx.res.add(
        key,
        what,
        baseline,
        Sample {
            secs: ti + ts,
            ..Default::default()
        },
    );
    let r = cx.res.rows.get_mut(key).unwrap();
    if !r.note.is_empty() {
        r.note.push_str("; ");
    }
    r.note
        .push_str(&format!("import {ti:.1} s + sync {ts:.1} s"));
    Ok(())
}

fn joplin_webdav(cx: &mut Ctx, d: &DavServer, run: usize) -> Result<()> {
    let name = format!("joplin-{run}");
    d.make_collection(&name);
    let profile = Profile::new(cx.work.join(format!("joplin-profile-{run}")));
    dav::use_webdav(&profile, &d.url(&name));
    let before = access_lines(d);
    joplin_manual(
        cx,
        "joplin_webdav",
        "Joplin CLI import JEX + sync → Apache WebDAV",
        Some("raw_webdav"),
        &profile,
    )?;
    let n = access_lines(d) - before;
    if let Some(r) = cx.res.rows.get_mut("joplin_webdav") {
        if let Some(s) = r.samples.last_mut() {
            s.requests = Some(n);
        }
    }
    let _ = std::fs::remove_dir_all(d.data.join(&name));
    let _ = std::fs::remove_dir_all(&profile.dir);
    Ok(())
}

fn joplin_fs(cx: &mut Ctx, run: usize) -> Result<()> {
    let target = cx.work.join(format!("joplin-fs-{run}"));
    std::fs::create_dir_all(&target)?;
    let profile = Profile::new(cx.work.join(format!("joplin-fs-profile-{run}")));
    profile.use_folder(&target);
    joplin_manual(
        cx,
        "joplin_fs",
        "Joplin CLI import JEX + sync → filesystem",
        Some("fs"),
        &profile,
    )?;
    let _ = std::fs::remove_dir_all(&target);
    let _ = std::fs::remove_dir_all(&profile.dir);
    Ok(())
}

/// The `rss_scale`× runs: a fresh restore into an empty folder, then the same restore again
/// into the full one (it lists the target and compares every copy: the plan's tables).
struct ScaleRss {
    items: usize,
    mb: f64,
    secs: f64,
    rss_kb: u64,
    again_secs: f64,
    again_rss_kb: u64,
}

/// Peak RSS of a filesystem restore of a backup `rss_scale` times as big, and of the same
/// restore again.
fn bench_rss(cx: &mut Ctx) -> Result<ScaleRss> {
    let scale = cx.opts.rss_scale;
    let jex = cx.work.join(format!("backup-x{scale}.jex"));
    let t = Instant::now();
    let items = write_jex(&cx.opts.spec(scale), &jex)?;
    let jex_mb = std::fs::metadata(&jex)?.len() as f64 / 1e6;
    log(&format!(
        "generated {scale}× backup: {items} items, {jex_mb:.0} MB in {:.0} s",
        t.elapsed().as_secs_f64()
    ));
    let target = cx.work.join("fs-big");
    std::fs::create_dir_all(&target)?;
    let t = s(&["--target", target.to_str().unwrap()]);
    let (sample, _) = jr(&restore_args(&jex, &cx.work, &t), &[], &cx.work)?;
    let bytes = dir_bytes(&target);
    log(&format!(
        "restore {scale}× → filesystem: {:.1} s, peak RSS {} KiB",
        sample.secs,
        sample.rss_kb.unwrap_or(0)
    ));
    let (again, _) = jr(&restore_args(&jex, &cx.work, &t), &[], &cx.work)?;
    log(&format!(
        "restore {scale}× again → filesystem: {:.1} s, peak RSS {} KiB",
        again.secs,
        again.rss_kb.unwrap_or(0)
    ));
    let _ = std::fs::remove_dir_all(&target);
    if !cx.opts.keep {
        // 10× is gigabytes; --keep leaves it for a heap profile (bench/README.md).
        let _ = std::fs::remove_file(&jex);
    }
    Ok(ScaleRss {
        items,
        mb: bytes as f64 / 1e6,
        secs: sample.secs,
        rss_kb: sample.rss_kb.unwrap_or(0),
        again_secs: again.secs,
        again_rss_kb: again.rss_kb.unwrap_or(0),
    })
}

fn fmt_s(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else if x < 10.0 {
        format!("{x:.2} s")
    } else {
        format!("{x:.1} s")
    }
}

fn render(cx: &Ctx, rss10: Option<ScaleRss>) -> String {
    let mut o = String::new();
    let mb = cx.bytes as f64 / 1e6;
    let (tar_files, tar_blobs) = (
        cx.files.len(),
        cx.files
            .iter()
            .filter(|f| f.starts_with(".resource/"))
            .count(),
    );
    o.push_str(&format!(
        "## joplin-restore benchmark ({} UTC, {} cores)\n\nBackup: {} notes, {} attachments (avg {} KiB, skewed), {} items; sync folder {} files ({} blobs), {:.1} MB. Runs: {} (Joplin CLI: {}).\n\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M"),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        cx.opts.notes,
        cx.opts.attachments,
        cx.opts.attachment_kb,
        cx.items,
        tar_files,
        tar_blobs,
        mb,
        cx.opts.runs,
        cx.opts.joplin_runs,
    ));
    if let Ok(extra) = std::env::var("JR_BENCH_RESTORE_ARGS") {
        o.push_str(&format!(
            "Every restore ran with extra options: `{extra}` (JR_BENCH_RESTORE_ARGS).\n\n"
        ));
    }
    if let Ok(extra) = std::env::var("JR_BENCH_CLEAR_ARGS") {
        o.push_str(&format!(
            "Every clear ran with extra options: `{extra}` (JR_BENCH_CLEAR_ARGS).\n\n"
        ));
    }
    o.push_str("| what | n | median | min | max | requests | MB/s | × baseline | notes |\n");
    o.push_str("|---|---|---|---|---|---|---|---|---|\n");
    for key in &cx.res.order {
        let r = &cx.res.rows[key];
        let secs: Vec<f64> = r.samples.iter().map(|s| s.secs).collect();
        let med = median(secs.iter().copied());
        let min = secs.iter().copied().fold(f64::INFINITY, f64::min);
        let max = secs.iter().copied().fold(0.0, f64::max);
        let reqs: Vec<f64> = r
            .samples
            .iter()
            .filter_map(|s| s.requests.map(|x| x as f64))
            .collect();
        let reqs = if reqs.is_empty() {
            "-".into()
        } else {
            format!("{:.0}", median(reqs.into_iter()))
        };
        let is_clear = key.contains("clear") || key.ends_with("_del");
        let rate = if is_clear || key.ends_with("again") {
            "-".into()
        } else {
            format!("{:.1}", mb / med)
        };
        let ratio = match r.baseline.and_then(|b| cx.res.median(b)) {
            Some(b) if b > 0.0 => format!("{:.2}× {}", med / b, short(r.baseline.unwrap())),
            _ => "-".into(),
        };
        let mut note = r.note.clone();
        let writes: Vec<f64> = r.samples.iter().filter_map(|s| s.write_secs).collect();
        if is_clear && r.samples.first().is_some_and(|s| !s.stages.is_empty()) {
            // A clear's stages (list, snapshot, lock, delete), median per stage.
            if !note.is_empty() {
                note.push_str("; ");
            }
            note.push_str(&stage_medians(r, |_| true).join(", "));
            push_cpu(&mut note, r);
        }
        if !writes.is_empty() && !is_clear {
            let w = median(writes.into_iter());
            let extra = match r.baseline.and_then(|b| cx.res.median(b)) {
                Some(b) if b > 0.0 => format!(" ({:.2}× {})", w / b, short(r.baseline.unwrap())),
                _ => String::new(),
            };
            if !note.is_empty() {
                note.push_str("; ");
            }
            note.push_str(&format!("write stage {}{extra}", fmt_s(w)));
            // The other stages, median per stage.
            let parts = stage_medians(r, |n| n != "write");
            if !parts.is_empty() {
                note.push_str(&format!("; {}", parts.join(", ")));
            }
            push_cpu(&mut note, r);
        }
        o.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.what,
            secs.len(),
            fmt_s(med),
            fmt_s(min),
            fmt_s(max),
            reqs,
            rate,
            ratio,
            note
        ));
    }
    // RSS table.
    o.push_str("\n### Peak RSS of `joplin-restore` (ru_maxrss of the child, median of runs)\n\n| run | peak RSS |\n|---|---|\n");
    for key in &cx.res.order {
        if let Some(k) = cx.res.median_rss(key) {
            o.push_str(&format!(
                "| {} | {:.1} MiB |\n",
                cx.res.rows[key].what,
                k / 1024.0
            ));
        }
    }
    if let Some(r) = &rss10 {
        o.push_str(&format!(
            "| restore → filesystem, {}× backup ({} items, {:.0} MB) | {:.1} MiB (in {}) |\n",
            cx.opts.rss_scale,
            r.items,
            r.mb,
            r.rss_kb as f64 / 1024.0,
            fmt_s(r.secs)
        ));
        o.push_str(&format!(
            "| restore again (unchanged) → the same folder, {}× | {:.1} MiB (in {}) |\n",
            cx.opts.rss_scale,
            r.again_rss_kb as f64 / 1024.0,
            fmt_s(r.again_secs)
        ));
    }
    // Verdicts.
    o.push_str("\n### Targets (issue #11)\n\n");
    let verdict = |ok: Option<bool>| match ok {
        Some(true) => "MET",
        Some(false) => "NOT MET",
        None => "not measured",
    };
    for (key, base, name) in [
        (
            "webdav",
            "raw_webdav",
            "restore ≤ 1.3× raw keep-alive PUT on WebDAV",
        ),
        ("s3", "raw_s3", "restore ≤ 1.3× raw keep-alive PUT on S3"),
    ] {
        let (a, b) = (cx.res.median(key), cx.res.median(base));
        let r = a.zip(b).map(|(a, b)| a / b);
        o.push_str(&format!(
            "- {name}: {} ({})\n",
            verdict(r.map(|r| r <= 1.3)),
            r.map(|r| format!("{r:.2}×")).unwrap_or_default()
        ));
    }
    let rss_max = cx
        .res
        .order
        .iter()
        .filter(|k| !k.contains("clear"))
        .filter_map(|k| cx.res.rows[k].samples.iter().filter_map(|s| s.rss_kb).max())
        .max();
    o.push_str(&format!(
        "- peak RSS ≤ 64 MB at 1×: {} (max over all restores {})\n",
        verdict(rss_max.map(|k| k as f64 * 1024.0 <= 64.0 * 1024.0 * 1024.0)),
        rss_max
            .map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
            .unwrap_or_default()
    ));
    let fs1 = cx.res.median_rss("fs");
    let growth = rss10
        .as_ref()
        .zip(fs1)
        .map(|(r, small)| r.rss_kb as f64 / small - 1.0);
    o.push_str(&format!(
        "- peak RSS grows < 10 % from 1× to {}×: {} ({})\n",
        cx.opts.rss_scale,
        verdict(growth.map(|g| g < 0.10)),
        growth
            .map(|g| format!("{:+.0} %", g * 100.0))
            .unwrap_or_default()
    ));
    let s3c = cx
        .res
        .rows
        .get("s3_clear")
        .and_then(|r| r.samples.iter().filter_map(|s| s.requests).max());
    let limit = (15.0 * cx.items as f64 / 10_000.0).ceil().max(15.0) as u64;
    o.push_str(&format!(
        "- S3 clear ≤ 15 requests per 10,000 items (here ≤ {limit} for {} items): {} ({})\n",
        cx.items,
        verdict(s3c.map(|n| n <= limit)),
        s3c.map(|n| format!("{n} requests")).unwrap_or_default()
    ));
    for (key, base, name) in [
        (
            "webdav_clear",
            "raw_webdav_del",
            "WebDAV clear ≤ 1.3× raw keep-alive DELETEs",
        ),
        (
            "jserver_clear",
            "raw_jserver_del",
            "Joplin Server clear ≤ 1.3× raw keep-alive DELETEs",
        ),
    ] {
        let r = cx
            .res
            .median(key)
            .zip(cx.res.median(base))
            .map(|(a, b)| a / b);
        o.push_str(&format!(
            "- {name}: {} ({})\n",
            verdict(r.map(|r| r <= 1.3)),
            r.map(|r| format!("{r:.2}×")).unwrap_or_default()
        ));
    }
    o
}

fn short(key: &str) -> &'static str {
    match key {
        "raw_webdav" | "raw_s3" | "raw_jserver" => "raw PUT",
        "raw_webdav_del" | "raw_jserver_del" => "raw DELETE",
        "fs" => "restore fs",
        _ => "baseline",
    }
}
