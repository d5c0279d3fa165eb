//! Large blobs stream: restoring (with verification), snapshotting and clearing a backup with
//! attachments of tens of MB keeps the process's peak memory well below the size of the
//! attachments in flight (issue #11). Linux only: the peak comes from /proc (VmHWM).
#![cfg(target_os = "linux")]

use crate::support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use joplin_restore::generate::{write_jex, GenSpec};

/// Run our binary and return (success, output, peak resident set size in bytes), polling the
/// child's VmHWM (monotonic: the last value read is at most one poll behind the true peak).
fn run_measured(args: &[&str]) -> (bool, String, u64) {
    let mut child = support::command()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run joplin-restore");
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    let deadline = Instant::now() + Duration::from_secs(600);
    // Bounded: at most 600 s at 5 ms a poll.
    for _ in 0..120_000 {
        if let Ok(s) = std::fs::read_to_string(&status_path) {
            if let Some(kb) = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak = peak.max(kb * 1024);
            }
        }
        if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text, peak)
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                dir_bytes(&e.path())
            } else {
                m.len()
            }
        })
        .sum()
}

#[test]
fn large_attachments_stream_instead_of_sitting_in_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let jex = tmp.path().join("big.jex");
    // Eight attachments averaging 20 MiB (the generator skews sizes): all in flight at once
    // with --transfers 8.
    write_jex(
        &GenSpec {
            notes: 20,
            notebooks: 3,
            tags: 2,
            attachments: 8,
            attachment_bytes: 20 * 1024 * 1024,
            seed: 11,
        },
        &jex,
    )
    .unwrap();
    let blob_bytes = std::fs::metadata(&jex).unwrap().len();
    assert!(blob_bytes > 100 << 20, "the backup is {blob_bytes} bytes");
    let target = tmp.path().join("target");
    let snaps = tmp.path().join("snapshots");
    let t = target.to_str().unwrap();
    let common = ["--transfers", "8", "--yes", "--quiet"];

    // Restore, with the default verification (downloads and compares every blob).
    let mut args = vec!["restore", jex.to_str().unwrap(), "--target", t];
    args.extend(common);
    let (ok, out, restore_peak) = run_measured(&args);
    assert!(ok, "{out}");
    assert!(dir_bytes(&target.join(".resource")) > 100 << 20);

    // Clear: snapshots the whole target first (downloads every blob).
    let mut args = vec![
        "clear",
        "--target",
        t,
        "--snapshot-dir",
        snaps.to_str().unwrap(),
    ];
    args.extend(common);
    let (ok, out, clear_peak) = run_measured(&args);
    assert!(ok, "{out}");
    assert!(
        dir_bytes(&snaps) > 100 << 20,
        "the snapshot holds the blobs"
    );

    // Buffering would need at least the attachments in flight (~130 MiB, twice that while
    // verifying); streaming stays near the program's own baseline. This checks that property,
    // not the memory target of issue #11 (that one is measured by bench/run.sh).
    let limit = blob_bytes / 2;
    assert!(
        restore_peak < limit,
        "restore peaked at {} MiB (limit {} MiB)",
        restore_peak >> 20,
        limit >> 20
    );
    assert!(
        clear_peak < limit,
        "clear peaked at {} MiB (limit {} MiB)",
        clear_peak >> 20,
        limit >> 20
    );
}
