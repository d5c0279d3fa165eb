//! Upload bodies that stream from a local file instead of sitting in memory.
//!
//! A [`FileSlice`] names bytes inside a local file (a blob inside a JEX tar, a snapshot file, an
//! encrypted temp file). It is re-openable: each attempt of a retried request opens the file
//! again, so the pacer can retry a streamed upload like a buffered one.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, ReadBuf};

use crate::StorageError;

/// Bytes read per chunk of a streamed body.
pub const CHUNK: usize = 64 * 1024;

/// `len` bytes at `offset` of the local file `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSlice {
    pub path: PathBuf,
    pub offset: u64,
    pub len: u64,
}

impl FileSlice {
    pub fn new(path: impl Into<PathBuf>, offset: u64, len: u64) -> Self {
        FileSlice {
            path: path.into(),
            offset,
            len,
        }
    }

    /// A whole file, its length taken now.
    pub fn whole(path: &Path) -> std::io::Result<Self> {
        let len = std::fs::metadata(path)?.len();
        Ok(FileSlice::new(path, 0, len))
    }

    /// `len` bytes at `offset` inside this slice (for multipart parts).
    pub fn sub(&self, offset: u64, len: u64) -> FileSlice {
        let offset = offset.min(self.len);
        FileSlice::new(
            self.path.clone(),
            self.offset + offset,
            len.min(self.len - offset),
        )
    }

    /// The file opened and positioned at the slice, limited to its length.
    pub async fn open(&self) -> std::io::Result<tokio::io::Take<tokio::fs::File>> {
        let mut f = tokio::fs::File::open(&self.path).await?;
        f.seek(SeekFrom::Start(self.offset)).await?;
        Ok(f.take(self.len))
    }

    /// The whole slice in memory (for backends that cannot stream).
    pub async fn read_all(&self) -> std::io::Result<Bytes> {
        let mut r = self.open().await?;
        let mut buf = Vec::with_capacity(self.len as usize);
        r.read_to_end(&mut buf).await?;
        if buf.len() as u64 != self.len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "{}: expected {} bytes at offset {}, found {}",
                    self.path.display(),
                    self.len,
                    self.offset,
                    buf.len()
                ),
            ));
        }
        Ok(Bytes::from(buf))
    }

    /// A streaming HTTP body over the slice, opened now.
    pub async fn body(&self) -> std::io::Result<FileBody> {
        Ok(FileBody {
            reader: self.open().await?,
            left: self.len,
            path: self.path.clone(),
        })
    }

    /// A local read failure as a storage error: not retryable (the file will not get better).
    pub fn error(&self, target_path: &str, e: std::io::Error) -> StorageError {
        StorageError::Rejected(format!(
            "{target_path}: cannot read the local file {}: {e}",
            self.path.display()
        ))
    }
}

/// An `http_body::Body` reading a [`FileSlice`] in [`CHUNK`]-sized frames, with an exact size
/// so HTTP clients send a `Content-Length`.
#[derive(Debug)]
pub struct FileBody {
    reader: tokio::io::Take<tokio::fs::File>,
    left: u64,
    path: PathBuf,
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let want = (self.left as usize).min(CHUNK);
        let mut buf = BytesMut::zeroed(want);
        let mut rb = ReadBuf::new(&mut buf);
        match Pin::new(&mut self.reader).poll_read(cx, &mut rb) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                if n == 0 {
                    let e = std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("{}: ended {} bytes early", self.path.display(), self.left),
                    );
                    return Poll::Ready(Some(Err(e)));
                }
                buf.truncate(n);
                self.left -= n as u64;
                Poll::Ready(Some(Ok(http_body::Frame::data(buf.freeze()))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[tokio::test]
    async fn slices_read_and_stream_the_same_bytes() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        f.write_all(&data).unwrap();
        let s = FileSlice::new(f.path(), 1000, 150_000);
        assert_eq!(&s.read_all().await.unwrap()[..], &data[1000..151_000]);
        let part = s.sub(100_000, 80_000);
        assert_eq!(part.len, 50_000);
        assert_eq!(&part.read_all().await.unwrap()[..], &data[101_000..151_000]);
        use http_body_util::BodyExt;
        let body = s.body().await.unwrap();
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(150_000));
        let got = body.collect().await.unwrap().to_bytes();
        assert_eq!(&got[..], &data[1000..151_000]);
        let short = FileSlice::new(f.path(), 190_000, 20_000);
        assert!(short.read_all().await.is_err());
        assert!(short.body().await.unwrap().collect().await.is_err());
    }
}
