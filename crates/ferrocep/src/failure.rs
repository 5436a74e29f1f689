//! Why a command failed, and the exit status that says so: 0 on success; 1
//! when `--strict` meets a bad line or a skip strategy with
//! `throw_exception_on_miss` cannot skip past a match; 2 for a bad spec or
//! config, bad usage or an I/O error.

/// Why a command failed, with the exit status it maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Process exit status.
    pub code: i32,
    /// The message, printed on stderr.
    pub message: String,
}

impl Failure {
    /// The spec cannot be read, parsed or compiled (exit 2).
    pub fn spec(message: impl Into<String>) -> Self {
        Failure {
            code: 2,
            message: format!("spec error: {}", message.into()),
        }
    }

    /// A pipeline config that cannot be used (exit 2): every error, one per
    /// line (`FILE:LINE:COLUMN: FIELD.PATH: REASON`), then a count.
    pub fn config(errors: &ferrocep_runtime::config::ConfigErrors) -> Self {
        let n = errors.len();
        let file = errors
            .errors()
            .first()
            .map(|e| e.file.display().to_string())
            .unwrap_or_default();
        let plural = if n == 1 { "" } else { "s" };
        Failure {
            code: 2,
            message: format!("{errors}\nerror: {file}: {n} error{plural} in the config"),
        }
    }

    /// Bad arguments (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: 2,
            message: format!("error: {}", message.into()),
        }
    }

    /// Reading input or writing output failed (exit 2).
    pub fn io(message: impl Into<String>) -> Self {
        Failure {
            code: 2,
            message: format!("error: {}", message.into()),
        }
    }

    /// A pipeline that cannot start: a busy address, an unusable data
    /// directory (exit 2).
    pub fn start(message: impl Into<String>) -> Self {
        Failure {
            code: 2,
            message: format!("error: {}", message.into()),
        }
    }

    /// A run that failed after it started (exit 1).
    pub fn runtime(message: impl Into<String>) -> Self {
        Failure {
            code: 1,
            message: format!("error: {}", message.into()),
        }
    }

    /// A bad input line under `--strict`, or a match a throwing skip
    /// strategy cannot skip past (exit 1).
    pub fn data(message: impl Into<String>) -> Self {
        Failure {
            code: 1,
            message: format!("error: {}", message.into()),
        }
    }
}
