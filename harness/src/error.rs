//! Why a run could not be carried out, as opposed to a scenario failing. The bottom of the
//! harness's module stack: every phase may return it, it imports none of them.

/// Why a run could not be carried out (as opposed to a scenario failing).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Bad options or configuration: exit code 2.
    #[error("usage: {0}")]
    Usage(String),
    /// The target did not answer: exit code 3.
    #[error("target unreachable: {0}")]
    Unreachable(String),
    /// Reports or ledger could not be written: exit code 2.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl RunError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Usage(_) | RunError::Io(_) => 2,
            RunError::Unreachable(_) => 3,
        }
    }
}
