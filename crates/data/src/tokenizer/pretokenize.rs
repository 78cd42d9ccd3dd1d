//! GPT-2's pre-tokenization: text is cut into words, numbers, punctuation runs and
//! whitespace before any merging, so a BPE token never spans two words. The pattern is
//!
//! ```text
//! 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//! ```
//!
//! matched leftmost-first, alternative by alternative. It is written out by hand here:
//! every character falls in exactly one class (letter, number, whitespace, other), so each
//! alternative is a run of one class, and the lookahead `(?!\S)` ("a whitespace run gives its
//! last character to the word after it") is one comparison.
//!
//! [`PieceStream`] applies the pattern to text that arrives in chunks (a multi-GB file),
//! holding back only the last few characters whose piece could still change, and splits
//! off special tokens (GPT-2's `<|endoftext|>`) before pre-tokenizing.

use super::letters::LETTER_RANGES;
use crate::DataError;

/// The four classes the pattern distinguishes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    Letter,
    Number,
    Space,
    Other,
}

/// Whether `c` is in Unicode's general category Letter (`\p{L}`).
pub(crate) fn is_letter(c: char) -> bool {
    let cp = c as u32;
    LETTER_RANGES
        .binary_search_by(|&(first, last)| {
            if last < cp {
                std::cmp::Ordering::Less
            } else if first > cp {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

#[inline]
fn class(c: char) -> Class {
    if c.is_ascii() {
        match c as u8 {
            b'a'..=b'z' | b'A'..=b'Z' => Class::Letter,
            b'0'..=b'9' => Class::Number,
            b'\t' | b'\n' | 0x0B | 0x0C | b'\r' | b' ' => Class::Space,
            _ => Class::Other,
        }
    } else if c.is_whitespace() {
        Class::Space
    } else if is_letter(c) {
        Class::Letter
    } else if c.is_numeric() {
        Class::Number
    } else {
        Class::Other
    }
}

/// The byte offset where the run of `cls` characters starting at `from` ends.
#[inline]
fn run_end(text: &str, from: usize, cls: Class) -> usize {
    text[from..].char_indices().find(|&(_, c)| class(c) != cls).map_or(text.len(), |(i, _)| from + i)
}

/// The end (byte offset) of the piece that starts at `start` (a char boundary before the end).
pub(crate) fn piece_end(text: &str, start: usize) -> usize {
    let rest = &text.as_bytes()[start..];
    let c0 = text[start..].chars().next().expect("piece_end: start must be before the end of the text");

    // 's 't 're 've 'm 'll 'd
    if c0 == '\'' && rest.len() >= 2 {
        if rest.len() >= 3 && matches!(&rest[1..3], b"re" | b"ve" | b"ll") {
            return start + 3;
        }
        if matches!(rest[1], b's' | b't' | b'm' | b'd') {
            return start + 2;
        }
    }

    // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: one optional space, then a run of one class.
    let after_space = if c0 == ' ' { text[start + 1..].chars().next() } else { None };
    if let Some(c1) = after_space {
        let cls = class(c1);
        if cls != Class::Space {
            return run_end(text, start + 1, cls);
        }
    }
    let cls = class(c0);
    if cls != Class::Space {
        return run_end(text, start, cls);
    }

    // `\s+(?!\S)` then `\s+`: a whitespace run followed by a non-space keeps its last
    // character for the next piece, unless that character is the whole run.
    let end = run_end(text, start, Class::Space);
    if end == text.len() {
        return end;
    }
    let last_start = text[..end].char_indices().next_back().map_or(start, |(i, _)| i);
    if last_start > start {
        last_start
    } else {
        end
    }
}

/// Cuts `text` into GPT-2 pre-tokenization pieces (no special tokens).
pub fn pretokenize(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let end = piece_end(text, start);
        pieces.push(&text[start..end]);
        start = end;
    }
    pieces
}

/// One output of a [`PieceStream`]: a pre-tokenized piece of ordinary text, or the index
/// of a special token (in the list the stream was built with).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    Word(&'a str),
    Special(usize),
}

/// A piece longer than this (a file with no spaces or punctuation at all) is cut where a
/// chunk ends instead of being held in memory whole; real text never gets near it.
const MAX_HELD_BYTES: usize = 1 << 20;

/// Pre-tokenizes text that arrives in chunks, exactly as if it had come in one piece.
pub(crate) struct PieceStream {
    specials: Vec<String>,
    held: String,
}

impl PieceStream {
    /// A stream that splits off `specials` (matched literally) before pre-tokenizing.
    pub(crate) fn new(specials: Vec<String>) -> PieceStream {
        PieceStream { specials, held: String::new() }
    }

    /// Adds `text`, emitting every piece that no later text can change; with `end`, the
    /// text is complete and everything left is emitted.
    pub(crate) fn feed(
        &mut self,
        text: &str,
        end: bool,
        emit: &mut impl FnMut(Piece<'_>) -> Result<(), DataError>,
    ) -> Result<(), DataError> {
        let mut buf = std::mem::take(&mut self.held);
        buf.push_str(text);
        let consumed = self.split(&buf, end, emit)?;
        buf.drain(..consumed);
        self.held = buf;
        Ok(())
    }

    /// Emits pieces of `buf` and returns how many bytes were consumed.
    fn split(
        &self,
        buf: &str,
        end: bool,
        emit: &mut impl FnMut(Piece<'_>) -> Result<(), DataError>,
    ) -> Result<usize, DataError> {
        let mut pos = 0;
        while let Some((at, index)) = self.find_special(buf, pos) {
            emit_all(&buf[pos..at], emit)?;
            emit(Piece::Special(index))?;
            pos = at + self.specials[index].len();
        }
        let segment = &buf[pos..];
        if end {
            emit_all(segment, emit)?;
            return Ok(buf.len());
        }
        // A tail that could be the start of a special token waits for more text.
        let open = &segment[..segment.len() - self.special_prefix_len(segment)];
        // A piece is final once three more characters follow it: the pattern never looks
        // further ahead than that ('ll, 're, 've need two characters after the quote).
        let mut p = 0;
        while p < open.len() {
            let e = piece_end(open, p);
            if open[e..].chars().nth(2).is_none() {
                break;
            }
            emit(Piece::Word(&open[p..e]))?;
            p = e;
        }
        if open.len() - p > MAX_HELD_BYTES {
            emit_all(&open[p..], emit)?;
            p = open.len();
        }
        Ok(pos + p)
    }

    /// The earliest special token at or after `from`: (byte offset, index).
    fn find_special(&self, buf: &str, from: usize) -> Option<(usize, usize)> {
        self.specials
            .iter()
            .enumerate()
            .filter_map(|(index, s)| buf[from..].find(s.as_str()).map(|at| (from + at, index)))
            .min()
    }

    /// The length of the longest suffix of `text` that is a proper prefix of a special token.
    fn special_prefix_len(&self, text: &str) -> usize {
        let longest = self.specials.iter().map(|s| s.len()).max().unwrap_or(0);
        (1..longest.min(text.len() + 1))
            .rev()
            .find(|&k| {
                let cut = text.len() - k;
                text.is_char_boundary(cut) && self.specials.iter().any(|s| s.starts_with(&text[cut..]))
            })
            .unwrap_or(0)
    }
}

fn emit_all(text: &str, emit: &mut impl FnMut(Piece<'_>) -> Result<(), DataError>) -> Result<(), DataError> {
    let mut start = 0;
    while start < text.len() {
        let end = piece_end(text, start);
        emit(Piece::Word(&text[start..end]))?;
        start = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_pieces(chunks: &[&str], specials: &[&str]) -> Vec<String> {
        let mut stream = PieceStream::new(specials.iter().map(|s| s.to_string()).collect());
        let mut out = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            stream
                .feed(chunk, i + 1 == chunks.len(), &mut |p| {
                    out.push(match p {
                        Piece::Word(w) => w.to_string(),
                        Piece::Special(i) => format!("<special {i}>"),
                    });
                    Ok(())
                })
                .expect("emit never fails here");
        }
        out
    }

    #[test]
    fn matches_the_gpt2_pattern_on_tricky_cases() {
        assert_eq!(pretokenize("Hello world"), ["Hello", " world"]);
        assert_eq!(pretokenize("I'm can't they're"), ["I", "'m", " can", "'t", " they", "'re"]);
        assert_eq!(pretokenize("   leading and trailing   "), ["  ", " leading", " and", " trailing", "   "]);
        assert_eq!(pretokenize("Hello\nworld\n\n"), ["Hello", "\n", "world", "\n\n"]);
        assert_eq!(pretokenize("a\n\nb"), ["a", "\n", "\n", "b"]);
        assert_eq!(pretokenize("x  !?'s 123abc"), ["x", " ", " !?'", "s", " 123", "abc"]);
        assert_eq!(pretokenize("'S 'll"), ["'", "S", " '", "ll"]);
        assert_eq!(pretokenize("你好，世界！"), ["你好", "，", "世界", "！"]);
        assert_eq!(pretokenize("naïve café"), ["naïve", " café"]);
    }

    #[test]
    fn streaming_gives_the_same_pieces_at_every_cut() {
        let text =
            "He said: 'we'll see'   then\n\n  left<|endoftext|>Next  story's 42 naïve 你好，世界 end  ";
        let whole = stream_pieces(&[text], &["<|endoftext|>"]);
        for cut in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
            for cut2 in (cut..=text.len()).filter(|&i| text.is_char_boundary(i)).step_by(7) {
                let parts = [&text[..cut], &text[cut..cut2], &text[cut2..]];
                assert_eq!(stream_pieces(&parts, &["<|endoftext|>"]), whole, "cuts at {cut}, {cut2}");
            }
        }
        assert!(whole.contains(&"<special 0>".to_string()));
    }
}
