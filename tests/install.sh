#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Installs a build tree into a fresh prefix and uses the installed copy as a
# user would: every file in its place, then one small client built four
# ways (pkg-config against the shared and against the static library, and
# find_package with liminal::liminal and with liminal::liminal_static),
# each run against a live bus.
#
# usage: sh tests/install.sh SOURCE_DIR BUILD_DIR
#
# CLIENT_CFLAGS holds flags every client is built with (the sanitizers, when
# the libraries were built with them); CMAKE names the cmake to run.
#
# One line per check on standard output; details of a failure on standard
# error; the exit status is non-zero at the first failure.

set -eu

if [ $# -ne 2 ]; then
	echo "usage: $0 SOURCE_DIR BUILD_DIR" >&2
	exit 2
fi
src=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
cmake=${CMAKE:-cmake}
cflags=${CLIENT_CFLAGS:-}

tmp=
shm=
cleanup() {
	if [ -n "$tmp" ]; then rm -rf "$tmp"; fi
	if [ -n "$shm" ]; then rm -rf "$shm"; fi
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM
tmp=$(mktemp -d "${TMPDIR:-/tmp}/lmn-install.XXXXXX")

fail() {
	echo "FAIL: $1"
	exit 1
}

# run LOG COMMAND...: runs the command with its output in LOG, and shows
# that output when it fails.
run() {
	log=$1
	shift
	if ! "$@" >"$log" 2>&1; then
		cat "$log" >&2
		return 1
	fi
}

prefix=$tmp/prefix
run "$tmp/install.log" "$cmake" --install "$build" --prefix "$prefix" ||
	fail "cmake --install $build --prefix $prefix"
echo "ok: cmake --install --prefix"

# Where GNUInstallDirs put the libraries for this build: lib, lib64 or
# lib/<multiarch triplet>.
libdir=$(sed -n 's/^CMAKE_INSTALL_LIBDIR:[A-Z]*=//p' "$build/CMakeCache.txt")
[ -n "$libdir" ] || fail "no CMAKE_INSTALL_LIBDIR in $build/CMakeCache.txt"
libdir=$prefix/$libdir

for f in "$libdir/libliminal.so" "$libdir/libliminal.so.0" "$libdir/libliminal.a" \
	"$prefix/include/liminal.h" \
	"$prefix/share/man/man3/lmn_bus_join.3" "$prefix/share/man/man7/liminal.7" \
	"$prefix/bin/liminal" \
	"$libdir/pkgconfig/liminal.pc" \
	"$libdir/cmake/liminal/liminalConfig.cmake" \
	"$libdir/cmake/liminal/liminalConfigVersion.cmake"; do
	[ -e "$f" ] || fail "not installed: ${f#"$prefix"/}"
done
n=$(find "$src/man" -name '*.[0-9]' | wc -l)
m=$(find "$prefix/share/man" -type f | wc -l)
[ "$n" -eq "$m" ] || fail "$n pages in man/, $m installed"
if find "$prefix/bin" "$prefix/include" "$prefix/share" -type f | grep -q -v -e '/bin/liminal$' \
	-e '/include/liminal.h$' -e '/man[0-9]/[^/]*\.[0-9]$'; then
	find "$prefix" -type f >&2
	fail "installed something that is not ours to install"
fi
# What the package describes must point into the prefix, never back into
# the trees it was built from (the prefix itself may lie inside them).
if grep -r -F -e "$src" -e "$build" "$libdir/pkgconfig" "$libdir/cmake" | grep -F -v "$prefix" >&2; then
	fail "the installed package names the source or build tree"
fi
run "$tmp/cmd.log" env LD_LIBRARY_PATH="$libdir" "$prefix/bin/liminal" --help ||
	fail "installed liminal --help"
echo "ok: files in place"

# The client: a child serves "echo" and answers one request; the parent
# calls it once and checks the reply.  The child says through a pipe when
# it serves, so nothing sleeps.
cat >"$tmp/client.c" <<'EOF'
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <liminal.h>

static int server(const char *name, int ready_fd)
{
	lmn_bus *bus = NULL;
	lmn_msg *msg;
	int r, kind;

	r = lmn_bus_join(name, "server", &bus);
	if (r == 0)
		r = lmn_bus_serve(bus, "echo");
	if (write(ready_fd, &r, sizeof(r)) != sizeof(r) || r < 0) {
		if (bus)
			lmn_bus_leave(bus);
		return 1;
	}
	close(ready_fd);
	/* One request, then the close that follows it. */
	do {
		r = lmn_next(bus, &msg, 30000);
		if (r < 0)
			break;
		kind = lmn_msg_kind(msg);
		if (kind == LMN_MSG_REQUEST)
			r = lmn_reply(msg, lmn_msg_data(msg), lmn_msg_size(msg));
		lmn_msg_release(msg);
	} while (r == 0 && kind != LMN_MSG_CLOSED);
	lmn_bus_leave(bus);
	return r < 0;
}

static int client(const char *name)
{
	static const char req[] = "installed";
	const size_t len = sizeof(req) - 1;
	struct lmn_conv_config cfg = { .policy = LMN_POLICY_FAIL };
	lmn_bus *bus;
	lmn_conv *conv;
	char buf[64];
	ssize_t n;
	int r, ok;

	r = lmn_bus_join(name, "client", &bus);
	if (r < 0) {
		fprintf(stderr, "join: %s\n", strerror(-r));
		return 1;
	}
	r = lmn_conv_open(bus, "echo", &cfg, &conv);
	if (r < 0) {
		fprintf(stderr, "open: %s\n", strerror(-r));
		lmn_bus_leave(bus);
		return 1;
	}
	n = lmn_call(conv, req, len, buf, sizeof(buf), 30000);
	ok = n >= 0 && (size_t)n == len && memcmp(buf, req, len) == 0;
	if (n < 0)
		fprintf(stderr, "call: %s\n", strerror((int)-n));
	else if (!ok)
		fprintf(stderr, "call: wrong reply '%.*s'\n", (int)n, buf);
	r = lmn_conv_close(conv);
	if (r < 0)
		fprintf(stderr, "close: %s\n", strerror(-r));
	lmn_conv_free(conv);
	lmn_bus_leave(bus);
	return !ok || r < 0;
}

int main(void)
{
	char name[LMN_NAME_MAX + 1];
	int fds[2], ready = -1, status, rc = 1;
	pid_t pid;

	snprintf(name, sizeof(name), "install-%d", (int)getpid());
	rc = lmn_bus_create(name, NULL);
	if (rc < 0) {
		fprintf(stderr, "create: %s\n", strerror(-rc));
		return 1;
	}
	rc = 1;
	if (pipe(fds) < 0 || (pid = fork()) < 0) {
		perror("pipe or fork");
		lmn_bus_unlink(name);
		return 1;
	}
	if (pid == 0) {
		close(fds[0]);
		_exit(server(name, fds[1]));
	}
	close(fds[1]);
	if (read(fds[0], &ready, sizeof(ready)) != sizeof(ready))
		fprintf(stderr, "server: did not start\n");
	else if (ready < 0)
		fprintf(stderr, "server: %s\n", strerror(-ready));
	else
		rc = client(name);
	close(fds[0]);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "server: did not exit cleanly\n");
		rc = 1;
	}
	lmn_bus_unlink(name);
	if (rc == 0)
		printf("call answered over %s\n", lmn_wait_backend());
	return rc;
}
EOF

