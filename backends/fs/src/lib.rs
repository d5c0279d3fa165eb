//! Filesystem sync target (Joplin `sync.target 2`): plain files under a root folder.
//!
//! Writes go to a hidden temporary name in the same folder and are renamed into place, so a
//! client syncing at the same moment never reads half a file. Files get the current time as
//! their modification time, which is what Joplin's delta looks at.

use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;
use backend_core::{
    Capabilities, Entry, ExtraRequests, ListSink, Result, Storage, StorageError, Unpaced,
};
use bytes::Bytes;
use rand::Rng;

#[derive(Debug, Clone)]
pub struct FsStorage {
    root: PathBuf,
}

impl FsStorage {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FsStorage { root: root.into() }
    }

    /// Where `path` lives, and a new temp file beside it to write into and rename into place
    /// (a reader never sees a half-written file).
    fn local_and_temp(&self, path: &str) -> Result<(PathBuf, PathBuf)> {
        let local = self.local(path)?;
        let dir = local.parent().unwrap_or(&self.root);
        let tmp = dir.join(format!("{TEMP_PREFIX}{:016x}", rand::rng().random::<u64>()));
        Ok((local, tmp))
    }

    /// [`Storage::put_file`] of a slice under `--bwlimit`: its body's chunks, as the pace
    /// grants them, into a temp file renamed into place.
    async fn put_file_paced(&self, path: &str, src: &backend_core::FileSlice) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        let (local, tmp) = self.local_and_temp(path)?;
        let mut body = src.body().await.map_err(|e| src.error(path, e))?;
        let copied = async {
            let mut out = tokio::fs::File::create(&tmp)
                .await
                .map_err(|e| io_err(path, e))?;
            while let Some(chunk) = body.next_chunk().await {
                let chunk = chunk.map_err(|e| src.error(path, e))?;
                out.write_all(&chunk).await.map_err(|e| io_err(path, e))?;
            }
            out.flush().await.map_err(|e| io_err(path, e))?;
            drop(out);
            tokio::fs::rename(&tmp, &local)
                .await
                .map_err(|e| io_err(path, e))
        }
        .await;
        if copied.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        copied
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Map a target-relative path to a local one, refusing anything that could escape the root.
    fn local(&self, path: &str) -> Result<PathBuf> {
        let rel = Path::new(path);
        if path.is_empty() {
            return Ok(self.root.clone());
        }
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(StorageError::Rejected(format!(
                "{path}: refusing a path that leaves the target folder"
            )));
        }
        Ok(self.root.join(rel))
    }
}

fn io_err(path: &str, e: std::io::Error) -> StorageError {
    match e.kind() {
        ErrorKind::NotFound => StorageError::not_found(path),
        ErrorKind::PermissionDenied => StorageError::Rejected(format!(
            "{path}: permission denied. Check the folder's owner and permissions, or run as a \
             user that may read and write it"
        )),
        ErrorKind::StorageFull => StorageError::InsufficientStorage(format!("{path}: {e}")),
        _ => StorageError::Rejected(format!("{path}: {e}")),
    }
}

fn entry_of(path: String, meta: &std::fs::Metadata) -> Entry {
    Entry {
        path,
        size: if meta.is_dir() { 0 } else { meta.len() },
        modified: meta.modified().ok(),
        is_dir: meta.is_dir(),
    }
}

/// Our temporary files start with this; listings hide them.
const TEMP_PREFIX: &str = ".jr-tmp-";

/// Entries read and stat'ed per blocking task by [`FsStorage::list`].
const LIST_CHUNK: usize = 512;
type Chunk = Vec<(String, std::fs::Metadata)>;

/// The next entries of `folder` with their metadata, without our temporary files; empty at
/// the end. An error names the entry (empty: the folder).
fn read_chunk(
    folder: &mut std::fs::ReadDir,
) -> std::result::Result<Chunk, (String, std::io::Error)> {
    let mut chunk = Vec::with_capacity(LIST_CHUNK);
    for de in folder {
        let de = de.map_err(|e| (String::new(), e))?;
        let name = de.file_name().to_string_lossy().into_owned();
        if name.starts_with(TEMP_PREFIX) {
            continue;
        }
        match de.metadata() {
            Ok(m) => chunk.push((name, m)),
            // Deleted between read_dir and stat: it is gone, so not listed.
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err((name, e)),
        }
        if chunk.len() == LIST_CHUNK {
            break;
        }
    }
    Ok(chunk)
}

