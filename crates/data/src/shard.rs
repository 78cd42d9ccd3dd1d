//! The token-file format (`train.bin`, `val.bin`) and its memory-mapped reader.
//!
//! ```text
//! offset  size  field
//!      0     8  magic b"QUILLTOK"
//!      8     4  version (u32, little-endian), currently 1
//!     12     4  token width in bytes: 2, or 4 when the vocabulary exceeds 65,536
//!     16     8  vocab_size (u64)
//!     24     8  token count (u64)
//!     32     …  the tokens, little-endian
//! ```
//!
//! Files are written with `fsio`'s atomic write (a temporary name, synced, renamed into
//! place when complete), so a crash or an error never leaves a torn file under the real name.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use fsio::AtomicFile;
use memmap2::Mmap;

use crate::{DataError, PREPARE_HINT};

const MAGIC: &[u8; 8] = b"QUILLTOK";
/// The token-file version this build writes and reads.
pub const TOKEN_FILE_VERSION: u32 = 1;
/// Bytes before the first token.
pub const TOKEN_FILE_HEADER_LEN: usize = 32;

/// The token width for a vocabulary: 2 bytes while every id fits in u16.
fn width_for(vocab_size: usize) -> usize {
    if vocab_size <= 1 << 16 {
        2
    } else {
        4
    }
}

/// A memory-mapped token file (`train.bin` / `val.bin`): header checked, tokens read in place.
pub struct TokenFile {
    path: PathBuf,
    map: Mmap,
    width: usize,
    vocab_size: usize,
    len: usize,
}

