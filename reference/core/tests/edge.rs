//! The edge ([`Service::edge`]) against the front ([`Service::front`]): for every route and
//! method, with no key, an ill-formed key, the platform admin key, a well-formed tenant key and
//! a key in the query, the edge refuses exactly what the front refuses without storage (same
//! status, same problem code), and answers a key hash exactly where the front goes on to look
//! the key up (here: storage refuses, so the front answers 500). A host may therefore answer
//! the edge's refusals itself and send only keyed requests past it.

use auth_core::edge::Edge;
use auth_core::keys::{Environment, KeyType};
use auth_core::ports::{Clock, Entropy, Row, Sql, SqlValue, StorageError};
use auth_core::{Config, Front, Ports, Response, Service, ROUTES};

struct NoStorage;

impl Sql for NoStorage {
    fn execute(&self, _: &str, _: &[SqlValue]) -> Result<usize, StorageError> {
        Err(StorageError::Other("no storage in this test".into()))
    }
    fn query(&self, _: &str, _: &[SqlValue]) -> Result<Vec<Row>, StorageError> {
        Err(StorageError::Other("no storage in this test".into()))
    }
    fn transaction(
        &self,
        _: &mut dyn FnMut(&dyn Sql) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        Err(StorageError::Other("no storage in this test".into()))
    }
}

struct FixedClock;

impl Clock for FixedClock {
    fn now_ms(&self) -> i64 {
        1_795_690_327_640
    }
}

struct Sevens;

impl Entropy for Sevens {
    fn fill(&self, buf: &mut [u8]) {
        buf.fill(7);
    }
}

fn admin_key() -> String {
    format!("sk_live_{}", "a".repeat(40))
}

fn service() -> Service {
    Service::new(Config {
        admin_key: admin_key(),
        pepper: b"pepper".to_vec(),
        base_domain: Some("auth.test".into()),
        test_hooks: false,
    })
}

fn code(resp: &Response) -> String {
    let v: serde_json::Value = serde_json::from_slice(resp.body()).unwrap_or_default();
    v["code"].as_str().unwrap_or("").to_owned()
}

fn request(method: &str, path: &str, key: Option<&str>, body: usize) -> auth_core::Request {
    let mut b = http::Request::builder().method(method).uri(path);
    if let Some(k) = key {
        b = b.header("authorization", format!("Bearer {k}"));
    }
    b.body(vec![b'x'; body]).unwrap()
}

/// Compares edge and front on one request; answers whether the edge hashed a key.
fn agree(method: &str, path: &str, key: Option<&str>, body: usize) -> bool {
    let svc = service();
    let edge = svc.edge(&request(method, path, key, body));
    let ports = Ports {
        db: &NoStorage,
        clock: &FixedClock,
        entropy: &Sevens,
    };
    let front = svc.front(&ports, request(method, path, key, body));
    let what = format!("{method} {path} key={key:?} body={body}");
    match (edge, front) {
        (Edge::Front, _) => false,
        (Edge::Refuse(e), Front::Respond { response, .. }) => {
            let expected = e.into_response();
            assert_eq!(response.status(), expected.status(), "{what}");
            if method != "HEAD" {
                // (a HEAD answer has no body to name its code)
                assert_eq!(code(&response), code(&expected), "{what}");
            }
            false
        }
        (Edge::Keyed { key_hash, .. }, Front::Respond { response, .. }) => {
            assert!(!key_hash.is_empty(), "{what}");
            assert_eq!(
                response.status(),
                500,
                "{what}: the edge hashed the key, so the front must go on to look it up"
            );
            true
        }
        (_, Front::Tenant { .. } | Front::FlushMetrics { .. }) => {
            panic!("{what}: the front reached a tenant without storage")
        }
    }
}

#[test]
fn the_edge_refuses_what_the_front_refuses_and_hashes_where_the_front_looks_up() {
    let sk = auth_core::keys::generate(KeyType::Secret, Environment::Live, &Sevens);
    let pk = auth_core::keys::generate(KeyType::Publishable, Environment::Test, &Sevens);
    let admin = admin_key();
    let keys: [Option<&str>; 5] = [
        None,
        Some("sk_live_nope"),
        Some(&admin),
        Some(&sk),
        Some(&pk),
    ];
    let mut paths: Vec<String> = ROUTES
        .iter()
        .map(|(_, p)| p.replace("{id}", "x%3Ay"))
        .collect();
    paths.extend(
        [
            "/v1/nope",
            "/v1/tenant?api_key=x",
            "/v1/auth/nope",
            "/v1/auth/login?apiKey=1",
        ]
        .map(String::from),
    );
    let mut hashed = 0;
    for path in &paths {
        for method in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] {
            for key in keys {
                for body in [0, auth_core::http::MAX_BODY_BYTES + 1] {
                    hashed += usize::from(agree(method, path, key, body));
                }
            }
        }
    }
    // Not vacuous: the tenant routes and the keyed end-user routes were hashed.
    assert!(
        hashed > 40,
        "only {hashed} requests were hashed at the edge"
    );
}

#[test]
fn keyed_end_user_routes_carry_their_route_and_keyless_ones_go_to_the_front() {
    let svc = service();
    let pk = auth_core::keys::generate(KeyType::Publishable, Environment::Test, &Sevens);
    let keyed = svc.edge(&request("POST", "/v1/auth/login", Some(&pk), 0));
    assert!(
        matches!(
            keyed,
            Edge::Keyed {
                user_route: Some(_),
                ..
            }
        ),
        "{keyed:?}"
    );
    let keyless = svc.edge(&request("POST", "/v1/auth/login", None, 0));
    assert!(matches!(keyless, Edge::Front), "{keyless:?}");
    let access = svc.edge(&request("GET", "/v1/auth/me", Some("eyJ.x.y"), 0));
    assert!(matches!(access, Edge::Front), "{access:?}");
}
