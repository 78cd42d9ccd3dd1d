//! The char-level tokenizer: one token per distinct character of the training text, in
//! sorted order (65 tokens for Tiny Shakespeare, as in nanoGPT's `shakespeare_char`).

use std::collections::{BTreeSet, HashMap};

use super::{tokenizer_header, KIND_CHAR};
use crate::{DataError, Tokenizer};

/// One token per character; text with other characters cannot be encoded.
#[derive(Clone, Debug)]
pub struct CharTokenizer {
    chars: Vec<char>,
    /// Ids of ASCII characters (`u32::MAX` when absent), the common case.
    ascii: [u32; 128],
    other: HashMap<char, u32>,
}

impl CharTokenizer {
    /// The vocabulary of `text`: its distinct characters, sorted.
    pub fn from_text(text: &str) -> CharTokenizer {
        CharTokenizer::from_chars(text.chars())
    }

    /// A vocabulary of the given characters (sorted and deduplicated here).
    pub fn from_chars(chars: impl IntoIterator<Item = char>) -> CharTokenizer {
        let chars: Vec<char> = chars.into_iter().collect::<BTreeSet<char>>().into_iter().collect();
        let mut ascii = [u32::MAX; 128];
        let mut other = HashMap::new();
        for (id, &c) in chars.iter().enumerate() {
            if c.is_ascii() {
                ascii[c as usize] = id as u32;
            } else {
                other.insert(c, id as u32);
            }
        }
        CharTokenizer { chars, ascii, other }
    }

    /// The vocabulary, in id order.
    pub fn chars(&self) -> &[char] {
        &self.chars
    }

    /// The id of `c`, if it is in the vocabulary.
    #[inline]
    pub fn id(&self, c: char) -> Option<u32> {
        if c.is_ascii() {
            Some(self.ascii[c as usize]).filter(|&id| id != u32::MAX)
        } else {
            self.other.get(&c).copied()
        }
    }

    /// The error for text holding characters outside the vocabulary.
    pub(crate) fn unknown_error(&self, text: &str) -> DataError {
        let mut unknown: Vec<char> = Vec::new();
        for c in text.chars() {
            if self.id(c).is_none() && !unknown.contains(&c) {
                unknown.push(c);
            }
        }
        DataError::UnknownCharacters { chars: unknown, known: self.chars.len() }
    }

    pub(crate) fn from_payload(payload: &[u8]) -> Result<CharTokenizer, String> {
        let text: String = bincode::deserialize(payload).map_err(|e| e.to_string())?;
        Ok(CharTokenizer::from_chars(text.chars()))
    }
}

impl Tokenizer for CharTokenizer {
    fn kind(&self) -> &'static str {
        "char"
    }

    fn vocab_size(&self) -> usize {
        self.chars.len()
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>, DataError> {
        text.chars().map(|c| self.id(c)).collect::<Option<Vec<u32>>>().ok_or_else(|| self.unknown_error(text))
    }

    fn token_bytes(&self, id: u32) -> Vec<u8> {
        let c = self.chars.get(id as usize).unwrap_or_else(|| {
            panic!("token_bytes: id {id} is outside the char vocabulary of {}", self.chars.len())
        });
        c.to_string().into_bytes()
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = tokenizer_header(KIND_CHAR);
        let text: String = self.chars.iter().collect();
        out.extend(bincode::serialize(&text).expect("serialising a String cannot fail"));
        out
    }
}
