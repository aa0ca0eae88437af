//! Talking to an upstream registry for a remote: the auth challenge (anonymous, Basic, Bearer
//! tokens reused until they expire), tag listing with `Link` pagination, manifests with their
//! digests checked, and blob downloads as streams. Retries 429, 5xx and connection errors.

pub mod auth;

use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, LINK, RANGE, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};
use sha2::{Digest, Sha256, Sha512};
use tokio::sync::Mutex;

use crate::models::remote::Remote;
use auth::Challenge;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
const DEFAULT_RETRIES: usize = 3;
/// The most retries and the longest timeout a remote may ask for.
pub const MAX_RETRIES: i32 = 100;
pub const MAX_TIMEOUT: Duration = Duration::from_secs(86_400);
/// Manifests larger than this are refused (the distribution spec's suggested limit).
pub const MAX_MANIFEST: usize = 4 * 1024 * 1024;
/// One page of an upstream's tag list (about 100k tags of 128 characters).
pub const MAX_TAG_PAGE: usize = 16 * 1024 * 1024;
/// Pages of one referrers answer read at most (each up to `MAX_MANIFEST`).
pub const MAX_REFERRER_PAGES: usize = 10;

#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot reach the upstream {0}")]
    Unreachable(String),
    /// The TLS handshake failed: not retried, a certificate does not change between tries.
    #[error("cannot reach the upstream {0}")]
    Tls(String),
    #[error("the upstream {0} timed out")]
    Timeout(String),
    #[error("the upstream {0} refused the credentials (HTTP 401/403): check the remote's username and password")]
    Unauthorized(String),
    #[error("{0} not found on the upstream")]
    NotFound(String),
    /// With the wait its `Retry-After` asked for, when it gave one in seconds.
    #[error("the upstream {0} is rate limiting (HTTP 429)")]
    TooManyRequests(String, Option<Duration>),
    #[error("the upstream {url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch { what: String, expected: String, actual: String },
    #[error("{0}")]
    Invalid(String),
}

impl UpstreamError {
    fn retryable(&self) -> bool {
        matches!(self, UpstreamError::Unreachable(_) | UpstreamError::Timeout(_) | UpstreamError::TooManyRequests(..))
            || matches!(self, UpstreamError::Status { status, .. } if *status >= 500)
    }
}

/// A 429's `Retry-After` in delta-seconds (an HTTP-date is not read: the backoff applies then).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds))
}

/// A manifest as received: the exact bytes, their digest, and the media type.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub bytes: bytes::Bytes,
    pub digest: String,
    pub media_type: String,
}

struct Token {
    value: String,
    expires: Instant,
}

enum Scheme {
    Anonymous,
    Basic,
    Bearer(Token),
}

/// An upstream repository as one remote sees it.
pub struct Upstream {
    http: reqwest::Client,
    registry: url::Url,
    name: String,
    credentials: Option<(String, String)>,
    scheme: Mutex<Scheme>,
    retries: usize,
    total_timeout: Option<Duration>,
    /// The remote's `rate_limit`, shared with every other client of the remote in this process.
    pace: Option<std::sync::Arc<Pace>>,
    /// The remote's timeouts, named in a timeout's message (empty when it set none).
    limits: String,
    /// The remote's proxy (without credentials), named when it refuses a tunnel.
    proxy: Option<String>,
    /// Whether the remote presents a client certificate.
    client_identity: bool,
}

/// Spaces requests `interval` apart: a request waits for the slot after the last one taken.
struct Pace {
    interval: Duration,
    next: std::sync::Mutex<tokio::time::Instant>,
}