impl TokenFile {
    /// Opens and validates a token file: magic, version, width, vocab size, the token
    /// count against the file length, and every token id below the vocab size (one
    /// streaming pass over the file, a small fraction of a second per GB).
    pub fn open(path: &Path) -> Result<TokenFile, DataError> {
        let fail = |detail: String| Err(DataError::BadTokenFile { path: path.to_path_buf(), detail });
        let file = File::open(path)
            .map_err(|error| DataError::MissingTokenFile { path: path.to_path_buf(), error })?;
        if file.metadata().is_ok_and(|m| !m.is_file()) {
            return fail(format!("is a folder or a device, not a file; {PREPARE_HINT}"));
        }
        // SAFETY: the map is read-only and Quill never writes a token file in place (new
        // files are renamed over old ones, which leaves this mapping's inode untouched).
        // Another program truncating the file while it is mapped could still fault.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| DataError::io(path, e))?;
        let bytes: &[u8] = &map;
        let file_len = bytes.len() as u64;
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return fail(format!("not a Quill token file (bad magic); {PREPARE_HINT}"));
        }
        if bytes.len() < TOKEN_FILE_HEADER_LEN {
            return fail(format!(
                "truncated: {} bytes, but the header alone is {TOKEN_FILE_HEADER_LEN}; {PREPARE_HINT}",
                bytes.len()
            ));
        }
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let version = u32_at(8);
        if version > TOKEN_FILE_VERSION {
            return fail(format!(
                "token file version {version} is newer than this build reads ({TOKEN_FILE_VERSION}); update Quill or {PREPARE_HINT}"
            ));
        }
        if version == 0 {
            return fail(format!("token file version 0 is not a version Quill ever wrote; {PREPARE_HINT}"));
        }
        let width = u32_at(12) as usize;
        let vocab_size = u64_at(16);
        let count = u64_at(24);
        if width != 2 && width != 4 {
            return fail(format!("token width {width} in the header; expected 2 or 4; {PREPARE_HINT}"));
        }
        if vocab_size == 0 || vocab_size > u32::MAX as u64 + 1 {
            return fail(format!("vocab size {vocab_size} in the header is impossible; {PREPARE_HINT}"));
        }
        if width == 2 && vocab_size > 1 << 16 {
            return fail(format!(
                "vocab size {vocab_size} needs 4-byte tokens, but the header says 2; {PREPARE_HINT}"
            ));
        }
        let expected =
            count.checked_mul(width as u64).and_then(|n| n.checked_add(TOKEN_FILE_HEADER_LEN as u64));
        if expected != Some(file_len) {
            return fail(format!(
                "the header says {count} tokens of {width} bytes ({} bytes with the header), but the file has {file_len} bytes; it is truncated or damaged; {PREPARE_HINT}",
                expected.map_or("more than 2^64".to_string(), |n| n.to_string())
            ));
        }
        #[cfg(unix)]
        let _ = map.advise(memmap2::Advice::Sequential);
        let tokens = &map[TOKEN_FILE_HEADER_LEN..];
        if let Some((index, id)) = first_out_of_vocab(tokens, width, vocab_size) {
            return Err(DataError::TokenOutOfVocab {
                path: path.to_path_buf(),
                index: index as u64,
                id,
                vocab_size: vocab_size as usize,
            });
        }
        #[cfg(unix)]
        {
            // Batches read small windows at random places: read-ahead would only fill memory.
            let _ = map.advise(memmap2::Advice::Random);
        }
        Ok(TokenFile {
            path: path.to_path_buf(),
            map,
            width,
            vocab_size: vocab_size as usize,
            len: count as usize,
        })
    }

    /// The path the file was opened from (for error messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The number of tokens.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the file holds no tokens.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The vocabulary size recorded in the header (every token is below it).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Bytes per token on disk (2 or 4).
    pub fn token_width(&self) -> usize {
        self.width
    }

    /// Checks that this file was made with a tokenizer of `tokenizer_vocab` tokens.
    pub fn check_vocab(&self, tokenizer_vocab: usize) -> Result<(), DataError> {
        if self.vocab_size != tokenizer_vocab {
            return Err(DataError::VocabMismatch {
                path: self.path.clone(),
                file_vocab: self.vocab_size,
                tokenizer_vocab,
            });
        }
        Ok(())
    }

    /// The token at `i`.
    pub fn get(&self, i: usize) -> u32 {
        assert!(
            i < self.len,
            "TokenFile::get: index {i} out of range for {} tokens in {}",
            self.len,
            self.path.display()
        );
        let at = TOKEN_FILE_HEADER_LEN + i * self.width;
        let b = &self.map[at..at + self.width];
        if self.width == 2 {
            u16::from_le_bytes([b[0], b[1]]) as u32
        } else {
            u32::from_le_bytes([b[0], b[1], b[2], b[3]])
        }
    }

    /// Copies tokens [start, start + out.len()) into `out`.
    pub fn read_into(&self, start: usize, out: &mut [u32]) {
        let end = start.checked_add(out.len()).filter(|&e| e <= self.len).unwrap_or_else(|| {
            panic!(
                "TokenFile::read_into: tokens [{start}, {start} + {}) out of range for {} tokens in {}",
                out.len(),
                self.len,
                self.path.display()
            )
        });
        let bytes =
            &self.map[TOKEN_FILE_HEADER_LEN + start * self.width..TOKEN_FILE_HEADER_LEN + end * self.width];
        if self.width == 2 {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = u16::from_le_bytes([b[0], b[1]]) as u32;
            }
        } else {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
    }
}

