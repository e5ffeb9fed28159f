//! Mail delivery: the tenant's outbox sent to the mail API, one mail at a time, in order.

use auth_core::users::mail;
use worker::{console_error, Request};

use super::TenantState;
use crate::config::MailApi;

/// POSTs one mail to the mail API: `{to, subject, text, template, tenantId}`, its code put
/// into its body only now (the outbox holds a seed, never the code).
async fn post_mail(
    api: &MailApi,
    m: &mail::OutboxMail,
    hasher: &auth_core::keys::KeyHasher,
) -> Result<(), String> {
    let send = async {
        let headers = worker::Headers::new();
        headers.set("authorization", &format!("Bearer {}", api.key))?;
        headers.set("content-type", "application/json")?;
        headers.set("idempotency-key", &m.id)?;
        let mut init = worker::RequestInit::new();
        init.with_method(worker::Method::Post)
            .with_headers(headers)
            .with_body(Some(wasm_bindgen::JsValue::from_str(
                &m.to_json(hasher).to_string(),
            )));
        let request = Request::new_with_init(&api.url, &init)?;
        worker::Fetch::Request(request).send().await
    };
    match send.await {
        Ok(r) if (200..300).contains(&r.status_code()) => Ok(()),
        Ok(r) => Err(format!("status {}", r.status_code())),
        Err(_) => Err("connection failed".to_owned()),
    }
}

impl TenantState {
    /// Sends the tenant's mail due now, one at a time and in order, as the native host does: a
    /// 2xx marks it sent; anything else schedules a retry with backoff. `Idempotency-Key` is
    /// the outbox id, so a resend after a crash between answer and mark can be dropped.
    pub(super) async fn deliver_mail(&self) {
        let due = {
            let guard = self.inner.borrow();
            let Some(inner) = guard.as_ref() else { return };
            if inner.settings.mail.is_none() {
                return;
            }
            match mail::due(&inner.db, inner.now_ms(), 20) {
                Ok(d) => d,
                Err(e) => {
                    console_error!("reading the mail outbox failed: {e}");
                    return;
                }
            }
        };
        for m in due {
            let api = self.inner.borrow().as_ref().and_then(|i| {
                i.settings.mail.as_ref().map(|a| {
                    let api = MailApi {
                        url: a.url.clone(),
                        key: a.key.clone(),
                    };
                    (api, i.settings.service.authenticator().hasher.clone())
                })
            });
            let Some((api, hasher)) = api else { return };
            let outcome = post_mail(&api, &m, &hasher).await;
            let guard = self.inner.borrow();
            let Some(inner) = guard.as_ref() else { return };
            let now = inner.now_ms();
            let written = match &outcome {
                Ok(()) => mail::mark_sent(&inner.db, &m.id, now),
                Err(why) => {
                    console_error!("mail delivery failed ({why}); will retry");
                    mail::mark_failed(&inner.db, &m.id, now, why)
                }
            };
            if let Err(e) = written {
                console_error!("recording a mail delivery failed: {e}");
            }
        }
    }
}
