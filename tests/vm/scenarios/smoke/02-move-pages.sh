#!/bin/sh
# move_pages(2) moves 64 MiB to the CPU-less node and back, checked against numa_maps
# (tests/vm/helpers/movecheck.c).
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

movecheck 64
