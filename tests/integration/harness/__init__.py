"""tunnelpool integration test harness (stdlib only).

Modules:
  env        Env: owns a scenario's work dir, processes, namespaces, servers
  procs      wait_for, Process, /proc readers (status, fds, children, ...)
  ports      free ports, listening checks, connects
  keys       ssh-keygen: keys, CAs, host/user certificates, known_hosts
  sshd       stock OpenSSH sshd proxies (root ns or own netns)
  netns      network namespaces, socat bridges, ss listeners
  haproxy    haproxy in TCP mode in front of proxies
  target     echo / HTTP / unix echo targets; data-checking clients
  sshclient  OpenSSH client: ssh -N -R, ssh -s SUBSYSTEM
  tunnelpool the daemon under test: config, tunnels, status --json
  workerdrive one worker without the supervisor (tests/tools/worker-drive)
  discovery  the proxy-side discovery helper: proxies files, its stream
  yamlw      tiny YAML writer
"""

from .errors import (HarnessError, WaitTimeout, ScenarioFailure,
                     ScenarioTimeout, expect, expect_eq)
from .procs import wait_for, Process
from .env import Env

__all__ = ['Env', 'Process', 'HarnessError', 'WaitTimeout',
           'ScenarioFailure', 'ScenarioTimeout', 'expect', 'expect_eq',
           'wait_for']
