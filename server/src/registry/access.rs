//! Who may do what on /v2: anonymous pulls of public distributions; pushes and private pulls
//! need the admin's Basic credentials or a Bearer token from `/token` (so `docker login` and
//! `podman login` work). Tokens are HMAC-signed with a secret kept in the database, so any
//! replica can check a token another one issued.

use actix_web::http::header::{HeaderMap, AUTHORIZATION};
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::RegistryError;
use crate::api::auth;
use crate::app::AppState;
use crate::db::DbError;
use crate::error::ApiError;
use crate::models::upload;

pub const SERVICE: &str = "pulpish";
const TOKEN_LIFETIME_SECS: i64 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pull,
    Push,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Grant {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    actions: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    access: Vec<Grant>,
}

/// What a 401 tells the client to do: get a token for this scope from our realm.
#[derive(Debug, Clone)]
pub struct Challenge {
    pub realm: String,
    pub scope: String,
}

impl Challenge {
    pub fn header(&self) -> String {
        if self.scope.is_empty() {
            format!("Bearer realm=\"{}\",service=\"{SERVICE}\"", self.realm)
        } else {
            format!("Bearer realm=\"{}\",service=\"{SERVICE}\",scope=\"{}\"", self.realm, self.scope)
        }
    }
}

/// The signing secret: created by whichever replica asks first, shared through the database.
async fn secret(state: &AppState) -> Result<&[u8], RegistryError> {
    let secret = state
        .token_secret
        .get_or_try_init(|| async {
            let hex = state
                .db
                .run(|c| {
                    upload::setting_or_init(c, "token_secret", || {
                        use rand::RngCore;
                        let mut bytes = [0u8; 32];
                        rand::rngs::OsRng.fill_bytes(&mut bytes);
                        bytes.iter().map(|b| format!("{b:02x}")).collect()
                    })
                    .map_err(DbError::from)
                })
                .await?;
            Ok::<_, RegistryError>(hex.into_bytes())
        })
        .await?;
    Ok(secret)
}

