//! The origin's embedded media file server: the public [`FileServer`], request dispatch and response building.
//!
//! Each request costs one hop to the blocking pool, which opens the path beneath the root
//! (openat2), fstats it, checks it may be served ([`hidden`]), evaluates conditionals and
//! ranges, and either reads a small answer in full or hands the file to a [`body::FileBody`]
//! that streams it chunk by chunk as the client asks for more. A directory listing takes a
//! second hop, and only with one of [`CONCURRENT_LISTINGS`] permits, so listings of huge
//! folders can neither take over the blocking pool nor hold much memory ([`listing`]).
//! Answers of compressible types are then gzip- or brotli-coded as the client asks ([`compress`]).

mod body;
mod cache;
mod compress;
mod conditional;
mod hidden;
mod listing;
mod mime;
mod path;
mod range;
#[cfg(test)]
mod tests;

use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use common::body::{boxed, empty, full, BoxBody};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use tokio::sync::Semaphore;
use tracing::warn;

use self::body::FileBody;
use self::cache::{Cached, SmallFiles};
use self::conditional::{Conditions, Verdict};
use self::listing::ListError;
use self::path::{FileMeta, Kind, Root, Target};
use self::range::{RangeHeader, Resolved};

/// Answers of at most this many bytes are read inside the call that opens the file.
const INLINE_MAX: u64 = 64 * 1024;

/// Directory listings built at once; more wait (without holding a blocking thread). With
/// [`common::tuning::MAX_BLOCKING_THREADS`] threads, the rest stay free for file requests.
pub const CONCURRENT_LISTINGS: usize = 4;

/// Free the file-chunk buffers kept for reuse between downloads (see `common::memory`).
pub fn release_kept_buffers() {
    body::pool::release_kept();
}

const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
const TEXT_HTML: &str = "text/html; charset=utf-8";

/// Serves the files below one directory: downloads with ranges and conditionals, and HTML
/// listings for directories. Cheap to clone (Arc inside).
#[derive(Clone)]
pub struct FileServer {
    root: Arc<Root>,
    small: Arc<SmallFiles>,
    listings: Arc<Semaphore>,
    /// Permits for answers being gzip- or brotli-coded ([`compress::CONCURRENT_CODINGS`]).
    coders: Arc<Semaphore>,
    limits: listing::Limits,
}

/// What a [`FileServer`] hides beyond its fixed rules (see [`FileServer::with_options`]).
#[derive(Debug, Clone, Default)]
pub struct FileOptions {
    /// A directory never served or listed, with everything in it (the origin's `--certs-dir`).
    pub hide: Option<PathBuf>,
    /// Serve and list dot-files and dot-directories (`--show-hidden`).
    pub show_hidden: bool,
}

impl fmt::Debug for FileServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileServer").field("root", &self.root.path()).finish()
    }
}

impl FileServer {
    /// Opens the root, which must be an existing directory; it is canonicalized once, here.
    pub fn new(root: &Path) -> io::Result<FileServer> {
        Self::hiding(root, None)
    }

    /// Drop the small files that can no longer be answered from (see `common::memory`); true
    /// while cached files are left that will age out.
    pub fn forget_unusable(&self) -> bool {
        self.small.forget_unusable(std::time::Instant::now())
    }

    /// Like [`FileServer::new`], but `hidden` (when it lies beneath the root) and everything in
    /// it are never served or listed, however they are reached: 404, as if absent. The origin
    /// hides its certificates directory this way, so a first run with `--root .` next to
    /// `certs/` cannot hand out the token.
    pub fn hiding(root: &Path, hidden: Option<&Path>) -> io::Result<FileServer> {
        Self::with_options(root, &FileOptions { hide: hidden.map(Path::to_path_buf), show_hidden: false })
    }

