//! The one door of every request: placeholders expanded, sent (a tenant creation through the
//! ledger's path), made the last exchange and checked.

use super::core::AuthWorld;
use crate::support::http::{self, Body, Exchange, Req};

impl AuthWorld {
    /// Sends a request, records and checks the exchange, and makes it the last one.
    pub async fn send(&mut self, req: Req) -> &Exchange {
        let req = self.prepare(&req);
        self.send_prepared(req).await
    }

    /// Sends an already expanded request (a re-send of an earlier one).
    pub async fn send_prepared(&mut self, req: Req) -> &Exchange {
        let ex = self.transport(&req).await;
        self.last_req = Some(req);
        self.last = Some(ex.clone());
        self.check_exchange(&ex);
        self.last.as_ref().expect("just set")
    }

    /// Sends a prepared request: a tenant creation goes through the World's tenant-creation
    /// path (ledger before, tracking after), any other straight to the transport.
    async fn transport(&self, req: &Req) -> Exchange {
        if req.creates_tenant() {
            self.create_tenant_exchange(req).await
        } else {
            http::send(&self.ctx, req).await
        }
    }

    /// Expands the placeholders of a request.
    pub fn prepare(&mut self, req: &Req) -> Req {
        let mut out = req.clone();
        out.path = self.expand(&req.path, true);
        out.headers = req
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), self.expand(v, false)))
            .collect();
        if let Body::Json(s) = &req.body {
            out.body = Body::Json(self.expand(s, false));
        }
        out.host = req.host.as_ref().map(|h| self.expand(h, false));
        out.template = Some(req.path.clone());
        out
    }

    /// Sends prepared requests all at once, then checks each response; the last one becomes
    /// the last exchange and all of them the batch.
    pub async fn send_batch(&mut self, reqs: Vec<Req>) {
        let results: Vec<Exchange> =
            futures::future::join_all(reqs.iter().map(|r| self.transport(r))).await;
        self.batch = results.clone();
        self.last_req = reqs.last().cloned();
        for ex in &results {
            self.last = Some(ex.clone());
            self.check_exchange(ex);
        }
    }

    /// The key id (`key:<hex>`) in the last request's path, if any.
    pub fn last_key_id_in_path(&self) -> Option<String> {
        let path = self
            .last_req
            .as_ref()?
            .path
            .replace("%3A", ":")
            .replace("%3a", ":");
        let re = regex::Regex::new("key:[0-9A-Za-z_-]+").expect("static regex");
        re.find(&path).map(|m| m.as_str().to_owned())
    }
}
