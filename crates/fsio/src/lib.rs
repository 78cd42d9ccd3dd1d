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
//! is removed. A process killed while writing (SIGKILL, a power cut) leaves its temporary
//! file behind; [`remove_stale_temporaries`] sweeps those of writers no longer running. Standard
//! library only, so every crate of the workspace can use it.

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

/// Whether `a` and `b` name the same file: the same path once links and `..` are
/// resolved, or one file under two names (a hard link: the same device and inode). A path
/// that does not exist is no other file.
pub fn same_file(a: &Path, b: &Path) -> bool {
    let (Ok(ca), Ok(cb)) = (a.canonicalize(), b.canonicalize()) else { return false };
    if ca == cb {
        return true;
    }
    same_identity(&ca, &cb)
}

#[cfg(unix)]
fn same_identity(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(ma), Ok(mb)) => ma.dev() == mb.dev() && ma.ino() == mb.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_identity(_: &Path, _: &Path) -> bool {
    false
}

/// The first output that is also an input ([`same_file`]), as `(output, input)`: a
/// command refuses to write it, `--force` or not, since that would replace the text or
/// model it reads.
pub fn output_among_inputs<'a>(
    outputs: &'a [PathBuf],
    inputs: &'a [PathBuf],
) -> Option<(&'a Path, &'a Path)> {
    outputs.iter().find_map(|output| {
        inputs.iter().find(|input| same_file(output, input)).map(|input| (output.as_path(), input.as_path()))
    })
}

/// The programs of Quill that write files: a temporary file of a running one is in use.
const WRITERS: [&str; 7] = ["train", "prepare", "sample", "plot", "bench", "ngram", "convert"];

/// Removes the temporary files `NAME.tmp-PID` in `dir` whose writer is gone: no process
/// `PID` runs, or the one that does is not a Quill program (the id was reused), as
/// `/proc/PID` tells. This process's own are kept, and so is everything where `/proc` is
/// missing (another system: nothing can be told apart there). Returns the paths removed.
pub fn remove_stale_temporaries(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    if !Path::new("/proc/self").exists() {
        return Ok(removed);
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(temporary_pid) else { continue };
        if pid == std::process::id() || writer_alive(pid) || !entry.file_type()?.is_file() {
            continue;
        }
        let path = entry.path();
        match std::fs::remove_file(&path) {
            Ok(()) => removed.push(path),
            // Its writer may just have renamed it into place.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

/// The PID of a temporary file's name `NAME.tmp-PID`, or `None` for any other name.
fn temporary_pid(name: &str) -> Option<u32> {
    let (stem, pid) = name.rsplit_once(".tmp-")?;
    if stem.is_empty() || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Whether process `pid` runs a program that may be writing a temporary file: a Quill
/// program, or the same executable as this process (a test binary, say).
fn writer_alive(pid: u32) -> bool {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    if !proc_dir.exists() {
        return false;
    }
    match std::fs::read_link(proc_dir.join("exe")) {
        Ok(exe) => {
            let same = std::env::current_exe().is_ok_and(|own| own == exe);
            let name = exe.file_name().and_then(|n| n.to_str()).unwrap_or("");
            same || WRITERS.contains(&name)
        }
        // Another user's process, or one exiting: it may be a writer, so keep its file.
        Err(_) => true,
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

    #[test]
    fn temporaries_of_dead_writers_are_swept_and_live_ones_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut child = std::process::Command::new("true").spawn().expect("run true");
        child.wait().expect("wait");
        let dead = child.id();
        let own = std::process::id();
        let names = [
            format!("latest.ckpt.tmp-{dead}"),
            format!("latest.ckpt.tmp-{own}"),
            "latest.ckpt".to_string(),
            "notes.tmp-x".to_string(),
        ];
        for name in &names {
            std::fs::write(dir.path().join(name), b"x").expect("write");
        }
        let removed = remove_stale_temporaries(dir.path()).expect("sweep");
        assert_eq!(removed, vec![dir.path().join(&names[0])]);
        for name in &names[1..] {
            assert!(dir.path().join(name).exists(), "{name} was removed");
        }
    }

    #[test]
    fn only_name_tmp_digits_is_a_temporary_name() {
        assert_eq!(temporary_pid("latest.ckpt.tmp-123"), Some(123));
        assert_eq!(temporary_pid("a.tmp-"), None);
        assert_eq!(temporary_pid(".tmp-12"), None);
        assert_eq!(temporary_pid("a.tmp-12x"), None);
        assert_eq!(temporary_pid("a.txt"), None);
    }

    #[test]
    fn same_file_sees_through_links_and_dots() {
        let dir = tempfile::tempdir().expect("temp dir");
        let a = dir.path().join("a.txt");
        std::fs::write(&a, b"text").expect("write");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        let dotted = dir.path().join("sub/../a.txt");
        let hard = dir.path().join("sub/hard.bin");
        std::fs::hard_link(&a, &hard).expect("hard link");
        let other = dir.path().join("b.txt");
        std::fs::write(&other, b"text").expect("write");
        assert!(same_file(&a, &dotted));
        assert!(same_file(&a, &hard));
        assert!(!same_file(&a, &other));
        assert!(!same_file(&a, &dir.path().join("missing")));
        let outputs = [other.clone(), hard.clone()];
        assert_eq!(
            output_among_inputs(&outputs, std::slice::from_ref(&a)),
            Some((hard.as_path(), a.as_path()))
        );
        assert_eq!(output_among_inputs(&outputs[..1], &[a]), None);
    }
}
