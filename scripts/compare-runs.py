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
