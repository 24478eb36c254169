#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Checks the manual pages: every page formats without a warning, every
# exported function has its page, and the example program of liminal(7)
# compiles and runs.
#
# usage: sh tests/man_pages.sh SOURCE_DIR BUILD_DIR
#
# One line per check on standard output; details of a failure on standard
# error; the exit status is non-zero at the first failure.

set -u

if [ $# -ne 2 ]; then
	echo "usage: $0 SOURCE_DIR BUILD_DIR" >&2
	exit 2
fi
src=$(cd "$1" && pwd) || exit 2
build=$(cd "$2" && pwd) || exit 2
man="$src/man"
header="$src/include/liminal.h"

work=
shm=
cleanup() {
	if [ -n "$work" ]; then rm -rf "$work"; fi
	if [ -n "$shm" ]; then rm -rf "$shm"; fi
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

fail() {
	echo "FAIL: $1"
	exit 1
}

work=$(mktemp -d "${TMPDIR:-/tmp}/lmn-man.XXXXXX") || fail "cannot make a temporary directory"

# (a) Every page formats without any diagnostic.  Stub pages say
# ".so man3/NAME.3", relative to the root of a manual tree: groff runs in a
# directory where man3 and man7 lead back to the pages.
n=0
ln -s "$man" "$work/man3" && ln -s "$man" "$work/man7" || fail "cannot link $man"
for page in "$man"/*.[0-9]; do
	[ -e "$page" ] || fail "groff: no pages in $man"
	out=$(cd "$work" && groff -man -ww -z "$page" 2>&1)
	if [ $? -ne 0 ] || [ -n "$out" ]; then
		printf '%s\n' "$out" >&2
		fail "groff: ${page#"$src"/}"
	fi
	n=$((n + 1))
done
echo "ok: groff -man -ww -z: $n pages clean"

# (b) Every function the header exports has its page in section 3.
names=$(sed -n 's/^LMN_EXPORT[^(]*[ *]\([A-Za-z_][A-Za-z0-9_]*\)(.*/\1/p' "$header")
[ -n "$names" ] || fail "pages: no LMN_EXPORT function found in $header"
n=0
missing=
for f in $names; do
	[ -f "$man/$f.3" ] || missing="$missing $f"
	n=$((n + 1))
done
[ -z "$missing" ] || fail "pages: no man/NAME.3 for:$missing"
echo "ok: pages: all $n exported functions have a page"

# (c) The example of liminal(7) compiles without warnings and runs.  In
# the page a backslash is written \e, a minus \-, and a line that starts
# with a dot or a quote is protected by \&: undo each.  Every backslash of
# the page starts one of these escapes, so \& and \- are undone first and
# \e last: a backslash that \e gives back never starts a new escape.
sed -n '/^\.\\" example-begin$/,/^\.\\" example-end$/p' "$man/liminal.7" |
	sed -e '1d' -e '$d' \
		-e 's/\\&//g' -e 's/\\-/-/g' -e 's/\\e/\\/g' \
		>"$work/example.c"
[ -s "$work/example.c" ] || fail "example: none between example-begin and example-end in man/liminal.7"
# shellcheck disable=SC2086 # EXAMPLE_CFLAGS holds several flags (sanitizers)
if ! ${CC:-cc} ${EXAMPLE_CFLAGS:-} -Wall -Wextra -Werror -I"$src/include" -o "$work/example" "$work/example.c" \
	-L"$build" -lliminal -Wl,-rpath,"$build" >"$work/cc.log" 2>&1; then
	cat "$work/cc.log" >&2
	fail "example: does not compile"
fi
shm=$(mktemp -d /dev/shm/lmn-man.XXXXXX) || fail "example: cannot make a directory in /dev/shm"
LIMINAL_DIR=$shm timeout 60 "$work/example" >"$work/run.log" 2>&1
rc=$?
if [ $rc -ne 0 ]; then
	cat "$work/run.log" >&2
	fail "example: exit status $rc"
fi
echo "ok: example of liminal(7) compiles and runs"
exit 0