    /// The file server with every option. Whatever they say, these are never served or listed
    /// (404, as if absent, however they are reached: symlinks, `..` spellings, aliases):
    /// - dot-files and dot-directories and everything in them, unless `show_hidden`;
    /// - `options.hide` and everything in it;
    /// - every directory holding revmux key material (an entry named `token` or `*-key.pem`)
    ///   and everything in it, the root included.
    pub fn with_options(root: &Path, options: &FileOptions) -> io::Result<FileServer> {
        let mut root = Root::open(root)?;
        if let Some(dir) = &options.hide {
            root.hide(dir);
        }
        root.show_hidden(options.show_hidden);
        Ok(FileServer {
            root: Arc::new(root),
            small: Arc::default(),
            listings: Arc::new(Semaphore::new(CONCURRENT_LISTINGS)),
            coders: Arc::new(Semaphore::new(compress::CONCURRENT_CODINGS)),
            limits: listing::Limits::default(),
        })
    }

    /// Whether the root itself holds key material, so that nothing at all will be served.
    /// Blocking (reads the root directory); meant for a warning at start.
    pub fn root_holds_keys(&self) -> bool {
        self.root.is_key_dir(self.root.path())
    }

    /// The canonical root directory being served.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// Answer one request. Never panics; every failure is a precise status with a one-line
    /// text/plain reason.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<BoxBody> {
        let head = match *req.method() {
            Method::GET => false,
            Method::HEAD => true,
            _ => return method_not_allowed(),
        };
        let target = match path::decode(req.uri().path()) {
            Ok(target) => target,
            Err(reject) => return reject.response(head),
        };
        if self.root.policy().refuses_request(&target.rel) {
            return Reject::NotFound.response(head);
        }
        let headers = req.headers();
        let negotiation = compress::Negotiation {
            coding: compress::choose(headers),
            ranged: headers.contains_key(header::RANGE),
            head,
        };
        let path_type = mime::content_type(&target.rel);
        let ask = Ask {
            head,
            conditions: Conditions::from_headers(headers),
            range: headers.get(header::RANGE).and_then(|value| range::parse(value.as_bytes())),
        };
        // Keep only the URI (for a redirect); the request body is not needed.
        let uri = req.into_parts().0.uri;
        let response = self.answer(target, ask, &uri).await;
        compress::apply(negotiation, &path_type, &self.coders, response)
    }

    /// The answer for a decoded, admissible path, before any content coding.
    async fn answer(&self, target: Target, ask: Ask, uri: &Uri) -> Response<BoxBody> {
        let head = ask.head;
        if !target.trailing_slash {
            if let Some(cached) = self.small.fresh(&target.rel) {
                return respond(&cached.rep, &ask, |start, len| {
                    Ok(full(cached.data.slice(start as usize..(start + len) as usize)))
                });
            }
        }
        let root = Arc::clone(&self.root);
        let small = Arc::clone(&self.small);
        match tokio::task::spawn_blocking(move || serve(&root, &small, target, ask)).await {
            Ok(Outcome::Ready(response)) => response,
            Ok(Outcome::AddSlash) => add_slash(uri, head),
            Ok(Outcome::List { dir, real, rel }) => self.list(dir, real, rel, uri, head).await,
            Err(e) => {
                if let Some(suppressed) = crate::logs::FILES.allow() {
                    warn!(error = %e, path = %uri.path(), suppressed, "file server task failed");
                }
                Reject::Internal.response(head)
            }
        }
    }

    /// Build one page of a directory listing: wait for a listing permit (holding no blocking
    /// thread meanwhile), then read and render on the blocking pool with the permit held.
    async fn list(&self, dir: OwnedFd, real: PathBuf, rel: PathBuf, uri: &Uri, head: bool) -> Response<BoxBody> {
        let page = match listing::page_param(uri.query()) {
            Ok(page) => page,
            Err(_) => return Reject::BadPage.response(head),
        };
        let Ok(permit) = Arc::clone(&self.listings).acquire_owned().await else {
            return Reject::Internal.response(head);
        };
        let root = Arc::clone(&self.root);
        let limits = self.limits;
        let rendered = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            listing::render(&root, dir, &real, &rel, page, limits).map_err(|e| (e, rel))
        });
        match rendered.await {
            Ok(Ok(html)) => listing_response(html, head),
            Ok(Err((ListError::NoSuchPage, _))) => Reject::NoSuchPage.response(head),
            Ok(Err((ListError::Io(e), rel))) => {
                if let Some(suppressed) = crate::logs::FILES.allow() {
                    warn!(error = %e, path = %rel.display(), suppressed, "could not list directory");
                }
                Reject::Internal.response(head)
            }
            Err(e) => {
                if let Some(suppressed) = crate::logs::FILES.allow() {
                    warn!(error = %e, path = %uri.path(), suppressed, "directory listing task failed");
                }
                Reject::Internal.response(head)
            }
        }
    }

    /// Smaller listing bounds, to test paging and the cap on small directories.
    #[cfg(test)]
    pub(crate) fn with_limits(mut self, max_names: usize, page_size: usize) -> Self {
        self.limits = listing::Limits { max_names, page_size };
        self
    }
}

