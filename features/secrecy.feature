@secrecy
Feature: Secrecy of keys
  A secret is shown exactly once, when it is issued, and never again: not in lists, gets,
  errors or headers (the harness also fails any response, in any scenario, that repeats a
  secret it was given). Keys have a recognisable format and real entropy; anything that is
  not exactly a live key is refused with one identical 401; keys never travel in URLs;
  publishable and restricted keys stay within their bounds, and no key mints a stronger one.

  Background:
    Given a tenant "A"

  @R-SECRET-ONCE
  Scenario: The tenant's keys appear in the creation response and nowhere after
    When I send GET "/admin/tenants/{A.id}" as "admin"
    Then the status is 200
    And the response does not contain the secret of "A:secret"
    And the response does not contain the secret of "A:public"

  @R-SECRET-ONCE
  Scenario Outline: <what> shows no secret
    Given tenant "A" has a secret live key "ci"
    And tenant "A" has a restricted live key "r" with permissions "read:api_keys"
    When I send GET "<path>" as "<as>"
    Then the status is 200
    And the response does not contain the secret of "A:ci"
    And the response does not contain the secret of "A:r"
    And the response does not contain the secret of "A:secret"
    And the response contains no value of the key "A:ci" beyond its display prefix

    Examples:
      | what                    | path                       | as    |
      | The tenant's key list   | /v1/api-keys               | A     |
      | One key                 | /v1/api-keys/{A:ci.id}     | A     |
      | The admin key list      | /admin/tenants/{A.id}/keys | admin |
      | The admin tenant view   | /admin/tenants/{A.id}      | admin |
      | The admin tenant list   | /admin/tenants?limit=100   | admin |
      | The restricted key list | /v1/api-keys               | A:r   |

  @R-SECRET-ONCE @R-REVOKE
  Scenario: A revoked key's secret is not shown by the revocation
    Given tenant "A" has a secret live key "ci"
    When I send DELETE "/v1/api-keys/{A:ci.id}" as "A"
    Then the status is 200
    And the response does not contain the secret of "A:ci"

  @R-NO-INTERNALS
  Scenario: Errors do not echo the key that was sent
    Given a credential "garbage" that is "sk_live_ThisIsNotAKeyButLooksLikeOne0123456789AB"
    When I send GET "/v1/api-keys" as "garbage"
    Then the request is refused with 401
    And the response does not contain the secret of "garbage"

  @R-NO-INTERNALS
  Scenario: A validation error does not echo the caller's key
    When I send POST "/v1/api-keys" as "A" with body '{"name":5}'
    Then the status is 400
    And the response does not contain the secret of "A"

  @R-KEY-FORMAT @R-KEY-CHECKSUM
  Scenario Outline: A new <type> <env> key has the key format
    Given tenant "A" has a <type> <env> key "k"
    Then the secret of "A:k" has the key format with prefix "<prefix>"

    Examples:
      | type        | env  | prefix   |
      | secret      | live | sk_live_ |
      | secret      | test | sk_test_ |
      | publishable | live | pk_live_ |
      | restricted  | test | rk_test_ |

  @R-KEY-FORMAT
  Scenario: The tenant's own keys have the key format
    Then the secret of "A:secret" has the key format with prefix "sk_live_"
    And the secret of "A:public" has the key format with prefix "pk_live_"

  @R-KEY-RANDOM
  Scenario: Twenty new keys are distinct and show no shared patterns
    When "A" creates 20 secret live keys
    Then the 20 new secrets are distinct and share no run of 10 characters after their prefix
    And the new secrets' random parts use at least 45 different characters

  @R-KEY-CHECKSUM @R-UNIFORM-401
  Scenario Outline: A key altered by <change> is refused with the same 401 as no key
    Given a credential "bad" made from "A" by <change>
    When I send GET "/v1/api-keys" as "bad"
    Then the request is refused with 401
    And the response is identical to the answer without a key

    Examples:
      | change                              |
      | removing its last character         |
      | removing its first character        |
      | adding a character                  |
      | doubling it                         |
      | flipping the case of one letter     |
      | changing one character              |
      | keeping only its display prefix     |
      | upper-casing it                     |
      | changing its type to publishable    |
      | changing its type to restricted     |
      | changing its environment to test    |

  @R-UNIFORM-401
  Scenario: A well-formed key that nobody issued gets the same 401 as no key
    Given a credential "ghost" that is a well-formed sk live key nobody issued
    When I send GET "/v1/api-keys" as "ghost"
    Then the request is refused with 401
    And the response is identical to the answer without a key

  @R-UNIFORM-401 @R-REVOKE
  Scenario: A revoked key gets the same 401 as no key
    Given tenant "A" has a secret live key "ci"
    And the key "A:ci" is revoked
    When I send GET "/v1/api-keys" as "A:ci"
    Then the request is refused with 401
    And the response is identical to the answer without a key

  @R-UNIFORM-401
  Scenario Outline: An Authorization header of the form <form> is refused with the same 401
    When I send GET "/v1/api-keys" with the authorization header "<form>"
    Then the request is refused with 401
    And the response is identical to the answer without a key

    Examples:
      | form                          |
      | Bearer                        |
      | Bearer not-a-key              |
      | Basic {A:secret.secret}       |
      | {A:secret.secret}             |
      | Token {A:secret.secret}       |
      | Bearer {A:secret.secret}:x    |

  @R-REVOKE
  Scenario: Revocation takes effect at once (or within the delay the target declares)
    Given tenant "A" has a secret live key "ci"
    When I send DELETE "/v1/api-keys/{A:ci.id}" as "A"
    Then the status is 200
    And the key "A:ci" is refused at once, or within the delay the target declares

  @R-QUERY-KEYS
  Scenario Outline: A key in the query parameter <param> is refused and does not authenticate
    When I send GET "/v1/api-keys?<param>={A:secret.secret}" as "none"
    Then the response is a problem 400 "credentials_in_query"
    And the response does not contain the secret of "A"

    Examples:
      | param        |
      | api_key      |
      | apiKey       |
      | key          |
      | access_token |

  @R-QUERY-KEYS
  Scenario: A key in the query string is refused even next to a valid header
    When I send GET "/v1/api-keys?api_key={A:secret.secret}" as "A"
    Then the response is a problem 400 "credentials_in_query"

  @R-KEY-PERMISSIONS
  Scenario Outline: A publishable key cannot <method> <path>
    Given tenant "A" has a secret live key "ci"
    When I send <method> "<path>" as "A:public"
    Then the request is refused with 403
    And the key "A:ci" still works

    Examples:
      | method | path                          |
      | GET    | /v1/api-keys                  |
      | GET    | /v1/api-keys/{A:ci.id}        |
      | POST   | /v1/api-keys/{A:ci.id}/rotate |
      | DELETE | /v1/api-keys/{A:ci.id}        |

  @R-KEY-PERMISSIONS
  Scenario: A publishable key cannot create keys
    When I send POST "/v1/api-keys" as "A:public" with body '{"name":"p","type":"publishable","environment":"live"}'
    Then the request is refused with 403

  @R-KEY-PERMISSIONS @R-TENANT-SELF
  Scenario: A publishable key reads its tenant
    When I send GET "/v1/tenant" as "A:public"
    Then the status is 200
    And the field "tenant.id" is "{A.id}"

  @R-KEY-PERMISSIONS
  Scenario: A restricted key without permissions reads only its tenant
    Given tenant "A" has a restricted live key "r" with permissions ""
    When I send GET "/v1/tenant" as "A:r"
    Then the status is 200
    When I send GET "/v1/api-keys" as "A:r"
    Then the request is refused with 403
    When I send POST "/v1/api-keys" as "A:r" with body '{"name":"x","type":"publishable","environment":"live"}'
    Then the request is refused with 403

  @R-KEY-PERMISSIONS
  Scenario: A read-only restricted key reads keys but cannot write them
    Given tenant "A" has a restricted live key "r" with permissions "read:api_keys"
    And tenant "A" has a secret live key "ci"
    When I send GET "/v1/api-keys" as "A:r"
    Then the status is 200
    When I send DELETE "/v1/api-keys/{A:ci.id}" as "A:r"
    Then the request is refused with 403
    And the key "A:ci" still works

  @R-KEY-PERMISSIONS
  Scenario: The read:* permission covers reading keys
    Given tenant "A" has a restricted live key "r" with permissions "read:*"
    When I send GET "/v1/api-keys" as "A:r"
    Then the status is 200

  @R-NO-ESCALATION
  Scenario Outline: A restricted key with write:api_keys cannot mint <what>
    Given tenant "A" has a restricted live key "w" with permissions "write:api_keys"
    When I send POST "/v1/api-keys" as "A:w" with body '<body>'
    Then the request is refused with 403
    And no key named "escalated" exists for tenant "A"

    Examples:
      | what                            | body                                                                                              |
      | a secret key                    | {"name":"escalated","type":"secret","environment":"live"}                                         |
      | a restricted key with *         | {"name":"escalated","type":"restricted","environment":"live","permissions":["*"]}                 |
      | a restricted key with read      | {"name":"escalated","type":"restricted","environment":"live","permissions":["read:api_keys"]}     |
      | a restricted key with write:*   | {"name":"escalated","type":"restricted","environment":"live","permissions":["write:*"]}           |

  @R-NO-ESCALATION @R-KEY-CREATE
  Scenario: A restricted key may mint a key within its own permissions
    Given tenant "A" has a restricted live key "w" with permissions "write:api_keys"
    When I send POST "/v1/api-keys" as "A:w" with body '{"name":"narrow","type":"restricted","environment":"live","permissions":["write:api_keys"]}'
    Then the status is 201

  @R-NO-ESCALATION @R-ROTATE
  Scenario: A restricted key cannot rotate a secret key into its own hands
    Given tenant "A" has a restricted live key "w" with permissions "write:api_keys"
    And tenant "A" has a secret live key "ci"
    When "A:w" rotates the key "A:ci"
    Then the request is refused with 403
    And the key "A:ci" still works

  @R-NO-ESCALATION
  Scenario: The restricted key that rotates a secret key gets no secret key
    Given tenant "A" has a restricted live key "w" with permissions "write:api_keys,read:api_keys"
    And the key ids of tenant "A" are known
    When "A:w" rotates the key "A:secret"
    Then the request is refused with 403
    And the key "A:secret" still works

  @R-KEY-REQUIRED
  Scenario Outline: A CORS preflight for <method> <path> from a foreign origin may not send credentials
    When I send a CORS preflight for <method> "<path>" from the origin "https://evil.example"
    Then the answer does not let the origin "https://evil.example" send credentials

    Examples:
      | method | path           |
      | POST   | /admin/tenants |
      | GET    | /v1/auth/me    |

  @R-KEY-REQUIRED
  Scenario: A request from a foreign origin may not send credentials
    When I send GET "/health" from the origin "https://evil.example"
    Then the answer does not let the origin "https://evil.example" send credentials

  @R-DISPLAY-PREFIX @R-UNIFORM-401
  Scenario Outline: The listed prefix of a <type> key alone is not a credential
    Given tenant "A" has a <type> live key "k" created by "admin"
    Then the listed prefix of the key "A:k" alone is refused on GET "/admin/tenants" with 401

    Examples:
      | type        |
      | publishable |
      | restricted  |
