//! The run directory and its lock.
//!
//! A command that writes a run directory (`evol run`, `evol merge`, `evol
//! export`, `evol batch cancel`) holds an exclusive lock on its lock file
//! for as long as it runs: a second such command on the same directory is
//! refused, naming the process that holds it. The lock is the operating
//! system's (`flock`), so a process that dies, however it dies, releases
//! it: a lock file left behind never blocks anyone.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::StoreError;

/// The lock file's name in a run directory.
pub const LOCK: &str = "evol.lock";

/// An exclusive hold on a run directory, released when dropped.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// Takes the lock of the directory `root` (which must exist), or says
    /// who holds it.
    pub fn acquire(root: &Path) -> Result<DirLock, StoreError> {
        let path = root.join(LOCK);
        let io = |source| StoreError::Io { path: path.display().to_string(), source };
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder =
                    holder.trim().parse::<u32>().map_or("another process".to_string(), |p| format!("process {p}"));
                return Err(StoreError::Locked { path: root.display().to_string(), holder });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        // Who holds it, for the message a second command shows.
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(DirLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_the_lock_goes_with_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DirLock::acquire(dir.path()).unwrap();
        let err = DirLock::acquire(dir.path()).unwrap_err();
        assert!(err.to_string().contains(&format!("process {}", std::process::id())), "{err}");
        drop(lock);
        DirLock::acquire(dir.path()).unwrap();
    }
}
