#!/usr/bin/env python3
"""tests/wss/testssl_check.py JSON - judge a testssl.sh (3.0) JSON report (--jsonfile-pretty of
a run with -p -s -f -U -S -P) of `surge echo --tls-*`; prints a summary and exits 1 when:
  - a protocol below TLS 1.2 is offered (SSLv2, SSLv3, TLS1, TLS1_1), or TLS 1.2 or 1.3 is not;
  - a weak cipher list is offered (NULL, aNULL, EXPORT, LOW, 3DES/IDEA, AVERAGE), forward
    secrecy is not offered, or a cipher the server offers lacks it (every TLS 1.2 suite in
    its order must be ECDHE; TLS 1.3 suites always have it);
  - any vulnerability is flagged (a finding in the vulnerabilities section that is not OK/INFO);
  - any other finding is LOW or worse, except those about the throwaway test certificate
    that a test PKI cannot meet (no CRL or OCSP URI, no CAA record), and testssl's own race in
    its ticket-resumption check (CLIENT_RACE).
"""
import json
import sys

TEST_CERT_ONLY = {"cert_revocation", "DNS_CAArecord", "cert_crlDistributionPoints",
                  "cert_ocspURL", "OCSP_stapling"}
# testssl's ticket check runs `openssl s_client -sess_out FILE </dev/null`, then resumes from
# FILE. s_client closes as soon as its stdin ends, so a TLS 1.3 ticket (sent after the
# client's Finished) that arrives after that is not saved: FILE is empty, the second
# s_client fails, and testssl says "connect problem" (its --debug 2 shows "0, 1, empty").
# That race is the client's, and comes in about one run in four here whatever the server
# build (0b80b0a's too). Resumption by ticket and by session id is asserted by the engine's
# tests/tls.rs (`sessions_resume_by_ticket_and_by_session_id`).
CLIENT_RACE = {("sessionresumption_ticket", "check failed because of connect problem")}
OLD_PROTOCOLS = ["SSLv2", "SSLv3", "TLS1", "TLS1_1"]
WEAK_LISTS = ["cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT", "cipherlist_LOW",
              "cipherlist_3DES_IDEA", "cipherlist_AVERAGE"]
BAD = {"LOW", "MEDIUM", "HIGH", "CRITICAL", "WARN", "FATAL"}

report = json.load(open(sys.argv[1]))
scan = report["scanResult"][0]
findings = {}
for section, items in scan.items():
    if isinstance(items, list):
        for item in items:
            findings[item["id"]] = (section, item["severity"], item["finding"])
problems = []


def want(fid, predicate, why):
    got = findings.get(fid)
    if got is None:
        problems.append("%s: not in the report" % fid)
    elif not predicate(got[2]):
        problems.append("%s: %s (%s)" % (fid, got[2], why))


for p in OLD_PROTOCOLS:
    want(p, lambda f: f.startswith("not offered"), "below TLS 1.2")
for p in ["TLS1_2", "TLS1_3"]:
    want(p, lambda f: f.startswith("offered"), "must be offered")
for c in WEAK_LISTS:
    want(c, lambda f: f.startswith("not offered"), "a weak cipher")
want("PFS", lambda f: f == "offered", "forward secrecy")
want("cipher_order", lambda f: f == "server", "the server's order")
want("cipherorder_TLSv1_2", lambda f: all(c.startswith("ECDHE-") for c in f.split()),
     "a TLS 1.2 suite without ECDHE")
want("cipherorder_TLSv1_3", lambda f: all(c.startswith("TLS_") for c in f.split()),
     "not a TLS 1.3 suite")
for fid, (section, severity, finding) in sorted(findings.items()):
    if (fid, finding) in CLIENT_RACE:
        print("testssl: ignored %s (%s): s_client saved no ticket before it closed" % (fid, finding))
    elif severity in BAD and fid not in TEST_CERT_ONLY:
        problems.append("%s [%s, %s]: %s" % (fid, section, severity, finding))

vulns = [(fid, f[1]) for fid, f in findings.items() if f[0] == "vulnerabilities"]
print("testssl: protocols %s; TLS 1.2 suites %s; TLS 1.3 suites %s; %d vulnerability "
      "checks, %d not OK; test-certificate findings ignored: %s" % (
          ", ".join("%s=%s" % (p, findings.get(p, ("", "", "?"))[2].split(" ")[0])
                    for p in OLD_PROTOCOLS + ["TLS1_2", "TLS1_3"]),
          findings.get("cipherorder_TLSv1_2", ("", "", "?"))[2],
          findings.get("cipherorder_TLSv1_3", ("", "", "?"))[2],
          len(vulns), sum(1 for _, s in vulns if s not in ("OK", "INFO")),
          ", ".join(sorted(f for f in TEST_CERT_ONLY if f in findings
                           and findings[f][1] in BAD)) or "none"))
if problems:
    for p in problems:
        print("testssl: FAIL: " + p)
    sys.exit(1)
