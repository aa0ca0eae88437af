//! Builds the actix application for `serve` and for tests, and starts the server on a bound
//! listener (tests bind 127.0.0.1:0 and read the port back).

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::OpenApi;
use utoipa_actix_web::{scope, AppExt};

use crate::api::{self, artifacts, auth, content, distributions, docs, remotes, repositories, status, tasks as task_api, workers, labels};
use crate::config::Config;
use crate::db::{Db, DbError};
use crate::models::admin;
use crate::storage::Storage;
use crate::tasks::{self, TaskQueue};

/// What every handler and task shares.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub storage: Storage,
    pub config: Arc<Config>,
    pub tasks: Arc<TaskQueue>,
    pub credentials: Arc<auth::VerifiedCredentials>,
    pub openapi_json: Arc<str>,
    pub fetcher: Arc<crate::ondemand::BlobFetcher>,
    pub upstreams: Arc<crate::upstream::UpstreamCache>,
    pub metrics: Arc<crate::observe::Metrics>,
    /// `/readyz`: the shutdown flag and the last checks.
    pub readiness: Arc<crate::health::Readiness>,
    /// The /token signing secret, read from the database once (it never changes after creation).
    pub token_secret: Arc<tokio::sync::OnceCell<Vec<u8>>>,
    /// Held while this replica runs on SQLite with an object store (see `sqlite_single_replica`).
    pub _replica_lock: Arc<Option<std::fs::File>>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "pulpish", description = "A container content manager with Pulp 3's container API."),
    modifiers(&BasicAuth),
    security(("basicAuth" = []))
)]
struct ApiDoc;

struct BasicAuth;

impl utoipa::Modify for BasicAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("basicAuth", SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)));
    }
}

fn register(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(
        scope::scope("/pulp/api/v3")
            .wrap(from_fn(auth::require_basic_auth))
            // No such endpoint (or not with this method): Pulp's JSON 404, not an empty body.
            .default_service(web::to(|| async { Err::<actix_web::HttpResponse, _>(crate::error::ApiError::not_found()) }))
            .service(status::status)
            .service(remotes::list)
            .service(remotes::create)
            .service(remotes::read)
            .service(remotes::update)
            .service(remotes::partial_update)
            .service(remotes::remove)
            .service(api::pull_through::remote_list)
            .service(api::pull_through::remote_create)
            .service(api::pull_through::remote_read)
            .service(api::pull_through::remote_update)
            .service(api::pull_through::remote_partial_update)
            .service(api::pull_through::remote_remove)
            .service(repositories::list)
            .service(repositories::create)
            .service(repositories::read)
            .service(repositories::update)
            .service(repositories::partial_update)
            .service(repositories::remove)
            .service(repositories::list_versions)
            .service(repositories::read_version)
            .service(repositories::sync)
            .service(repositories::delete_version)
            .service(api::actions::tag_image)
            .service(api::actions::untag_image)
            .service(api::actions::add_content)
            .service(api::actions::remove_content)
            .service(api::actions::copy_tags)
            .service(api::actions::copy_manifests)
            .service(api::orphans::cleanup)
            .service(distributions::list)
            .service(distributions::create)
            .service(distributions::read)
            .service(distributions::update)
            .service(distributions::partial_update)
            .service(distributions::remove)
            .service(api::pull_through::distribution_list)
            .service(api::pull_through::distribution_create)
            .service(api::pull_through::distribution_read)
            .service(api::pull_through::distribution_update)
            .service(api::pull_through::distribution_partial_update)
            .service(api::pull_through::distribution_remove)
            .service(content::list_blobs)
            .service(content::read_blob)
            .service(content::list_manifests)
            .service(content::read_manifest)
            .service(content::list_tags)
            .service(content::read_tag)
            .service(artifacts::list)
            .service(artifacts::read)
            .service(task_api::list)
            .service(task_api::read)
            .service(task_api::purge)
            .service(task_api::cancel)
            .service(task_api::remove)
            .service(labels::remote_set)
            .service(labels::remote_unset)
            .service(labels::repository_set)
            .service(labels::repository_unset)
            .service(labels::distribution_set)
            .service(labels::distribution_unset)
            .service(workers::list)
            .service(workers::read)
            .service(api::schedules::list)
            .service(api::schedules::create)
            .service(api::schedules::read)
            .service(api::schedules::update)
            .service(api::schedules::partial_update)
            .service(api::schedules::remove),
    );
}

/// The OpenAPI document, generated from the handlers' annotations.
pub fn openapi() -> utoipa::openapi::OpenApi {
    App::new().into_utoipa_app().openapi(ApiDoc::openapi()).configure(register).split_for_parts().1
}

