#!/bin/bash
# Enables <codename>-backports (pkcs11-provider lives there on Debian 12) by deriving an apt
# source from this machine's own Debian source, so no mirror host name is written anywhere.
# Run as root (make deps uses sudo). Does nothing when a backports source already exists.
# Overridable for tests: APT_SOURCES_DIR (default /etc/apt), OUT (the file written).
set -euo pipefail
APT_DIR=${APT_SOURCES_DIR:-/etc/apt}
codename=${CODENAME:-$(. /etc/os-release && echo "${VERSION_CODENAME:-}")}
[ -n "$codename" ] || { echo "enable-backports: no VERSION_CODENAME in /etc/os-release" >&2; exit 1; }
suite="$codename-backports"
if grep -rqsw -- "$suite" "$APT_DIR/sources.list" "$APT_DIR/sources.list.d/"; then
  exit 0
fi
out=${OUT:-$APT_DIR/sources.list.d/p11nethsm-backports.sources}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
uris= signed=
if [ -f "$APT_DIR/sources.list.d/debian.sources" ]; then
  # deb822: the stanza whose Suites list the release itself (not -security/-updates alone)
  stanza=$(awk -v s="$codename" 'BEGIN { RS = ""; FS = "\n" }
    { for (i = 1; i <= NF; i++) if ($i ~ /^Suites:/ && (" " $i " ") ~ (" " s " ")) { print; exit } }' \
    "$APT_DIR/sources.list.d/debian.sources")
  uris=$(printf '%s\n' "$stanza" | sed -n 's/^URIs:[[:space:]]*//p' | head -n1)
  signed=$(printf '%s\n' "$stanza" | sed -n 's/^Signed-By:[[:space:]]*//p' | head -n1)
elif [ -f "$APT_DIR/sources.list" ]; then
  # one-line format: "deb [opts] URI codename components"
  uris=$(awk -v s="$codename" '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i == s) { print $(i - 1); exit } }' \
    "$APT_DIR/sources.list")
fi
[ -n "$uris" ] || { echo "enable-backports: no '$codename' source found in $APT_DIR" >&2; exit 1; }
printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: %s\n' \
  "$uris" "$suite" "${signed:-$keyring}" > "$out"
echo "enable-backports: wrote $out ($suite from $uris)"
