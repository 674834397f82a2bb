#!/usr/bin/env python3
"""Compare an Autobahn|Testsuite report with the checked-in expected results.

Usage:
  compare.py REPORT_DIR EXPECTED.json [--agent=NAME]
                                                 # exit 1 if any case got worse
  compare.py REPORT_DIR EXPECTED.json --cases=12.1.*,13.3.*
                                                 # only the expected cases the run selected
  compare.py REPORT_DIR EXPECTED.json --write [--source=TEXT] [--agent=NAME]
                                                 # record this run as expected

REPORT_DIR is what tests/autobahn/run.sh (a server graded: agent "server") or
run-client.sh (a client graded: the client's agent name) wrote (AUTOBAHN_OUT);
its index.json holds one result per case per agent. The agent compared is
--agent, else the expected file's "agent", else the report's only agent, else
"server"; --write records it in the expected file. A case got worse when its
behavior ranks lower than expected in the order
    OK > NON-STRICT > INFORMATIONAL > UNIMPLEMENTED > FAILED > MISSING
(MISSING: an expected case with no result, e.g. the server died). Cases that
feed data one byte or one fragment at a time (4.x.5, 5.*, 6.4.*) flip between
OK and NON-STRICT with scheduling (tests/autobahn/README: "both pass"), so for
them OK and NON-STRICT rank the same. Cases better than expected and cases not
in the expected file are listed (a new case fails only if FAILED); --cases
(Autobahn's own case patterns, comma-separated) leaves out the expected cases
a run did not select, so that a subset is not MISSING the rest; run with
--write to record them. Only `behavior` is compared; `behaviorClose` problems are listed.
Python 3 standard library only.
"""
import collections
import fnmatch
import json
import os
import re
import sys

ORDER = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED", "MISSING"]
RANK = {b: i for i, b in enumerate(ORDER)}
FLAKY = re.compile(r"^(4\.\d+\.5|5\.\d+|6\.4\.\d+)$")
DEFAULT_AGENT = "server"


def case_key(c):
    return tuple(int(x) if x.isdigit() else x for x in c.split("."))


def rank(case, behavior):
    r = RANK.get(behavior, RANK["FAILED"])  # an unknown behavior counts as FAILED
    if FLAKY.match(case) and behavior in ("OK", "NON-STRICT"):
        r = RANK["NON-STRICT"]
    return r


def load_report(report_dir, agent):
    """(agent, behavior by case, behaviorClose by case); agent None: the only one, or "server"."""
    path = os.path.join(report_dir, "index.json")
    try:
        with open(path, encoding="utf-8") as f:
            idx = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit("compare: cannot read %s: %s" % (path, e))
    if agent is None:
        agent = next(iter(idx)) if len(idx) == 1 else DEFAULT_AGENT
    if agent not in idx:
        sys.exit("compare: %s: no agent %r (agents: %s)" % (path, agent, ", ".join(idx) or "none"))
    results = idx[agent]
    return agent, {c: r.get("behavior", "?") for c, r in results.items()}, \
        {c: r.get("behaviorClose", "?") for c, r in results.items()}


def load_expected(path):
    """the expected file's document, or None when there is none yet"""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        doc["cases"]
        return doc
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        sys.exit("compare: cannot read expected results %s: %s" % (path, e))


def main(argv):
    args = [a for a in argv if not a.startswith("--")]
    flags = [a for a in argv if a.startswith("--")]
    source = next((f.split("=", 1)[1] for f in flags if f.startswith("--source=")), None)
    agent = next((f.split("=", 1)[1] for f in flags if f.startswith("--agent=")), None)
    cases = next((f.split("=", 1)[1].split(",") for f in flags if f.startswith("--cases=")), None)
    if len(args) != 2 or any(f != "--write" and not f.startswith(("--source=", "--agent=", "--cases="))
                             for f in flags):
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    report_dir, expected_path = args
    expected_doc = load_expected(expected_path)
    if agent is None and expected_doc is not None:
        agent = expected_doc.get("agent")
    agent, got, got_close = load_report(report_dir, agent)

    counts = collections.Counter(got.values())
    print("autobahn: agent %s: %d cases: %s" % (agent, len(got), "  ".join(
        "%s=%d" % (b, counts[b]) for b in ORDER[:-1] if counts[b] or b in ("OK", "FAILED"))))
    close_bad = sorted((c for c, b in got_close.items()
                        if got[c] != "UNIMPLEMENTED" and b not in ("OK", "INFORMATIONAL")), key=case_key)
    if close_bad:
        print("autobahn: behaviorClose not OK (listed only): " + " ".join(
            "%s(%s)" % (c, got_close[c]) for c in close_bad[:40]) + (" ..." if len(close_bad) > 40 else ""))

    if "--write" in flags:
        graded = "the Surge echo server (fuzzingclient)" if agent == DEFAULT_AGENT \
            else "the client %r (fuzzingserver)" % agent
        doc = {
            "_comment": "Autobahn|Testsuite results expected of %s; tests/autobahn/compare.py fails "
                        "when a case's behavior gets worse. Regenerate: tests/autobahn/compare.py "
                        "REPORT_DIR tests/autobahn/%s --write --source=..."
                        % (graded, os.path.basename(expected_path)),
            "_source": source or "compare.py --write from %s" % os.path.abspath(report_dir),
            "agent": agent,
            "cases": {c: got[c] for c in sorted(got, key=case_key)},
        }
        with open(expected_path, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1, sort_keys=False)
            f.write("\n")
        print("autobahn: wrote %d expected results to %s" % (len(got), expected_path))
        return 0

    if expected_doc is None:
        print("compare: no expected results %s (record them with --write)" % expected_path, file=sys.stderr)
        return 2
    expected = expected_doc["cases"]
    if cases is not None:
        expected = {c: b for c, b in expected.items()
                    if any(fnmatch.fnmatchcase(c, pattern) for pattern in cases)}

    worse, better, new = [], [], []
    for c in sorted(set(expected) | set(got), key=case_key):
        e = expected.get(c)
        g = got.get(c, "MISSING")
        if e is None:
            new.append("%s(%s)" % (c, g))
            if g == "FAILED":
                worse.append("%s: (not expected) -> FAILED" % c)
        elif rank(c, g) > rank(c, e):
            worse.append("%s: %s -> %s" % (c, e, g))
        elif rank(c, g) < rank(c, e):
            better.append("%s: %s -> %s" % (c, e, g))
    if better:
        print("autobahn: %d better than expected (record with --write): %s" % (len(better), "; ".join(better[:40])))
    if new:
        print("autobahn: %d cases not in %s: %s" % (len(new), os.path.basename(expected_path), " ".join(new[:40])))
    if worse:
        print("autobahn: %d WORSE than expected:" % len(worse))
        for w in worse:
            print("  " + w)
        return 1
    print("autobahn: no case worse than %s (%d expected)" % (os.path.basename(expected_path), len(expected)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
