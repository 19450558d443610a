//! Incremental pattern matching over console text, with pexpect's `expect` semantics.
//!
//! [`Patterns`] is a compiled list of regular expressions (compiled like pexpect does:
//! `.` matches a newline). [`MatchBuffer`] holds the text received and not yet consumed
//! and answers "does any pattern match yet?" after each read:
//!
//! * the winner is the pattern whose match **starts earliest**; on a tie the one listed
//!   first (pexpect's rule);
//! * a match consumes everything up to its end: the text before it is returned as
//!   [`Match::before`] and is gone afterwards, so a later wait can never match text an
//!   earlier wait already consumed (LAVA's stale-buffer problem);
//! * scanning is incremental: after a failed search only the tail that could still hold
//!   the start of a match is searched again. For a pattern whose longest match is bounded
//!   (a literal prompt, `<LAVA_SIGNAL_RETRUNCODE \d{1,3}>`) that tail is exactly the
//!   longest match, so a prompt split across any number of reads is found; for unbounded
//!   patterns (`.*`, `\S+`) it is [`MatchBuffer::max_match_span`] bytes, like pexpect's
//!   `searchwindowsize`;
//! * memory is bounded: unconsumed text older than [`MatchBuffer::max_buffer`] bytes is
//!   dropped (and counted in [`Match::before_dropped`]).

use std::sync::atomic::{AtomicU64, Ordering};

use regex::{Regex, RegexBuilder};

use crate::error::ConnectionError;

/// Default bound on the length of a match of an unbounded pattern: twice LAVA's default
/// `spawn_maxread` (4092), as LAVA sets pexpect's `searchwindowsize`.
pub const DEFAULT_MAX_MATCH_SPAN: usize = 2 * 4092;

/// Default bound on the unconsumed text kept for [`Match::before`].
pub const DEFAULT_MAX_BUFFER: usize = 1 << 20;

/// Physically drop consumed text once this much has accumulated (amortised compaction).
const COMPACT_AT: usize = 64 * 1024;

static NEXT_PATTERNS_ID: AtomicU64 = AtomicU64::new(1);

/// A compiled list of patterns to wait for, in priority order.
#[derive(Debug, Clone)]
pub struct Patterns {
    id: u64,
    sources: Vec<String>,
    each: Vec<Regex>,
    /// All patterns as one alternation of capture groups, when they can be combined.
    combined: Option<Combined>,
    /// The longest possible match over all patterns, `None` if unbounded.
    max_len: Option<usize>,
    /// Literals every match starts with, when every pattern has some.
    prefixes: Option<Prefixes>,
}

/// A finder for the literal prefixes of a pattern list: a match can only start where one
/// of them starts, which lets a failed search skip everything before the last one.
#[derive(Debug, Clone)]
struct Prefixes {
    finder: regex::bytes::Regex,
    /// The longest prefix in bytes.
    max_len: usize,
}

impl Prefixes {
    fn new(hirs: &[regex_syntax::hir::Hir]) -> Option<Prefixes> {
        let mut extractor = regex_syntax::hir::literal::Extractor::new();
        extractor.kind(regex_syntax::hir::literal::ExtractKind::Prefix);
        let mut alternatives = Vec::new();
        let mut max_len = 0;
        for hir in hirs {
            let seq = extractor.extract(hir);
            for literal in seq.literals()? {
                let bytes = literal.as_bytes();
                if bytes.is_empty() {
                    return None;
                }
                max_len = max_len.max(bytes.len());
                alternatives.push(
                    bytes
                        .iter()
                        .map(|b| format!("\\x{b:02x}"))
                        .collect::<String>(),
                );
            }
        }
        if alternatives.is_empty() {
            return None;
        }
        let finder = regex::bytes::RegexBuilder::new(&format!("(?-u:{})", alternatives.join("|")))
            .build()
            .ok()?;
        Some(Prefixes { finder, max_len })
    }
}

#[derive(Debug, Clone)]
struct Combined {
    regex: Regex,
    /// Index of the wrapping capture group of each pattern in `regex`.
    wrapper_group: Vec<usize>,
}

