//! Jinja2's block scoping, reproduced on top of minijinja.
//!
//! In Jinja2 every `{% block %}` is rendered from the template's context (the render
//! variables plus top-level `{% set %}`s); a variable that an enclosing block sets is *not*
//! visible in a block nested inside it. minijinja renders a nested block on top of the
//! enclosing block's frame, so the nested block would see the enclosing value. LAVA's `d03`
//! template depends on Jinja2's behaviour (its nested `grub_*` blocks print the context's
//! `console_device`, not the one `body` sets).
//!
//! [`isolate_nested_blocks`] rewrites a template's *compiled form* so the two engines agree:
//! when a nested block reads a name that an enclosing block assigns, the outermost such block
//! captures the outer value first (`{% set __lava_outer_NAME = NAME %}` right after its
//! `{% block %}` tag) and the nested block reads that capture. The template file is not
//! changed; the rewrite keeps every line where it was, so error lines stay right.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

/// Prefix of the variables that hold an enclosing block's view of a name.
const OUTER_PREFIX: &str = "__lava_outer_";

#[derive(Debug, Clone, PartialEq)]
enum Tok<'a> {
    Ident(&'a str),
    Str,
    Punct(&'a str),
}

#[derive(Debug)]
struct Tag<'a> {
    /// Statement (`{% %}`) rather than expression (`{{ }}`).
    stmt: bool,
    /// Byte offset just past the closing `%}` / `}}`.
    end: usize,
    /// Whether the tag closes with `-%}` (strips the whitespace that follows).
    strip_after: bool,
    toks: Vec<(Tok<'a>, usize)>,
}

/// Split a template into its tags (comments and raw sections skipped).
fn scan(source: &str) -> Option<Vec<Tag<'_>>> {
    let bytes = source.as_bytes();
    let mut tags = Vec::new();
    let mut i = 0;
    while let Some(pos) = source[i..].find('{') {
        let start = i + pos;
        let next = bytes.get(start + 1).copied();
        match next {
            Some(b'#') => {
                let close = source[start + 2..].find("#}")?;
                i = start + 2 + close + 2;
            }
            Some(b'{') | Some(b'%') => {
                let stmt = next == Some(b'%');
                let tag = scan_tag(source, start + 2, stmt)?;
                i = tag.end;
                let is_raw = stmt && matches!(tag.toks.first(), Some((Tok::Ident("raw"), _)));
                tags.push(tag);
                if is_raw {
                    // Skip to the matching {% endraw %}.
                    let mut j = i;
                    loop {
                        let open = source[j..].find("{%")? + j;
                        let t = scan_tag(source, open + 2, true)?;
                        j = t.end;
                        if matches!(t.toks.first(), Some((Tok::Ident("endraw"), _))) {
                            break;
                        }
                    }
                    i = j;
                }
            }
            _ => i = start + 1,
        }
    }
    Some(tags)
}

/// Tokenize one tag's content starting at `from` (just past `{{` or `{%`).
fn scan_tag(source: &str, from: usize, stmt: bool) -> Option<Tag<'_>> {
    let bytes = source.as_bytes();
    let close = if stmt { b'%' } else { b'}' };
    let mut toks = Vec::new();
    let mut i = from;
    if bytes.get(i) == Some(&b'-') || bytes.get(i) == Some(&b'+') {
        i += 1;
    }
    loop {
        let c = *bytes.get(i)?;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        // `-%}` / `%}` / `}}` end the tag.
        if (c == b'-' || c == b'+')
            && bytes.get(i + 1) == Some(&close)
            && bytes.get(i + 2) == Some(&b'}')
        {
            return Some(Tag {
                stmt,
                end: i + 3,
                strip_after: c == b'-',
                toks,
            });
        }
        if c == close && bytes.get(i + 1) == Some(&b'}') {
            return Some(Tag {
                stmt,
                end: i + 2,
                strip_after: false,
                toks,
            });
        }
        if c == b'\'' || c == b'"' {
            let mut j = i + 1;
            loop {
                match *bytes.get(j)? {
                    b'\\' => j += 2,
                    q if q == c => break,
                    _ => j += 1,
                }
            }
            toks.push((Tok::Str, i));
            i = j + 1;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let mut j = i + 1;
            while bytes
                .get(j)
                .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
            {
                j += 1;
            }
            toks.push((Tok::Ident(&source[i..j]), i));
            i = j;
        } else if c.is_ascii_digit() {
            let mut j = i + 1;
            while bytes
                .get(j)
                .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'.')
            {
                j += 1;
            }
            toks.push((Tok::Punct("0"), i));
            i = j;
        } else {
            let two = source.get(i..i + 2).unwrap_or("");
            let len = if matches!(two, "==" | "!=" | "<=" | ">=" | "//" | "**") {
                2
            } else {
                // A multi-byte character is an error for the real parser; keep it whole.
                source[i..].chars().next()?.len_utf8()
            };
            toks.push((Tok::Punct(&source[i..i + len]), i));
            i += len;
        }
    }
}

