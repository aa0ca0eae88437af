use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use diesel::prelude::*;

use crate::db::schema::admin_user;
use crate::db::DbConnection;

pub const ADMIN: &str = "admin";

pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashing with a fresh salt cannot fail")
        .to_string()
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
        .unwrap_or(false)
}

/// Checks passwords on a fixed number of threads, each reusing one argon2 memory block while
/// checks queue, so the memory password checks take is bounded (threads x the hash's memory
/// cost) however many requests arrive: a flood of wrong passwords queues, and past the queue's
/// size is refused. An idle thread gives its block back (19 MiB with argon2's defaults).
pub struct PasswordChecker {
    jobs: std::sync::mpsc::SyncSender<(String, String, tokio::sync::oneshot::Sender<bool>)>,
    /// Checks sent and not yet taken by a thread.
    queued: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl PasswordChecker {
    pub fn new(threads: usize, queue: usize) -> Self {
        let (jobs, rx) = std::sync::mpsc::sync_channel::<(String, String, tokio::sync::oneshot::Sender<bool>)>(queue);
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        let queued = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for n in 0..threads {
            let (rx, waiting) = (rx.clone(), queued.clone());
            let _ = std::thread::Builder::new().name(format!("password-check-{n}")).spawn(move || {
                let mut memory: Vec<argon2::Block> = Vec::new();
                loop {
                    // Idle: the block goes back before waiting (for the lock too: the other
                    // thread may hold it while it waits for a check).
                    if waiting.load(std::sync::atomic::Ordering::Acquire) == 0 {
                        memory = Vec::new();
                    }
                    let job = rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner).recv();
                    let Ok((password, hash, reply)) = job else { return };
                    waiting.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
                    let _ = reply.send(verify_with_memory(&password, &hash, &mut memory));
                }
            });
        }
        PasswordChecker { jobs, queued }
    }

    /// `None` when the queue is full (the caller answers "busy").
    pub async fn verify(&self, password: String, hash: String) -> Option<bool> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        // Counted before it can be taken, so the count never goes below zero.
        self.queued.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        if self.jobs.try_send((password, hash, reply)).is_err() {
            self.queued.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            return None;
        }
        answer.await.ok()
    }
}

/// `verify_password`, with the argon2 working memory supplied (and kept) by the caller.
fn verify_with_memory(password: &str, hash: &str, memory: &mut Vec<argon2::Block>) -> bool {
    use argon2::{Algorithm, Params, Version};
    let mut check = || -> Option<bool> {
        let parsed = PasswordHash::new(hash).ok()?;
        let params = Params::try_from(&parsed).ok()?;
        let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
        let version = match parsed.version {
            Some(v) => Version::try_from(v).ok()?,
            None => Version::default(),
        };
        let expected = parsed.hash?;
        let mut salt = [0u8; 64];
        let salt = parsed.salt?.decode_b64(&mut salt).ok()?;
        memory.resize(params.block_count(), argon2::Block::default());
        let mut out = vec![0u8; expected.len()];
        Argon2::new(algorithm, version, params).hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory[..]).ok()?;
        // Output's equality is constant-time.
        Some(argon2::password_hash::Output::new(&out).ok()? == expected)
    };
    check().unwrap_or(false)
}

pub fn password_hash(conn: &mut DbConnection, username: &str) -> QueryResult<Option<String>> {
    admin_user::table
        .filter(admin_user::username.eq(username))
        .select(admin_user::password_hash)
        .first(conn)
        .optional()
}

pub fn set_password(conn: &mut DbConnection, username: &str, password: &str) -> QueryResult<()> {
    let hash = hash_password(password);
    let updated = diesel::update(admin_user::table.filter(admin_user::username.eq(username)))
        .set(admin_user::password_hash.eq(&hash))
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(admin_user::table)
            .values((
                admin_user::username.eq(username),
                admin_user::password_hash.eq(&hash),
                admin_user::pulp_created.eq(super::now()),
            ))
            .execute(conn)?;
    }
    Ok(())
}