impl Pace {
    async fn wait(&self) {
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let slot = (*next).max(tokio::time::Instant::now());
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

/// The pace of a remote with a `rate_limit` (requests per second; 0 or none is unlimited). One
/// per remote and rate in this process, so a sync and on-demand fetches share it.
fn pace_for(remote: &Remote) -> Option<std::sync::Arc<Pace>> {
    type Paces = std::sync::Mutex<std::collections::HashMap<(String, i32), std::sync::Arc<Pace>>>;
    static PACES: std::sync::LazyLock<Paces> = std::sync::LazyLock::new(Default::default);
    let rate = remote.rate_limit.filter(|r| *r > 0)?;
    let mut paces = PACES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let pace = paces.entry((remote.id.clone(), rate)).or_insert_with(|| {
        std::sync::Arc::new(Pace { interval: Duration::from_secs(1) / rate as u32, next: std::sync::Mutex::new(tokio::time::Instant::now()) })
    });
    Some(pace.clone())
}

/// The TLS client identity made of a remote's PEM certificate (chain) and private key, checked by
/// building a client with it (so a key that does not fit the certificate is refused too). The
/// error names the field at fault and says why.
pub fn client_identity(cert: &str, key: &str) -> Result<reqwest::Identity, (&'static str, String)> {
    match reqwest::Certificate::from_pem_bundle(cert.as_bytes()) {
        Ok(certs) if !certs.is_empty() => {}
        _ => return Err(("client_cert", "Not a valid PEM certificate.".into())),
    }
    let unusable = |e: reqwest::Error| ("client_key", format!("Not a valid PEM private key for client_cert: {}", error_chain(&e)));
    let identity = reqwest::Identity::from_pem(format!("{cert}\n{key}").as_bytes()).map_err(unusable)?;
    reqwest::Client::builder().identity(identity.clone()).build().map_err(unusable)?;
    Ok(identity)
}

/// A remote's stored `headers` (`[{"X-Name": "value"}, ...]`) as a header map.
fn header_map(json: &str) -> Result<HeaderMap, UpstreamError> {
    let invalid = |what: String| UpstreamError::Invalid(format!("the remote's headers are not usable: {what}"));
    let items: Vec<std::collections::BTreeMap<String, String>> = serde_json::from_str(json).map_err(|e| invalid(e.to_string()))?;
    let mut map = HeaderMap::new();
    for (name, value) in items.into_iter().flatten() {
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|e| invalid(e.to_string()))?;
        let value = reqwest::header::HeaderValue::from_str(&value).map_err(|e| invalid(e.to_string()))?;
        map.append(name, value);
    }
    Ok(map)
}

/// An error with its sources, `a: b: c`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    msg
}

const CLIENT_CERT_HINT: &str = " (the upstream wants a client certificate it trusts: set the remote's client_cert and client_key)";
const CLIENT_CERT_MAYBE: &str = " (if the upstream asks for a client certificate, set the remote's client_cert and client_key)";

/// The TLS failure under a transport error, if that is what it was, with the remote's setting that
/// can change it (the layers around it only repeat the URL).
fn tls_failure(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    use rustls::{AlertDescription, CertificateError, Error};
    fn find<'e>(err: &'e (dyn std::error::Error + 'static)) -> Option<&'e Error> {
        if let Some(tls) = err.downcast_ref::<Error>() {
            return Some(tls);
        }
        // rustls errors travel inside io::Errors (sometimes nested), whose `source()` skips them.
        match err.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref) {
            Some(inner) => find(inner),
            None => err.source().and_then(find),
        }
    }
    let Some(tls) = find(e) else {
        // Some layers keep only the text of a received alert.
        let chain = error_chain(e);
        let alert = chain.split("received fatal alert: ").nth(1)?;
        let hint = if ["BadCertificate", "CertificateRequired", "UnknownCA"].iter().any(|a| alert.starts_with(a)) { CLIENT_CERT_HINT } else { "" };
        return Some(format!("TLS handshake failed: received fatal alert: {alert}{hint}"));
    };
    let hint = match tls {
        Error::InvalidCertificate(CertificateError::UnknownIssuer | CertificateError::BadSignature) => {
            " (set the remote's ca_cert to the PEM of the CA that issued the upstream's certificate, or tls_validation to false to skip the check)"
        }
        Error::InvalidCertificate(CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }) => {
            " (the upstream's certificate is for another name than the host of the remote's url)"
        }
        Error::AlertReceived(AlertDescription::CertificateRequired | AlertDescription::BadCertificate | AlertDescription::UnknownCA) => CLIENT_CERT_HINT,
        _ => "",
    };
    Some(format!("TLS handshake failed: {tls}{hint}"))
}

