//! The run folder `out_dir/NAME/`: choosing a fresh one (never overwriting an earlier run)
//! and the append-only `metrics.jsonl`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use plot::MetricRow;

use crate::TrainError;

/// `out_dir/name` if it does not exist yet, else the first free `out_dir/name-2`,
/// `name-3`, ...; the folder is created.
pub fn fresh_run_dir(out_dir: &Path, name: &str) -> Result<PathBuf, TrainError> {
    std::fs::create_dir_all(out_dir)
        .map_err(|source| TrainError::Io { path: out_dir.to_path_buf(), error: source })?;
    let mut n = 1;
    loop {
        let dir = if n == 1 { out_dir.join(name) } else { out_dir.join(format!("{name}-{n}")) };
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
            Err(source) => return Err(TrainError::Io { path: dir, error: source }),
        }
    }
}

/// Writes `text` to `path` atomically (`fsio`'s temporary file, sync, rename).
pub fn write_atomic(path: &Path, text: &[u8]) -> Result<(), TrainError> {
    fsio::write_atomic(path, text)
        .map_err(|source| TrainError::Io { path: path.to_path_buf(), error: source })
}

/// `metrics.jsonl`: one JSON object per line, each written and flushed as it comes.
pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// Replaces the log (atomically) with `rows` and opens it for appending: a resumed run
    /// rewrites the rows its checkpoint knows, dropping any logged after that checkpoint.
    pub fn create(path: &Path, rows: &[MetricRow]) -> Result<MetricsLog, TrainError> {
        let io = |source| TrainError::Io { path: path.to_path_buf(), error: source };
        let mut text = String::new();
        for row in rows {
            text.push_str(&metric_line(row));
        }
        write_atomic(path, text.as_bytes())?;
        let file = OpenOptions::new().append(true).open(path).map_err(io)?;
        Ok(MetricsLog { path: path.to_path_buf(), file })
    }

    pub fn append(&mut self, row: &MetricRow) -> Result<(), TrainError> {
        self.file
            .write_all(metric_line(row).as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|source| TrainError::Io { path: self.path.clone(), error: source })
    }
}

/// One row of `metrics.jsonl`, newline included.
fn metric_line(row: &MetricRow) -> String {
    let mut line = serde_json::to_string(row).expect("a MetricRow always serialises");
    line.push('\n');
    line
}
