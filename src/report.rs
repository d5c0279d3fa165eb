//! Output channels: human text on stdout, or — with `--json` — human text on stderr and one JSON
//! report on stdout for scripts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use serde::Serialize;

static JSON: AtomicBool = AtomicBool::new(false);
static RESULT: Mutex<Option<serde_json::Value>> = Mutex::new(None);

pub fn set_json(on: bool) {
    JSON.store(on, Ordering::Relaxed);
}

pub fn json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// A line for people: stdout normally, stderr when stdout carries the JSON report.
pub fn say_line(line: &str) {
    if json() {
        err(&format!("{line}\n"));
    } else {
        out(&format!("{line}\n"));
    }
}

/// Text for people on stdout. A reader that went away (`| head -1`) is no reason to stop, let
/// alone to panic halfway through a restore (`println!` does): the run goes on unread.
pub fn out(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush());
}

/// Text for people on stderr. As for stdout: a closed stderr (`2>&1 | head -1`, a terminal
/// that went away) is no reason to stop a run midway with its lock held (`eprintln!` panics).
pub fn err(text: &str) {
    use std::io::Write;
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// `note!("…", args)`: like `eprintln!`, through [`err`].
#[macro_export]
macro_rules! note {
    ($($t:tt)*) => { $crate::report::err(&format!("{}\n", format_args!($($t)*))) };
}

/// `say!("…", args)`: like `println!`, through [`say_line`].
#[macro_export]
macro_rules! say {
    ($($t:tt)*) => { $crate::report::say_line(&format!($($t)*)) };
}

/// Seconds spent in each stage of a command, in order.
#[derive(Debug, Default, Clone, Serialize)]
#[serde(transparent)]
pub struct Timings(pub Vec<StageTime>);

#[derive(Debug, Clone, Serialize)]
pub struct StageTime {
    pub stage: String,
    pub seconds: f64,
}

impl Timings {
    pub fn add(&mut self, stage: &str, since: std::time::Instant) {
        self.0.push(StageTime {
            stage: stage.to_string(),
            seconds: since.elapsed().as_secs_f64(),
        });
    }
}

/// One failed item in a report.
#[derive(Debug, Clone, Serialize)]
pub struct FailureReport {
    pub path: String,
    pub what: String,
    pub error: String,
}

/// The command's machine-readable result, printed by `main` with `--json`.
pub fn set_result(v: serde_json::Value) {
    *RESULT.lock().expect("poisoned") = Some(v);
}

pub fn take_result() -> Option<serde_json::Value> {
    RESULT.lock().expect("poisoned").take()
}
