//! A small upstream registry the tests own, for faults a real registry will not produce:
//! a manifest whose digest header lies, a blob cut mid-way, wrong bytes of the right length,
//! a stall past the client's timeout, an error status.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use futures_util::{stream, StreamExt as _};
use serde_json::json;

#[derive(Clone, Debug)]
pub enum BlobBehaviour {
    Serve,
    /// Sends this many bytes of the body, then drops the connection.
    CutAfter(usize),
    /// Sends bytes of the right length whose digest is wrong.
    WrongBytes,
    /// Sends this many bytes, then stalls for the duration before the rest.
    StallAfter(usize, Duration),
    Status(u16),
    /// Answers nothing (no headers) for this long, then serves.
    StallBeforeHeaders(Duration),
    /// Fails with this status this many times, then serves.
    FailTimes(usize, u16),
    /// Sends this many filler bytes, chunked (no length), whatever the manifest declared.
    Oversized(u64),
    /// Sends the body in 64 KiB chunks with this pause before each: a slow upstream.
    Paced(Duration),
    /// The first GET sends this many bytes, then drops the connection; later GETs are served,
    /// ranges (`Range: bytes=N-`) honoured.
    CutOnce(usize),
    /// As `CutOnce`, but later GETs ignore `Range` and send the whole blob (200).
    CutOnceIgnoringRange(usize),
    /// As `CutOnceIgnoringRange`, but the first GET's bytes are wrong from the first byte on:
    /// whoever mixed them with the later attempt's would hold a wrong body.
    WrongCutOnceIgnoringRange(usize),
    /// Every GET sends at most this many bytes of what it was asked for, then drops the
    /// connection (ranges honoured).
    CutEvery(usize),
}

/// An answer made by the test for each request.
pub type Answer = Arc<dyn Fn(&HttpRequest) -> HttpResponse + Send + Sync>;

#[derive(Default)]
pub struct FaultState {
    pub name: String,
    pub tags: HashMap<String, (Vec<u8>, String)>,
    /// Docker-Content-Digest to send instead of the true one.
    pub lying_digest: Option<String>,
    pub blobs: HashMap<String, (Bytes, BlobBehaviour)>,
    pub blob_gets: HashMap<String, usize>,
    /// Every blob GET: the digest and its `Range` header, in order.
    pub blob_requests: Vec<(String, Option<String>)>,
    /// A tag whose manifest is an endless body with no length (1 GiB at most).
    pub endless_manifest: Option<String>,
    /// The tag list is an endless body with no length (1 GiB at most).
    pub endless_tag_list: bool,
    /// Bytes sent of endless and oversized bodies.
    pub filler_sent: Arc<std::sync::atomic::AtomicU64>,
    /// The answer (status, body) to every `referrers/<digest>` request; none: 404.
    pub referrers: Option<(u16, String)>,
    /// Requests of `referrers/<digest>` received.
    pub referrer_gets: usize,
    /// Answers `referrers/...` requests instead of `referrers` (pages, `Link`s, stalls).
    pub referrer_pages: Option<Answer>,
    /// A `Link` header sent with the tag list.
    pub tag_list_link: Option<String>,
    /// The `Authorization` value every request must carry (else 401 with a Basic challenge).
    pub basic_auth: Option<String>,
    /// The `Authorization` headers received, in order.
    pub authorizations: Vec<String>,
    /// The `Retry-After` (seconds) sent with the failures of `FailTimes`.
    pub retry_after: Option<u64>,
    /// Blob bodies being sent now, and the most ever sent at once.
    pub blob_bodies: Arc<BodiesInFlight>,
}

