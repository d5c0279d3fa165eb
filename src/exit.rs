//! Exit codes, documented in the README: 0 ok, 1 failed, 2 usage, 3 differences (verify, diff)
//! or backup problems (inspect),
//! 4 refused (validation problems, not confirmed, unsafe target).

pub const OK: i32 = 0;
pub const FAILED: i32 = 1;
/// The command line was wrong (clap's own exit code).
pub const USAGE: i32 = 2;
pub const DIFFERENCES: i32 = 3;
pub const REFUSED: i32 = 4;

/// The tool declined to act; nothing was changed.
#[derive(Debug)]
pub struct Refusal(pub String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refusal {}

/// The exit code for an error that reached `main`.
pub fn code_for(e: &anyhow::Error) -> i32 {
    // A server that turns our credentials down refuses like a wrong password does.
    let denied = e.chain().any(|c| {
        matches!(
            c.downcast_ref::<backend_core::StorageError>(),
            Some(backend_core::StorageError::Auth(_))
        )
    });
    if denied || e.downcast_ref::<Refusal>().is_some() {
        REFUSED
    } else {
        FAILED
    }
}

/// A run that stopped with per-item failures; the JSON report lists them.
#[derive(Debug)]
pub struct Failed {
    pub message: String,
    pub failures: Vec<crate::report::FailureReport>,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failed {}

impl Failed {
    pub fn from_outcome(message: String, outcome: &crate::execute::Outcome) -> Self {
        Failed {
            message,
            failures: outcome
                .failures
                .iter()
                .map(|f| crate::report::FailureReport {
                    path: f.path.clone(),
                    what: f.what.clone(),
                    error: f.error.clone(),
                })
                .collect(),
        }
    }
}
