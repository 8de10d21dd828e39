//! Errors that name the file, the path in the document and, where known, line and column.

use crate::lineage::LineageError;
use serde::de::DeserializeOwned;

/// A bad scenario: `FILE: PATH: REASON` (path and line/column where known).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}: {}{problem}", location(.path, .line_column))]
pub struct ScenarioError {
    /// The file the document came from.
    pub file: String,
    /// Path in the document, `jobs[2].region`; empty for file-level problems.
    pub path: String,
    /// 1-based line and column, for problems the YAML parser located.
    pub line_column: Option<(u64, u64)>,
    /// Boxed: errors travel through every `Result` of parsing and evaluation.
    pub problem: Box<Problem>,
}

fn location(path: &str, line_column: &Option<(u64, u64)>) -> String {
    match (path.is_empty(), line_column) {
        (true, None) => String::new(),
        (false, None) => format!("{path}: "),
        (true, Some((l, c))) => format!("line {l}, column {c}: "),
        (false, Some((l, c))) => format!("{path} (line {l}, column {c}): "),
    }
}

/// What is wrong, without the where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Problem {
    /// The file cannot be read (I/O error text).
    #[error("cannot read the file: {0}")]
    Unreadable(String),
    /// Malformed YAML, an unknown key, a wrong type or a bad quantity, as the parser saw it.
    #[error("{0}")]
    Syntax(String),
    /// A name refers to an entry that is not defined.
    #[error("unknown {kind} {name:?} ({})", defined(.known))]
    UnknownReference {
        /// What kind of entry (`region`, `system`, `product`, …).
        kind: &'static str,
        /// The name given.
        name: String,
        /// The names defined for that kind.
        known: Vec<String>,
    },
    /// A quantity that must be positive is zero or negative.
    #[error("{what} must be greater than zero (got {value})")]
    NotPositive {
        /// The field.
        what: &'static str,
        /// The value as given.
        value: String,
    },
    /// A number outside its allowed range (a PUE below 1, a share above 1).
    #[error("{what} must be in {range} (got {value})")]
    OutOfRange {
        /// The field.
        what: &'static str,
        /// The allowed range, as text.
        range: &'static str,
        /// The value given.
        value: f64,
    },
    /// The products do not form a valid lineage.
    #[error("{0}")]
    Lineage(LineageError),
    /// Any other inconsistency, described in words.
    #[error("{0}")]
    Invalid(String),
}

fn defined(known: &[String]) -> String {
    if known.is_empty() {
        "none are defined".to_owned()
    } else {
        format!("defined: {}", known.join(", "))
    }
}

impl ScenarioError {
    /// An error at `path` of `file`, without line and column.
    pub fn new(file: &str, path: impl Into<String>, problem: Problem) -> Self {
        Self {
            file: file.to_owned(),
            path: path.into(),
            line_column: None,
            problem: Box::new(problem),
        }
    }

    /// The file could not be read (the caller did the I/O).
    pub fn unreadable(file: &str, error: &std::io::Error) -> Self {
        Self::new(file, "", Problem::Unreadable(error.to_string()))
    }

    /// Prefix the document path, for documents embedded in a larger one (`strategies[1]`).
    pub fn under(mut self, prefix: &str) -> Self {
        self.path = match (prefix.is_empty(), self.path.is_empty()) {
            (true, _) => self.path,
            (false, true) => prefix.to_owned(),
            (false, false) if self.path.starts_with('[') => format!("{prefix}{}", self.path),
            (false, false) => format!("{prefix}.{}", self.path),
        };
        self
    }
}

/// Parse YAML into `T`, with the document path and line/column of any error
/// ([`crate::yaml::from_str`]: the fast path for plain documents, serde-saphyr otherwise).
pub fn parse_yaml<T: DeserializeOwned>(file: &str, text: &str) -> Result<T, ScenarioError> {
    crate::yaml::from_str(text).map_err(|crate::yaml::YamlError { path, error: e }| {
        let line_column = e.location().map(|l| (l.line(), l.column()));
        // Syntax errors leave `?` where the parser had not yet read a key.
        let path = path
            .map(|p| {
                p.split('.')
                    .take_while(|segment| *segment != "?")
                    .collect::<Vec<_>>()
                    .join(".")
            })
            .filter(|p| p != ".")
            .unwrap_or_default();
        let message = plain_message(&e);
        ScenarioError {
            file: file.to_owned(),
            path,
            line_column: line_column.filter(|&(l, _)| l > 0),
            problem: Box::new(Problem::Syntax(message)),
        }
    })
}

/// The parser's message without its own location suffix and source snippet (we print those).
fn plain_message(error: &serde_saphyr::Error) -> String {
    let rendered = error.without_snippet().to_string();
    let first = rendered.lines().next().unwrap_or("").trim();
    let first = match first.rfind(" at line ") {
        Some(i) => &first[..i],
        None => first,
    };
    // Advice about parser options is for programmers, not for the author of the file.
    let first = match first.find(", set DuplicateKeyPolicy") {
        Some(i) => &first[..i],
        None => first,
    };
    first.trim_end_matches(':').trim().to_owned()
}
