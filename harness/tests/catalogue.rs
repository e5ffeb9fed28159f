//! The suite catches what it should: for each deliberately non-conformant target in
//! [`faulty::Fault`] the suite fails, and it fails in the scenario meant to catch that defect.
//! The same suite passes against the reference itself (the embedded run in `scripts/test`), so
//! each failure here is the fault's doing.

mod faulty;

use authconf::bench::fixtures::admin_key;
use authconf::{run_suite, RunOptions, Target, Verdict};
use faulty::Fault;

/// The area to run for a fault and a part of the name of the scenario that must fail.
fn expectation(fault: Fault) -> (&'static str, &'static str) {
    match fault {
        Fault::SecretInList => ("@secrecy", "shows no secret"),
        Fault::LaggingRevocation => ("@rotation", "Revoking a key refuses it at once"),
        Fault::ForeignKeyListed => (
            "@isolation",
            "Another tenant's key list does not show this tenant's keys",
        ),
        Fault::No429 => (
            "@rate-limit",
            "A burst of 12 requests under a limit of 5 gets exactly 5 through",
        ),
        Fault::NoRetryAfter => (
            "@rate-limit",
            "Refusals over the limit are 429 problems with Retry-After",
        ),
        Fault::BadJson500 => ("@errors", "is invalid JSON"),
        Fault::RotationKeepsOldKey => (
            "@rotation",
            "After rotation the new key works and the old key is refused at once",
        ),
        Fault::EventsToWrongTenant => (
            "@durable-object",
            "Another tenant's stream hears nothing of this tenant's actions",
        ),
        Fault::TenantKeyIsAdmin => ("@isolation", "key on"),
        Fault::ObjectStateWithoutKey => ("@durable-object", "without a key is refused"),
        Fault::LogoutKeepsToken => (
            "@user-auth",
            "Logout refuses the token on the very next request",
        ),
        Fault::RetryAfterMs => (
            "@rate-limit",
            "Refusals over the limit are 429 problems with Retry-After",
        ),
        Fault::RevocationNotAudited | Fault::AuditOutOfOrder | Fault::ForeignAuditRecords => (
            "@needs-audit-log",
            "After a sequence of changes the log holds one record per change",
        ),
        Fault::ValidateAfterLogout => (
            "@user-auth",
            "Logout refuses the token on the very next request",
        ),
        Fault::SlowKnownLogins => (
            "@timing",
            "Wrong-password logins for a known and an unknown address take the same time",
        ),
        Fault::SqlInDetail => ("@errors", "is invalid JSON"),
        Fault::InvertedGraphCheck => (
            "@graph",
            "Check follows direct edges and membership, and denies what does not hold",
        ),
        Fault::InvalidCsvAccepted => (
            "@graph",
            "A bad CSV is refused naming its line and column, and nothing of it is stored",
        ),
        Fault::GraphVersionStuck => ("@graph", "Each mutation call is one new version"),
        Fault::FirstEventOnly => (
            "@needs-events",
            "A stream receives every event of a sequence of changes",
        ),
        Fault::CachedRevokedKeys => (
            "@rotation",
            "Revoking a key refuses it at once and repeating the revocation is harmless",
        ),
    }
}

/// One suite run at a time: 25 whole-suite runs at once on a 2-core machine starve each
/// other's timing-sensitive scenarios (event streams, busy neighbours in the audit log), and a
/// catch must come from the fault, not from the load.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn catches(fault: Fault) {
    let _alone = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = admin_key();
    let reference = auth_service::spawn(auth_service::Config {
        listen: ([127, 0, 0, 1], 0).into(),
        data_dir: dir.path().to_owned(),
        base_domain: Some("auth.test".into()),
        admin_key: Some(key.clone()),
        test_hooks: true,
    })
    .await
    .expect("reference starts");
    let proxy = faulty::start(fault, &reference.base_url(), &key).await;
    let reports = tempfile::tempdir().expect("tempdir");
    let (tags, scenario) = expectation(fault);
    let outcome = run_suite(RunOptions {
        target: Target::Url(proxy.url()),
        admin_key: Some(key),
        base_domain: Some("auth.test".into()),
        tags: Some(tags.into()),
        report_dir: reports.path().to_owned(),
        allow_destructive: true,
        progress: false,
        summary: false,
        ..RunOptions::default()
    })
    .await
    .expect("the suite runs");
    reference.shutdown().await;
    let failed: Vec<&str> = outcome
        .scenarios
        .iter()
        .filter(|r| matches!(r.verdict, Verdict::Failed))
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(outcome.exit_code(), 1, "{fault:?}: the run must fail");
    assert!(
        failed.iter().any(|n| n.contains(scenario)),
        "{fault:?}: expected a failure in a scenario named like {scenario:?}; failed: {failed:#?}"
    );
}

macro_rules! catalogue {
    ($($test:ident => $fault:ident,)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            catches(Fault::$fault).await;
        }
    )*};
}

catalogue! {
    a_secret_in_key_lists_is_caught => SecretInList,
    revocation_that_lags_is_caught => LaggingRevocation,
    a_foreign_tenants_key_in_a_list_is_caught => ForeignKeyListed,
    a_limiter_that_never_answers_429_is_caught => No429,
    a_429_without_retry_after_is_caught => NoRetryAfter,
    a_500_on_bad_json_is_caught => BadJson500,
    rotation_that_keeps_the_old_key_alive_is_caught => RotationKeepsOldKey,
    events_sent_to_the_wrong_tenant_are_caught => EventsToWrongTenant,
    a_tenant_key_accepted_on_admin_routes_is_caught => TenantKeyIsAdmin,
    object_state_open_without_a_key_is_caught => ObjectStateWithoutKey,
    a_logout_that_keeps_the_token_alive_is_caught => LogoutKeepsToken,
    retry_after_in_milliseconds_is_caught => RetryAfterMs,
    a_revocation_missing_from_the_audit_log_is_caught => RevocationNotAudited,
    audit_records_out_of_order_are_caught => AuditOutOfOrder,
    another_tenants_audit_records_are_caught => ForeignAuditRecords,
    validate_trusting_a_logged_out_token_is_caught => ValidateAfterLogout,
    slower_logins_for_known_addresses_are_caught => SlowKnownLogins,
    sql_text_in_a_problem_detail_is_caught => SqlInDetail,
    an_inverted_graph_check_is_caught => InvertedGraphCheck,
    an_invalid_csv_accepted_is_caught => InvalidCsvAccepted,
    a_graph_version_that_never_moves_is_caught => GraphVersionStuck,
    a_stream_that_delivers_only_its_first_event_is_caught => FirstEventOnly,
    a_response_cache_serving_revoked_keys_is_caught => CachedRevokedKeys,
}

#[test]
fn the_catalogue_holds_at_least_ten_faults() {
    assert!(Fault::ALL.len() >= 10);
}

/// Each fault of issue 13 must be caught by the scenario written for it: it must fail there
/// and the scenario must be one that the stricter steps made able to fail (the expectation
/// names a scenario that exists).
#[test]
fn every_expected_scenario_exists() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../features");
    let listed = authconf::list_features(&root).expect("features parse");
    for f in Fault::ALL {
        let (_, name) = expectation(f);
        assert!(
            listed.iter().any(|l| l.name.contains(name)),
            "{f:?}: no scenario named like {name:?}"
        );
    }
}
