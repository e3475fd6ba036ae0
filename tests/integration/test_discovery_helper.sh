#!/usr/bin/env bash
# Integration: the real tunnelpool-discovery binary, alone and as a
# subsystem of a real OpenSSH sshd on 127.0.0.1.
#
#   test_discovery_helper.sh BUILD/proxy/tunnelpool-discovery
#
# Needs ssh-keygen and jq; the sshd part also needs root and /usr/sbin/sshd
# and is skipped (with a notice) without them.  Every process it starts is
# stopped by PID.
set -euo pipefail

BIN=$(realpath "$1")
SRC=$(cd "$(dirname "$0")/../.." && pwd)
SNIPPET=$SRC/packaging/proxy/sshd_config.d/tunnelpool.conf
SSHD=${SSHD:-/usr/sbin/sshd}
T=$(mktemp -d "${TMPDIR:-/tmp}/tp-discovery.XXXXXX")
PIDS=()

# Stops what is left of what we started: only PIDs that are still our
# children, so a recycled PID is never hit.
cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		[ "$(ps -o ppid= -p "$p" 2>/dev/null | tr -d ' ')" = "$$" ] &&
			kill "$p" 2>/dev/null
	done
	exec 3>&- 4>&-
	rm -rf "$T"
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*" >&2
	local f
	for f in "$T"/*.out "$T"/*.err "$T"/sshd.log; do
		[ -f "$f" ] && { echo "--- $f" >&2; cut -c1-200 "$f" >&2; }
	done
	exit 1
}
ok() { echo "ok - $*"; }

# wait_for SECONDS CMD...: polls CMD every 50 ms.
wait_for() {
	local i=0 limit=$(($1 * 20))
	shift
	until "$@"; do
		i=$((i + 1))
		[ "$i" -lt "$limit" ] || return 1
		sleep 0.05
	done
}

alive() { kill -0 "$1" 2>/dev/null; }
dead() { ! kill -0 "$1" 2>/dev/null; }

# The complete lines of a stream file (a line may be half-written).
complete() { head -n "$(wc -l <"$1")" "$1"; }
lines_of() { complete "$1" | jq -c --arg t "$2" 'select(.type == $t)'; }
count() { lines_of "$1" "$2" | wc -l; }
has() { [ "$(count "$1" "$2")" -ge "${3:-1}" ]; }
last() { lines_of "$1" "$2" | tail -n 1; }

keygen() {
	ssh-keygen -q -t ed25519 -N '' -C "root@$1" -f "$T/$1"
}
fp_of() { ssh-keygen -lf "$T/$1.pub" | awk '{print $2}'; }
key_of() { awk '{print $1 " " $2}' "$T/$1.pub"; }

# proxies_yaml CLUSTER NAME...: a proxies file for these keys.
proxies_yaml() {
	local n
	echo "cluster: $1"
	shift
	echo "proxies:"
	for n in "$@"; do
		printf '  - name: %s\n    host_key: "%s"\n' "$n" "$(cat "$T/$n.pub")"
	done
	echo "self_certificate: $T/px1-cert.pub"
}

# atomic FILE: stdin into FILE by rename, as deployment tools do.
atomic() { cat >"$1.tmp.$$" && mv -f "$1.tmp.$$" "$1"; }

# expect_set OUT CLUSTER NAME...: the last set is exactly these proxies.
expect_set() {
	local out=$1 cluster=$2 line n i=0
	shift 2
	line=$(last "$out" proxies)
	[ "$(jq -r .cluster <<<"$line")" = "$cluster" ] ||
		fail "cluster in $line"
	[ "$(jq '.proxies | length' <<<"$line")" -eq $# ] ||
		fail "want $# proxies in $line"
	for n in "$@"; do
		if [ "$(jq -r ".proxies[$i].name" <<<"$line")" != "$n" ] ||
		    [ "$(jq -r ".proxies[$i].fp" <<<"$line")" != "$(fp_of "$n")" ] ||
		    [ "$(jq -r ".proxies[$i].host_key" <<<"$line")" != "$(key_of "$n")" ]; then
			fail "proxy $i is not $n in $line"
		fi
		i=$((i + 1))
	done
}

# Every line has seq = its line number: nothing lost, nothing repeated.
expect_seqs() {
	complete "$1" | jq -s -e '[.[].seq] == [range(1; length + 1)]' \
		>/dev/null || fail "seq not 1..N in $1"
}

# start_helper NAME FILE: helper with stdin and stdout on FIFOs; fd 3 holds
# its stdin open, a cat copies its stdout to $T/NAME.out.
start_helper() {
	mkfifo "$T/$1.in" "$T/$1.pipe"
	"$BIN" -f "$2" -i 1 <"$T/$1.in" >"$T/$1.pipe" 2>"$T/$1.err" &
	HPID=$!
	PIDS+=("$HPID")
	cat "$T/$1.pipe" >"$T/$1.out" &
	CPID=$!
	PIDS+=("$CPID")
	exec 3>"$T/$1.in"
}

scenario_files() {
	local err_re
	keygen px1; keygen px2; keygen px3; keygen ca
	ssh-keygen -q -s "$T/ca" -I px1 -h -n px1.example -z 1 "$T/px1.pub"
	proxies_yaml prod-eu px2 px1 >"$T/proxies.yaml"
	start_helper a "$T/proxies.yaml"

	wait_for 3 has "$T/a.out" proxies || fail "no first set"
	expect_set "$T/a.out" prod-eu px1 px2
	[ "$(complete "$T/a.out" | head -n 1 | jq -r .type)" = proxies ] ||
		fail "first line is not the set"
	ok "first line is the full set, sorted, fingerprints as ssh-keygen's"

	wait_for 2 has "$T/a.out" cert || fail "no cert line"
	[ "$(last "$T/a.out" cert | jq -r .cert)" = "$(key_of px1-cert)" ] ||
		fail "cert line"
	ok "host certificate announced"

	wait_for 3 has "$T/a.out" heartbeat || fail "no heartbeat"
	[ "$(last "$T/a.out" heartbeat | jq .interval)" -eq 1 ] ||
		fail "heartbeat interval"
	ok "heartbeat arrives"

	proxies_yaml prod-eu px1 px3 | atomic "$T/proxies.yaml"
	wait_for 2 has "$T/a.out" proxies 2 || fail "no set after rename"
	expect_set "$T/a.out" prod-eu px1 px3
	ok "atomic rename: new set within 2 s"

	# Same set, other order and comments: nothing to announce.
	proxies_yaml prod-eu px3 px1 | sed 's/ root@px[0-9]*"/ edited"/' |
		atomic "$T/proxies.yaml"
	sleep 1.5
	[ "$(count "$T/a.out" proxies)" -eq 2 ] || fail "unchanged set re-sent"
	ok "an unchanged set is not announced again"

	printf 'cluster: prod-eu\nproxies:\n  - name: px1\n    host_key: [\n' |
		atomic "$T/proxies.yaml"
	err_re="^tunnelpool-discovery: $T/proxies.yaml:[0-9]+:[0-9]+: .+"
	wait_for 2 grep -qE "$err_re" "$T/a.err" || fail "no error on stderr"
	sleep 1.5
	[ "$(count "$T/a.out" proxies)" -eq 2 ] || fail "broken file announced"
	alive "$HPID" || fail "helper died on a broken file"
	ok "broken file: '$(head -n 1 "$T/a.err" | sed "s|$T|\$T|")', old set kept"

	# An in-place rewrite (no rename) is seen too.
	proxies_yaml prod-eu px2 px3 >"$T/proxies.yaml"
	wait_for 2 has "$T/a.out" proxies 3 || fail "no set after rewrite"
	expect_set "$T/a.out" prod-eu px2 px3
	ok "in-place rewrite: new set"

	ssh-keygen -q -s "$T/ca" -I px1 -h -n px1.example -z 2 "$T/px1.pub"
	wait_for 2 has "$T/a.out" cert 2 || fail "no new cert line"
	[ "$(last "$T/a.out" cert | jq -r .cert)" = "$(key_of px1-cert)" ] ||
		fail "new cert line"
	ok "renewed certificate announced"

	expect_seqs "$T/a.out"
	ok "seq runs 1..N over all line types"

	kill "$CPID"
	wait_for 2 dead "$HPID" || fail "helper outlived its stdout reader"
	wait "$HPID" || fail "helper exit status $? after its reader left"
	ok "reader gone: helper exits within interval + 1 s"
}

scenario_stdin_eof() {
	start_helper b "$T/proxies.yaml"
	wait_for 3 has "$T/b.out" proxies || fail "no set (b)"
	exec 3>&-
	wait_for 1 dead "$HPID" || fail "helper ignored EOF on stdin"
	ok "stdin EOF: helper exits"
}

scenario_bad_at_start() {
	printf 'cluster: prod-eu\nproxies: []\n' >"$T/late.yaml"
	start_helper c "$T/late.yaml"
	wait_for 3 has "$T/c.out" heartbeat 2 || fail "no heartbeats (c)"
	grep -q "late.yaml:2:10: no proxies" "$T/c.err" || fail "no error (c)"
	[ "$(count "$T/c.out" proxies)" -eq 0 ] || fail "set from a bad file"
	proxies_yaml prod-eu px1 | atomic "$T/late.yaml"
	wait_for 2 has "$T/c.out" proxies || fail "fixed file not picked up"
	expect_set "$T/c.out" prod-eu px1
	expect_seqs "$T/c.out"
	exec 3>&-
	wait_for 1 dead "$HPID" || fail "helper c did not exit"
	ok "bad file at start: heartbeats only, fixed file picked up"
}

# Kubernetes swaps a symlink above the file's directory: inotify (on the
# old directory) sees nothing, the stat() check at each heartbeat does.
scenario_symlink_swap() {
	mkdir "$T/v1" "$T/v2"
	proxies_yaml prod-eu px1 >"$T/v1/proxies.yaml"
	proxies_yaml prod-eu px2 >"$T/v2/proxies.yaml"
	ln -s v1 "$T/current"
	start_helper e "$T/current/proxies.yaml"
	wait_for 3 has "$T/e.out" proxies || fail "no set (e)"
	ln -s v2 "$T/current.new" && mv -T "$T/current.new" "$T/current"
	wait_for 3 has "$T/e.out" proxies 2 || fail "symlink swap not seen"
	expect_set "$T/e.out" prod-eu px2
	exec 3>&-
	wait_for 1 dead "$HPID" || fail "helper e did not exit"
	ok "symlink swapped above the directory: seen by the stat() check"
}

# fake_keys N: N random, well-formed ed25519 public key lines.  Each blob
# is 51 bytes, a whole number of base64 blocks, so one base64 run with
# 68-column lines encodes one key per line.
fake_keys() {
	head -c $(($1 * 32)) /dev/urandom | od -An -v -tx1 -w32 | tr -d ' ' |
		sed 's/^/0000000b7373682d6564323535313900000020/' | xxd_r |
		base64 -w 68 | sed 's/^/ssh-ed25519 /'
}
# xxd -r -p without xxd: hex lines to bytes.
xxd_r() { sed 's/../\\x&/g' | while IFS= read -r l; do printf '%b' "$l"; done; }

# big_yaml N NAME_PAD: a set of the first N keys of $T/keys, named
# p<i><NAME_PAD>.
big_yaml() {
	printf 'cluster: big\nproxies:\n'
	head -n "$1" "$T/keys" | awk -v pad="$2" \
		'{ printf "  - {name: p%d%s, host_key: \"%s\"}\n", NR, pad, $0 }'
}

scenario_limits() {
	local pad
	pad=$(printf 'n%.0s' $(seq 1 100))
	fake_keys 257 >"$T/keys"
	[ "$(sort -u "$T/keys" | wc -l)" -eq 257 ] || fail "fake_keys"
	big_yaml 256 "" >"$T/big.yaml"
	start_helper d "$T/big.yaml"
	wait_for 3 has "$T/d.out" proxies || fail "no set of 256 (d)"
	[ "$(last "$T/d.out" proxies | jq '.proxies | length')" -eq 256 ] ||
		fail "256 proxies not announced"
	big_yaml 257 "" | atomic "$T/big.yaml"
	wait_for 2 grep -q "big.yaml:[0-9]*:5: more than 256 proxies" \
		"$T/d.err" || fail "257 proxies not refused"
	big_yaml 256 "$pad" | atomic "$T/big.yaml"
	wait_for 2 grep -q "big.yaml: the set of 256 proxies does not fit in one 65536-byte line" \
		"$T/d.err" || fail "oversized line not refused"
	sleep 0.5
	[ "$(count "$T/d.out" proxies)" -eq 1 ] || fail "refused set announced"
	exec 3>&-
	wait_for 1 dead "$HPID" || fail "helper d did not exit"
	ok "limits: 256 proxies announced; 257, or a line over 64 KiB, refused"
}

scenario_cli() {
	"$BIN" -V | grep -q '^tunnelpool-discovery ' || fail "-V"
	local rc=0
	"$BIN" -i 0 -f x </dev/null 2>/dev/null || rc=$?
	[ "$rc" -eq 2 ] || fail "bad -i exit status $rc"
	ok "-V and usage errors"
}

# start_sshd CONFIG: sshd -D on a free high port of 127.0.0.1; sets PORT.
start_sshd() {
	local _
	for _ in 1 2 3 4 5; do
		PORT=$((20000 + RANDOM % 40000))
		sed "s/@PORT@/$PORT/" "$1" >"$T/sshd_config.run"
		"$SSHD" -D -e -f "$T/sshd_config.run" >"$T/sshd.log" 2>&1 &
		SSHD_PID=$!
		PIDS+=("$SSHD_PID")
		wait_for 3 grep -q "Server listening" "$T/sshd.log" && return 0
		kill "$SSHD_PID" 2>/dev/null || true
	done
	fail "sshd did not start"
}

# The packaging recipe, pointed at this build and this test's files.
sshd_config_from_snippet() {
	cat <<-EOF
	Port @PORT@
	ListenAddress 127.0.0.1
	HostKey $T/hostkey
	PidFile none
	UsePAM no
	StrictModes no
	LogLevel VERBOSE
	EOF
	sed -e "s|/usr/lib/tunnelpool/tunnelpool-discovery|$BIN|" \
	    -e "s|/etc/tunnelpool/proxies.yaml|$T/proxies.yaml -i 1|" \
	    -e "s|/etc/tunnelpool/authorized_keys|$T/authorized_keys|" \
	    -e "s|^Match User tunnel|Match User $(id -un)|" "$SNIPPET"
}

helpers_running() { pgrep -f -- "$BIN -f $T/proxies.yaml" >/dev/null; }

scenario_sshd() {
	local ssh_pid line
	if [ "$(id -u)" -ne 0 ] || [ ! -x "$SSHD" ]; then
		echo "# skip sshd scenario: needs root and $SSHD"
		return 0
	fi
	mkdir -p /run/sshd
	# The recipe as shipped parses, included from a Debian-like config.
	printf 'Include %s\nHostKey %s\nX11Forwarding yes\nSubsystem sftp /usr/lib/openssh/sftp-server\n' \
		"$SNIPPET" "$T/hostkey" >"$T/debian.conf"
	ssh-keygen -q -t ed25519 -N '' -f "$T/hostkey"
	"$SSHD" -t -f "$T/debian.conf" || fail "sshd -t rejects the recipe"
	ok "packaging recipe passes sshd -t"

	keygen node
	cp "$T/node.pub" "$T/authorized_keys"
	proxies_yaml prod-eu px1 px2 >"$T/proxies.yaml"
	sshd_config_from_snippet >"$T/sshd_config"
	start_sshd "$T/sshd_config"
	SSH=(ssh -F /dev/null -i "$T/node" -o IdentitiesOnly=yes
	     -o BatchMode=yes -o StrictHostKeyChecking=no
	     -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -p "$PORT")

	mkfifo "$T/ssh.in"
	"${SSH[@]}" -s "$(id -un)@127.0.0.1" tunnelpool-discovery \
		<"$T/ssh.in" >"$T/ssh.out" 2>"$T/ssh.err" &
	ssh_pid=$!
	PIDS+=("$ssh_pid")
	exec 4>"$T/ssh.in"
	wait_for 5 has "$T/ssh.out" heartbeat || fail "no stream through sshd"
	expect_set "$T/ssh.out" prod-eu px1 px2
	expect_seqs "$T/ssh.out"
	helpers_running || fail "no helper process under sshd"
	ok "subsystem stream through sshd: set, cert, heartbeat"

	kill "$ssh_pid"
	exec 4>&-
	wait_for 3 eval '! helpers_running' || fail "helper outlived ssh"
	ok "ssh client killed: helper gone"

	# ForceCommand: asking for anything else still gets only the helper.
	line=$("${SSH[@]}" "$(id -un)@127.0.0.1" id </dev/null | head -n 1)
	[ "$(jq -r .type <<<"$line")" = proxies ] ||
		fail "exec was not forced to the helper: $line"
	wait_for 3 eval '! helpers_running' || fail "helper outlived exec"
	ok "exec request runs the helper (ForceCommand), which exits at EOF"

	kill "$SSHD_PID"
}

scenario_cli
scenario_files
scenario_stdin_eof
scenario_bad_at_start
scenario_symlink_swap
scenario_limits
scenario_sshd
echo "all discovery helper checks passed"
