//! The dataset folder: `tokenizer.bin`, `train.bin` and `val.bin`, as [`crate::prepare`]
//! writes them. This is the one place that knows those names; everything else (the
//! trainer, `prepare`, tools) opens a folder through [`Dataset`].
//!
//! The folder describes itself: the tokenizer file records its kind and vocabulary, and
//! each token file its vocabulary size, so opening a dataset needs nothing but its path.

use std::path::{Path, PathBuf};

use crate::shard::TokenFile;
use crate::tokenizer::load_tokenizer;
use crate::{DataError, Tokenizer};

/// The tokenizer, as written by [`crate::save_tokenizer`].
pub const TOKENIZER_FILE: &str = "tokenizer.bin";
/// The training split, a token file.
pub const TRAIN_FILE: &str = "train.bin";
/// The validation split, a token file.
pub const VAL_FILE: &str = "val.bin";
/// Every file of a prepared dataset, in the order above.
pub const DATASET_FILES: [&str; 3] = [TOKENIZER_FILE, TRAIN_FILE, VAL_FILE];

/// How far a folder is from being a prepared dataset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatasetState {
    /// All three files are there.
    Prepared,
    /// None of them is: the folder is still to be prepared (it may not exist).
    Missing,
    /// Some are there and these are not: an earlier prepare was interrupted or files were
    /// deleted by hand.
    Partial { missing: Vec<PathBuf> },
}

/// An opened dataset folder: its tokenizer and its two memory-mapped splits, checked to
/// belong together.
pub struct Dataset {
    pub dir: PathBuf,
    pub tokenizer: Box<dyn Tokenizer>,
    pub train: TokenFile,
    pub val: TokenFile,
}

impl Dataset {
    /// The paths of the dataset files in `dir`: tokenizer, train, val.
    pub fn files(dir: &Path) -> [PathBuf; 3] {
        DATASET_FILES.map(|name| dir.join(name))
    }

    /// Which of the dataset files `dir` holds.
    pub fn state(dir: &Path) -> DatasetState {
        let missing: Vec<PathBuf> = Dataset::files(dir).into_iter().filter(|f| !f.exists()).collect();
        match missing.len() {
            0 => DatasetState::Prepared,
            n if n == DATASET_FILES.len() => DatasetState::Missing,
            _ => DatasetState::Partial { missing },
        }
    }

    /// Opens a prepared dataset folder: reads the tokenizer, maps both splits, and checks
    /// that each split was made with this tokenizer's vocabulary.
    pub fn open(dir: &Path) -> Result<Dataset, DataError> {
        let [tokenizer, train, val] = Dataset::files(dir);
        let tokenizer = load_tokenizer(&tokenizer)?;
        let train = TokenFile::open(&train)?;
        let val = TokenFile::open(&val)?;
        for split in [&train, &val] {
            split.check_vocab(tokenizer.vocab_size())?;
        }
        Ok(Dataset { dir: dir.to_path_buf(), tokenizer, train, val })
    }
}
