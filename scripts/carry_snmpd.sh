#!/usr/bin/env bash
# Put Debian's snmpd and the libraries it links (glibc's own left out) into .carry/snmpd, for the
# device machine, which has no snmpd and no apt: `bash scripts/carry_snmpd.sh` after
# `bash ../shared/device/make_carry.sh .carry`; then `export PATH=$PWD/.carry/snmpd/bin:$PATH`
# there (benchmarks/node_samplers_gpu.py needs it). bin/snmpd is a wrapper that sets LD_LIBRARY_PATH for
# snmpd alone, so that these libraries never reach Python. ~15 MB.
set -euo pipefail
src=$(command -v snmpd || echo /usr/sbin/snmpd)
[ -x "$src" ] || { echo "no snmpd here: apt-get install snmpd" >&2; exit 1; }
dst=.carry/snmpd
rm -rf "$dst" && mkdir -p "$dst/bin" "$dst/lib"
cp "$src" "$dst/bin/snmpd.bin"
ldd "$src" | awk '/=>/ {print $3}' | grep -v -E '/(libc|libm|libpthread|libdl|librt|libresolv|ld-linux[^/]*)\.so' \
  | xargs -I{} cp -L {} "$dst/lib/"
cat > "$dst/bin/snmpd" <<'SH'
#!/bin/sh
# Debian snmpd carried to the device with its libraries (LD_LIBRARY_PATH for it alone)
d=$(dirname "$0")
LD_LIBRARY_PATH="$d/../lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$d/snmpd.bin" "$@"
SH
chmod +x "$dst/bin/snmpd"
"$dst/bin/snmpd" -v | sed -n 2p
du -sh "$dst"
