//! The loop: pick an input from the corpus, stack a few mutations, run the target with
//! panics caught, and keep the input when its outcome is of a kind not seen before.
//!
//! Coverage signal: without compiler instrumentation on stable Rust, the runner uses the
//! loader's own words. Each outcome (accepted, or the error message with every number,
//! hex word and quoted excerpt blanked) is a "kind"; an input that produces a new kind
//! reached a check no earlier input reached, and joins the corpus.
//!
//! Failures: a panic (caught per input, the loop goes on), a single allocation or a live
//! total above the bound (see [`crate::alloc`]), or an input that runs past the timeout
//! (a watchdog thread). Each failing input is saved under the crash folder and printed
//! with the command that replays it.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::alloc;
use crate::mutate::{dictionary, mutate};
use crate::targets::{self, Target};

/// How a run goes.
#[derive(Clone, Debug)]
pub struct Options {
    /// Executions, seeds included.
    pub execs: u64,
    /// The seed of the mutation generator.
    pub seed: u64,
    /// Longest input the mutations may make, in bytes.
    pub max_len: usize,
    /// The allocation bound in bytes (one allocation; twice this live at once).
    pub alloc_limit: usize,
    /// Longest time one input may take.
    pub timeout: Duration,
    /// Where failing inputs go (a folder per target is made inside).
    pub crash_dir: PathBuf,
    /// Folders of committed inputs to start from (missing ones are skipped).
    pub corpus_dir: Option<PathBuf>,
    /// Where to write inputs that found a new kind, if anywhere.
    pub corpus_out: Option<PathBuf>,
}

/// One input that failed.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The panic message, with where it was raised.
    pub message: String,
    /// The saved input.
    pub path: PathBuf,
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct Report {
    pub target: String,
    pub execs: u64,
    pub elapsed: Duration,
    /// Distinct outcome kinds seen.
    pub kinds: usize,
    /// Inputs in the corpus at the end (seeds and finds).
    pub corpus: usize,
    /// Distinct panics (by message), each with its first input.
    pub failures: Vec<Failure>,
}

/// The last panic's message and place, recorded by the hook instead of printed.
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);
/// The input now running, for the allocation hook and the watchdog.
static CURRENT: Mutex<Vec<u8>> = Mutex::new(Vec::new());
/// The target and crash folder of this process's run, for the same.
static RUN: OnceLock<Mutex<(String, PathBuf)>> = OnceLock::new();
/// When the input now running started (milliseconds since `EPOCH`, plus one); 0 when none.
static STARTED_MS: AtomicU64 = AtomicU64::new(0);
static EPOCH: OnceLock<Instant> = OnceLock::new();

fn now_ms() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// Installs the panic hook, the allocation hook and the watchdog (once per process).
fn install(timeout: Duration) {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let default_hook = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            // Outside an input (the harness itself, a test's assertion) panics print as usual.
            if STARTED_MS.load(Ordering::SeqCst) == 0 {
                return default_hook(info);
            }
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            let place = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
            *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!("{message}{place}"));
        }));
        alloc::set_hook(|size| {
            fatal(&format!(
                "an allocation of {size} bytes (or that many live at once) passed the bound of {} bytes",
                LIMIT_FOR_REPORT.load(Ordering::Relaxed)
            ))
        });
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(100));
            let started = STARTED_MS.load(Ordering::SeqCst);
            let limit = TIMEOUT_MS.load(Ordering::Relaxed);
            if started != 0 && now_ms().saturating_sub(started) > limit {
                alloc::disarm();
                fatal(&format!("one input ran for more than {} ms", limit));
                std::process::abort();
            }
        });
    });
    TIMEOUT_MS.store(timeout.as_millis() as u64, Ordering::Relaxed);
}

static LIMIT_FOR_REPORT: AtomicU64 = AtomicU64::new(0);
static TIMEOUT_MS: AtomicU64 = AtomicU64::new(10_000);

