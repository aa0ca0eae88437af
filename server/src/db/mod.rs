//! The database: one connection type over SQLite and PostgreSQL, an r2d2 pool, embedded
//! migrations, and `Db::run`, the only way handlers and tasks touch it (on the blocking pool).

pub mod schema;

use std::sync::Arc;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{self, R2D2Connection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");

#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Pg(diesel::PgConnection),
    Sqlite(diesel::SqliteConnection),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgresql",
        }
    }
}

/// Parsed database URL: `postgres://` / `postgresql://` select PostgreSQL, `sqlite://PATH`
/// (or a bare path) selects SQLite.
#[derive(Debug, Clone)]
pub struct DatabaseUrl {
    pub backend: Backend,
    /// What the driver is given: the URL for libpq, the file path for SQLite.
    pub target: String,
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Self {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            DatabaseUrl { backend: Backend::Postgres, target: url.to_string() }
        } else {
            let path = url.strip_prefix("sqlite://").unwrap_or(url);
            DatabaseUrl { backend: Backend::Sqlite, target: path.to_string() }
        }
    }
}

/// Chooses the backend by URL scheme: diesel's own `establish` on the enum would try each
/// backend in turn and could turn a mistyped PostgreSQL URL into a new SQLite file.
#[derive(Debug, Clone)]
pub struct ConnectionManager {
    url: DatabaseUrl,
}

impl r2d2::ManageConnection for ConnectionManager {
    type Connection = DbConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConnection, r2d2::Error> {
        match self.url.backend {
            Backend::Postgres => diesel::PgConnection::establish(&self.url.target)
                .map(DbConnection::Pg)
                .map_err(r2d2::Error::ConnectionError),
            Backend::Sqlite => {
                let mut conn = diesel::SqliteConnection::establish(&self.url.target)
                    .map_err(r2d2::Error::ConnectionError)?;
                // busy_timeout first, so the others wait for a lock instead of failing. The
                // journal mode is not set here: switching it needs the file to itself, which
                // fails while migrations run; `Db::connect` sets it once, before the pool.
                // case_sensitive_like: `__contains` and `__startswith` match case as on PostgreSQL.
                conn.batch_execute("PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; PRAGMA case_sensitive_like = ON;")
                .map_err(r2d2::Error::QueryError)?;
                // SQLite's own lower() folds ASCII only; `__icontains` and label `~` fold all of
                // Unicode, as PostgreSQL's lower() does.
                crate::models::filter::unicode_lower_utils::register_impl(&mut conn, |text: Option<String>| text.map(|t| t.to_lowercase()))
                    .map_err(r2d2::Error::QueryError)?;
                Ok(DbConnection::Sqlite(conn))
            }
        }
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), r2d2::Error> {
        conn.ping().map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        conn.is_broken()
    }
}

pub type Pool = r2d2::Pool<ConnectionManager>;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database unavailable: {0}")]
    Pool(#[from] r2d2::PoolError),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    #[error("migrations failed: {0}")]
    Migration(String),
    #[error("database task panicked or was cancelled")]
    Join,
}

/// The pool plus which backend it speaks.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    pub backend: Backend,
    errors: Arc<ConnectionErrors>,
}

#[derive(Debug, Default)]
struct ConnectionErrors(std::sync::atomic::AtomicUsize);

/// Logs (as r2d2's default handler does) and counts the pool's failures to connect.
#[derive(Debug)]
struct ConnectionErrorLog(Arc<ConnectionErrors>);

impl r2d2::HandleError<r2d2::Error> for ConnectionErrorLog {
    fn handle_error(&self, error: r2d2::Error) {
        self.0 .0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::error!(error = %error, "cannot open a database connection");
    }
}

impl Db {
    pub fn connect(url: &str) -> Result<Self, DbError> {
        let url = DatabaseUrl::parse(url);
        let backend = url.backend;
        let max_size = match backend {
            Backend::Sqlite => 8,
            Backend::Postgres => 16,
        };
        if backend == Backend::Sqlite {
            // WAL is a property of the file: set once, by one connection, before any other opens.
            let mut first = diesel::SqliteConnection::establish(&url.target).map_err(|e| DbError::Migration(format!("cannot open {}: {e}", url.target)))?;
            first.batch_execute("PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL;").map_err(DbError::Query)?;
        }
        let errors = Arc::new(ConnectionErrors::default());
        let pool = r2d2::Pool::builder()
            .error_handler(Box::new(ConnectionErrorLog(errors.clone())))
            .max_size(max_size)
            .connection_timeout(Duration::from_secs(10))
            // A ping per checkout doubles the round trips of short queries; broken connections
            // are still detected by has_broken and replaced.
            .test_on_check_out(false)
            .build(ConnectionManager { url })?;
        Ok(Db { pool, backend, errors })
    }

