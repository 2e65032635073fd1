//! A user's files. Reading an input: a regular file of bounded size, read whole; a device
//! (`/dev/zero` never ends), a directory or a file larger than [`MAX_INPUT`] is refused,
//! naming it, before anything is read. Writing an output: whole or not at all.

use std::io::Read;
use std::path::{Path, PathBuf};

/// The largest input file read (traces of 100 M steps stay well below it).
pub const MAX_INPUT: u64 = 4 << 30;

/// The bytes of the file at `path`.
pub fn read_bytes(path: &Path) -> anyhow::Result<Vec<u8>> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| anyhow::anyhow!("{shown}: {}", words(&e)))?;
    if meta.is_dir() {
        anyhow::bail!("{shown}: a directory, not a file");
    }
    if !meta.is_file() {
        anyhow::bail!("{shown}: not a regular file (a device or a pipe may never end)");
    }
    if meta.len() > MAX_INPUT {
        anyhow::bail!("{shown}: {} bytes, more than the {} an input may have", meta.len(), MAX_INPUT);
    }
    let file = std::fs::File::open(path).map_err(|e| anyhow::anyhow!("{shown}: {}", words(&e)))?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // Bounded even if the file grows while it is read.
    file.take(MAX_INPUT + 1).read_to_end(&mut bytes).map_err(|e| anyhow::anyhow!("{shown}: {}", words(&e)))?;
    if bytes.len() as u64 > MAX_INPUT {
        anyhow::bail!("{shown}: grew beyond {MAX_INPUT} bytes while it was read");
    }
    Ok(bytes)
}

/// The text of the file at `path`, which must be UTF-8.
pub fn read_text(path: &Path) -> anyhow::Result<String> {
    String::from_utf8(read_bytes(path)?)
        .map_err(|e| anyhow::anyhow!("{}: not UTF-8 text (byte {})", path.display(), e.utf8_error().valid_up_to()))
}

/// An I/O error's words, without the "(os error N)" a user does not need.
pub fn words(e: &std::io::Error) -> String {
    let s = e.to_string();
    s.find(" (os error").map_or(s.clone(), |i| s[..i].to_owned())
}

/// A temporary name in `path`'s directory.
pub fn temp_beside(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Writes `bytes` to `path` whole or not at all: to a temporary file beside it, then renamed.
pub fn write_whole(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = temp_beside(path);
    let written = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        anyhow::bail!("{}: {}", path.display(), words(&e));
    }
    Ok(())
}