# The buses of these runs live in a directory of their own, on the same
# tmpfs as buses usually do.
shm=$(mktemp -d /dev/shm/lmn-install.XXXXXX)
export LIMINAL_DIR="$shm"

# check_run WHAT PROGRAM [ENV...]: runs a client and checks that its call
# was answered.
check_run() {
	what=$1
	prog=$2
	shift 2
	run "$tmp/run.log" env "$@" timeout 60 "$prog" || fail "$what: the client failed"
	echo "ok: $what: $(cat "$tmp/run.log")"
}

# no_liminal_so PROGRAM: the program must have taken liminal from the
# archive.
no_liminal_so() {
	if readelf -d "$1" | grep -q 'NEEDED.*libliminal'; then
		readelf -d "$1" >&2
		fail "$1 needs libliminal.so, not the archive"
	fi
}

# (a) pkg-config, shared.
export PKG_CONFIG_PATH="$libdir/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
pc_cflags=$(pkg-config --cflags liminal) || fail "pkg-config --cflags liminal"
pc_libs=$(pkg-config --libs liminal) || fail "pkg-config --libs liminal"
# shellcheck disable=SC2086 # the flags are lists of words
run "$tmp/cc.log" ${CC:-cc} $cflags -Wall -Wextra -Werror $pc_cflags -o "$tmp/client_pc" \
	"$tmp/client.c" $pc_libs || fail "pkg-config shared: does not build"
readelf -d "$tmp/client_pc" | grep -q 'NEEDED.*libliminal\.so\.0' ||
	fail "pkg-config shared: the client does not need libliminal.so.0"
check_run "pkg-config shared" "$tmp/client_pc" LD_LIBRARY_PATH="$libdir"

# (a2) pkg-config, static: the archive stands where -lliminal was, so the
# shared library cannot be taken instead, and the private libraries follow.
pc_static=$(pkg-config --static --libs liminal) || fail "pkg-config --static --libs liminal"
static_libs=
for w in $pc_static; do
	[ "$w" = -lliminal ] && w=$libdir/libliminal.a
	static_libs="$static_libs $w"
done
# shellcheck disable=SC2086
run "$tmp/cc.log" ${CC:-cc} $cflags -Wall -Wextra -Werror $pc_cflags -o "$tmp/client_pc_static" \
	"$tmp/client.c" $static_libs || fail "pkg-config static: does not build"
no_liminal_so "$tmp/client_pc_static"
check_run "pkg-config static" "$tmp/client_pc_static"

# (b) find_package, with each imported target.
mkdir "$tmp/consumer"
cp "$tmp/client.c" "$tmp/consumer/client.c"
cat >"$tmp/consumer/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.18)
project(client C)
find_package(liminal 0.1 REQUIRED)
add_compile_options(-Wall -Wextra -Werror)
add_executable(client_shared client.c)
target_link_libraries(client_shared PRIVATE liminal::liminal)
add_executable(client_static client.c)
target_link_libraries(client_static PRIVATE liminal::liminal_static)
EOF
run "$tmp/cmake.log" "$cmake" -S "$tmp/consumer" -B "$tmp/consumer/build" \
	-DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_FLAGS="$cflags" ||
	fail "find_package: the consumer does not configure"
run "$tmp/cmake.log" "$cmake" --build "$tmp/consumer/build" ||
	fail "find_package: the consumer does not build"
no_liminal_so "$tmp/consumer/build/client_static"
check_run "find_package liminal::liminal" "$tmp/consumer/build/client_shared" LD_LIBRARY_PATH="$libdir"
check_run "find_package liminal::liminal_static" "$tmp/consumer/build/client_static"

leftover=$(find "$LIMINAL_DIR" -mindepth 1)
[ -z "$leftover" ] || fail "buses left behind: $leftover"
exit 0
