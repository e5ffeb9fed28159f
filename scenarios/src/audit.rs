//! Steps of the audit-log scenarios (completeness, order, paging, ownership).