    /// Connections the pool failed to open since start.
    pub fn connection_errors(&self) -> usize {
        self.errors.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The pool's connections now (open, idle), for metrics.
    pub fn pool_state(&self) -> r2d2::State {
        self.pool.state()
    }

    /// The most connections the pool opens.
    pub fn pool_max_size(&self) -> u32 {
        self.pool.max_size()
    }

    pub fn migrate(&self) -> Result<(), DbError> {
        let mut conn = self.pool.get()?;
        let result = match &mut *conn {
            DbConnection::Pg(c) => c.run_pending_migrations(POSTGRES_MIGRATIONS).map(|_| ()),
            DbConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|_| ()),
        };
        result.map_err(|e| DbError::Migration(e.to_string()))
    }

    /// Runs `f` with a pooled connection on tokio's blocking pool.
    pub async fn run<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let pool = self.pool.clone();
        let call = CALLS.try_with(CallsInFlight::enter).ok();
        tokio::task::spawn_blocking(move || {
            let _call = call;
            let mut conn = pool.get().map_err(DbError::from)?;
            f(&mut conn)
        })
        .await
        .map_err(|_| E::from(DbError::Join))?
    }

    /// Blocking access, for startup and tests.
    pub fn get(&self) -> Result<r2d2::PooledConnection<ConnectionManager>, DbError> {
        Ok(self.pool.get()?)
    }
}

tokio::task_local! {
    static CALLS: CallsInFlight;
}

/// The database calls one piece of work (a task) started that have not ended yet. A call runs
/// to its end on its blocking thread even when the work awaiting it is aborted; counting them
/// lets whoever aborted the work wait until nothing it started can still commit.
#[derive(Clone, Default)]
pub struct CallsInFlight(Arc<std::sync::atomic::AtomicUsize>);

impl CallsInFlight {
    /// `work`, with every `Db::run` it makes counted here until that call has ended.
    pub fn scope<F: std::future::Future>(&self, work: F) -> impl std::future::Future<Output = F::Output> {
        CALLS.scope(self.clone(), work)
    }

    pub fn pending(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn enter(&self) -> CallInFlight {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        CallInFlight(self.0.clone())
    }
}

/// Counted in its `CallsInFlight` until dropped (with the blocking closure that holds it).
struct CallInFlight(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for CallInFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A write transaction that serialises writers: `BEGIN IMMEDIATE` on SQLite (so two writers
/// never deadlock upgrading read locks), a plain transaction on PostgreSQL.
pub fn write_transaction<T, E, F>(conn: &mut DbConnection, f: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConnection) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    match conn {
        DbConnection::Sqlite(_) => {
            // immediate_transaction needs the inner connection type, but `f` wants the enum,
            // so open the immediate transaction by hand and let diesel nest a savepoint-free
            // transaction around it.
            conn.batch_execute("BEGIN IMMEDIATE")?;
            match f(conn) {
                Ok(v) => {
                    conn.batch_execute("COMMIT")?;
                    Ok(v)
                }
                Err(e) => {
                    let _ = conn.batch_execute("ROLLBACK");
                    Err(e)
                }
            }
        }
        DbConnection::Pg(_) => conn.transaction(f),
    }
}

pub fn is_unique_violation(e: &diesel::result::Error) -> bool {
    matches!(
        e,
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)
    )
}

/// PostgreSQL's refusal of a NUL byte in text (`invalid byte sequence for encoding "UTF8": 0x00`).
pub fn is_nul_rejection(e: &diesel::result::Error) -> bool {
    matches!(e, diesel::result::Error::DatabaseError(_, info) if info.message().contains("0x00"))
}

/// `INSERT ... ON CONFLICT DO NOTHING` on either backend: diesel offers it per backend, not on
/// the multi-backend connection, so the statement is built once per arm.
#[macro_export]
macro_rules! insert_or_ignore {
    ($conn:expr, $insert:expr) => {
        match $conn {
            $crate::db::DbConnection::Pg(c) => diesel::RunQueryDsl::execute($insert.on_conflict_do_nothing(), c),
            $crate::db::DbConnection::Sqlite(c) => diesel::RunQueryDsl::execute($insert.on_conflict_do_nothing(), c),
        }
    };
}
