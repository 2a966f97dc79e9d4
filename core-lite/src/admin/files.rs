//! Files of the admin commands: inputs read with a size bound, secrets written 0600 and
//! replaced atomically.

use std::path::Path;

use serde_json::Value;

use crate::error::{CoreError, Result};

/// Largest file the admin commands read (offering input, signed offering, access message).
pub const MAX_INPUT_FILE: u64 = 256 * 1024;

/// Reads a file of at most [`MAX_INPUT_FILE`] bytes.
pub fn read_bounded(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let io = |source| CoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let mut buf = Vec::new();
    f.take(MAX_INPUT_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(io)?;
    if buf.len() as u64 > MAX_INPUT_FILE {
        return Err(CoreError::Invalid(format!(
            "{}: larger than {MAX_INPUT_FILE} bytes",
            path.display()
        )));
    }
    Ok(buf)
}

/// Reads a JSON file of at most [`MAX_INPUT_FILE`] bytes.
pub fn read_json_file(path: &Path) -> Result<Value> {
    let buf = read_bounded(path)?;
    serde_json::from_slice(&buf)
        .map_err(|e| CoreError::Invalid(format!("{}: not valid JSON: {e}", path.display())))
}

/// Writes `contents` to `path` with mode 0600 (replacing it atomically).
pub fn write_private_file(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| CoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    // A stale temporary file (a crash) may have other modes: never reuse it; the new one
    // is created 0600 from its first byte, then renamed over the target.
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(contents).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}
