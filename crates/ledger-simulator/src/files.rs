//! Output files made safely on a machine shared with other users, where the tool may run as
//! root in a directory others can write into (`/tmp`, a shared CI workspace): every file is
//! first made under a name no other process can have guessed and created before it, with
//! `O_CREAT | O_EXCL` (which never follows a symbolic link another user planted at that name),
//! written whole, then renamed into place (a rename replaces a link at the final name; it never
//! writes through it).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Temporary files made by this process so far: part of the next one's name.
static MADE: AtomicU64 = AtomicU64::new(0);

/// A new, empty file in `path`'s directory, named after `path` (`.NAME.PID.NANOS.N.tmp`), made
/// with `O_EXCL`: when a file or a link already has the name (someone guessed it), another name
/// is tried, and the file made is always this process's own. Returns it and its path.
pub fn create_temp_beside(path: &Path) -> std::io::Result<(File, PathBuf)> {
    let mut last = None;
    for _ in 0..64 {
        let tmp = temp_name_beside(path);
        match open_new(&tmp) {
            Ok(file) => return Ok((file, tmp)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free temporary name")))
}

/// A name in `path`'s directory for a temporary file of it, `.NAME.PID.NANOS.N.tmp`, which no
/// other process can know in advance and this process never gives twice. Make the file with
/// [`open_new`].
pub fn temp_name_beside(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let n = MADE.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.{}.{nanos:x}.{n}.tmp", std::process::id()))
}

/// A new file at `path`, `O_CREAT | O_EXCL`: an error when anything has that name, a link
/// (to a file or to nothing) included.
pub fn open_new(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

/// Writes `bytes` to `path` whole or not at all: to a new temporary file beside it
/// ([`create_temp_beside`]), then renamed over `path`. On failure nothing is left behind and
/// `path` is as it was.
pub fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let (mut file, tmp) = create_temp_beside(path)?;
    let written = file.write_all(bytes).and_then(|()| file.flush()).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Whether the directory `dir` takes a new file: one is made there ([`create_temp_beside`])
/// and removed.
pub fn takes_a_file(dir: &Path) -> std::io::Result<()> {
    let (_, tmp) = create_temp_beside(&dir.join("ledger-sim-probe"))?;
    std::fs::remove_file(&tmp)
}

/// The user this process acts as (its effective uid: the owner of `/proc/self`), when the
/// system says.
pub fn effective_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ledger-simulator-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A link planted at a temporary name is never written through: the file it points to
    /// keeps its bytes, and the output still lands whole at its own name.
    #[test]
    fn a_planted_link_is_never_written_through() {
        let d = dir("planted");
        let victim = d.join("victim.conf");
        std::fs::write(&victim, b"precious").unwrap();
        let out = d.join("out.jsonl");
        // A name guessed and linked to the victim (or to where a victim would be made) is
        // refused, not opened.
        let guess = d.join(".out.jsonl.guessed.tmp");
        std::os::unix::fs::symlink(&victim, &guess).unwrap();
        assert_eq!(open_new(&guess).unwrap_err().kind(), std::io::ErrorKind::AlreadyExists);
        let dangling = d.join(".out.jsonl.dangling.tmp");
        std::os::unix::fs::symlink(d.join("made-by-root"), &dangling).unwrap();
        assert_eq!(open_new(&dangling).unwrap_err().kind(), std::io::ErrorKind::AlreadyExists);
        assert!(!d.join("made-by-root").exists());
        write_whole(&out, b"output").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(std::fs::read(&out).unwrap(), b"output");
        // A link at the final name is replaced by the file, not written through.
        let link = d.join("link.jsonl");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        write_whole(&link, b"new").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(std::fs::symlink_metadata(&link).unwrap().is_file(), "the link replaced by a file");
        // Nothing left behind but the planted link and the outputs.
        let mut left: Vec<String> =
            std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(left.len(), 5, "{left:?}");
        takes_a_file(&d).unwrap();
        let _ = std::fs::remove_dir_all(&d);
    }
}
