//! S3 sync target (Joplin `sync.target 8`): AWS S3, MinIO, s3s, s3rver and other S3-compatible
//! stores.
//!
//! Layout exactly as Joplin's `file-api-driver-amazon-s3.js` writes it: every path is a key under
//! an optional prefix (`<prefix><id>.md`, `<prefix>.resource/<id>`, `<prefix>info.json`,
//! `<prefix>locks/…`). There are no directory objects: `mkdir` does nothing and a "directory"
//! exists as soon as a key below it does. Listings use ListObjectsV2 with delimiter `/`, so a
//! listing of the root shows `.resource/` as a directory, not its blobs — as Joplin's own delta.
//!
//! Joplin itself always syncs to the bucket's root (`sync.8.path` is the bucket name), so a
//! prefix is only for targets other tools read.
//!
//! Credentials come only from the standard AWS chain (environment `AWS_ACCESS_KEY_ID` /
//! `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, `AWS_PROFILE` with the shared config and
//! credentials files, then web identity / container / instance credentials); they are never
//! logged. Retries are the pacer's job: the SDK's own retries are switched off.

use std::fmt;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::BehaviorVersion;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::ResponseChecksumValidation;
use aws_sdk_s3::config::{Credentials, Region, RequestChecksumCalculation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLocationConstraint, CompletedMultipartUpload, CompletedPart, CreateBucketConfiguration,
    Delete, ObjectIdentifier,
};
use aws_sdk_s3::Client;
use backend_core::{
    parse_retry_after, Capabilities, Entry, ExtraRequests, FileSlice, ListSink, Progress, Result,
    Storage, StorageError, Unpaced,
};
use bytes::Bytes;
use futures::{stream, StreamExt, TryStreamExt};
use tokio::sync::OnceCell;

/// S3 allows at most this many keys in one DeleteObjects request.
pub const MAX_DELETE_BATCH: usize = 1000;
/// S3's smallest part (all parts but the last).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// Blobs larger than this go up as a multipart upload by default.
pub const DEFAULT_MULTIPART_THRESHOLD: u64 = 8 * 1024 * 1024;
/// Default part size of a multipart upload.
pub const DEFAULT_PART_SIZE: u64 = 8 * 1024 * 1024;
/// Parts of one multipart upload in flight at once.
pub const MULTIPART_CONCURRENCY: usize = 4;

/// Where the target is and how to reach it.
#[derive(Clone)]
pub struct S3Options {
    pub bucket: String,
    /// Key prefix, with or without a trailing `/` (`""` = the bucket's root, as Joplin uses).
    pub prefix: String,
    /// Endpoint URL for non-AWS stores (`http://127.0.0.1:9000`); `None` = AWS.
    pub endpoint: Option<String>,
    /// `None` = `AWS_REGION` / `AWS_DEFAULT_REGION` / the profile's region, else `us-east-1`.
    pub region: Option<String>,
    /// Path-style addressing (`http://host/bucket/key`), needed by MinIO and most self-hosted
    /// stores.
    pub path_style: bool,
    /// Create the bucket in `ensure_root` when it does not exist.
    pub create_bucket: bool,
    /// Blobs larger than this are sent as a multipart upload.
    pub multipart_threshold: u64,
    /// Part size of multipart uploads (at least 5 MiB).
    pub part_size: u64,
    /// Fixed keys instead of the AWS chain (tests and embedding only; the CLI never sets it).
    pub static_credentials: Option<(String, String)>,
    /// Profile of ~/.aws/config and ~/.aws/credentials to take keys and region from (`None`:
    /// AWS_PROFILE, else `default`).
    pub profile: Option<String>,
    /// How long a request may wait for a connection or an answer, and an upload go without
    /// progress, before it fails (`--timeout`).
    pub timeout: Duration,
}

impl S3Options {
    pub fn new(bucket: impl Into<String>) -> Self {
        S3Options {
            bucket: bucket.into(),
            prefix: String::new(),
            endpoint: None,
            region: None,
            path_style: false,
            create_bucket: false,
            multipart_threshold: DEFAULT_MULTIPART_THRESHOLD,
            part_size: DEFAULT_PART_SIZE,
            static_credentials: None,
            profile: None,
            timeout: backend_core::DEFAULT_TIMEOUT,
        }
    }

    /// Parse `s3://BUCKET[/PREFIX]` into bucket and prefix.
    pub fn from_url(url: &str) -> Result<Self> {
        let rest = url.strip_prefix("s3://").ok_or_else(|| {
            StorageError::Config(format!(
                "{url}: an S3 target looks like s3://BUCKET[/PREFIX]"
            ))
        })?;
        if rest.contains(['?', '#']) {
            // `?endpoint=…` / `?region=…` as other tools write them would silently become
            // part of the prefix here.
            return Err(StorageError::Config(format!(
                "{url}: an S3 target takes no query (`?…`): give the endpoint, region and \
                 addressing as --endpoint URL, --region R and --path-style"
            )));
        }
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(StorageError::Config(format!(
                "{url}: no bucket name: use s3://BUCKET or s3://BUCKET/PREFIX"
            )));
        }
        let mut o = S3Options::new(bucket);
        o.prefix = prefix.to_string();
        Ok(o)
    }
}

