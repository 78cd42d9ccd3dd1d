//! The mutations: each takes an input (and the corpus, for splices) and changes it in one
//! way a damaged or hostile file might differ from a good one. The runner stacks a few
//! per execution, drawn from a seeded ChaCha generator, so a run is reproducible from its
//! seed.

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Integers that sit on the edges loaders get wrong: zero, one, all ones, the signed and
/// unsigned limits of each width.
const INTERESTING: [u64; 14] = [
    0,
    1,
    2,
    u64::MAX, // -1
    0x7f,
    0x80,
    0xff,
    0xffff,
    0x8000_0000,           // 2^31
    0xffff_ffff,           // u32::MAX
    0x1_0000_0000,         // 2^32
    1 << 40,               // a plausible-looking huge size
    0x8000_0000_0000_0000, // 2^63
    0x7fff_ffff_ffff_ffff, // i64::MAX
];

/// Text fragments that sit on the edges text loaders get wrong (numbers at the limits,
/// special floats, quoting, nesting, other scripts).
const TEXT_EDGES: [&str; 30] = [
    "0",
    "-1",
    "1e308",
    "-1e308",
    "1e-400",
    "nan",
    "inf",
    "-inf",
    "NaN",
    "Infinity",
    "-0",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "9223372036854775807",
    "-9223372036854775808",
    "1099511627776",
    "\"\"",
    "\"",
    "\\",
    "[",
    "{",
    "}",
    "\n",
    "\u{0}",
    "é",
    "紅",
    "\u{feff}",
    "null",
    "true",
];

/// One mutation step: picks a kind and applies it in place. `text` adds the text
/// mutations (numbers, dictionary words) to the binary ones; `dictionary` holds words
/// taken from the seeds (field names, keys).
pub fn mutate(
    input: &mut Vec<u8>,
    corpus: &[Vec<u8>],
    dictionary: &[Vec<u8>],
    text: bool,
    rng: &mut ChaCha8Rng,
) {
    let kinds = if text { 12 } else { 9 };
    match rng.gen_range(0..kinds) {
        0 => flip_bit(input, rng),
        1 => set_byte(input, rng),
        2 => insert_bytes(input, rng),
        3 => delete_range(input, rng),
        4 => duplicate_range(input, rng),
        5 => splice(input, corpus, rng),
        6 => interesting_integer(input, rng),
        7 => edit_length_field(input, rng),
        8 => truncate(input, rng),
        9 => replace_number(input, rng),
        10 => insert_text(input, TEXT_EDGES.choose(rng).map_or(&b""[..], |s| s.as_bytes()), rng),
        _ => {
            let word = dictionary.choose(rng).cloned().unwrap_or_default();
            insert_text(input, &word, rng)
        }
    }
}

/// A position in `0..=len`.
fn position(len: usize, rng: &mut ChaCha8Rng) -> usize {
    rng.gen_range(0..=len)
}

/// A range of up to `max` bytes inside `input` (empty when the input is).
fn range(len: usize, max: usize, rng: &mut ChaCha8Rng) -> std::ops::Range<usize> {
    if len == 0 {
        return 0..0;
    }
    let start = rng.gen_range(0..len);
    // Mostly short ranges, sometimes long ones.
    let cap = if rng.gen_bool(0.8) { 16.min(max) } else { max };
    let end = (start + rng.gen_range(1..=cap.max(1))).min(len);
    start..end
}

fn flip_bit(input: &mut [u8], rng: &mut ChaCha8Rng) {
    if !input.is_empty() {
        let i = rng.gen_range(0..input.len());
        input[i] ^= 1 << rng.gen_range(0..8);
    }
}

fn set_byte(input: &mut [u8], rng: &mut ChaCha8Rng) {
    if !input.is_empty() {
        let i = rng.gen_range(0..input.len());
        input[i] = rng.gen();
    }
}

fn insert_bytes(input: &mut Vec<u8>, rng: &mut ChaCha8Rng) {
    let at = position(input.len(), rng);
    let n = rng.gen_range(1..=32);
    let bytes: Vec<u8> =
        if rng.gen_bool(0.5) { vec![rng.gen(); n] } else { (0..n).map(|_| rng.gen()).collect() };
    input.splice(at..at, bytes);
}

fn delete_range(input: &mut Vec<u8>, rng: &mut ChaCha8Rng) {
    let r = range(input.len(), input.len(), rng);
    input.drain(r);
}

fn duplicate_range(input: &mut Vec<u8>, rng: &mut ChaCha8Rng) {
    let r = range(input.len(), input.len(), rng);
    let copy = input[r].to_vec();
    let at = position(input.len(), rng);
    input.splice(at..at, copy);
}

fn truncate(input: &mut Vec<u8>, rng: &mut ChaCha8Rng) {
    let at = position(input.len(), rng);
    input.truncate(at);
}

/// Joins the start of this input to the rest of another one (or inserts a piece of it).
fn splice(input: &mut Vec<u8>, corpus: &[Vec<u8>], rng: &mut ChaCha8Rng) {
    let Some(other) = corpus.choose(rng) else { return };
    if rng.gen_bool(0.5) {
        let cut = position(input.len().min(other.len()), rng);
        input.truncate(cut);
        input.extend_from_slice(&other[cut..]);
    } else {
        let r = range(other.len(), other.len(), rng);
        let at = position(input.len(), rng);
        input.splice(at..at, other[r].iter().copied());
    }
}

