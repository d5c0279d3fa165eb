//! Exit codes, documented in the README: 0 ok, 1 failed, 2 usage, 3 differences (verify, diff)
//! or backup problems (inspect),
//! 4 refused (backup problems, damaged backup, not confirmed, unsafe target, a secret where
//! none belongs).

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

/// The command line asks for something that cannot be (exit 2, as clap's own errors): a
/// selection that matches nothing, or more than one thing.
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// `bail!` for a [`Usage`] error (exit 2).
#[macro_export]
macro_rules! usage_error {
    ($($t:tt)*) => {
        return Err($crate::exit::Usage(format!($($t)*)).into())
    };
}

/// `bail!` for a refusal (exit 4): the input is unusable as it is, and the message says what to
/// do instead.
#[macro_export]
macro_rules! refuse {
    ($($t:tt)*) => {
        return Err($crate::exit::Refusal(format!($($t)*)).into())
    };
}

/// Whether `e` is a refusal, under whatever context was added on its way up.
pub fn is_refusal(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<Refusal>())
}

/// The exit code for an error that reached `main`.
pub fn code_for(e: &anyhow::Error) -> i32 {
    // A server that turns our credentials down refuses like a wrong password does.
    let denied = e.chain().any(|c| {
        matches!(
            c.downcast_ref::<backend_core::StorageError>(),
            Some(backend_core::StorageError::Auth(_))
        )
    });
    if denied || is_refusal(e) {
        REFUSED
    } else if e.chain().any(|c| c.is::<Usage>()) {
        USAGE
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