fn sign(secret: &[u8], payload: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(payload.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

fn verify_token(secret: &[u8], token: &str) -> Option<Claims> {
    let (payload, signature) = token.split_once('.')?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    mac.update(payload.as_bytes());
    mac.verify_slice(&URL_SAFE_NO_PAD.decode(signature).ok()?).ok()?;
    let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    (claims.exp > chrono::Utc::now().timestamp()).then_some(claims)
}

/// The token endpoint on the host the client asked for. The host comes from the request
/// (`Host`, `X-Forwarded-Host`): only the characters a host and port are made of are kept, so
/// that it cannot break out of the challenge's quotes.
fn realm(req: &HttpRequest) -> String {
    let info = req.connection_info();
    let host: String = info.host().chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_')).collect();
    format!("{}://{host}/token", info.scheme())
}

fn scope(name: &str, action: Action) -> String {
    let actions = if action == Action::Push { "pull,push" } else { "pull" };
    format!("repository:{name}:{actions}")
}

/// Allows `action` on repository `name`, or answers 401 with a challenge.
pub async fn authorize(state: &AppState, req: &HttpRequest, name: &str, action: Action) -> Result<(), RegistryError> {
    check_grant(state, req, name, action, scope(name, action)).await
}

/// Push on `name` for a cross-repository mount from `from`: the challenge asks for pull on
/// `from` as well (space-separated scopes, as Docker Hub does), so that the one token a client
/// fetches also lets it read the source. `from` is named only when it is a valid name.
pub async fn authorize_mount(state: &AppState, req: &HttpRequest, name: &str, from: &str) -> Result<(), RegistryError> {
    let mut scopes = scope(name, Action::Push);
    if from != name && crate::api::validate::oci_name(from).is_ok() {
        scopes = format!("{scopes} {}", scope(from, Action::Pull));
    }
    check_grant(state, req, name, Action::Push, scopes).await
}

async fn check_grant(state: &AppState, req: &HttpRequest, name: &str, action: Action, scopes: String) -> Result<(), RegistryError> {
    // The name goes into the challenge: one that is not a repository name goes nowhere.
    crate::api::validate::oci_name(name).map_err(RegistryError::NameInvalid)?;
    let challenge = || RegistryError::Unauthorized(Challenge { realm: realm(req), scope: scopes.clone() });
    let headers: &HeaderMap = req.headers();
    let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else { return Err(challenge()) };
    if value.starts_with("Basic ") || value.starts_with("basic ") {
        return check_basic(state, req).await?.then_some(()).ok_or_else(challenge);
    }
    if let Some(token) = value.strip_prefix("Bearer ") {
        let claims = verify_token(secret(state).await?, token.trim()).ok_or_else(challenge)?;
        let allowed = claims
            .access
            .iter()
            .any(|g| g.kind == "repository" && (g.name == name || g.name == "*") && g.actions.iter().any(|a| a == action.as_str() || a == "*"));
        return if allowed { Ok(()) } else { Err(challenge()) };
    }
    Err(challenge())
}

/// Whether the caller is the admin (Basic credentials, or a token issued to the admin); for
/// what anonymous callers must not even see, such as private distributions in the catalog.
pub async fn is_admin(state: &AppState, req: &HttpRequest) -> Result<bool, RegistryError> {
    let Some(value) = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else { return Ok(false) };
    if let Some(token) = value.strip_prefix("Bearer ") {
        return Ok(verify_token(secret(state).await?, token.trim()).is_some_and(|c| c.sub == "admin"));
    }
    check_basic(state, req).await
}

/// Whether the request's Basic credentials are the admin's. Throttling (too many failures from
/// this client) and an overloaded password check are errors of their own, not a challenge.
async fn check_basic(state: &AppState, req: &HttpRequest) -> Result<bool, RegistryError> {
    match auth::verify(state, req.headers(), req.peer_addr().map(|a| a.ip())).await {
        Ok(()) => Ok(true),
        Err(ApiError::Throttled(seconds)) => Err(RegistryError::TooManyRequests(format!("too many failed login attempts; try again in {seconds} seconds"))),
        Err(ApiError::Unavailable(m)) => Err(RegistryError::Unavailable(m)),
        Err(_) => Ok(false),
    }
}

/// `GET /token?service=pulpish&scope=repository:NAME:pull,push`: the admin's Basic credentials
/// get what they ask for; anonymous callers get a token that grants nothing, which is all that
/// public content needs (clients insist on a token once `/v2/` has challenged them).
pub async fn token(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, RegistryError> {
    let query = web::Query::<Vec<(String, String)>>::from_query(req.query_string()).map(|q| q.into_inner()).unwrap_or_default();
    let has_credentials = req.headers().contains_key(AUTHORIZATION);
    let admin = has_credentials && check_basic(&state, &req).await?;
    if has_credentials && !admin {
        return Err(RegistryError::Unauthorized(Challenge { realm: realm(&req), scope: String::new() }));
    }
    let access: Vec<Grant> = query
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
        .filter_map(|scope| {
            let mut parts = scope.rsplitn(2, ':');
            let actions = parts.next()?;
            let (kind, name) = parts.next()?.split_once(':')?;
            // Anonymous tokens grant nothing: public content needs no grant, private needs the admin.
            let actions = if admin { actions.split(',').map(str::to_string).collect() } else { vec![] };
            Some(Grant { kind: kind.to_string(), name: name.to_string(), actions })
        })
        .collect();
    let claims = Claims { sub: if admin { "admin".into() } else { "anonymous".into() }, exp: chrono::Utc::now().timestamp() + TOKEN_LIFETIME_SECS, access };
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("claims serialise"));
    let token = format!("{payload}.{}", sign(secret(&state).await?, &payload));
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "token": token, "access_token": token, "expires_in": TOKEN_LIFETIME_SECS,
        "issued_at": chrono::Utc::now().to_rfc3339(),
    })))
}

/// `GET /v2/`: 200 for any valid credentials or token (anonymous tokens included), else a 401
/// challenge. Clients decide at this ping how to authenticate, so it must challenge: an
/// anonymous client then fetches an anonymous token and pulls public content with it.
pub async fn check_base(state: &AppState, req: &HttpRequest) -> Result<(), RegistryError> {
    let challenge = || RegistryError::Unauthorized(Challenge { realm: realm(req), scope: String::new() });
    let Some(value) = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else { return Err(challenge()) };
    if let Some(token) = value.strip_prefix("Bearer ") {
        return verify_token(secret(state).await?, token.trim()).map(|_| ()).ok_or_else(challenge);
    }
    check_basic(state, req).await?.then_some(()).ok_or_else(challenge)
}
