//! LAVA's pipeline description: [`Pipeline::describe`] (the tree as data) and
//! [`description_yaml`], the `description.yaml` lava-run writes.
//!
//! The YAML is written by a small direct emitter instead of serde_yaml's general one (which
//! cost a third of a `--validate`). It writes exactly the text serde_yaml writes for
//! `{pipeline: [...]}` — block style, sequences not indented under their key, each string
//! plain or quoted as serde_yaml would choose. A string the emitter cannot place on one
//! line with certainty is rendered by serde_yaml itself, and a string serde_yaml would
//! write over several lines (a literal block) sends the whole document to serde_yaml, so
//! the text never depends on which path wrote it. The tests compare both on arbitrary
//! trees; lava-actions' tests compare them on every pipeline of LAVA's corpus.

use crate::pipeline::Pipeline;
use serde::Serialize;
use std::borrow::Cow;
use std::fmt::Write as _;

/// One entry of `description.yaml`, keys in LAVA's order.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct DescribedAction {
    /// LAVA's class name of the action.
    pub class: String,
    /// LAVA's action name.
    pub name: String,
    /// The action's level (`"1"`, `"2.1"`, ...).
    pub level: String,
    /// Attempts a retry action makes (`failure_retry`).
    pub max_retries: u32,
    /// The action's one-line description.
    pub description: String,
    /// The action's short summary.
    pub summary: String,
    /// The configured timeout in seconds.
    pub timeout: u64,
    /// The resource URL of a download action; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub url: Option<String>,
    /// The action's children; absent when it has none.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub pipeline: Vec<DescribedAction>,
}

impl Pipeline {
    /// LAVA's `describe()`: the tree as data.
    pub fn describe(&self) -> Vec<DescribedAction> {
        self.actions
            .iter()
            .map(|node| DescribedAction {
                class: node.meta.class.clone(),
                name: node.meta.name.clone(),
                level: node.meta.level.clone(),
                max_retries: node.meta.max_retries,
                description: node.meta.description.clone(),
                summary: node.meta.summary.clone(),
                timeout: node.meta.timeout,
                url: node.meta.url.clone(),
                pipeline: node.pipeline.describe(),
            })
            .collect()
    }
}

/// `description.yaml`: `{pipeline: [...]}` as block YAML.
///
/// ```
/// use lava_pipeline::{DescribedAction, description::to_yaml};
/// let action = DescribedAction {
///     class: "FinalizeAction".into(),
///     name: "finalize".into(),
///     level: "1".into(),
///     max_retries: 1,
///     description: "finish the process and cleanup".into(),
///     summary: "finalize the job".into(),
///     timeout: 30,
///     url: None,
///     pipeline: Vec::new(),
/// };
/// assert_eq!(
///     to_yaml(&[action]),
///     "pipeline:\n- class: FinalizeAction\n  name: finalize\n  level: '1'\n  max_retries: 1\n  \
///      description: finish the process and cleanup\n  summary: finalize the job\n  timeout: 30\n"
/// );
/// ```
pub fn description_yaml(pipeline: &Pipeline) -> String {
    to_yaml(&pipeline.describe())
}

/// The `description.yaml` text of `actions` (what serde_yaml writes for
/// `{pipeline: actions}`).
pub fn to_yaml(actions: &[DescribedAction]) -> String {
    if actions.is_empty() {
        return "pipeline: []\n".to_string();
    }
    let mut out = String::with_capacity(320 * count(actions));
    out.push_str("pipeline:\n");
    match write_actions(&mut out, actions, 0) {
        Some(()) => out,
        None => with_serde_yaml(actions),
    }
}

/// The document as serde_yaml writes it: the emitter's reference, and its fallback.
fn with_serde_yaml(actions: &[DescribedAction]) -> String {
    #[derive(Serialize)]
    struct Description<'a> {
        pipeline: &'a [DescribedAction],
    }
    serde_yaml::to_string(&Description { pipeline: actions })
        .expect("a description always serialises")
}

fn count(actions: &[DescribedAction]) -> usize {
    actions.iter().map(|a| 1 + count(&a.pipeline)).sum()
}

