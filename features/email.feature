@email @user-auth @needs-user-auth @needs-mail
Feature: Verification and password-reset tokens by mail
  Verification and reset tokens reach the user by mail only. They are two distinct kinds, each
  good once and in its own tenant; asking for a reset or a new verification mail answers the
  same whether the address has an account or not; and no mail carries a secret beyond its own
  single-use token.

  Background:
    Given a tenant "A"
    And a tenant "B"

  @R-EMAIL-TOKENS
  Scenario: Signing up sends a verification token that verifies the address once
    Given "ann" has signed up in tenant "A"
    When "ann" receives a verification mail
    And "ann" sends her verification token to "verify-email"
    Then the status is 200
    And the field "success" is true
    When "ann" sends GET "/v1/auth/me" with her access token
    Then the field "user.emailVerified" is true
    When "ann" sends her verification token to "verify-email"
    Then the response is a problem 400 "invalid_field"
    And the problem names the field "token"

  @R-EMAIL-TOKENS @R-USER-REVOCATION
  Scenario: A reset token by mail sets a new password once and ends every session
    Given "ann" has signed up in tenant "A"
    And I remember "ann"'s access token as "before"
    When "ann" asks for a password reset in tenant "A"
    Then the status is 200
    When "ann" receives a password reset mail
    And "ann" sends her password reset token to "reset-password"
    Then the status is 200
    And the access token "before" is refused
    When "ann" logs in to tenant "A" with her old password
    Then the answer is the uniform 401
    When "ann" logs in to tenant "A"
    Then the status is 200
    When "ann" sends her password reset token to "reset-password"
    Then the response is a problem 400 "invalid_field"
    And the problem names the field "token"

  @R-EMAIL-TOKENS
  Scenario: A reset token is not a verification token
    Given "ann" has signed up in tenant "A"
    When "ann" asks for a password reset in tenant "A"
    And "ann" receives a password reset mail
    And "ann" sends her password reset token to "verify-email"
    Then the response is a problem 400 "invalid_field"
    And the problem names the field "token"
    When "ann" sends GET "/v1/auth/me" with her access token
    Then the field "user.emailVerified" is false

  @R-EMAIL-TOKENS
  Scenario: A verification token is not a reset token
    Given "ann" has signed up in tenant "A"
    When "ann" receives a verification mail
    And "ann" sends her verification token to "reset-password"
    Then the response is a problem 400 "invalid_field"
    And the problem names the field "token"
    And "ann"'s access token works

  @R-EMAIL-TOKENS @R-USER-ISOLATION
  Scenario: A token of tenant A does nothing in tenant B
    Given "ann" has signed up in tenant "A"
    And "ann" has signed up in tenant "B" with another password
    When "ann" asks for a password reset in tenant "A"
    And "ann" receives a password reset mail
    And "ann" sends her password reset token to "reset-password" of tenant "B"
    Then the response is a problem 400 "invalid_field"
    And the problem names the field "token"
    And "ann"'s access token works

  @R-EMAIL-TOKENS @R-USER-PASSWORD-RULES
  Scenario: A weak password is refused on reset and does not use the token up
    Given "ann" has signed up in tenant "A"
    When "ann" asks for a password reset in tenant "A"
    And "ann" receives a password reset mail
    And "ann" sends her password reset token to "reset-password" with the new password "alllowercase1"
    Then the response is a problem 400 "invalid_field"
    And the problem names the field "newPassword"
    And "ann"'s access token works
    When "ann" sends her password reset token to "reset-password"
    Then the status is 200

  @R-USER-NO-ENUMERATION
  Scenario: Asking for a reset answers the same for unknown and known addresses
    Given "ann" has signed up in tenant "A"
    When "ann" asks for a password reset in tenant "A"
    Then the status is 200
    And I remember the response as "known"
    When "nobody" asks for a password reset in tenant "A"
    Then the response is identical to the response "known"
    And within 1 second no mail has gone to "nobody"

  @R-USER-NO-ENUMERATION
  Scenario: Asking for a new verification mail answers the same for unknown and known addresses
    Given "ann" has signed up in tenant "A"
    When "ann" asks for a new verification mail in tenant "A"
    Then the status is 200
    And I remember the response as "known"
    When "nobody" asks for a new verification mail in tenant "A"
    Then the response is identical to the response "known"
    And within 1 second no mail has gone to "nobody"

  @R-EMAIL-TOKENS
  Scenario: A new verification mail ends the earlier verification token
    Given "ann" has signed up in tenant "A"
    When "ann" receives a verification mail
    And "ann" asks for a new verification mail in tenant "A"
    And "ann" receives a verification mail
    And "ann" sends her earlier verification token to "verify-email"
    Then the response is a problem 400 "invalid_field"
    And the problem names the field "token"
    When "ann" sends her verification token to "verify-email"
    Then the status is 200

  @R-MAIL-NO-SECRET
  Scenario: No mail carries a secret of this run
    Given "ann" has signed up in tenant "A"
    When "ann" receives a verification mail
    And "ann" asks for a password reset in tenant "A"
    And "ann" receives a password reset mail
    Then no captured mail contains a secret of this run