/// The served document: Pulp's shape (href-keyed detail paths, Pulp's schema names and
/// `x-pulp-app-versions`), which pulp-cli and Pulp's bindings read.
pub fn openapi_json() -> String {
    let concrete = serde_json::to_value(openapi()).expect("the OpenAPI document serialises");
    serde_json::to_string_pretty(&crate::api::docs::pulp_document(concrete)).expect("JSON serialises")
}

/// The document with the routes' own paths (`/pulp/api/v3/tasks/{id}/`), for tools that generate
/// requests from URL templates (the schemathesis test).
pub fn openapi_concrete_json() -> String {
    openapi().to_pretty_json().expect("the OpenAPI document serialises")
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot prepare the data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("cannot listen: {0}")]
    Listen(std::io::Error),
    #[error("storage: {0}")]
    Storage(String),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// Opens the database (migrating it), the store, and the admin account.
pub async fn prepare(config: Config) -> Result<AppState, StartError> {
    let data_dir_err = |source| StartError::DataDir { path: config.data_dir.display().to_string(), source };
    std::fs::create_dir_all(&config.data_dir).map_err(data_dir_err)?;
    let storage = Storage::open_with(&config.data_dir, &config.storage).map_err(StartError::Storage)?;
    storage.check().await.map_err(|e| StartError::Storage(e.to_string()))?;
    let db = Db::connect(&config.database_url())?;
    let migrate = db.clone();
    tokio::task::spawn_blocking(move || migrate.migrate()).await.map_err(|_| DbError::Join)??;
    db.run(|c| crate::models::referrer::index_subjects(c).map_err(DbError::from)).await?;
    let replica_lock = sqlite_single_replica(&config)?;

    let given = config.admin_password.clone();
    let generated = db
        .run(move |c| {
            if let Some(password) = given {
                admin::set_password(c, admin::ADMIN, &password)?;
                return Ok::<_, DbError>(None);
            }
            if admin::password_hash(c, admin::ADMIN)?.is_some() {
                return Ok(None);
            }
            let password = random_password();
            admin::set_password(c, admin::ADMIN, &password)?;
            Ok(Some(password))
        })
        .await?;
    if let Some(password) = generated {
        // Printed once: only its hash is stored.
        println!("Generated password for user 'admin': {password}");
        println!("It is stored hashed and will not be shown again; set PULPISH_ADMIN_PASSWORD to change it.");
    }

    Ok(AppState {
        db,
        storage,
        config: Arc::new(config),
        tasks: Arc::new(TaskQueue::default()),
        credentials: Arc::default(),
        openapi_json: openapi_json().into(),
        fetcher: Arc::default(),
        upstreams: Arc::default(),
        metrics: Arc::default(),
        readiness: Arc::default(),
        token_secret: Arc::default(),
        _replica_lock: Arc::new(replica_lock),
    })
}

/// SQLite is a file on one machine, so it serves one replica. With the filesystem store a
/// second process on the same data directory is still one machine's install; with an object
/// store it is a second replica that SQLite cannot coordinate, so it is refused.
fn sqlite_single_replica(config: &Config) -> Result<Option<std::fs::File>, StartError> {
    let url = crate::db::DatabaseUrl::parse(&config.database_url());
    if url.backend != crate::db::Backend::Sqlite || config.storage.kind != crate::config::StorageKind::S3 {
        return Ok(None);
    }
    // The database exists by now: one lock per file, however its path was spelled.
    let path = std::fs::canonicalize(&url.target).map_err(|e| StartError::Storage(format!("cannot resolve {}: {e}", url.target)))?;
    let path = path.display();
    let lock_path = format!("{path}.replica.lock");
    let lock = std::fs::File::create(&lock_path).map_err(|e| StartError::Storage(format!("cannot create {lock_path}: {e}")))?;
    lock.try_lock().map_err(|_| {
        StartError::Storage(format!(
            "another pulpish already serves {path} with --storage s3: SQLite serves a single replica; \
             run several replicas on PostgreSQL (--database-url postgres://...)"
        ))
    })?;
    Ok(Some(lock))
}

fn random_password() -> String {
    use rand::distributions::{Alphanumeric, DistString};
    Alphanumeric.sample_string(&mut rand::rngs::OsRng, 24)
}

/// Every replica sweeps, at start and then periodically: uploads untouched for too long, staged
/// bytes that no upload owns any more, and scratch files of processes that died. Removing a
/// thing twice is harmless.
fn spawn_sweeper(state: AppState) {
    let max_age = std::time::Duration::from_secs(state.config.upload_expiry);
    let every = (max_age / 2).clamp(std::time::Duration::from_millis(200), std::time::Duration::from_secs(60));
    tokio::spawn(async move {
        loop {
            sweep(&state, max_age).await;
            tokio::time::sleep(every).await;
        }
    });
}