impl Patterns {
    /// Compiles `patterns` (regular expressions, `.` matching newlines as in pexpect).
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, ConnectionError> {
        let sources: Vec<String> = patterns.iter().map(|p| p.as_ref().to_string()).collect();
        let mut each = Vec::with_capacity(sources.len());
        let mut hirs = Vec::with_capacity(sources.len());
        let mut max_len = Some(0usize);
        for source in &sources {
            let regex = compile(source)?;
            let hir = regex_syntax::ParserBuilder::new()
                .dot_matches_new_line(true)
                .build()
                .parse(source)
                .ok();
            let this_max = hir.as_ref().and_then(|hir| hir.properties().maximum_len());
            max_len = match (max_len, this_max) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
            hirs.extend(hir);
            each.push(regex);
        }
        let combined = combine(&sources, &each);
        let prefixes = if hirs.len() == sources.len() {
            Prefixes::new(&hirs)
        } else {
            None
        };
        Ok(Patterns {
            id: NEXT_PATTERNS_ID.fetch_add(1, Ordering::Relaxed),
            sources,
            each,
            combined,
            max_len,
            prefixes,
        })
    }

    /// The patterns as given.
    pub fn sources(&self) -> &[String] {
        &self.sources
    }

    /// The number of patterns.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// Whether there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// The longest text any of the patterns can match, `None` when unbounded.
    pub fn max_match_len(&self) -> Option<usize> {
        self.max_len
    }

    /// A short description for error messages: `['lava-test: # ', 'login:']`.
    pub fn describe(&self) -> String {
        let quoted: Vec<String> = self.sources.iter().map(|s| format!("{s:?}")).collect();
        format!("[{}]", quoted.join(", "))
    }

    /// Finds the earliest match starting at or after `from` in `haystack`.
    fn find_at(&self, haystack: &str, from: usize) -> Option<RawMatch> {
        match &self.combined {
            Some(combined) => {
                let found = combined.regex.find_at(haystack, from)?;
                // Only now pay for capture groups, starting right at the match.
                let caps = combined.regex.captures_at(haystack, found.start())?;
                let index = combined
                    .wrapper_group
                    .iter()
                    .position(|&g| caps.get(g).is_some())?;
                let first = combined.wrapper_group[index];
                let count = self.each[index].captures_len();
                let groups = (first..first + count)
                    .map(|g| caps.get(g).map(|m| (m.start(), m.end())))
                    .collect();
                Some(RawMatch { index, groups })
            }
            None => {
                let mut best: Option<(usize, usize)> = None;
                for (index, regex) in self.each.iter().enumerate() {
                    if let Some(m) = regex.find_at(haystack, from)
                        && best.is_none_or(|(start, _)| m.start() < start)
                    {
                        best = Some((m.start(), index));
                    }
                }
                let (start, index) = best?;
                let caps = self.each[index].captures_at(haystack, start)?;
                let groups = caps
                    .iter()
                    .map(|g| g.map(|m| (m.start(), m.end())))
                    .collect();
                Some(RawMatch { index, groups })
            }
        }
    }
}

fn compile(source: &str) -> Result<Regex, ConnectionError> {
    RegexBuilder::new(source)
        .dot_matches_new_line(true)
        .build()
        .map_err(|source_error| ConnectionError::InvalidPattern {
            pattern: source.to_string(),
            source: Box::new(source_error),
        })
}

/// One regex `(p0)|(p1)|…` finds the earliest-starting match of all patterns in a single
/// pass, and leftmost-first alternation gives the lower index on a tie, as pexpect does.
/// Patterns sharing a group name cannot be combined; they are then searched one by one.
fn combine(sources: &[String], each: &[Regex]) -> Option<Combined> {
    if sources.len() < 2 {
        return None;
    }
    let mut wrapper_group = Vec::with_capacity(sources.len());
    let mut next_group = 1;
    let mut alternation = String::new();
    for (i, (source, regex)) in sources.iter().zip(each).enumerate() {
        if i > 0 {
            alternation.push('|');
        }
        alternation.push('(');
        alternation.push_str(source);
        alternation.push(')');
        wrapper_group.push(next_group);
        next_group += regex.captures_len();
    }
    let regex = RegexBuilder::new(&alternation)
        .dot_matches_new_line(true)
        .build()
        .ok()?;
    (regex.captures_len() == next_group).then_some(Combined {
        regex,
        wrapper_group,
    })
}

