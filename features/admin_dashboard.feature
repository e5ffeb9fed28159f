@admin @needs-admin-dashboard
Feature: The platform admin's dashboard, usage metrics and list of all keys
  The platform admin sees figures across tenants: tenants by status and plan, keys by state,
  and the requests each tenant made, per day and endpoint, rate-limited ones included. These
  views are for the platform admin only, and like every list they never show a secret.

  Background:
    Given a tenant "A"
    And a tenant "B"

  @R-DASHBOARD
  Scenario: The dashboard reports tenants, keys and recent requests
    When I send GET "/admin/dashboard" as "admin"
    Then the status is 200
    And the field "tenants.total" is not null
    And the field "tenants.byStatus.active" is not null
    And the field "tenants.byPlan.free" is not null
    And the field "apiKeys.active" is not null
    And the field "apiKeys.revoked" is not null
    And the field "requests.last24h" is not null
    And the field "requests.rateLimitedLast24h" is not null
    And the field "generatedAt" is a timestamp
    And the response does not contain the secret of "A"

  @R-USAGE-METRICS
  Scenario: A tenant's metrics count each of its requests, by endpoint
    When I send GET "/v1/tenant" as "A" 5 times concurrently
    And I send GET "/admin/tenants/{A.id}/metrics?days=1" as "admin"
    Then the status is 200
    And the field "tenantId" is "{raw:A.id}"
    And the field "totals.requests" is 5
    And the field "totals.rateLimited" is 0

  @R-USAGE-METRICS
  Scenario: Rate-limited requests are counted, and counted as rate-limited
    Given tenant "A" has a rate limit of 2 requests per 3600 seconds
    When I send GET "/v1/tenant" as "A" 5 times concurrently
    And I send GET "/admin/tenants/{A.id}/metrics?days=1" as "admin"
    Then the status is 200
    And the field "totals.requests" is 5
    And the field "totals.rateLimited" is 3

  @R-USAGE-METRICS
  Scenario: One tenant's requests do not show in another tenant's metrics
    When I send GET "/v1/tenant" as "A" 3 times concurrently
    And I send GET "/admin/tenants/{B.id}/metrics?days=1" as "admin"
    Then the status is 200
    And the field "totals.requests" is 0

  @R-USAGE-METRICS @R-NOT-FOUND
  Scenario: The metrics of an unknown tenant answer 404
    When I send GET "/admin/tenants/{unknown-tenant-id}/metrics" as "admin"
    Then the response is a problem 404 "not_found"

  @R-USAGE-METRICS @R-INVALID-QUERY
  Scenario Outline: The metrics query <query> is refused naming <field>
    When I send GET "/admin/metrics?<query>" as "admin"
    Then the response is a problem 400 "invalid_query"
    And the problem names the field "<field>"

    Examples:
      | query     | field |
      | days=0    | days  |
      | days=9999 | days  |
      | days=x    | days  |
      | colour=1  | colour |

  @R-ADMIN-ALL-KEYS @R-SECRET-ONCE
  Scenario: The list of all keys filtered by tenant shows that tenant's keys only, without secrets
    Given the key ids of tenant "A" are known
    And the key ids of tenant "B" are known
    When I send GET "/admin/api-keys?tenantId={A.id}" as "admin"
    Then the status is 200
    And the list "apiKeys" has exactly 2 items
    And the key list contains the key "A:secret"
    And the key list does not contain the key "B:secret"
    And the response does not contain the secret of "A"
    And the response does not contain the secret of "A:public"

  @R-ADMIN-AUTH @R-FORBIDDEN
  Scenario Outline: A tenant's <kind> key on GET <path> is refused with 403
    When I send GET "<path>" as "<key>"
    Then the request is refused with 403

    Examples:
      | kind        | key      | path                              |
      | secret      | A        | /admin/dashboard                  |
      | publishable | A:public | /admin/dashboard                  |
      | secret      | A        | /admin/metrics                    |
      | secret      | A        | /admin/api-keys                   |
      | secret      | A        | /admin/tenants/{A.id}/metrics     |

  @R-ADMIN-AUTH
  Scenario Outline: GET <path> without a key answers 401
    When I send GET "<path>" as "none"
    Then the response is a problem 401 "unauthorized"

    Examples:
      | path                          |
      | /admin/dashboard              |
      | /admin/metrics                |
      | /admin/api-keys               |
      | /admin/tenants/{A.id}/metrics |

  @R-PLATFORM-ADMINS @R-ADMIN-AUTH @destructive
  Scenario: A platform admin's key is shown once, works on the admin API, and is refused once the admin is revoked
    When I send POST "/admin/admins" as "admin" with body '{"email":"{slug:ops}@authconf.invalid","role":"support"}'
    Then the status is 201
    And the field "admin.role" is "support"
    And the field "admin.status" is "active"
    And I keep the credential in "credentials.adminKey" as "ops"
    And I keep the field "admin.id" as "ops-id"
    When I send GET "/admin/admins" as "admin"
    Then the status is 200
    And the response mentions "{value:ops-id}"
    When I send GET "/admin/tenants" as "ops"
    Then the status is 200
    When I send DELETE "/admin/admins/{value:ops-id}" as "admin"
    Then the status is 200
    And the field "admin.status" is "revoked"
    When I send GET "/admin/tenants" as "ops"
    Then the response is a problem 401 "unauthorized"
    When I send DELETE "/admin/admins/{value:ops-id}" as "admin"
    Then the status is 200

  @R-ADMIN-ROLES @destructive
  Scenario: A readonly admin reads but changes nothing; only the root key manages admins
    Given a platform admin "ro" with role "readonly"
    And a platform admin "sup" with role "support"
    When I send GET "/admin/tenants/{A.id}" as "ro"
    Then the status is 200
    When I send PATCH "/admin/tenants/{A.id}" as "ro" with body '{"name":"Changed by readonly"}'
    Then the response is a problem 403 "forbidden"
    When I send POST "/admin/tenants" as "ro" with body '{"slug":"{slug:by-ro}","name":"By readonly"}'
    Then the response is a problem 403 "forbidden"
    When I send POST "/admin/tenants" as "sup" with body '{"slug":"{slug:by-sup}","name":"By support"}'
    Then the response is a problem 403 "forbidden"
    When I send PATCH "/admin/tenants/{A.id}" as "sup" with body '{"name":"Changed by support"}'
    Then the status is 200
    When I send POST "/admin/admins" as "sup" with body '{"email":"{slug:sup2}@authconf.invalid"}'
    Then the response is a problem 403 "forbidden"
    When I send GET "/admin/tenants/{A.id}" as "admin"
    Then the field "tenant.name" is "Changed by support"

  @R-ADMIN-TENANT-SCOPE @destructive @isolation
  Scenario: An admin limited to one tenant sees every other tenant as unknown
    Given a platform admin "one" with role "support" limited to tenant "A"
    When I send GET "/admin/tenants/{A.id}" as "one"
    Then the status is 200
    When I send GET "/admin/tenants/{B.id}" as "one"
    Then the response is a problem 404 "not_found"
    When I send PATCH "/admin/tenants/{B.id}" as "one" with body '{"name":"Not yours"}'
    Then the response is a problem 404 "not_found"
    When I send GET "/admin/tenants/{B.id}/keys" as "one"
    Then the response is a problem 404 "not_found"
    When I send GET "/admin/tenants" as "one"
    Then the status is 200
    And the list "tenants" has exactly 1 item
    And the response does not mention "{B.id}"
