//! TensorBoard event files (`events.out.tfevents.*`) beside metrics.jsonl, so
//! `tensorboard --logdir runs/` shows Quill's runs.
//!
//! An event file is a sequence of TFRecords, each framed as
//! `u64 length | u32 masked CRC-32C of the length | data | u32 masked CRC-32C of the data`
//! (all little-endian). Each record's data is an `Event` protobuf, encoded here by hand:
//! the first carries `file_version = "brain.Event:2"`, the rest a `Summary` of scalars.
//! A small reader checks the framing and decodes scalars back, for tests and tools.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::PlotError;

/// Buffered events reach the disk at least this often (and on `flush` and drop).
const FLUSH_EVERY_S: f64 = 2.0;

/// Appends scalar summaries to one event file in a run folder.
pub struct EventWriter {
    path: PathBuf,
    file: BufWriter<File>,
    last_flush: Instant,
}

impl EventWriter {
    /// Creates a new event file in `dir` (a new file per process, as TensorBoard expects).
    ///
    /// The file is `events.out.tfevents.<unix seconds>.<hostname>`, with `.1`, `.2`, ...
    /// appended if that name is taken. `dir` is created if missing.
    pub fn create(dir: &Path) -> Result<EventWriter, PlotError> {
        std::fs::create_dir_all(dir)
            .map_err(|source| PlotError::Io { path: dir.to_owned(), error: source })?;
        let now = wall_time();
        let base = format!("events.out.tfevents.{}.{}", now as u64, hostname());
        let mut attempt = 0;
        let (path, file) = loop {
            let name = if attempt == 0 { base.clone() } else { format!("{base}.{attempt}") };
            let path = dir.join(name);
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => break (path, file),
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists && attempt < 1000 => attempt += 1,
                Err(source) => return Err(PlotError::Io { path, error: source }),
            }
        };
        let mut writer = EventWriter { path, file: BufWriter::new(file), last_flush: Instant::now() };
        let mut event = Vec::new();
        put_double(&mut event, 1, now);
        put_bytes(&mut event, 3, b"brain.Event:2");
        writer.write_record(&event)?;
        writer.flush()?;
        Ok(writer)
    }

    /// The event file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records one scalar (stored as f32, as TensorBoard does) at `step`, stamped with the
    /// current wall time.
    pub fn add_scalar(&mut self, tag: &str, step: u64, value: f64) -> Result<(), PlotError> {
        self.add_scalars(step, &[(tag, value)])
    }

    /// Records several scalars of one step in a single event.
    pub fn add_scalars(&mut self, step: u64, scalars: &[(&str, f64)]) -> Result<(), PlotError> {
        let mut summary = Vec::new();
        for (tag, value) in scalars {
            let mut summary_value = Vec::new();
            put_bytes(&mut summary_value, 1, tag.as_bytes());
            put_float(&mut summary_value, 2, *value as f32);
            put_bytes(&mut summary, 1, &summary_value);
        }
        let mut event = Vec::new();
        put_double(&mut event, 1, wall_time());
        put_varint_field(&mut event, 2, step);
        put_bytes(&mut event, 5, &summary);
        self.write_record(&event)?;
        if self.last_flush.elapsed().as_secs_f64() >= FLUSH_EVERY_S {
            self.flush()?;
        }
        Ok(())
    }

    /// Pushes buffered events to the file, so a running TensorBoard sees them.
    pub fn flush(&mut self) -> Result<(), PlotError> {
        self.last_flush = Instant::now();
        self.file.flush().map_err(|source| PlotError::Io { path: self.path.clone(), error: source })
    }

    /// Appends one TFRecord holding `data`.
    fn write_record(&mut self, data: &[u8]) -> Result<(), PlotError> {
        let framed = frame_record(data);
        self.file
            .write_all(&framed)
            .map_err(|source| PlotError::Io { path: self.path.clone(), error: source })
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        // Errors cannot be reported from drop; `flush` is there for callers who care.
        let _ = self.file.flush();
    }
}

/// Seconds since the Unix epoch.
fn wall_time() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// This machine's name, reduced to characters safe in a file name.
fn hostname() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_default();
    let clean: String =
        raw.trim().chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')).collect();
    if clean.is_empty() {
        "localhost".to_owned()
    } else {
        clean
    }
}