/// Writes `actions` as a block sequence whose `-` stands at column `indent`; `None` when a
/// string needs more than one line.
fn write_actions(out: &mut String, actions: &[DescribedAction], indent: usize) -> Option<()> {
    let keys = indent + 2;
    for action in actions {
        push_indent(out, indent);
        out.push_str("- ");
        let fields = [
            ("class", Field::Text(&action.class)),
            ("name", Field::Text(&action.name)),
            ("level", Field::Text(&action.level)),
            ("max_retries", Field::Number(action.max_retries.into())),
            ("description", Field::Text(&action.description)),
            ("summary", Field::Text(&action.summary)),
            ("timeout", Field::Number(action.timeout)),
        ];
        let url = action.url.as_deref().map(|url| ("url", Field::Text(url)));
        for (i, (key, value)) in fields.into_iter().chain(url).enumerate() {
            if i > 0 {
                push_indent(out, keys);
            }
            out.push_str(key);
            out.push_str(": ");
            match value {
                Field::Text(text) => out.push_str(&scalar(text)?),
                Field::Number(n) => {
                    let _ = write!(out, "{n}");
                }
            }
            out.push('\n');
        }
        if !action.pipeline.is_empty() {
            push_indent(out, keys);
            out.push_str("pipeline:\n");
            write_actions(out, &action.pipeline, keys)?;
        }
    }
    Some(())
}

/// The value of one key of a described action.
enum Field<'a> {
    Text(&'a str),
    Number(u64),
}

fn push_indent(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

/// `value` as serde_yaml writes a string mapping value: plain, `'1.1'`-style quoted, or
/// whatever serde_yaml chooses for anything less simple; `None` for a multi-line form.
fn scalar(value: &str) -> Option<Cow<'_, str>> {
    match simple_style(value) {
        Some(Style::Plain) => Some(Cow::Borrowed(value)),
        Some(Style::Quoted) => Some(Cow::Owned(format!("'{value}'"))),
        None => serde_yaml_scalar(value).map(Cow::Owned),
    }
}

/// How serde_yaml writes the strings met in every description.
enum Style {
    /// As it is.
    Plain,
    /// In single quotes, without escapes (the text holds no quote).
    Quoted,
}

/// The style of `value` when it is certainly one of the simple cases, else `None`.
///
/// A level (`1`, `1.2`, `1.2.3`, parts of digits without a leading zero) is a number to a
/// YAML reader when it has one or two parts, so serde_yaml quotes it; with more it is plain.
/// Text starting with an ASCII letter, made of ASCII letters, digits, spaces and
/// punctuation other than `#`, brackets and braces, not ending in a space, with no `:`
/// before a space or at the end, and not a YAML null or boolean, is plain.
fn simple_style(value: &str) -> Option<Style> {
    let bytes = value.as_bytes();
    let first = *bytes.first()?;
    if first.is_ascii_digit() {
        let mut parts = 0;
        for part in value.split('.') {
            let ok = !part.is_empty()
                && !part.starts_with('0')
                && part.bytes().all(|b| b.is_ascii_digit());
            if !ok {
                return None;
            }
            parts += 1;
        }
        return Some(if parts <= 2 {
            Style::Quoted
        } else {
            Style::Plain
        });
    }
    if !first.is_ascii_alphabetic() || bytes.last() == Some(&b' ') {
        return None;
    }
    for (i, &b) in bytes.iter().enumerate() {
        let ok = match b {
            b'#' | b'[' | b']' | b'{' | b'}' => false,
            b':' => bytes.get(i + 1).is_some_and(|next| *next != b' '),
            b' '..=b'~' => true,
            _ => false,
        };
        if !ok {
            return None;
        }
    }
    let resolves_to_other = matches!(
        value,
        "null" | "Null" | "NULL" | "true" | "True" | "TRUE" | "false" | "False" | "FALSE"
    );
    (!resolves_to_other).then_some(Style::Plain)
}

