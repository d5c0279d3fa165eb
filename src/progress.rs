//! Progress display: one bar per phase on a terminal, plain phase lines otherwise, nothing with
//! `--quiet`.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    quiet: bool,
    tty: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        Progress {
            quiet,
            tty: std::io::stderr().is_terminal(),
            bar: Mutex::new(None),
        }
    }

    pub fn hidden() -> Self {
        Progress::new(true)
    }

    /// Start a phase of `total` steps.
    pub fn phase(&self, label: &str, total: u64) {
        if self.quiet {
            return;
        }
        if !self.tty {
            crate::note!("{label}: {total}");
            return;
        }
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template("{msg:36} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_message(label.to_string());
        *self.bar.lock().expect("poisoned") = Some(bar);
    }

    pub fn inc(&self, steps: u64) {
        if let Some(b) = self.bar.lock().expect("poisoned").as_ref() {
            b.inc(steps);
        }
    }

    pub fn finish(&self) {
        if let Some(b) = self.bar.lock().expect("poisoned").take() {
            b.finish();
        }
    }

    /// A line of text that does not tear the bar.
    pub fn say(&self, line: &str) {
        if self.quiet {
            return;
        }
        match self.bar.lock().expect("poisoned").as_ref() {
            Some(b) => b.println(line),
            None => crate::note!("{line}"),
        }
    }
}
