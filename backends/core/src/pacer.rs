//! The pacer: one place that owns every rate and retry decision (rclone's `lib/pacer`).
//!
//! [`Paced`] wraps any [`Storage`] and implements `Storage` itself, so the restore engine never
//! knows whether it talks to a throttled, retrying target or a bare one.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rand::Rng;
use tokio::sync::Semaphore;

use crate::{Capabilities, Entry, ExtraRequests, Result, Storage, StorageError};

/// Limits and retry policy; the CLI maps `--tpslimit`, `--bwlimit`, `--transfers`, `--retries`.
#[derive(Debug, Clone)]
pub struct PacerOptions {
    /// Requests per second across all transfers; `None` = unlimited.
    pub tps_limit: Option<f64>,
    /// Bytes per second uploaded or downloaded; `None` = unlimited.
    pub bw_limit: Option<u64>,
    /// Requests in flight at once.
    pub transfers: usize,
    /// Retries per request after the first attempt.
    pub retries: u32,
    /// First backoff; doubles each retry, with jitter, up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Longest `Retry-After` we honour; longer asks are capped so a run never hangs for hours.
    pub max_retry_after: Duration,
}

impl Default for PacerOptions {
    fn default() -> Self {
        PacerOptions {
            tps_limit: None,
            bw_limit: None,
            transfers: 8,
            retries: 10,
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(300),
        }
    }
}

/// Counters for the final report.
#[derive(Debug, Default)]
pub struct PacerStats {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub rate_limited: AtomicU64,
    pub bytes: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacerCounts {
    pub requests: u64,
    pub retries: u64,
    pub rate_limited: u64,
    pub bytes: u64,
}

pub struct Paced {
    inner: Arc<dyn Storage>,
    opts: PacerOptions,
    requests: Option<DefaultDirectRateLimiter>,
    bandwidth: Option<crate::Pace>,
    slots: Semaphore,
    stats: PacerStats,
    /// When a long wait was last announced: parallel transfers waiting alike say it once.
    last_told: std::sync::Mutex<Option<std::time::Instant>>,
    /// Set once failures say the target as a whole takes no more: a full disk at once;
    /// refused credentials or no usable answer through every retry on
    /// [`FAILURES_TO_STOP`] requests in a row with no success between (one file the server
    /// refuses alone, or one upload a proxy times out, stops nothing). Later requests then fail
    /// at once instead of hitting it again: a server that locks out an address after failed
    /// logins, hundreds of uploads into a full disk, minutes against a server that is down.
    stopped: std::sync::Mutex<Option<Stop>>,
    /// Requests in a row that failed in a way that may be the whole target's.
    failing_in_a_row: AtomicU64,
}

/// Requests failing in a row with refused credentials or no usable answer that stop the pacer.
const FAILURES_TO_STOP: u64 = 3;

/// Why the pacer stopped sending, and the failure that said so.
#[derive(Debug, Clone)]
enum Stop {
    Refused(String),
    Full(String),
    Down(String),
}

impl Stop {
    /// The stop a final failure `e` may mean; `at_once` when it needs no second failure.
    fn of(e: &StorageError) -> Option<(Stop, bool)> {
        match e {
            StorageError::InsufficientStorage(_) => Some((Stop::Full(e.to_string()), true)),
            StorageError::Auth(_) => Some((Stop::Refused(e.to_string()), false)),
            _ if e.is_retryable() => Some((Stop::Down(e.to_string()), false)),
            _ => None,
        }
    }

    /// The error a request for `path` gets once stopped (of the same class, naming the last).
    fn error(&self, path: &str) -> StorageError {
        match self {
            Stop::Refused(last) => StorageError::Auth(format!("{path}: not sent: {last}")),
            Stop::Full(last) => {
                StorageError::InsufficientStorage(format!("{path}: not sent: {last}"))
            }
            Stop::Down(last) => StorageError::Rejected(format!(
                "{path}: not sent, the target gave no usable answer through every retry: {last}"
            )),
        }
    }
}

/// Lock files go even once the pacer stopped: a run that stops must release its lock.
fn is_lock(path: &str) -> bool {
    path.starts_with("locks/")
}

impl std::fmt::Debug for Paced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Paced")
            .field("inner", &self.inner)
            .field("opts", &self.opts)
            .finish()
    }
}