/// A timeout of the remote as a `Duration`; rows written before validation existed may hold
/// values no `Duration` can (1e308, negative, NaN), which fail the fetch instead of panicking.
fn seconds(value: f64, field: &str) -> Result<Duration, UpstreamError> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero() && *d <= MAX_TIMEOUT)
        .ok_or_else(|| UpstreamError::Invalid(format!("the remote's {field} of {value} seconds is out of range (0 to {} seconds)", MAX_TIMEOUT.as_secs())))
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// The digest of `bytes` with the algorithm `like` names (`sha256:…` or `sha512:…`); `None` for
/// any other algorithm.
pub fn digest_with(like: &str, bytes: &[u8]) -> Option<String> {
    match like.split_once(':')?.0 {
        "sha256" => Some(sha256_digest(bytes)),
        "sha512" => Some(format!("sha512:{:x}", Sha512::digest(bytes))),
        _ => None,
    }
}

impl Upstream {
    pub fn for_remote(remote: &Remote) -> Result<Self, UpstreamError> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("pulpish/", env!("CARGO_PKG_VERSION")))
            .danger_accept_invalid_certs(!remote.tls_validation)
            .no_gzip()
            .no_brotli()
            .no_deflate();
        // Pulp's sock_connect_timeout is the TCP connect, which is all that connect_timeout
        // bounds here too: with both, the smaller wins.
        let connect = [("connect_timeout", remote.connect_timeout), ("sock_connect_timeout", remote.sock_connect_timeout)]
            .into_iter()
            .filter_map(|(field, v)| v.map(|v| seconds(v, field)))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .min();
        if let Some(t) = connect {
            builder = builder.connect_timeout(t);
        }
        if let Some(t) = remote.sock_read_timeout {
            builder = builder.read_timeout(seconds(t, "sock_read_timeout")?);
        }
        if let Some(h) = &remote.headers {
            builder = builder.default_headers(header_map(h)?);
        }
        match (&remote.client_cert, &remote.client_key) {
            (Some(cert), Some(key)) => {
                let identity = client_identity(cert, key).map_err(|(field, e)| UpstreamError::Invalid(format!("the remote's {field}: {e}")))?;
                builder = builder.identity(identity);
            }
            (None, None) => {}
            _ => return Err(UpstreamError::Invalid("the remote has only one of client_cert and client_key".into())),
        }
        if let Some(pem) = &remote.ca_cert {
            for cert in reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| UpstreamError::Invalid(format!("the remote's ca_cert is not valid PEM: {e}")))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let Some(proxy) = &remote.proxy_url {
            builder = builder.proxy(
                reqwest::Proxy::all(proxy).map_err(|e| UpstreamError::Invalid(format!("invalid proxy_url: {e}")))?,
            );
        }
        let http = builder.build().map_err(|e| UpstreamError::Invalid(format!("cannot build an HTTP client: {e}")))?;
        let mut registry = url::Url::parse(&remote.url).map_err(|e| UpstreamError::Invalid(format!("invalid url: {e}")))?;
        if !registry.path().ends_with('/') {
            let p = format!("{}/", registry.path());
            registry.set_path(&p);
        }
        let credentials = match (&remote.username, &remote.password) {
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            (Some(u), None) => Some((u.clone(), String::new())),
            _ => None,
        };
        Ok(Upstream {
            http,
            registry,
            name: remote.upstream_name.clone(),
            credentials,
            scheme: Mutex::new(Scheme::Anonymous),
            retries: remote.max_retries.map(|n| n.clamp(0, MAX_RETRIES) as usize).unwrap_or(DEFAULT_RETRIES),
            total_timeout: remote.total_timeout.map(|t| seconds(t, "total_timeout")).transpose()?,
            pace: pace_for(remote),
            limits: [
                ("connect_timeout", remote.connect_timeout),
                ("sock_connect_timeout", remote.sock_connect_timeout),
                ("sock_read_timeout", remote.sock_read_timeout),
                ("total_timeout", remote.total_timeout),
            ]
            .into_iter()
            .filter_map(|(field, v)| v.map(|v| format!("{field} {v} s")))
            .collect::<Vec<_>>()
            .join(", "),
            proxy: remote.proxy_url.as_deref().map(crate::models::remote::without_credentials),
            client_identity: remote.client_cert.is_some(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn describe(&self) -> String {
        format!("{}{}", self.registry, self.name)
    }

    fn url(&self, path: &str) -> String {
        format!("{}v2/{}/{}", self.registry, self.name, path)
    }

    pub fn blob_url(&self, digest: &str) -> String {
        self.url(&format!("blobs/{digest}"))
    }

    async fn auth_header(&self) -> Option<String> {
        use base64::Engine;
        match &*self.scheme.lock().await {
            Scheme::Anonymous => None,
            Scheme::Basic => self.credentials.as_ref().map(|(u, p)| {
                format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}")))
            }),
            Scheme::Bearer(t) if t.expires > Instant::now() => Some(format!("Bearer {}", t.value)),
            Scheme::Bearer(_) => None,
        }
    }

    /// One request with retries on transient failures; no auth handling.
    async fn send_once(&self, method: &Method, url: &str, headers: &HeaderMap, stream: bool, retries: usize) -> Result<Response, UpstreamError> {
        let auth = self.auth_header().await;
        let attempt = || async {
            self.pace().await;
            let mut req = self.http.request(method.clone(), url);
            if let Some(a) = &auth {
                req = req.header(AUTHORIZATION, a);
            }
            req = req.headers(headers.clone());
            // Bodies of blobs may be long; their total time is bounded by the caller.
            if let (Some(t), false) = (self.total_timeout, stream) {
                req = req.timeout(t);
            }
            let resp = req.send().await.map_err(|e| self.transport_error(url, &e))?;
            match resp.status() {
                StatusCode::TOO_MANY_REQUESTS => Err(UpstreamError::TooManyRequests(self.describe(), retry_after(resp.headers()))),
                s if s.is_server_error() => Err(UpstreamError::Status { url: url.to_string(), status: s.as_u16() }),
                _ => Ok(resp),
            }
        };
        attempt
            .retry(ExponentialBuilder::default().with_min_delay(Duration::from_millis(200)).with_max_times(retries))
            .when(UpstreamError::retryable)
            .await
    }

    /// Waits for this remote's next request slot under its `rate_limit`.
    async fn pace(&self) {
        if let Some(p) = &self.pace {
            p.wait().await;
        }
    }

    fn transport_error(&self, url: &str, e: &reqwest::Error) -> UpstreamError {
        if e.is_timeout() && self.limits.is_empty() {
            UpstreamError::Timeout(url.to_string())
        } else if e.is_timeout() {
            UpstreamError::Timeout(format!("{url} (limits: {})", self.limits))
        } else if let Some(tls) = tls_failure(e) {
            UpstreamError::Tls(format!("{url}: {tls}"))
        } else if let (Some(proxy), Some(why)) = (&self.proxy, error_chain(e).split("tunnel error: ").nth(1)) {
            // tinyproxy, for one, answers wrong credentials with 401, which hyper calls "unsuccessful".
            UpstreamError::Unreachable(format!(
                "{url}: the proxy {proxy} did not open a tunnel to it ({why}): check the remote's proxy_url, proxy_username and proxy_password"
            ))
        } else {
            let chain = error_chain(e);
            // Under TLS 1.3 an upstream refuses a missing client certificate after the handshake,
            // and its alert is often lost to the connection closing: say what may be wanted.
            let dropped = ["connection closed", "broken pipe", "connection reset"].iter().any(|d| chain.contains(d));
            let hint = if dropped && url.starts_with("https:") && !self.client_identity { CLIENT_CERT_MAYBE } else { "" };
            UpstreamError::Unreachable(format!("{url}: {chain}{hint}"))
        }
    }

    /// Sends a request, answering an auth challenge once if the upstream asks for one.
    pub async fn send(&self, method: Method, url: &str, accept: Option<&str>, stream: bool) -> Result<Response, UpstreamError> {
        let mut headers = HeaderMap::new();
        if let Some(a) = accept.and_then(|a| HeaderValue::from_str(a).ok()) {
            headers.insert(ACCEPT, a);
        }
        self.send_with(method, url, headers, stream, self.retries).await
    }

    async fn send_with(&self, method: Method, url: &str, headers: HeaderMap, stream: bool, retries: usize) -> Result<Response, UpstreamError> {
        let resp = self.send_once(&method, url, &headers, stream, retries).await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenge = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(auth::parse_challenge);
        match challenge {
            Some(Challenge::Basic) if self.credentials.is_some() => *self.scheme.lock().await = Scheme::Basic,
            Some(Challenge::Bearer { realm, service, scope }) => {
                let token = self.fetch_token(&realm, service.as_deref(), scope.as_deref()).await?;
                *self.scheme.lock().await = Scheme::Bearer(token);
            }
            _ => return Err(UpstreamError::Unauthorized(self.describe())),
        }
        let resp = self.send_once(&method, url, &headers, stream, retries).await?;
        if matches!(resp.status(), StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            return Err(UpstreamError::Unauthorized(self.describe()));
        }
        Ok(resp)
    }

    async fn fetch_token(&self, realm: &str, service: Option<&str>, scope: Option<&str>) -> Result<Token, UpstreamError> {
        let mut url = url::Url::parse(realm).map_err(|_| UpstreamError::Invalid(format!("the upstream's token realm is not a URL: {realm}")))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            let fallback = format!("repository:{}:pull", self.name);
            q.append_pair("scope", scope.unwrap_or(&fallback));
        }
        self.pace().await;
        let mut req = self.http.get(url.as_str());
        if let Some((u, p)) = &self.credentials {
            req = req.basic_auth(u, Some(p));
        }
        if let Some(t) = self.total_timeout {
            req = req.timeout(t);
        }
        let resp = req.send().await.map_err(|e| self.transport_error(url.as_str(), &e))?;
        if matches!(resp.status(), StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            return Err(UpstreamError::Unauthorized(self.describe()));
        }
        if !resp.status().is_success() {
            return Err(UpstreamError::Status { url: realm.to_string(), status: resp.status().as_u16() });
        }
        #[derive(serde::Deserialize)]
        struct TokenBody {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let body: TokenBody = resp
            .json()
            .await
            .map_err(|e| UpstreamError::Invalid(format!("the token endpoint {realm} sent an unreadable answer: {e}")))?;
        let value = body
            .token
            .or(body.access_token)
            .ok_or_else(|| UpstreamError::Invalid(format!("the token endpoint {realm} sent no token")))?;
        // Renew a little early so a token never expires mid-request.
        let lifetime = Duration::from_secs(body.expires_in.unwrap_or(60).max(10)) - Duration::from_secs(5);
        Ok(Token { value, expires: Instant::now() + lifetime })
    }

    fn check_status(&self, resp: &Response, what: &str) -> Result<(), UpstreamError> {
        match resp.status() {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND => Err(UpstreamError::NotFound(what.to_string())),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(UpstreamError::Unauthorized(self.describe())),
            s => Err(UpstreamError::Status { url: resp.url().to_string(), status: s.as_u16() }),
        }
    }

    /// Every tag, following `Link` pages; copes with registries that ignore `n` and `last`.
    pub async fn list_tags(&self) -> Result<Vec<String>, UpstreamError> {
        let mut tags: Vec<String> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut next = Some(self.url("tags/list?n=1000"));
        let what = format!("repository '{}' on {}", self.name, self.registry);
        while let Some(url) = next.take() {
            let resp = self.send(Method::GET, &url, None, false).await?;
            self.check_status(&resp, &what)?;
            next = self.next_page(resp.headers(), resp.url())?;
            let body = self.read_capped(resp, MAX_TAG_PAGE, &format!("the tag list page {url}")).await?;
            let page = parse_tag_page(&body).map_err(|e| UpstreamError::Invalid(format!("unreadable tag list from {url}: {e}")))?;
            let mut fresh = 0;
            for t in page {
                if seen.insert(t.clone()) {
                    tags.push(t);
                    fresh += 1;
                }
            }
            if fresh == 0 {
                break;
            }
        }
        Ok(tags)
    }

    /// Reads a response body, refusing it as soon as it passes `limit` bytes (whatever its
    /// `Content-Length` claims), so an upstream cannot make us hold more than `limit`.
    async fn read_capped(&self, mut resp: Response, limit: usize, what: &str) -> Result<bytes::Bytes, UpstreamError> {
        let too_large = || UpstreamError::Invalid(format!("{what} is larger than the {limit} bytes allowed"));
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let mut out = bytes::BytesMut::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport_error(what, &e))? {
            if out.len() + chunk.len() > limit {
                return Err(too_large());
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out.freeze())
    }

    /// The digest a tag or digest currently resolves to (HEAD), if the upstream says.
    pub async fn head_manifest(&self, reference: &str) -> Result<Option<String>, UpstreamError> {
        let resp = self.send(Method::HEAD, &self.url(&format!("manifests/{reference}")), Some(MANIFEST_ACCEPT), false).await?;
        self.check_status(&resp, &format!("manifest '{reference}' of '{}'", self.name))?;
        Ok(resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string))
    }

    /// Fetches a manifest and checks its digest against the bytes, the upstream's
    /// `Docker-Content-Digest`, and `reference` when it is a digest.
    pub async fn get_manifest(&self, reference: &str) -> Result<FetchedManifest, UpstreamError> {
        let what = format!("manifest '{reference}' of '{}'", self.name);
        let resp = self.send(Method::GET, &self.url(&format!("manifests/{reference}")), Some(MANIFEST_ACCEPT), false).await?;
        self.check_status(&resp, &what)?;
        let header_digest = resp.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()).map(str::to_string);
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_string());
        let bytes = self.read_capped(resp, MAX_MANIFEST, &what).await?;
        // Each digest is checked with its own algorithm; the manifest is known by the one it was
        // asked for (a `sha512:` reference stays `sha512:`), else by its sha256.
        let by_digest = reference.contains(':').then_some(reference);
        for expected in [header_digest.as_deref(), by_digest].into_iter().flatten() {
            match digest_with(expected, &bytes) {
                Some(actual) if actual != expected => {
                    return Err(UpstreamError::DigestMismatch { what, expected: expected.to_string(), actual });
                }
                Some(_) => {}
                None if Some(expected) == by_digest => {
                    return Err(UpstreamError::Invalid(format!("{what}: unsupported digest algorithm (sha256 and sha512 are)")));
                }
                None => {}
            }
        }
        let digest = by_digest.map(str::to_string).unwrap_or_else(|| sha256_digest(&bytes));
        let media_type = media_type_of(&bytes, content_type.as_deref())
            .ok_or_else(|| UpstreamError::Invalid(format!("{what} is not a Docker schema 2 or OCI manifest (schema 1 is not supported)")))?;
        Ok(FetchedManifest { bytes, digest, media_type })
    }

    /// What refers to `digest` by the upstream's referrers API (`GET /v2/<name>/referrers/<digest>`,
    /// following `Link` pages): `None` when the upstream has no such API, which is a first answer
    /// of 404 (what a registry that has the API never answers, and what spec clients take to mean
    /// "no API"), 400 or 405 (routes a registry does not know), or a 200 that is not an image index.
    /// Anything else (a 5xx or 429 after the retries, a timeout, a page over `MAX_MANIFEST` bytes,
    /// a later page that is no index) fails, naming the digest: taking a flaky upstream for one
    /// without referrers would make a mirror sync remove them. Reads at most `budget` distinct
    /// descriptors and `MAX_REFERRER_PAGES` pages, and stops at a page that adds no new digest
    /// (a `Link` back at a page already read); `cut` says when it left some unread.
    pub async fn referrers(&self, digest: &str, budget: usize) -> Result<Option<ReferrerList>, UpstreamError> {
        let failed = |e: UpstreamError| match e {
            UpstreamError::Unauthorized(_) => e,
            e => UpstreamError::Invalid(format!("reading the referrers of {digest} from {} failed: {e}", self.describe())),
        };
        let mut found = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut read: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut next = Some(self.url(&format!("referrers/{digest}")));
        let mut cut = None;
        while let Some(url) = next.take() {
            if !read.insert(url.clone()) {
                break;
            }
            if read.len() > MAX_REFERRER_PAGES {
                cut = Some(Cut::Pages);
                break;
            }
            let first = read.len() == 1;
            let resp = self.send(Method::GET, &url, Some(OCI_INDEX), false).await.map_err(failed)?;
            match resp.status() {
                s if s.is_success() => {}
                StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST | StatusCode::METHOD_NOT_ALLOWED if first => return Ok(None),
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => return Err(UpstreamError::Unauthorized(self.describe())),
                s => return Err(failed(UpstreamError::Status { url, status: s.as_u16() })),
            }
            next = self.next_page(resp.headers(), resp.url())?;
            let body = self.read_capped(resp, MAX_MANIFEST, &format!("the referrers page {url}")).await.map_err(failed)?;
            let index = serde_json::from_slice::<ReferrersIndex>(&body)
                .ok()
                .filter(|i| i.schema_version == 2 && i.media_type.as_deref().is_none_or(|m| m == OCI_INDEX));
            let Some(index) = index else {
                if first {
                    return Ok(None);
                }
                return Err(failed(UpstreamError::Invalid(format!("the referrers page {url} is not an image index"))));
            };
            let before = found.len();
            found.extend(index.manifests.into_iter().filter(|d| seen.insert(d.digest.clone())));
            if found.len() == before {
                break;
            }
            if found.len() >= budget {
                if found.len() > budget || next.is_some() {
                    cut = Some(Cut::Budget);
                }
                found.truncate(budget);
                break;
            }
        }
        Ok(Some(ReferrerList { descriptors: found, cut }))
    }

    /// The next page a `Link` header names, refused when it is on another origin (scheme, host,
    /// port) than the remote's url: the request would carry the remote's credentials there.
    fn next_page(&self, headers: &HeaderMap, base: &url::Url) -> Result<Option<String>, UpstreamError> {
        let Some(next) = next_link(headers, base) else { return Ok(None) };
        if next.origin() != self.registry.origin() {
            let host = match (next.host_str(), next.port()) {
                (Some(h), Some(p)) => format!("{h}:{p}"),
                (h, _) => h.unwrap_or("(none)").to_string(),
            };
            return Err(UpstreamError::Invalid(format!(
                "the upstream {} names a next page on another host, {host} ({}): not followed, so that the remote's credentials are sent nowhere else",
                self.describe(),
                next.as_str()
            )));
        }
        Ok(Some(next.to_string()))
    }

    /// Starts a blob download; the caller streams the body.
    pub async fn get_blob(&self, digest: &str) -> Result<Response, UpstreamError> {
        let resp = self.send(Method::GET, &self.blob_url(digest), None, true).await?;
        self.check_status(&resp, &format!("blob {digest} of '{}'", self.name))?;
        Ok(resp)
    }

    /// Asks for a blob's bytes from `offset` on (`Range: bytes=offset-`), to resume a download
    /// the upstream broke off. The caller checks whether the answer is the range (206) or the
    /// whole blob again (200), and counts the tries: none are made here.
    pub async fn get_blob_from(&self, digest: &str, offset: u64) -> Result<Response, UpstreamError> {
        let mut headers = HeaderMap::new();
        headers.insert(RANGE, HeaderValue::from_str(&format!("bytes={offset}-")).expect("a range is a header value"));
        let resp = self.send_with(Method::GET, &self.blob_url(digest), headers, true, 0).await?;
        self.check_status(&resp, &format!("blob {digest} of '{}'", self.name))?;
        Ok(resp)
    }

    /// How many times a request (or a broken-off blob download) is tried again.
    pub fn retries(&self) -> usize {
        self.retries
    }

    pub fn total_timeout(&self) -> Option<Duration> {
        self.total_timeout
    }
}

