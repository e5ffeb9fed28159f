//! A bare workers-rs "hello world": the baseline of the Worker benchmark. It does what every
//! Worker request costs (the fetch event through workers-rs and its JavaScript glue) and
//! nothing else, so the hot path's ratio to it is what the service's own work costs in the
//! same `workerd` (scripts/bench-worker).

use worker::{event, Context, Env, Request, Response};

#[event(fetch)]
async fn fetch(_req: Request, _env: Env, _ctx: Context) -> worker::Result<Response> {
    Response::ok("hello world")
}