struct RawMatch {
    index: usize,
    /// Byte ranges of group 0 (the whole match) and the pattern's own groups.
    groups: Vec<Option<(usize, usize)>>,
}

/// What a wait found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// Index of the pattern that matched, in the list waited for.
    pub index: usize,
    /// The unconsumed text received before the match (pexpect's `before`).
    pub before: String,
    /// The matched text (pexpect's `after`).
    pub matched: String,
    /// The pattern's capture groups; `groups[0]` is the whole match.
    pub groups: Vec<Option<String>>,
    /// Bytes of unconsumed text dropped before `before` to bound memory.
    pub before_dropped: usize,
}

impl Match {
    /// Capture group `n` (0 is the whole match), if it took part in the match.
    pub fn group(&self, n: usize) -> Option<&str> {
        self.groups.get(n).and_then(|g| g.as_deref())
    }
}

/// Received, unconsumed text and the incremental search state over it.
#[derive(Debug, Clone)]
pub struct MatchBuffer {
    text: String,
    /// Start of the unconsumed text; everything before it is consumed or dropped.
    start: usize,
    /// No match of the last searched pattern list starts before this offset.
    search_from: usize,
    /// The pattern list `search_from` was computed for.
    searched_for: Option<u64>,
    /// Unconsumed bytes dropped since the last match.
    dropped: usize,
    max_buffer: usize,
    max_match_span: usize,
}

impl Default for MatchBuffer {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_BUFFER, DEFAULT_MAX_MATCH_SPAN)
    }
}

impl MatchBuffer {
    /// `max_buffer`: unconsumed text kept (at least `max_match_span`);
    /// `max_match_span`: the longest match an unbounded pattern can find.
    pub fn new(max_buffer: usize, max_match_span: usize) -> Self {
        let max_match_span = max_match_span.max(1);
        MatchBuffer {
            text: String::new(),
            start: 0,
            search_from: 0,
            searched_for: None,
            dropped: 0,
            max_buffer: max_buffer.max(max_match_span),
            max_match_span,
        }
    }

    /// Most text kept unmatched before the oldest is dropped, in bytes.
    pub fn max_buffer(&self) -> usize {
        self.max_buffer
    }

    /// Longest span of text a match may cover (LAVA's `searchwindowsize`), in bytes.
    pub fn max_match_span(&self) -> usize {
        self.max_match_span
    }

    /// The text received and not consumed by a match yet.
    pub fn unconsumed(&self) -> &str {
        &self.text[self.start..]
    }

    /// Appends received text, dropping the oldest unconsumed text beyond `max_buffer`
    /// that has already been searched. Text not searched yet is kept until the next
    /// [`MatchBuffer::find`] (up to four times `max_buffer`, for callers that never search).
    pub fn push(&mut self, text: &str) {
        if self.text.len() - self.search_from > 4 * self.max_buffer {
            // Nobody searched for a long time: give up on the oldest unsearched text
            // (the new text stays searchable).
            let limit = floor_char_boundary(&self.text, self.text.len() - self.max_buffer);
            self.search_from = self.search_from.max(limit);
        }
        self.text.push_str(text);
        self.trim();
        self.compact();
    }

    /// Drops searched unconsumed text beyond `max_buffer`.
    fn trim(&mut self) {
        let unconsumed = self.text.len() - self.start;
        if unconsumed > self.max_buffer {
            let limit = (self.text.len() - self.max_buffer).min(self.search_from);
            let new_start = ceil_char_boundary(&self.text, limit).max(self.start);
            self.dropped += new_start - self.start;
            self.start = new_start;
            self.search_from = self.search_from.max(new_start);
        }
    }

    /// Discards all unconsumed text (pexpect's buffer flush).
    pub fn clear(&mut self) {
        self.text.clear();
        self.start = 0;
        self.search_from = 0;
        self.dropped = 0;
    }

