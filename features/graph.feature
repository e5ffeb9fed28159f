@graph @durable-object @needs-graph
Feature: The tenant's authorization graph (GraphStateCSV)
  A tenant uploads its relation graph as a CSV file, loads it, and asks questions of it: may
  this subject do that on this object (check), does this chain of edges hold (validate). Every
  reload or mutation call makes exactly one new version, the mutation log tells every change in
  order, and one tenant's graph is invisible to every other tenant and to keys without the
  graph permissions.

  Background:
    Given a tenant "A"

  @R-GRAPH-CSV @R-GRAPH-RELOAD @R-GRAPH-STATE @R-GRAPH-VERSION
  Scenario: An uploaded CSV is stored and becomes the graph on reload, one version later
    Given I note the graph version of "A"
    When "A" uploads the graph CSV:
      """
      subject_type,subject_id,relation,object_type,object_id
      user,alice,member,group,eng
      group,eng,viewer,doc,readme
      """
    Then the status is 200
    And the graph version of "A" has moved by 0
    When "A" reloads the graph
    Then the status is 200
    And the field "edgeCount" is 2
    And the graph version of "A" has moved by 1
    And the graph of "A" holds 2 edges
    And as "A", "user:alice" has "viewer" on "doc:readme"

  @R-GRAPH-CSV @R-INVALID-FIELD
  Scenario: A bad CSV is refused naming its line and column, and nothing of it is stored
    Given "A" has loaded the graph:
      """
      subject_type,subject_id,relation,object_type,object_id
      user,alice,member,group,eng
      group,eng,viewer,doc,readme
      """
    And I note the graph version of "A"
    When "A" uploads the graph CSV:
      """
      subject_type,subject_id,relation,object_type,object_id
      user,bob,member,group,eng
      group,eng,edit or,doc,readme
      """
    Then the response is a problem 400 "invalid_field"
    And the problem names the field "csv"
    And the problem detail names line 3 and column 3
    When "A" reloads the graph
    Then the status is 200
    And the graph version of "A" has moved by 1
    And the graph of "A" holds 2 edges
    And as "A", "user:alice" has "viewer" on "doc:readme"
    And as "A", "user:bob" does not have "viewer" on "doc:readme"

  @R-GRAPH-CSV
  Scenario Outline: A CSV with <problem> is refused naming line <line> and column <column>
    When "A" uploads the graph CSV:
      """
      <first>
      <second>
      """
    Then the response is a problem 400 "invalid_field"
    And the problem detail names line <line> and column <column>

    Examples:
      | problem               | first                                                   | second                         | line | column |
      | a wrong header        | subject,subject_id,relation,object_type,object_id       | user,alice,member,group,eng    | 1    | 1      |
      | four fields in a row  | subject_type,subject_id,relation,object_type,object_id  | user,alice,member,group        | 2    | 5      |
      | a colon in an id      | subject_type,subject_id,relation,object_type,object_id  | user,ali:ce,member,group,eng   | 2    | 2      |

  @R-GRAPH-CSV @R-GRAPH-CHECK
  Scenario: A quoted field may hold a comma (RFC 4180)
    Given "A" has loaded the graph:
      """
      subject_type,subject_id,relation,object_type,object_id
      user,alice,viewer,doc,"q3,report"
      """
    Then the graph of "A" holds 1 edge
    And as "A", "user:alice" has "viewer" on "doc:q3,report"

  @R-GRAPH-CHECK @R-GRAPH-TENANT
  Scenario: Check follows direct edges and membership, and denies what does not hold
    Given "A" has loaded the graph:
      """
      subject_type,subject_id,relation,object_type,object_id
      user,alice,member,group,eng
      group,eng,member_of,group,staff
      group,staff,viewer,doc,handbook
      user,bob,editor,doc,readme
      user,carol,viewer,group,eng
      """
    Then as "A", "user:bob" has "editor" on "doc:readme"
    And as "A", "user:alice" has "viewer" on "doc:handbook"
    And as "A", "user:bob" does not have "viewer" on "doc:readme"
    And as "A", "user:bob" does not have "viewer" on "doc:handbook"
    And as "A", "user:alice" does not have "editor" on "doc:readme"
    And as "A", "user:carol" does not have "viewer" on "doc:handbook"
    And as "A", "doc:readme" does not have "editor" on "user:bob"

  @R-GRAPH-CHECK
  Scenario: Check follows membership up to 8 hops and no further
    Given "A" has loaded membership chains of 8 and 9 hops to "viewer" on "doc:deep"
    Then as "A", "user:hop8" has "viewer" on "doc:deep"
    And as "A", "user:hop9" does not have "viewer" on "doc:deep"

  @R-GRAPH-VALIDATE
  Scenario: Validate checks every edge id of the chain, its links and its ends
    Given "A" has loaded the graph:
      """
      subject_type,subject_id,relation,object_type,object_id
      user,alice,member,group,eng
      group,eng,member,group,staff
      group,staff,viewer,doc,readme
      """
    Then as "A", the chain "user:alice:member:group:eng, group:eng:member:group:staff, group:staff:viewer:doc:readme" from "user:alice" to "doc:readme" is valid
    And as "A", the chain "" from "user:alice" to "doc:readme" is invalid
    And as "A", the chain "user:alice:member:group:eng, group:eng:member:group:staff, group:staff:viewer:doc:nothing" from "user:alice" to "doc:nothing" is invalid
    And as "A", the chain "user:alice:member:group:eng, group:eng:member:group:ops, group:staff:viewer:doc:readme" from "user:alice" to "doc:readme" is invalid
    And as "A", the chain "user:alice:member:group:eng, group:staff:viewer:doc:readme" from "user:alice" to "doc:readme" is invalid
    And as "A", the chain "user:alice:member:group:eng, group:eng:member:group:staff, group:staff:viewer:doc:readme" from "user:bob" to "doc:readme" is invalid
    And as "A", the chain "user:alice:member:group:eng, group:eng:member:group:staff, group:staff:viewer:doc:readme" from "user:alice" to "doc:other" is invalid

  @R-GRAPH-VALIDATE @R-GRAPH-MUTATIONS
  Scenario: A revoked edge breaks every chain through it
    Given "A" has loaded the graph:
      """
      subject_type,subject_id,relation,object_type,object_id
      user,alice,member,group,eng
      group,eng,viewer,doc,readme
      """
    When "A" revokes the graph edge "group:eng:viewer:doc:readme"
    Then the status is 200
    And as "A", the chain "user:alice:member:group:eng, group:eng:viewer:doc:readme" from "user:alice" to "doc:readme" is invalid
    And as "A", "user:alice" does not have "viewer" on "doc:readme"

  @R-GRAPH-MUTATIONS @R-GRAPH-LOG @R-GRAPH-VERSION
  Scenario: Each mutation call is one new version, seen at once, and the log lists every change in order
    Given "A" has loaded the graph:
      """
      subject_type,subject_id,relation,object_type,object_id
      user,alice,member,group,eng
      group,eng,viewer,doc,readme
      """
    And I note the graph version of "A"
    When "A" adds the graph edges "user:bob:member:group:eng, user:carol:editor:doc:readme"
    Then the status is 200
    And the field "applied" is 2
    And the graph version of "A" has moved by 1
    And as "A", "user:bob" has "viewer" on "doc:readme"
    When "A" revokes the graph edge "user:alice:member:group:eng"
    Then the graph version of "A" has moved by 2
    And as "A", "user:alice" does not have "viewer" on "doc:readme"
    When "A" reloads the graph
    Then the graph version of "A" has moved by 3
    And as "A", "user:alice" has "viewer" on "doc:readme"
    And as "A", "user:bob" does not have "viewer" on "doc:readme"
    And the graph mutation log of "A" since the noted version lists, in order:
      | +1 | add    | user:bob:member:group:eng      |
      | +1 | add    | user:carol:editor:doc:readme   |
      | +2 | revoke | user:alice:member:group:eng    |
      | +3 | reload | -                              |

  @R-GRAPH-TENANT @isolation
  Scenario: Another tenant's graph shows and grants nothing of this tenant's
    Given a tenant "B"
    And "A" has loaded the graph:
      """
      subject_type,subject_id,relation,object_type,object_id
      user,alice,viewer,doc,readme
      """
    And I note the graph version of "B"
    Then as "B", "user:alice" does not have "viewer" on "doc:readme"
    And as "B", the chain "user:alice:viewer:doc:readme" from "user:alice" to "doc:readme" is invalid
    And the graph of "B" holds 0 edges
    When "B" reloads the graph
    Then the graph of "B" holds 0 edges
    And as "B", "user:alice" does not have "viewer" on "doc:readme"
    And as "A", "user:alice" has "viewer" on "doc:readme"

  @R-GRAPH-PERMISSIONS @R-KEY-PERMISSIONS
  Scenario: A read:graph key may ask but not change; a key without graph permissions may do neither
    Given tenant "A" has a restricted live key "reader" with permissions "read:graph"
    And tenant "A" has a restricted live key "keys" with permissions "read:api_keys"
    And "A" has loaded the graph:
      """
      subject_type,subject_id,relation,object_type,object_id
      user,alice,viewer,doc,readme
      """
    Then as "A:reader", "user:alice" has "viewer" on "doc:readme"
    When I send GET "/v1/graph/state" as "A:reader"
    Then the status is 200
    When "A:reader" uploads the graph CSV:
      """
      subject_type,subject_id,relation,object_type,object_id
      user,mallory,viewer,doc,readme
      """
    Then the response is a problem 403 "forbidden"
    When "A:reader" reloads the graph
    Then the response is a problem 403 "forbidden"
    When "A:reader" adds the graph edge "user:mallory:viewer:doc:readme"
    Then the response is a problem 403 "forbidden"
    When I send GET "/v1/graph/state" as "A:keys"
    Then the response is a problem 403 "forbidden"
    When I send POST "/v1/graph/check" as "A:keys" with body '{"subject":"user:alice","relation":"viewer","object":"doc:readme"}'
    Then the response is a problem 403 "forbidden"
    When I send GET "/v1/graph/mutations" as "A:public"
    Then the response is a problem 403 "forbidden"
    And as "A", "user:mallory" does not have "viewer" on "doc:readme"