/// What the request asks for beyond the path, parsed before the blocking hop.
struct Ask {
    head: bool,
    conditions: Conditions,
    range: Option<RangeHeader>,
}

enum Outcome {
    Ready(Response<BoxBody>),
    /// A directory asked for without its trailing slash.
    AddSlash,
    /// A directory that may be listed: open, at the canonical path `real`, asked for as `rel`.
    List {
        dir: OwnedFd,
        real: PathBuf,
        rel: PathBuf,
    },
}

/// Reasons a request fails before any file is sent, each with its status and text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reject {
    BadPath,
    BadPercent,
    DotDot,
    BadSegment,
    LeavesRoot,
    Loop,
    Denied,
    NotRegular,
    NotFound,
    NotADirectory,
    BadPage,
    NoSuchPage,
    Internal,
}

impl Reject {
    fn status(self) -> StatusCode {
        match self {
            Reject::BadPath | Reject::BadPercent | Reject::BadPage => StatusCode::BAD_REQUEST,
            Reject::DotDot
            | Reject::BadSegment
            | Reject::LeavesRoot
            | Reject::Loop
            | Reject::Denied
            | Reject::NotRegular => StatusCode::FORBIDDEN,
            Reject::NotFound | Reject::NotADirectory | Reject::NoSuchPage => StatusCode::NOT_FOUND,
            Reject::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn line(self) -> &'static str {
        match self {
            Reject::BadPath => "400 bad request: path must start with /\n",
            Reject::BadPercent => "400 bad request: malformed percent-encoding in path\n",
            Reject::DotDot => "403 forbidden: path contains a .. segment\n",
            Reject::BadSegment => "403 forbidden: path segment contains a separator or NUL\n",
            Reject::LeavesRoot => "403 forbidden: path leaves the root\n",
            Reject::Loop => "403 forbidden: symlink loop or magic link\n",
            Reject::Denied => "403 forbidden: permission denied\n",
            Reject::NotRegular => "403 forbidden: not a regular file or directory\n",
            Reject::NotFound => "404 not found\n",
            Reject::NotADirectory => "404 not found: not a directory\n",
            Reject::BadPage => "400 bad request: the page parameter must be a whole number\n",
            Reject::NoSuchPage => "404 not found: this listing has no such page\n",
            Reject::Internal => "500 internal server error: could not read from disk\n",
        }
    }

    fn response(self, head: bool) -> Response<BoxBody> {
        text(self.status(), self.line(), head)
    }
}

/// The blocking part of a request: open, fstat, check that it may be served, then decide and
/// (for small answers) read.
fn serve(root: &Root, small: &SmallFiles, target: Target, ask: Ask) -> Outcome {
    let fd = match root.open_beneath(&target.rel) {
        Ok(fd) => fd,
        Err(e) => return Outcome::Ready(path::reject_for(e, &target.rel).response(ask.head)),
    };
    let meta = match FileMeta::of(&fd) {
        Ok(meta) => meta,
        Err(e) => {
            if let Some(suppressed) = crate::logs::FILES.allow() {
                warn!(error = %e, path = %target.rel.display(), suppressed, "could not stat file");
            }
            return Outcome::Ready(Reject::Internal.response(ask.head));
        }
    };
    let Some(real) = root.admits(&fd, meta.kind == Kind::Dir) else {
        return Outcome::Ready(Reject::NotFound.response(ask.head));
    };
    Outcome::Ready(match meta.kind {
        Kind::Dir if !target.trailing_slash => return Outcome::AddSlash,
        Kind::Dir => return Outcome::List { dir: fd, real, rel: target.rel },
        Kind::File if target.trailing_slash => Reject::NotADirectory.response(ask.head),
        Kind::File if meta.size <= INLINE_MAX => small_file(File::from(fd), &meta, &target.rel, &ask, small),
        Kind::File => file_response(File::from(fd), &meta, &target.rel, &ask),
        Kind::Symlink | Kind::Other => Reject::NotRegular.response(ask.head),
    })
}

/// What every answer about one version of a file says of it.
#[derive(Debug)]
pub(crate) struct Representation {
    pub(crate) size: u64,
    pub(crate) etag: String,
    pub(crate) mtime: u64,
    pub(crate) content_type: HeaderValue,
    /// `etag` and `mtime` as ready header values, built once per file version.
    etag_header: Option<HeaderValue>,
    last_modified: Option<HeaderValue>,
}

impl Representation {
    fn of(meta: &FileMeta, rel: &Path) -> Self {
        Self::new(meta.size, conditional::etag(meta), conditional::mtime_secs(meta), mime::content_type(rel))
    }