#[async_trait]
impl Storage for FsStorage {
    fn describe(&self) -> String {
        format!("folder {}", self.root.display())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            default_transfers: 4,
            ..Default::default()
        }
    }

    async fn ensure_root(&self) -> Result<()> {
        tokio::fs::create_dir_all(&self.root)
            .await
            .map_err(|e| io_err(&self.root.display().to_string(), e))
    }

    async fn list(&self, dir: &str) -> Result<Vec<Entry>> {
        let mut all = Vec::new();
        self.list_each(dir, &Unpaced, &mut all).await?;
        Ok(all)
    }

    /// Reads and stats a chunk of entries per blocking task (`tokio::fs` sends each entry's
    /// stat to the blocking pool on its own, which costs more than the stat: 0.6 s for 15,000
    /// files) and hands them over chunk by chunk. The paths are made here, not there, so a
    /// large listing is not left in the blocking threads' allocator arenas.
    async fn list_each(
        &self,
        dir: &str,
        _extra: &dyn ExtraRequests,
        sink: &mut dyn ListSink,
    ) -> Result<()> {
        let local = self.local(dir)?;
        let dir = dir.trim_end_matches('/');
        let blocking_failed =
            |e: tokio::task::JoinError| StorageError::transient(format!("{dir}: {e}"));
        let mut folder = match tokio::task::spawn_blocking(move || std::fs::read_dir(local))
            .await
            .map_err(blocking_failed)?
        {
            Ok(rd) => rd,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(dir, e)),
        };
        loop {
            let (back, chunk) = tokio::task::spawn_blocking(move || {
                let chunk = read_chunk(&mut folder);
                (folder, chunk)
            })
            .await
            .map_err(blocking_failed)?;
            folder = back;
            let chunk =
                chunk.map_err(|(name, e)| io_err(if name.is_empty() { dir } else { &name }, e))?;
            if chunk.is_empty() {
                return Ok(());
            }
            for (name, meta) in chunk {
                let path = if dir.is_empty() {
                    name.as_str().to_owned()
                } else {
                    format!("{dir}/{name}")
                };
                sink.add(entry_of(path, &meta));
            }
        }
    }

    async fn get(&self, path: &str) -> Result<Bytes> {
        let local = self.local(path)?;
        match tokio::fs::read(&local).await {
            Ok(v) => Ok(Bytes::from(v)),
            Err(e) if e.kind() == ErrorKind::IsADirectory => Err(StorageError::not_found(path)),
            Err(e) => Err(io_err(path, e)),
        }
    }

    /// A blocking std copy: on Linux it becomes `copy_file_range`, no bytes through memory.
    async fn get_file(&self, path: &str, dest: &std::path::Path) -> Result<u64> {
        let local = self.local(path)?;
        let dest = dest.to_path_buf();
        let p = path.to_string();
        tokio::task::spawn_blocking(move || {
            let mut src = match std::fs::File::open(&local) {
                Ok(f) => f,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    return Err(StorageError::not_found(p))
                }
                Err(e) => return Err(io_err(&p, e)),
            };
            if src.metadata().map_err(|e| io_err(&p, e))?.is_dir() {
                return Err(StorageError::not_found(p));
            }
            let mut out = std::fs::File::create(&dest)
                .map_err(|e| backend_core::local_write_error(&p, &dest, e))?;
            // A full disk here is the local copy's (a snapshot, an export), not the target's.
            std::io::copy(&mut src, &mut out).map_err(|e| match e.kind() {
                ErrorKind::StorageFull | ErrorKind::QuotaExceeded => {
                    backend_core::local_write_error(&p, &dest, e)
                }
                _ => io_err(&p, e),
            })
        })
        .await
        .map_err(|e| StorageError::transient(format!("{path}: {e}")))?
    }

    async fn put(&self, path: &str, data: Bytes) -> Result<()> {
        let (local, tmp) = self.local_and_temp(path)?;
        let write = async {
            tokio::fs::write(&tmp, &data).await?;
            tokio::fs::rename(&tmp, &local).await
        };
        if let Err(e) = write.await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(io_err(path, e));
        }
        Ok(())
    }

    /// A blocking std copy of the slice into a temp file, renamed into place like `put`
    /// (under `--bwlimit`, an async copy at its pace: a target folder may be a network mount).
    async fn put_file(&self, path: &str, src: &backend_core::FileSlice) -> Result<()> {
        if src.pace.is_some() {
            return self.put_file_paced(path, src).await;
        }
        let (local, tmp) = self.local_and_temp(path)?;
        let src = src.clone();
        let p = path.to_string();
        tokio::task::spawn_blocking(move || {
            use std::io::{Read, Seek};
            let mut input = std::fs::File::open(&src.path).map_err(|e| src.error(&p, e))?;
            input
                .seek(std::io::SeekFrom::Start(src.offset))
                .map_err(|e| src.error(&p, e))?;
            let mut input = input.take(src.len);
            let mut write = || {
                let mut out = std::fs::File::create(&tmp)?;
                let n = std::io::copy(&mut input, &mut out)?;
                if n != src.len {
                    return Err(std::io::Error::new(
                        ErrorKind::UnexpectedEof,
                        format!("{}: the local file ended early", src.path.display()),
                    ));
                }
                drop(out);
                std::fs::rename(&tmp, &local)
            };
            write().map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                io_err(&p, e)
            })
        })
        .await
        .map_err(|e| StorageError::transient(format!("{path}: {e}")))?
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let local = self.local(path)?;
        match tokio::fs::remove_file(&local).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(path, e)),
        }
    }

    async fn mkdir(&self, path: &str) -> Result<()> {
        let local = self.local(path)?;
        match tokio::fs::create_dir(&local).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists && local.is_dir() => Ok(()),
            Err(e) => Err(io_err(path, e)),
        }
    }

    async fn stat(&self, path: &str) -> Result<Option<Entry>> {
        let local = self.local(path)?;
        match tokio::fs::metadata(&local).await {
            Ok(m) => Ok(Some(entry_of(path.to_string(), &m))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStorage::new(dir.path().join("target"));
        backend_core::conformance::run_all(&s).await;
    }

    #[tokio::test]
    async fn refuses_paths_that_escape() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStorage::new(dir.path());
        assert!(s.put("../x", Bytes::new()).await.is_err());
        assert!(s.get("/etc/passwd").await.is_err());
        assert!(!dir.path().parent().unwrap().join("x").exists());
    }

    /// A download into a full local disk (a snapshot) is named as such: the target itself
    /// has room.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_full_local_disk_is_not_the_targets() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStorage::new(dir.path());
        s.put("a.md", Bytes::from(vec![b'x'; 64 * 1024]))
            .await
            .unwrap();
        let err = s
            .get_file("a.md", std::path::Path::new("/dev/full"))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot write /dev/full"), "{err}");
        assert!(!err.contains("target is out of space"), "{err}");
    }

    #[tokio::test]
    async fn put_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStorage::new(dir.path());
        s.put("a.md", Bytes::from_static(b"x")).await.unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["a.md"]);
    }
}
