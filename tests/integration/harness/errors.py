"""Exceptions shared by the harness and the driver."""


class HarnessError(Exception):
    """Something the harness could not do (a server did not start, a
    command failed).  The scenario fails with this message."""


class WaitTimeout(HarnessError):
    """A wait_for() ran into its timeout."""


class ScenarioFailure(AssertionError):
    """An expectation of the scenario did not hold (see harness.expect)."""


class ScenarioTimeout(BaseException):
    """Raised in the scenario's main thread when its time is up (SIGTERM from
    the driver).  A BaseException so that `except Exception` in scenario code
    cannot swallow it."""


def expect(cond, msg, *args):
    """Fails the scenario with msg % args unless cond is truthy."""
    if not cond:
        raise ScenarioFailure(msg % args if args else msg)
    return cond


def expect_eq(got, want, what):
    if got != want:
        raise ScenarioFailure('%s: got %r, want %r' % (what, got, want))
    return got
