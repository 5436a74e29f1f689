//! Config errors: every problem found in a pipeline config, each naming the
//! file, the line and column when known, the field path
//! (`outputs.timeout[0].url`) and the reason.

use std::fmt;
use std::path::PathBuf;

use ferrocep_core::spec::Location;

/// One problem in a pipeline config.
///
/// Displayed as `FILE:LINE:COLUMN: FIELD.PATH: REASON`, leaving out the
/// line and column when they are not known (JSON configs, whole-file
/// problems) and the field path when the problem is the whole file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file (as given).
    pub file: PathBuf,
    /// Where in the file, when known (YAML values; syntax errors).
    pub location: Option<Location>,
    /// The field path, e.g. `outputs.timeout[0].url`; empty for the whole file.
    pub path: String,
    /// What is wrong, quoting the offending input.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(loc) = self.location {
            write!(f, ":{loc}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in a config (at least one), in the order of the file.
///
/// Displayed one per line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The errors.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }

    /// How many errors there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none (never, for an error returned by
    /// [`load`](super::load)).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
