//! The test controls under `/_test/` (only with test hooks on, only for the platform admin):
//! what a request asks for. The host authorises the caller and carries the control out, since
//! clocks, eviction and alarms belong to the platform.

use serde_json::Value;

use crate::http::{json_object, ApiError, Request};

/// Largest single move of the test clock: 100 years, far from any overflow.
pub const MAX_CLOCK_ADVANCE_MS: i64 = 100 * 365 * 24 * 3600 * 1000;

/// One test control.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestControl {
    /// `POST /_test/clock {"advanceMs"}`: move the clock forward; alarms now due fire.
    AdvanceClock { ms: i64 },
    /// `POST /_test/evict {"tenantId"?}`: drop live objects (one tenant's, or all).
    Evict { tenant: Option<String> },
    /// `POST /_test/alarms/fire {"tenantId"?}`: fire scheduled alarms now.
    FireAlarms { tenant: Option<String> },
}

impl TestControl {
    /// Reads the control from method, path and body; every failure is the problem to answer.
    pub fn parse(req: &Request) -> Result<Self, ApiError> {
        if req.method() != http::Method::POST {
            return Err(ApiError::MethodNotAllowed("POST"));
        }
        let fields = json_object(req, true)?;
        let tenant = fields
            .get("tenantId")
            .and_then(Value::as_str)
            .map(str::to_owned);
        match req.uri().path() {
            "/_test/clock" => fields
                .get("advanceMs")
                .and_then(Value::as_i64)
                .filter(|m| (0..=MAX_CLOCK_ADVANCE_MS).contains(m))
                .map(|ms| TestControl::AdvanceClock { ms })
                .ok_or_else(|| {
                    ApiError::field(
                        "advanceMs",
                        "must be a whole number from 0 to 3153600000000 (100 years)",
                    )
                }),
            "/_test/evict" => Ok(TestControl::Evict { tenant }),
            "/_test/alarms/fire" => Ok(TestControl::FireAlarms { tenant }),
            _ => Err(ApiError::NotFound),
        }
    }
}