    /// Looks for the earliest match of `patterns` in the unconsumed text. A match
    /// consumes the text up to its end.
    pub fn find(&mut self, patterns: &Patterns) -> Option<Match> {
        if self.searched_for != Some(patterns.id) {
            // A different list: it may match anywhere in the unconsumed text.
            self.searched_for = Some(patterns.id);
            self.search_from = self.start;
        }
        let haystack = &self.text[self.start..];
        let from = self.search_from - self.start;
        let Some(raw) = patterns.find_at(haystack, from) else {
            // Any later match must end beyond the current text, so it starts within
            // the last `span` bytes (one more covers look-ahead such as `\B` or `$`).
            let span = patterns
                .max_len
                .map_or(self.max_match_span, |len| len.saturating_add(1));
            let len = self.text.len();
            let mut next_from =
                floor_char_boundary(&self.text, len.saturating_sub(span)).max(self.search_from);
            if let Some(prefixes) = &patterns.prefixes {
                // And it starts with a prefix: at the first one found, or at a prefix
                // still being received at the very end.
                let partial_at = len.saturating_sub(prefixes.max_len - 1);
                let first = prefixes
                    .finder
                    .find_at(self.text.as_bytes(), next_from)
                    .map_or(partial_at, |m| m.start().min(partial_at));
                next_from = next_from.max(floor_char_boundary(&self.text, first));
            }
            self.search_from = next_from;
            self.trim();
            return None;
        };
        let (start, end) = raw.groups[0].unwrap_or((from, from));
        let text_of =
            |range: Option<(usize, usize)>| range.map(|(a, b)| haystack[a..b].to_string());
        // `before` keeps at most `max_buffer` bytes, like the retained text.
        let before_start = ceil_char_boundary(haystack, start.saturating_sub(self.max_buffer));
        let found = Match {
            index: raw.index,
            before: haystack[before_start..start].to_string(),
            matched: haystack[start..end].to_string(),
            groups: raw.groups.iter().map(|&g| text_of(g)).collect(),
            before_dropped: self.dropped + before_start,
        };
        self.start += end;
        self.search_from = self.start;
        self.dropped = 0;
        self.compact();
        Some(found)
    }

    /// Moves the retained text to the front once the dead prefix is at least three times
    /// its size, so each received byte is moved at most a third of a time on average.
    fn compact(&mut self) {
        if self.start >= COMPACT_AT && self.start >= 3 * (self.text.len() - self.start) {
            self.text.drain(..self.start);
            self.search_from -= self.start;
            self.start = 0;
        }
    }
}

