@durable-object @isolation @secrecy @needs-events
Feature: Real-time events reach their own tenant only
  A tenant's key opens its event stream (GET /v1/events, upgraded to a WebSocket). Each of
  the tenant's audit records is pushed to its streams as it happens, never to another
  tenant's, and never with a secret in it.

  Background:
    Given a tenant "A"
    And a tenant "B"

  @R-EVENTS-FRAMES
  Scenario: The stream greets with the key's tenant and answers a ping
    When "A" opens the event stream "a"
    And I send '{"type":"ping"}' on the stream "a"
    Then the stream "a" receives a message of type "pong" within 2 seconds

  @R-EVENTS-DELIVERY @R-AUDIT-NO-SECRET
  Scenario: A key created by the tenant is pushed to its stream, without the secret
    When "A" opens the event stream "a"
    And tenant "A" has a secret live key "ci"
    Then the stream "a" receives an event mentioning "{A:ci.id}" within 2 seconds

  @R-EVENTS-TENANT
  Scenario: Another tenant's stream hears nothing of this tenant's actions
    When "B" opens the event stream "b"
    And "A" opens the event stream "a"
    And tenant "A" has a secret live key "ci"
    Then the stream "a" receives an event mentioning "{A:ci.id}" within 2 seconds
    And the stream "b" receives no event within 1 second

  @R-EVENTS-ACCESS
  Scenario Outline: The event stream refuses <who>
    Given tenant "A" has a secret live key "ci"
    And the key "A:ci" is revoked
    Then opening the event stream as "<cred>" is refused

    Examples:
      | who           | cred     |
      | no key        | none     |
      | a revoked key | A:ci     |
      | the admin key | admin    |

  @R-EVENTS-FRAMES
  Scenario: A malformed frame gets an error message, and the stream stays open
    When "A" opens the event stream "a"
    And I send 'this is not json' on the stream "a"
    Then the stream "a" receives a message of type "error" within 2 seconds
    When I send '{"type":"ping"}' on the stream "a"
    Then the stream "a" receives a message of type "pong" within 2 seconds

  @R-EVENTS-CLOSE
  Scenario: Revoking a key closes the streams it opened
    Given tenant "A" has a secret live key "ci"
    When "A:ci" opens the event stream "a"
    And I send DELETE "/v1/api-keys/{A:ci.id}" as "A"
    Then the status is 200
    And the stream "a" is closed by the target within 2 seconds

  @R-EVENTS-CLOSE
  Scenario: Suspending a tenant closes its streams
    When "A" opens the event stream "a"
    And I send PATCH "/admin/tenants/{A.id}" as "admin" with body '{"status":"suspended"}'
    Then the status is 200
    And the stream "a" is closed by the target within 2 seconds
