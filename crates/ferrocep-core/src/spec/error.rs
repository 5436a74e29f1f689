//! Spec errors: what is wrong with a spec, and where — the file, the line and
//! column, the field path (`stages[1].where`) and, for expressions, the column
//! inside the expression.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::pattern::PatternError;

/// A position in the spec text; line and column are 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Location {
    /// Line, from 1.
    pub line: u64,
    /// Column (in characters), from 1.
    pub column: u64,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// The syntax a spec text was read as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Syntax {
    /// YAML (read with `serde-saphyr`).
    Yaml,
    /// JSON (read with `serde_json`).
    Json,
}

impl fmt::Display for Syntax {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Syntax::Yaml => "yaml",
            Syntax::Json => "json",
        })
    }
}

/// A spec that cannot be used, with where the problem is.
///
/// Displayed as `FILE:LINE:COLUMN: FIELD: MESSAGE`, leaving out what is not
/// known (a spec given as text has no file; a JSON spec has line and column
/// only for syntax errors; a YAML spec has them for every value).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{prefix}{kind}", prefix = Prefix(self), kind = self.0.kind)]
pub struct SpecError(Box<Inner>);

#[derive(Clone, Debug, PartialEq, Eq)]
struct Inner {
    file: Option<PathBuf>,
    location: Option<Location>,
    kind: SpecErrorKind,
}

/// What is wrong with a spec.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpecErrorKind {
    /// The spec file cannot be read.
    Io {
        /// The operating system's reason.
        message: String,
    },
    /// The text is not valid YAML or JSON.
    Syntax {
        /// The syntax the text was read as.
        syntax: Syntax,
        /// The parser's message (without its position, which is [`SpecError::location`]).
        message: String,
    },
    /// A field is missing, unknown, of the wrong type or has a bad value.
    Invalid {
        /// Field path, e.g. `stages[1].times`; empty for the whole spec.
        path: String,
        /// What is wrong, quoting the offending input.
        message: String,
    },
    /// A `where` or `until` expression does not parse.
    Expr {
        /// Field path, e.g. `stages[1].where`.
        path: String,
        /// The expression as written.
        text: String,
        /// Column inside the expression (from 1).
        column: usize,
        /// The expression parser's message.
        message: String,
    },
    /// Flink would reject the pattern the spec describes (`MalformedPatternException`).
    Pattern {
        /// The spec field whose Pattern call failed (e.g. `stages[2].greedy`);
        /// empty when the problem was found while compiling the whole pattern.
        path: String,
        /// The pattern error.
        error: PatternError,
    },
}

impl SpecError {
    /// An error with no file and no location yet.
    pub(crate) fn new(kind: SpecErrorKind) -> Self {
        SpecError(Box::new(Inner {
            file: None,
            location: None,
            kind,
        }))
    }

    /// An [`SpecErrorKind::Invalid`] error at `path`.
    pub(crate) fn invalid(
        path: impl Into<String>,
        location: Option<Location>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(SpecErrorKind::Invalid {
            path: path.into(),
            message: message.into(),
        })
        .at(location)
    }

    /// Sets where in the text the problem is.
    pub(crate) fn at(mut self, location: Option<Location>) -> Self {
        self.0.location = location;
        self
    }

    /// Sets the file the spec came from (unless already set).
    pub(crate) fn in_file(mut self, file: Option<PathBuf>) -> Self {
        if self.0.file.is_none() {
            self.0.file = file;
        }
        self
    }

    /// What is wrong.
    pub fn kind(&self) -> &SpecErrorKind {
        &self.0.kind
    }

    /// The spec file, when the spec was loaded from a path.
    pub fn file(&self) -> Option<&Path> {
        self.0.file.as_deref()
    }

    /// Where in the spec text the problem is, when known.
    pub fn location(&self) -> Option<Location> {
        self.0.location
    }

    /// The field path the error concerns (`stages[1].where`), if any.
    pub fn path(&self) -> Option<&str> {
        match &self.0.kind {
            SpecErrorKind::Invalid { path, .. }
            | SpecErrorKind::Expr { path, .. }
            | SpecErrorKind::Pattern { path, .. }
                if !path.is_empty() =>
            {
                Some(path)
            }
            _ => None,
        }
    }
}

struct Prefix<'a>(&'a SpecError);

impl fmt::Display for Prefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.0 .0.file, &self.0 .0.location) {
            (Some(file), Some(loc)) => write!(f, "{}:{}: ", file.display(), loc),
            (Some(file), None) => write!(f, "{}: ", file.display()),
            (None, Some(loc)) => write!(f, "line {}, column {}: ", loc.line, loc.column),
            (None, None) => Ok(()),
        }
    }
}

fn with_path(f: &mut fmt::Formatter<'_>, path: &str) -> fmt::Result {
    if path.is_empty() {
        Ok(())
    } else {
        write!(f, "{path}: ")
    }
}

impl fmt::Display for SpecErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecErrorKind::Io { message } => write!(f, "cannot read the spec: {message}"),
            SpecErrorKind::Syntax { syntax, message } => write!(f, "invalid {syntax}: {message}"),
            SpecErrorKind::Invalid { path, message } => {
                with_path(f, path)?;
                f.write_str(message)
            }
            SpecErrorKind::Expr {
                path,
                text,
                column,
                message,
            } => {
                with_path(f, path)?;
                write!(f, "expression '{text}' at column {column}: {message}")
            }
            SpecErrorKind::Pattern { path, error } => {
                with_path(f, path)?;
                write!(f, "{error}")
            }
        }
    }
}