impl fmt::Debug for S3Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print credentials.
        f.debug_struct("S3Options")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("create_bucket", &self.create_bucket)
            .field("multipart_threshold", &self.multipart_threshold)
            .field("part_size", &self.part_size)
            .field(
                "static_credentials",
                &self.static_credentials.as_ref().map(|_| "<set>"),
            )
            .field("profile", &self.profile)
            .field("timeout", &self.timeout)
            .finish()
    }
}

pub struct S3Storage {
    opts: S3Options,
    /// Normalised prefix: `""` or ending in `/`.
    prefix: String,
    /// Built on first use: loading the AWS config chain is async.
    client: OnceCell<Client>,
}

impl fmt::Debug for S3Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Storage")
            .field("opts", &self.opts)
            .finish()
    }
}

/// `""` or `p/` (leading and doubled slashes dropped).
fn normalise_prefix(p: &str) -> String {
    let parts: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("{}/", parts.join("/"))
    }
}

impl S3Storage {
    pub fn new(opts: S3Options) -> Result<Self> {
        if opts.bucket.is_empty() {
            return Err(StorageError::Config("no S3 bucket name given".into()));
        }
        if opts.part_size < MIN_PART_SIZE {
            return Err(StorageError::Config(format!(
                "S3 part size {} is below the 5 MiB S3 requires",
                opts.part_size
            )));
        }
        if let Some(e) = &opts.endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(StorageError::Config(format!(
                    "--endpoint {e}: give a URL starting with http:// or https://"
                )));
            }
        }
        Ok(S3Storage {
            prefix: normalise_prefix(&opts.prefix),
            opts,
            client: OnceCell::new(),
        })
    }

    pub fn bucket(&self) -> &str {
        &self.opts.bucket
    }

    fn endpoint_text(&self) -> String {
        self.opts
            .endpoint
            .clone()
            .unwrap_or_else(|| "AWS S3".to_string())
    }

    async fn client(&self) -> Result<&Client> {
        self.client.get_or_try_init(|| self.build_client()).await
    }

    async fn build_client(&self) -> Result<Client> {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let region = match &self.opts.region {
            Some(r) => RegionProviderChain::first_try(Region::new(r.clone())),
            // Env and profile, then us-east-1 (what S3-compatible stores expect by default);
            // no instance-metadata lookup, which would stall off EC2.
            None => RegionProviderChain::first_try(
                aws_config::environment::EnvironmentVariableRegionProvider::new(),
            )
            .or_else(match &self.opts.profile {
                Some(p) => aws_config::profile::ProfileFileRegionProvider::builder()
                    .profile_name(p)
                    .build(),
                None => aws_config::profile::ProfileFileRegionProvider::new(),
            })
            .or_else(Region::from_static("us-east-1")),
        };
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            .region(region)
            // The read timeout runs from a request's start to its answer: right for every
            // request but uploads, which lift it (see `upload`).
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(self.opts.timeout)
                    .read_timeout(self.opts.timeout)
                    .build(),
            )
            .retry_config(RetryConfig::disabled());
        if let Some(p) = &self.opts.profile {
            loader = loader.profile_name(p);
        }
        if let Some((ak, sk)) = &self.opts.static_credentials {
            loader =
                loader.credentials_provider(Credentials::new(ak, sk, None, None, "joplin-restore"));
        }
        let sdk = loader.load().await;
        let mut b = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(self.opts.path_style)
            // Checksums only where S3 requires them: plain signed bodies work with every
            // S3-compatible store (no aws-chunked trailers).
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(e) = &self.opts.endpoint {
            b = b.endpoint_url(e.trim_end_matches('/'));
        }
        Ok(Client::from_conf(b.build()))
    }

    fn key(&self, path: &str) -> String {
        format!("{}{}", self.prefix, path.trim_start_matches('/'))
    }

    /// The target-relative path of a key, `None` when the key is outside the prefix.
    fn path_of<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(self.prefix.as_str())
    }

    /// List one [`Shard`], handing each entry to `out` as its page arrives, at most `max_pages`
    /// pages, each page admitted by `extra`. Returns the greatest name (relative to the folder)
    /// of the last page when the listing stopped with more to come.
    async fn list_shard(
        &self,
        shard: &Shard,
        max_pages: Option<usize>,
        extra: &dyn ExtraRequests,
        out: &mut (dyn FnMut(Entry) + Send),
        what: &str,
    ) -> Result<Option<String>> {
        let client = self.client().await?;
        let mut token: Option<String> = None;
        // Bounded: 1000 keys a page, so 100 000 pages is 100 million keys.
        for n in 1..=100_000usize {
            extra.admit().await;
            let page = match client
                .list_objects_v2()
                .bucket(&self.opts.bucket)
                .prefix(&shard.prefix)
                .delimiter("/")
                .set_start_after(shard.start_after.clone())
                .set_continuation_token(token.take())
                .send()
                .await
            {
                Ok(page) => page,
                Err(e) => match self.classify(what, e) {
                    // Only a missing bucket under --create-bucket: nothing there yet.
                    StorageError::NotFound { .. } => return Ok(None),
                    e => return Err(e),
                },
            };
            let mut greatest: Option<&str> = None;
            let mut past_end = false;
            let names = page
                .contents()
                .iter()
                .filter_map(|o| o.key().map(|k| (k, Some(o))))
                .chain(
                    page.common_prefixes()
                        .iter()
                        .filter_map(|p| p.prefix().map(|k| (k, None))),
                );
            for (key, object) in names {
                let Some(name) = key.strip_prefix(shard.folder.as_str()) else {
                    continue;
                };
                greatest = greatest.max(Some(name));
                if !shard.holds(name) {
                    past_end |= shard.is_past(name);
                    continue;
                }
                let Some(path) = self.path_of(key) else {
                    continue;
                };
                match object {
                    // A "directory object" some tools create for the folder itself.
                    Some(_) if name.is_empty() || key.ends_with('/') => {}
                    Some(o) => out(Entry {
                        path: path.to_string(),
                        size: o.size().unwrap_or(0).max(0) as u64,
                        modified: to_system_time(o.last_modified()),
                        is_dir: false,
                    }),
                    None => {
                        let path = path.trim_end_matches('/');
                        if !path.is_empty() {
                            out(Entry {
                                path: path.to_string(),
                                size: 0,
                                modified: None,
                                is_dir: true,
                            });
                        }
                    }
                }
            }
            token = page.next_continuation_token().map(str::to_string);
            let more = page.is_truncated() == Some(true) && token.is_some();
            if !more || past_end {
                return Ok(None);
            }
            if max_pages.is_some_and(|m| n >= m) {
                return Ok(greatest.map(str::to_string));
            }
        }
        Err(StorageError::Rejected(format!(
            "{what}: the server kept the listing going past 100 000 pages; giving up"
        )))
    }

    fn classify<E>(
        &self,
        path: &str,
        e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> StorageError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = e.raw_response().map(|r| r.status().as_u16());
        let retry_after = e
            .raw_response()
            .and_then(|r| r.headers().get("retry-after"))
            .and_then(parse_retry_after);
        let code = e.code().map(str::to_string);
        let message = e.message().map(str::to_string);
        match &e {
            SdkError::ServiceError(_) | SdkError::ResponseError(_) => {}
            SdkError::ConstructionFailure(_) | SdkError::DispatchFailure(_)
                if DisplayErrorContext(&e)
                    .to_string()
                    .to_ascii_lowercase()
                    .contains("credentials") =>
            {
                // Missing keys never fix themselves: no retries, say where keys come from.
                return StorageError::Auth(match &self.opts.profile {
                    Some(p) => format!(
                        "no AWS credentials for {}: profile {p:?} is not in ~/.aws/credentials \
                         or ~/.aws/config (or AWS_SHARED_CREDENTIALS_FILE / AWS_CONFIG_FILE), or \
                         has no keys",
                        self.describe()
                    ),
                    None => format!(
                        "no AWS credentials found for {}: set AWS_ACCESS_KEY_ID and \
                         AWS_SECRET_ACCESS_KEY in the environment, or AWS_PROFILE naming a \
                         profile in ~/.aws/credentials",
                        self.describe()
                    ),
                });
            }
            SdkError::ConstructionFailure(_) => {
                return StorageError::Config(format!(
                    "{path}: cannot build the S3 request: {}",
                    DisplayErrorContext(&e)
                ));
            }
            SdkError::DispatchFailure(f) if f.is_timeout() => {
                return StorageError::transient(format!(
                    "{path}: {} sent nothing for {} s (--timeout): it is down, overloaded or \
                     unreachable; a longer --timeout waits more",
                    self.endpoint_text(),
                    self.opts.timeout.as_secs()
                ));
            }
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => {
                return StorageError::transient(format!(
                    "{path}: cannot reach {}: {} (check --endpoint and the network)",
                    self.endpoint_text(),
                    DisplayErrorContext(&e)
                ));
            }
            _ => {
                return StorageError::transient(format!("{path}: {}", DisplayErrorContext(&e)));
            }
        }
        self.classify_parts(
            path,
            status,
            code.as_deref(),
            message.as_deref(),
            retry_after,
        )
    }

    /// Turn an S3 error (code, HTTP status, message) into an error class with advice.
    fn classify_parts(
        &self,
        path: &str,
        status: Option<u16>,
        code: Option<&str>,
        message: Option<&str>,
        retry_after: Option<Duration>,
    ) -> StorageError {
        let bucket = &self.opts.bucket;
        let what = match (code, message) {
            (Some(c), Some(m)) => format!("{c}: {m}"),
            (Some(c), None) => c.to_string(),
            (None, Some(m)) => m.to_string(),
            (None, None) => String::new(),
        };
        match code.unwrap_or("") {
            // With --create-bucket a missing bucket is an empty target until `ensure_root`
            // creates it: reads find nothing, listings are empty.
            "NoSuchBucket" if self.opts.create_bucket => return StorageError::not_found(path),
            "NoSuchBucket" => {
                return StorageError::Config(format!(
                    "bucket {bucket:?} does not exist on {}: create it (in the provider's console, \
                     or `aws s3 mb s3://{bucket}`), or rerun with --create-bucket",
                    self.endpoint_text()
                ))
            }
            "NoSuchKey" | "NotFound" => return StorageError::not_found(path),
            "SignatureDoesNotMatch"
            | "InvalidAccessKeyId"
            | "AccessDenied"
            | "InvalidToken"
            | "ExpiredToken"
            | "TokenRefreshRequired"
            | "InvalidSecurity" => {
                return StorageError::Auth(format!(
                "S3 refused the request for {path} in bucket {bucket:?} ({what}): the signature \
                     does not match or access is denied. Check AWS_ACCESS_KEY_ID / \
                     AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and that this key may read and write \
                     the bucket"
            ))
            }
            "AuthorizationHeaderMalformed"
            | "PermanentRedirect"
            | "IllegalLocationConstraintException" => {
                return StorageError::Config(format!(
                    "{path}: {what}: the bucket {bucket:?} is in another region: pass --region \
                     with the bucket's region (or set AWS_REGION)"
                ))
            }
            "RequestTimeTooSkewed" => {
                return StorageError::Config(format!(
                    "{path}: {what}: this machine's clock differs too much from the server's: fix \
                     the system clock (NTP) and rerun"
                ))
            }
            "SlowDown"
            | "Throttling"
            | "ThrottlingException"
            | "TooManyRequests"
            | "RequestLimitExceeded"
            | "ServiceUnavailable" => {
                return StorageError::RateLimited {
                    message: format!("{path}: {what}"),
                    retry_after,
                }
            }
            "InternalError" | "RequestTimeout" | "OperationAborted" => {
                return StorageError::Transient {
                    message: format!("{path}: {what}"),
                    retry_after,
                }
            }
            "EntityTooLarge" => {
                return StorageError::TooLarge {
                    path: path.to_string(),
                    message: what,
                }
            }
            _ => {}
        }
        match status {
            // HEAD answers carry no body, so no code: say what a 403 means on S3.
            Some(401 | 403) => StorageError::Auth(format!(
                "S3 refused the request for {path} in bucket {bucket:?} (HTTP {}): the signature \
                 does not match or access is denied. Check AWS_ACCESS_KEY_ID / \
                 AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and that this key may read and write the \
                 bucket",
                status.unwrap_or(403)
            )),
            Some(301) => StorageError::Config(format!(
                "{path}: HTTP 301: the bucket {bucket:?} is in another region or needs another \
                 addressing style: pass --region with the bucket's region, or --path-style"
            )),
            // 503 on S3 is SlowDown even without a body.
            Some(503) => StorageError::RateLimited {
                message: format!("{path}: HTTP 503 (slow down) {what}"),
                retry_after,
            },
            Some(s) => StorageError::from_http(s, path, &what, retry_after),
            None => StorageError::transient(format!("{path}: {what}")),
        }
    }

    async fn put_multipart(
        &self,
        client: &Client,
        path: &str,
        key: &str,
        body: &Body,
    ) -> Result<()> {
        let created = client
            .create_multipart_upload()
            .bucket(&self.opts.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.classify(path, e))?;
        let upload_id = created.upload_id().map(str::to_string).ok_or_else(|| {
            StorageError::Rejected(format!(
                "{path}: the server started a multipart upload without an id"
            ))
        })?;
        let parts = async {
            let size = self.opts.part_size;
            let total = body.len();
            let count = total.div_ceil(size).max(1);
            // Parts go up a few at a time (each streams from its file range, or is a
            // zero-copy slice of the buffer), then complete in part-number order.
            let mut done: Vec<CompletedPart> = stream::iter(0..count)
                .map(|i| {
                    let upload_id = &upload_id;
                    async move {
                        let offset = i * size;
                        let len = size.min(total - offset);
                        let number = i as i32 + 1;
                        let (stream, progress) = body.part(path, offset, len).await?;
                        let request = client
                            .upload_part()
                            .bucket(&self.opts.bucket)
                            .key(key)
                            .upload_id(upload_id)
                            .part_number(number)
                            .content_length(len as i64)
                            .body(stream);
                        let part = self
                            .upload(path, progress, |lift| match lift {
                                Some(c) => request.customize().config_override(c).send(),
                                None => request.customize().send(),
                            })
                            .await?;
                        Ok::<_, StorageError>(
                            CompletedPart::builder()
                                .set_e_tag(part.e_tag().map(str::to_string))
                                .part_number(number)
                                .build(),
                        )
                    }
                })
                .buffer_unordered(MULTIPART_CONCURRENCY)
                .try_collect()
                .await?;
            done.sort_by_key(|p| p.part_number());
            client
                .complete_multipart_upload()
                .bucket(&self.opts.bucket)
                .key(key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(done))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| self.classify(path, e))?;
            Ok::<(), StorageError>(())
        }
        .await;
        if let Err(e) = parts {
            // Abort so the parts do not linger (and cost) on the server.
            if let Err(abort) = client
                .abort_multipart_upload()
                .bucket(&self.opts.bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await
            {
                tracing::warn!(
                    "{path}: could not abort the failed multipart upload: {}",
                    self.classify(path, abort)
                );
            }
            return Err(e);
        }
        Ok(())
    }

    /// PutObject, or a multipart upload above the threshold.
    async fn put_body(&self, path: &str, body: Body) -> Result<()> {
        let client = self.client().await?;
        let key = self.key(path);
        if body.len() > self.opts.multipart_threshold {
            return self.put_multipart(client, path, &key, &body).await;
        }
        let len = body.len();
        let (stream, progress) = body.part(path, 0, len).await?;
        let request = client
            .put_object()
            .bucket(&self.opts.bucket)
            .key(key)
            .content_length(len as i64)
            .body(stream);
        self.upload(path, progress, |lift| match lift {
            Some(c) => request.customize().config_override(c).send(),
            None => request.customize().send(),
        })
        .await?;
        Ok(())
    }

    /// Send an upload. A file's upload may take longer than `--timeout` as long as it makes
    /// progress: the read timeout (which runs from the request's start) is lifted, and the
    /// upload fails once it goes `--timeout` with no chunk taken and no answer.
    async fn upload<T, E, F>(
        &self,
        path: &str,
        progress: Option<Progress>,
        send: impl FnOnce(Option<aws_sdk_s3::config::Builder>) -> F,
    ) -> Result<T>
    where
        F: std::future::Future<Output = std::result::Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let Some(progress) = progress else {
            return send(None).await.map_err(|e| self.classify(path, e));
        };
        let lift = aws_sdk_s3::config::Builder::default().timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(self.opts.timeout)
                .disable_read_timeout()
                .build(),
        );
        backend_core::unless_idle(send(Some(lift)), &progress, self.opts.timeout)
            .await
            .ok_or_else(|| backend_core::stalled_upload(path, self.opts.timeout))?
            .map_err(|e| self.classify(path, e))
    }

    async fn delete_batch(&self, client: &Client, paths: &[String]) -> Vec<(String, StorageError)> {
        let objects: std::result::Result<Vec<ObjectIdentifier>, _> = paths
            .iter()
            .map(|p| ObjectIdentifier::builder().key(self.key(p)).build())
            .collect();
        let request = objects
            .map_err(|e| StorageError::Config(format!("DeleteObjects: {e}")))
            .and_then(|objects| {
                Delete::builder()
                    .set_objects(Some(objects))
                    .quiet(true)
                    .build()
                    .map_err(|e| StorageError::Config(format!("DeleteObjects: {e}")))
            });
        let delete = match request {
            Ok(d) => d,
            Err(e) => {
                let msg = e.to_string();
                return paths
                    .iter()
                    .map(|p| (p.clone(), StorageError::Config(msg.clone())))
                    .collect();
            }
        };
        let out = client
            .delete_objects()
            .bucket(&self.opts.bucket)
            .delete(delete)
            .send()
            .await;
        match out {
            Ok(out) => out
                .errors()
                .iter()
                .filter_map(|err| {
                    let key = err.key()?;
                    let path = self.path_of(key).unwrap_or(key).to_string();
                    // A key already gone is deleted as far as we care.
                    if err.code() == Some("NoSuchKey") {
                        return None;
                    }
                    let e = self.classify_parts(&path, Some(200), err.code(), err.message(), None);
                    Some((path, e))
                })
                .collect(),
            Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(500) => {
                // Some stores fail a whole batch on an internal race (s3rver 3.7.1 removes
                // emptied folders in parallel and trips over its own deletions): fall back to
                // one DeleteObject per key, in order. Throttling (503) is left to the pacer.
                tracing::warn!(
                    "DeleteObjects failed ({}); deleting {} key(s) one by one",
                    self.classify(&paths[0], e),
                    paths.len()
                );
                let mut failed = Vec::new();
                for p in paths {
                    if let Err(e) = self.delete(p).await {
                        failed.push((p.clone(), e));
                    }
                }
                failed
            }
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                let first = self.classify(&paths[0], e);
                // Rebuild the same class for every path of the batch.
                let retryable = first.is_retryable();
                let retry_after = first.retry_after();
                let text = first.to_string();
                paths
                    .iter()
                    .map(|p| {
                        let e = if retryable {
                            StorageError::Transient {
                                message: text.clone(),
                                retry_after,
                            }
                        } else {
                            match status {
                                Some(401 | 403) => StorageError::Auth(text.clone()),
                                _ => StorageError::Rejected(text.clone()),
                            }
                        };
                        (p.clone(), e)
                    })
                    .collect()
            }
        }
    }
}