/// `limit` bytes of `fill`, in 64 KiB chunks, counted into `sent` as they are produced.
fn filler(prefix: &'static [u8], fill: u8, limit: u64, sent: Arc<std::sync::atomic::AtomicU64>) -> impl futures_util::Stream<Item = Result<Bytes, actix_web::Error>> {
    stream::unfold(0u64, move |at| {
        let sent = sent.clone();
        async move {
            if at >= limit {
                return None;
            }
            let mut chunk = vec![fill; 64 * 1024];
            if at == 0 {
                chunk[..prefix.len()].copy_from_slice(prefix);
            }
            sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            Some((Ok(Bytes::from(chunk)), at + 64 * 1024))
        }
    })
}

pub struct FaultUpstream {
    pub addr: String,
    pub state: Arc<Mutex<FaultState>>,
    pub requests: Arc<AtomicUsize>,
    handle: actix_web::dev::ServerHandle,
}

impl FaultUpstream {
    pub async fn start(state: FaultState) -> Self {
        let state = Arc::new(Mutex::new(state));
        let requests = Arc::new(AtomicUsize::new(0));
        let (s, r) = (state.clone(), requests.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new((s.clone(), r.clone())))
                .default_service(web::to(counted))
        })
        .workers(2)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        FaultUpstream { addr, state, requests, handle }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn blob_gets(&self, digest: &str) -> usize {
        self.state.lock().unwrap().blob_gets.get(digest).copied().unwrap_or(0)
    }

    /// The `Range` header of each GET of `digest`, in order (None: the whole blob).
    pub fn blob_ranges(&self, digest: &str) -> Vec<Option<String>> {
        self.state.lock().unwrap().blob_requests.iter().filter(|(d, _)| d == digest).map(|(_, r)| r.clone()).collect()
    }

    pub fn set_blob(&self, digest: &str, behaviour: BlobBehaviour) {
        let mut s = self.state.lock().unwrap();
        if let Some(entry) = s.blobs.get_mut(digest) {
            entry.1 = behaviour;
        }
    }

    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}

type Shared = web::Data<(Arc<Mutex<FaultState>>, Arc<AtomicUsize>)>;

