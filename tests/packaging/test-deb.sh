#!/usr/bin/env bash
# Package test: builds the Debian packages, checks them with lintian,
# installs them on this machine with dpkg -i, checks that everything is in
# place and works as installed, and purges them again.
#
#   tests/packaging/test-deb.sh [--debs DIR] [--keep]
#
# Root only, and only on a throwaway machine: it installs packages, creates
# the system user "tunnelpool" (sysusers.d) and, for the duration of the
# test, /etc/tunnelpool/{id_ed25519,known_hosts,tunnelpool.yaml,tunnels.d/}
# (it refuses to start if any of those already exist).
#
#   --debs DIR  use tunnelpool_*.deb and tunnelpool-proxy_*.deb from DIR
#               instead of building them (the build is most of the time)
#   --keep      leave the packages installed and the work dir in place
#
# The build skips the unit suite (--no-check): it runs elsewhere.  About
# two to three minutes on two cores, most of it the build.  Ends with
# "N passed, N failed"; exit status 0 only if nothing failed.
set -uo pipefail

src=$(cd "$(dirname "$0")/../.." && pwd)
debs_dir=
keep=0
while [ $# -gt 0 ]; do
	case $1 in
	--debs) debs_dir=$2; shift ;;
	--keep) keep=1 ;;
	*) echo "usage: $0 [--debs DIR] [--keep]" >&2; exit 2 ;;
	esac
	shift
