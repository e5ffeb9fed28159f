@user-auth @needs-user-auth
Feature: End-user sign-up, login and access tokens
  The users of each tenant sign up and log in through /v1/auth and hold short-lived access
  tokens. Every way a login or a token can be wrong gets one and the same 401, so that an
  attacker learns nothing from it; logout, password changes and refresh-token reuse take
  effect on the very next request; and the users of one tenant do not exist for another.

  Background:
    Given a tenant "A"
    And a tenant "B"

  @R-USER-REGISTER @R-USER-TOKENS
  Scenario: Signing up answers 201 with the user, an access token and a session
    When "ann" signs up in tenant "A"
    Then the status is 201
    And the answer is a session of "ann" in tenant "A"
    And the field "user.emailVerified" is false

  @R-USER-LOGIN @R-USER-EMAIL
  Scenario: Logging in answers 200 with a new session, whatever the case of the address
    Given "ann" has signed up in tenant "A"
    When "ann" logs in to tenant "A" with her address in upper case
    Then the status is 200
    And the answer is a session of "ann" in tenant "A"

  @R-USER-ME
  Scenario: The access token shows who the user is, on me and on validate
    Given "ann" has signed up in tenant "A"
    When "ann" sends GET "/v1/auth/me" with her access token
    Then the status is 200
    And the field "user.email" is "{user:ann.email}"
    And the field "user.tenantId" is "{A.id}"
    When "ann" sends GET "/v1/auth/validate" with her access token
    Then the status is 200
    And the field "valid" is true
    And the field "user.email" is "{user:ann.email}"
    And the field "session.id" is present

  @R-USER-REGISTER @R-USER-EMAIL @R-CONFLICT
  Scenario: An address can sign up only once per tenant
    Given "ann" has signed up in tenant "A"
    When "ann" signs up in tenant "A"
    Then the response is a problem 409 "conflict"

  @R-USER-UNIFORM-401
  Scenario: An unknown user and a wrong password get byte-identical 401 answers
    Given "ann" has signed up in tenant "A"
    When "ann" logs in to tenant "A" with a wrong password
    Then the answer is the uniform 401
    And I remember the response as "wrong password"
    When "nobody" logs in to tenant "A"
    Then the answer is the uniform 401
    And the response is identical to the response "wrong password"

  @R-USER-UNIFORM-401 @R-USER-TOKENS
  Scenario Outline: An access token <how> is refused with the uniform 401
    Given "ann" has signed up in tenant "A"
    And a token "forged" made from "ann"'s access token by <how>
    When I send GET "/v1/auth/me" with the access token "forged"
    Then the answer is the uniform 401
    When I send GET "/v1/auth/validate" with the access token "forged"
    Then the answer is the uniform 401
    And "ann"'s access token works

    Examples:
      | how                                             |
      | setting alg to none                             |
      | setting alg to none and dropping the signature  |
      | re-signing it with HS512 and a made-up secret   |
      | re-signing it with a made-up secret             |
      | changing the user in the payload                |
      | changing one character of the signature         |

  @needs-jwt-secret @R-USER-TOKENS
  Scenario: A token re-signed independently with the target's own secret is accepted
    Given "ann" has signed up in tenant "A"
    And a token "copy" made from "ann"'s access token by re-signing it unchanged with the target's secret
    Then the access token "copy" works

  @needs-jwt-secret @R-USER-UNIFORM-401 @R-USER-TOKENS
  Scenario Outline: A token signed with the right secret but <what> is refused with the uniform 401
    Given "ann" has signed up in tenant "A"
    And a token "forged" made from "ann"'s access token by <how>
    When I send GET "/v1/auth/me" with the access token "forged"
    Then the answer is the uniform 401

    Examples:
      | what                      | how                                                                                  |
      | the algorithm HS512       | re-signing it with HS512 and the target's secret                                     |
      | no key id                 | removing its key id and re-signing it with the target's secret                       |
      | a wrong audience          | setting the claim "aud" to "{B.id}" and re-signing it with the target's secret       |
      | a wrong issuer            | setting the claim "iss" to "someone-else" and re-signing it with the target's secret |
      | another token type        | setting the claim "type" to "refresh" and re-signing it with the target's secret     |
      | another tenant            | setting the claim "tenantId" to "{B.id}" and re-signing it with the target's secret  |
      | an expiry in the past     | setting the claim "exp" to 1 seconds ago and re-signing it with the target's secret  |
      | a start in the future     | setting the claim "nbf" to 600 seconds from now and re-signing it with the target's secret |

  @needs-clock @serial @R-USER-TOKENS @R-TEST-CLOCK
  Scenario: An access token expires after its lifetime on the service clock
    Given "ann" has signed up in tenant "A"
    When I send POST "/_test/clock" as "admin" with body '{"advanceMs": 960000}'
    Then the status is 200
    And "ann"'s access token is refused

  @R-USER-TENANT @R-USER-UNIFORM-401
  Scenario: A token of tenant A named together with tenant B is refused
    Given "ann" has signed up in tenant "A"
    When "ann" sends GET "/v1/auth/me" with her access token and the tenant header of "B"
    Then the answer is the uniform 401

  @R-USER-LOGOUT @R-USER-REVOCATION
  Scenario: Logout refuses the token on the very next request
    Given "ann" has signed up in tenant "A"
    And I remember "ann"'s access token as "before"
    And the access token "before" works on me and validate
    When "ann" logs out
    Then the status is 200
    And the field "success" is true
    And the access token "before" is refused
    And the access token "before" is refused on me and validate

  @R-USER-LOGOUT @R-USER-REVOCATION
  Scenario: Logout ends only its own session
    Given "ann" has signed up in tenant "A"
    And I remember "ann"'s access token as "first"
    When "ann" logs in to tenant "A"
    And "ann" logs out
    Then "ann"'s access token is refused
    And the access token "first" works

  @R-USER-PASSWORD-CHANGE @R-USER-REVOCATION
  Scenario: A password change refuses every earlier token and the old password
    Given "ann" has signed up in tenant "A"
    And I remember "ann"'s access token as "first"
    When "ann" logs in to tenant "A"
    Then "ann"'s access token works on me and validate
    And the access token "first" works on me and validate
    When "ann" changes her password
    Then the status is 200
    And "ann"'s access token is refused
    And the access token "first" is refused
    And the access token "first" is refused on me and validate
    When "ann" logs in to tenant "A" with her old password
    Then the answer is the uniform 401
    When "ann" logs in to tenant "A"
    Then the status is 200

  @R-USER-PASSWORD-CHANGE @R-INVALID-FIELD
  Scenario: A wrong current password changes nothing
    Given "ann" has signed up in tenant "A"
    When "ann" sends POST "/v1/auth/change-password" with her access token
      """
      {"currentPassword": "Not-her-password-1", "newPassword": "Another-strong-pass-2"}
      """
    Then the response is a problem 400 "invalid_field"
    And the problem names the field "currentPassword"
    And "ann"'s access token works

  @R-USER-REFRESH
  Scenario: Refreshing rotates the refresh token and keeps the session
    Given "ann" has signed up in tenant "A"
    And I remember "ann"'s refresh token as "first"
    When "ann" refreshes her session
    Then the status is 200
    And the answer is a session of "ann" in tenant "A"
    And "ann"'s access token works

  @R-USER-REFRESH-REUSE
  Scenario: Presenting a used refresh token again revokes the whole family
    Given "ann" has signed up in tenant "A"
    And I remember "ann"'s refresh token as "first"
    When "ann" refreshes her session
    And "ann" refreshes her session
    Then the status is 200
    And "ann"'s access token works on me and validate
    When "ann" refreshes her session with the refresh token "first"
    Then the answer is the uniform 401
    And every access token "ann" was given is refused
    And "ann"'s access token is refused on me and validate
    When "ann" refreshes her session
    Then the answer is the uniform 401

  @R-USER-TENANT
  Scenario: Signing up in a tenant that does not exist is refused and creates nothing
    When "ann" signs up in tenant "Nowhere"
    Then the response is a problem 401 "unauthorized"
    And no tenant with the slug of "Nowhere" exists

  @R-USER-TENANT @R-TENANT-SUSPENDED
  Scenario: Signing up in a suspended tenant is refused
    Given tenant "B" is suspended
    When "ann" signs up in tenant "B"
    Then the response is a problem 403 "tenant_suspended"

  @R-USER-TENANT @R-TENANT-DELETE
  Scenario: Signing up in a deleted tenant is refused and does not bring it back
    Given "bob" has signed up in tenant "B"
    And tenant "B" is deleted
    When "ann" signs up in tenant "B"
    Then the response is a problem 401 "unauthorized"
    And "bob"'s access token is refused
    And tenant "B" has status "deleted"

  @R-USER-PASSWORD-RULES
  Scenario Outline: A weak password (<why>) is refused on sign-up
    When "ann" signs up in tenant "A" with the password "<password>"
    Then the response is a problem 400 "invalid_field"
    And the problem names the field "password"
    When "ann" logs in to tenant "A" with the password "<password>"
    Then the answer is the uniform 401

    Examples:
      | why                 | password      |
      | too short           | Short1a       |
      | no uppercase letter | alllowercase1 |
      | no lowercase letter | ALLUPPERCASE1 |
      | no digit            | NoDigitsAtAll |
      | empty               |               |

  @R-USER-PASSWORD-RULES @R-USER-PASSWORD-CHANGE
  Scenario: A weak new password is refused on a password change
    Given "ann" has signed up in tenant "A"
    When "ann" changes her password to "alllowercase1"
    Then the response is a problem 400 "invalid_field"
    And the problem names the field "newPassword"
    And "ann"'s access token works

  @R-USER-ISOLATION
  Scenario: The same address in two tenants is two accounts that never see each other
    Given "ann" has signed up in tenant "A"
    And "ann" has signed up in tenant "B" with another password
    When "ann" logs in to tenant "B" with the password she uses in tenant "A"
    Then the answer is the uniform 401
    When "ann" logs in to tenant "A"
    Then the status is 200
    And the field "user.tenantId" is "{A.id}"

  @R-USER-ISOLATION
  Scenario: A user of tenant A does not exist in tenant B
    Given "carol" has signed up in tenant "A"
    When "carol" logs in to tenant "B" with the password she uses in tenant "A"
    Then the answer is the uniform 401

  @needs-rate-limit @needs-rate-limit-override @R-RL-EXACT @R-RL-429
  Scenario: End-user auth requests count against the tenant's rate limit
    Given tenant "A" has a rate limit of 3 requests per 3600 seconds
    When "nobody" tries to log in to tenant "A" 4 times one after another
    Then exactly 1 of the responses has status 429 and the others 401
    And the response is a problem 429 "rate_limited"
    And the response has the header "Retry-After"

  # Probes for defects seen in a real deployment (issue 12; the upstream contract's section 14).

  @R-USER-TOKENS @R-USER-UNIFORM-401
  Scenario Outline: A token signed with the well-known secret "<secret>" is refused on me and validate
    Given "ann" has signed up in tenant "A"
    And "ann"'s access token re-signed with the well-known secret "<secret>" as "default"
    Then the access token "default" is refused by me and by validate

    Examples:
      | secret                              |
      | secret                              |
      | your-secret-key                     |
      | change-me                           |
      | default-secret-change-in-production |
      |                                     |

  @R-USER-ME @R-USER-UNIFORM-401
  Scenario Outline: Validate refuses a token <how>, as me does
    Given "ann" has signed up in tenant "A"
    And a token "forged" made from "ann"'s access token by <how>
    Then the access token "forged" is refused by me and by validate

    Examples:
      | how                                             |
      | setting alg to none                             |
      | re-signing it with a made-up secret             |
      | changing the user in the payload                |
      | changing one character of the signature         |

  @R-USER-LOGOUT @R-USER-REVOCATION
  Scenario: Validate refuses a token after logout, as me does
    Given "ann" has signed up in tenant "A"
    And I remember "ann"'s access token as "before"
    When "ann" logs out
    Then the access token "before" is refused by me and by validate

  @R-USER-UNIFORM-401
  Scenario: Login answers an unknown address exactly like a known one with a wrong password
    Given "ann" has signed up in tenant "A"
    Then POST "/v1/auth/login" in tenant "A" answers "ann" exactly like "nobody"

  @R-USER-NO-ENUMERATION
  Scenario: Asking for a password reset answers an unknown address exactly like a known one, mail or not
    Given "ann" has signed up in tenant "A"
    Then POST "/v1/auth/forgot-password" in tenant "A" answers "ann" exactly like "nobody"

  @R-USER-NO-ENUMERATION
  Scenario: Asking for a new verification mail answers an unknown address exactly like a known one, mail or not
    Given "ann" has signed up in tenant "A"
    Then POST "/v1/auth/resend-verification" in tenant "A" answers "ann" exactly like "nobody"

  @R-USER-NO-ENUMERATION @R-USER-EMAIL
  Scenario: Asking for a new verification mail answers an address in upper case exactly like in lower case
    Given "ann" has signed up in tenant "A"
    Then POST "/v1/auth/resend-verification" in tenant "A" answers "ann" in upper case exactly like "ann"

  @R-USER-UNIFORM-401
  Scenario Outline: The token route <method> <path> without an Authorization header answers 401, not 400
    Then <method> "<path>" without an Authorization header is refused with 401

    Examples:
      | method | path                     |
      | GET    | /v1/auth/me              |
      | GET    | /v1/auth/validate        |
      | POST   | /v1/auth/logout          |
      | POST   | /v1/auth/change-password |

  @R-USER-TENANT @R-ROUTING-MATCH
  Scenario: A login with the tenant header sent twice, naming two tenants, is refused with 403
    Given "ann" has signed up in tenant "A"
    When "ann" logs in with the tenant header sent twice, naming "A" and "B"