const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "not",
    "in",
    "is",
    "if",
    "else",
    "elif",
    "true",
    "false",
    "none",
    "True",
    "False",
    "None",
    "recursive",
    "with",
    "without",
    "context",
    "ignore",
    "missing",
    "as",
    "import",
    "from",
    "scoped",
    "required",
];

/// Variable reads in a tag: `(name, offset)`. Attribute names, filter and test names and
/// keyword-argument names are not reads; statement keywords and assignment targets neither.
fn reads<'a>(tag: &Tag<'a>) -> Vec<(&'a str, usize)> {
    let toks = &tag.toks;
    let mut skip_until = 0;
    if tag.stmt {
        match toks.first() {
            // `set x = ...`: reads start after the `=`; `set x` (block set): none.
            Some((Tok::Ident("set"), _)) => {
                skip_until = toks
                    .iter()
                    .position(|(t, _)| *t == Tok::Punct("="))
                    .map(|p| p + 1)
                    .unwrap_or(toks.len());
            }
            // `for a, b in ...`: reads start after `in`.
            Some((Tok::Ident("for"), _)) => {
                skip_until = toks
                    .iter()
                    .position(|(t, _)| *t == Tok::Ident("in"))
                    .map(|p| p + 1)
                    .unwrap_or(toks.len());
            }
            Some((Tok::Ident("block" | "endblock" | "macro" | "call" | "filter"), _)) => {
                // Block names are not reads; filter-block names are filter names, and
                // macros get their own scope in both engines.
                return Vec::new();
            }
            _ => skip_until = 1,
        }
    }
    let mut out = Vec::new();
    for (k, (tok, offset)) in toks.iter().enumerate().skip(skip_until) {
        let Tok::Ident(name) = tok else { continue };
        if KEYWORDS.contains(name) {
            continue;
        }
        let prev = k.checked_sub(1).map(|p| &toks[p].0);
        let prev2 = k.checked_sub(2).map(|p| &toks[p].0);
        let next = toks.get(k + 1).map(|t| &t.0);
        let is_name_of = matches!(prev, Some(Tok::Punct(".") | Tok::Punct("|")))
            || matches!(prev, Some(Tok::Ident("is")))
            || (matches!(prev, Some(Tok::Ident("not"))) && matches!(prev2, Some(Tok::Ident("is"))));
        let is_kwarg = matches!(next, Some(Tok::Punct("=")));
        if !is_name_of && !is_kwarg {
            out.push((*name, *offset));
        }
    }
    out
}

/// Names a statement tag assigns: `set a = ...`, `set a, b = ...`, `set a %}...{% endset`.
fn set_targets<'a>(tag: &Tag<'a>) -> Vec<&'a str> {
    let toks = &tag.toks;
    if !tag.stmt || !matches!(toks.first(), Some((Tok::Ident("set"), _))) {
        return Vec::new();
    }
    toks.iter()
        .skip(1)
        .take_while(|(t, _)| *t != Tok::Punct("="))
        .filter_map(|(t, _)| match t {
            Tok::Ident(n) => Some(*n),
            _ => None,
        })
        .collect()
}

/// Loop targets of a `for` tag.
fn for_targets<'a>(tag: &Tag<'a>) -> Vec<&'a str> {
    tag.toks
        .iter()
        .skip(1)
        .take_while(|(t, _)| *t != Tok::Ident("in"))
        .filter_map(|(t, _)| match t {
            Tok::Ident(n) => Some(*n),
            _ => None,
        })
        .collect()
}

#[derive(Debug, Default)]
struct Block<'a> {
    /// Enclosing blocks, outermost first.
    ancestors: Vec<usize>,
    /// Offset just past the `{% block %}` tag, and whether that tag strips what follows.
    body_start: usize,
    strip_after: bool,
    /// Names assigned in this block's own scope (outside loops and nested blocks).
    assigned: BTreeSet<&'a str>,
    /// Names bound anywhere in this block (any set or loop target): never rewritten here.
    bound: BTreeSet<&'a str>,
    /// Reads in this block's own body: name → offsets.
    reads: BTreeMap<&'a str, Vec<usize>>,
}

