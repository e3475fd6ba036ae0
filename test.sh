#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine (as root):
#   installs missing packages, builds, runs unit tests, integration tests
#   against real sshd/haproxy, the ASan+UBSan build of the tests (null
#   sandbox), a clang -Werror build, and a short fuzz smoke run.
# Ends with "N passed, N failed". Options: --quick (skip ASan and fuzz).
set -uo pipefail
cd "$(dirname "$0")"
QUICK=0
[ "${1:-}" = "--quick" ] && QUICK=1
FUZZ_SECONDS=${FUZZ_SECONDS:-10}
passed=0
failed=0
failures=()

stage() {	# stage NAME COMMAND...: runs, counts, never aborts the suite
	local name=$1
	shift
	echo "=== $name"
	if "$@"; then
		passed=$((passed + 1))
		echo "=== $name: ok"
	else
		failed=$((failed + 1))
		failures+=("$name")
		echo "=== $name: FAILED"
	fi
}

./packaging/install-deps || exit 1

# gcc, with test hooks: the build every functional test runs against.
stage "build (gcc, test hooks)" tests/meson-build build-test -Dtest_hooks=true
# A production build: no test hooks (the TEST_HOOK message must not exist;
# sandbox_hooks checks this build too).
stage "build (gcc, production)" tests/meson-build build-prod
stage "unit tests (production build)" meson test -C build-prod --suite unit --print-errorlogs
stage "unit tests" meson test -C build-test --suite unit --print-errorlogs --verbose
# What is left in meson's integration suite: the sandbox-ssh probe (C, the
# seccomp allowlist against sshd + libssh).  Every other integration test is
# a scenario of tests/integration/run.py, the stage below.
stage "sandbox-ssh probe (meson)" meson test -C build-test --suite integration --print-errorlogs
stage "integration scenarios" env TP_PROD_BUILD_DIR="$PWD/build-prod" \
	python3 tests/integration/run.py --build-dir build-test --require-all


# The Debian packages: build, lintian, install, check, run, purge.
stage "debian package" tests/packaging/test-deb.sh

# clang must compile everything with -Werror too.
stage "build (clang)" env CC=clang tests/meson-build build-clang -Dtest_hooks=true

if [ $QUICK -eq 0 ]; then
	stage "build (ASan+UBSan, null sandbox)" tests/meson-build build-asan \
		-Db_sanitize=address,undefined -Db_lundef=false -Dsandbox=none \
		-Dtest_hooks=true -Dbuildtype=debug
	stage "unit tests (ASan+UBSan)" env ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		meson test -C build-asan --suite unit --print-errorlogs
	# The supervisor and workers built with ASan+UBSan, driven end to end;
	# any report file (a worker's report does not fail its scenario) fails.
	rm -f /tmp/tunnelpool-asan.*
	stage "integration scenarios (ASan+UBSan)" env \
		ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:log_path=/tmp/tunnelpool-asan \
		UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		python3 tests/integration/run.py --build-dir build-asan --require-all \
		--filter 'pool_basic,disc_lb_pinned,disc_lb_ca_random,worker_*,sup_dial_sync_fail,rel_hostile_limits,rel_close_race,etcd_compaction,etcd_tls_auth,etcd_bad_input'
	stage "no ASan/UBSan reports" bash -c \
		'! ls /tmp/tunnelpool-asan.* 2>/dev/null || { cat /tmp/tunnelpool-asan.*; false; }'
	stage "fuzz smoke (${FUZZ_SECONDS}s per harness)" tests/fuzz/run-smoke "$FUZZ_SECONDS"
fi

echo
for f in "${failures[@]}"; do
	echo "FAILED: $f"
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