#[expect(clippy::await_holding_lock, reason = "the guard is dropped before the first await")]
async fn handle(req: HttpRequest, data: Shared) -> HttpResponse {
    data.1.fetch_add(1, Ordering::SeqCst);
    let path = req.path().to_string();
    let mut state = data.0.lock().unwrap();
    let authorization = req.headers().get("authorization").map(|v| v.to_str().unwrap_or("(not text)").to_string());
    state.authorizations.extend(authorization.clone());
    if state.basic_auth.is_some() && state.basic_auth != authorization {
        return HttpResponse::Unauthorized().insert_header(("WWW-Authenticate", r#"Basic realm="fault""#)).finish();
    }
    if path == "/v2/" {
        return HttpResponse::Ok().json(serde_json::json!({}));
    }
    let prefix = format!("/v2/{}/", state.name);
    let Some(rest) = path.strip_prefix(&prefix) else {
        return HttpResponse::NotFound().json(serde_json::json!({"errors": [{"code": "NAME_UNKNOWN"}]}));
    };
    if rest.starts_with("tags/list") && state.endless_tag_list {
        return HttpResponse::Ok().content_type("application/json").streaming(filler(br#"{"name":"x","tags":["#, b' ', 1 << 30, state.filler_sent.clone()));
    }
    if rest.strip_prefix("manifests/").is_some_and(|r| state.endless_manifest.as_deref() == Some(r)) && req.method() == actix_web::http::Method::GET {
        return HttpResponse::Ok()
            .content_type("application/vnd.oci.image.manifest.v1+json")
            .streaming(filler(br#"{"schemaVersion":2,"x":""#, b'a', 1 << 30, state.filler_sent.clone()));
    }
    if rest.starts_with("referrers/") {
        state.referrer_gets += 1;
        if let Some(pages) = state.referrer_pages.clone() {
            drop(state);
            return pages(&req);
        }
        let (status, body) = state.referrers.clone().unwrap_or((404, String::new()));
        return HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).content_type("application/vnd.oci.image.index.v1+json").body(body);
    }
    if rest == "tags/list" {
        let tags: Vec<&String> = state.tags.keys().collect();
        let mut resp = HttpResponse::Ok();
        if let Some(link) = &state.tag_list_link {
            resp.insert_header(("Link", link.clone()));
        }
        return resp.json(serde_json::json!({"name": state.name, "tags": tags}));
    }
    if let Some(reference) = rest.strip_prefix("manifests/") {
        let found = state
            .tags
            .iter()
            .find(|(tag, (bytes, _))| *tag == reference || sha256(bytes) == reference)
            .map(|(_, v)| v.clone());
        let Some((bytes, media_type)) = found else {
            return HttpResponse::NotFound().json(serde_json::json!({"errors": [{"code": "MANIFEST_UNKNOWN"}]}));
        };
        let digest = state.lying_digest.clone().unwrap_or_else(|| sha256(&bytes));
        let mut resp = HttpResponse::Ok();
        resp.insert_header(("Docker-Content-Digest", digest)).content_type(media_type);
        return if req.method() == actix_web::http::Method::HEAD { resp.finish() } else { resp.body(bytes) };
    }
    if let Some(digest) = rest.strip_prefix("blobs/") {
        let Some((body, behaviour)) = state.blobs.get(digest).cloned() else {
            return HttpResponse::NotFound().json(serde_json::json!({"errors": [{"code": "BLOB_UNKNOWN"}]}));
        };
        *state.blob_gets.entry(digest.to_string()).or_default() += 1;
        let range = req.headers().get("range").map(|v| v.to_str().unwrap_or("(not text)").to_string());
        state.blob_requests.push((digest.to_string(), range.clone()));
        if let Some(answer) = cut_or_range(&mut state, digest, &body, &behaviour, range.as_deref()) {
            return answer;
        }
        if let BlobBehaviour::FailTimes(n, code) = behaviour {
            if n > 0 {
                state.blobs.get_mut(digest).unwrap().1 = BlobBehaviour::FailTimes(n - 1, code);
                let mut resp = HttpResponse::build(actix_web::http::StatusCode::from_u16(code).unwrap());
                if let Some(seconds) = state.retry_after {
                    resp.insert_header(("Retry-After", seconds.to_string()));
                }
                return resp.json(serde_json::json!({"errors": [{"code": "UNKNOWN", "message": "injected"}]}));
            }
        }
        let sent = state.filler_sent.clone();
        drop(state);
        if let BlobBehaviour::Oversized(n) = behaviour {
            return HttpResponse::Ok().content_type("application/octet-stream").streaming(filler(b"", 0, n, sent));
        }
        if let BlobBehaviour::StallBeforeHeaders(pause) = behaviour {
            tokio::time::sleep(pause).await;
        }
        let len = body.len();
        let mut resp = HttpResponse::Ok();
        resp.insert_header(("Docker-Content-Digest", digest.to_string()))
            .content_type("application/octet-stream")
            .no_chunking(len as u64);
        let chunks = |b: Bytes| {
            let pieces: Vec<Result<Bytes, actix_web::Error>> =
                (0..b.len()).step_by(64 * 1024).map(|i| Ok(b.slice(i..(i + 64 * 1024).min(b.len())))).collect();
            pieces
        };
        return match behaviour {
            BlobBehaviour::Serve | BlobBehaviour::StallBeforeHeaders(_) | BlobBehaviour::FailTimes(..) => resp.streaming(stream::iter(chunks(body))),
            BlobBehaviour::WrongBytes => {
                let mut wrong = body.to_vec();
                let last = wrong.len() - 1;
                wrong[last] ^= 0xff;
                resp.streaming(stream::iter(chunks(Bytes::from(wrong))))
            }
            BlobBehaviour::CutAfter(n) => {
                let mut pieces = chunks(body.slice(..n));
                pieces.push(Err(actix_web::error::ErrorInternalServerError("cut")));
                resp.streaming(stream::iter(pieces))
            }
            BlobBehaviour::StallAfter(n, pause) => {
                let head = stream::iter(chunks(body.slice(..n)));
                let tail = body.slice(n..);
                let rest = futures_util::StreamExt::flat_map(
                    stream::once(async move {
                        tokio::time::sleep(pause).await;
                        tail
                    }),
                    move |b| stream::iter(chunks(b)),
                );
                resp.streaming(futures_util::StreamExt::chain(head, rest))
            }
            BlobBehaviour::Paced(pause) => resp.streaming(futures_util::StreamExt::then(stream::iter(chunks(body)), move |chunk| async move {
                tokio::time::sleep(pause).await;
                chunk
            })),
            BlobBehaviour::Oversized(_)
            | BlobBehaviour::CutOnce(_)
            | BlobBehaviour::CutOnceIgnoringRange(_)
            | BlobBehaviour::WrongCutOnceIgnoringRange(_)
            | BlobBehaviour::CutEvery(_) => {
                unreachable!("answered above")
            }
            BlobBehaviour::Status(code) => HttpResponse::build(actix_web::http::StatusCode::from_u16(code).unwrap())
                .json(serde_json::json!({"errors": [{"code": "UNKNOWN", "message": "injected"}]})),
        };
    }
    HttpResponse::NotFound().finish()
}

/// The answers of the cutting behaviours and of ranges: `body[from..]` (206 when a range was
/// asked for and is honoured), cut after `limit` bytes when the behaviour cuts this request.
fn cut_or_range(state: &mut FaultState, digest: &str, body: &Bytes, behaviour: &BlobBehaviour, range: Option<&str>) -> Option<HttpResponse> {
    let first = state.blob_gets.get(digest).copied().unwrap_or(0) == 1;
    let (honour_range, limit) = match *behaviour {
        BlobBehaviour::Serve => (true, None),
        BlobBehaviour::CutOnce(n) => (true, first.then_some(n)),
        BlobBehaviour::CutOnceIgnoringRange(n) | BlobBehaviour::WrongCutOnceIgnoringRange(n) => (false, first.then_some(n)),
        BlobBehaviour::CutEvery(n) => (true, Some(n)),
        _ => return None,
    };
    let body = match behaviour {
        BlobBehaviour::WrongCutOnceIgnoringRange(_) if first => Bytes::from(body.iter().map(|b| b ^ 0x5a).collect::<Vec<u8>>()),
        _ => body.clone(),
    };
    let from = range
        .filter(|_| honour_range)
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    if matches!(behaviour, BlobBehaviour::Serve) && from.is_none() {
        return None;
    }
    if from.is_some_and(|f| f >= body.len()) {
        return Some(HttpResponse::RangeNotSatisfiable().insert_header(("Content-Range", format!("bytes */{}", body.len()))).finish());
    }
    let start = from.unwrap_or(0);
    let rest = body.slice(start..);
    let mut resp = if from.is_some() { HttpResponse::PartialContent() } else { HttpResponse::Ok() };
    if from.is_some() {
        resp.insert_header(("Content-Range", format!("bytes {start}-{}/{}", body.len() - 1, body.len())));
    }
    resp.insert_header(("Docker-Content-Digest", digest.to_string())).content_type("application/octet-stream").no_chunking(rest.len() as u64);
    let sent = limit.map_or(rest.len(), |n| n.min(rest.len()));
    let pieces: Vec<Result<Bytes, actix_web::Error>> = (0..sent).step_by(64 * 1024).map(|i| Ok(rest.slice(i..(i + 64 * 1024).min(sent)))).collect();
    let cut = sent < rest.len();
    // The error comes a moment after the last piece, so that piece is on the wire when the
    // connection drops: the cut is exactly at `sent`.
    let end = stream::once(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Err(actix_web::error::ErrorInternalServerError("cut"))
    })
    .filter(move |_| std::future::ready(cut));
    Some(resp.streaming(futures_util::StreamExt::chain(stream::iter(pieces), end)))
}

/// An image served by the tests' own upstream: one layer of `layer` bytes.
pub fn fault_image(layer: Vec<u8>) -> (FaultState, String) {
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
    let layer_digest = sha256(&layer);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}],
    });
    let mut state = FaultState { name: "fault/app".into(), ..Default::default() };
    state.tags.insert("latest".into(), (serde_json::to_vec(&manifest).unwrap(), "application/vnd.oci.image.manifest.v1+json".into()));
    state.blobs.insert(sha256(&config), (config.into(), BlobBehaviour::Serve));
    state.blobs.insert(layer_digest.clone(), (layer.into(), BlobBehaviour::Serve));
    (state, layer_digest)
}