/// The position and value of the first token id at or past `vocab_size` in `tokens`
/// (little-endian ids of `width` bytes), or None. Scans in chunks, taking each chunk's
/// maximum in a loop the compiler vectorises, and looks for the exact position only in a
/// chunk whose maximum is out of range.
fn first_out_of_vocab(tokens: &[u8], width: usize, vocab_size: u64) -> Option<(usize, u32)> {
    if vocab_size > (1u64 << (8 * width)) - 1 {
        return None; // every id of this width is in range
    }
    let limit = vocab_size as u32; // < 2^32 here
    let id_at = |b: &[u8]| match width {
        2 => u16::from_le_bytes([b[0], b[1]]) as u32,
        _ => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
    };
    const CHUNK_TOKENS: usize = 1 << 14;
    for (c, chunk) in tokens.chunks(CHUNK_TOKENS * width).enumerate() {
        let max = match width {
            2 => chunk.chunks_exact(2).fold(0u16, |m, b| m.max(u16::from_le_bytes([b[0], b[1]]))) as u32,
            _ => chunk.chunks_exact(4).fold(0u32, |m, b| m.max(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        };
        if max >= limit {
            let (i, id) = chunk.chunks_exact(width).map(id_at).enumerate().find(|&(_, id)| id >= limit)?;
            return Some((c * CHUNK_TOKENS + i, id));
        }
    }
    None
}

/// Streams tokens into a new token file (header written last, once the count is known).
pub struct TokenWriter {
    out: AtomicFile,
    width: usize,
    vocab_size: usize,
    count: u64,
}

impl TokenWriter {
    /// Starts a token file for a vocabulary of `vocab_size` tokens at `path`.
    pub fn create(path: &Path, vocab_size: usize) -> Result<TokenWriter, DataError> {
        if vocab_size == 0 || vocab_size > u32::MAX as usize + 1 {
            return Err(DataError::Message(format!(
                "{}: cannot write tokens for a vocabulary of {vocab_size}",
                path.display()
            )));
        }
        let mut out = AtomicFile::create(path).map_err(|e| DataError::io(path, e))?;
        out.write_all(&[0u8; TOKEN_FILE_HEADER_LEN]).map_err(|e| DataError::io(path, e))?;
        Ok(TokenWriter { out, width: width_for(vocab_size), vocab_size, count: 0 })
    }

    /// Tokens written so far.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether no token has been written yet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends tokens; each must be below the vocabulary size.
    pub fn push(&mut self, tokens: &[u32]) -> Result<(), DataError> {
        let mut buf = [0u8; 4096];
        for chunk in tokens.chunks(4096 / self.width) {
            let mut n = 0;
            for &t in chunk {
                assert!(
                    (t as usize) < self.vocab_size,
                    "TokenWriter::push: token {t} is outside the vocabulary of {}",
                    self.vocab_size
                );
                if self.width == 2 {
                    buf[n..n + 2].copy_from_slice(&(t as u16).to_le_bytes());
                } else {
                    buf[n..n + 4].copy_from_slice(&t.to_le_bytes());
                }
                n += self.width;
            }
            self.out.write_all(&buf[..n]).map_err(|e| DataError::io(self.out.path(), e))?;
        }
        self.count += tokens.len() as u64;
        Ok(())
    }

    /// Writes the header and syncs, leaving the file under its temporary name until it is
    /// committed (so several files can appear together).
    pub(crate) fn finish_pending(self) -> Result<AtomicFile, DataError> {
        let TokenWriter { mut out, width, vocab_size, count } = self;
        let path = out.path().to_path_buf();
        let mut header = Vec::with_capacity(TOKEN_FILE_HEADER_LEN);
        header.extend_from_slice(MAGIC);
        header.extend(TOKEN_FILE_VERSION.to_le_bytes());
        header.extend((width as u32).to_le_bytes());
        header.extend((vocab_size as u64).to_le_bytes());
        header.extend(count.to_le_bytes());
        out.seek(SeekFrom::Start(0))
            .and_then(|_| out.write_all(&header))
            .and_then(|()| out.sync())
            .map_err(|e| DataError::io(&path, e))?;
        Ok(out)
    }

    /// Writes the header, syncs, and renames the file into place.
    pub fn finish(self) -> Result<(), DataError> {
        let out = self.finish_pending()?;
        let path = out.path().to_path_buf();
        out.commit().map_err(|e| DataError::io(&path, e))
    }
}

/// Writes a complete token file (atomically: temporary file, then rename). For tests and
/// tools that build small corpora directly.
pub fn write_token_file(path: &Path, tokens: &[u32], vocab_size: usize) -> Result<(), DataError> {
    let mut writer = TokenWriter::create(path, vocab_size)?;
    writer.push(tokens)?;
    writer.finish()
}
