//! The bot's members and promo codes in PostgreSQL (`members`, `promo_codes`, `promo_redemptions`); the steps
//! are shared (`sql::stores::members`), the statements are PostgreSQL's. A redemption locks the code's row
//! (`FOR UPDATE`), so concurrent redeems of one code are decided one after the other.

use sqlx::postgres::PgPool;

use crate::sql::stores::members::{self, MemberSql, PromoSql, member_columns, promo_columns};

const MEMBERS: MemberSql = MemberSql {
    insert: "INSERT INTO members (user_id, username, first_name, language, referral_code, referrer, joined_ms, \
             last_seen_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (user_id) DO NOTHING",
    refresh: "UPDATE members SET username = $2, first_name = $3, \
              language = CASE WHEN language_chosen = 1 THEN language ELSE COALESCE($4, language) END, \
              last_seen_ms = GREATEST(last_seen_ms, $5), blocked_ms = NULL WHERE user_id = $1",
    get: concat!("SELECT ", member_columns!(), " FROM members WHERE user_id = $1"),
    by_referral_code: concat!("SELECT ", member_columns!(), " FROM members WHERE referral_code = $1"),
    by_username: concat!(
        "SELECT ",
        member_columns!(),
        " FROM members WHERE lower(username) = $1 ORDER BY last_seen_ms DESC, user_id DESC LIMIT 1"
    ),
    seen: "UPDATE members SET last_seen_ms = GREATEST(last_seen_ms, $2), blocked_ms = NULL WHERE user_id = $1",
    set_language: "UPDATE members SET language = $2, language_chosen = 1 WHERE user_id = $1",
    mark_trial: "UPDATE members SET trial_granted = 1 WHERE user_id = $1 AND trial_granted = 0",
    mark_paid: "UPDATE members SET paid_ms = $2 WHERE user_id = $1 AND paid_ms IS NULL",
    set_ban: "UPDATE members SET ban_reason = $2, ban_until_ms = $3 WHERE user_id = $1",
    mark_blocked: "UPDATE members SET blocked_ms = $2 WHERE user_id = $1 AND blocked_ms IS NULL",
    audience: "SELECT user_id FROM members WHERE ($1 IS NULL OR user_id > $1) AND blocked_ms IS NULL \
               AND (ban_reason IS NULL OR ban_until_ms <= $2) AND ($3 IS NULL OR last_seen_ms >= $3) \
               AND ($4 = 0 OR paid_ms IS NOT NULL) ORDER BY user_id LIMIT $5",
    stats: "SELECT count(*) AS total, count(*) FILTER (WHERE joined_ms >= $2) AS joined_1d, \
            count(*) FILTER (WHERE last_seen_ms >= $2) AS active_1d, \
            count(*) FILTER (WHERE last_seen_ms >= $3) AS active_7d, \
            count(*) FILTER (WHERE last_seen_ms >= $4) AS active_30d, \
            count(*) FILTER (WHERE paid_ms IS NOT NULL) AS paid, \
            count(*) FILTER (WHERE ban_reason IS NOT NULL AND (ban_until_ms IS NULL OR ban_until_ms > $1)) AS banned, \
            count(*) FILTER (WHERE blocked_ms IS NOT NULL) AS blocked FROM members",
    referees: concat!(
        "SELECT ",
        member_columns!(),
        " FROM members WHERE referrer = $1 ORDER BY joined_ms DESC, user_id DESC LIMIT $2"
    ),
    referee_count: "SELECT count(*) AS n FROM members WHERE referrer = $1",
};

const PROMOS: PromoSql = PromoSql {
    create: "INSERT INTO promo_codes (code, amount, uses_max, uses, expires_ms, created_by, created_ms) \
             VALUES ($1, $2, $3, 0, $4, $5, $6) ON CONFLICT (code) DO NOTHING",
    get: concat!("SELECT ", promo_columns!(), " FROM promo_codes WHERE code = $1"),
    list: concat!("SELECT ", promo_columns!(), " FROM promo_codes ORDER BY created_ms DESC, code DESC LIMIT $1"),
    begin: "BEGIN",
    lock: concat!("SELECT ", promo_columns!(), " FROM promo_codes WHERE code = $1 FOR UPDATE"),
    redemption: "SELECT amount FROM promo_redemptions WHERE code = $1 AND user_id = $2",
    record: "INSERT INTO promo_redemptions (code, user_id, amount, redeemed_ms) VALUES ($1, $2, $3, $4)",
    use_code: "UPDATE promo_codes SET uses = uses + 1 WHERE code = $1",
};

members::member_stores!(PgMembers, PgPromos, PgPool, MEMBERS, PROMOS, "PostgreSQL");