/// One descriptor of a referrers index (what a sync needs of it).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub digest: String,
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub artifact_type: Option<String>,
}

/// What an upstream's referrers API listed for one digest, and why it read no further if it
/// left some unread.
#[derive(Debug)]
pub struct ReferrerList {
    pub descriptors: Vec<Descriptor>,
    pub cut: Option<Cut>,
}

/// Why a referrers answer was read no further.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cut {
    /// It spans more than `MAX_REFERRER_PAGES` pages.
    Pages,
    /// It lists more than the budget it was asked with.
    Budget,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReferrersIndex {
    schema_version: u32,
    media_type: Option<String>,
    manifests: Vec<Descriptor>,
}

/// The media type: the document's own `mediaType`, else the response's `Content-Type`, else
/// the document's shape (umoci, for one, writes OCI manifests without `mediaType`).
pub fn media_type_of(bytes: &[u8], content_type: Option<&str>) -> Option<String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        schema_version: Option<u32>,
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        layers: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(bytes).ok()?;
    if probe.schema_version != Some(2) {
        return None;
    }
    let known = [DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX];
    if let Some(m) = probe.media_type.filter(|m| known.contains(&m.as_str())) {
        return Some(m);
    }
    if let Some(ct) = content_type.filter(|c| known.contains(c)) {
        return Some(ct.to_string());
    }
    if probe.manifests.is_some() {
        Some(OCI_INDEX.into())
    } else if probe.layers.is_some() {
        Some(OCI_MANIFEST.into())
    } else {
        None
    }
}

