//! Upload bodies that stream from a local file instead of sitting in memory.
//!
//! A [`FileSlice`] names bytes inside a local file (a blob inside a JEX tar, a snapshot file, an
//! encrypted temp file). It is re-openable: each attempt of a retried request opens the file
//! again, so the pacer can retry a streamed upload like a buffered one. A slice the pacer
//! marked with a [`Pace`] sends its bytes no faster than `--bwlimit`, chunk by chunk, as
//! rclone does: a large attachment does not wait for its whole share and then go at line rate.

use std::future::Future;
use std::io::SeekFrom;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, ReadBuf};

use crate::StorageError;

/// Bytes read per chunk of a streamed body.
pub const CHUNK: usize = 64 * 1024;

/// `--bwlimit`: bytes per second shared by every transfer of a run. Cheap to clone.
#[derive(Clone)]
pub struct Pace {
    limiter: Arc<DefaultDirectRateLimiter>,
    /// The most bytes one wait may ask for (1/10 s of the rate).
    burst: u32,
}

impl Pace {
    /// A pace of `bytes_per_second` (> 0).
    pub fn new(bytes_per_second: u64) -> Pace {
        let per_sec = NonZeroU32::new(bytes_per_second.clamp(1, u32::MAX as u64) as u32)
            .expect("clamped to at least 1");
        // A burst of 1/10 s keeps the rate smooth at the scale a benchmark measures.
        let burst = NonZeroU32::new((per_sec.get() / 10).max(1)).expect("at least 1");
        Pace {
            limiter: Arc::new(RateLimiter::direct(
                Quota::per_second(per_sec).allow_burst(burst),
            )),
            burst: burst.get(),
        }
    }

    /// Wait until `n` bytes may go.
    pub async fn take(&self, n: u64) {
        let mut left = n;
        while left > 0 {
            let chunk = left.min(self.burst as u64) as u32;
            // Cannot fail: chunk <= burst.
            let _ = self
                .limiter
                .until_n_ready(NonZeroU32::new(chunk).expect("non-zero"))
                .await;
            left -= chunk as u64;
        }
    }

    /// The most bytes a streamed body reads at once under this pace.
    fn chunk(&self) -> usize {
        CHUNK.min(self.burst as usize)
    }
}

impl std::fmt::Debug for Pace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pace").field("burst", &self.burst).finish()
    }
}

/// Two slices are the same bytes whatever their pace.
impl PartialEq for Pace {
    fn eq(&self, _: &Pace) -> bool {
        true
    }
}
impl Eq for Pace {}

/// When a streamed body last handed over a chunk. An upload's time is its size over the link's
/// speed (or `--bwlimit`), so a backend times it out by idleness — no chunk taken and no
/// answer for a while — not by its total length, which would fail a large attachment on a
/// slow link on every attempt. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Progress(Arc<AtomicU64>);

/// The moment [`Progress`] counts from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Progress {
    /// Progress made now.
    fn new() -> Progress {
        let p = Progress(Arc::new(AtomicU64::new(0)));
        p.made();
        p
    }

    fn made(&self) {
        let ms = epoch().elapsed().as_millis() as u64;
        self.0.store(ms, Ordering::Relaxed);
    }

    /// How long since the last chunk (or since the body was made).
    fn idle(&self) -> Duration {
        let now = epoch().elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.0.load(Ordering::Relaxed)))
    }
}

/// The error of an upload [`unless_idle`] gave up on: transient (the pacer retries it).
pub fn stalled_upload(what: &str, idle: Duration) -> StorageError {
    StorageError::transient(format!(
        "{what}: the upload made no progress for {} s (--timeout): the server stopped reading or \
         answering",
        idle.as_secs()
    ))
}

/// Await `request` (an upload whose body reports to `progress`) unless it goes `idle` long
/// with no chunk taken and no answer: then `None`.
pub async fn unless_idle<T>(
    request: impl Future<Output = T>,
    progress: &Progress,
    idle: Duration,
) -> Option<T> {
    tokio::pin!(request);
    loop {
        let left = idle.saturating_sub(progress.idle());
        if left.is_zero() {
            return None;
        }
        if let Ok(answer) = tokio::time::timeout(left, &mut request).await {
            return Some(answer);
        }
    }
}

/// `len` bytes at `offset` of the local file `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSlice {
    pub path: PathBuf,
    pub offset: u64,
    pub len: u64,
    /// Set by the pacer under `--bwlimit`: streamed bodies wait for each chunk's bytes.
    pub pace: Option<Pace>,
}

