#!/usr/bin/env python3
"""Prints the workerd (capnp) config that serves the Worker adapter: the worker-build artifact,
its Durable Objects on local disk, R2, D1 and the key index (KV) pointed at binding-services, secrets from the
environment.
Used by scripts/workerd-run; the data dir holds a `worker` link to reference/worker/build."""
import argparse
import json
import os

p = argparse.ArgumentParser()
p.add_argument("--port", required=True, type=int)
p.add_argument("--bindings", required=True, help="host:port of binding-services")
p.add_argument("--data", required=True, help="absolute data dir")
a = p.parse_args()


def text(name):
    # json.dumps gives a double-quoted string with escapes capnp reads the same way.
    return f'(name = "{name}", text = {json.dumps(os.environ[name])})'


texts = [text(n) for n in ("PLATFORM_ADMIN_KEY", "JWT_SECRET", "KEY_PEPPER")]
for optional in ("JWT_SECRET_PREVIOUS", "BASE_DOMAIN", "TEST_HOOKS", "MAIL_API_URL", "MAIL_API_KEY"):
    if os.environ.get(optional):
        texts.append(text(optional))


def external(name, binding):
    return (
        f'(name = "{name}", external = (address = "{a.bindings}", http = ('
        f'injectRequestHeaders = [(name = "x-authconf-binding", value = "{binding}")])))'
    )


print(f"""using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "main", worker = .authWorker),
    (name = "do-disk", disk = (path = {json.dumps(a.data + "/do")}, writable = true)),
    {external("r2-tenant-data", "r2:TENANT_DATA")},
    {external("d1-db", "d1:DB")},
    {external("kv-key-index", "kv:KEY_INDEX")},
    # Outbound fetches (the mail API) may reach loopback: the local run's mail API is there.
    (name = "internet", network = (allow = ["public", "private", "local"])),
  ],
  sockets = [ (name = "http", address = "127.0.0.1:{a.port}", http = (), service = "main") ],
);

const authWorker :Workerd.Worker = (
  modules = [
    (name = "index.js", esModule = embed "worker/index.js"),
    (name = "index_bg.wasm", wasm = embed "worker/index_bg.wasm"),
  ],
  compatibilityDate = "2025-09-01",
  globalOutbound = "internet",
  bindings = [
    (name = "AUTH_PLATFORM", durableObjectNamespace = "AuthPlatform"),
    (name = "TENANT_STATE", durableObjectNamespace = "TenantState"),
    (name = "GRAPH_STATE_CSV", durableObjectNamespace = "GraphStateCSV"),
    (name = "TENANT_DATA", r2Bucket = "r2-tenant-data"),
    # The key index (key hash -> tenant id) the stateless Worker reads; the directory writes it.
    (name = "KEY_INDEX", kvNamespace = "kv-key-index"),
    (name = "DB", wrapped = (moduleName = "cloudflare-internal:d1-api",
                             innerBindings = [(name = "fetcher", service = "d1-db")])),
    {", ".join(texts)},
  ],
  durableObjectNamespaces = [
    (className = "AuthPlatform", uniqueKey = "authconf-auth-platform", enableSql = true),
    (className = "TenantState", uniqueKey = "authconf-tenant-state", enableSql = true),
    (className = "GraphStateCSV", uniqueKey = "authconf-graph-state-csv", enableSql = true),
  ],
  durableObjectStorage = (localDisk = "do-disk"),
);
""")
