//! Limits on untrusted YAML, checked in one linear pass before any parser sees the text.
//!
//! A YAML parser given a deeply nested document (`[[[[…]]]]`, 200 KB of it) can spend
//! minutes before its own recursion limit fires, and nothing can interrupt it. Every YAML
//! document a job brings (the job definition, test definitions fetched from repositories,
//! device dictionaries and rendered device configurations) goes through [`check`] first:
//! at most [`MAX_YAML_BYTES`] bytes and [`MAX_YAML_DEPTH`] levels of nesting, counting
//! flow collections (`[`, `{`), block indentation levels and compact sequence entries
//! (`- - x`), while skipping quoted strings, comments and block scalars.
//!
//! Main items: [`check`], [`YamlLimitError`], [`nesting_depth`].
//!
//! ```
//! assert!(lava_yaml::check("actions:\n- deploy: {to: tmpfs}\n").is_ok());
//! let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
//! let error = lava_yaml::check(&deep).unwrap_err();
//! assert!(error.to_string().contains("nests more than 64 levels"));
//! ```

#![warn(missing_docs)]

mod scan;

pub use scan::nesting_depth;

/// The largest YAML document accepted: 8 MiB (LAVA's own jobs and device configurations
/// are a few kilobytes; inline test definitions rarely reach a megabyte).
pub const MAX_YAML_BYTES: usize = 8 * 1024 * 1024;

/// The deepest nesting accepted: 64 levels (real jobs and device configurations nest
/// fewer than 15; the YAML parser's own limit is higher and reached far too slowly).
pub const MAX_YAML_DEPTH: usize = 64;

/// A document refused before parsing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YamlLimitError {
    /// The text is longer than [`MAX_YAML_BYTES`].
    #[error("the YAML document is {size} bytes long, more than the limit of {limit} bytes")]
    TooLarge {
        /// The document's length in bytes.
        size: usize,
        /// The limit it exceeds.
        limit: usize,
    },
    /// The text nests deeper than [`MAX_YAML_DEPTH`].
    #[error(
        "the YAML document nests more than {limit} levels deep (line {line}); refused before parsing"
    )]
    TooDeep {
        /// The 1-based line where the limit was first exceeded.
        line: usize,
        /// The limit it exceeds.
        limit: usize,
    },
}

/// Check `text` against [`MAX_YAML_BYTES`] and [`MAX_YAML_DEPTH`] in one linear pass.
/// Callers name the file in their own error around this one.
pub fn check(text: &str) -> Result<(), YamlLimitError> {
    check_with(text, MAX_YAML_BYTES, MAX_YAML_DEPTH)
}

/// [`check`] with explicit limits.
pub fn check_with(text: &str, max_bytes: usize, max_depth: usize) -> Result<(), YamlLimitError> {
    if text.len() > max_bytes {
        return Err(YamlLimitError::TooLarge {
            size: text.len(),
            limit: max_bytes,
        });
    }
    match scan::first_line_deeper_than(text, max_depth) {
        Some(line) => Err(YamlLimitError::TooDeep {
            line,
            limit: max_depth,
        }),
        None => Ok(()),
    }
}
