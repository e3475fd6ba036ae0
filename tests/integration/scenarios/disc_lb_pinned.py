"""Issue 7, scenario 1: discovery through a real load balancer.  Three
stock sshd proxies, each in its own network namespace with the
tunnelpool-discovery subsystem, behind haproxy (roundrobin).  A tunnel to
the haproxy address alone ends with all three proxies claimed (host keys
pinned in known_hosts), and a connection made to the forwarded port on each
proxy reaches the node's target with every byte intact."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _lbdisc  # noqa: E402

NAME = 'disc_lb_pinned'
REQUIRES = _lbdisc.REQUIRES
TIMEOUT = 120


def run(ctx):
    _lbdisc.converge(ctx, balance='roundrobin', trust='pinned')
