"""Summarise an Autobahn|Testsuite report: counts by behaviour, FAILED ids, missing cases.

usage: summarize.py OUT_DIR SPEC AGENT TITLE MISSING_HINT STRICT_CLOSE(0|1)
Exit 0 when every selected case reported and none FAILED (nor, with STRICT_CLOSE=1, closed
badly); 1 otherwise. Shared by run.sh (grading a server) and run-client.sh (grading a client).
"""
import collections
import json
import os
import sys

from autobahntestsuite.case import CaseBasename, CaseCategories, Cases, CaseSetname, CaseSubCategories
from autobahntestsuite.caseset import CaseSet

out, spec, agent, title, missing_hint, strict = sys.argv[1:7]
strict = strict == "1"
idx = json.load(open(os.path.join(out, "index.json"))).get(agent, {})
want = CaseSet(CaseSetname, CaseBasename, Cases, CaseCategories,
               CaseSubCategories).parseSpecCases(json.load(open(spec)))  # as wstest resolves it
counts = collections.OrderedDict((k, 0) for k in ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"])
failed, other, missing, close_bad = [], [], [], []
groups = collections.OrderedDict()
for c in want:
    r = idx.get(c)
    if r is None:
        missing.append(c)
        continue
    b, bc = r["behavior"], r.get("behaviorClose")
    groups[c.split(".")[0]] = groups.get(c.split(".")[0], 0) + r.get("duration", 0)
    if b in counts:
        counts[b] += 1
    else:
        other.append("%s(%s)" % (c, b))
    if b == "FAILED":
        failed.append(c)
    if b != "UNIMPLEMENTED" and bc not in ("OK", "INFORMATIONAL"):
        close_bad.append("%s(%s)" % (c, bc))
print("%s: %d cases selected, %d reported" % (title, len(want), len(want) - len(missing)))
print("  " + "  ".join("%s=%d" % kv for kv in counts.items()))
print("FAILED: " + (" ".join(failed) if failed else "none"))
if other:
    print("other behaviors: " + " ".join(other))
if missing:
    print("MISSING (no result; %s): %d: %s" % (missing_hint, len(missing), " ".join(missing[:40])))
if close_bad:
    print("close-behavior not OK (%s): %s" % ("counted, AUTOBAHN_STRICT_CLOSE=1" if strict else "informational",
          " ".join(close_bad[:40]) + (" ..." if len(close_bad) > 40 else "")))
print("case time by group (s): " + " ".join("%s:%.1f" % (g, ms / 1000.0) for g, ms in groups.items()))
sys.exit(1 if failed or missing or other or (strict and close_bad) else 0)
