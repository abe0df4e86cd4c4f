//! Gets a feed's text: over HTTP(S) with a size bound, a timeout, conditional requests and a
//! few retries, or from a file with the same size bound. Blocking: callers on an async
//! runtime run it on a blocking thread.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use crate::config::FeedSource;

/// The largest feeds in common use (FireHOL level 4, full Spamhaus JSON) are a few MiB; a
/// body this large is a misconfigured URL, not a feed.
pub const MAX_FEED_BYTES: u64 = 64 << 20;
/// Per attempt, the body included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(60);
pub const FETCH_ATTEMPTS: u32 = 3;
/// Before the second attempt; doubled before each further one.
pub const RETRY_BACKOFF: Duration = Duration::from_secs(2);

const USER_AGENT: &str = concat!("ebpfsentinel/", env!("CARGO_PKG_VERSION"));

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchLimits {
    pub max_bytes: u64,
    pub timeout: Duration,
    /// attempts in all, at least 1
    pub attempts: u32,
    pub backoff: Duration,
}

impl Default for FetchLimits {
    fn default() -> Self {
        FetchLimits {
            max_bytes: MAX_FEED_BYTES,
            timeout: FETCH_TIMEOUT,
            attempts: FETCH_ATTEMPTS,
            backoff: RETRY_BACKOFF,
        }
    }
}

/// What identifies the version of a feed the caller already has. Over HTTP the server's
/// `ETag` and `Last-Modified`; for a file, `etag` is its size and modification time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl Validators {
    pub fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    /// The version the validators name is still current: keep its IOCs.
    NotModified,
    /// Invalid UTF-8 is replaced, not refused: it only spoils the lines it is on.
    Body {
        text: String,
        /// to pass on the next fetch, once this body has been accepted
        validators: Validators,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum FetchErrorKind {
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("the feed is larger than {0} bytes")]
    TooLarge(u64),
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Transport(String),
    #[error("the server answered 304 Not Modified to a request that named no version")]
    UnexpectedNotModified,
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl FetchErrorKind {
    /// Whether trying again soon may help: the server or the path to it is in trouble, not
    /// the request.
    fn transient(&self) -> bool {
        match self {
            FetchErrorKind::Status(status) => *status >= 500 || matches!(status, 408 | 429),
            FetchErrorKind::Timeout(_) | FetchErrorKind::Transport(_) => true,
            FetchErrorKind::TooLarge(_)
            | FetchErrorKind::UnexpectedNotModified
            | FetchErrorKind::File { .. } => false,
        }
    }
}

#[derive(Debug)]
pub struct FetchError {
    pub kind: FetchErrorKind,
    /// how many attempts were made before giving up
    pub attempts: u32,
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.kind)?;
        if self.attempts > 1 {
            write!(f, " (after {} attempts)", self.attempts)?;
        }
        Ok(())
    }
}

impl std::error::Error for FetchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            FetchErrorKind::File { source, .. } => Some(source),
            _ => None,
        }
    }
}

pub struct Fetcher {
    agent: ureq::Agent,
    limits: FetchLimits,
}

impl Default for Fetcher {
    fn default() -> Self {
        Fetcher::new(FetchLimits::default())
    }
}

impl Fetcher {
    /// Proxies come from the usual environment variables (`https_proxy`, `NO_PROXY`...).
    pub fn new(limits: FetchLimits) -> Fetcher {
        Fetcher::with_proxy(limits, ureq::Proxy::try_from_env())
    }

    /// `proxy: None` connects directly whatever the environment says.
    pub fn with_proxy(limits: FetchLimits, proxy: Option<ureq::Proxy>) -> Fetcher {
        let config = ureq::Agent::config_builder()
            // Statuses are the fetcher's to judge: 304 is an answer, not an error.
            .http_status_as_error(false)
            .timeout_global(Some(limits.timeout))
            .user_agent(USER_AGENT)
            .proxy(proxy)
            .build();
        Fetcher {
            agent: config.into(),
            limits,
        }
    }

    pub fn limits(&self) -> &FetchLimits {
        &self.limits
    }

