@isolation
Feature: Tenant isolation
  A tenant's keys reach that tenant's data and nothing else. Another tenant's objects answer
  exactly like objects that do not exist, every routing source must agree with the key's
  tenant, suspended and deleted tenants are shut out, test keys never see live keys, and no
  tenant key opens an admin route.

  Background:
    Given a tenant "A"
    And a tenant "B"
    And tenant "A" has a secret live key "ci"

  @R-FOREIGN-404
  Scenario Outline: <method> on another tenant's key answers 404 like an unknown key
    When I send <method> "/v1/api-keys/{A:ci.id}<suffix>" as "B"
    Then the request is refused with 404
    And the response is the same as for an unknown key id
    And the key "A:ci" still works

    Examples:
      | method | suffix  |
      | GET    |         |
      | POST   | /rotate |
      | DELETE |         |

  @R-KEY-LIST
  Scenario: Another tenant's key list does not show this tenant's keys
    When I send GET "/v1/api-keys" as "A"
    And I send GET "/v1/api-keys" as "B"
    Then the status is 200
    And the key list does not contain the key "A:ci"
    And the key list shows only keys of tenant "B"

  @R-TENANT-SELF
  Scenario: A tenant sees only itself through its key
    When I send GET "/v1/tenant" as "B"
    Then the status is 200
    And the field "tenant.id" is "{B.id}"

  @R-ROUTING-MATCH
  Scenario: A key created with another tenant's routing header belongs to nobody else
    When I send POST "/v1/api-keys" as "A" with the tenant header of "B"
      """
      {"name":"smuggled","type":"secret","environment":"live"}
      """
    Then the request is refused with 403
    And no key named "smuggled" exists for tenant "B"
    And no key named "smuggled" exists for tenant "A"

  @R-ROUTING-MATCH
  Scenario Outline: <method> <path> with a key of A and the <source> of B is refused
    When I send <method> "<path>" as "A" with the <source> of "B"
    Then the request is refused with 403

    Examples:
      | method | path                    | source                 |
      | GET    | /v1/tenant              | tenant header          |
      | GET    | /v1/tenant              | tenant slug header     |
      | GET    | /v1/tenant              | tenant query parameter |
      | GET    | /v1/api-keys            | tenant header          |
      | GET    | /v1/api-keys            | tenant slug header     |
      | GET    | /v1/api-keys            | tenant query parameter |
      | GET    | /v1/api-keys/{A:ci.id}  | tenant header          |
      | GET    | /v1/api-keys/{A:ci.id}  | tenant query parameter |
      | DELETE | /v1/api-keys/{A:ci.id}  | tenant header          |
      | DELETE | /v1/api-keys/{A:ci.id}  | tenant query parameter |

  @needs-subdomain @R-ROUTING-MATCH @R-ROUTING-SOURCES
  Scenario Outline: <method> <path> with a key of A on the subdomain of B is refused
    When I send <method> "<path>" as "A" with the subdomain of "B"
    Then the request is refused with 403

    Examples:
      | method | path                   |
      | GET    | /v1/tenant             |
      | GET    | /v1/api-keys           |
      | GET    | /v1/api-keys/{A:ci.id} |
      | DELETE | /v1/api-keys/{A:ci.id} |

  @needs-subdomain @R-ROUTING-SOURCES
  Scenario: The subdomain of the key's own tenant is accepted
    When I send GET "/v1/tenant" as "A" with the subdomain of "A"
    Then the status is 200
    And the field "tenant.id" is "{A.id}"

  @R-ROUTING-SOURCES
  Scenario Outline: The <source> of the key's own tenant is accepted
    When I send GET "/v1/tenant" as "A" with the <source> of "A"
    Then the status is 200
    And the field "tenant.id" is "{A.id}"

    Examples:
      | source                 |
      | tenant header          |
      | tenant slug header     |
      | tenant query parameter |

  @R-ROUTING-MATCH
  Scenario Outline: The <source> naming a tenant that does not exist is refused
    When I send GET "/v1/tenant" as "A" with the <source> of "Nobody"
    Then the request is refused with 403

    Examples:
      | source                 |
      | tenant header          |
      | tenant query parameter |

  @R-KEY-REQUIRED
  Scenario: A routing header alone, without a key, opens nothing
    When I send GET "/v1/api-keys" as "none" with the tenant header of "A"
    Then the request is refused with 401

  @R-TENANT-SUSPENDED @R-TENANT-UPDATE
  Scenario: A suspended tenant's keys are refused, and work again once it is active
    Given the key "A:secret" works on every route that accepts it
    And the key "A:public" works on every route that accepts it
    And tenant "A" is suspended
    Then the key "A:secret" is refused with 403 on every route that accepts it
    And the key "A:public" is refused with 403 on every route that accepts it
    And the key "A:secret" is refused with 403
    And the key "A:ci" is refused with 403
    And the key "A:public" is refused with 403
    And the key "B:secret" works
    Given tenant "A" is active
    Then the key "A:secret" works

  @R-TENANT-SUSPENDED
  Scenario: A suspended tenant cannot create keys
    Given tenant "A" is suspended
    When I send POST "/v1/api-keys" as "A" with body '{"name":"late","type":"secret","environment":"live"}'
    Then the request is refused with 403

  @R-TENANT-DELETE
  Scenario: A deleted tenant's keys are refused from the next request on
    Given the key "A:secret" works on every route that accepts it
    And the key "A:ci" works on every route that accepts it
    And the key "A:public" works on every route that accepts it
    And tenant "A" is deleted
    Then the key "A:secret" is refused on every route that accepts it
    And the key "A:ci" is refused on every route that accepts it
    And the key "A:public" is refused on every route that accepts it
    Then the key "A:secret" is refused with 401
    And the key "A:ci" is refused with 401
    And the key "A:public" is refused with 401
    And the key "B:secret" works

  @R-TENANT-DELETE @R-UNIFORM-401
  Scenario: A deleted tenant's key gets the same 401 as no key at all
    Given tenant "A" is deleted
    When I send GET "/v1/api-keys" as "A:ci"
    Then the request is refused with 401
    And the response is identical to the answer without a key

  @R-KEY-LIST @R-TEST-KEYS
  Scenario: A test key lists only test keys
    Given tenant "A" has a secret test key "t"
    And tenant "A" has a publishable test key "tp"
    When I send GET "/v1/api-keys" as "A:t"
    Then the status is 200
    And every key in the list is a test key
    And the key list contains the key "A:tp"
    And the key list does not contain the key "A:ci"

  @R-TEST-KEYS @R-FOREIGN-404
  Scenario Outline: A test key asking for a live key (<method>) gets 404
    Given tenant "A" has a secret test key "t"
    When I send <method> "/v1/api-keys/{A:ci.id}<suffix>" as "A:t"
    Then the request is refused with 404
    And the key "A:ci" still works

    Examples:
      | method | suffix  |
      | GET    |         |
      | POST   | /rotate |
      | DELETE |         |

  @R-TEST-KEYS
  Scenario: A test key cannot create a live key
    Given tenant "A" has a secret test key "t"
    When I send POST "/v1/api-keys" as "A:t" with body '{"name":"up","type":"secret","environment":"live"}'
    Then the request is refused with 403
    And no key named "up" exists for tenant "A"

  @R-TEST-KEYS
  Scenario: A test key can create a test key
    Given tenant "A" has a secret test key "t"
    When I send POST "/v1/api-keys" as "A:t" with body '{"name":"sibling","type":"secret","environment":"test"}'
    Then the status is 201

  @R-ADMIN-AUTH @R-FORBIDDEN
  Scenario Outline: A tenant's <kind> key on <method> <path> is refused with 403
    Given tenant "A" has a restricted live key "r" with permissions "*"
    And tenant "A" has a secret test key "t"
    When I send <method> "<path>" as "<key>"
    Then the request is refused with 403
    And tenant "B" has status "active"

    Examples:
      | kind            | key      | method | path                        |
      | secret          | A        | GET    | /admin/tenants              |
      | publishable     | A:public | GET    | /admin/tenants              |
      | restricted (*)  | A:r      | GET    | /admin/tenants              |
      | secret test     | A:t      | GET    | /admin/tenants              |
      | secret          | A        | GET    | /admin/tenants/{B.id}       |
      | secret          | A        | GET    | /admin/tenants/{A.id}       |
      | secret          | A        | DELETE | /admin/tenants/{B.id}       |
      | secret          | A        | GET    | /admin/tenants/{B.id}/keys  |
      | secret          | A        | POST   | /admin/tenants/{B.id}/keys  |
      | restricted (*)  | A:r      | DELETE | /admin/tenants/{B.id}       |

  @R-ADMIN-AUTH
  Scenario: A tenant key cannot change another tenant through the admin API
    When I send PATCH "/admin/tenants/{B.id}" as "A" with body '{"status":"suspended"}'
    Then the request is refused with 403
    And tenant "B" has status "active"
    And the key "B:secret" works

  @R-ADMIN-AUTH
  Scenario: A tenant key cannot create tenants
    When I send POST "/admin/tenants" as "A" with body '{"slug":"{slug:x}","name":"X"}'
    Then the request is refused with 403

  @R-KEY-REQUIRED @R-UNIFORM-401
  Scenario Outline: <method> <path> without a key answers 401
    When I send <method> "<path>" as "none"
    Then the request is refused with 401
    And the response has the header "WWW-Authenticate" containing "Bearer"

    Examples:
      | method | path                       |
      | GET    | /admin/tenants             |
      | POST   | /admin/tenants             |
      | GET    | /admin/tenants/{A.id}      |
      | PATCH  | /admin/tenants/{A.id}      |
      | PUT    | /admin/tenants/{A.id}      |
      | DELETE | /admin/tenants/{A.id}      |
      | GET    | /admin/tenants/{A.id}/keys |
      | POST   | /admin/tenants/{A.id}/keys |
      | GET    | /v1/tenant                 |
      | GET    | /v1/api-keys               |
      | POST   | /v1/api-keys               |
      | GET    | /v1/api-keys/{A:ci.id}     |
      | DELETE | /v1/api-keys/{A:ci.id}     |

  @R-ADMIN-KEY-SCOPE
  Scenario: The platform admin key is not a tenant key
    When I send GET "/v1/api-keys" as "admin"
    Then the request is refused

  @R-ADMIN-KEY-SCOPE
  Scenario: The platform admin key with a tenant header still opens no tenant route
    When I send GET "/v1/api-keys" as "admin" with the tenant header of "A"
    Then the request is refused

  @R-ROUTING-MATCH
  Scenario: The tenant header sent twice, naming two tenants, is refused with 403
    When I send GET "/v1/tenant" as "A" with the tenant header sent twice, naming "A" and "B"
