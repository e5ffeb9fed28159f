@rate-limit @needs-rate-limit
Feature: Rate limiting per tenant
  Each tenant has a quota of requests per window (by plan, or the tenant's own override).
  With a limit of N, any burst gets exactly N successes in the window (within the tolerance
  the target declares); every tenant response says where it stands; the rest are refused with
  429 and Retry-After; one tenant's traffic never touches another's quota.

  Background:
    Given a tenant "A"

  @needs-rate-limit-override @R-RL-EXACT @R-RL-HEADERS
  Scenario: A burst of 12 requests under a limit of 5 gets exactly 5 through
    Given tenant "A" has a rate limit of 5 requests per 3600 seconds
    When I send GET "/v1/tenant" as "A" 12 times concurrently
    Then exactly 5 of the responses has status 200 and the others 429
    And the admitted responses carry RateLimit-Remaining from 4 down to 0, each value once

  @needs-rate-limit-override @R-RL-429
  Scenario: Refusals over the limit are 429 problems with Retry-After
    Given tenant "A" has a rate limit of 2 requests per 3600 seconds
    When I send GET "/v1/tenant" as "A" 5 times concurrently
    Then exactly 2 of the responses has status 200 and the others 429
    And every response with status 429 is a problem "rate_limited" with the header "Retry-After"
    And every 429 carries Retry-After equal to its RateLimit-Reset, in whole seconds from 1 to 3600

  @needs-rate-limit-override @R-RL-HEADERS
  Scenario: Every tenant response counts down its remaining quota
    Given tenant "A" has a rate limit of 10 requests per 3600 seconds
    When I send GET "/v1/tenant" as "A" 4 times one after another
    Then the 4 responses count down the "RateLimit-Remaining" header
    And the response has the header "RateLimit-Limit" containing "10"
    And the response has the header "RateLimit-Reset"
    And the response has the header "RateLimit-Policy" containing "10;w=3600"

  @needs-rate-limit-override @R-RL-EXACT
  Scenario: One tenant's exhausted quota does not touch another's
    Given a tenant "B"
    And tenant "A" has a rate limit of 2 requests per 3600 seconds
    And tenant "B" has a rate limit of 2 requests per 3600 seconds
    When I send GET "/v1/tenant" as "A" 6 times concurrently
    Then exactly 2 of the responses has status 200 and the others 429
    When I send GET "/v1/tenant" as "B" 2 times concurrently
    Then exactly 2 of the responses has status 200 and the others 429

  @needs-rate-limit-override @R-RL-EXACT
  Scenario: The quota comes back with the next window
    Given tenant "A" has a rate limit of 3 requests per 2 seconds
    When I send GET "/v1/tenant" as "A" 10 times one after another
    Then within 3 seconds "A" gets 200 on GET "/v1/tenant" again

  @needs-rate-limit-override @R-RL-ADMITTED
  Scenario: A key of another tenant does not spend this tenant's quota
    Given a tenant "B"
    And tenant "A" has a rate limit of 3 requests per 3600 seconds
    When I send GET "/v1/tenant" as "B" 6 times concurrently
    And I send GET "/v1/tenant" as "A" 3 times concurrently
    Then exactly 3 of the responses has status 200 and the others 429