    pub(crate) fn new(size: u64, etag: String, mtime: u64, content_type: HeaderValue) -> Self {
        // Only ever ASCII we formatted ourselves, so these conversions do not fail in practice.
        let etag_header = HeaderValue::try_from(etag.as_str()).ok();
        let last_modified = HeaderValue::try_from(conditional::http_date(mtime)).ok();
        Representation { size, etag, mtime, content_type, etag_header, last_modified }
    }
}

/// A file small enough to read whole: read it, remember it, answer from memory.
fn small_file(file: File, meta: &FileMeta, rel: &Path, ask: &Ask, small: &SmallFiles) -> Response<BoxBody> {
    let data = match body::read_exact_at(&file, 0, meta.size) {
        Ok(data) => data,
        Err(e) => {
            if let Some(suppressed) = crate::logs::FILES.allow() {
                warn!(error = %e, path = %rel.display(), suppressed, "could not read file");
            }
            return Reject::Internal.response(ask.head);
        }
    };
    let cached = Arc::new(Cached::new(Representation::of(meta, rel), data));
    small.insert(rel, Arc::clone(&cached));
    respond(&cached.rep, ask, |start, len| Ok(full(cached.data.slice(start as usize..(start + len) as usize))))
}

/// A larger file: ranges of up to [`INLINE_MAX`] are read now, anything longer streams.
fn file_response(file: File, meta: &FileMeta, rel: &Path, ask: &Ask) -> Response<BoxBody> {
    respond(&Representation::of(meta, rel), ask, |start, len| {
        if len <= INLINE_MAX {
            body::read_exact_at(&file, start, len).map(full).map_err(|e| {
                if let Some(suppressed) = crate::logs::FILES.allow() {
                    warn!(error = %e, path = %rel.display(), suppressed, "could not read file");
                }
                Reject::Internal
            })
        } else {
            Ok(boxed(FileBody::new(file, start, len)))
        }
    })
}

/// Evaluate conditionals and ranges against `rep` and build the answer; `body(start, len)`
/// supplies the bytes when there are any to send.
fn respond(
    rep: &Representation,
    ask: &Ask,
    body: impl FnOnce(u64, u64) -> Result<BoxBody, Reject>,
) -> Response<BoxBody> {
    let use_range = match ask.conditions.evaluate(&rep.etag, rep.mtime) {
        Verdict::Proceed { use_range } => use_range,
        Verdict::PreconditionFailed => {
            return text(StatusCode::PRECONDITION_FAILED, "412 precondition failed\n", ask.head)
        }
        Verdict::NotModified => {
            let mut response = Response::new(empty());
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            validators(response.headers_mut(), rep);
            return response;
        }
    };
    let size = rep.size;
    let resolved = match &ask.range {
        Some(range) if use_range => range.resolve(size),
        _ => Resolved::Full,
    };
    let (status, start, len) = match resolved {
        Resolved::Full => (StatusCode::OK, 0, size),
        Resolved::Partial { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        Resolved::Unsatisfiable => {
            let mut response = text(StatusCode::RANGE_NOT_SATISFIABLE, "416 range not satisfiable\n", ask.head);
            let headers = response.headers_mut();
            headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            insert_string(headers, header::CONTENT_RANGE, format!("bytes */{size}"));
            return response;
        }
    };
    let body = if ask.head || len == 0 {
        empty()
    } else {
        match body(start, len) {
            Ok(body) => body,
            Err(reject) => return reject.response(false),
        }
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, rep.content_type.clone());
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    validators(headers, rep);
    if status == StatusCode::PARTIAL_CONTENT {
        let end = start + len - 1;
        insert_string(headers, header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}"));
    }
    response
}

/// ETag and Last-Modified.
fn validators(headers: &mut HeaderMap, rep: &Representation) {
    if let Some(etag) = &rep.etag_header {
        headers.insert(header::ETAG, etag.clone());
    }
    if let Some(date) = &rep.last_modified {
        headers.insert(header::LAST_MODIFIED, date.clone());
    }
}

fn insert_string(headers: &mut HeaderMap, name: HeaderName, value: String) {
    // Only ever called with ASCII we formatted ourselves, so this does not fail in practice.
    if let Ok(value) = HeaderValue::try_from(value) {
        headers.insert(name, value);
    }
}

fn listing_response(html: String, head: bool) -> Response<BoxBody> {
    let len = html.len() as u64;
    let mut response = Response::new(if head { empty() } else { full(html) });
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(TEXT_HTML));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// A one-line text/plain answer; for HEAD, the same headers without the body.
fn text(status: StatusCode, line: &'static str, head: bool) -> Response<BoxBody> {
    let body = if head { empty() } else { full(Bytes::from_static(line.as_bytes())) };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(TEXT_PLAIN));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(line.len()));
    response
}

fn method_not_allowed() -> Response<BoxBody> {
    let mut response =
        text(StatusCode::METHOD_NOT_ALLOWED, "405 method not allowed: only GET and HEAD are served\n", false);
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    response
}

/// 301 to the same path with a `/` appended (query kept). Runs of `/` collapse to one, so a
/// request for `//host/dir` cannot turn into a protocol-relative redirect to another site.
fn add_slash(uri: &Uri, head: bool) -> Response<BoxBody> {
    let path = uri.path();
    let query = uri.query();
    let mut location = String::with_capacity(path.len() + 2 + query.map_or(0, str::len));
    let mut after_slash = false;
    for c in path.chars() {
        if c == '/' && after_slash {
            continue;
        }
        after_slash = c == '/';
        location.push(c);
    }
    if !after_slash {
        location.push('/');
    }
    if let Some(query) = query {
        location.push('?');
        location.push_str(query);
    }
    let mut response = text(StatusCode::MOVED_PERMANENTLY, "301 moved permanently: directories end with /\n", head);
    insert_string(response.headers_mut(), header::LOCATION, location);
    response
}
