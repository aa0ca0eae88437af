//! A token server for a registry in `auth: token` mode: checks Basic credentials and signs
//! ES256 JWTs carrying its certificate in `x5c`, which the registry trusts via rootcertbundle.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine;

pub const SERVICE: &str = "pulpish-test-registry";
pub const ISSUER: &str = "pulpish-test-issuer";

pub struct TokenServer {
    pub realm: String,
    pub cert_path: PathBuf,
    /// Tokens issued so far (a client that reuses tokens asks rarely).
    pub issued: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
    handle: actix_web::dev::ServerHandle,
}

struct Signer {
    user: String,
    password: String,
    key: jsonwebtoken::EncodingKey,
    cert_b64: String,
    issued: Arc<AtomicUsize>,
}

impl TokenServer {
    pub async fn start(user: &str, password: &str) -> TokenServer {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cert_path = dir.path().join("root.pem");
        std::fs::write(&cert_path, certified.cert.pem()).unwrap();
        let issued = Arc::new(AtomicUsize::new(0));
        let signer = Arc::new(Signer {
            user: user.into(),
            password: password.into(),
            key: jsonwebtoken::EncodingKey::from_ec_pem(certified.key_pair.serialize_pem().as_bytes()).unwrap(),
            cert_b64: base64::engine::general_purpose::STANDARD.encode(certified.cert.der()),
            issued: issued.clone(),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let realm = format!("http://{}/token", listener.local_addr().unwrap());
        let server = HttpServer::new(move || App::new().app_data(web::Data::new(signer.clone())).route("/token", web::get().to(token)))
            .workers(1)
            .disable_signals()
            .listen(listener)
            .unwrap()
            .run();
        let handle = server.handle();
        tokio::spawn(server);
        TokenServer { realm, cert_path, issued, _dir: dir, handle }
    }

    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

fn basic(req: &HttpRequest) -> Option<(String, String)> {
    let v = req.headers().get("authorization")?.to_str().ok()?.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(v).ok()?).ok()?;
    let (u, p) = decoded.split_once(':')?;
    Some((u.into(), p.into()))
}

async fn token(req: HttpRequest, signer: web::Data<Arc<Signer>>, query: web::Query<Vec<(String, String)>>) -> HttpResponse {
    // Anonymous callers get a token granting nothing (as Docker Hub's does); wrong passwords get 401.
    let granted = match basic(&req) {
        Some((u, p)) if u == signer.user && p == signer.password => true,
        Some(_) => return HttpResponse::Unauthorized().json(serde_json::json!({"details": "bad credentials"})),
        None => false,
    };
    let access: Vec<serde_json::Value> = query
        .iter()
        .filter(|(k, _)| k == "scope")
        .filter_map(|(_, scope)| {
            let mut parts = scope.splitn(3, ':');
            let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
            let actions: Vec<&str> = if granted { actions.split(',').collect() } else { vec![] };
            Some(serde_json::json!({"type": kind, "name": name, "actions": actions}))
        })
        .collect();
    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": "test", "aud": SERVICE, "exp": now + 300, "nbf": now - 10, "iat": now,
        "jti": uuid::Uuid::new_v4().to_string(), "access": access,
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.x5c = Some(vec![signer.cert_b64.clone()]);
    let jwt = jsonwebtoken::encode(&header, &claims, &signer.key).unwrap();
    signer.issued.fetch_add(1, Ordering::SeqCst);
    HttpResponse::Ok().json(serde_json::json!({"token": jwt, "access_token": jwt, "expires_in": 300}))
}
