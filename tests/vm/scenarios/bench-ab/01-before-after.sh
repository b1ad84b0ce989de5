#!/bin/sh
# A/B in one boot: the moving hot window and the Mooncake KV replay (the same arms as
# bench-tiering) under this build's tierd ("new") and another build's ("old",
# /tierd/old/tierd), alternating new, old, new, old so drift in the emulator's speed
# hits both. Used to show a change of structure leaves the figures where they were.
#   run.sh --group bench-ab --extra-file bench/peers:/tierd/peers \
#     --extra-file OLD_RELEASE_DIR/tierd:/tierd/old/tierd \
#     --extra-file /work/shared/traces/mooncake_conversation_trace.jsonl:/tierd/traces/mooncake.jsonl
# TIERD_AB_ROUNDS (default 2) pairs of each.
# tierd-timeout: 1500
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

[ -r /tierd/peers/arm.sh ] || cannot_run "no /tierd/peers (run.sh --extra-file bench/peers:/tierd/peers)"
[ -x /tierd/old/tierd ] || cannot_run "no /tierd/old/tierd (run.sh --extra-file OLD/tierd:/tierd/old/tierd)"
[ -r /tierd/traces/mooncake.jsonl ] || cannot_run "no /tierd/traces/mooncake.jsonl"
hot() {
	sh /tierd/peers/arm.sh --tag "hot-$1" tierd hotwindow --mb 640 --hot-mb 128 --move-s 10 --seconds 40
}
kv() {
	sh /tierd/peers/arm.sh --tag "kv-$1" tierd kvreplay --trace /tierd/traces/mooncake.jsonl \
		--pool-mb 1024 --block-kib 256 --compress 2 --step-ms 25 --seconds 40
}
r=1
while [ "$r" -le "${TIERD_AB_ROUNDS:-2}" ]; do
	echo "=== round $r: hot window new, old"
	hot "new-$r"
	# shellcheck disable=SC2030,SC2031 # the old build only inside the subshell
	(PATH=/tierd/old:$PATH && export PATH && hot "old-$r")
	echo "=== round $r: mooncake new, old"
	kv "new-$r"
	# shellcheck disable=SC2030,SC2031 # the old build only inside the subshell
	(PATH=/tierd/old:$PATH && export PATH && kv "old-$r")
	r=$((r + 1))
done
