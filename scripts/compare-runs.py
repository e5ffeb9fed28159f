#!/usr/bin/env python3
"""Compares two authconf runs scenario by scenario (their junit.xml): prints every scenario whose
outcome differs and every skip of the right-hand run with its reason. Exit 1 when an outcome
differs, other than a scenario the right-hand target skips for a capability it does not declare
while the left-hand one ran it."""
import argparse
import sys
import xml.etree.ElementTree as ET


def outcomes(path):
    out = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        key = (case.get("classname"), case.get("name"))
        if case.find("failure") is not None:
            out[key] = ("failed", case.find("failure").get("message", ""))
        elif case.find("skipped") is not None:
            out[key] = ("skipped", case.find("skipped").get("message", ""))
        else:
            out[key] = ("passed", "")
    return out


def self_test():
    """The comparison must fail on a changed outcome and pass on a capability skip."""
    import os
    import subprocess
    import tempfile

    case = '<testcase classname="F" name="{n}"{body}'
    def junit(cases):
        return "<testsuites><testsuite name='F'>" + "".join(cases) + "</testsuite></testsuites>"
    passed = lambda n: case.format(n=n, body="/>")
    failed = lambda n: case.format(n=n, body='><failure message="boom">x</failure></testcase>')
    skipped = lambda n: case.format(n=n, body='><skipped message="no capability"/></testcase>')
    with tempfile.TemporaryDirectory() as d:
        def run(left, right):
            lp, rp = os.path.join(d, "l.xml"), os.path.join(d, "r.xml")
            open(lp, "w").write(junit(left))
            open(rp, "w").write(junit(right))
            return subprocess.run([sys.executable, __file__, lp, rp], capture_output=True).returncode
        assert run([passed("a"), passed("b")], [passed("a"), passed("b")]) == 0
        assert run([passed("a"), passed("b")], [passed("a"), failed("b")]) == 1
        assert run([passed("a"), failed("b")], [passed("a"), passed("b")]) == 1
        assert run([passed("a"), passed("b")], [passed("a")]) == 1
        assert run([passed("a"), passed("b")], [passed("a"), skipped("b")]) == 0
        assert run([passed("a"), skipped("b")], [passed("a"), passed("b")]) == 1
    print("compare-runs self-test: ok")


if sys.argv[1:] == ["--self-test"]:
    self_test()
    sys.exit(0)

p = argparse.ArgumentParser()
p.add_argument("left")
p.add_argument("right")
p.add_argument("--left", dest="lname", default="left")
p.add_argument("--right", dest="rname", default="right")
a = p.parse_args()
left, right = outcomes(a.left), outcomes(a.right)
differ, skipped = [], []
for key in sorted(set(left) | set(right)):
    l, r = left.get(key, ("absent", "")), right.get(key, ("absent", ""))
    if r[0] == "skipped":
        skipped.append((key, r[1]))
    if l[0] == r[0]:
        continue
    if r[0] == "skipped" and l[0] == "passed":
        continue  # listed below with its reason
    differ.append((key, l, r))
print(f"{a.lname}: {len(left)} scenarios, {a.rname}: {len(right)} scenarios")
for key, why in skipped:
    print(f"  skipped by {a.rname}: {key[0]} › {key[1]} ({why})")
for key, l, r in differ:
    print(f"  DIFFERS: {key[0]} › {key[1]}: {a.lname} {l[0]}, {a.rname} {r[0]} {r[1][:200]}")
if differ:
    print(f"{len(differ)} scenario(s) differ between {a.lname} and {a.rname}")
    sys.exit(1)
print(f"same outcome for every scenario ({len(skipped)} skipped by {a.rname}, reasons above)")
