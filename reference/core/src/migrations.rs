//! The SQL migrations, embedded so every host applies the very files that
//! `wrangler d1 migrations apply` reads from `reference/migrations/`.

/// `(name, sql)` in the order they apply.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_initial.sql",
        include_str!("../../migrations/0001_initial.sql"),
    ),
    (
        "0002_end_users.sql",
        include_str!("../../migrations/0002_end_users.sql"),
    ),
    (
        "0003_admin_metrics.sql",
        include_str!("../../migrations/0003_admin_metrics.sql"),
    ),
    (
        "0004_mail_code_seed.sql",
        include_str!("../../migrations/0004_mail_code_seed.sql"),
    ),
];