/// Saves the running input and prints the failure and its reproducer (before an abort).
fn fatal(what: &str) {
    let input = CURRENT.lock().map(|c| c.clone()).unwrap_or_default();
    let (target, crash_dir) = RUN
        .get()
        .and_then(|r| r.lock().ok().map(|r| r.clone()))
        .unwrap_or_else(|| ("?".into(), PathBuf::from("fuzz-crashes")));
    let saved = save_crash(&crash_dir, "fatal", &input);
    eprintln!("\nFAILURE in target {target}: {what}");
    print_reproducer(&target, &saved);
}

fn print_reproducer(target: &str, saved: &Result<PathBuf, String>) {
    match saved {
        Ok(path) => eprintln!(
            "  input saved to {}\n  reproduce: cargo run --release -p fuzz -- {target} --input {}",
            path.display(),
            path.display()
        ),
        Err(e) => eprintln!("  the input could not be saved: {e}"),
    }
}

/// Writes `input` to `dir/<kind>-<hash>.bin` and returns the path.
fn save_crash(dir: &Path, kind: &str, input: &[u8]) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(format!("{kind}-{:016x}.bin", hash(input)));
    fsio::write_atomic(&path, input).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

fn hash<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// The kind of an outcome: the error message reduced to its template. Numbers, hex
/// words and quoted excerpts are blanked, and only the first 6 and the last 4 plain words
/// are kept (after the scratch folder's path is removed), since messages echo the offending input in their middle; so "5 bytes" and
/// "6 bytes" are one kind, "truncated" and "checksum mismatch" two.
pub fn outcome_kind(outcome: &Result<(), String>) -> u64 {
    let Err(message) = outcome else { return 0 };
    let mut unquoted = String::with_capacity(message.len());
    let mut quote: Option<char> = None;
    for c in message.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if matches!(c, '`' | '"') => quote = Some(c),
            None => unquoted.push(c),
        }
    }
    let plain =
        |w: &&str| w.len() > 1 && w.chars().all(|c| c.is_ascii_alphabetic() || "_-.:;,()[]'=".contains(c));
    let words: Vec<&str> = unquoted
        .split(|c: char| c.is_whitespace() || c == '/')
        .filter(|w| plain(w) && !w.chars().any(|c| c.is_ascii_digit()))
        .collect();
    let head = &words[..words.len().min(6)];
    let tail = &words[words.len().saturating_sub(4).max(head.len())..];
    hash(&(head, tail)) | 1
}

/// Runs one input under the bound and the watchdog; `Err(panic message)` when it panicked.
fn run_one(target: &mut dyn Target, input: &[u8], limit: usize) -> Result<Result<(), String>, String> {
    {
        let mut current = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
        current.clear();
        current.extend_from_slice(input);
    }
    STARTED_MS.store(now_ms(), Ordering::SeqCst);
    alloc::arm(limit);
    let result = panic::catch_unwind(AssertUnwindSafe(|| target.exec(input)));
    alloc::disarm();
    STARTED_MS.store(0, Ordering::SeqCst);
    result.map_err(|_| {
        LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_else(|| "a panic".into())
    })
}

