//! YAML in, with located errors: the one way every crate parses YAML (DESIGN §10).
//!
//! [`from_str`] first tries a fast deserializer straight over the parser's events
//! (`fast.rs`), which handles the plain YAML that scenario and config files are written in
//! and gives up on anything else and on every error; then serde-saphyr parses the text, with
//! `serde_path_to_error` naming the field. So documents mean the same as with serde-saphyr
//! alone, and errors are serde-saphyr's, located as before; only valid plain documents are
//! faster (docs/performance.md, "calc": 100k jobs, 15.7 MB).

mod fast;

use serde::de::DeserializeOwned;

/// A document serde-saphyr rejected, with the path of the field it was reading.
#[derive(Debug)]
pub struct YamlError {
    /// `serde_path_to_error`'s path (`jobs[2].region`, `.` at the top, `?` segments where a
    /// key had not been read yet); `None` if the error came before any value.
    pub path: Option<String>,
    /// The parser's error: message and, where known, location (boxed: it is large).
    pub error: Box<serde_saphyr::Error>,
}

/// Parse `text` as `T`.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    match fast::try_from_str(text) {
        Some(value) => Ok(value),
        None => from_str_serde_saphyr(text),
    }
}

/// Parse `text` with serde-saphyr only (the reference the fast path must agree with).
pub fn from_str_serde_saphyr<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    let mut path = None;
    // The default budget (250k nodes) stops near 20k scenario jobs. The text is already in
    // memory, so allow as many nodes as it has bytes; alias expansion keeps its own limits.
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_nodes: text.len().max(250_000),
            max_events: text.len().saturating_mul(4).max(1_000_000),
        },
    };
    serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            path = Some(e.path().to_string());
            e.into_inner()
        })
    })
    .map_err(|error| YamlError {
        path,
        error: Box::new(error),
    })
}

#[cfg(test)]
mod tests;