impl FileSlice {
    pub fn new(path: impl Into<PathBuf>, offset: u64, len: u64) -> Self {
        FileSlice {
            path: path.into(),
            offset,
            len,
            pace: None,
        }
    }

    /// This slice, its streamed bodies sent at `pace`.
    pub fn paced(&self, pace: Pace) -> FileSlice {
        FileSlice {
            pace: Some(pace),
            ..self.clone()
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
        FileSlice {
            path: self.path.clone(),
            offset: self.offset + offset,
            len: len.min(self.len - offset),
            pace: self.pace.clone(),
        }
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

    /// A streaming HTTP body over the slice, opened now (sent at the slice's pace, if any).
    pub async fn body(&self) -> std::io::Result<FileBody> {
        Ok(FileBody {
            reader: self.open().await?,
            left: self.len,
            path: self.path.clone(),
            pace: self.pace.clone(),
            allowed: 0,
            waiting: None,
            progress: Progress::new(),
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
/// so HTTP clients send a `Content-Length`. Under a [`Pace`] each frame first waits for its
/// bytes, so the body leaves at the pace however large it is.
pub struct FileBody {
    reader: tokio::io::Take<tokio::fs::File>,
    left: u64,
    path: PathBuf,
    pace: Option<Pace>,
    /// Bytes the pace has granted and no frame has carried yet.
    allowed: usize,
    /// The wait for the next frame's bytes.
    waiting: Option<Pin<Box<dyn Future<Output = ()> + Send + Sync>>>,
    progress: Progress,
}

impl std::fmt::Debug for FileBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileBody")
            .field("path", &self.path)
            .field("left", &self.left)
            .field("pace", &self.pace)
            .finish()
    }
}

impl FileBody {
    /// Reports each chunk the body hands over (see [`unless_idle`]).
    pub fn progress(&self) -> Progress {
        self.progress.clone()
    }

    /// Bytes the next frame may read: at most [`CHUNK`], and under a pace what it granted
    /// (`Pending` while it waits for them).
    fn poll_allowance(&mut self, cx: &mut Context<'_>) -> Poll<usize> {
        let most = (self.left as usize).min(CHUNK);
        let Some(pace) = &self.pace else {
            return Poll::Ready(most);
        };
        if self.allowed == 0 {
            let fut = self.waiting.get_or_insert_with(|| {
                let pace = pace.clone();
                let n = most.min(pace.chunk()) as u64;
                Box::pin(async move { pace.take(n).await })
            });
            match fut.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) => {
                    self.waiting = None;
                    self.allowed = most.min(pace.chunk());
                }
            }
        }
        Poll::Ready(self.allowed.min(most))
    }
}

impl FileBody {
    /// The next chunk of the slice (at its pace), `None` at its end: for writers that are no
    /// HTTP client.
    pub async fn next_chunk(&mut self) -> Option<std::io::Result<Bytes>> {
        let frame =
            std::future::poll_fn(|cx| http_body::Body::poll_frame(Pin::new(&mut *self), cx))
                .await?;
        Some(frame.map(|f| f.into_data().unwrap_or_default()))
    }
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
        let want = match self.poll_allowance(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(n) => n,
        };
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
                self.allowed = self.allowed.saturating_sub(n);
                self.progress.made();
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
        // At a pace of 200 kB/s (bursts of 20 kB) the body comes in chunks of at most 20 kB
        // and cannot be faster than the pace: the first burst is free, the other 80 kB take
        // 0.4 s.
        let paced = FileSlice::new(f.path(), 1000, 100_000).paced(Pace::new(200_000));
        let mut body = paced.sub(0, 100_000).body().await.unwrap();
        let started = std::time::Instant::now();
        let mut got = Vec::new();
        while let Some(chunk) = body.next_chunk().await {
            let chunk = chunk.unwrap();
            assert!(chunk.len() <= 20_000, "chunk of {}", chunk.len());
            got.extend_from_slice(&chunk);
        }
        assert_eq!(&got[..], &data[1000..101_000]);
        let took = started.elapsed();
        assert!(took >= std::time::Duration::from_millis(350), "{took:?}");
        let short = FileSlice::new(f.path(), 190_000, 20_000);
        assert!(short.read_all().await.is_err());
        assert!(short.body().await.unwrap().collect().await.is_err());
    }
}