pub async fn sweep(state: &AppState, max_age: std::time::Duration) {
    match crate::registry::reap_stale_uploads(state, max_age).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(removed = n, "removed stale uploads"),
        Err(e) => tracing::warn!(error = %e, "stale upload sweep failed"),
    }
    match crate::registry::sweep_staged_uploads(state).await {
        Ok(0) => {}
        Ok(bytes) => tracing::info!(bytes, "removed staged upload bytes that no upload owns"),
        Err(e) => tracing::warn!(error = %e, "staged upload sweep failed"),
    }
    // A secret staged for a task that failed or was cancelled before it took it.
    let day_ago = crate::models::now() - chrono::Duration::days(1);
    if let Err(e) = state.db.run(move |c| crate::models::secret::drop_stale(c, day_ago).map_err(DbError::from)).await {
        tracing::warn!(error = %e, "staged secret sweep failed");
    }
    // Artifact claims and deletion markers of writers and cleanups that died.
    if let Err(e) = state.db.run(|c| { let now = crate::models::database_now(c)?; crate::models::claim::drop_stale(c, now) }).await {
        tracing::warn!(error = %e, "stale artifact claim sweep failed");
    }
    // Download leases lapsed for a day: their replica died and nobody asked for the blob since.
    if let Err(e) = state.db.run(move |c| crate::models::lease::drop_lapsed(c, day_ago).map_err(DbError::from)).await {
        tracing::warn!(error = %e, "lapsed lease sweep failed");
    }
    let storage = state.storage.clone();
    match tokio::task::spawn_blocking(move || storage.sweep_scratch()).await {
        Ok(Ok(0)) => {}
        Ok(Ok(bytes)) => tracing::info!(bytes, "removed scratch files of stopped processes"),
        Ok(Err(e)) => tracing::warn!(error = %e, "scratch sweep failed"),
        Err(_) => {}
    }
}

pub struct RunningServer {
    pub addr: SocketAddr,
    pub state: AppState,
    pub server: actix_web::dev::Server,
}

/// Starts workers and the HTTP server on `listener`; `run_until_stopped` (or awaiting `server`)
/// runs it until stopped.
pub async fn start(state: AppState, listener: TcpListener) -> Result<RunningServer, StartError> {
    let addr = listener.local_addr().map_err(StartError::Listen)?;
    let https = crate::tls::load(&state.config.tls)?;
    if state.config.cluster.advertise_url.is_none() && addr.ip().is_unspecified() && state.db.backend == crate::db::Backend::Postgres {
        // Other replicas would call http://0.0.0.0:PORT: themselves.
        tracing::warn!(bind = %addr, "bound to every address without --advertise-url: other replicas cannot reach this one to share its downloads; set --advertise-url to this replica's own address");
    }
    state.fetcher.set_advertise_url(state.config.cluster.advertise_url.clone().unwrap_or_else(|| format!("{}://{addr}", if https.is_some() { "https" } else { "http" })));
    state.fetcher.set_runtime(tokio::runtime::Handle::current());
    if let Some(https) = &https {
        state.fetcher.trust_peers(https.peers.clone());
    }
    tasks::start_workers(state.clone(), state.config.workers).await?;
    spawn_sweeper(state.clone());
    crate::sync::schedule::spawn(state.clone());
    let data = web::Data::new(state.clone());
    let server = HttpServer::new(move || {
        let (app, _) = App::new()
            .app_data(data.clone())
            .configure(api::extractor_config)
            // Outermost: every response gets its request id, is counted and logged.
            .wrap(from_fn(crate::observe::request::observe_request))
            .service(docs::api_json)
            .service(docs::swagger_index)
            .service(docs::swagger_js)
            .service(docs::swagger_css)
            .configure(crate::registry::routes)
            .configure(crate::ondemand::peer::routes)
            .service(crate::health::livez)
            .service(crate::health::readyz)
            .configure(crate::observe::scrape::routes)
            .into_utoipa_app()
            .configure(register)
            .split_for_parts();
        // Outside /v2 and the API too, an unknown path is Pulp's JSON 404, not an empty body.
        app.default_service(web::to(|| async { Err::<actix_web::HttpResponse, _>(crate::error::ApiError::not_found()) }))
    })
    .workers(2)
    // Each worker's blocking pool runs the database calls; a small pool keeps memory flat
    // under bursts (every thread brings its own stack and malloc arena).
    .worker_max_blocking_threads(16)
    // Signals are handled by `RunningServer::run_until_stopped` (shutdown.rs), which stops this
    // server gracefully; connections still open at the deadline are closed.
    .disable_signals()
    .shutdown_timeout(state.config.shutdown_timeout);
    let server = match https {
        Some(https) => server.listen_rustls_0_23(listener, https.server),
        None => server.listen(listener),
    }
    .map_err(StartError::Listen)?
    .run();
    Ok(RunningServer { addr, state, server })
}
