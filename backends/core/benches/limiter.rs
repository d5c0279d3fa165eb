//! Limiter accuracy: does `--tpslimit` / `--bwlimit` deliver the asked rate over ≥ 30 s, and
//! does one large file stay at the `--bwlimit` second by second (its peak 1-s window), not
//! just on average? Prints a table; run with `cargo bench -p backend-core --bench limiter`
//! (about 80 s). Not a test: rates depend on the machine, so they are measured and shown,
//! never asserted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use backend_core::pacer::{Paced, PacerOptions};
use backend_core::{Entry, Result, Storage, StorageError};
use bytes::Bytes;
use futures::{stream, StreamExt};

/// A target that accepts everything instantly, so only the pacer sets the pace; it notes when
/// each chunk of a streamed file arrived.
#[derive(Debug, Default)]
struct Sink {
    arrivals: std::sync::Mutex<Vec<(Instant, usize)>>,
}

#[async_trait]
impl Storage for Sink {
    fn describe(&self) -> String {
        "sink".into()
    }
    async fn ensure_root(&self) -> Result<()> {
        Ok(())
    }
    async fn list(&self, _: &str) -> Result<Vec<Entry>> {
        Ok(vec![])
    }
    async fn get(&self, p: &str) -> Result<Bytes> {
        Err(StorageError::not_found(p))
    }
    async fn put(&self, _: &str, _: Bytes) -> Result<()> {
        Ok(())
    }
    async fn put_file(&self, p: &str, src: &backend_core::FileSlice) -> Result<()> {
        let mut body = src.body().await.map_err(|e| src.error(p, e))?;
        while let Some(chunk) = body.next_chunk().await {
            let n = chunk.map_err(|e| src.error(p, e))?.len();
            self.arrivals.lock().unwrap().push((Instant::now(), n));
        }
        Ok(())
    }
    async fn delete(&self, _: &str) -> Result<()> {
        Ok(())
    }
    async fn mkdir(&self, _: &str) -> Result<()> {
        Ok(())
    }
    async fn stat(&self, _: &str) -> Result<Option<Entry>> {
        Ok(None)
    }
}

/// Run puts of `size` bytes for `secs` through a pacer; returns (requests/s, bytes/s).
async fn measure(opts: PacerOptions, size: usize, secs: u64) -> (f64, f64) {
    let paced = Arc::new(Paced::new(Arc::new(Sink::default()), opts));
    let data = Bytes::from(vec![7u8; size]);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut n = 0u64;
    let mut i = 0u64;
    while Instant::now() < deadline {
        let batch: Vec<u64> = (i..i + 16).collect();
        i += 16;
        let p = paced.clone();
        let d = data.clone();
        n += stream::iter(batch)
            .map(|k| {
                let p = p.clone();
                let d = d.clone();
                async move { p.put(&format!("{k}.md"), d).await.is_ok() as u64 }
            })
            .buffer_unordered(8)
            .fold(0, |a, b| async move { a + b })
            .await;
    }
    let t = start.elapsed().as_secs_f64();
    (n as f64 / t, n as f64 * size as f64 / t)
}

/// Upload one file of `size` bytes through a pacer; returns (average bytes/s, the most bytes
/// that arrived within any 1-s window).
async fn measure_one_file(opts: PacerOptions, size: u64) -> (f64, f64) {
    let sink = Arc::new(Sink::default());
    let paced = Paced::new(sink.clone(), opts);
    let dir = std::env::temp_dir().join(format!("jr-limiter-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let local = dir.join("big.bin");
    std::fs::write(&local, vec![7u8; size as usize]).expect("write the file");
    let start = Instant::now();
    paced
        .put_file(
            ".resource/big",
            &backend_core::FileSlice::new(&local, 0, size),
        )
        .await
        .expect("upload");
    let took = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    let arrivals = sink.arrivals.lock().unwrap().clone();
    let mut peak = 0usize;
    let (mut from, mut in_window) = (0usize, 0usize);
    for (t, n) in &arrivals {
        in_window += n;
        while *t - arrivals[from].0 > Duration::from_secs(1) {
            in_window -= arrivals[from].1;
            from += 1;
        }
        peak = peak.max(in_window);
    }
    (size as f64 / took, peak as f64)
}

fn main() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let secs = std::env::var("LIMITER_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(32);
    println!("| limit | asked | achieved | error |");
    println!("|---|---|---|---|");
    let (rps, _) = rt.block_on(measure(
        PacerOptions {
            tps_limit: Some(50.0),
            transfers: 8,
            ..Default::default()
        },
        100,
        secs,
    ));
    println!(
        "| --tpslimit 50 | 50.0 req/s | {rps:.2} req/s | {:+.2} % |",
        (rps / 50.0 - 1.0) * 100.0
    );
    let asked = 2.0 * 1024.0 * 1024.0;
    let (_, bps) = rt.block_on(measure(
        PacerOptions {
            bw_limit: Some(asked as u64),
            transfers: 8,
            ..Default::default()
        },
        64 * 1024,
        secs,
    ));
    println!(
        "| --bwlimit 2M | {:.0} B/s | {bps:.0} B/s | {:+.2} % |",
        asked,
        (bps / asked - 1.0) * 100.0
    );
    let size = 16 * 1024 * 1024;
    let (avg, peak) = rt.block_on(measure_one_file(
        PacerOptions {
            bw_limit: Some(asked as u64),
            ..Default::default()
        },
        size,
    ));
    println!(
        "| --bwlimit 2M, one 16 MiB file | {asked:.0} B/s | {avg:.0} B/s average, {peak:.0} B in the busiest second | {:+.2} % (peak second {:+.2} %) |",
        (avg / asked - 1.0) * 100.0,
        (peak / asked - 1.0) * 100.0
    );
}