impl Paced {
    pub fn new(inner: Arc<dyn Storage>, opts: PacerOptions) -> Self {
        let requests = opts.tps_limit.filter(|t| *t > 0.0).map(|tps| {
            // Burst of one: requests are spread evenly instead of arriving in clumps.
            let period = Duration::from_secs_f64(1.0 / tps);
            RateLimiter::direct(Quota::with_period(period).expect("positive period"))
        });
        let bandwidth = opts.bw_limit.filter(|b| *b > 0).map(crate::Pace::new);
        let slots = Semaphore::new(opts.transfers.max(1));
        Paced {
            inner,
            opts,
            requests,
            bandwidth,
            slots,
            stats: PacerStats::default(),
            last_told: std::sync::Mutex::new(None),
            stopped: std::sync::Mutex::new(None),
            failing_in_a_row: AtomicU64::new(0),
        }
    }

    /// A request for `path` once the pacer stopped: its error (lock files still go).
    fn refuse_if_stopped(&self, path: &str) -> Result<()> {
        if is_lock(path) {
            return Ok(());
        }
        match &*self.stopped.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(stop) => Err(stop.error(path)),
            None => Ok(()),
        }
    }

    /// A batch once the pacer stopped: every file refused, unless it holds a lock file (then
    /// it goes as it is; a batch never mixes them in practice).
    fn refused_batch<'p>(
        &self,
        mut paths: impl Iterator<Item = &'p str> + Clone,
    ) -> Option<Vec<(String, StorageError)>> {
        if paths.clone().any(is_lock) {
            return None;
        }
        let first = paths.next()?;
        self.refuse_if_stopped(first).err()?;
        Some(
            std::iter::once(first)
                .chain(paths)
                .filter_map(|p| self.refuse_if_stopped(p).err().map(|e| (p.to_string(), e)))
                .collect(),
        )
    }

    /// A request's last outcome (no retry left or needed), counted for the stop.
    fn settled<T>(&self, done: Result<T>) -> Result<T> {
        match &done {
            Ok(_) => self.answered(),
            Err(e) => self.failed_for_good(e),
        }
        done
    }

    /// A request that went through: failures before it were not the whole target's.
    fn answered(&self) {
        self.failing_in_a_row.store(0, Ordering::Relaxed);
    }

    /// A request that finally failed with `e`: stop sending if that says the whole target
    /// takes no more (said once).
    fn failed_for_good(&self, e: &StorageError) {
        let Some((stop, at_once)) = Stop::of(e) else {
            self.answered();
            return;
        };
        let in_a_row = self.failing_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
        if !at_once && in_a_row < FAILURES_TO_STOP {
            return;
        }
        let mut stopped = self.stopped.lock().unwrap_or_else(|p| p.into_inner());
        if stopped.is_none() {
            tracing::warn!(
                "{}: not sending more requests: {e}. Run the same command again once that is \
                 fixed: what was finished is skipped.",
                self.inner.describe()
            );
            *stopped = Some(stop);
        }
    }

    pub fn counts(&self) -> PacerCounts {
        PacerCounts {
            requests: self.stats.requests.load(Ordering::Relaxed),
            retries: self.stats.retries.load(Ordering::Relaxed),
            rate_limited: self.stats.rate_limited.load(Ordering::Relaxed),
            bytes: self.stats.bytes.load(Ordering::Relaxed),
        }
    }

    pub fn options(&self) -> &PacerOptions {
        &self.opts
    }

    async fn take_bytes(&self, n: u64) {
        self.stats.bytes.fetch_add(n, Ordering::Relaxed);
        if let Some(pace) = &self.bandwidth {
            pace.take(n).await;
        }
    }

    fn backoff(&self, attempt: u32, err: &StorageError) -> Duration {
        match err.retry_after() {
            // A Retry-After shorter than our least backoff (0, or a date already past: a server
            // whose clock is behind) would spend every retry at once: our own backoff instead.
            Some(asked) if asked >= self.opts.min_backoff => asked.min(self.opts.max_retry_after),
            _ => self.own_backoff(attempt),
        }
    }

    fn own_backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .opts
            .min_backoff
            .saturating_mul(2u32.saturating_pow(attempt.min(16)));
        let capped = exp.min(self.opts.max_backoff);
        // Full jitter in [50 %, 100 %] so parallel transfers do not retry in lockstep.
        let factor = rand::rng().random_range(0.5..=1.0);
        capped.mul_f64(factor)
    }

    /// Sleep `wait` before retrying after `err`; a wait of seconds is said on stderr (once per
    /// 30 s), so a run the server slows down (Retry-After: 60) does not look hung.
    async fn wait_to_retry(&self, wait: Duration, err: &StorageError) {
        if wait >= Duration::from_secs(5) {
            self.say_now_and_then(|| {
                let why = match err.retry_after() {
                    Some(asked) if asked > self.opts.max_retry_after => format!(
                        "the server asked for {} s (Retry-After), capped at {} s",
                        asked.as_secs(),
                        self.opts.max_retry_after.as_secs()
                    ),
                    Some(_) => "as the server asked (Retry-After)".to_string(),
                    None => "backing off".to_string(),
                };
                format!("waiting {} s before retrying, {why}: {err}", wait.as_secs())
            });
        }
        tokio::time::sleep(wait).await;
    }

    /// Say on stderr (a warning, prefixed with the target) what a long wait is, at most once
    /// per 30 s: parallel transfers waiting alike say it once.
    fn say_now_and_then(&self, what: impl FnOnce() -> String) {
        let mut last = self.last_told.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(30)) {
            *last = Some(std::time::Instant::now());
            tracing::warn!("{}: {}", self.inner.describe(), what());
        }
    }

    /// Wait for a slot, the request rate and the upload's bytes; count the request. The slot
    /// is held until the returned permit drops.
    async fn admit_request(&self, upload_bytes: u64) -> tokio::sync::SemaphorePermit<'_> {
        let slot = self.slots.acquire().await.expect("semaphore never closed");
        if let Some(l) = &self.requests {
            l.until_ready().await;
        }
        if upload_bytes > 0 {
            self.take_bytes(upload_bytes).await;
        }
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        slot
    }

    /// Await one request; one the server leaves unanswered for a minute and more is said on
    /// stderr (once per 30 s across transfers), so a stalled server does not look like a hung
    /// run until the client's own timeout.
    async fn said_while_waiting<T>(&self, request: impl Future<Output = T>) -> T {
        const STALL_NOTE: Duration = Duration::from_secs(60);
        tokio::pin!(request);
        let mut waited = Duration::ZERO;
        loop {
            match tokio::time::timeout(STALL_NOTE, &mut request).await {
                Ok(answer) => return answer,
                Err(_) => {
                    waited += STALL_NOTE;
                    self.say_now_and_then(|| {
                        format!(
                            "a request has run for {} s without finishing (a large transfer on \
                             a slow link, or a server that stopped answering); Ctrl-C stops the \
                             run, and running it again resumes",
                            waited.as_secs()
                        )
                    });
                }
            }
        }
    }

    /// Whether a request that failed with `e` goes again; if so, after waiting its backoff.
    async fn retry_after_failure(&self, e: &StorageError, attempt: &mut u32) -> bool {
        if !e.is_retryable() || *attempt >= self.opts.retries {
            return false;
        }
        if matches!(e, StorageError::RateLimited { .. }) {
            self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
        }
        self.stats.retries.fetch_add(1, Ordering::Relaxed);
        let wait = self.backoff(*attempt, e);
        tracing::debug!("retry {} after {:?}: {e}", *attempt + 1, wait);
        self.wait_to_retry(wait, e).await;
        *attempt += 1;
        true
    }

    /// Run one request for `path` under the limits, retrying retryable failures; none once
    /// the pacer stopped (checked again before each attempt: a request queued for its slot or
    /// waiting out a backoff when the stop came is not sent).
    async fn run<T, F, Fut>(&self, path: &str, upload_bytes: u64, op: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut attempt = 0u32;
        loop {
            let outcome = {
                let _slot = self.admit_request(upload_bytes).await;
                self.refuse_if_stopped(path)?;
                self.said_while_waiting(op()).await
            };
            match outcome {
                Err(e) if self.retry_after_failure(&e, &mut attempt).await => {}
                done => return self.settled(done),
            }
        }
    }
}