/// The CRC-32C (Castagnoli) lookup table for the reflected polynomial 0x82F63B78.
const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// CRC-32C (Castagnoli), the checksum TFRecord uses; crc32c(b"123456789") = 0xE3069283.
pub fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc = CRC32C_TABLE[((crc ^ byte as u32) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

/// The masked CRC TFRecord stores: rotated right by 15 bits, plus a constant.
pub fn masked_crc32c(bytes: &[u8]) -> u32 {
    let crc = crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xA282_EAD8)
}

/// `data` framed as one TFRecord.
pub fn frame_record(data: &[u8]) -> Vec<u8> {
    let length = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&length);
    out.extend_from_slice(&masked_crc32c(&length).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7F) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Protobuf field key: field number and wire type (0 varint, 1 fixed64, 2 bytes, 5 fixed32).
fn put_key(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire_type));
}

fn put_varint_field(out: &mut Vec<u8>, field: u32, value: u64) {
    put_key(out, field, 0);
    put_varint(out, value);
}

fn put_double(out: &mut Vec<u8>, field: u32, value: f64) {
    put_key(out, field, 1);
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_float(out: &mut Vec<u8>, field: u32, value: f32) {
    put_key(out, field, 5);
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(out, field, 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// The data of each TFRecord in an event file, with both CRCs checked. A record cut short
/// at the end (a writer still running) ends the list; a wrong CRC is an error.
pub fn read_records(path: &Path) -> Result<Vec<Vec<u8>>, PlotError> {
    let bytes =
        std::fs::read(path).map_err(|source| PlotError::Io { path: path.to_owned(), error: source })?;
    let (records, damage) = intact_records(&bytes);
    if let Some((offset, what)) = damage {
        return Err(PlotError::Message(format!(
            "{}: byte {offset}: {what}; the event file is damaged, delete it (metrics.jsonl still \
             has every value)",
            path.display()
        )));
    }
    Ok(records.into_iter().map(<[u8]>::to_vec).collect())
}

/// The records of `bytes` up to the first damaged one (whose offset and fault come second)
/// or the end; a record cut short at the end is left out.
fn intact_records(bytes: &[u8]) -> (Vec<&[u8]>, Option<(usize, &'static str)>) {
    let mut records = Vec::new();
    let mut offset = 0;
    while offset + 12 <= bytes.len() {
        let length_bytes = &bytes[offset..offset + 8];
        let length_crc = u32::from_le_bytes(bytes[offset + 8..offset + 12].try_into().expect("4 bytes"));
        if length_crc != masked_crc32c(length_bytes) {
            return (records, Some((offset, "length checksum mismatch")));
        }
        let length = u64::from_le_bytes(length_bytes.try_into().expect("8 bytes"));
        let data_start = offset + 12;
        let Some(data_end) = usize::try_from(length)
            .ok()
            .and_then(|length| data_start.checked_add(length))
            .filter(|end| end.checked_add(4).is_some_and(|e| e <= bytes.len()))
        else {
            break;
        };
        let data = &bytes[data_start..data_end];
        let data_crc = u32::from_le_bytes(bytes[data_end..data_end + 4].try_into().expect("4 bytes"));
        if data_crc != masked_crc32c(data) {
            return (records, Some((offset, "data checksum mismatch")));
        }
        records.push(data);
        offset = data_end + 4;
    }
    (records, None)
}

/// Event files of a run that is resumed from its checkpoint at `step`: every event after
/// `step` (logged before a kill, and about to be computed again) is dropped from the
/// folder's event files, each rewritten atomically, so TensorBoard shows each step once.
/// Damaged or cut-short records are dropped with them. Returns the files rewritten.
pub fn truncate_events(dir: &Path, step: u64) -> Result<Vec<PathBuf>, PlotError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| PlotError::Io { path, error: source }
    };
    let mut rewritten = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(rewritten),
        Err(e) => return Err(io(dir)(e)),
    };
    for entry in entries {
        let path = entry.map_err(io(dir))?.path();
        let is_events = path.file_name().and_then(|n| n.to_str()).is_some_and(is_event_file_name);
        if !is_events || !path.is_file() {
            continue;
        }
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let (records, _) = intact_records(&bytes);
        let kept: Vec<&[u8]> = records
            .iter()
            .copied()
            .filter(|record| decode_event(record).is_ok_and(|e| e.file_version.is_some() || e.step <= step))
            .collect();
        let mut framed = Vec::with_capacity(bytes.len());
        for record in &kept {
            framed.extend_from_slice(&frame_record(record));
        }
        if framed != bytes {
            fsio::write_atomic(&path, &framed).map_err(io(&path))?;
            rewritten.push(path);
        }
    }
    Ok(rewritten)
}

/// `events.out.tfevents.*`, and not a temporary file of a rewrite.
fn is_event_file_name(name: &str) -> bool {
    name.starts_with("events.out.tfevents.") && !name.contains(".tmp-")
}

/// An `Event` decoded back: what this module writes, nothing more.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Event {
    pub wall_time: f64,
    pub step: u64,
    pub file_version: Option<String>,
    /// (tag, simple_value) of each summary value.
    pub scalars: Vec<(String, f32)>,
}

