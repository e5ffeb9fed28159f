//! Run ids: `yyMMddHHmmss-xxxx`, UTC time and 4 random characters, lowercase, because they go
//! into tenant slugs (DNS labels) and name the report folder.

use std::time::{SystemTime, UNIX_EPOCH};

/// A run id: UTC time and 4 random characters, lowercase (it goes into DNS-label slugs).
pub fn new_run_id() -> String {
    use rand::Rng as _;
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    let r: String = rand::thread_rng()
        .sample_iter(rand::distributions::Alphanumeric)
        .take(4)
        .map(|c| (c as char).to_ascii_lowercase())
        .collect();
    format!(
        "{:02}{:02}{:02}{:02}{:02}{:02}-{r}",
        y % 100,
        mo,
        d,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_dns_safe() {
        let id = new_run_id();
        assert_eq!(id.len(), 17, "{id}");
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'-'));
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_418), (2025, 11, 26));
    }
}
