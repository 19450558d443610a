//! The linear scan behind [`crate::check`]: one pass over the lines, keeping the block
//! indentation levels open, the flow depth and any quoted string still open.
//!
//! It over-approximates where YAML is ambiguous without a full parser (a `[` opening a
//! plain scalar counts as a level until its `]`), which only matters for documents close
//! to the limit, far deeper than any real job.

/// The deepest nesting in `text`: open block indentation levels, plus compact sequence
/// entries on the line (`- - x`), plus open flow collections.
pub fn nesting_depth(text: &str) -> usize {
    scan(text, usize::MAX).0
}

/// The 1-based line where the nesting first exceeds `max`, if it does.
pub(crate) fn first_line_deeper_than(text: &str, max: usize) -> Option<usize> {
    scan(text, max).1
}

/// Returns the deepest nesting seen and, when it exceeds `max`, the line where it did
/// (the scan stops there).
fn scan(text: &str, max: usize) -> (usize, Option<usize>) {
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    let mut quote: Option<u8> = None;
    let mut block_scalar_parent: Option<usize> = None;
    let mut deepest = 0usize;
    for (index, line) in text.lines().enumerate() {
        let bytes = line.as_bytes();
        let indent = bytes.iter().take_while(|b| **b == b' ').count();
        let content = &bytes[indent..];
        if let Some(parent) = block_scalar_parent {
            if content.is_empty() || indent > parent {
                continue;
            }
            block_scalar_parent = None;
        }
        let mut i = indent;
        if quote.is_none() && flow == 0 {
            if content.is_empty() || content[0] == b'#' {
                continue;
            }
            if is_document_marker(content) {
                indents.clear();
                i += 3;
            } else {
                while indents.last().is_some_and(|&top| top > indent) {
                    indents.pop();
                }
                if indents.last().is_none_or(|&top| top < indent) {
                    indents.push(indent);
                }
            }
        }
        let mut entries = 0usize;
        let mut at_value_start = true;
        loop {
            let here = indents.len() + entries + flow;
            if here > deepest {
                deepest = here;
                if deepest > max {
                    return (deepest, Some(index + 1));
                }
            }
            let Some(&b) = bytes.get(i) else { break };
            let next = bytes.get(i + 1).copied();
            if let Some(q) = quote {
                match (q, b) {
                    (b'\'', b'\'') if next == Some(b'\'') => i += 1,
                    (b'"', b'\\') => i += 1,
                    (q, b) if q == b => quote = None,
                    _ => {}
                }
                i += 1;
                continue;
            }
            let spaced = next.is_none_or(|n| n == b' ' || n == b'\t');
            match b {
                b'#' if i == 0 || matches!(bytes[i - 1], b' ' | b'\t') => break,
                b' ' | b'\t' => {}
                b'\'' | b'"' if at_value_start => {
                    quote = Some(b);
                    at_value_start = false;
                }
                b'[' | b'{' if flow > 0 || at_value_start => {
                    flow += 1;
                    at_value_start = true;
                }
                b']' | b'}' if flow > 0 => {
                    flow -= 1;
                    at_value_start = false;
                }
                b',' if flow > 0 => at_value_start = true,
                b'-' | b'?' if at_value_start && flow == 0 && spaced => entries += 1,
                b':' if spaced || flow > 0 => at_value_start = true,
                b'|' | b'>' if at_value_start && flow == 0 => {
                    block_scalar_parent = Some(indent);
                    break;
                }
                b'&' | b'!' | b'*' if at_value_start => {
                    while bytes.get(i + 1).is_some_and(|n| *n != b' ' && *n != b'\t') {
                        i += 1;
                    }
                }
                _ => at_value_start = false,
            }
            i += 1;
        }
    }
    (deepest, None)
}

fn is_document_marker(content: &[u8]) -> bool {
    (content.starts_with(b"---") || content.starts_with(b"..."))
        && content.get(3).is_none_or(|b| *b == b' ' || *b == b'\t')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MAX_YAML_DEPTH, YamlLimitError, check, check_with};

    #[test]
    fn block_levels_flow_and_entries_are_counted() {
        assert_eq!(nesting_depth("a: 1\n"), 1);
        assert_eq!(nesting_depth("a:\n  b:\n    c: 1\nd: 2\n"), 3);
        assert_eq!(nesting_depth("a: [1, [2, {b: 3}]]\n"), 4);
        assert_eq!(nesting_depth("- - - x\n"), 4);
        assert_eq!(nesting_depth("[[[\n]]]\n"), 4);
    }

    #[test]
    fn quotes_comments_and_block_scalars_are_not_nesting() {
        assert_eq!(nesting_depth("a: '[[[[[['\nb: \"{{{{\\\"{{\"\n"), 1);
        assert_eq!(nesting_depth("a: 1 # [[[[[[\n# {{{{{\n"), 1);
        assert_eq!(nesting_depth("a: |\n  [[[[[[\n    {{{{\n\nb: 2\n"), 1);
        assert_eq!(nesting_depth("a: 'it''s [[['\n"), 1);
        assert_eq!(nesting_depth("a: don't [x]\nb: c#[[[\n"), 1);
        assert_eq!(nesting_depth("a: 'two\n  lines [[[['\nb: 1\n"), 1);
    }

    #[test]
    fn documents_at_the_limit_pass_and_deeper_ones_are_refused() {
        let at = format!(
            "{}{}",
            "[".repeat(MAX_YAML_DEPTH - 1),
            "]".repeat(MAX_YAML_DEPTH - 1)
        );
        assert!(check(&at).is_ok());
        let deeper = format!(
            "{}{}",
            "[".repeat(MAX_YAML_DEPTH + 1),
            "]".repeat(MAX_YAML_DEPTH + 1)
        );
        assert_eq!(
            check(&deeper),
            Err(YamlLimitError::TooDeep {
                line: 1,
                limit: MAX_YAML_DEPTH
            })
        );
    }

    #[test]
    fn the_probe_document_is_refused_before_any_parse() {
        // 200 KB of nested flow sequences: the parser alone took minutes on this.
        let probe = format!("x: {}{}", "[".repeat(100_000), "]".repeat(100_000));
        let error = check(&probe).unwrap_err();
        assert!(error.to_string().contains("more than 64 levels"), "{error}");
    }

    #[test]
    fn block_nesting_and_size_are_limited_too() {
        let mut deep = String::new();
        for level in 0..70 {
            deep.push_str(&format!("{}k{level}:\n", " ".repeat(level)));
        }
        assert!(matches!(
            check(&deep),
            Err(YamlLimitError::TooDeep { line: 65, .. })
        ));
        assert_eq!(
            check_with("a: 12345", 4, 10),
            Err(YamlLimitError::TooLarge { size: 8, limit: 4 })
        );
    }

    #[test]
    fn accepted_documents_still_parse_as_before() {
        let text = "job_name: x\ntimeouts:\n  job: {minutes: 5}\nactions:\n- deploy:\n    to: tmpfs\n    images: {rootfs: {url: 'http://x/y:z'}}\n- test:\n    definitions:\n    - from: inline\n      repository:\n        run:\n          steps: [\"echo '[x'\", lava-test-case a --result pass]\n";
        assert!(nesting_depth(text) < 12, "{}", nesting_depth(text));
        assert!(check(text).is_ok());
        let _: serde_yaml::Value = serde_yaml::from_str(text).unwrap();
    }
}
