@user-auth @needs-user-auth @timing @serial
Feature: A login's time does not tell whether an address has an account
  The contract has a login for an unknown address do the same password-hashing work as a
  login with a wrong password for a known one, so the time of the 401 says nothing.

  How it is measured: 15 rounds, each one login with the known address and one with an
  unknown address (both with a wrong password), one after the other, after one warm-up round
  that is not counted. Interleaving puts drift on the target (load, caches, CPU frequency) on
  both samples alike; medians ignore the odd slow request. The medians may differ by less than
  15 ms (jitter of a remote target) or by less than 50% of the slower median, whichever is
  larger. Skipping the hash for unknown addresses makes them faster by the whole hashing time,
  nearly 100% of the slower median on a nearby target; a fixed 300 ms delay on known addresses
  is far beyond both bounds. Tagged `@timing`: exclude it (`--tags 'not @timing'`) where times
  cannot be measured, e.g. through a proxy that queues requests. `@serial` so that the suite's
  other scenarios do not load the target while it is timed.

  @R-USER-TIMING @R-USER-UNIFORM-401
  Scenario: Wrong-password logins for a known and an unknown address take the same time
    Given a tenant "A"
    And "ann" has signed up in tenant "A"
    When I time 15 interleaved logins to tenant "A" with a wrong password, for the address of "ann" and for an unknown address
    Then the median times differ by less than 15 ms or by less than 50% of the slower one
