//! Python's text forms that LAVA's formats and messages are made of, written once for the
//! whole dispatcher: `repr()` of str, bytes and float ([`repr`]), `shlex.quote` and
//! `shlex.split` in POSIX mode ([`shlex`]), and the scalars PyYAML's C dumper writes in
//! double-quoted style ([`yaml`]: LAVA's log lines and the `yaml_quote` template filter).
//!
//! The crate knows no pipeline or device type: callers walk their own values (YAML
//! mappings, template values) and use these functions for the scalars. Each function is
//! checked against Debian's `/usr/bin/python3` by the crate's property tests.
//!
//! ```
//! use lava_python::{ShlexError, float_repr, shlex_quote, shlex_split, str_repr, yaml_double_quoted};
//!
//! assert_eq!(str_repr("it's"), r#""it's""#);
//! assert_eq!(float_repr(1e16), "1e+16");
//! assert_eq!(shlex_quote("a b"), "'a b'");
//! assert_eq!(shlex_split(r#"telnet 'my host' 7001"#).unwrap(), ["telnet", "my host", "7001"]);
//! assert!(matches!(shlex_split("'open"), Err(ShlexError::NoClosingQuotation { .. })));
//! assert_eq!(yaml_double_quoted("caf\u{e9}\n"), r#""caf\xE9\n""#);
//! ```

#![warn(missing_docs)]

mod printable;
pub mod repr;
pub mod shlex;
pub mod yaml;

pub use repr::{
    bytes_repr, float_repr, is_printable, str_repr, write_bytes_repr, write_float_repr,
    write_str_repr,
};
pub use shlex::{ShlexError, shlex_quote, shlex_split, single_quote};
pub use yaml::{write_yaml_double_quoted, yaml_double_quoted, yaml_float};
