//! The byte-pair merge table shared by our BPE and GPT-2's: the bytes of every token, the
//! token of each single byte, and the ranked merges. Encoding a pre-tokenized piece starts
//! from its bytes and repeatedly merges the adjacent pair with the lowest rank (the
//! earliest-learned merge) until no pair has a merge, as GPT-2's `encoder.py` does.

use serde::{Deserialize, Serialize};

use super::pretokenize::{Piece, PieceStream};
use crate::fxhash::FxHashMap;
use crate::DataError;

/// The serialisable contents of a merge table.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct MergeTableData {
    /// The bytes of each token id.
    pub tokens: Vec<Vec<u8>>,
    /// The token id of each single byte (256 entries).
    pub byte_ids: Vec<u32>,
    /// `(left, right, merged)` token ids, in rank order (rank 0 first).
    pub merges: Vec<(u32, u32, u32)>,
    /// Special tokens matched literally in text before pre-tokenization: (text, id).
    pub specials: Vec<(String, u32)>,
}

/// A merge table ready for encoding.
pub(crate) struct MergeTable {
    pub data: MergeTableData,
    /// (left, right) → (rank, merged id).
    ranks: FxHashMap<(u32, u32), (u32, u32)>,
}

/// The rank of a pair that has no merge (it sorts after every real one).
const NO_MERGE: (u32, u32) = (u32::MAX, u32::MAX);

/// Cached piece encodings are dropped when the cache holds this many pieces, which keeps
/// memory bounded on huge corpora (their vocabulary of distinct words keeps growing).
const MAX_CACHED_PIECES: usize = 1 << 20;

impl MergeTable {
    /// Checks the table's ids and builds the rank index; `what` names its source in errors.
    pub(crate) fn new(data: MergeTableData, what: &str) -> Result<MergeTable, DataError> {
        let n = data.tokens.len() as u32;
        let bad = |msg: String| DataError::Message(format!("{what}: {msg}"));
        if data.byte_ids.len() != 256 {
            return Err(bad(format!("expected 256 byte tokens, found {}", data.byte_ids.len())));
        }
        if let Some(&id) = data.byte_ids.iter().find(|&&id| id >= n) {
            return Err(bad(format!("byte token id {id} is outside the vocabulary of {n}")));
        }
        let mut ranks = FxHashMap::default();
        for (rank, &(a, b, m)) in data.merges.iter().enumerate() {
            if a >= n || b >= n || m >= n {
                return Err(bad(format!("merge {rank} ({a}, {b}) → {m} is outside the vocabulary of {n}")));
            }
            ranks.entry((a, b)).or_insert((rank as u32, m));
        }
        if let Some((s, id)) = data.specials.iter().find(|(_, id)| *id >= n) {
            return Err(bad(format!("special token {s:?} has id {id}, outside the vocabulary of {n}")));
        }
        Ok(MergeTable { data, ranks })
    }

    pub(crate) fn vocab_size(&self) -> usize {
        self.data.tokens.len()
    }

    pub(crate) fn token_bytes(&self, id: u32) -> Vec<u8> {
        self.data.tokens.get(id as usize).cloned().unwrap_or_else(|| {
            panic!("token_bytes: id {id} is outside the vocabulary of {}", self.data.tokens.len())
        })
    }

    /// The (rank, merged id) of the pair `(a, b)`, or `NO_MERGE`.
    #[inline]
    fn rank(&self, a: u32, b: u32) -> (u32, u32) {
        self.ranks.get(&(a, b)).copied().unwrap_or(NO_MERGE)
    }

    /// Appends the tokens of one pre-tokenized piece to `out`.
    pub(crate) fn encode_piece(&self, piece: &[u8], out: &mut Vec<u32>) {
        let mut ids: Vec<u32> = piece.iter().map(|&b| self.data.byte_ids[b as usize]).collect();
        // ranks[i] belongs to the pair (ids[i], ids[i + 1]); a merge changes only its neighbours.
        let mut ranks: Vec<(u32, u32)> = ids.windows(2).map(|w| self.rank(w[0], w[1])).collect();
        while let Some((i, &(rank, merged))) = ranks.iter().enumerate().min_by_key(|(_, r)| r.0) {
            if rank == NO_MERGE.0 {
                break;
            }
            ids[i] = merged;
            ids.remove(i + 1);
            ranks.remove(i);
            if i > 0 {
                ranks[i - 1] = self.rank(ids[i - 1], ids[i]);
            }
            if i + 1 < ids.len() {
                ranks[i] = self.rank(ids[i], ids[i + 1]);
            }
        }
        out.extend_from_slice(&ids);
    }

    /// An encoder that remembers the tokens of pieces it has seen; with `specials`, the
    /// special tokens' text maps to their ids, otherwise it is encoded as ordinary text.
    pub(crate) fn encoder(&self, specials: bool) -> CachedEncoder<'_> {
        let specials =
            if specials { self.data.specials.iter().map(|(s, _)| s.clone()).collect() } else { Vec::new() };
        CachedEncoder { table: self, cache: FxHashMap::default(), stream: PieceStream::new(specials) }
    }

    /// Encodes a whole text (see [`MergeTable::encoder`] for `specials`).
    pub(crate) fn encode_text(&self, text: &str, specials: bool) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3);
        self.encoder(specials)
            .feed(text, true, &mut |ids| {
                out.extend_from_slice(ids);
                Ok(())
            })
            .expect("collecting into a Vec cannot fail");
        out
    }
}

/// Streams text through pre-tokenization and the merges, with a per-piece cache.
pub(crate) struct CachedEncoder<'a> {
    table: &'a MergeTable,
    cache: FxHashMap<Box<str>, Box<[u32]>>,
    stream: PieceStream,
}

impl CachedEncoder<'_> {
    /// Encodes the next chunk of text, handing out the tokens of each finished piece
    /// (`end` marks the last chunk; see [`PieceStream::feed`]).
    pub(crate) fn feed(
        &mut self,
        text: &str,
        end: bool,
        sink: &mut impl FnMut(&[u32]) -> Result<(), DataError>,
    ) -> Result<(), DataError> {
        let table = self.table;
        let cache = &mut self.cache;
        let mut scratch = Vec::new();
        self.stream.feed(text, end, &mut |piece| match piece {
            Piece::Special(i) => sink(&[table.data.specials[i].1]),
            Piece::Word(word) => {
                if let Some(ids) = cache.get(word) {
                    return sink(ids);
                }
                scratch.clear();
                table.encode_piece(word.as_bytes(), &mut scratch);
                if cache.len() >= MAX_CACHED_PIECES {
                    cache.clear();
                }
                cache.insert(word.into(), scratch.as_slice().into());
                sink(&scratch)
            }
        })
    }
}
