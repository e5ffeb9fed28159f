@rotation
Feature: Key rotation and revocation
  Rotating a key issues a successor with a new id and the same name, type, environment and
  permissions. The old key stops working at once, or at the end of a grace period the caller
  asks for. A key can be rotated once: a revoked or already rotated key answers 409, so
  concurrent rotations of one key yield exactly one successor.

  Background:
    Given a tenant "A"
    And tenant "A" has a secret live key "ci"

  @R-ROTATE
  Scenario: After rotation the new key works and the old key is refused at once
    Given the key "A:ci" works on every route that accepts it
    When "A" rotates the key "A:ci" into "A:ci2"
    Then the status is 201
    And the rotated key keeps the name, type, environment and permissions
    And the previous key is marked revoked
    And the key "A:ci2" works on every route that accepts it
    And the key "A:ci" is refused on every route that accepts it
    When I send GET "/v1/api-keys/{A:ci.id}" as "A:ci2"
    Then the status is 200
    And the field "apiKey.revokedAt" is a timestamp
    When I send GET "/v1/api-keys/{A:ci2.id}" as "A"
    Then the status is 200
    And the field "apiKey.revokedAt" is null

  @R-ROTATE @R-UNIFORM-401
  Scenario: The old key's 401 after rotation is the same as no key
    When "A" rotates the key "A:ci" into "A:ci2"
    Then the status is 201
    When I send GET "/v1/api-keys" as "A:ci"
    Then the request is refused with 401
    And the response is identical to the answer without a key

  @R-ROTATE @R-SECRET-ONCE
  Scenario: The successor's secret differs from the old one and is shown once
    When "A" rotates the key "A:ci" into "A:ci2"
    Then the status is 201
    And the response does not contain the secret of "A:ci"
    When I send GET "/v1/api-keys/{A:ci2.id}" as "A"
    Then the status is 200
    And the response does not contain the secret of "A:ci2"

  @R-ROTATE
  Scenario: A restricted key keeps exactly its permissions through rotation
    Given tenant "A" has a restricted live key "r" with permissions "read:api_keys"
    When "A" rotates the key "A:r" into "A:r2"
    Then the status is 201
    And the rotated key keeps the name, type, environment and permissions
    When I send GET "/v1/api-keys" as "A:r2"
    Then the status is 200
    When I send POST "/v1/api-keys" as "A:r2" with body '{"name":"x","type":"publishable","environment":"live"}'
    Then the request is refused with 403

  @R-ROTATE @R-TEST-KEYS
  Scenario: A test key rotates into a test key
    Given tenant "A" has a secret test key "t"
    When "A:t" rotates the key "A:t" into "A:t2"
    Then the status is 201
    And the secret of "A:t2" has the key format with prefix "sk_test_"
    And the key "A:t2" works
    And the key "A:t" is refused with 401

  @R-ROTATE
  Scenario: With a grace period the old key works until it ends, then is refused
    When "A" rotates the key "A:ci" with a grace period of 1 second into "A:ci2"
    Then the status is 201
    And the previous key is marked expiring
    And the key "A:ci" works on every route that accepts it
    And the key "A:ci2" works
    And within 4 seconds the key "A:ci" is refused
    And the key "A:ci" is refused on every route that accepts it

  @R-ROTATE @R-KEY-LIST
  Scenario: The key list shows the old key's expiry during a grace period
    When "A" rotates the key "A:ci" with a grace period of 600 seconds into "A:ci2"
    Then the status is 201
    When I send GET "/v1/api-keys/{A:ci.id}" as "A"
    Then the status is 200
    And the field "apiKey.expiresAt" is a timestamp

  @R-ROTATE-ONCE
  Scenario: A key in its grace period cannot be rotated again
    When "A" rotates the key "A:ci" with a grace period of 600 seconds into "A:ci2"
    Then the status is 201
    When "A" rotates the key "A:ci"
    Then the response is a problem 409 "conflict"

  @R-ROTATE-ONCE
  Scenario: A rotated key cannot be rotated again
    When "A" rotates the key "A:ci" into "A:ci2"
    Then the status is 201
    When "A" rotates the key "A:ci"
    Then the response is a problem 409 "conflict"
    And the key "A:ci2" works

  @R-ROTATE-ONCE
  Scenario: A revoked key cannot be rotated back to life
    Given the key "A:ci" is revoked
    When "A" rotates the key "A:ci"
    Then the response is a problem 409 "conflict"
    And the key "A:ci" is refused with 401

  @R-NOT-FOUND
  Scenario: Rotating an unknown key answers 404
    When I send POST "/v1/api-keys/{unknown-key-id}/rotate" as "A"
    Then the response is a problem 404 "not_found"

  @R-FOREIGN-404
  Scenario: Another tenant cannot rotate this tenant's key
    Given a tenant "B"
    When "B" rotates the key "A:ci"
    Then the request is refused with 404
    And the key "A:ci" still works

  @R-ROTATE @R-INVALID-FIELD
  Scenario Outline: A grace period of <value> is refused
    When I send POST "/v1/api-keys/{A:ci.id}/rotate" as "A" with body '{"expiresInSeconds":<value>}'
    Then the response is a problem 400 "invalid_field"
    And the problem names the field "expiresInSeconds"
    And the key "A:ci" still works

    Examples:
      | value   |
      | -1      |
      | 604801  |
      | "60"    |
      | 1.5     |
      | null    |

  @R-ROTATE
  Scenario: A grace period of 0 seconds ends the old key at once
    Given the key "A:ci" works on every route that accepts it
    When "A" rotates the key "A:ci" with a grace period of 0 seconds into "A:ci2"
    Then the status is 201
    And the key "A:ci" is refused on every route that accepts it

  @R-ROTATE-ONCE
  Scenario: Ten concurrent rotations of one key yield exactly one successor
    When "A" rotates the key "A:ci" 10 times concurrently
    Then exactly 1 of the responses has status 201 and the others 409

  @R-ROTATE-ONCE @R-KEY-LIST
  Scenario: Ten concurrent rotations of a key leave exactly one live successor in the list
    When "A" rotates the key "A:ci" 10 times concurrently
    Then exactly 1 of the responses has status 201 and the others 409
    When I send GET "/v1/api-keys" as "A"
    Then the status is 200
    And the list "apiKeys" has exactly 4 items

  @R-REVOKE
  Scenario: Revoking a key refuses it at once and repeating the revocation is harmless
    Given the key "A:ci" works on every route that accepts it
    When I send DELETE "/v1/api-keys/{A:ci.id}" as "A"
    Then the status is 200
    And the field "apiKey.revokedAt" is a timestamp
    And the key "A:ci" is refused on every route that accepts it
    When I send DELETE "/v1/api-keys/{A:ci.id}" as "A"
    Then the status is 200

  @R-REVOKE @R-KEY-LIST
  Scenario: A revoked key stays in the list with its revocation time
    Given the key "A:ci" is revoked
    When I send GET "/v1/api-keys/{A:ci.id}" as "A"
    Then the status is 200
    And the field "apiKey.revokedAt" is a timestamp

  @R-REVOKE
  Scenario: A key can revoke itself and is refused afterwards
    Given the key "A:ci" works on every route that accepts it
    When I send DELETE "/v1/api-keys/{A:ci.id}" as "A:ci"
    Then the status is 200
    And the key "A:ci" is refused on every route that accepts it
