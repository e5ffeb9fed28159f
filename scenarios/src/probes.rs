//! Steps of the probes for defects seen in real deployments (default JWT secrets, CORS,
//! enumeration without mail, missing Authorization, duplicated routing headers).
