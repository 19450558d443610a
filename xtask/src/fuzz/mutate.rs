//! Byte-level mutations, stacked one to four at a time: bit flips, interesting bytes and
//! numbers, deletions, duplications (which deepen nesting), dictionary tokens, line swaps,
//! splices with another input of the pool, and rewriting a run of digits (the numeric
//! header fields of cpio and tar, YAML's timeouts and sizes).

use fastrand::Rng;

/// Bytes that change the meaning of YAML, JSON, Jinja2 and archive headers.
const INTERESTING_BYTES: &[u8] = b"\0\x01\x7f\xff\n\r\t :-{}[],\"'\\#&*!|>%@`?07";

/// Numbers at the edges of what parsers convert.
const INTERESTING_NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "255",
    "65535",
    "65536",
    "2147483647",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "18446744073709551615",
    "99999999999999999999999",
    "1e400",
    "-0",
    ".nan",
    ".inf",
    "0x7fffffff",
    "077777777777",
    "FFFFFFFF",
    "7fffffff",
];

/// A mutated copy of `parent` (at most `max_len` bytes); `other` is spliced from.
pub fn mutate(
    rng: &mut Rng,
    parent: &[u8],
    other: &[u8],
    dictionary: &[&str],
    max_len: usize,
) -> Vec<u8> {
    let mut data = parent.to_vec();
    for _ in 0..rng.usize(1..=4) {
        apply_one(rng, &mut data, other, dictionary);
    }
    data.truncate(max_len);
    data
}

fn apply_one(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8], dictionary: &[&str]) {
    let len = data.len();
    match rng.u8(..10) {
        0 if len > 0 => {
            let at = rng.usize(..len);
            data[at] ^= 1 << rng.u8(..8);
        }
        1 if len > 0 => {
            let at = rng.usize(..len);
            data[at] = INTERESTING_BYTES[rng.usize(..INTERESTING_BYTES.len())];
        }
        2 if len > 0 => {
            let start = rng.usize(..len);
            let end = (start + 1 + rng.usize(..16.min(len - start))).min(len);
            data.drain(start..end);
        }
        3 if len > 0 => {
            // Copy a range somewhere else: repeats structure, deepens nesting.
            let start = rng.usize(..len);
            let end = (start + 1 + rng.usize(..64.min(len - start))).min(len);
            let chunk: Vec<u8> = data[start..end].to_vec();
            let at = rng.usize(..=len);
            let times = if rng.u8(..8) == 0 {
                rng.usize(2..64)
            } else {
                1
            };
            for _ in 0..times {
                data.splice(at..at, chunk.iter().copied());
            }
        }
        4 | 5 if !dictionary.is_empty() => {
            let token = dictionary[rng.usize(..dictionary.len())].as_bytes();
            let at = rng.usize(..=len);
            if rng.bool() || len == 0 {
                data.splice(at..at, token.iter().copied());
            } else {
                let end = (at + token.len()).min(len);
                data.splice(at..end, token.iter().copied());
            }
        }
        6 => {
            // Rewrite a run of digits (or insert a number) with an edge value.
            let number = INTERESTING_NUMBERS[rng.usize(..INTERESTING_NUMBERS.len())].as_bytes();
            match find_digit_run(rng, data) {
                Some((start, end)) if rng.bool() => {
                    // Keep the field's width (fixed-width archive headers).
                    let width = end - start;
                    let mut field: Vec<u8> =
                        number.iter().rev().take(width).rev().copied().collect();
                    while field.len() < width {
                        field.insert(0, b'0');
                    }
                    data.splice(start..end, field);
                }
                Some((start, end)) => {
                    data.splice(start..end, number.iter().copied());
                }
                None => {
                    let at = rng.usize(..=len);
                    data.splice(at..at, number.iter().copied());
                }
            }
        }
        7 => {
            // Swap or duplicate lines.
            let mut lines: Vec<Vec<u8>> = data.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
            let n = lines.len();
            let (i, j) = (rng.usize(..n), rng.usize(..n));
            if rng.bool() {
                lines.swap(i, j);
            } else {
                let line = lines[i].clone();
                lines.insert(j, line);
            }
            *data = lines.join(&b'\n');
        }
        8 if !other.is_empty() => {
            let cut = rng.usize(..=len);
            let from = rng.usize(..other.len());
            data.truncate(cut);
            data.extend_from_slice(&other[from..]);
        }
        _ if len > 0 => {
            // A random byte.
            let at = rng.usize(..len);
            data[at] = rng.u8(..);
        }
        _ => data.push(rng.u8(..)),
    }
}

/// A random run of ASCII digits (hex digits count, for cpio's fields), if any.
fn find_digit_run(rng: &mut Rng, data: &[u8]) -> Option<(usize, usize)> {
    if data.is_empty() {
        return None;
    }
    let from = rng.usize(..data.len());
    let mut start = (from..data.len())
        .chain(0..from)
        .find(|i| data[*i].is_ascii_hexdigit())?;
    while start > 0 && data[start - 1].is_ascii_hexdigit() {
        start -= 1;
    }
    let end = (start..data.len())
        .find(|i| !data[*i].is_ascii_hexdigit())
        .unwrap_or(data.len());
    Some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_stay_within_the_length_limit_and_change_the_input() {
        let mut rng = Rng::with_seed(7);
        let parent = b"timeouts: {job: {minutes: 10}}\nactions: []\n".to_vec();
        let mut changed = 0;
        for _ in 0..10_000 {
            let child = mutate(&mut rng, &parent, b"other: [1, 2]", &["{", "- "], 64);
            assert!(child.len() <= 64);
            changed += usize::from(child != parent);
        }
        assert!(
            changed > 9_000,
            "only {changed} of 10000 mutations changed the input"
        );
    }

    #[test]
    fn digit_runs_are_found_whole() {
        let mut rng = Rng::with_seed(1);
        let data = b"size: 070701 x";
        let (start, end) = find_digit_run(&mut rng, data).unwrap();
        assert!(data[start..end].iter().all(u8::is_ascii_hexdigit));
        assert!(start == 0 || !data[start - 1].is_ascii_hexdigit());
        assert!(end == data.len() || !data[end].is_ascii_hexdigit());
    }
}
