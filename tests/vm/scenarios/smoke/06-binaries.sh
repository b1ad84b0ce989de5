#!/bin/sh
# Every dynamic binary run.sh put into the initramfs finds its shared libraries
# (checked with the ELF interpreter's --verify and --list, so nothing is executed;
# --list on a static binary segfaults).
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

ld=/lib64/ld-linux-x86-64.so.2
n=0
for b in /tierd/bin/* /usr/local/bin/*; do
	[ -f "$b" ] || continue
	n=$((n + 1))
	if [ ! -e "$ld" ] || ! "$ld" --verify "$b" >/dev/null 2>&1; then
		echo "ok: $b (static)"
		continue
	fi
	out=$("$ld" --list "$b" 2>&1) || fail "$ld --list $b failed: $out"
	if echo "$out" | grep -q 'not found'; then
		echo "$out"
		fail "$b is missing shared libraries"
	fi
	echo "ok: $b (dynamic, $(echo "$out" | wc -l) objects)"
done
echo "checked $n binaries; release binaries: [$(basenames /tierd/bin/*)]"
