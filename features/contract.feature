@contract
Feature: Response shapes of the contract
  The exact shapes of docs/contract.md. Other scenarios read responses tolerantly, so a
  deployment whose shapes differ still has its security measured; these scenarios judge the
  shapes themselves.

  @R-HEALTH
  Scenario: The health check answers with status, timestamp and version
    When I send GET "/health" as "none"
    Then the status is 200
    And the body has the shape "health"
    And the response has the header "X-Request-Id"

  @needs-capabilities @R-CAPABILITIES
  Scenario: The capabilities document has the contract's shape
    When I send GET "/.well-known/authconf" as "none"
    Then the status is 200
    And the body has the shape "capabilities"
    And the field "contractVersion" is "1"
    And the field "features.apiKeys" is true

  @R-OPENAPI
  Scenario: The OpenAPI document is served without a key and is OpenAPI 3.1
    When I send GET "/openapi.json" as "none"
    Then the status is 200
    And the field "openapi" is "3.1.0"
    And the field "paths./v1/api-keys" is present
    And the field "paths./admin/tenants" is present

  @R-TENANT-CREATE
  Scenario: Creating a tenant answers with the tenant and its two keys
    When I send POST "/admin/tenants" as "admin" with body '{"slug":"{slug:a}","name":"Shape A"}'
    Then the status is 201
    And the body has the shape "tenant-created"
    And the field "tenant.slug" is "{slug:a}"
    And the field "tenant.plan" is "free"
    And the field "tenant.status" is "active"
    And the field "tenant.rateLimit" is null

  @R-TENANT-GET @R-TENANT-LIST @R-TENANT-SELF
  Scenario: A tenant, a tenant list and a tenant's own view have the contract's shapes
    Given a tenant "A"
    When I send GET "/admin/tenants/{A.id}" as "admin"
    Then the status is 200
    And the body has the shape "tenant"
    When I send GET "/admin/tenants?limit=5" as "admin"
    Then the status is 200
    And the body has the shape "tenant-list"
    And the field "pagination.limit" is 5
    When I send GET "/v1/tenant" as "A"
    Then the status is 200
    And the body has the shape "tenant-self"
    And the field "tenant.id" is "{A.id}"

  @R-KEY-CREATE @R-KEY-LIST @R-REVOKE @R-SECRET-ONCE
  Scenario: Creating, listing, getting and revoking a key use the key object
    Given a tenant "A"
    When I send POST "/v1/api-keys" as "A" with body '{"name":"CI","type":"secret","environment":"live"}'
    Then the status is 201
    And the body has the shape "key-created"
    And the field "apiKey.name" is "CI"
    And the field "apiKey.revokedAt" is null
    When I send GET "/v1/api-keys" as "A"
    Then the body has the shape "key-list"
    And the list "apiKeys" has exactly 3 items

  @R-DISPLAY-PREFIX
  Scenario: A key's object carries an opaque id and a display prefix of its secret
    Given a tenant "A"
    And tenant "A" has a restricted test key "r" with permissions "read:api_keys"
    When I send GET "/v1/api-keys/{A:r.id}" as "A"
    Then the status is 200
    And the body has the shape "key"
    And the field "apiKey.type" is "restricted"
    And the field "apiKey.environment" is "test"
    And the field "apiKey.permissions" is ["read:api_keys"]
    And the display prefix is the start of the secret of "A:r"

  @R-KEY-CREATE
  Scenario: "public" is accepted as a synonym of "publishable"
    Given a tenant "A"
    When I send POST "/v1/api-keys" as "A" with body '{"name":"web","type":"public","environment":"live"}'
    Then the status is 201
    And the field "apiKey.type" is "publishable"

  @R-ROTATE
  Scenario: Rotation answers with the new key, its secret and the previous key
    Given a tenant "A"
    And tenant "A" has a secret live key "ci"
    When "A" rotates the key "A:ci"
    Then the status is 201
    And the body has the shape "rotation"
    And the field "previousKey.id" is "{A:ci.id}"

  @R-REVOKE
  Scenario: Revocation answers with the revoked key
    Given a tenant "A"
    And tenant "A" has a secret live key "ci"
    When I send DELETE "/v1/api-keys/{A:ci.id}" as "A"
    Then the status is 200
    And the body has the shape "key"
    And the field "apiKey.revokedAt" is a timestamp

  @R-TENANT-GET @R-TENANT-DELETE
  Scenario: A deleted tenant's view shows its deletion time
    Given a tenant "A"
    And tenant "A" is deleted
    When I send GET "/admin/tenants/{A.id}" as "admin"
    Then the body has the shape "tenant"

  @R-UNIFORM-401 @R-PROBLEM
  Scenario: A missing key is a 401 problem with a Bearer challenge
    When I send GET "/v1/tenant" as "none"
    Then the response is a problem 401 "unauthorized"
    And the response has the header "WWW-Authenticate" containing "Bearer"
    And the response has the header "X-Request-Id"

  @R-ADMIN-AUTH @R-FORBIDDEN @R-PROBLEM
  Scenario: A tenant key on an admin route is a 403 "forbidden" problem
    Given a tenant "A"
    When I send GET "/admin/tenants" as "A"
    Then the response is a problem 403 "forbidden"

  @R-ROUTING-MATCH @R-PROBLEM
  Scenario: Two routing sources that disagree give a "tenant_mismatch" problem
    Given a tenant "A"
    And a tenant "B"
    When I send GET "/v1/tenant" as "A" with the tenant header of "B"
    Then the response is a problem 403 "tenant_mismatch"

  @R-TENANT-SUSPENDED @R-PROBLEM
  Scenario: A suspended tenant's key gives a "tenant_suspended" problem
    Given a tenant "A"
    And tenant "A" is suspended
    When I send GET "/v1/tenant" as "A"
    Then the response is a problem 403 "tenant_suspended"

  @R-INVALID-FIELD @R-PROBLEM
  Scenario: A validation error names its field in the problem and its errors list
    Given a tenant "A"
    When I send POST "/v1/api-keys" as "A" with body '{"name":"x","type":"nope","environment":"live"}'
    Then the response is a problem 400 "invalid_field"
    And the field "field" is "type"
    And the field "errors.0.field" is "type"

  @R-METHOD-NOT-ALLOWED
  Scenario: A wrong method names the allowed ones
    When I send DELETE "/health" as "none"
    Then the response is a problem 405 "method_not_allowed"
    And the response has the header "Allow" containing "GET"

  @R-REQUEST-ID
  Scenario: Successful answers carry a request id too
    Given a tenant "A"
    When I send GET "/v1/api-keys" as "A"
    Then the status is 200
    And the response has the header "X-Request-Id"
    And the response has the header "Content-Type" containing "application/json"

  @R-TIMESTAMPS
  Scenario: Timestamps are RFC 3339 in UTC
    Given a tenant "A"
    When I send GET "/admin/tenants/{A.id}" as "admin"
    Then the field "tenant.createdAt" is a timestamp
    And the field "tenant.updatedAt" is a timestamp
