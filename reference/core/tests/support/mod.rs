//! What the core's integration tests share: storage that refuses every call, a fixed clock,
//! fixed randomness, a scripted [`Host`] that records what the driver asks of it, and a
//! `block_on` for the driver's futures (the fake host never waits, so polling once per
//! wake-up is enough; the core has no runtime of its own).

#![allow(dead_code)] // each test file uses part of it

use std::cell::RefCell;
use std::future::Future;
use std::sync::Arc;

use auth_core::driver::{GraphRun, Host, SharedWork};
use auth_core::ports::{Clock, Entropy, Row, Sql, SqlValue, StorageError};
use auth_core::test_controls::TestControl;
use auth_core::{
    ApiError, Config, Front, FrontStep, Notice, Ports, Request, Response, Resume, Service,
    TenantCall, TenantOutcome,
};

pub struct NoStorage;

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

pub struct FixedClock;

impl Clock for FixedClock {
    fn now_ms(&self) -> i64 {
        1_795_690_327_640
    }
}

pub struct Sevens;

impl Entropy for Sevens {
    fn fill(&self, buf: &mut [u8]) {
        buf.fill(7);
    }
}

pub const ADMIN_KEY: &str = "sk_live_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

pub fn service() -> Service {
    Service::new(Config {
        admin_key: ADMIN_KEY.into(),
        pepper: b"pepper".to_vec(),
        base_domain: Some("auth.test".into()),
        test_hooks: false,
    })
}

/// Runs a future whose every wait is already over (the fake host's).
pub fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    for _ in 0..1000 {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
    panic!("the future kept waiting on a host that never waits");
}

pub fn json(status: u16, body: &str) -> Response {
    let mut r = http::Response::new(body.as_bytes().to_vec());
    *r.status_mut() = http::StatusCode::from_u16(status).expect("status");
    r
}

/// A host that records each call the driver makes, in order, and answers from its script.
/// The shared rows are [`NoStorage`] unless `front_answer` scripts the front.
pub struct FakeHost<'a> {
    pub service: &'a Service,
    pub calls: RefCell<Vec<&'static str>>,
    /// What `key_owner` answers.
    pub owner: Option<String>,
    /// What `front` answers instead of running the service's front.
    pub front_answer: RefCell<Option<Front>>,
    pub notify_fails: bool,
    /// What `tenant` answers (a 200 `{}` when `None`), and whether it accepted a socket.
    pub tenant_answer: RefCell<Option<TenantOutcome>>,
    pub accepted: bool,
    /// The status `graph` answers.
    pub graph_status: u16,
    /// The bytes `read_upload` hands over.
    pub upload: Vec<u8>,
    /// The body the tenant object saw (to check the upload reached it).
    pub seen_body: RefCell<Option<Vec<u8>>>,
    /// Audit records written.
    pub audited: RefCell<Vec<Notice>>,
}

impl<'a> FakeHost<'a> {
    pub fn new(service: &'a Service) -> Self {
        Self {
            service,
            calls: RefCell::new(Vec::new()),
            owner: None,
            front_answer: RefCell::new(None),
            notify_fails: false,
            tenant_answer: RefCell::new(None),
            accepted: false,
            graph_status: 200,
            upload: Vec::new(),
            seen_body: RefCell::new(None),
            audited: RefCell::new(Vec::new()),
        }
    }

    fn record(&self, call: &'static str) {
        self.calls.borrow_mut().push(call);
    }

    pub fn calls(&self) -> Vec<&'static str> {
        self.calls.borrow().clone()
    }

    fn ports(&self) -> Ports<'static> {
        Ports {
            db: &NoStorage,
            clock: &FixedClock,
            entropy: &Sevens,
        }
    }
}

impl Host for FakeHost<'_> {
    type Upgrade = &'static str;
    type Shared = Self;

    fn shared(&self) -> Option<&Self> {
        Some(self)
    }

    fn clock(&self) -> &dyn Clock {
        &FixedClock
    }

    fn entropy(&self) -> &dyn Entropy {
        &Sevens
    }

    async fn front(&self, step: FrontStep) -> Result<Front, ApiError> {
        self.record("front");
        Ok(match self.front_answer.borrow_mut().take() {
            Some(front) => front,
            None => self.service.front(&self.ports(), step),
        })
    }

    async fn key_owner(&self, _key_hash: &str) -> Result<Option<String>, ApiError> {
        self.record("key_owner");
        Ok(self.owner.clone())
    }

    async fn read_upload(&self, _request: &Request) -> Result<Vec<u8>, ApiError> {
        self.record("read_upload");
        Ok(self.upload.clone())
    }

    async fn tenant(
        &self,
        call: &Arc<TenantCall>,
    ) -> Result<(TenantOutcome, Option<&'static str>), ApiError> {
        self.record("tenant");
        *self.seen_body.borrow_mut() = Some(call.request.body().clone());
        let outcome = self
            .tenant_answer
            .borrow_mut()
            .take()
            .unwrap_or_else(|| TenantOutcome::Respond(json(200, "{}")));
        Ok((outcome, self.accepted.then_some("socket")))
    }

    async fn graph(&self, _hop: GraphRun) -> Result<Response, ApiError> {
        self.record("graph");
        Ok(json(self.graph_status, "{\"version\":2}"))
    }

    async fn store_upload(&self, call: &Arc<TenantCall>) -> Result<usize, ApiError> {
        self.record("store_upload");
        Ok(call.request.body().len())
    }

    async fn read_blob(&self, _key: &str) -> Result<Option<Vec<u8>>, ApiError> {
        self.record("read_blob");
        Ok(Some(b"a,b".to_vec()))
    }

    async fn audit(&self, _tenant_id: &str, notice: Notice) -> Result<(), ApiError> {
        self.record("audit");
        self.audited.borrow_mut().push(notice);
        Ok(())
    }
}

impl SharedWork for FakeHost<'_> {
    async fn notify(&self, _notices: Vec<(String, Notice)>) -> Result<(), ApiError> {
        self.record("notify");
        if self.notify_fails {
            return Err(ApiError::Unavailable(1));
        }
        Ok(())
    }

    async fn resume(&self, _resume: Resume) -> Result<Response, ApiError> {
        self.record("resume");
        Ok(json(200, "{\"resumed\":true}"))
    }

    async fn flush_usage(&self) {
        self.record("flush_usage");
    }

    async fn test_control(
        &self,
        _control: TestControl,
    ) -> Result<auth_contract::testing::TestControlAnswer, ApiError> {
        self.record("test_control");
        Ok(auth_contract::testing::TestControlAnswer::Fired { fired: 0 })
    }
}