/// The tags of one `tags/list` page (`{"name": .., "tags": [..] | null}`).
pub fn parse_tag_page(body: &[u8]) -> Result<Vec<String>, String> {
    #[derive(serde::Deserialize)]
    struct TagList {
        tags: Option<Vec<String>>,
    }
    let page: TagList = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    Ok(page.tags.unwrap_or_default())
}

pub fn is_list(media_type: &str) -> bool {
    media_type == DOCKER_MANIFEST_LIST || media_type == OCI_INDEX
}

/// `Link: </v2/x/tags/list?last=a&n=10>; rel="next"`, resolved against the request URL.
fn next_link(headers: &HeaderMap, base: &url::Url) -> Option<url::Url> {
    let link = headers.get(LINK)?.to_str().ok()?;
    for part in link.split(',') {
        let part = part.trim();
        if !part.contains("rel=\"next\"") && !part.contains("rel=next") {
            continue;
        }
        let target = part.split(';').next()?.trim().trim_start_matches('<').trim_end_matches('>');
        return base.join(target).ok();
    }
    None
}

/// One `Upstream` per remote, kept while the remote is unchanged, so tokens are reused across
/// requests.
#[derive(Default)]
pub struct UpstreamCache {
    map: std::sync::Mutex<std::collections::HashMap<String, (chrono::NaiveDateTime, std::sync::Arc<Upstream>)>>,
}

impl UpstreamCache {
    pub fn get(&self, remote: &Remote) -> Result<std::sync::Arc<Upstream>, UpstreamError> {
        // Nothing here panics while the lock is held (the client is built outside it), and a
        // poisoned lock is taken over: the map is never left half-changed.
        let cached = self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&remote.id).cloned();
        if let Some((updated, u)) = cached {
            if updated == remote.pulp_last_updated {
                return Ok(u);
            }
        }
        let u = std::sync::Arc::new(Upstream::for_remote(remote)?);
        self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(remote.id.clone(), (remote.pulp_last_updated, u.clone()));
        Ok(u)
    }
}