/// Rewrite `source` so nested blocks do not see names their enclosing blocks assign (see the
/// module documentation). Sources without nested blocks, or that cannot be scanned, are
/// returned unchanged (the real parser then reports any syntax error).
pub fn isolate_nested_blocks(source: &str) -> Cow<'_, str> {
    if source.matches("block").count() < 4 {
        return Cow::Borrowed(source);
    }
    let Some(tags) = scan(source) else {
        return Cow::Borrowed(source);
    };
    let mut blocks: Vec<Block<'_>> = Vec::new();
    let mut stack: Vec<usize> = Vec::new();
    // Loop nesting depth inside the current block (sets in loops are loop-local).
    let mut loop_depth: Vec<usize> = Vec::new();
    for tag in &tags {
        let keyword = match tag.toks.first() {
            Some((Tok::Ident(k), _)) if tag.stmt => Some(*k),
            _ => None,
        };
        match keyword {
            Some("block") => {
                blocks.push(Block {
                    ancestors: stack.clone(),
                    body_start: tag.end,
                    strip_after: tag.strip_after,
                    ..Block::default()
                });
                stack.push(blocks.len() - 1);
                loop_depth.push(0);
                continue;
            }
            Some("endblock") => {
                stack.pop();
                loop_depth.pop();
                continue;
            }
            _ => {}
        }
        let Some(&current) = stack.last() else {
            continue;
        };
        let depth = loop_depth.last_mut().expect("pushed with the block");
        match keyword {
            Some("for") => {
                *depth += 1;
                let targets = for_targets(tag);
                blocks[current].bound.extend(targets);
            }
            Some("endfor") => *depth = depth.saturating_sub(1),
            Some("set") => {
                let targets = set_targets(tag);
                if *depth == 0 {
                    blocks[current].assigned.extend(targets.iter().copied());
                }
                blocks[current].bound.extend(targets);
            }
            _ => {}
        }
        for (name, offset) in reads(tag) {
            blocks[current].reads.entry(name).or_default().push(offset);
        }
    }

    // Captures to insert (block → names) and reads to rename (offset → name).
    let mut captures: BTreeMap<usize, BTreeSet<&str>> = BTreeMap::new();
    let mut renames: BTreeMap<usize, &str> = BTreeMap::new();
    for block in &blocks {
        for (name, offsets) in &block.reads {
            if block.bound.contains(name) {
                continue;
            }
            let Some(&outermost) = block
                .ancestors
                .iter()
                .find(|&&a| blocks[a].assigned.contains(name))
            else {
                continue;
            };
            captures.entry(outermost).or_default().insert(name);
            for &offset in offsets {
                renames.insert(offset, name);
            }
        }
    }
    if renames.is_empty() {
        return Cow::Borrowed(source);
    }
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    for (block, names) in captures {
        let b = &blocks[block];
        let close = if b.strip_after { "-%}" } else { "%}" };
        let text: String = names
            .iter()
            .map(|n| format!("{{% set {OUTER_PREFIX}{n} = {n} {close}"))
            .collect();
        edits.push((b.body_start, b.body_start, text));
    }
    for (offset, name) in renames {
        edits.push((offset, offset + name.len(), format!("{OUTER_PREFIX}{name}")));
    }
    edits.sort_by_key(|e| (e.0, e.1));
    let mut out = String::with_capacity(source.len() + 64 * edits.len());
    let mut at = 0;
    for (start, end, text) in edits {
        out.push_str(&source[at..start]);
        out.push_str(&text);
        at = end;
    }
    out.push_str(&source[at..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_block_reads_the_outer_value() {
        let src = "{% block body %}\n{% set x = x|default('in') %}\n{{ x }}\n{% block inner %}{{ x }}|{{ d.x }}{% endblock %}{% endblock %}";
        let out = isolate_nested_blocks(src);
        assert_eq!(
            out,
            "{% block body %}{% set __lava_outer_x = x %}\n{% set x = x|default('in') %}\n{{ x }}\n{% block inner %}{{ __lava_outer_x }}|{{ d.x }}{% endblock %}{% endblock %}"
        );
        assert_eq!(out.lines().count(), src.lines().count());
    }

    #[test]
    fn untouched_without_shadowing() {
        let src = "{% block a %}{% set y = 1 %}{% block b %}{{ x }}{% for y in z %}{{ y }}{% endfor %}{% endblock %}{% endblock %}";
        assert!(matches!(isolate_nested_blocks(src), Cow::Borrowed(_)));
        let src = "{% block a -%}{% for i in l %}{% set q = i %}{% endfor %}{% block b %}{{ q|f(q=1) }}{% endblock %}{% endblock %}";
        assert!(matches!(isolate_nested_blocks(src), Cow::Borrowed(_)));
    }

    #[test]
    fn strip_marker_is_kept() {
        let src = "{% block a -%}\n  {% set v = 2 %}{% block b %}{{ v is defined }}{% endblock %}{% endblock %}";
        let out = isolate_nested_blocks(src);
        assert!(
            out.starts_with("{% block a -%}{% set __lava_outer_v = v -%}\n"),
            "{out}"
        );
        assert!(out.contains("{{ __lava_outer_v is defined }}"), "{out}");
    }

    #[test]
    fn comments_strings_and_raw_are_skipped() {
        let src = "{# {% block c %} #}{% block a %}{% set v = '{% block' %}{% raw %}{% block r %}{% endraw %}{% block b %}{{ 'v' ~ v }}{% endblock %}{% endblock %}";
        let out = isolate_nested_blocks(src);
        assert!(out.contains("{{ 'v' ~ __lava_outer_v }}"), "{out}");
        // Unterminated input is left for the real parser to report.
        assert_eq!(
            isolate_nested_blocks("{% block a %}{% block b %}{% block c %}{{ x"),
            "{% block a %}{% block b %}{% block c %}{{ x"
        );
    }
}
