#!/bin/bash
# The signer against real OpenSSH: a stock sshd on 127.0.0.1 and the real
# ssh client authenticating through agent-serve (the supervisor's signer on
# a unix socket).  Proves interop for ed25519, ed25519 + user certificate,
# ecdsa and rsa (rsa-sha2-256 and -512), and that refusals really refuse.
#
#   test_signer_ssh.sh AGENT_SERVE
#
# Needs root (sshd must switch users).  Exit 77 (skip) without it.
set -euo pipefail

AGENT_SERVE=${1:?usage: test_signer_ssh.sh AGENT_SERVE}
SSHD=/usr/sbin/sshd
USER_NAME=root

if [ "$(id -u)" != 0 ]; then
	echo "SKIP: needs root to run sshd"
	exit 77
fi
for p in "$SSHD" ssh ssh-keygen; do
	command -v "$p" >/dev/null || { echo "SKIP: $p missing"; exit 77; }
done

T=$(mktemp -d /tmp/tp-signer-ssh.XXXXXX)
SSHD_PID=
AGENT_PID=

cleanup() {
	local rc=$?
	[ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null || true
	[ -n "$SSHD_PID" ] && kill "$SSHD_PID" 2>/dev/null || true
	[ -n "$SSHD_PID" ] && wait "$SSHD_PID" 2>/dev/null || true
	if [ $rc != 0 ]; then
		echo "--- sshd log"; cat "$T/sshd.log" 2>/dev/null || true
	fi
	rm -rf "$T"
	exit $rc
}
trap cleanup EXIT

fail() { echo "FAIL: $*"; exit 1; }

# A free high port: nothing answers on it.
free_port() {
	local p
	for _ in $(seq 50); do
		p=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"; return 0
		fi
	done
	return 1
}

# ---- keys ----
kg() { ssh-keygen -q -N '' "$@"; }
kg -t ed25519 -f "$T/host" -C host
kg -t ed25519 -f "$T/ca" -C ca
kg -t ed25519 -f "$T/ed25519" -C plain-ed25519
kg -t ecdsa -b 256 -f "$T/ecdsa" -C plain-ecdsa
kg -t rsa -b 2048 -f "$T/rsa" -C plain-rsa
kg -t ed25519 -f "$T/edcert" -C cert-only
kg -t ed25519 -f "$T/stranger" -C not-authorized
ssh-keygen -q -s "$T/ca" -I tp-signer-test -n "$USER_NAME" -V -5m:+1h \
	"$T/edcert.pub"
# The certified key is deliberately not in authorized_keys: only the
# certificate (TrustedUserCAKeys) can let it in.
cat "$T/ed25519.pub" "$T/ecdsa.pub" "$T/rsa.pub" >"$T/authorized_keys"

# ---- sshd ----
PORT=$(free_port) || fail "no free port"
mkdir -p /run/sshd
chmod 755 /run/sshd
cat >"$T/sshd_config" <<EOF
Port $PORT
ListenAddress 127.0.0.1
HostKey $T/host
PidFile none
AuthorizedKeysFile $T/authorized_keys
TrustedUserCAKeys $T/ca.pub
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
LogLevel VERBOSE
EOF
"$SSHD" -t -f "$T/sshd_config" || fail "sshd config"
"$SSHD" -D -e -f "$T/sshd_config" 2>"$T/sshd.log" &
SSHD_PID=$!
for _ in $(seq 100); do
	(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
	kill -0 "$SSHD_PID" 2>/dev/null || fail "sshd died"
	sleep 0.1
done
echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$T/host.pub")" >"$T/known_hosts"

# ---- agent + ssh ----
start_agent() {
	rm -f "$T/agent.sock"
	"$AGENT_SERVE" "$@" "$T/agent.sock" >"$T/agent.out" 2>"$T/agent.log" &
	AGENT_PID=$!
	for _ in $(seq 100); do
		[ -S "$T/agent.sock" ] && return 0
		kill -0 "$AGENT_PID" 2>/dev/null || { cat "$T/agent.log"; fail "agent-serve died"; }
		sleep 0.05
	done
	fail "agent socket never appeared"
}

# Sets stats to "signatures=N refusals=M".  Not in a $(subshell): only
# this shell can wait for the agent.
stop_agent() {
	kill "$AGENT_PID"
	wait "$AGENT_PID" || true
	AGENT_PID=
	stats=$(cat "$T/agent.out")
}

# PubkeyAuthentication=unbound: OpenSSH >= 8.9 otherwise signs for the
# "publickey-hostbound-v00@openssh.com" method, which the signer refuses;
# libssh (the worker) always uses plain "publickey".
# Options given to run_ssh come first: for ssh the first value wins.
run_ssh() {
	timeout 30 ssh -F /dev/null -p "$PORT" "$@" \
		-o IdentityAgent="$T/agent.sock" -o IdentitiesOnly=no \
		-o IdentityFile="$T/no-such-file" \
		-o BatchMode=yes -o PubkeyAuthentication=unbound \
		-o PreferredAuthentications=publickey \
		-o UserKnownHostsFile="$T/known_hosts" \
		-o StrictHostKeyChecking=yes -o ConnectTimeout=10 \
		"$USER_NAME@127.0.0.1" true
}

# expect_ok NAME AGENT_ARGS -- SSH_ARGS
expect_ok() {
	local name=$1; shift
	local aargs=() sargs=() stats binds
	while [ $# -gt 0 ] && [ "$1" != -- ]; do aargs+=("$1"); shift; done
	[ $# -gt 0 ] && shift
	sargs=("$@")
	start_agent "${aargs[@]}"
	if ! run_ssh "${sargs[@]+"${sargs[@]}"}" 2>"$T/ssh.log"; then
		cat "$T/ssh.log" "$T/agent.log"
		fail "$name: ssh did not log in"
	fi
	stop_agent
	# OpenSSH's ssh also sends the session-bind@openssh.com extension
	# (request type 27); the signer refuses it, which ssh ignores.  That
	# must be the only refusal.
	binds=$(grep -c 'refused agent request type 27:' "$T/agent.log" || true)
	case $stats in
	"signatures=1 refusals=$binds") ;;
	*) cat "$T/agent.log"; fail "$name: agent stats: $stats" ;;
	esac
	echo "ok: $name ($stats, $binds session-bind)"
}

# expect_refused NAME AGENT_ARGS -- SSH_ARGS
expect_refused() {
	local name=$1; shift
	local aargs=() sargs=() stats
	while [ $# -gt 0 ] && [ "$1" != -- ]; do aargs+=("$1"); shift; done
	[ $# -gt 0 ] && shift
	sargs=("$@")
	start_agent "${aargs[@]}"
	if run_ssh "${sargs[@]+"${sargs[@]}"}" 2>"$T/ssh.log"; then
		fail "$name: ssh logged in"
	fi
	stop_agent
	case $stats in
	"signatures=0 refusals="[1-9]*) ;;
	*) cat "$T/agent.log"; fail "$name: agent stats: $stats" ;;
	esac
	grep -q 'level=warn.*refused agent sign request' "$T/agent.log" ||
		fail "$name: no refusal logged"
	echo "ok: $name refused ($stats)"
}

expect_ok "ed25519 key" -u "$USER_NAME" "$T/ed25519"
expect_ok "ed25519 certificate" -u "$USER_NAME" -c "$T/edcert-cert.pub" \
	"$T/edcert"
expect_ok "ecdsa key" -u "$USER_NAME" "$T/ecdsa"
expect_ok "rsa key, rsa-sha2-256" -u "$USER_NAME" "$T/rsa" -- \
	-o PubkeyAcceptedAlgorithms=rsa-sha2-256
expect_ok "rsa key, rsa-sha2-512" -u "$USER_NAME" "$T/rsa" -- \
	-o PubkeyAcceptedAlgorithms=rsa-sha2-512

# The signer must refuse, not merely fail to be accepted: the agent
# configured for another user, and ssh using the host-bound method.
expect_refused "other proxy user" -u nobody "$T/ed25519"
expect_refused "host-bound method" -u "$USER_NAME" "$T/ed25519" -- \
	-o PubkeyAuthentication=yes

# A key sshd does not know: the signer is never asked (sshd refuses the
# key before any signature), so ssh simply fails.
start_agent -u "$USER_NAME" "$T/stranger"
run_ssh 2>/dev/null && fail "stranger key logged in"
stop_agent
case $stats in
"signatures=0 refusals="*) ;;
*) fail "stranger: $stats" ;;
esac
grep -q 'refused agent sign request' "$T/agent.log" &&
	fail "stranger: the signer was asked to sign"
echo "ok: unknown key not accepted ($stats)"

grep -q "Accepted publickey for $USER_NAME .* ED25519-CERT" "$T/sshd.log" ||
	fail "sshd never accepted the certificate"
echo "PASS"