/// Overwrites 1, 2, 4 or 8 bytes at an offset aligned to that width with an interesting
/// value (or one near the input's length), little-endian mostly, big-endian sometimes.
fn interesting_integer(input: &mut [u8], rng: &mut ChaCha8Rng) {
    let width = [1usize, 2, 4, 8][rng.gen_range(0..4)];
    if input.len() < width {
        return;
    }
    let slots = input.len() / width;
    let at = rng.gen_range(0..slots) * width;
    let len = input.len() as u64;
    let value = match rng.gen_range(0..3) {
        0 => len.wrapping_add(rng.gen_range(0..=16)).wrapping_sub(8),
        _ => *INTERESTING.choose(rng).expect("not empty"),
    };
    write_int(&mut input[at..at + width], value, rng.gen_bool(0.85));
}

fn write_int(slot: &mut [u8], value: u64, little_endian: bool) {
    let bytes = if little_endian { value.to_le_bytes() } else { value.to_be_bytes() };
    let width = slot.len();
    if little_endian {
        slot.copy_from_slice(&bytes[..width]);
    } else {
        slot.copy_from_slice(&bytes[8 - width..]);
    }
}

/// Finds an aligned 4- or 8-byte little-endian value that looks like a length or a
/// count (non-zero, at most the input's length) and nudges it, doubles it, or makes it
/// huge: the field most loaders trust.
fn edit_length_field(input: &mut [u8], rng: &mut ChaCha8Rng) {
    let width = if rng.gen_bool(0.5) { 4 } else { 8 };
    let len = input.len() as u64;
    let candidates: Vec<usize> = (0..input.len() / width)
        .map(|i| i * width)
        .filter(|&at| {
            let v = read_le(&input[at..at + width]);
            v > 0 && v <= len
        })
        .collect();
    let Some(&at) = candidates.choose(rng) else { return };
    let v = read_le(&input[at..at + width]);
    let new = match rng.gen_range(0..6) {
        0 => v + 1,
        1 => v - 1,
        2 => v.wrapping_mul(2),
        3 => v / 2,
        4 => v.wrapping_add(1 << 32),
        _ => u64::MAX >> rng.gen_range(0..40),
    };
    write_int(&mut input[at..at + width], new, true);
}

fn read_le(bytes: &[u8]) -> u64 {
    bytes.iter().rev().fold(0, |v, &b| (v << 8) | b as u64)
}

/// Replaces a run of ASCII digits (with its sign and decimals) by an edge number.
fn replace_number(input: &mut Vec<u8>, rng: &mut ChaCha8Rng) {
    let starts: Vec<usize> = (0..input.len())
        .filter(|&i| input[i].is_ascii_digit() && (i == 0 || !input[i - 1].is_ascii_digit()))
        .collect();
    let Some(&start) = starts.choose(rng) else { return };
    let mut end = start;
    while end < input.len()
        && (input[end].is_ascii_digit() || matches!(input[end], b'.' | b'e' | b'-' | b'_'))
    {
        end += 1;
    }
    let edge = TEXT_EDGES[rng.gen_range(0..17)];
    input.splice(start..end, edge.bytes());
}

/// Inserts `text` at a random place, or in place of the next word.
fn insert_text(input: &mut Vec<u8>, text: &[u8], rng: &mut ChaCha8Rng) {
    let at = position(input.len(), rng);
    let end = if rng.gen_bool(0.5) {
        let mut end = at;
        while end < input.len() && input[end].is_ascii_alphanumeric() {
            end += 1;
        }
        end
    } else {
        at
    };
    input.splice(at..end, text.iter().copied());
}

/// Words of the seeds (identifiers, quoted strings, lines), the dictionary the text
/// mutations insert.
pub fn dictionary(seeds: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut words: Vec<Vec<u8>> = Vec::new();
    for seed in seeds {
        for word in seed.split(|b| !(b.is_ascii_alphanumeric() || *b == b'_' || *b == b'.')) {
            if word.len() >= 2 && word.len() <= 40 && !words.iter().any(|w| w == word) {
                words.push(word.to_vec());
            }
        }
        for line in seed.split(|&b| b == b'\n') {
            if line.len() >= 3 && line.len() <= 120 && words.len() < 4000 {
                let mut line = line.to_vec();
                line.push(b'\n');
                words.push(line);
            }
        }
    }
    words.truncate(4000);
    words
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn the_same_seed_gives_the_same_mutations() {
        let corpus = vec![b"hello world 123".to_vec(), vec![1, 0, 0, 0, 9, 0, 0, 0]];
        let dictionary = dictionary(&corpus);
        let run = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut input = corpus[0].clone();
            for _ in 0..200 {
                mutate(&mut input, &corpus, &dictionary, true, &mut rng);
                input.truncate(4096);
            }
            input
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }

    #[test]
    fn length_fields_are_found_and_changed() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let original = vec![12u8, 0, 0, 0, 0, 0, 0, 0, 0xaa, 0xbb, 0xcc, 0xdd];
        let mut changed = false;
        for _ in 0..20 {
            let mut input = original.clone();
            edit_length_field(&mut input, &mut rng);
            changed |= input[..8] != original[..8];
            assert_eq!(input[8..], original[8..], "only the length field moves");
        }
        assert!(changed);
    }
}
