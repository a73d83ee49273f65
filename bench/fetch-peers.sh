#!/usr/bin/env bash
# fetch-peers.sh unpacks the MTAs Petrel is compared with into a private
# prefix (default /var/cache/petrel-bench, or $PETREL_BENCH_PEERS): Exim
# 4.96, OpenSMTPD 6.8, chasquid and OpenDKIM as Debian packages fetched
# with `apt-get download` and unpacked with `dpkg -x` (they conflict with
# each other and with Postfix as mail-transport-agent, so they are never
# installed), and Haraka from npm into PREFIX/haraka. Nothing is started
# and no system service is installed. Idempotent: what is there is kept.
# `make bench` runs it; `make bench-quick` (CI) does not need it.
set -euo pipefail
prefix=${PETREL_BENCH_PEERS:-/var/cache/petrel-bench}
mkdir -p "$prefix/debs" "$prefix/root" "$prefix/haraka"
chmod 755 "$prefix"
debs=(exim4-daemon-light exim4-base libidn12 opensmtpd chasquid opendkim libopendkim11 libmilter1.0.1 librbl1 libvbr2)
need=0
for b in usr/sbin/exim4 usr/sbin/smtpd usr/bin/chasquid usr/sbin/opendkim; do
  [ -e "$prefix/root/$b" ] || need=1
done
if [ $need = 1 ]; then
  (cd "$prefix/debs" && { apt-get download "${debs[@]}" || { apt-get update -qq && apt-get download "${debs[@]}"; }; })
  for d in "$prefix"/debs/*.deb; do dpkg -x "$d" "$prefix/root"; done
  # Run by root from here: no setuid (it would make the loader ignore
  # LD_LIBRARY_PATH, which points at the unpacked libidn12 and OpenDKIM
  # libraries, when Exim re-executes itself).
  chmod u-s "$prefix/root/usr/sbin/exim4"
fi
if command -v npm >/dev/null && [ ! -e "$prefix/haraka/node_modules/Haraka/bin/haraka" ]; then
  (cd "$prefix/haraka" && npm install --no-audit --no-fund --loglevel=error Haraka@3 >/dev/null)
fi
for u in Debian-exim opensmtpd opensmtpq; do
  id "$u" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$u"
done
echo "peers in $prefix: $(ls "$prefix/root/usr/sbin" | grep -E '^(exim4|smtpd|opendkim)$' | tr '\n' ' ')$(ls "$prefix/root/usr/bin" | grep -E '^chasquid$') $(test -e "$prefix/haraka/node_modules/Haraka/package.json" && echo "haraka $(grep -m1 '"version"' "$prefix/haraka/node_modules/Haraka/package.json" | tr -dc '0-9.')")"