/// `value` rendered by serde_yaml as a mapping value, when that fits on one line: never for
/// a value holding a YAML line break (`\n`, `\r`, U+0085, U+2028, U+2029), which libyaml
/// writes over several lines indented by the value's depth.
fn serde_yaml_scalar(value: &str) -> Option<String> {
    let line_break = |c| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}');
    if value.contains(line_break) {
        return None;
    }
    #[derive(Serialize)]
    struct One<'a> {
        v: &'a str,
    }
    let text = serde_yaml::to_string(&One { v: value }).ok()?;
    let scalar = text.strip_prefix("v: ")?.strip_suffix('\n')?;
    (!scalar.contains('\n')).then(|| scalar.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn action(name: &str, level: &str, url: Option<&str>) -> DescribedAction {
        DescribedAction {
            class: "Class".into(),
            name: name.into(),
            level: level.into(),
            max_retries: 1,
            description: "a description".into(),
            summary: "a summary".into(),
            timeout: 30,
            url: url.map(str::to_string),
            pipeline: Vec::new(),
        }
    }

    #[test]
    fn a_nested_tree_is_written_as_serde_yaml_writes_it() {
        let mut parent = action("deployimages", "1", None);
        let mut child = action("download-retry", "1.1", None);
        child.pipeline = vec![action(
            "http-download",
            "1.1.1",
            Some("http://example.com/a b.img?x=1&y=#2"),
        )];
        parent.pipeline = vec![child, action("lava-overlay", "1.2", None)];
        let actions = vec![parent, action("finalize", "2", None)];
        let text = to_yaml(&actions);
        assert_eq!(text, with_serde_yaml(&actions));
        assert!(
            text.contains("\n    - class: Class\n      name: http-download\n      level: 1.1.1\n"),
            "{text}"
        );
    }

    #[test]
    fn strings_are_styled_as_serde_yaml_styles_them() {
        for value in [
            "",
            "1",
            "1.1",
            "1.1.1",
            "10.2",
            "01",
            "1.01",
            "0",
            "1e5",
            ".5",
            "5.",
            "true",
            "Null",
            "yes",
            "~",
            "a: b",
            "a:b",
            "a:",
            "a #b",
            "a#b",
            "- a",
            "-a",
            "'q'",
            "it's",
            "\"d\"",
            "a ",
            " a",
            "tab\there",
            "line\nbreak",
            "é",
            "[x]",
            "{x}",
            "x, y",
            "@x",
            "%x",
            "!x",
            "&x",
            "*x",
            "|x",
            ">x",
            "?x",
            "? x",
            "---",
            "...",
            "inf",
            ".inf",
            "0x1f",
            "+1",
            "-1",
            "https://example.com/x:y",
            "\u{feff}x",
            "\u{2028}  ",
            "a\u{2029}b",
            "a\u{85}b",
            "a\rb",
            "\u{7f}",
        ] {
            let actions = vec![action(value, value, Some(value))];
            assert_eq!(to_yaml(&actions), with_serde_yaml(&actions), "{value:?}");
        }
    }

    #[test]
    fn an_empty_pipeline_is_an_empty_flow_sequence() {
        assert_eq!(to_yaml(&[]), with_serde_yaml(&[]));
    }

    fn any_string() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z][a-zA-Z0-9 ._/:-]{0,20}",
            "[0-9.]{1,7}",
            "[ -~]{0,12}",
            "\\PC{0,8}",
            ".{0,6}",
            "[a \\n:#'-]{0,8}",
        ]
    }

    fn any_action(depth: u32) -> BoxedStrategy<DescribedAction> {
        let leaf = (
            (any_string(), any_string(), any_string()),
            (any_string(), any_string(), any::<u32>(), any::<u64>()),
            proptest::option::of(any_string()),
        )
            .prop_map(
                |((class, name, level), (description, summary, max_retries, timeout), url)| {
                    DescribedAction {
                        class,
                        name,
                        level,
                        max_retries,
                        description,
                        summary,
                        timeout,
                        url,
                        pipeline: Vec::new(),
                    }
                },
            );
        if depth == 0 {
            return leaf.boxed();
        }
        (leaf, proptest::collection::vec(any_action(depth - 1), 0..3))
            .prop_map(|(mut action, children)| {
                action.pipeline = children;
                action
            })
            .boxed()
    }

    proptest! {
        #[test]
        fn any_tree_is_written_as_serde_yaml_writes_it(
            actions in proptest::collection::vec(any_action(2), 0..4)
        ) {
            prop_assert_eq!(to_yaml(&actions), with_serde_yaml(&actions));
        }
    }
}
