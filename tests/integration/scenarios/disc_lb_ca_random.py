"""Issue 7, scenario 1 (CA variant): the same discovery through haproxy
with `balance random`, with proxies trusted only through an OpenSSH host
CA (@cert-authority): the workers fetch each proxy's host certificate from
the discovery stream and verify it themselves before any forward."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _lbdisc  # noqa: E402

NAME = 'disc_lb_ca_random'
REQUIRES = _lbdisc.REQUIRES
TIMEOUT = 120


def run(ctx):
    _lbdisc.converge(ctx, balance='random', trust='ca')