done

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $*"; }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }
check() {	# check DESCRIPTION COMMAND...
	local what=$1
	shift
	if "$@" >"$work/check.out" 2>&1; then
		ok "$what"
	else
		bad "$what"
		sed 's/^/     | /' "$work/check.out" | tail -n 20
	fi
}
die() { echo "test-deb: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (it installs packages)"
for t in dpkg dpkg-deb lintian ssh-keygen systemd-analyze setpriv readelf; do
	command -v "$t" >/dev/null || die "missing tool: $t"
done
for p in tunnelpool tunnelpool-proxy; do
	if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
		die "$p is already installed; remove it first (dpkg -P $p)"
	fi
done
etc=/etc/tunnelpool
for f in "$etc/id_ed25519" "$etc/known_hosts" "$etc/tunnelpool.yaml" \
    "$etc/tunnels.d/cluster-a.yaml"; do
	[ -e "$f" ] && die "$f exists; this test would overwrite it"
done

work=$(mktemp -d /tmp/tp-debtest.XXXXXX)
chmod 0755 "$work"
etc_existed=0
[ -d "$etc" ] && etc_existed=1
installed=()
created=()

# dpkg takes a lock that apt-get runs elsewhere on the machine may hold.
dpkg_retry() {
	local _
	for _ in $(seq 1 60); do
		if dpkg "$@" >"$work/dpkg.out" 2>&1; then
			return 0
		fi
		grep -q 'lock' "$work/dpkg.out" || { cat "$work/dpkg.out"; return 1; }
		sleep 2
	done
	cat "$work/dpkg.out"
	return 1
}

sup=
cleanup() {
	local f
	if [ -n "$sup" ] && kill -0 "$sup" 2>/dev/null; then
		kill -KILL "$sup" 2>/dev/null
		wait "$sup" 2>/dev/null
	fi
	for f in "${created[@]}"; do
		rm -f "$f"
	done
	if [ "$keep" -eq 0 ]; then
		[ ${#installed[@]} -gt 0 ] && dpkg_retry -P "${installed[@]}" >/dev/null
		rmdir "$etc/tunnels.d" 2>/dev/null
		[ "$etc_existed" -eq 0 ] && rmdir "$etc" 2>/dev/null
		rm -rf "$work"
	else
		echo "test-deb: kept $work and the installed packages"
	fi
}
trap cleanup EXIT

# --- build -------------------------------------------------------------
if [ -z "$debs_dir" ]; then
	debs_dir=$work/out
	echo "test-deb: building (log: $work/build.log)"
	if ! "$src/packaging/build-deb" --no-check "$debs_dir" >"$work/build.log" 2>&1; then
		tail -n 40 "$work/build.log"
		die "packaging/build-deb failed"
	fi
fi
shopt -s nullglob
node_deb=("$debs_dir"/tunnelpool_*.deb)
proxy_deb=("$debs_dir"/tunnelpool-proxy_*.deb)
shopt -u nullglob
if [ ${#node_deb[@]} -ne 1 ] || [ ${#proxy_deb[@]} -ne 1 ]; then
	die "expected one tunnelpool_*.deb and one tunnelpool-proxy_*.deb in $debs_dir"
fi
ok "build: $(basename "${node_deb[0]}") $(basename "${proxy_deb[0]}")"

# --- lintian: no error, no warning (info tags are overridden with reasons)
check "lintian clean (errors, warnings, info)" \
	lintian --fail-on error,warning,info -I "${node_deb[0]}" "${proxy_deb[0]}"

# --- install -----------------------------------------------------------
if dpkg_retry -i "${node_deb[0]}" "${proxy_deb[0]}"; then
	installed=(tunnelpool tunnelpool-proxy)
	ok "dpkg -i"
else
	bad "dpkg -i"
	exit 1
fi

# --- files -------------------------------------------------------------
for f in /usr/sbin/tunnelpool /usr/libexec/tunnelpool/tunnelpool-agent \
    /usr/libexec/tunnelpool/tunnelpool-top \
    /usr/libexec/tunnelpool/tunnelpool-discovery; do
	check "executable $f" test -x "$f"
done
for f in /lib/systemd/system/tunnelpool.service \
    /usr/lib/sysusers.d/tunnelpool.conf /usr/lib/tmpfiles.d/tunnelpool.conf \
    /usr/share/man/man8/tunnelpool.8.gz /usr/share/man/man5/tunnelpool.yaml.5.gz \
    /usr/share/man/man8/tunnelpool-discovery.8.gz \
    /usr/share/doc/tunnelpool/README.privsep \
    /usr/share/doc/tunnelpool/examples/tunnelpool.yaml \
    /usr/share/doc/tunnelpool/examples/tunnels.d/cluster-a.yaml \
    /usr/share/doc/tunnelpool-proxy/examples/proxies.yaml.example \
    /usr/share/tunnelpool-proxy/sshd_config.d/tunnelpool.conf; do
	check "file $f" test -f "$f"
done
check "sshd recipe is not active" test ! -e /etc/ssh/sshd_config.d/tunnelpool.conf
# shellcheck disable=SC2016
check "man pages render" sh -c 'for p in 8/tunnelpool 5/tunnelpool.yaml 8/tunnelpool-discovery; do
	zcat /usr/share/man/man${p%%/*}/${p#*/}.${p%%/*}.gz | grep -q "^\.SH" || exit 1; done'

# --- what postinst did -------------------------------------------------
check "user tunnelpool exists" getent passwd tunnelpool
# shellcheck disable=SC2016
check "/var/empty/tunnelpool is root:root 0755 and empty" sh -c \
	'[ "$(stat -c %U:%G:%a /var/empty/tunnelpool)" = root:root:755 ] &&
	 [ -z "$(ls -A /var/empty/tunnelpool)" ]'
check "/etc/tunnelpool/tunnels.d exists" test -d "$etc/tunnels.d"

# --- postinst on a machine without systemd-tmpfiles ----------------------
# A container may have systemd-standalone-sysusers (the package depends on
# a sysusers) but no systemd-tmpfiles, so debhelper's tmpfiles snippet does
# nothing there: postinst must make the empty root itself.  The empty root
# and the user are removed, systemd-tmpfiles hidden (bind-mounted /dev/null
# is not executable), and postinst run again.
# shellcheck disable=SC2016
postinst_bare() {
	rmdir /var/empty/tunnelpool || return 1
	if getent passwd tunnelpool >/dev/null; then
		userdel tunnelpool || return 1
	fi
	unshare -m --propagation private sh -c '
		mount --bind /dev/null "$(command -v systemd-tmpfiles)" || exit 99
		! command -v systemd-tmpfiles >/dev/null || exit 98
		exec /var/lib/dpkg/info/tunnelpool.postinst configure'
}
check "postinst without systemd-tmpfiles" postinst_bare
check "  the user tunnelpool exists again" getent passwd tunnelpool
# shellcheck disable=SC2016
check "  /var/empty/tunnelpool is root:root 0755 again" sh -c \
	'[ "$(stat -c %U:%G:%a /var/empty/tunnelpool)" = root:root:755 ]'

# --- binaries ----------------------------------------------------------
version=$(dpkg-query -W -f='${Version}' tunnelpool)
check "tunnelpool version" sh -c "/usr/sbin/tunnelpool version | grep -q '^tunnelpool ${version%%-*},'"
check "tunnelpool-discovery -V" sh -c "/usr/libexec/tunnelpool/tunnelpool-discovery -V | grep -q '${version%%-*}'"
# Each binary links what it uses: the supervisor neither ncurses (only
# tunnelpool-top, the view `tunnelpool top` runs, does) nor libssh (the
# worker has its own, statically).
needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }
links_none_of() {	# links_none_of BINARY ERE: it has NEEDED entries, none matching
	local n
	n=$(needed "$1") && grep -q '^libc\.' <<<"$n" && ! grep -E "$2" <<<"$n"
}
check "tunnelpool links neither ncurses nor libssh" \
	links_none_of /usr/sbin/tunnelpool 'ncurses|tinfo|libssh'
check "tunnelpool-top links ncurses" sh -c \
	"readelf -d /usr/libexec/tunnelpool/tunnelpool-top | grep -q 'NEEDED.*libncursesw'"
check "tunnelpool top runs the installed tunnelpool-top" sh -c \
	"! /usr/sbin/tunnelpool top -s $work/nothing.sock 2>$work/top.err &&
	 grep -q 'is it running' $work/top.err"
check "discovery helper reads the shipped example" sh -c \
	'/usr/libexec/tunnelpool/tunnelpool-discovery -f /usr/share/doc/tunnelpool-proxy/examples/proxies.yaml.example </dev/null |
	 grep -q "\"type\":\"proxies\""'

# --- the unit ----------------------------------------------------------
unit=/lib/systemd/system/tunnelpool.service
check "systemd-analyze verify" sh -c "systemd-analyze verify $unit 2>&1 | tee /dev/stderr | grep -v 'Cannot add dependency job' | (! grep .)"
exposure=$(systemd-analyze security --offline=true "$unit" 2>/dev/null |
	sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
check "exposure ${exposure:-?} <= 3.0" awk -v e="${exposure:-99}" 'BEGIN { exit !(e <= 3.0) }'
check "ExecStart binary exists" sh -c \
	"test -x \"\$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' $unit)\""

# --- the sshd recipe: valid, and pointing at the installed helper --------
recipe=/usr/share/tunnelpool-proxy/sshd_config.d/tunnelpool.conf
check "recipe names the installed helper" sh -c \
	"grep -q '^Subsystem tunnelpool-discovery /usr/libexec/tunnelpool/tunnelpool-discovery ' $recipe &&
	 ! grep -q '/usr/lib/tunnelpool/' $recipe"
if command -v sshd >/dev/null || [ -x /usr/sbin/sshd ]; then
	ssh-keygen -q -t ed25519 -N '' -f "$work/hostkey"
	printf 'HostKey %s\nPidFile none\nInclude %s\n' "$work/hostkey" "$recipe" >"$work/sshd_config"
	mkdir -p /run/sshd
	check "sshd -t accepts the recipe" /usr/sbin/sshd -t -f "$work/sshd_config"
fi

# --- check-config on the shipped example, as installed -----------------
# The example names /etc/tunnelpool/id_ed25519 and .../known_hosts: create
# throwaway ones there (never ship a key), and the example tunnel.
ssh-keygen -q -t ed25519 -N '' -C test-deb -f "$etc/id_ed25519"
created+=("$etc/id_ed25519" "$etc/id_ed25519.pub")
printf '[lb.cluster-a.example.com]:3024 %s\n' "$(cut -d' ' -f1,2 "$etc/id_ed25519.pub")" >"$etc/known_hosts"
created+=("$etc/known_hosts")
install -m 0644 /usr/share/doc/tunnelpool/examples/tunnels.d/cluster-a.yaml "$etc/tunnels.d/cluster-a.yaml"
created+=("$etc/tunnels.d/cluster-a.yaml")
check "check-config on the shipped example" sh -c \
	"/usr/sbin/tunnelpool check-config -c /usr/share/doc/tunnelpool/examples/tunnelpool.yaml 2>&1 >$work/effective.yaml |
	 grep -q 'ok (1 tunnels)'"
check "effective config names the installed worker" \
	grep -q '^  path: "/usr/libexec/tunnelpool/tunnelpool-agent"' "$work/effective.yaml"
install -m 0644 /usr/share/doc/tunnelpool/examples/tunnelpool.yaml "$etc/tunnelpool.yaml"
created+=("$etc/tunnelpool.yaml")
check "check-config with the default path" /usr/sbin/tunnelpool check-config

# --- the installed supervisor, confined like the unit --------------------
# The unit's capability bounding set and NoNewPrivileges, read from the
# installed file, and a read-only root (ProtectSystem=strict) but for a
# runtime dir.  Not a full systemd sandbox (no PID 1 here), but it catches
# a bounding set that is too tight for the supervisor to start.
caps=$(sed -n 's/^CapabilityBoundingSet=//p' "$unit" | tr ' ' '\n' |
	sed -n 's/^CAP_\(.*\)/+\L\1/p' | paste -sd, -)
mkdir -p "$work/run"
sed -e "s|^control_socket:.*|control_socket: $work/run/control.sock|" \
    -e 's|^metrics_listen:.*|metrics_listen: ""|' \
    "$etc/tunnelpool.yaml" >"$work/run/tunnelpool.yaml"
chmod 0644 "$work/run/tunnelpool.yaml"
sed -i -e "s|private_key: .*|private_key: $etc/id_ed25519|" \
    -e "s|known_hosts: .*|known_hosts: $etc/known_hosts|" "$work/run/tunnelpool.yaml"
# shellcheck disable=SC2016
unshare -m --propagation private sh -c '
	mount --bind "$1" "$1" && mount -o remount,bind,ro / || exit 99
	shift
	exec setpriv --bounding-set "-all,$1" --inh-caps -all --no-new-privs \
	    /usr/sbin/tunnelpool run -c "$2"' sh "$work/run" "$caps" \
	"$work/run/tunnelpool.yaml" >"$work/run/supervisor.log" 2>&1 &
sup=$!
for _ in $(seq 1 50); do
	[ -S "$work/run/control.sock" ] && break
	kill -0 "$sup" 2>/dev/null || break
	sleep 0.1
done
check "installed supervisor starts under the unit's bounding set ($caps)" \
	sh -c "/usr/sbin/tunnelpool status -s $work/run/control.sock | grep -q 'config ok'"
check "ps shows its title" sh -c "ps -o args= -p $sup | grep -q '^tunnelpool: supervisor'"
kill -TERM "$sup" 2>/dev/null
wait "$sup"
rc=$?
sup=
check "SIGTERM: clean exit (status $rc)" test "$rc" -eq 0
if [ "$failed" -gt 0 ]; then
	sed 's/^/     | /' "$work/run/supervisor.log" | tail -n 20
fi

# --- end to end with the installed binaries -----------------------------
# The integration scenario pool_basic (a real sshd, a tunnel, data across
# it, a demoted and seccomp-confined worker, reload, kill -9 and respawn),
# run against the installed binaries, the supervisor again under the
# unit's bounding set and no_new_privs; and ops_top_tmux, `tunnelpool top`
# in a real terminal running the installed tunnelpool-top.  TP_DEB_E2E=0
# skips them.
if [ "${TP_DEB_E2E:-1}" != 0 ] && [ -x "$src/tests/integration/run.py" ]; then
	fake=$work/installed-build
	mkdir -p "$fake/supervisor" "$fake/worker" "$fake/proxy"
	cat >"$fake/supervisor/tunnelpool" <<-EOF
	#!/bin/sh
	if [ "\$1" = run ]; then
		exec setpriv --bounding-set "-all,$caps" --inh-caps -all \\
		    --no-new-privs /usr/sbin/tunnelpool "\$@"
	fi
	exec /usr/sbin/tunnelpool "\$@"
	EOF
	chmod 0755 "$fake/supervisor/tunnelpool"
	ln -s /usr/libexec/tunnelpool/tunnelpool-agent "$fake/worker/"
	ln -s /usr/libexec/tunnelpool/tunnelpool-top "$fake/supervisor/"
	ln -s /usr/libexec/tunnelpool/tunnelpool-discovery "$fake/proxy/"
	check "pool_basic, ops_top_tmux with the installed binaries" \
		"$src/tests/integration/run.py" --build-dir "$fake" \
		--filter pool_basic,ops_top_tmux --require-all
fi

# --- remove ------------------------------------------------------------
for f in "${created[@]}"; do
	rm -f "$f"
done
created=()
if [ "$keep" -eq 0 ]; then
	check "dpkg -r" dpkg_retry -r tunnelpool tunnelpool-proxy
	check "binaries gone" sh -c '! test -e /usr/sbin/tunnelpool && ! test -e /usr/libexec/tunnelpool'
	check "dpkg -P" dpkg_retry -P tunnelpool tunnelpool-proxy
	installed=()
	check "unit symlink gone" test ! -L /etc/systemd/system/multi-user.target.wants/tunnelpool.service
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
