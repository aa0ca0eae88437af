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