/// Blob bodies in flight: counted from the handler's answer until the body is sent or dropped.
#[derive(Default, Debug)]
pub struct BodiesInFlight {
    now: AtomicUsize,
    most: AtomicUsize,
}

impl BodiesInFlight {
    /// The most blob bodies that were in flight at once.
    pub fn most(&self) -> usize {
        self.most.load(Ordering::SeqCst)
    }
}

struct BodyInFlight(Arc<BodiesInFlight>);

impl BodyInFlight {
    fn new(bodies: Arc<BodiesInFlight>) -> Self {
        let now = bodies.now.fetch_add(1, Ordering::SeqCst) + 1;
        bodies.most.fetch_max(now, Ordering::SeqCst);
        BodyInFlight(bodies)
    }
}

impl Drop for BodyInFlight {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that holds its place in `BodiesInFlight` until it is sent or dropped.
struct CountedBody {
    body: actix_web::body::BoxBody,
    _in_flight: BodyInFlight,
}

impl actix_web::body::MessageBody for CountedBody {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> actix_web::body::BodySize {
        self.body.size()
    }

    fn poll_next(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Result<Bytes, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_next(cx)
    }
}

/// `handle`, with the blob bodies it sends counted.
async fn counted(req: HttpRequest, data: Shared) -> HttpResponse {
    let bodies = data.0.lock().unwrap().blob_bodies.clone();
    let blob_get = req.method() == actix_web::http::Method::GET && req.path().contains("/blobs/");
    let resp = handle(req, data).await;
    if !blob_get || !resp.status().is_success() {
        return resp;
    }
    let in_flight = BodyInFlight::new(bodies);
    resp.map_body(|_, body| actix_web::body::BoxBody::new(CountedBody { body, _in_flight: in_flight }))
}

/// An on_demand remote on `upstream` (its `fault/app`, with `extra` fields), its repository
/// synced and served at `name`.
pub async fn serve_on_demand(s: &super::TestServer, upstream: &FaultUpstream, name: &str, extra: serde_json::Value) {
    let mut body = json!({"name": name, "url": upstream.url(), "upstream_name": "fault/app", "policy": "on_demand"});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, remote) = s.post("remotes/container/container/", body).await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{remote}");
    let (_, repo) = s.post("repositories/container/container/", json!({"name": name, "remote": remote["pulp_href"]})).await;
    let (_, t) = s.post(&format!("{}sync/", repo["pulp_href"].as_str().unwrap()), json!({})).await;
    let task = s.wait_task(t["task"].as_str().unwrap()).await;
    assert_eq!(task["state"], "completed", "{task}");
    s.completed(s.post("distributions/container/container/", json!({"name": name, "base_path": name, "repository": repo["pulp_href"]})).await).await;
}

/// As `serve_on_demand`, with one try per download (`max_retries` 0) unless `extra` says otherwise.
pub async fn serve_on_demand_once(s: &super::TestServer, upstream: &FaultUpstream, name: &str, extra: serde_json::Value) {
    let mut fields = json!({"max_retries": 0});
    for (k, v) in extra.as_object().unwrap() {
        fields[k] = v.clone();
    }
    serve_on_demand(s, upstream, name, fields).await;
}
