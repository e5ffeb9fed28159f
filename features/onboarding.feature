@onboarding @admin @needs-user-auth @needs-mail
Feature: Onboarding a tenant with its first admin
  The platform admin can create a tenant together with its first admin user. The tenant gets
  its keys as usual; the admin gets a welcome mail with the documentation link and a
  single-use code to set a password; the tenant's record shows how far onboarding has got.

  @R-ONBOARDING
  Scenario: Onboarding creates the tenant, its keys and the onboarding state
    When the platform admin creates tenant "O" with onboarding for "olga" and the template "rbac"
    Then the status is 201
    And the field "tenant.status" is "active"
    And the field "onboarding.adminEmail" is "{user:olga.email}"
    And the field "onboarding.template" is "rbac"
    And the field "onboarding.adminPasswordSet" is false
    And the key "O" works
    When I send GET "/admin/tenants/{O.id}" as "admin"
    Then the status is 200
    And the field "onboarding.adminEmail" is "{user:olga.email}"
    And the field "onboarding.adminUserId" is present

  @R-ONBOARDING-MAIL @R-MAIL-NO-SECRET
  Scenario: The admin gets a welcome mail with the documentation link
    When the platform admin creates tenant "O" with onboarding for "olga"
    Then the status is 201
    When "olga" receives a welcome mail
    Then the welcome mail to "olga" mentions "docs/contract.md"
    And within 5 seconds GET "/admin/tenants/{O.id}" as "admin" shows the field "onboarding.welcomeEmail" as "sent"
    And no captured mail contains a secret of this run

  @R-ONBOARDING-PASSWORD
  Scenario: The welcome code sets the admin's password once
    When the platform admin creates tenant "O" with onboarding for "olga"
    And "olga" receives a welcome mail
    And "olga" logs in to tenant "O"
    Then the answer is the uniform 401
    When "olga" sends her welcome token to "reset-password"
    Then the status is 200
    When "olga" logs in to tenant "O"
    Then the status is 200
    And the answer is a session of "olga" in tenant "O"
    And the field "user.emailVerified" is true
    And within 5 seconds GET "/admin/tenants/{O.id}" as "admin" shows the field "onboarding.adminPasswordSet" as true
    When "olga" sends her welcome token to "reset-password"
    Then the response is a problem 400 "invalid_field"
    And the problem names the field "token"

  @R-ONBOARDING
  Scenario: A tenant created without onboarding shows no onboarding state
    Given a tenant "P"
    When I send GET "/admin/tenants/{P.id}" as "admin"
    Then the status is 200
    And the field "onboarding" is absent

  @R-ONBOARDING-VALIDATION
  Scenario Outline: A bad onboarding request (<what>) is refused and creates nothing
    When the platform admin creates tenant "Bad" with the onboarding '<onboarding>'
    Then the response is a problem 400 "invalid_field"
    And the problem names the field "<field>"
    And no tenant with the slug of "Bad" exists

    Examples:
      | what             | onboarding                                       | field                 |
      | not an address   | {"adminEmail": "not-an-address"}                 | onboarding.adminEmail |
      | unknown template | {"adminEmail": "a@example.com", "template": "x"} | onboarding.template   |
      | unknown field    | {"adminEmail": "a@example.com", "other": 1}      | onboarding.other      |
