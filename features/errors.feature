@errors
Feature: Errors are clear problems, never server errors
  Every error is application/problem+json with a stable code. Malformed JSON, wrong types,
  missing or unknown fields, oversized bodies, wrong content types, unknown routes and wrong
  methods each get their own answer, and no input yields a 500.

  Background:
    Given a tenant "A"

  @R-INVALID-JSON @R-NO-500 @R-NO-INTERNALS
  Scenario Outline: <what> sent to <path> is invalid JSON
    When I send POST "<path>" as "<as>" with content type "application/json" and body '<body>'
    Then the response is a problem 400 "invalid_json"

    Examples:
      | what               | path           | as    | body             |
      | A truncated object | /v1/api-keys   | A     | {"name":"x",     |
      | A bare word        | /v1/api-keys   | A     | hello            |
      | A trailing comma   | /admin/tenants | admin | {"slug":"a",}    |
      | Single quotes      | /admin/tenants | admin | {'slug':'a'}     |

  @R-INVALID-JSON @R-NO-500
  Scenario: An empty body where JSON is required is a problem, not a crash
    When I send POST "/v1/api-keys" as "A" with content type "application/json" and body ''
    Then the status is 400
    And the response is not a server error

  @R-INVALID-JSON @R-NO-500
  Scenario: A JSON body that is not an object is a problem
    When I send POST "/v1/api-keys" as "A" with body '["name","x"]'
    Then the status is 400
    And the response is not a server error

  @R-KEY-CREATE @R-INVALID-FIELD
  Scenario Outline: A key with <problem> is refused naming the field <field>
    When I send POST "/v1/api-keys" as "A" with body '<body>'
    Then the response is a problem 400 "invalid_field"
    And the problem names the field "<field>"

    Examples:
      | problem                         | field       | body                                                                                  |
      | a number as name                | name        | {"name":5,"type":"secret","environment":"live"}                                       |
      | an empty name                   | name        | {"name":"","type":"secret","environment":"live"}                                      |
      | a name of 101 characters        | name        | {"name":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx","type":"secret","environment":"live"} |
      | no name                         | name        | {"type":"secret","environment":"live"}                                                |
      | an unknown type                 | type        | {"name":"x","type":"superuser","environment":"live"}                                  |
      | an unknown environment          | environment | {"name":"x","type":"secret","environment":"prod"}                                     |
      | permissions as a string         | permissions | {"name":"x","type":"restricted","environment":"live","permissions":"read:api_keys"}   |
      | an unknown permission           | permissions | {"name":"x","type":"restricted","environment":"live","permissions":["read:everything"]} |
      | permissions on a secret key     | permissions | {"name":"x","type":"secret","environment":"live","permissions":["read:api_keys"]}     |
      | an unknown field                | admin       | {"name":"x","type":"secret","environment":"live","admin":true}                        |

  @R-TENANT-FIELDS @R-INVALID-FIELD
  Scenario Outline: A tenant with <problem> is refused naming the field <field>
    When I send POST "/admin/tenants" as "admin" with body '<body>'
    Then the response is a problem 400 "invalid_field"
    And the problem names the field "<field>"

    Examples:
      | problem                   | field    | body                                                      |
      | an unknown plan           | plan     | {"slug":"{slug:p}","name":"P","plan":"platinum"}          |
      | no name                   | name     | {"slug":"{slug:p}"}                                       |
      | a name of 201 characters  | name     | {"slug":"{slug:p}","name":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"} |
      | no slug                   | slug     | {"name":"P"}                                              |
      | a numeric slug            | slug     | {"slug":42,"name":"P"}                                    |
      | an unknown field          | parentId | {"slug":"{slug:p}","name":"P","parentId":"tenant:x"}      |
      | the field parent_id       | parent_id | {"slug":"{slug:p}","name":"P","parent_id":"tenant:x"}    |

  @R-TENANT-FIELDS @R-INVALID-FIELD
  Scenario Outline: The slug "<slug>" is refused because a slug is a DNS label
    When I send POST "/admin/tenants" as "admin" with body '{"slug":"<slug>","name":"Bad slug"}'
    Then the response is a problem 400 "invalid_field"
    And the problem names the field "slug"

    Examples:
      | slug                                                                 |
      | Upper                                                                |
      | -leading                                                             |
      | trailing-                                                            |
      | under_score                                                          |
      | dot.ted                                                              |
      | sp ace                                                               |
      |                                                                      |
      | {slug64:toolong}                                                     |

  @R-INVALID-QUERY @R-TENANT-LIST
  Scenario Outline: The query <query> is refused naming the parameter <field>
    When I send GET "/admin/tenants?<query>" as "admin"
    Then the response is a problem 400 "invalid_query"
    And the problem names the field "<field>"

    Examples:
      | query          | field  |
      | limit=0        | limit  |
      | limit=101      | limit  |
      | limit=ten      | limit  |
      | page=0         | page   |
      | page=-1        | page   |
      | status=weird   | status |
      | plan=platinum  | plan   |

  @R-PAYLOAD-TOO-LARGE
  Scenario Outline: A body over 64 KiB sent to <path> is refused with 413
    When I send POST "<path>" as "<as>" with a JSON body of 70000 bytes
    Then the response is a problem 413 "payload_too_large"

    Examples:
      | path           | as    |
      | /v1/api-keys   | A     |
      | /admin/tenants | admin |

  @R-PAYLOAD-TOO-LARGE
  Scenario: A body just under 64 KiB is judged on its content, not its size
    When I send POST "/v1/api-keys" as "A" with a JSON body of 60000 bytes
    Then the response is a problem 400 "invalid_field"

  @R-MEDIA-TYPE
  Scenario Outline: A <type> body is refused with 415
    When I send POST "/v1/api-keys" as "A" with content type "<type>" and body '{"name":"x","type":"secret","environment":"live"}'
    Then the response is a problem 415 "unsupported_media_type"

    Examples:
      | type                              |
      | text/plain                        |
      | application/x-www-form-urlencoded |
      | application/xml                   |

  @R-MEDIA-TYPE
  Scenario: A body without a content type is refused with 415
    When I send POST "/v1/api-keys" as "A" with content type "" and body '{"name":"x","type":"secret","environment":"live"}'
    Then the response is a problem 415 "unsupported_media_type"

  @R-NOT-FOUND
  Scenario Outline: The unknown route <path> answers 404
    When I send GET "<path>" as "<as>"
    Then the response is a problem 404 "not_found"

    Examples:
      | path                         | as    |
      | /v1/nothing-here             | A     |
      | /admin/nothing-here          | admin |
      | /v2/api-keys                 | A     |
      | /v1/api-keys/{A.id}/x/y      | A     |

  @R-METHOD-NOT-ALLOWED
  Scenario Outline: <method> on <path> answers 405 with an Allow header
    When I send <method> "<path>" as "<as>"
    Then the response is a problem 405 "method_not_allowed"
    And the response has the header "Allow"

    Examples:
      | method | path                   | as    |
      | PUT    | /v1/api-keys           | A     |
      | DELETE | /health                | none  |
      | POST   | /v1/tenant             | A     |
      | PATCH  | /admin/tenants         | admin |

  @R-NOT-FOUND
  Scenario: An unknown tenant answers 404 on the admin API
    When I send GET "/admin/tenants/{unknown-tenant-id}" as "admin"
    Then the response is a problem 404 "not_found"

  @R-NOT-FOUND
  Scenario: An unknown key id answers 404
    When I send GET "/v1/api-keys/{unknown-key-id}" as "A"
    Then the response is a problem 404 "not_found"

  @R-NO-500 @R-NO-INTERNALS
  Scenario Outline: The odd key id <id> is an answer, never a crash
    When I send GET "/v1/api-keys/<id>" as "A"
    Then the response is not a server error
    And the status is 404

    Examples:
      | id                                           |
      | %00                                          |
      | key%3A%27%20OR%201%3D1--                     |
      | ..%2F..%2Fadmin%2Ftenants                    |
      | %F0%9F%94%91                                 |
      | key%3Axxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx |

  @R-REQUEST-ID @R-PROBLEM
  Scenario: Every error carries a request id
    When I send GET "/v1/api-keys" as "none"
    Then the status is 401
    And the response has the header "X-Request-Id"
