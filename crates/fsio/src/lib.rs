//! Quill's one way to write a file: atomically. Every file a command writes (checkpoints,
//! token files, tokenizers, the run folder's `config.toml` and `metrics.jsonl`, SVG
//! charts) goes through [`AtomicFile`]:
//!
//! 1. a new temporary file `NAME.tmp-PID` is created beside the target, in the same folder
//!    (so the rename below stays on one file system);
//! 2. the content is written into it and synced to disk (`fsync`);
//! 3. it is renamed over the target, which replaces the old file in one step;
//! 4. the folder is synced, so the rename itself survives a crash.
//!
//! A reader (or a crash) therefore sees the old file or the new one, never a torn one. A
//! temporary file whose writing fails, or that is dropped without [`AtomicFile::commit`],
//! is removed. Standard library only, so every crate of the workspace can use it.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically (see the crate docs).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |file| file.write_all(bytes))
}

/// Writes `path` atomically, the content streamed by `write` into the (buffered) temporary
/// file: for files too large to build in memory first.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut AtomicFile) -> io::Result<()>,
) -> io::Result<()> {
    let mut file = AtomicFile::create(path)?;
    write(&mut file)?;
    file.commit()
}

/// Makes `path` another name of the existing file `existing` (a hard link), replacing
/// whatever `path` held atomically: the link is made under the temporary name, then
/// renamed over `path`. Fails where the file system has no hard links; callers then write
/// a copy with [`write_atomic`].
pub fn link_atomic(existing: &Path, path: &Path) -> io::Result<()> {
    let tmp = temp_path(path)?;
    remove_stale(&tmp);
    if let Err(e) = std::fs::hard_link(existing, &tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    replace(&tmp, path)
}

/// A file being written under a temporary name beside its target; [`AtomicFile::commit`]
/// syncs it and renames it into place. It writes through a 1 MiB buffer and can seek
/// (a header may be filled in last).
pub struct AtomicFile {
    path: PathBuf,
    tmp: PathBuf,
    out: BufWriter<File>,
    committed: bool,
}

impl AtomicFile {
    /// Creates the temporary file `NAME.tmp-PID` beside `path`. One left by a crashed
    /// process with the same id is removed first; the new one is always a fresh file,
    /// never one opened for writing in place (it may have been a hard link to a file
    /// that must not change).
    pub fn create(path: &Path) -> io::Result<AtomicFile> {
        let tmp = temp_path(path)?;
        remove_stale(&tmp);
        let file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        Ok(AtomicFile {
            path: path.to_path_buf(),
            tmp,
            out: BufWriter::with_capacity(1 << 20, file),
            committed: false,
        })
    }

    /// The target: the name the file will have once committed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes and syncs the content without renaming it yet, so several files can be
    /// finished first and then appear together (each [`AtomicFile::commit`] is then quick).
    pub fn sync(&mut self) -> io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_all()
    }

    /// Syncs the content, renames the file over its target and syncs the folder.
    pub fn commit(mut self) -> io::Result<()> {
        self.sync()?;
        replace(&self.tmp, &self.path)?;
        self.committed = true;
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.out.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl Seek for AtomicFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.out.seek(pos)
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// `NAME.tmp-PID` in the folder of `path`.
fn temp_path(path: &Path) -> io::Result<PathBuf> {
    let Some(name) = path.file_name() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "the path does not name a file"));
    };
    let mut tmp_name = OsString::from(name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    Ok(path.with_file_name(tmp_name))
}

/// Removes a temporary file left by a crash of a process with the same id.
fn remove_stale(tmp: &Path) {
    let _ = std::fs::remove_file(tmp);
}

/// Renames the finished `tmp` over `path`, then syncs the folder.
fn replace(tmp: &Path, path: &Path) -> io::Result<()> {
    let renamed = std::fs::rename(tmp, path);
    // Renaming a link over another link to the same file succeeds and leaves `tmp`; a
    // failed rename leaves it too.
    let _ = std::fs::remove_file(tmp);
    renamed?;
    sync_folder(path);
    Ok(())
}

/// Makes a rename in `path`'s folder durable. Folders cannot be opened for syncing on
/// every platform, so a failure here is not an error.
fn sync_folder(path: &Path) {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leftovers(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp"))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn write_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("a.txt");
        write_atomic(&path, b"first").expect("write");
        write_atomic(&path, b"second").expect("rewrite");
        assert_eq!(std::fs::read(&path).expect("read"), b"second");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("a.txt");
        write_atomic(&path, b"old").expect("write");
        let err = write_atomic_with(&path, |f| {
            f.write_all(b"half")?;
            Err(io::Error::other("disk full"))
        })
        .expect_err("the writer fails");
        assert_eq!(err.to_string(), "disk full");
        assert_eq!(std::fs::read(&path).expect("read"), b"old");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn a_header_can_be_written_last() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("t.bin");
        write_atomic_with(&path, |f| {
            f.write_all(&[0; 4])?;
            f.write_all(b"body")?;
            f.seek(SeekFrom::Start(0))?;
            f.write_all(b"HEAD")
        })
        .expect("write");
        assert_eq!(std::fs::read(&path).expect("read"), b"HEADbody");
    }

    #[test]
    fn a_link_replaces_the_target_and_shares_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        write_atomic(&a, b"one").expect("write a");
        write_atomic(&b, b"old b").expect("write b");
        link_atomic(&a, &b).expect("link");
        assert_eq!(std::fs::read(&b).expect("read"), b"one");
        // Rewriting a makes a new file: b keeps the old content.
        write_atomic(&a, b"two").expect("rewrite a");
        assert_eq!(std::fs::read(&b).expect("read"), b"one");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn the_temporary_name_is_name_tmp_pid_beside_the_target() {
        let tmp = temp_path(Path::new("runs/x/latest.ckpt")).expect("a file name");
        assert_eq!(tmp, Path::new(&format!("runs/x/latest.ckpt.tmp-{}", std::process::id())));
        assert!(temp_path(Path::new("/")).is_err());
    }
}
