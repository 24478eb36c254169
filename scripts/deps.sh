#!/bin/sh
# Installs what liminal needs to build and test, from Debian's archive, if it
# is not there yet.  Safe to run again; does nothing when all is present.
set -eu
pkgs="build-essential cmake pkg-config liburing-dev libck-dev check groff-base man-db libzmq3-dev gnuplot-nox jq"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
	SUDO=sudo
else
	SUDO=
fi
echo "scripts/deps.sh: installing$missing" >&2
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
# shellcheck disable=SC2086
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
