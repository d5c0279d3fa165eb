//! What a person sees: the progress display under a real pseudo-terminal (util-linux `script`),
//! and the log file.

use crate::support;

use std::process::{Command, Stdio};

use support::sample_jex;

#[test]
fn progress_bars_show_on_a_terminal_and_stay_quiet_otherwise() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    let cmd = format!(
        "{} restore {} --target {}",
        env!("CARGO_BIN_EXE_joplin-restore"),
        sample_jex().display(),
        target.display()
    );
    let o = Command::new("script")
        .args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .envs(support::xdg_env())
        .stdin(Stdio::null())
        .output()
        .expect("script (util-linux, installed by scripts/install-test-deps.sh)");
    let screen = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{screen}");
    // indicatif draws each phase as a bar with a counter.
    for phase in [
        "uploading attachment blobs",
        "uploading notes",
        "uploading note-tag links",
    ] {
        assert!(
            screen.contains(phase),
            "no {phase:?} bar on the terminal:\n{screen}"
        );
    }
    assert!(
        screen.contains("10/10"),
        "the notes bar reaches 10/10:\n{screen}"
    );
    assert!(screen.contains("Checked: 27 items"), "{screen}");

    // Not a terminal: plain phase lines, no bar drawing.
    let o = support::jr(&[
        "restore",
        sample_jex().to_str().unwrap(),
        "--target",
        tmp.path().join("t2").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("uploading notes: 10"), "{err}");
    assert!(
        !err.contains('\u{1b}'),
        "no terminal escapes when not a terminal: {err:?}"
    );
}

#[test]
fn log_file_records_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("run.log");
    support::jr_ok(&[
        "-v",
        "--log-file",
        log.to_str().unwrap(),
        "restore",
        sample_jex().to_str().unwrap(),
        "--target",
        tmp.path().join("t").to_str().unwrap(),
        "-q",
    ]);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("INFO"), "{text}");
    assert!(text.contains("uploading notes: 10"), "{text}");
    assert!(!text.contains('\u{1b}'), "no colour codes in the file");
}

/// `joplin-restore … | head -1`: a reader that goes away must not stop a run halfway (it
/// panicked with "failed printing to stdout: Broken pipe", exit 101, after the snapshot and
/// before writing anything), nor the read-only commands.
#[test]
fn a_closed_stdout_does_not_stop_a_run() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    let (backup, t) = (sample_jex(), target.to_str().unwrap().to_string());
    let b = backup.to_str().unwrap();
    let snaps = tmp.path().join("snaps");
    let s = snaps.to_str().unwrap();
    let runs: [&[&str]; 4] = [
        &["restore", b, "--target", &t, "--yes", "--snapshot-dir", s],
        &["inspect", b],
        &["status", "--target", &t],
        &["verify", b, "--target", &t],
    ];
    for args in runs {
        let mut child = support::spawn(args);
        // Close our end of the pipe before the child writes anything.
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    // The restore ran to the end.
    let o = support::jr(&["verify", b, "--target", &t]);
    assert!(o.status.success(), "{}", support::text(&o));
}

/// The bash completion script completes a subcommand's options and a nested subcommand, not
/// only the top level (clap_complete misspells a hyphenated name's states: clap-rs/clap#6421).
#[test]
fn bash_completion_completes_inside_subcommands() {
    let script = support::command()
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(script.status.success());
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("joplin-restore.bash");
    std::fs::write(&file, &script.stdout).unwrap();
    let complete = |words: &str, cur: &str, prev: &str| {
        let n = words.split_whitespace().count() - 1;
        let o = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {}; COMP_WORDS=({words}); COMP_CWORD={n}; \
                 _joplin__restore joplin-restore {cur} {prev}; echo \"${{COMPREPLY[*]}}\"",
                file.display()
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let opts = complete("joplin-restore restore --ver", "--ver", "restore");
    assert!(opts.split(' ').any(|w| w == "--verify"), "{opts:?}");
    assert_eq!(
        complete("joplin-restore client re", "re", "client"),
        "reset"
    );
}

/// Every page the man page names (`joplin-restore-restore(1)`, and those the client page
/// names in turn) is printed by `man` with its words, and an unknown command is a usage error
/// listing the known ones.
#[test]
fn man_prints_every_page_the_man_page_names() {
    let man = |words: &[&str]| {
        let o = support::command().arg("man").args(words).output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).to_string(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    };
    let mut todo = vec![Vec::<String>::new()];
    let mut printed = Vec::new();
    while let Some(words) = todo.pop() {
        assert!(printed.len() < 50, "too many pages: {printed:?}");
        let args: Vec<&str> = words.iter().map(String::as_str).collect();
        let (code, page, err) = man(&args);
        assert_eq!(code, Some(0), "man {args:?}: {err}");
        let title = std::iter::once("joplin-restore")
            .chain(args.iter().copied())
            .collect::<Vec<_>>()
            .join("-");
        assert!(
            page.contains(&format!(".TH {title} 1")),
            "man {args:?} is not the page of {title}:\n{page}"
        );
        printed.push(title);
        // `.TP` entries of the SUBCOMMANDS section: joplin\-restore\-NAME(1)
        for line in page.lines() {
            if let Some(named) = line.strip_suffix("(1)") {
                let named = named.replace("\\-", "-");
                let sub: Vec<String> = named
                    .trim_start_matches("joplin-restore-")
                    .split('-')
                    .map(String::from)
                    .collect();
                if sub.len() == words.len() + 1 && sub.last().is_some_and(|w| w != "help") {
                    todo.push(sub);
                }
            }
        }
    }
    for page in ["joplin-restore-restore", "joplin-restore-client-reset"] {
        assert!(
            printed.iter().any(|p| p == page),
            "{page} not reached: {printed:?}"
        );
    }
    let (_, restore, _) = man(&["restore"]);
    assert!(restore.contains("rewrite\\-unchanged"), "{restore}");
    let (code, _, err) = man(&["client", "bogus"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("`joplin-restore client` has no command `bogus`") && err.contains("reset"),
        "{err}"
    );
}