/// The extra requests of a listing: the request-rate limit and the count, and no more at once
/// than `--transfers` (the call's own slot is held while they run, so they take none).
#[async_trait]
impl ExtraRequests for Paced {
    async fn admit(&self) {
        if let Some(l) = &self.requests {
            l.until_ready().await;
        }
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
    }
    fn at_once(&self) -> usize {
        self.opts.transfers.max(1)
    }
}

#[async_trait]
impl Storage for Paced {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn ensure_root(&self) -> Result<()> {
        self.run("", 0, || self.inner.ensure_root()).await
    }
    async fn list(&self, dir: &str) -> Result<Vec<Entry>> {
        crate::list_through_each(self, dir).await
    }
    /// One request for the pacer (its extra requests are paced through `self`); a retry starts
    /// the sink over.
    async fn list_each(
        &self,
        dir: &str,
        _extra: &dyn ExtraRequests,
        sink: &mut dyn crate::ListSink,
    ) -> Result<()> {
        let mut attempt = 0u32;
        loop {
            let outcome = {
                let _slot = self.admit_request(0).await;
                self.refuse_if_stopped(dir)?;
                self.inner.list_each(dir, self, sink).await
            };
            match outcome {
                Err(e) if self.retry_after_failure(&e, &mut attempt).await => sink.restart(),
                done => return self.settled(done),
            }
        }
    }
    async fn get(&self, path: &str) -> Result<Bytes> {
        let data = self.run(path, 0, || self.inner.get(path)).await?;
        self.take_bytes(data.len() as u64).await;
        Ok(data)
    }
    async fn get_file(&self, path: &str, dest: &std::path::Path) -> Result<u64> {
        let n = self
            .run(path, 0, || self.inner.get_file(path, dest))
            .await?;
        self.take_bytes(n).await;
        Ok(n)
    }
    async fn put(&self, path: &str, data: Bytes) -> Result<()> {
        let n = data.len() as u64;
        self.run(path, n, || self.inner.put(path, data.clone()))
            .await
    }
    /// Under `--bwlimit` the slice's body waits for its bytes chunk by chunk as it is sent
    /// (counted here, not waited for before the request), so a large attachment leaves at
    /// the pace instead of waiting for its whole share and then going at line rate.
    async fn put_file(&self, path: &str, src: &crate::FileSlice) -> Result<()> {
        let Some(pace) = &self.bandwidth else {
            return self
                .run(path, src.len, || self.inner.put_file(path, src))
                .await;
        };
        let paced = src.paced(pace.clone());
        self.run(path, 0, || {
            self.stats.bytes.fetch_add(src.len, Ordering::Relaxed);
            self.inner.put_file(path, &paced)
        })
        .await
    }
    /// The body is made once the request may go (a request waiting its turn behind
    /// `--tpslimit` would otherwise carry the moment it was queued), and again for a retry.
    async fn put_made(&self, path: &str, size: u64, make: &crate::MakeBody<'_>) -> Result<()> {
        self.run(path, size, || async move {
            self.inner.put(path, make(path)?).await
        })
        .await
    }
    async fn delete(&self, path: &str) -> Result<()> {
        self.run(path, 0, || self.inner.delete(path)).await
    }
    async fn mkdir(&self, path: &str) -> Result<()> {
        self.run(path, 0, || self.inner.mkdir(path)).await
    }
    async fn stat(&self, path: &str) -> Result<Option<Entry>> {
        self.run(path, 0, || self.inner.stat(path)).await
    }
    async fn acquire_server_lock(&self, client_id: &str) -> Result<bool> {
        self.run("locks/", 0, || self.inner.acquire_server_lock(client_id))
            .await
    }
    async fn release_server_lock(&self, client_id: &str) -> Result<()> {
        self.run("locks/", 0, || self.inner.release_server_lock(client_id))
            .await
    }
    async fn server_locks(&self) -> Result<Option<Vec<crate::ServerLock>>> {
        self.run("locks/", 0, || self.inner.server_locks()).await
    }
    async fn remove_server_lock(&self, key: &str) -> Result<()> {
        self.run("locks/", 0, || self.inner.remove_server_lock(key))
            .await
    }
    async fn delete_many(&self, paths: &[String]) -> Vec<(String, StorageError)> {
        if !self.inner.capabilities().bulk_delete {
            // One request per file: each one goes through the limits and retries on its own
            // (one paced call for all of them would let thousands past --tpslimit).
            return crate::delete_each(self, paths, self.opts.transfers).await;
        }
        if let Some(refused) = self.refused_batch(paths.iter().map(String::as_str)) {
            return refused;
        }
        let mut todo: Vec<String> = paths.to_vec();
        let mut attempt = 0u32;
        loop {
            let failed = {
                let _slot = self.admit_request(0).await;
                self.inner.delete_many(&todo).await
            };
            let (retry, fatal): (Vec<_>, Vec<_>) =
                failed.into_iter().partition(|(_, e)| e.is_retryable());
            if retry.is_empty() || attempt >= self.opts.retries {
                match fatal.first().or(retry.first()) {
                    Some((_, e)) => self.failed_for_good(e),
                    None => self.answered(),
                }
                return fatal.into_iter().chain(retry).collect();
            }
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            self.wait_to_retry(self.backoff(attempt, &retry[0].1), &retry[0].1)
                .await;
            attempt += 1;
            todo = retry.into_iter().map(|(p, _)| p).collect();
            if !fatal.is_empty() {
                // Report the permanent failures even if the retries succeed.
                let rest = Box::pin(self.delete_many(&todo)).await;
                return fatal.into_iter().chain(rest).collect();
            }
        }
    }
    async fn put_many_made(
        &self,
        files: Vec<(String, u64)>,
        make: &crate::MakeBody<'_>,
    ) -> Vec<(String, StorageError)> {
        if let Some(refused) = self.refused_batch(files.iter().map(|(p, _)| p.as_str())) {
            return refused;
        }
        let mut todo = files;
        let mut attempt = 0u32;
        let mut fatal_all = Vec::new();
        loop {
            let n: u64 = todo.iter().map(|(_, size)| *size).sum();
            let failed = {
                let _slot = self.admit_request(n).await;
                let (made, mut failed) = crate::make_bodies(&todo, make);
                failed.extend(self.inner.put_many(made).await);
                failed
            };
            let (retry, fatal): (Vec<_>, Vec<_>) =
                failed.into_iter().partition(|(_, e)| e.is_retryable());
            fatal_all.extend(fatal);
            if retry.is_empty() || attempt >= self.opts.retries {
                fatal_all.extend(retry);
                match fatal_all.first() {
                    Some((_, e)) => self.failed_for_good(e),
                    None => self.answered(),
                }
                return fatal_all;
            }
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            self.wait_to_retry(self.backoff(attempt, &retry[0].1), &retry[0].1)
                .await;
            attempt += 1;
            let again: std::collections::HashSet<String> =
                retry.into_iter().map(|(p, _)| p).collect();
            todo.retain(|(p, _)| again.contains(p));
        }
    }
    async fn put_many(&self, files: Vec<(String, Bytes)>) -> Vec<(String, StorageError)> {
        let sizes: Vec<(String, u64)> = files
            .iter()
            .map(|(p, d)| (p.clone(), d.len() as u64))
            .collect();
        let bodies: std::collections::HashMap<String, Bytes> = files.into_iter().collect();
        let made = |p: &str| {
            bodies
                .get(p)
                .cloned()
                .ok_or_else(|| StorageError::Rejected(format!("{p}: not in the batch")))
        };
        self.put_many_made(sizes, &made).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A storage that fails the first `fail_first` calls of `put` with `make_err`, and records
    /// its deletes (how many, how many at once), failing the one of `flaky_delete` once (503).
    #[derive(Debug)]
    struct Mock {
        fail_first: u32,
        calls: Mutex<u32>,
        make_err: fn() -> StorageError,
        deletes: AtomicU64,
        in_flight: AtomicU64,
        most_at_once: AtomicU64,
        flaky_delete: Mutex<Option<String>>,
        /// What `list_each` hands over; the first listing fails (503) after `list_fails_after`.
        listing: Vec<&'static str>,
        list_fails_after: Mutex<Option<usize>>,
        /// The sizes of the body chunks `put_file` read, in order.
        file_chunks: Mutex<Vec<usize>>,
    }

    impl Mock {
        fn failing_puts(fail_first: u32, make_err: fn() -> StorageError) -> Arc<Mock> {
            Arc::new(Mock {
                fail_first,
                calls: Mutex::new(0),
                make_err,
                deletes: AtomicU64::new(0),
                in_flight: AtomicU64::new(0),
                most_at_once: AtomicU64::new(0),
                flaky_delete: Mutex::new(None),
                listing: Vec::new(),
                list_fails_after: Mutex::new(None),
                file_chunks: Mutex::new(Vec::new()),
            })
        }

        fn flaky_listing(listing: Vec<&'static str>, fails_after: usize) -> Arc<Mock> {
            let mut m = Mock::failing_puts(0, || StorageError::transient("unused"));
            let m_ref = Arc::get_mut(&mut m).expect("new");
            m_ref.listing = listing;
            m_ref.list_fails_after = Mutex::new(Some(fails_after));
            m
        }

        fn failing_delete(path: Option<String>) -> Arc<Mock> {
            let m = Mock::failing_puts(0, || StorageError::transient("unused"));
            *m.flaky_delete.lock().unwrap() = path;
            m
        }
    }

    #[async_trait]
    impl Storage for Mock {
        fn describe(&self) -> String {
            "mock".into()
        }
        async fn ensure_root(&self) -> Result<()> {
            Ok(())
        }
        async fn list(&self, _: &str) -> Result<Vec<Entry>> {
            Ok(vec![])
        }
        async fn list_each(
            &self,
            _: &str,
            _: &dyn ExtraRequests,
            sink: &mut dyn crate::ListSink,
        ) -> Result<()> {
            let fail_after = self.list_fails_after.lock().unwrap().take();
            for (i, name) in self.listing.iter().enumerate() {
                if fail_after == Some(i) {
                    return Err(StorageError::transient("503 in the middle of a listing"));
                }
                sink.add(Entry {
                    path: name.to_string(),
                    size: 1,
                    modified: None,
                    is_dir: false,
                });
            }
            Ok(())
        }
        async fn get(&self, p: &str) -> Result<Bytes> {
            Err(StorageError::not_found(p))
        }
        async fn put(&self, _: &str, _: Bytes) -> Result<()> {
            let mut c = self.calls.lock().unwrap();
            *c += 1;
            if *c <= self.fail_first {
                Err((self.make_err)())
            } else {
                Ok(())
            }
        }
        async fn put_file(&self, p: &str, src: &crate::FileSlice) -> Result<()> {
            let mut body = src.body().await.map_err(|e| src.error(p, e))?;
            while let Some(chunk) = body.next_chunk().await {
                let n = chunk.map_err(|e| src.error(p, e))?.len();
                self.file_chunks.lock().unwrap().push(n);
            }
            Ok(())
        }
        async fn delete(&self, p: &str) -> Result<()> {
            self.deletes.fetch_add(1, Ordering::SeqCst);
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_at_once.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            let mut flaky = self.flaky_delete.lock().unwrap();
            if flaky.as_deref() == Some(p) {
                *flaky = None;
                return Err(StorageError::transient("503"));
            }
            Ok(())
        }
        async fn mkdir(&self, _: &str) -> Result<()> {
            Ok(())
        }
        async fn stat(&self, _: &str) -> Result<Option<Entry>> {
            Ok(None)
        }
    }

    fn fast() -> PacerOptions {
        PacerOptions {
            min_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            retries: 3,
            ..Default::default()
        }
    }

    /// Under `--bwlimit` a file upload streams at the pace, chunk by chunk (rclone's
    /// behaviour), instead of waiting for its whole share and then going at line rate: the
    /// backend reads chunks no larger than the pace's burst (1/10 s of the rate), and the
    /// bytes are counted once.
    #[tokio::test]
    async fn a_file_upload_streams_at_the_bwlimit() {
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("blob");
        std::fs::write(&local, vec![7u8; 100_000]).unwrap();
        let slice = crate::FileSlice::new(&local, 0, 100_000);
        let inner = Mock::failing_puts(0, || StorageError::transient("unused"));
        let p = Paced::new(
            inner.clone(),
            PacerOptions {
                bw_limit: Some(400_000),
                ..fast()
            },
        );
        p.put_file(".resource/r", &slice).await.unwrap();
        let chunks = inner.file_chunks.lock().unwrap().clone();
        assert_eq!(chunks.iter().sum::<usize>(), 100_000);
        assert!(
            chunks.iter().all(|n| *n <= 40_000),
            "chunks over the 40 kB burst: {chunks:?}"
        );
        assert_eq!(p.counts().bytes, 100_000);
        // Without a limit the body goes in full-size chunks.
        inner.file_chunks.lock().unwrap().clear();
        let unpaced = Paced::new(inner.clone(), fast());
        unpaced.put_file(".resource/r", &slice).await.unwrap();
        assert_eq!(inner.file_chunks.lock().unwrap()[0], crate::body::CHUNK);
    }

    /// A listing that fails part way is retried from the start, and what it had handed over
    /// is dropped: every file once, none twice.
    #[tokio::test]
    async fn a_retried_listing_starts_over() {
        let inner = Mock::flaky_listing(vec!["a.md", "b.md", "c.md"], 2);
        let p = Paced::new(inner.clone(), fast());
        let listed = p.list("").await.unwrap();
        let names: Vec<&str> = listed.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(names, ["a.md", "b.md", "c.md"]);
        assert_eq!(p.counts().requests, 2);
        assert_eq!(p.counts().retries, 1);
    }

    /// A body made with `put_made` is made when its request may go, not when it was queued:
    /// behind `--tpslimit 2`, four queued at once are made about half a second apart (an item's
    /// restore stamp is then the moment it is written). A retry makes it again.
    #[tokio::test]
    async fn bodies_are_made_as_their_request_goes() {
        let inner = Mock::failing_puts(1, || StorageError::transient("503"));
        let p = Paced::new(
            inner.clone(),
            PacerOptions {
                tps_limit: Some(2.0),
                transfers: 4,
                ..fast()
            },
        );
        let made: Mutex<Vec<std::time::Instant>> = Mutex::new(Vec::new());
        let make = |_: &str| {
            made.lock().unwrap().push(std::time::Instant::now());
            Ok(Bytes::from_static(b"x"))
        };
        let puts = (0..4).map(|i| {
            let (p, make) = (&p, &make);
            async move { p.put_made(&format!("{i}.md"), 1, make).await }
        });
        for r in futures::future::join_all(puts).await {
            r.unwrap();
        }
        let made = made.into_inner().unwrap();
        // Four bodies and the one the failed first attempt needed again.
        assert_eq!(made.len(), 5);
        let spread = *made.iter().max().unwrap() - *made.iter().min().unwrap();
        assert!(spread >= Duration::from_millis(1500), "{spread:?}");
    }

    #[tokio::test]
    async fn retries_transient_errors_until_success() {
        let inner = Mock::failing_puts(3, || StorageError::transient("503"));
        let p = Paced::new(inner.clone(), fast());
        p.put("a", Bytes::from_static(b"x")).await.unwrap();
        assert_eq!(*inner.calls.lock().unwrap(), 4);
        assert_eq!(p.counts().retries, 3);
    }

    #[tokio::test]
    async fn gives_up_after_the_retry_budget() {
        let inner = Mock::failing_puts(10, || StorageError::transient("503"));
        let p = Paced::new(inner.clone(), fast());
        assert!(p.put("a", Bytes::new()).await.is_err());
        assert_eq!(*inner.calls.lock().unwrap(), 4);
    }

    #[tokio::test]
    async fn never_retries_auth_errors() {
        let inner = Mock::failing_puts(10, || StorageError::Auth("401".into()));
        let p = Paced::new(inner.clone(), fast());
        assert!(matches!(
            p.put("a", Bytes::new()).await,
            Err(StorageError::Auth(_))
        ));
        assert_eq!(*inner.calls.lock().unwrap(), 1);
    }

    #[tokio::test]
    async fn honours_retry_after() {
        let inner = Mock::failing_puts(1, || StorageError::RateLimited {
            message: "429".into(),
            retry_after: Some(Duration::from_millis(300)),
        });
        let p = Paced::new(inner, fast());
        let t = std::time::Instant::now();
        p.put("a", Bytes::new()).await.unwrap();
        assert!(t.elapsed() >= Duration::from_millis(300));
        assert_eq!(p.counts().rate_limited, 1);
    }

    /// `Retry-After: 0` (or a date already past) is no reason to spend every retry at once:
    /// our own backoff is the least wait.
    #[tokio::test]
    async fn a_retry_after_of_zero_still_backs_off() {
        let inner = Mock::failing_puts(3, || StorageError::Transient {
            message: "503".into(),
            retry_after: Some(Duration::ZERO),
        });
        let p = Paced::new(
            inner,
            PacerOptions {
                min_backoff: Duration::from_millis(40),
                max_backoff: Duration::from_millis(200),
                ..fast()
            },
        );
        let t = std::time::Instant::now();
        p.put("a", Bytes::new()).await.unwrap();
        // Three waits of at least half of 40, 80 and 160 ms.
        assert!(
            t.elapsed() >= Duration::from_millis(140),
            "{:?}",
            t.elapsed()
        );
    }

    /// A full disk at once, refused credentials or no usable answer through every retry on
    /// three requests in a row: later requests fail at once without reaching the target (a
    /// lock file still goes, to be released).
    #[tokio::test]
    async fn a_failure_of_the_whole_target_stops_further_requests() {
        for (make_err, retries, to_stop) in [
            (
                (|| StorageError::InsufficientStorage("HTTP 507".into())) as fn() -> StorageError,
                3,
                1,
            ),
            (|| StorageError::Auth("HTTP 401".into()), 3, 3),
            (|| StorageError::transient("connection refused"), 1, 3),
        ] {
            let inner = Mock::failing_puts(1000, make_err);
            let p = Paced::new(inner.clone(), PacerOptions { retries, ..fast() });
            for i in 0..to_stop {
                assert!(p.put(&format!("{i}.md"), Bytes::new()).await.is_err());
            }
            let calls = *inner.calls.lock().unwrap();
            let later = p.put("b.md", Bytes::new()).await.unwrap_err();
            assert_eq!(*inner.calls.lock().unwrap(), calls, "b reached the target");
            let said = later.to_string();
            assert!(
                said.contains("b.md: not sent") && said.contains(&make_err().to_string()),
                "{said}"
            );
            assert!(!later.is_retryable(), "{later:?}");
            // The lock is still written (and released), alone or in a batch.
            let _ = p.put("locks/2_2_x.json", Bytes::new()).await;
            assert!(*inner.calls.lock().unwrap() > calls, "the lock did not go");
            assert!(p.refused_batch(["locks/2_2_x.json"].into_iter()).is_none());
        }
    }

    /// What one file meets alone stops nothing: a file the server refuses (too large), or
    /// failures with a success between them.
    #[tokio::test]
    async fn failures_of_one_file_stop_nothing() {
        let inner = Mock::failing_puts(1, || StorageError::TooLarge {
            path: "a".into(),
            message: "413".into(),
        });
        let p = Paced::new(inner, fast());
        assert!(p.put("a", Bytes::new()).await.is_err());
        p.put("b", Bytes::new()).await.unwrap();

        let inner = Mock::failing_puts(1000, || StorageError::Auth("HTTP 403".into()));
        let p = Paced::new(inner.clone(), fast());
        for i in 0..2 {
            assert!(p.put(&format!("{i}"), Bytes::new()).await.is_err());
        }
        // A success between (here: a listing) starts the count again.
        p.list("").await.unwrap();
        for i in 2..4 {
            assert!(p.put(&format!("{i}"), Bytes::new()).await.is_err());
        }
        let before = *inner.calls.lock().unwrap();
        assert!(p.put("5", Bytes::new()).await.is_err());
        assert_eq!(
            *inner.calls.lock().unwrap(),
            before + 1,
            "sent: two in a row only"
        );
    }

    /// A Retry-After at least our least backoff is waited as asked, attempt after attempt
    /// (not stretched to our growing backoff).
    #[tokio::test(start_paused = true)]
    async fn a_short_retry_after_is_honoured_as_asked() {
        let inner = Mock::failing_puts(4, || StorageError::RateLimited {
            message: "429".into(),
            retry_after: Some(Duration::from_secs(1)),
        });
        let p = Paced::new(
            inner,
            PacerOptions {
                min_backoff: Duration::from_millis(500),
                max_backoff: Duration::from_secs(30),
                retries: 5,
                ..fast()
            },
        );
        let t = tokio::time::Instant::now();
        p.put("a", Bytes::new()).await.unwrap();
        assert_eq!(t.elapsed().as_secs(), 4, "{:?}", t.elapsed());
    }

    /// A request the server leaves unanswered is said (once the first minute is over) while
    /// it goes on waiting; one answered at once says nothing.
    #[tokio::test(start_paused = true)]
    async fn a_stalled_request_is_said_while_it_waits() {
        let p = Paced::new(
            Mock::failing_puts(0, || StorageError::transient("unused")),
            fast(),
        );
        p.said_while_waiting(tokio::time::sleep(Duration::from_secs(1)))
            .await;
        assert!(p.last_told.lock().unwrap().is_none());
        let answer = p
            .said_while_waiting(async {
                tokio::time::sleep(Duration::from_secs(150)).await;
                42
            })
            .await;
        assert_eq!(answer, 42);
        assert!(
            p.last_told.lock().unwrap().is_some(),
            "the stall was not said"
        );
    }

    fn paths(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{i:032x}.md")).collect()
    }

    #[tokio::test]
    async fn deletes_without_a_bulk_call_are_paced_one_by_one() {
        let inner = Mock::failing_delete(Some(paths(30)[7].clone()));
        let p = Paced::new(
            inner.clone(),
            PacerOptions {
                transfers: 3,
                ..fast()
            },
        );
        assert!(p.delete_many(&paths(30)).await.is_empty());
        // 30 files, one retried alone: every DELETE counted, never more than --transfers.
        assert_eq!(inner.deletes.load(Ordering::SeqCst), 31);
        assert_eq!(p.counts().requests, 31);
        assert_eq!(p.counts().retries, 1);
        let most = inner.most_at_once.load(Ordering::SeqCst);
        assert!((2..=3).contains(&most), "{most} deletes at once");
    }

    #[tokio::test]
    async fn deletes_without_a_bulk_call_keep_to_the_tpslimit() {
        let inner = Mock::failing_delete(None);
        let p = Paced::new(
            inner,
            PacerOptions {
                tps_limit: Some(50.0),
                ..fast()
            },
        );
        let t = std::time::Instant::now();
        assert!(p.delete_many(&paths(11)).await.is_empty());
        // 11 requests at 50/s with a burst of one: at least 10 gaps of 20 ms.
        assert!(
            t.elapsed() >= Duration::from_millis(200),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(p.counts().requests, 11);
    }
}
