//! Node log files: append-only, size-capped and rotated by copy-and-truncate,
//! so a node keeps writing to the same open file across control-plane restarts.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Open (creating) a log file for appending.
pub fn open_append(path: &Path) -> io::Result<File> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

fn rotated(path: &Path, index: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{index}"));
    PathBuf::from(name)
}

/// Rotate `path` when it is larger than `max_bytes`, keeping `keep` old files
/// (`log.1` newest). Returns whether it rotated.
pub fn rotate_if_needed(path: &Path, max_bytes: u64, keep: u32) -> io::Result<bool> {
    let size = match fs::metadata(path) {
        Ok(meta) => meta.len(),
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(err) => return Err(err),
    };
    if size <= max_bytes {
        return Ok(false);
    }
    if keep > 0 {
        for index in (1..keep).rev() {
            let from = rotated(path, index);
            if from.exists() {
                fs::rename(&from, rotated(path, index + 1))?;
            }
        }
        fs::copy(path, rotated(path, 1))?;
    }
    // The node holds the file with O_APPEND, so after truncation it writes at the new end.
    OpenOptions::new().write(true).open(path)?.set_len(0)?;
    Ok(true)
}

/// The last `lines` lines of a log (reading at most its last 64 KiB).
pub fn tail(path: &Path, lines: usize) -> io::Result<Vec<String>> {
    const WINDOW: u64 = 64 * 1024;
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    file.seek(SeekFrom::Start(size.saturating_sub(WINDOW)))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    Ok(all[start..].iter().map(|s| s.to_string()).collect())
}

/// Up to `max` bytes of the log from `offset`, and the offset after them.
/// An offset past the end (the log was rotated) restarts from 0.
pub fn read_from(path: &Path, offset: u64, max: usize) -> io::Result<(Vec<u8>, u64)> {
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    let start = if offset > size { 0 } else { offset };
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.take(max as u64).read_to_end(&mut bytes)?;
    let next = start + bytes.len() as u64;
    Ok((bytes, next))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn rotation_caps_size_keeps_history_and_the_writer_continues() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.log");
        let mut writer = open_append(&path).expect("open");
        for round in 0..5 {
            writeln!(writer, "{}", format!("round {round} ").repeat(40)).expect("write");
            rotate_if_needed(&path, 100, 2).expect("rotate");
        }
        writeln!(writer, "last line").expect("write");
        let size = fs::metadata(&path).expect("meta").len();
        assert!(size < 100, "log not truncated: {size} bytes");
        assert!(rotated(&path, 1).exists() && rotated(&path, 2).exists());
        assert!(!rotated(&path, 3).exists(), "kept more than 2 old logs");
        assert_eq!(tail(&path, 1).expect("tail"), vec!["last line".to_string()]);
        let old = fs::read_to_string(rotated(&path, 1)).expect("read .1");
        assert!(old.contains("round 4"));
    }

    #[test]
    fn read_from_follows_and_restarts_after_rotation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("n.log");
        fs::write(&path, "abcdef").expect("write");
        let (bytes, next) = read_from(&path, 2, 3).expect("read");
        assert_eq!((bytes.as_slice(), next), (&b"cde"[..], 5));
        fs::write(&path, "xy").expect("truncate");
        let (bytes, next) = read_from(&path, 5, 10).expect("read");
        assert_eq!((bytes.as_slice(), next), (&b"xy"[..], 2));
        assert!(tail(&dir.path().join("missing"), 3).is_err());
    }
}
