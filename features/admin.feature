@admin
Feature: Tenant administration
  The platform admin key creates, lists, reads, updates and soft-deletes tenants and manages
  their keys. Slugs are unique forever, deleted tenants keep theirs, and lists filter and
  paginate.

  @R-TENANT-CREATE @R-TENANT-GET @R-PATH-IDS
  Scenario: A created tenant can be read back by its id, percent-encoded or raw
    Given a tenant "A"
    When I send GET "/admin/tenants/{A.id}" as "admin"
    Then the status is 200
    And the field "tenant.id" is "{A.id}"
    When I send GET "/admin/tenants/{raw:A.id}" as "admin"
    Then the status is 200
    And the field "tenant.slug" is "{A.slug}"

  @R-TENANT-CREATE @R-TENANT-FIELDS
  Scenario: A tenant created on a plan keeps it
    Given a tenant "A" on plan "pro"
    When I send GET "/admin/tenants/{A.id}" as "admin"
    Then the field "tenant.plan" is "pro"

  @R-SLUG-UNIQUE @R-CONFLICT
  Scenario: A slug in use is refused with 409
    Given a tenant "A"
    When I send POST "/admin/tenants" as "admin" with body '{"slug":"{A.slug}","name":"Again"}'
    Then the response is a problem 409 "conflict"

  @R-SLUG-UNIQUE @R-TENANT-DELETE
  Scenario: A deleted tenant's slug stays reserved
    Given a tenant "A"
    And tenant "A" is deleted
    When I send POST "/admin/tenants" as "admin" with body '{"slug":"{A.slug}","name":"Reborn"}'
    Then the response is a problem 409 "conflict"

  @R-SLUG-UNIQUE @R-TENANT-CREATE
  Scenario: A fresh slug can be used once
    When I send POST "/admin/tenants" as "admin" with body '{"slug":"{slug:race}","name":"Race"}'
    Then the status is 201
    When I send POST "/admin/tenants" as "admin" with body '{"slug":"{slug:race}","name":"Race"}'
    Then the status is 409

  @R-TENANT-FIELDS
  Scenario: A slug of 63 characters is accepted
    When I send POST "/admin/tenants" as "admin" with body '{"slug":"{slug63:long}","name":"Long"}'
    Then the status is 201

  @R-TENANT-LIST
  Scenario: Tenants are listed oldest first
    Given a tenant "A"
    And a tenant "B"
    Then in the tenant list, "A" comes before "B"

  @R-TENANT-LIST
  Scenario: Pagination keeps to its limit and reports the totals
    Given a tenant "A"
    And a tenant "B"
    And a tenant "C"
    When I send GET "/admin/tenants?page=1&limit=2" as "admin"
    Then the status is 200
    And the list "tenants" has exactly 2 items
    And the field "pagination.page" is 1
    And the field "pagination.limit" is 2

  @R-TENANT-LIST
  Scenario: A page beyond the last one is empty, not an error
    When I send GET "/admin/tenants?page=100000&limit=100" as "admin"
    Then the status is 200
    And the list "tenants" has exactly 0 items

  @R-TENANT-LIST
  Scenario: The status filter shows suspended tenants only
    Given a tenant "A"
    And a tenant "B"
    And tenant "A" is suspended
    Then the tenant list filtered by "status=suspended" includes "A"
    And the tenant list filtered by "status=suspended" excludes "B"
    When I send GET "/admin/tenants?status=suspended&limit=100" as "admin"
    Then every tenant in the list has "status" set to "suspended"

  @R-TENANT-LIST
  Scenario: The plan filter shows one plan only
    Given a tenant "A" on plan "enterprise"
    And a tenant "B"
    Then the tenant list filtered by "plan=enterprise" includes "A"
    And the tenant list filtered by "plan=enterprise" excludes "B"

  @R-TENANT-UPDATE @R-TENANT-SELF
  Scenario Outline: <method> changes a tenant's name and plan
    Given a tenant "A"
    When I send <method> "/admin/tenants/{A.id}" as "admin" with body '{"name":"Renamed","plan":"enterprise"}'
    Then the status is 200
    And the field "tenant.name" is "Renamed"
    And the field "tenant.plan" is "enterprise"
    And the field "tenant.slug" is "{A.slug}"
    When I send GET "/admin/tenants/{A.id}" as "admin"
    Then the field "tenant.name" is "Renamed"
    And the field "tenant.plan" is "enterprise"
    When I send GET "/v1/tenant" as "A"
    Then the field "tenant.name" is "Renamed"
    And the field "tenant.plan" is "enterprise"

    Examples:
      | method |
      | PATCH  |
      | PUT    |

  @R-TENANT-UPDATE @R-RL-STATUS
  Scenario: A rate limit override is stored and can be cleared
    Given a tenant "A"
    When I send PATCH "/admin/tenants/{A.id}" as "admin" with body '{"rateLimit":{"requests":10,"windowSeconds":60}}'
    Then the status is 200
    And the field "tenant.rateLimit" is {"requests":10,"windowSeconds":60}
    When I send GET "/admin/tenants/{A.id}" as "admin"
    Then the status is 200
    And the field "tenant.rateLimit" is {"requests":10,"windowSeconds":60}
    When I send GET "/v1/rate-limit" as "A"
    Then the status is 200
    And the field "limit" is 10
    And the field "windowSeconds" is 60
    When I send PATCH "/admin/tenants/{A.id}" as "admin" with body '{"rateLimit":null}'
    Then the status is 200
    And the field "tenant.rateLimit" is null
    When I send GET "/admin/tenants/{A.id}" as "admin"
    Then the field "tenant.rateLimit" is null
    When I send GET "/v1/rate-limit" as "A"
    Then the field "limit" is 100

  @R-TENANT-UPDATE @R-INVALID-FIELD
  Scenario Outline: The update <body> is refused naming the field <field>
    Given a tenant "A"
    When I send PATCH "/admin/tenants/{A.id}" as "admin" with body '<body>'
    Then the response is a problem 400 "invalid_field"
    And the problem names the field "<field>"
    And tenant "A" has status "active"

    Examples:
      | body                                                | field     |
      | {"status":"deleted"}                                | status    |
      | {"plan":"platinum"}                                 | plan      |
      | {"rateLimit":{"requests":0,"windowSeconds":60}}     | rateLimit |
      | {"rateLimit":{"requests":10,"windowSeconds":86401}} | rateLimit |
      | {"slug":"renamed"}                                  | slug      |

  @R-TENANT-DELETE @R-CONFLICT
  Scenario: A deleted tenant cannot be changed
    Given a tenant "A"
    And tenant "A" is deleted
    When I send PATCH "/admin/tenants/{A.id}" as "admin" with body '{"status":"active"}'
    Then the response is a problem 409 "conflict"
    And the key "A:secret" is refused with 401

  @R-TENANT-DELETE @R-TENANT-GET
  Scenario: Deleting a tenant is a soft delete and can be repeated
    Given a tenant "A"
    When I send DELETE "/admin/tenants/{A.id}" as "admin"
    Then the status is 200
    And the field "tenant.status" is "deleted"
    When I send DELETE "/admin/tenants/{A.id}" as "admin"
    Then the status is 200
    When I send GET "/admin/tenants/{A.id}" as "admin"
    Then the status is 200
    And the field "tenant.status" is "deleted"
    And the field "tenant.deletedAt" is a timestamp

  @R-TENANT-DELETE @R-NOT-FOUND
  Scenario: Deleting an unknown tenant answers 404
    When I send DELETE "/admin/tenants/{unknown-tenant-id}" as "admin"
    Then the response is a problem 404 "not_found"

  @R-ADMIN-TENANT-KEYS
  Scenario: The admin lists a tenant's keys, revoked ones included
    Given a tenant "A"
    And tenant "A" has a secret live key "ci"
    And the key "A:ci" is revoked
    When I send GET "/admin/tenants/{A.id}/keys" as "admin"
    Then the status is 200
    And the key list contains the key "A:ci"
    And the list "apiKeys" has exactly 3 items

  @R-ADMIN-TENANT-KEYS
  Scenario: A key minted by the admin works for its tenant only
    Given a tenant "A"
    And a tenant "B"
    And tenant "A" has a secret live key "minted" created by "admin"
    Then the key "A:minted" works
    When I send GET "/v1/api-keys/{A:minted.id}" as "B"
    Then the request is refused with 404

  @R-ADMIN-TENANT-KEYS @R-CONFLICT
  Scenario: The admin cannot mint keys for a deleted tenant
    Given a tenant "A"
    And tenant "A" is deleted
    When I send POST "/admin/tenants/{A.id}/keys" as "admin" with body '{"name":"late","type":"secret","environment":"live"}'
    Then the response is a problem 409 "conflict"

  @R-ADMIN-TENANT-KEYS @R-NOT-FOUND
  Scenario: The admin cannot mint keys for an unknown tenant
    When I send POST "/admin/tenants/{unknown-tenant-id}/keys" as "admin" with body '{"name":"x","type":"secret","environment":"live"}'
    Then the response is a problem 404 "not_found"

  @R-ADMIN-TENANT-KEYS @R-NOT-FOUND
  Scenario: A key list of an unknown tenant answers 404
    When I send GET "/admin/tenants/{unknown-tenant-id}/keys" as "admin"
    Then the response is a problem 404 "not_found"

  @R-ADMIN-AUTH @R-UNIFORM-401
  Scenario Outline: An admin key of the form <form> is refused with 401
    When I send GET "/admin/tenants" with the authorization header "<form>"
    Then the request is refused with 401

    Examples:
      | form                                                  |
      | Bearer sk_live_notTheAdminKeyxxxxxxxxxxxxxxxxxxxxxxxx |
      | Bearer                                                |
      | Basic YWRtaW46YWRtaW4=                                |

  @R-ADMIN-KEY-SCOPE @R-ADMIN-AUTH
  Scenario: The platform admin key works on admin routes whatever routing header comes with it
    Given a tenant "A"
    When I send GET "/admin/tenants" as "admin" with header "X-Tenant-ID" set to "{A.id}"
    Then the status is 200
