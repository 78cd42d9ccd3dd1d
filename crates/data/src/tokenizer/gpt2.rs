//! GPT-2's tokenizer, read from OpenAI's `encoder.json` (token string → id) and `vocab.bpe`
//! (the merges in rank order). Both files spell bytes as printable characters through
//! GPT-2's `bytes_to_unicode` table (a space is `Ġ`); this module maps them back to bytes,
//! so encoding shares the merge loop of our own BPE. `<|endoftext|>` in the text becomes
//! the special token 50256, as tiktoken's `encode(text, allowed_special="all")` does.

use std::collections::HashMap;
use std::path::Path;

use super::merges::{MergeTable, MergeTableData};
use super::{tokenizer_header, KIND_GPT2};
use crate::{DataError, Tokenizer};

/// The one special token of GPT-2's vocabulary.
pub const END_OF_TEXT: &str = "<|endoftext|>";

/// GPT-2's byte-level BPE (50,257 tokens).
pub struct Gpt2Tokenizer {
    table: MergeTable,
}

/// GPT-2's `bytes_to_unicode`: printable Latin-1 bytes stand for themselves, the other 68
/// bytes map to U+0100 onwards in byte order.
fn bytes_to_unicode() -> [char; 256] {
    let printable =
        |b: u32| (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..256u32 {
        let cp = if printable(b) {
            b
        } else {
            next += 1;
            next - 1
        };
        table[b as usize] = char::from_u32(cp).expect("code points below 0x200 are valid chars");
    }
    table
}

fn read_text(path: &Path, what: &str) -> Result<String, DataError> {
    std::fs::read_to_string(path).map_err(|e| {
        DataError::Message(format!(
            "{}: cannot read GPT-2's {what} ({e}); the project keeps it in datasets/gpt2-tokenizer/ (prepare takes --gpt2-dir to look elsewhere)",
            path.display()
        ))
    })
}

/// The vocabulary size of an encoder whose ids are exactly 0..n, each once; checked
/// before anything is allocated from the largest id (an id of 4294967295 in a small file
/// would otherwise ask for a table of 2^32 tokens).
fn check_dense_ids(encoder: &HashMap<String, u32>, encoder_json: &Path) -> Result<usize, DataError> {
    let mut ids: Vec<u32> = encoder.values().copied().collect();
    ids.sort_unstable();
    for (expected, &id) in ids.iter().enumerate() {
        if id as usize != expected {
            let what = if id as usize > expected {
                format!("no token has id {expected}, but ids run up to {}", ids[ids.len() - 1])
            } else {
                format!("two tokens have id {id}")
            };
            return Err(DataError::Message(format!(
                "{}: {what}; the ids of GPT-2's encoder.json run from 0 to the vocabulary size - 1, each once; is the file complete?",
                encoder_json.display()
            )));
        }
    }
    Ok(ids.len())
}

impl Gpt2Tokenizer {
    /// Reads `encoder.json` and `vocab.bpe`.
    pub fn from_files(encoder_json: &Path, vocab_bpe: &Path) -> Result<Gpt2Tokenizer, DataError> {
        let encoder_text = read_text(encoder_json, "encoder.json")?;
        let merges_text = read_text(vocab_bpe, "vocab.bpe")?;
        let encoder: HashMap<String, u32> = serde_json::from_str(&encoder_text).map_err(|e| {
            DataError::Message(format!(
                "{}: expected a JSON object of token → id, as in GPT-2's encoder.json, but parsing failed: {e}",
                encoder_json.display()
            ))
        })?;

        let to_char = bytes_to_unicode();
        let from_char: HashMap<char, u8> = to_char.iter().enumerate().map(|(b, &c)| (c, b as u8)).collect();
        let vocab_size = check_dense_ids(&encoder, encoder_json)?;
        let mut tokens: Vec<Option<Vec<u8>>> = vec![None; vocab_size];
        for (text, &id) in &encoder {
            let bytes = if text == END_OF_TEXT {
                text.as_bytes().to_vec()
            } else {
                text.chars().map(|c| from_char.get(&c).copied()).collect::<Option<Vec<u8>>>().ok_or_else(|| {
                    DataError::Message(format!(
                        "{}: token {text:?} has a character outside GPT-2's byte alphabet; is this GPT-2's encoder.json?",
                        encoder_json.display()
                    ))
                })?
            };
            tokens[id as usize] = Some(bytes);
        }
        let tokens: Vec<Vec<u8>> = tokens
            .into_iter()
            .enumerate()
            .map(|(id, t)| {
                t.ok_or_else(|| {
                    DataError::Message(format!(
                        "{}: no token has id {id}, but ids run up to {}; is the file complete?",
                        encoder_json.display(),
                        vocab_size - 1
                    ))
                })
            })
            .collect::<Result<_, _>>()?;

        let id_of = |s: &str, line: usize| {
            encoder.get(s).copied().ok_or_else(|| {
                DataError::Message(format!(
                    "{}:{line}: merge names {s:?}, which {} does not have; the two files do not belong together",
                    vocab_bpe.display(),
                    encoder_json.display()
                ))
            })
        };
        let mut merges = Vec::new();
        for (n, line) in merges_text.lines().enumerate() {
            if line.starts_with("#version") || line.trim().is_empty() {
                continue;
            }
            let (a, b) = line.split_once(' ').ok_or_else(|| {
                DataError::Message(format!(
                    "{}:{}: expected a merge \"left right\", found {line:?}",
                    vocab_bpe.display(),
                    n + 1
                ))
            })?;
            merges.push((id_of(a, n + 1)?, id_of(b, n + 1)?, id_of(&format!("{a}{b}"), n + 1)?));
        }

        let byte_ids =
            to_char.iter().map(|c| id_of(&c.to_string(), 0)).collect::<Result<Vec<u32>, DataError>>()?;
        let specials =
            encoder.get(END_OF_TEXT).map(|&id| vec![(END_OF_TEXT.to_string(), id)]).unwrap_or_default();
        let data = MergeTableData { tokens, byte_ids, merges, specials };
        let table = MergeTable::new(data, &encoder_json.display().to_string())?;
        Ok(Gpt2Tokenizer { table })
    }

    /// Reads `encoder.json` and `vocab.bpe` from one folder.
    pub fn from_dir(dir: &Path) -> Result<Gpt2Tokenizer, DataError> {
        Gpt2Tokenizer::from_files(&dir.join("encoder.json"), &dir.join("vocab.bpe"))
    }

    /// Encodes `<|endoftext|>` as ordinary text, as tiktoken's `encode_ordinary` does.
    pub fn encode_ordinary(&self, text: &str) -> Vec<u32> {
        self.table.encode_text(text, false)
    }

    /// The tokenizer as GPT-2's two files: `encoder.json` (Hugging Face's `vocab.json`),
    /// token → id in id order, and `vocab.bpe` (`merges.txt`), the merges in rank order.
    pub fn to_files(&self) -> (String, String) {
        let data = &self.table.data;
        let to_char = bytes_to_unicode();
        let spell = |id: u32| -> String {
            let bytes = &data.tokens[id as usize];
            match data.specials.iter().find(|(_, special)| *special == id) {
                Some((text, _)) => text.clone(),
                None => bytes.iter().map(|&b| to_char[b as usize]).collect(),
            }
        };
        let entries: Vec<String> = (0..data.tokens.len() as u32)
            .map(|id| {
                let key = serde_json::to_string(&spell(id)).expect("a string serialises to JSON");
                format!("{key}: {id}")
            })
            .collect();
        let encoder_json = format!("{{{}}}", entries.join(", "));
        let mut vocab_bpe = String::from("#version: 0.2\n");
        for &(a, b, _) in &data.merges {
            vocab_bpe.push_str(&format!("{} {}\n", spell(a), spell(b)));
        }
        (encoder_json, vocab_bpe)
    }

    pub(crate) fn table(&self) -> &MergeTable {
        &self.table
    }

    pub(crate) fn from_payload(payload: &[u8]) -> Result<Gpt2Tokenizer, String> {
        let data: MergeTableData = bincode::deserialize(payload).map_err(|e| e.to_string())?;
        let table = MergeTable::new(data, "GPT-2 tokenizer").map_err(|e| e.to_string())?;
        Ok(Gpt2Tokenizer { table })
    }
}

impl Tokenizer for Gpt2Tokenizer {
    fn kind(&self) -> &'static str {
        "gpt2"
    }

    fn vocab_size(&self) -> usize {
        self.table.vocab_size()
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>, DataError> {
        Ok(self.table.encode_text(text, true))
    }

    fn token_bytes(&self, id: u32) -> Vec<u8> {
        self.table.token_bytes(id)
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = tokenizer_header(KIND_GPT2);
        out.extend(bincode::serialize(&self.table.data).expect("serialising a merge table cannot fail"));
        out
    }

    fn as_gpt2(&self) -> Option<&Gpt2Tokenizer> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_to_unicode_matches_gpt2() {
        let t = bytes_to_unicode();
        assert_eq!(t[b'!' as usize], '!');
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[0], 'Ā');
        let distinct: std::collections::HashSet<char> = t.iter().copied().collect();
        assert_eq!(distinct.len(), 256);
    }
}
