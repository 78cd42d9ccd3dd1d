//! Reading text files in chunks as UTF-8, for inputs too large to hold in memory. A
//! character split across two reads is carried over to the next one, so invalid bytes are
//! found at their exact offset (or, when lossy, replaced by U+FFFD exactly as
//! `String::from_utf8_lossy` would on the whole file).

use std::fs::File;
use std::io::Read;
use std::path::Path;

use indicatif::ProgressBar;

use crate::DataError;

/// Bytes read from the file at a time.
const CHUNK_BYTES: usize = 1 << 20;

/// Calls `on_text` with the file's text, chunk by chunk, in order, advancing `bar` by the
/// bytes read.
pub(crate) fn read_text_chunks(
    path: &Path,
    lossy: bool,
    bar: &ProgressBar,
    on_text: &mut impl FnMut(&str) -> Result<(), DataError>,
) -> Result<(), DataError> {
    let mut file =
        File::open(path).map_err(|error| DataError::UnreadableInput { path: path.to_path_buf(), error })?;
    let mut buf = vec![0u8; CHUNK_BYTES + 4];
    let mut text = String::with_capacity(CHUNK_BYTES + 4);
    let mut carried = 0; // bytes of an unfinished character at the front of buf
    let mut offset = 0u64; // the file offset of buf[0]
    loop {
        let n = file.read(&mut buf[carried..carried + CHUNK_BYTES]).map_err(|e| DataError::io(path, e))?;
        bar.inc(n as u64);
        if n == 0 {
            if carried > 0 {
                if !lossy {
                    return Err(invalid_utf8(path, offset));
                }
                on_text("\u{FFFD}")?;
            }
            return Ok(());
        }
        let data = &buf[..carried + n];
        text.clear();
        let mut pos = 0;
        while pos < data.len() {
            match std::str::from_utf8(&data[pos..]) {
                Ok(valid) => {
                    text.push_str(valid);
                    pos = data.len();
                }
                Err(e) => {
                    let good = e.valid_up_to();
                    text.push_str(
                        std::str::from_utf8(&data[pos..pos + good]).expect("valid up to this point"),
                    );
                    pos += good;
                    match e.error_len() {
                        Some(bad) if lossy => {
                            text.push('\u{FFFD}');
                            pos += bad;
                        }
                        Some(_) => return Err(invalid_utf8(path, offset + pos as u64)),
                        // A character cut by the end of this read: finish it after the next one.
                        None => break,
                    }
                }
            }
        }
        on_text(&text)?;
        let total = data.len();
        buf.copy_within(pos..total, 0);
        carried = total - pos;
        offset += pos as u64;
    }
}

fn invalid_utf8(path: &Path, offset: u64) -> DataError {
    DataError::InvalidUtf8 { path: path.to_path_buf(), offset }
}
