#!/bin/sh
# Issue 5's KV replay of the azure conversation trace, side by side: a 1 GiB pool of
# 256 KiB blocks first on node1, trace time compressed 4x, 25 ms decode steps reading
# every block of every running request, 40 s; the share of block reads served from
# node0 under the kernel's tiering, DAMON tiering and tierd, plus the oracles
# (bench/src/bin/kvreplay.rs). Trace: /work/shared/traces/AzureLLMInferenceTrace_conv.csv (see its README for the
# license and attribution), passed in with
#   run.sh --extra-file /work/shared/traces/AzureLLMInferenceTrace_conv.csv:/tierd/traces/azure.csv
# Needs: run.sh --extra-file bench/peers:/tierd/peers
# tierd-timeout: 480
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

[ -r /tierd/peers/arm.sh ] || cannot_run "no /tierd/peers (run.sh --extra-file bench/peers:/tierd/peers)"
[ -r /tierd/traces/azure.csv ] || cannot_run "no /tierd/traces/azure.csv (run.sh --extra-file .../AzureLLMInferenceTrace_conv.csv:/tierd/traces/azure.csv)"
for arm in ${TIERD_BENCH_ARMS:-kernel damon tierd}; do
	echo "=== kvreplay azure: $arm (node0 free $(node_free_kb 0) kB)"
	sh /tierd/peers/arm.sh "$arm" kvreplay --trace /tierd/traces/azure.csv --pool-mb 1024 --block-kib 256 \
		--compress 4 --step-ms 25 --seconds 40 --oracle
done
