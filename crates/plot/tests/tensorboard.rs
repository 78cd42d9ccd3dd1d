//! TensorBoard event files: the TFRecord framing and CRC-32C, read back with our own
//! reader (scripts/check_tensorboard.py checks them with TensorBoard's).

use plot::tensorboard::{crc32c, masked_crc32c, read_events, read_records, EventWriter};

#[test]
fn crc32c_check_value() {
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
}

#[test]
fn scalars_round_trip_through_the_event_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut writer = EventWriter::create(dir.path()).expect("create");
    writer.add_scalar("loss/train", 0, 4.17).expect("write");
    writer.add_scalar("loss/train", 10, 3.5).expect("write");
    writer.add_scalars(10, &[("loss/val", 3.6), ("lr", 6e-4)]).expect("write");
    writer.flush().expect("flush");
    let path = writer.path().to_owned();
    let name = path.file_name().expect("file name").to_string_lossy().into_owned();
    assert!(name.starts_with("events.out.tfevents."), "{name}");
    let seconds: u64 = name.split('.').nth(3).expect("unix seconds").parse().expect("a number");
    assert!(seconds > 1_600_000_000);

    let events = read_events(&path).expect("readable");
    assert_eq!(events.len(), 4);
    assert_eq!(events[0].file_version.as_deref(), Some("brain.Event:2"));
    assert!(events[0].scalars.is_empty());
    assert_eq!(events[1].step, 0);
    assert_eq!(events[1].scalars, vec![("loss/train".to_owned(), 4.17f32)]);
    assert_eq!(events[2].step, 10);
    assert_eq!(events[3].scalars, vec![("loss/val".to_owned(), 3.6f32), ("lr".to_owned(), 6e-4f32)]);
    assert!(events.iter().all(|e| e.wall_time as u64 >= seconds));
}

#[test]
fn records_are_framed_with_masked_crcs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut writer = EventWriter::create(dir.path()).expect("create");
    writer.add_scalar("loss", 1, 2.0).expect("write");
    drop(writer);
    let path = std::fs::read_dir(dir.path()).expect("list").next().expect("one file").expect("entry").path();
    let bytes = std::fs::read(&path).expect("read");

    // Walk the framing by hand: u64 length, masked CRC of it, data, masked CRC of the data.
    let mut offset = 0;
    let mut records = 0;
    while offset < bytes.len() {
        let length_bytes = &bytes[offset..offset + 8];
        let length = u64::from_le_bytes(length_bytes.try_into().expect("8")) as usize;
        let length_crc = u32::from_le_bytes(bytes[offset + 8..offset + 12].try_into().expect("4"));
        assert_eq!(length_crc, masked_crc32c(length_bytes));
        let data = &bytes[offset + 12..offset + 12 + length];
        let data_crc =
            u32::from_le_bytes(bytes[offset + 12 + length..offset + 16 + length].try_into().expect("4"));
        assert_eq!(data_crc, masked_crc32c(data));
        offset += 16 + length;
        records += 1;
    }
    assert_eq!(offset, bytes.len());
    assert_eq!(records, 2);
    assert_eq!(read_records(&path).expect("valid").len(), 2);

    // A cut-off last record (a writer still running) is not an error; a flipped bit is.
    std::fs::write(&path, &bytes[..bytes.len() - 3]).expect("truncate");
    assert_eq!(read_records(&path).expect("truncated tail tolerated").len(), 1);
    let mut corrupt = bytes.clone();
    let last = corrupt.len() - 6;
    corrupt[last] ^= 0x40;
    std::fs::write(&path, &corrupt).expect("corrupt");
    let message = read_records(&path).expect_err("bad crc").to_string();
    assert!(message.contains("checksum"), "{message}");
}

#[test]
fn two_writers_in_one_folder_get_two_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = EventWriter::create(dir.path()).expect("first");
    let second = EventWriter::create(dir.path()).expect("second");
    assert_ne!(first.path(), second.path());
    assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 2);
}

#[test]
fn truncating_drops_the_steps_after_a_checkpoint_and_a_torn_record() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut writer = EventWriter::create(dir.path()).expect("create");
    for step in 1..=6 {
        writer.add_scalar("loss", step, step as f64).expect("write");
    }
    drop(writer);
    let path = std::fs::read_dir(dir.path()).expect("list").next().expect("one file").expect("entry").path();
    // A kill in the middle of a record.
    let mut bytes = std::fs::read(&path).expect("read");
    bytes.extend_from_slice(&[7; 20]);
    std::fs::write(&path, &bytes).expect("write");

    let rewritten = plot::tensorboard::truncate_events(dir.path(), 4).expect("truncate");
    assert_eq!(rewritten, vec![path.clone()]);
    let events = read_events(&path).expect("readable");
    assert_eq!(events[0].file_version.as_deref(), Some("brain.Event:2"));
    assert_eq!(events[1..].iter().map(|e| e.step).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    assert!(plot::tensorboard::truncate_events(dir.path(), 4).expect("again").is_empty());
}
