//! Small durable-file helpers (blocking; call them from `spawn_blocking`).

use std::fs::File;
use std::fs::OpenOptions;
use std::io;
use std::io::Write;
use std::path::Path;

/// fsync a directory so that a create/rename/unlink inside it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Atomically replace `dir/name` with `bytes`: write `name.tmp`, optionally
/// fsync it, rename over `name`, optionally fsync the directory. After a
/// crash the file holds either the old or the new content (with `durable`),
/// never a mix. Without `durable` the new content may be lost (old or an
/// empty/garbled file may be seen), so only use that for data that may
/// legally go backwards (the committed index).
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8], durable: bool) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        if durable {
            f.sync_all()?;
        }
    }
    std::fs::rename(&tmp, dir.join(name))?;
    if durable {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Read `dir/name`, `None` if it does not exist.
pub fn read_opt(dir: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    match std::fs::read(dir.join(name)) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Run blocking file IO off the async workers. A panic or cancellation of
/// the blocking task is reported as an io::Error.
pub async fn blocking<T, F>(f: F) -> io::Result<T>
where
    F: FnOnce() -> io::Result<T> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(io::Error::other(e)),
    }
}

/// The little-endian u32 in the first four bytes of `b` (callers check the
/// length first; missing bytes read as zero).
pub fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    let n = b.len().min(4);
    a[..n].copy_from_slice(&b[..n]);
    u32::from_le_bytes(a)
}