/// What an upload sends: a buffer, or a local file range read part by part.
enum Body {
    Bytes(Bytes),
    File(FileSlice),
}

impl Body {
    fn len(&self) -> u64 {
        match self {
            Body::Bytes(b) => b.len() as u64,
            Body::File(f) => f.len,
        }
    }

    /// `len` bytes at `offset` as a request body; for a file, with the progress its chunks
    /// report (streamed, at the slice's pace under --bwlimit).
    async fn part(
        &self,
        path: &str,
        offset: u64,
        len: u64,
    ) -> Result<(ByteStream, Option<Progress>)> {
        match self {
            Body::Bytes(b) => Ok((
                ByteStream::from(b.slice(offset as usize..(offset + len) as usize)),
                None,
            )),
            Body::File(f) => {
                let s = f.sub(offset, len);
                let body = s.body().await.map_err(|e| s.error(path, e))?;
                let progress = body.progress();
                Ok((ByteStream::from_body_1_x(body), Some(progress)))
            }
        }
    }
}

fn to_system_time(t: Option<&aws_sdk_s3::primitives::DateTime>) -> Option<SystemTime> {
    t.and_then(|t| SystemTime::try_from(*t).ok())
}

#[async_trait]
impl Storage for S3Storage {
    fn describe(&self) -> String {
        let mut s = format!("s3://{}/{}", self.opts.bucket, self.prefix);
        if let Some(e) = &self.opts.endpoint {
            // `http://host:9000/` and `http://host:9000` are one endpoint (snapshots and
            // journals compare descriptions).
            s.push_str(&format!(" at {}", e.trim_end_matches('/')));
        }
        s
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            default_transfers: 8,
            batch_put: false,
            // LastModified has 1-second resolution on AWS and most stores.
            coarse_mtime: true,
            // DeleteObjects: up to 1,000 keys a request.
            bulk_delete: true,
            ..Default::default()
        }
    }

    async fn ensure_root(&self) -> Result<()> {
        let client = self.client().await?;
        let bucket = &self.opts.bucket;
        let err = match client.head_bucket().bucket(bucket).send().await {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        let status = err.raw_response().map(|r| r.status().as_u16());
        let missing = status == Some(404) || err.code() == Some("NoSuchBucket");
        if status == Some(400) && err.code().is_none() {
            return Err(StorageError::Config(format!(
                "{} answered HTTP 400 for bucket {bucket:?}: is the bucket name valid (3–63 \
                 lowercase letters, digits, dots and hyphens) and is --endpoint an S3 endpoint?",
                self.endpoint_text()
            )));
        }
        if !missing {
            return Err(self.classify(bucket, err));
        }
        if !self.opts.create_bucket {
            return Err(self.classify_parts(bucket, Some(404), Some("NoSuchBucket"), None, None));
        }
        let mut create = client.create_bucket().bucket(bucket);
        let region = client.config().region().map(|r| r.as_ref().to_string());
        if let Some(r) = region.filter(|r| r != "us-east-1") {
            create = create.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(r.as_str()))
                    .build(),
            );
        }
        match create.send().await {
            Ok(_) => {
                tracing::info!("created bucket {bucket}");
                Ok(())
            }
            Err(e) if matches!(e.code(), Some("BucketAlreadyOwnedByYou")) => Ok(()),
            Err(e) => Err(self.classify(bucket, e)),
        }
    }

    async fn list(&self, dir: &str) -> Result<Vec<Entry>> {
        backend_core::list_through_each(self, dir).await
    }

    /// One page, then — when the folder has more — the rest in parallel by key range (see
    /// [`Shard`]): a target of 14,000 items is ~15 sequential pages otherwise, and servers
    /// that scan the folder for every page (s3s-fs) pay that scan per page. Entries reach the
    /// sink as their pages arrive (from all shards at once, so in no particular order): a
    /// large bucket's listing is never held whole.
    async fn list_each(
        &self,
        dir: &str,
        extra: &dyn ExtraRequests,
        sink: &mut dyn ListSink,
    ) -> Result<()> {
        let dir = dir.trim_matches('/');
        let prefix = if dir.is_empty() {
            self.prefix.clone()
        } else {
            format!("{}{dir}/", self.prefix)
        };
        let what = if dir.is_empty() { "/" } else { dir };
        // A folder ("common prefix") can show up again after a start-after inside it.
        let mut seen_dirs = std::collections::HashSet::new();
        let mut hand = |e: Entry| {
            if !e.is_dir || seen_dirs.insert(e.path.clone()) {
                sink.add(e);
            }
        };
        let first = Shard::everything(&prefix);
        // The first page is the call's own request, which the pacer already admitted.
        let Some(last) = self
            .list_shard(&first, Some(1), &Unpaced, &mut hand, what)
            .await?
        else {
            return Ok(());
        };
        let shards = Shard::after(&prefix, &last);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Entry>();
        // Each shard owns a sender: the receiver ends when the last shard is done (or dropped
        // after a failure).
        let jobs: Vec<_> = shards.into_iter().map(|s| (s, tx.clone())).collect();
        drop(tx);
        let producers = async {
            let mut running = stream::iter(jobs)
                .map(|(shard, tx)| async move {
                    // A send fails only once the receiver is gone: the listing failed.
                    let mut send = |e: Entry| drop(tx.send(e));
                    self.list_shard(&shard, None, extra, &mut send, what).await
                })
                .buffer_unordered(LIST_SHARDS_AT_ONCE.min(extra.at_once()));
            while let Some(done) = running.next().await {
                done?;
            }
            Ok(())
        };
        let consume = async {
            while let Some(e) = rx.recv().await {
                hand(e);
            }
        };
        let (listed, ()) = futures::join!(producers, consume);
        listed
    }

    async fn get(&self, path: &str) -> Result<Bytes> {
        let client = self.client().await?;
        let out = client
            .get_object()
            .bucket(&self.opts.bucket)
            .key(self.key(path))
            .send()
            .await
            .map_err(|e| self.classify(path, e))?;
        let body =
            out.body.collect().await.map_err(|e| {
                StorageError::transient(format!("{path}: download interrupted: {e}"))
            })?;
        Ok(body.into_bytes())
    }

    /// Streams the body to the file chunk by chunk.
    async fn get_file(&self, path: &str, dest: &std::path::Path) -> Result<u64> {
        let client = self.client().await?;
        let mut out = client
            .get_object()
            .bucket(&self.opts.bucket)
            .key(self.key(path))
            .send()
            .await
            .map_err(|e| self.classify(path, e))?;
        let mut file = backend_core::Download::create(path, dest).await?;
        while let Some(chunk) =
            out.body.try_next().await.map_err(|e| {
                StorageError::transient(format!("{path}: download interrupted: {e}"))
            })?
        {
            file.write(&chunk).await?;
        }
        file.finish().await
    }

    async fn put(&self, path: &str, data: Bytes) -> Result<()> {
        self.put_body(path, Body::Bytes(data)).await
    }

    /// Streams from the file (each multipart part reads its own range).
    async fn put_file(&self, path: &str, src: &FileSlice) -> Result<()> {
        self.put_body(path, Body::File(src.clone())).await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let client = self.client().await?;
        match client
            .delete_object()
            .bucket(&self.opts.bucket)
            .key(self.key(path))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match self.classify(path, e) {
                StorageError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn mkdir(&self, _path: &str) -> Result<()> {
        // No directory objects, like Joplin: a "directory" exists once a key below it does.
        Ok(())
    }

    async fn stat(&self, path: &str) -> Result<Option<Entry>> {
        let client = self.client().await?;
        match client
            .head_object()
            .bucket(&self.opts.bucket)
            .key(self.key(path))
            .send()
            .await
        {
            Ok(o) => Ok(Some(Entry {
                path: path.to_string(),
                size: o.content_length().unwrap_or(0).max(0) as u64,
                modified: to_system_time(o.last_modified()),
                is_dir: false,
            })),
            Err(e) => match self.classify(path, e) {
                StorageError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    /// DeleteObjects, up to 1000 keys a request.
    async fn delete_many(&self, paths: &[String]) -> Vec<(String, StorageError)> {
        if paths.is_empty() {
            return Vec::new();
        }
        let client = match self.client().await {
            Ok(c) => c,
            Err(e) => {
                let msg = e.to_string();
                return paths
                    .iter()
                    .map(|p| (p.clone(), StorageError::Config(msg.clone())))
                    .collect();
            }
        };
        let mut failed = Vec::new();
        for chunk in paths.chunks(MAX_DELETE_BATCH) {
            failed.extend(self.delete_batch(client, chunk).await);
        }
        failed
    }
}

/// Shards of a large folder listed side by side.
const LIST_SHARDS_AT_ONCE: usize = 8;

/// A slice of a folder's key space, by the first character of the name: the 16 lowercase hex
/// digits (item ids) as prefix listings, and the three gaps around them (`.resource/`,
/// `info.json`, `locks/`, foreign files) as start-after listings that stop at the gap's end.
/// Together they hold every name once.
#[derive(Debug, Clone)]
struct Shard {
    /// The folder listed (names are relative to it).
    folder: String,
    /// What the request asks for: the folder, or the folder plus a hex digit.
    prefix: String,
    start_after: Option<String>,
    /// Names whose first character is within these bounds (exclusive), for the gaps.
    after: Option<char>,
    before: Option<char>,
}

const HEX: &str = "0123456789abcdef";

impl Shard {
    fn everything(folder: &str) -> Shard {
        Shard {
            folder: folder.to_string(),
            prefix: folder.to_string(),
            start_after: None,
            after: None,
            before: None,
        }
    }

    /// The shards that hold the names greater than `last` (what a first page ended with).
    fn after(folder: &str, last: &str) -> Vec<Shard> {
        let lead = last.chars().next().unwrap_or('\0');
        let resume = |from: Option<String>| {
            let last_key = format!("{folder}{last}");
            Some(match from {
                Some(f) if f > last_key => f,
                _ => last_key,
            })
        };
        let mut out = Vec::new();
        for c in HEX.chars().filter(|c| *c >= lead) {
            out.push(Shard {
                folder: folder.to_string(),
                prefix: format!("{folder}{c}"),
                start_after: (c == lead).then(|| format!("{folder}{last}")),
                after: None,
                before: None,
            });
        }
        // The gaps: before '0', between '9' and 'a', after 'f'.
        for (after, before) in [(None, Some('0')), (Some('9'), Some('a')), (Some('f'), None)] {
            if before.is_some_and(|b| lead >= b) {
                continue; // wholly within the first page
            }
            // Just past every name that starts with `after`.
            let from = after.map(|a| format!("{folder}{a}{}", char::MAX));
            out.push(Shard {
                folder: folder.to_string(),
                prefix: folder.to_string(),
                start_after: resume(from),
                after,
                before,
            });
        }
        out
    }

    fn first(name: &str) -> Option<char> {
        name.chars().next()
    }

    /// Whether `name` belongs to this shard (prefix shards hold all their request returns).
    fn holds(&self, name: &str) -> bool {
        if self.prefix != self.folder || (self.after.is_none() && self.before.is_none()) {
            return true;
        }
        let Some(c) = Shard::first(name) else {
            return false;
        };
        self.after.is_none_or(|a| c > a) && self.before.is_none_or(|b| c < b)
    }

    /// Whether `name` lies beyond this gap's end, so no later page can hold more of it.
    fn is_past(&self, name: &str) -> bool {
        match (Shard::first(name), self.before) {
            (Some(c), Some(b)) => c >= b,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage(prefix: &str) -> S3Storage {
        let mut o = S3Options::new("b");
        o.prefix = prefix.into();
        S3Storage::new(o).unwrap()
    }

    /// One endpoint, one description, with or without a trailing slash.
    #[test]
    fn describe_ignores_a_trailing_slash_on_the_endpoint() {
        let with = |e: &str| {
            let mut o = S3Options::new("b");
            o.prefix = "p".into();
            o.endpoint = Some(e.into());
            S3Storage::new(o).unwrap().describe()
        };
        assert_eq!(
            with("http://127.0.0.1:9100/"),
            with("http://127.0.0.1:9100")
        );
    }

    /// `?endpoint=…` in the URL would otherwise become part of the prefix.
    #[test]
    fn a_query_in_the_target_url_is_refused_with_the_options_to_use() {
        for url in [
            "s3://b/x?endpoint=http://127.0.0.1:9100",
            "s3://b?region=eu-west-1",
            "s3://b/p#frag",
        ] {
            let err = S3Options::from_url(url).unwrap_err().to_string();
            assert!(err.contains("--endpoint URL"), "{url}: {err}");
        }
        let o = S3Options::from_url("s3://b/p/q").unwrap();
        assert_eq!((o.bucket.as_str(), o.prefix.as_str()), ("b", "p/q"));
    }

    /// Whether an S3 listing of `shard` returns `name` and the shard keeps it.
    fn covers(shard: &Shard, folder: &str, name: &str) -> bool {
        let key = format!("{folder}{name}");
        key.starts_with(&shard.prefix)
            && shard.start_after.as_ref().is_none_or(|s| key > *s)
            && shard.holds(name)
    }

    /// Every name after the first page is in exactly one shard, whatever the first page ended
    /// with; names up to it in none.
    #[test]
    fn shards_partition_the_rest_of_a_folder() {
        let names = [
            ".resource/",
            ".sync/",
            "0000000000000000000000000000000a.md",
            "0fffffffffffffffffffffffffffffff.md",
            "1abc.md",
            "5e0f.md",
            "9ffff.md",
            "9\u{e9}t\u{e9}.txt",
            ":odd",
            "ABC.md",
            "Zed",
            "_x",
            "a0.md",
            "abc.md",
            "f0.md",
            "ffff.md",
            "f\u{fc}r",
            "g.txt",
            "info.json",
            "locks/",
            "temp/",
            "\u{e9}t\u{e9}",
        ];
        for folder in ["", "pre/fix/"] {
            for (i, last) in names.iter().enumerate() {
                let shards = Shard::after(folder, last);
                for name in &names {
                    let n = shards.iter().filter(|s| covers(s, folder, name)).count();
                    let want = usize::from(*name > *last);
                    assert_eq!(n, want, "{name:?} after first page ending {last:?} ({i})");
                }
            }
        }
    }

    #[test]
    fn urls_and_prefixes() {
        let o = S3Options::from_url("s3://joplin").unwrap();
        assert_eq!((o.bucket.as_str(), o.prefix.as_str()), ("joplin", ""));
        let o = S3Options::from_url("s3://joplin/backups/main/").unwrap();
        assert_eq!(o.prefix, "backups/main/");
        assert!(S3Options::from_url("s3:///x").is_err());
        assert_eq!(normalise_prefix(""), "");
        assert_eq!(normalise_prefix("/a//b/"), "a/b/");
        assert_eq!(normalise_prefix("a"), "a/");
    }

    #[test]
    fn keys_follow_joplins_layout() {
        let s = storage("");
        assert_eq!(s.key("info.json"), "info.json");
        assert_eq!(s.key(".resource/abc"), ".resource/abc");
        let s = storage("sub");
        assert_eq!(s.key("abc.md"), "sub/abc.md");
        assert_eq!(s.key("locks/x.json"), "sub/locks/x.json");
        assert_eq!(s.path_of("sub/abc.md"), Some("abc.md"));
        assert_eq!(s.path_of("other/abc.md"), None);
    }

    #[test]
    fn error_codes_become_classes_with_advice() {
        let s = storage("");
        let e = s.classify_parts(
            "a.md",
            Some(403),
            Some("SignatureDoesNotMatch"),
            Some("x"),
            None,
        );
        assert!(matches!(e, StorageError::Auth(_)));
        assert!(e.to_string().contains("AWS_SECRET_ACCESS_KEY"), "{e}");
        let e = s.classify_parts("a.md", Some(403), None, None, None);
        assert!(matches!(e, StorageError::Auth(_)), "{e}");
        let e = s.classify_parts("a.md", Some(404), Some("NoSuchBucket"), None, None);
        assert!(e.to_string().contains("--create-bucket"), "{e}");
        assert!(!e.is_retryable());
        assert!(s
            .classify_parts("a.md", Some(404), Some("NoSuchKey"), None, None)
            .is_not_found());
        let e = s.classify_parts(
            "a.md",
            Some(503),
            Some("SlowDown"),
            None,
            Some(Duration::from_secs(2)),
        );
        assert!(e.is_retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
        assert!(s
            .classify_parts("a.md", Some(503), None, None, None)
            .is_retryable());
        assert!(s
            .classify_parts("a.md", Some(500), Some("InternalError"), None, None)
            .is_retryable());
        assert!(!s
            .classify_parts("a.md", Some(400), Some("InvalidArgument"), None, None)
            .is_retryable());
    }

    #[test]
    fn debug_never_shows_credentials() {
        let mut o = S3Options::new("b");
        o.static_credentials = Some(("AKIDSECRETISH".into(), "topsecret".into()));
        let s = S3Storage::new(o).unwrap();
        let d = format!("{s:?}");
        assert!(
            !d.contains("topsecret") && !d.contains("AKIDSECRETISH"),
            "{d}"
        );
    }
}
