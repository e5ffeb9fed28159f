//! A blob store shaped like R2, on a directory: the native stand-in for `TENANT_DATA`.
//!
//! Writes are atomic and durable: each goes to a temporary file of its own (so concurrent
//! writers of one key never share one), is fsynced, then renamed over the object, and the
//! directory is fsynced so the rename itself survives a crash. The last rename wins, as the
//! last PUT does on R2. Files and directories are private to the service's user (0600/0700):
//! a graph file is tenant data.
//!
//! The calls block on the file system; the server runs them on tokio's blocking pool.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

pub struct BlobStore {
    root: PathBuf,
    /// Numbers the temporary files of this process; with the process id it makes their names
    /// unique.
    next_tmp: AtomicU64,
}

/// Creates `dir` and its missing parents, readable by the owner only.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Opens a new file for writing, readable by the owner only; fails if it exists.
fn create_private_file(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Removes the temporary file unless it was renamed into place.
struct TempFile {
    path: Option<PathBuf>,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl BlobStore {
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        create_private_dir(root)?;
        Ok(Self {
            root: root.to_owned(),
            next_tmp: AtomicU64::new(0),
        })
    }

    /// Object keys are `/`-separated like R2's; each segment is percent-encoded into a file
    /// name so no key (`tenant:acme`, `..`) can escape the root. Encoded names hold no `.`
    /// at all (it is encoded too), so the temporary names (`.tmp-...`) cannot collide with an
    /// object.
    fn path(&self, key: &str) -> PathBuf {
        let mut p = self.root.clone();
        for seg in key.split('/') {
            p.push(utf8_percent_encode(seg, NON_ALPHANUMERIC).to_string());
        }
        p
    }

    /// Writes atomically: a reader sees the old object or the new one, never half of one, and
    /// once this returns the new one survives a crash.
    pub fn put(&self, key: &str, bytes: &[u8]) -> std::io::Result<()> {
        let path = self.path(key);
        let dir = path.parent().unwrap_or(&self.root).to_owned();
        create_private_dir(&dir)?;
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        let mut tmp = TempFile {
            path: Some(dir.join(format!(".tmp-{}-{n}", std::process::id()))),
        };
        let tmp_path = tmp.path.clone().expect("set above");
        let mut file = create_private_file(&tmp_path)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp_path, &path)?;
        tmp.path = None;
        // The rename is durable once the directory entry is.
        File::open(&dir)?.sync_all()
    }

    pub fn get(&self, key: &str) -> std::io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.path(key)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Many writers of one key at once: every write succeeds, the object is one of theirs
    /// whole, and no temporary file is left behind.
    #[test]
    fn concurrent_writes_of_one_key_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(BlobStore::open(dir.path()).unwrap());
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let writers: Vec<_> = (0..8u8)
            .map(|i| {
                let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    let body = vec![b'a' + i; 64 * 1024];
                    barrier.wait();
                    (0..20)
                        .map(|_| store.put("tenants/t1/graph.csv", &body))
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap().expect("a concurrent write failed");
        }
        let got = store.get("tenants/t1/graph.csv").unwrap().unwrap();
        assert_eq!(got.len(), 64 * 1024);
        assert!(got.iter().all(|b| *b == got[0]), "a mix of two writes");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("tenants").join("t1"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    }

    #[cfg(unix)]
    #[test]
    fn blobs_are_private_to_the_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(&dir.path().join("blobs")).unwrap();
        store.put("tenants/t1/graph.csv", b"x").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let root = dir.path().join("blobs");
        assert_eq!(
            mode(&root.join("tenants").join("t1").join("graph%2Ecsv")),
            0o600
        );
        assert_eq!(mode(&root.join("tenants")), 0o700);
        assert_eq!(mode(&root), 0o700);
    }
}