    /// Fetches `source` unless the version `known` names is still current. Transient
    /// failures (connection errors, timeouts, cut bodies, 5xx, 408, 429) are retried up to
    /// `limits.attempts` times with doubling pauses; the others fail at once.
    pub fn fetch(
        &self,
        source: &FeedSource,
        known: &Validators,
    ) -> Result<FetchOutcome, FetchError> {
        let attempts = self.limits.attempts.max(1);
        let mut pause = self.limits.backoff;
        for attempt in 1..=attempts {
            let result = match source {
                FeedSource::Url(url) => self.get(url, known),
                FeedSource::Path(path) => read_file(path, known, self.limits.max_bytes),
            };
            match result {
                Ok(outcome) => return Ok(outcome),
                Err(kind) if attempt == attempts || !kind.transient() => {
                    return Err(FetchError {
                        kind,
                        attempts: attempt,
                    })
                }
                Err(_) => {
                    std::thread::sleep(pause);
                    pause = pause.saturating_mul(2);
                }
            }
        }
        unreachable!("the last attempt returns")
    }

    fn get(&self, url: &str, known: &Validators) -> Result<FetchOutcome, FetchErrorKind> {
        let mut request = self.agent.get(url);
        if let Some(etag) = &known.etag {
            request = request.header("If-None-Match", etag);
        }
        if let Some(date) = &known.last_modified {
            request = request.header("If-Modified-Since", date);
        }
        let mut response = request.call().map_err(|e| self.transport(e))?;
        let status = response.status().as_u16();
        match status {
            304 if known.is_empty() => return Err(FetchErrorKind::UnexpectedNotModified),
            304 => return Ok(FetchOutcome::NotModified),
            200..=299 => {}
            _ => return Err(FetchErrorKind::Status(status)),
        }
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        let validators = Validators {
            etag: header("etag"),
            last_modified: header("last-modified"),
        };
        let max = self.limits.max_bytes;
        if response
            .body()
            .content_length()
            .is_some_and(|len| len > max)
        {
            return Err(FetchErrorKind::TooLarge(max));
        }
        let bytes = response
            .body_mut()
            .with_config()
            .limit(max)
            .read_to_vec()
            .map_err(|e| match self.transport(e) {
                // Mostly a connection that closed before Content-Length bytes came.
                FetchErrorKind::Transport(message) => {
                    FetchErrorKind::Transport(format!("the body was cut short: {message}"))
                }
                other => other,
            })?;
        Ok(FetchOutcome::Body {
            text: into_text(bytes),
            validators,
        })
    }

    fn transport(&self, error: ureq::Error) -> FetchErrorKind {
        match error {
            ureq::Error::Timeout(_) => FetchErrorKind::Timeout(self.limits.timeout),
            ureq::Error::BodyExceedsLimit(_) => FetchErrorKind::TooLarge(self.limits.max_bytes),
            ureq::Error::StatusCode(status) => FetchErrorKind::Status(status),
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
                FetchErrorKind::Timeout(self.limits.timeout)
            }
            other => FetchErrorKind::Transport(other.to_string()),
        }
    }
}

fn into_text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes)
        .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned())
}

/// A file unchanged in size and modification time since `known` is not read again.
fn read_file(path: &Path, known: &Validators, max: u64) -> Result<FetchOutcome, FetchErrorKind> {
    let file_error = |source| FetchErrorKind::File {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(file_error)?;
    let metadata = file.metadata().map_err(file_error)?;
    if !metadata.is_file() {
        let source = std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file");
        return Err(file_error(source));
    }
    if metadata.len() > max {
        return Err(FetchErrorKind::TooLarge(max));
    }
    let version = metadata.modified().ok().map(|modified| {
        let since_epoch = modified.duration_since(UNIX_EPOCH).unwrap_or_default();
        format!("{}:{}", metadata.len(), since_epoch.as_nanos())
    });
    if version.is_some() && version == known.etag {
        return Ok(FetchOutcome::NotModified);
    }
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    // A file still growing while it is read is held to the same bound.
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(file_error)?;
    if bytes.len() as u64 > max {
        return Err(FetchErrorKind::TooLarge(max));
    }
    Ok(FetchOutcome::Body {
        text: into_text(bytes),
        validators: Validators {
            etag: version,
            last_modified: None,
        },
    })
}