/// The largest char boundary of `text` at or below `index`.
fn floor_char_boundary(text: &str, index: usize) -> usize {
    let mut index = index.min(text.len());
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

/// The smallest char boundary of `text` at or above `index`.
fn ceil_char_boundary(text: &str, index: usize) -> usize {
    let mut index = index.min(text.len());
    while !text.is_char_boundary(index) {
        index += 1;
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(list: &[&str]) -> Patterns {
        Patterns::new(list).unwrap()
    }

    #[test]
    fn earliest_start_wins_then_list_order() {
        let mut buffer = MatchBuffer::default();
        buffer.push("xx login: yy # ");
        let found = buffer.find(&patterns(&["# ", "login:"])).unwrap();
        assert_eq!((found.index, found.before.as_str()), (1, "xx "));
        let mut buffer = MatchBuffer::default();
        buffer.push("abc");
        assert_eq!(buffer.find(&patterns(&["a", "ab"])).unwrap().index, 0);
    }

    #[test]
    fn consumed_text_never_matches_again() {
        let prompt = patterns(&["lava-test: # "]);
        let mut buffer = MatchBuffer::default();
        buffer.push("boot\nlava-test: # ls\nfile\n");
        assert_eq!(buffer.find(&prompt).unwrap().before, "boot\n");
        assert!(buffer.find(&prompt).is_none());
        // Even with a fresh pattern list for the same prompt.
        assert!(buffer.find(&patterns(&["lava-test: # "])).is_none());
        assert_eq!(buffer.unconsumed(), "ls\nfile\n");
    }

    #[test]
    fn bounded_pattern_split_at_every_byte() {
        let text = "noise lava-test: # more";
        for at in 0..=text.len() {
            let prompt = patterns(&["lava-test: # "]);
            let mut buffer = MatchBuffer::new(64, 16);
            buffer.push(&text[..at]);
            let first = buffer.find(&prompt);
            buffer.push(&text[at..]);
            let found = first.or_else(|| buffer.find(&prompt)).unwrap();
            assert_eq!(found.before, "noise ", "split at {at}");
        }
    }

    #[test]
    fn unbounded_pattern_across_reads_within_span() {
        let signal = patterns(&[r"<LAVA_SIGNAL_(\S+) ([^>]+)>"]);
        let mut buffer = MatchBuffer::default();
        for piece in [
            "x <LAVA_SIG",
            "NAL_TESTCASE TEST_CASE_ID=a",
            " RESULT=pass",
            ">\n",
        ] {
            buffer.push(piece);
            if let Some(found) = buffer.find(&signal) {
                assert_eq!(found.group(1), Some("TESTCASE"));
                assert_eq!(found.group(2), Some("TEST_CASE_ID=a RESULT=pass"));
                return;
            }
        }
        panic!("signal not found");
    }

    #[test]
    fn memory_is_bounded_and_drops_are_counted() {
        let prompt = patterns(&["# "]);
        let mut buffer = MatchBuffer::new(1000, 100);
        for _ in 0..10_000 {
            buffer.push("[    1.000000] some kernel line\n");
            assert!(buffer.find(&prompt).is_none());
            assert!(buffer.unconsumed().len() <= 1000);
        }
        buffer.push("# ");
        let found = buffer.find(&prompt).unwrap();
        assert!(found.before_dropped > 300_000);
        assert!(found.before.len() <= 1000);
    }

    #[test]
    fn groups_of_a_combined_list_belong_to_the_winner() {
        let list = patterns(&[r"(a)(b)?x", r"<RC (\d+)>"]);
        let mut buffer = MatchBuffer::default();
        buffer.push("..<RC 7>..ax");
        let found = buffer.find(&list).unwrap();
        assert_eq!(found.index, 1);
        assert_eq!(found.groups, vec![Some("<RC 7>".into()), Some("7".into())]);
        let found = buffer.find(&list).unwrap();
        assert_eq!(found.index, 0);
        assert_eq!(
            found.groups,
            vec![Some("ax".into()), Some("a".into()), None]
        );
    }

    #[test]
    fn duplicate_group_names_fall_back_to_one_by_one() {
        let list = patterns(&[r"b(?P<v>\d)", r"a(?P<v>\d)"]);
        assert!(list.combined.is_none());
        let mut buffer = MatchBuffer::default();
        buffer.push("a1 b2");
        let found = buffer.find(&list).unwrap();
        assert_eq!((found.index, found.group(1)), (1, Some("1")));
    }

    #[test]
    fn prefixes_skip_text_that_cannot_start_a_match() {
        let signal = patterns(&[r"<LAVA_SIGNAL_(\S+) ([^>]+)>", r"(?i)login:"]);
        assert_eq!(signal.prefixes.as_ref().map(|p| p.max_len), Some(13));
        let mut buffer = MatchBuffer::default();
        buffer.push(&"kernel line\n".repeat(100));
        assert!(buffer.find(&signal).is_none());
        assert_eq!(buffer.search_from, buffer.text.len() - 12);
        buffer.push("x <LAVA_SIGNAL_END");
        assert!(buffer.find(&signal).is_none());
        assert_eq!(&buffer.text[buffer.search_from..], "<LAVA_SIGNAL_END");
        buffer.push("RUN 0_smoke> LOGIN:");
        assert_eq!(buffer.find(&signal).unwrap().group(1), Some("ENDRUN"));
        assert_eq!(buffer.find(&signal).unwrap().index, 1);
        // No usable prefix: no skipping.
        assert!(patterns(&[r"\d+ done", "a"]).prefixes.is_none());
    }

    #[test]
    fn dot_matches_newline_like_pexpect() {
        let mut buffer = MatchBuffer::default();
        buffer.push("start\nend");
        assert!(buffer.find(&patterns(&["start.end"])).is_some());
    }

    #[test]
    fn invalid_pattern_is_a_test_error() {
        let err = Patterns::new(&["(unclosed"]).unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::Test);
    }
}
