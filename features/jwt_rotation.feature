@jwt-rotation @user-auth @needs-user-auth @destructive @serial
Feature: Rotating the JWT signing secret without downtime
  The platform admin rotates the secret that signs access tokens: tokens of the old and the
  new key both verify until the old key is retired, new tokens name the new key in their
  header, and the keyring never shows a secret. These scenarios change the whole deployment's
  signing keys, so they run alone and only where destructive scenarios are allowed.

  Background:
    Given a tenant "A"
    And "ann" has signed up in tenant "A"
    And I remember "ann"'s access token as "before"

  @R-JWT-KEYRING
  Scenario: The keyring shows key ids and statuses, never a secret, to the platform admin only
    When I send GET "/admin/jwt" as "admin"
    Then the status is 200
    And the keyring shows key ids and statuses only
    And the keyring lists the key id of the access token "before" as "current"
    When I send GET "/admin/jwt" as "A"
    Then the response is a problem 403 "forbidden"
    When I send GET "/admin/jwt" as "none"
    Then the response is a problem 401 "unauthorized"

  @R-JWT-ROTATE
  Scenario: After a rotation old tokens still verify and new tokens carry the new key id
    When I send POST "/admin/jwt/rotate" as "admin"
    Then the status is 200
    And the keyring shows key ids and statuses only
    And the keyring lists the key id of the access token "before" as "previous"
    And I remember the response as "rotated"
    When "ann" logs in to tenant "A"
    Then "ann"'s access token carries the "currentKid" of the response "rotated"
    And the access token "before" carries a different key id than "ann"'s access token
    And the access token "before" works
    And "ann"'s access token works

  @R-JWT-RETIRE
  Scenario: After retiring the previous key its tokens are refused
    When I send POST "/admin/jwt/rotate" as "admin"
    And "ann" logs in to tenant "A"
    And I send POST "/admin/jwt/retire-previous" as "admin"
    Then the status is 200
    And the keyring lists the key id of the access token "before" as "retired"
    And the access token "before" is refused
    And "ann"'s access token works

  @needs-jwt-secret @R-JWT-ROTATE @R-USER-TOKENS
  Scenario: Tokens of a rotated key verify independently with the secret derived from JWT_SECRET
    When I send POST "/admin/jwt/rotate" as "admin"
    And "ann" logs in to tenant "A"
    And a token "copy" made from "ann"'s access token by re-signing it unchanged with the target's secret
    Then the access token "copy" works
