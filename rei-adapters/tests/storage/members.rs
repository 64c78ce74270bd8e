//! The member and promo stores on PostgreSQL and SQLite: each port's conformance suite (concurrent joins and
//! redeems included), and the schema refusing what the stores never write.

use rei_adapters::postgres::members::{PgMembers, PgPromos};
use rei_adapters::sqlite::members::{SqliteMembers, SqlitePromos};
use rei_core::testing::members::{member_store_conformance, promo_store_conformance};

use crate::support::{pg_pool, refusal, sqlite_pool};

#[tokio::test]
async fn pg_member_store_passes_the_conformance_suite() {
    // Proves the PostgreSQL member store keeps every MUST of MemberStore, 16 concurrent joins of one user
    // creating it once.
    member_store_conformance(&PgMembers::new(pg_pool(20).await)).await;
}

#[tokio::test]
async fn sqlite_member_store_passes_the_conformance_suite() {
    // Proves the SQLite member store keeps every MUST of MemberStore.
    member_store_conformance(&SqliteMembers::new(sqlite_pool().await)).await;
}

#[tokio::test]
async fn pg_promo_store_passes_the_conformance_suite() {
    // Proves the PostgreSQL promo store keeps every MUST of PromoStore: ten users racing for three uses get
    // exactly three, one user racing with themself redeems once.
    promo_store_conformance(&PgPromos::new(pg_pool(20).await)).await;
}

#[tokio::test]
async fn sqlite_promo_store_passes_the_conformance_suite() {
    // Proves the SQLite promo store keeps every MUST of PromoStore.
    promo_store_conformance(&SqlitePromos::new(sqlite_pool().await)).await;
}

/// Rows the stores never write, each of which the schema must refuse.
const REFUSED: [&str; 6] = [
    "INSERT INTO members (user_id, first_name, language, referral_code, joined_ms, last_seen_ms) \
     VALUES (1, 'a', 'ru', 'TOO-SHORT', 0, 0)",
    "INSERT INTO members (user_id, username, first_name, language, referral_code, joined_ms, last_seen_ms) \
     VALUES (1, 'has space', 'a', 'ru', 'abcdefghij', 0, 0)",
    "INSERT INTO members (user_id, first_name, language, referral_code, referrer, joined_ms, last_seen_ms) \
     VALUES (1, 'a', 'ru', 'abcdefghij', 1, 0, 0)",
    "INSERT INTO promo_codes (code, amount, uses_max, created_by, created_ms) VALUES ('lower', 1, 1, 0, 0)",
    "INSERT INTO promo_codes (code, amount, uses_max, uses, created_by, created_ms) VALUES ('A', 1, 1, 2, 0, 0)",
    "INSERT INTO promo_redemptions (code, user_id, amount, redeemed_ms) VALUES ('NONE', 1, 1, 0)",
];

#[tokio::test]
async fn the_schema_refuses_rows_the_stores_never_write() {
    // Proves each engine's schema refuses a malformed referral code or username, a self-referral, a lower-case
    // promo code, more uses than allowed, and a redemption of a code that does not exist.
    let (pg, sqlite) = (pg_pool(2).await, sqlite_pool().await);
    for sql in REFUSED {
        refusal(sqlx::query(sql).execute(&pg).await);
        refusal(sqlx::query(sql).execute(&sqlite).await);
    }
}
