@durable-object @needs-audit-log
Feature: The audit log and the event stream are complete and ordered
  Every change to a tenant leaves exactly one audit record, numbered by `seq` from 1 without
  gaps, in the order the changes happened, in that tenant's log only, even while other tenants
  are busy. Paging with `after=` neither loses nor repeats a record. A tenant's event stream
  receives every record as it is written, in `seq` order, and nothing else.

  Background:
    Given a tenant "A"
    And a tenant "B"

  @R-AUDIT-COMPLETE @R-AUDIT-ORDER @R-AUDIT-TENANT @isolation
  Scenario: After a sequence of changes the log holds one record per change, in order, and only the caller's
    When "A" and "B" each create 3 keys at the same time
    And tenant "A" has a secret live key "ci"
    And "A" rotates the key "A:ci" into "A:ci2"
    And I send DELETE "/v1/api-keys/{A:ci2.id}" as "A"
    Then the status is 200
    When I send PATCH "/admin/tenants/{A.id}" as "admin" with body '{"name":"Renamed by authconf"}'
    Then the status is 200
    And the audit log of "B" holds exactly, in order: "tenant.created, api_key.created*3"
    And the audit log of "A" holds exactly, in order: "tenant.created, api_key.created*4, api_key.rotated, api_key.revoked, tenant.updated"

  @R-AUDIT-PAGING
  Scenario: Reading the log page by page with after= neither loses nor repeats a record
    When "A" and "B" each create 4 keys at the same time
    And tenant "A" has a secret live key "ci"
    And I send DELETE "/v1/api-keys/{A:ci.id}" as "A"
    Then reading the audit log of "A" in pages of 1 gives every record once, in order
    And reading the audit log of "A" in pages of 2 gives every record once, in order
    And reading the audit log of "A" in pages of 3 gives every record once, in order
    And reading the audit log of "B" in pages of 2 gives every record once, in order

  @R-AUDIT-PAGING @R-INVALID-QUERY
  Scenario Outline: The audit log query <query> is refused naming <field>
    When I send GET "/v1/audit-log?<query>" as "A"
    Then the response is a problem 400 "invalid_query"
    And the problem names the field "<field>"

    Examples:
      | query       | field  |
      | limit=0     | limit  |
      | limit=1001  | limit  |
      | after=x     | after  |
      | colour=blue | colour |

  @R-EVENTS-DELIVERY @R-EVENTS-TENANT @needs-events @isolation
  Scenario: A stream receives every event of a sequence of changes, in seq order, and nothing else
    When "A" opens the event stream "a"
    And "A" and "B" each create 2 keys at the same time
    And tenant "A" has a secret live key "ci"
    And "A" rotates the key "A:ci" into "A:ci2"
    And I send DELETE "/v1/api-keys/{A:ci2.id}" as "A"
    And I send PATCH "/admin/tenants/{A.id}" as "admin" with body '{"name":"Renamed by authconf"}'
    Then the stream "a" receives exactly the events "api_key.created*3, api_key.rotated, api_key.revoked, tenant.updated" in seq order within 3 seconds

  @R-USER-AUDIT @needs-user-auth
  Scenario: End-user sign-up and logout are audited, one record each, in order
    Given "ann" has signed up in tenant "A"
    When "ann" logs out
    Then the status is 200
    And the audit log of "A" holds exactly, in order: "tenant.created, user.registered, user.logged_out"