/// The committed inputs of a corpus folder, sorted by name (none when it is missing).
pub fn read_corpus(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut paths: Vec<PathBuf> =
        entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
    paths.sort();
    paths.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

/// Fuzzes `target_name` as `options` say.
pub fn run(target_name: &str, options: &Options) -> Result<Report, String> {
    let scratch = scratch_dir()?;
    let mut target = targets::open(target_name, scratch.path())?;
    let scratch_path = scratch.path().display().to_string();
    let crash_dir = options.crash_dir.join(target_name);
    install(options.timeout);
    LIMIT_FOR_REPORT.store(options.alloc_limit as u64, Ordering::Relaxed);
    let run = RUN.get_or_init(|| Mutex::new((String::new(), PathBuf::new())));
    *run.lock().unwrap_or_else(|e| e.into_inner()) = (target_name.to_string(), crash_dir.clone());

    let mut corpus = target.seeds();
    if let Some(dir) = &options.corpus_dir {
        for input in read_corpus(dir) {
            if !corpus.contains(&input) {
                corpus.push(input);
            }
        }
    }
    let text = target.is_text();
    let words = dictionary(&corpus);
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let mut kinds: HashSet<u64> = HashSet::new();
    let mut failures: Vec<Failure> = Vec::new();
    let mut panics_seen: HashSet<String> = HashSet::new();
    let started = Instant::now();
    let seeds = corpus.len() as u64;
    let mut execs = 0;
    while execs < options.execs {
        let input = if execs < seeds {
            corpus[execs as usize].clone()
        } else {
            let mut input = corpus[rng.gen_range(0..corpus.len())].clone();
            // Mostly one or two mutations, sometimes a pile of them.
            let stack = 1 + (rng.gen::<u32>() % 64).trailing_zeros().min(5) as usize + rng.gen_range(0..2);
            for _ in 0..stack {
                mutate(&mut input, &corpus, &words, text, &mut rng);
            }
            input.truncate(options.max_len);
            if rng.gen_bool(0.8) {
                target.fix_up(&mut input);
            }
            input
        };
        execs += 1;
        match run_one(target.as_mut(), &input, options.alloc_limit) {
            Ok(outcome) => {
                let outcome = outcome.map_err(|m| m.replace(&scratch_path, ""));
                let kind = outcome_kind(&outcome);
                if kinds.insert(kind) && execs > seeds {
                    if std::env::var_os("FUZZ_SHOW_KINDS").is_some() {
                        eprintln!("new kind {kind:016x}: {:?}", outcome.as_ref().err());
                    }
                    if let Some(dir) = &options.corpus_out {
                        let _ = save_crash(&dir.join(target_name), "new", &input);
                    }
                    if corpus.len() < 4096 {
                        corpus.push(input);
                    }
                }
            }
            Err(message) => {
                // One report per panic site; a new site is also a new kind.
                let site = message.rsplit(" at ").next().unwrap_or(&message).to_string();
                if panics_seen.insert(site) {
                    let saved = save_crash(&crash_dir, "panic", &input);
                    eprintln!("\nFAILURE in target {target_name} (exec {execs}): panic: {message}");
                    print_reproducer(target_name, &saved);
                    failures.push(Failure { message, path: saved.unwrap_or_default() });
                }
            }
        }
    }
    Ok(Report {
        target: target_name.to_string(),
        execs,
        elapsed: started.elapsed(),
        kinds: kinds.len(),
        corpus: corpus.len(),
        failures,
    })
}

/// Runs the one input in `path` through `target_name` and says what happened.
pub fn replay(target_name: &str, path: &Path, alloc_limit: usize) -> Result<String, String> {
    let input = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let scratch = scratch_dir()?;
    let mut target = targets::open(target_name, scratch.path())?;
    install(Duration::from_secs(600));
    LIMIT_FOR_REPORT.store(alloc_limit as u64, Ordering::Relaxed);
    Ok(match run_one(target.as_mut(), &input, alloc_limit) {
        Ok(Ok(())) => "accepted".into(),
        Ok(Err(message)) => format!("refused: {message}"),
        Err(message) => format!("PANIC: {message}"),
    })
}

/// A scratch folder in memory where there is one (/dev/shm), else in the temp folder.
fn scratch_dir() -> Result<tempfile::TempDir, String> {
    let shm = Path::new("/dev/shm");
    let builder = tempfile::Builder::new().prefix("quill-fuzz-").tempdir_in(if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    });
    builder.map_err(|e| format!("cannot make a scratch folder: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_quotes_do_not_make_new_kinds() {
        let kind = |m: &str| outcome_kind(&Err(m.to_string()));
        assert_eq!(kind("truncated: 5 bytes"), kind("truncated: 612 bytes"));
        assert_eq!(kind("checksum: stored 1a2b3c4d"), kind("checksum: stored ffee0011"));
        assert_eq!(kind("found `abc`"), kind("found `x`"));
        assert_eq!(
            kind("a merge on this line of the file names token abc def, which the files do not belong together"),
            kind("a merge on this line of the file names token xyz, which the files do not belong together")
        );
        assert_ne!(kind("truncated: 5 bytes"), kind("checksum: stored 1a2b3c4d"));
        assert_ne!(outcome_kind(&Ok(())), kind(""));
    }
}
