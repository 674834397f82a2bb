"""What the Python client drivers share: the command line, the time limit, and one
"NAME: FAIL: ..." line with exit status 1 on any failure."""
import signal
import sys

TIMEOUT = 30  # a bound for a loaded machine; each driver takes well under 1 s when idle


def run(name, check):
    """Runs check(url, fail) against the URL given on the command line, within TIMEOUT
    seconds; prints NAME: OK when it returns."""

    def fail(msg):
        print("%s: FAIL: %s" % (name, msg), file=sys.stderr, flush=True)
        sys.exit(1)

    if len(sys.argv) != 2:
        sys.exit("usage: %s ws://HOST:PORT/PATH" % sys.argv[0])
    signal.signal(signal.SIGALRM, lambda *_: fail("timed out after %ds" % TIMEOUT))
    signal.alarm(TIMEOUT)
    check(sys.argv[1], fail)
    print("%s: OK (text, binary, 1 MiB, ping/pong, close 1000)" % name)
