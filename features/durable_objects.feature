@durable-object @isolation
Feature: Tenant state behind the tenant's key
  The per-tenant state (rate-limit state, audit log, events, graph) is reachable only with
  that tenant's key, by any path; the public deployment's open /do/* routes must not exist.

  Background:
    Given a tenant "A"
    And a tenant "B"

  @R-KEY-REQUIRED
  Scenario Outline: <method> <path> without a key is refused
    When I send <method> "<path>" as "none"
    Then the request is refused or not found
    And the response is not a server error

    Examples:
      | method | path                                   |
      | GET    | /v1/rate-limit                         |
      | GET    | /v1/audit-log                          |
      | GET    | /v1/events                             |
      | GET    | /v1/graph/state                        |
      | POST   | /v1/graph/check                        |
      | POST   | /v1/graph/reload                       |
      | POST   | /v1/graph/mutations                    |
      | GET    | /do/tenant-state/{A.id}                |
      | POST   | /do/tenant-state/{A.id}/reset          |
      | POST   | /do/tenant-state/{A.id}/mutation       |
      | GET    | /do/graph-state/{A.id}                 |
      | POST   | /do/graph-state/{A.id}/reload          |
      | GET    | /admin/debug/tenant?tenant_id={A.id}   |

  @R-ROUTING-MATCH
  Scenario Outline: <path> with a routing header naming another tenant is refused
    When I send GET "<path>" as "B" with the tenant header of "A"
    Then the request is refused with 403

    Examples:
      | path            |
      | /v1/rate-limit  |
      | /v1/audit-log   |

  @needs-audit-log @R-AUDIT-COMPLETE @R-AUDIT-NO-SECRET
  Scenario: The audit log records a key's creation without its secret
    Given tenant "A" has a secret live key "ci"
    When I send GET "/v1/audit-log" as "A"
    Then the status is 200
    And the response mentions "{A:ci.id}"
    And the response does not contain the secret of "A:ci"

  @needs-audit-log @R-AUDIT-TENANT
  Scenario: Another tenant's audit log does not show this tenant's actions
    Given tenant "A" has a secret live key "ci"
    When I send GET "/v1/audit-log" as "B"
    Then the status is 200
    And the response does not mention "{A:ci.id}"
    And the response does not mention "{A.id}"

  @needs-audit-log @R-KEY-PERMISSIONS
  Scenario: A publishable key cannot read the audit log
    When I send GET "/v1/audit-log" as "A:public"
    Then the request is refused with 403