/// Every event of an event file, decoded.
pub fn read_events(path: &Path) -> Result<Vec<Event>, PlotError> {
    read_records(path)?
        .iter()
        .map(|record| {
            decode_event(record)
                .map_err(|what| PlotError::Message(format!("{}: undecodable event: {what}", path.display())))
        })
        .collect()
}

/// Decodes the fields of an `Event` this module writes; other fields are skipped.
pub fn decode_event(bytes: &[u8]) -> Result<Event, String> {
    let mut event = Event::default();
    for (field, value) in fields(bytes)? {
        match (field, value) {
            (1, Field::Fixed64(bits)) => event.wall_time = f64::from_bits(bits),
            (2, Field::Varint(step)) => event.step = step,
            (3, Field::Bytes(text)) => event.file_version = Some(String::from_utf8_lossy(text).into_owned()),
            (5, Field::Bytes(summary)) => {
                for (field, value) in fields(summary)? {
                    if let (1, Field::Bytes(summary_value)) = (field, value) {
                        let mut tag = String::new();
                        let mut simple = None;
                        for (field, value) in fields(summary_value)? {
                            match (field, value) {
                                (1, Field::Bytes(text)) => tag = String::from_utf8_lossy(text).into_owned(),
                                (2, Field::Fixed32(bits)) => simple = Some(f32::from_bits(bits)),
                                _ => {}
                            }
                        }
                        let simple =
                            simple.ok_or_else(|| format!("summary value `{tag}` has no simple_value"))?;
                        event.scalars.push((tag, simple));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(event)
}

/// One protobuf field value.
enum Field<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// The (field number, value) pairs of a protobuf message.
fn fields(bytes: &[u8]) -> Result<Vec<(u64, Field<'_>)>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let key = varint(bytes, &mut at)?;
        let take = |at: &mut usize, n: usize| -> Result<&[u8], String> {
            let end = at.checked_add(n).filter(|end| *end <= bytes.len()).ok_or("field runs past the end")?;
            let slice = &bytes[*at..end];
            *at = end;
            Ok(slice)
        };
        let value = match key & 7 {
            0 => Field::Varint(varint(bytes, &mut at)?),
            1 => Field::Fixed64(u64::from_le_bytes(take(&mut at, 8)?.try_into().expect("8 bytes"))),
            2 => {
                let n = varint(bytes, &mut at)? as usize;
                Field::Bytes(take(&mut at, n)?)
            }
            5 => Field::Fixed32(u32::from_le_bytes(take(&mut at, 4)?.try_into().expect("4 bytes"))),
            other => return Err(format!("unsupported wire type {other}")),
        };
        out.push((key >> 3, value));
    }
    Ok(out)
}

fn varint(bytes: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at).ok_or("varint runs past the end")?;
        *at += 1;
        value |= u64::from(byte & 0x7F) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint longer than 10 bytes".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
        // RFC 3720 B.4: 32 bytes of zeros.
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
    }

    #[test]
    fn masking_rotates_and_adds_the_constant() {
        // ((0xE3069283 >> 15) | (0xE3069283 << 17)) + 0xA282EAD8, modulo 2^32.
        assert_eq!(masked_crc32c(b"123456789"), 0xC78A_B0E5);
    }

    #[test]
    fn varints_round_trip() {
        for value in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut bytes = Vec::new();
            put_varint(&mut bytes, value);
            let mut at = 0;
            assert_eq!(varint(&bytes, &mut at), Ok(value));
            assert_eq!(at, bytes.len());
        }
    }

    #[test]
    fn hostname_is_file_name_safe() {
        let name = hostname();
        assert!(!name.is_empty());
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')));
    }
}
