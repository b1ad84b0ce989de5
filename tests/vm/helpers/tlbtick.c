/*
 * tlbtick: gives the emulated CPUs of the benchmark VM a hardware-like TLB reach.
 *
 *   tlbtick PERIOD_US CPU   pin to CPU, then wake every PERIOD_US microseconds, forever.
 *
 * x86 sets a page's accessed bit only when it walks the page tables to fill a TLB
 * entry; clearing the bit (DAMON, reclaim's aging) flushes nothing. A real CPU's TLB
 * holds a few thousand entries, so the translations of a hot set larger than a few MiB
 * are walked again and again and the bit comes back within microseconds. QEMU's TCG
 * software TLB grows to millions of entries and is only emptied by a flush (a CR3
 * write, INVLPG, a shootdown): a process alone on its vCPU keeps its translations for
 * ever and its hot pages look idle to every accessed-bit user (measured: DAMON's
 * recall of a 32 MiB hot set 0.50, 0.13 and 0.00 1.5 s after a move, against 0.98-1.00
 * with this ticker running). Each wakeup switches the vCPU to this process's address
 * space and back, and each switch empties that vCPU's software TLB, as context
 * switches did on CPUs without PCID. Started by guest-init.sh for benchmark groups,
 * identically for every arm; see tests/vm/README.md.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int main(int argc, char **argv)
{
	char *end;
	long period_us, cpu;
	cpu_set_t set;
	struct timespec ts;

	if (argc != 3) {
		fprintf(stderr, "usage: tlbtick PERIOD_US CPU\n");
		return 2;
	}
	period_us = strtol(argv[1], &end, 10);
	if (*end || period_us < 100 || period_us > 10000000) {
		fprintf(stderr, "tlbtick: PERIOD_US must be 100..10000000, got '%s'\n", argv[1]);
		return 2;
	}
	cpu = strtol(argv[2], &end, 10);
	if (*end || cpu < 0 || cpu >= CPU_SETSIZE) {
		fprintf(stderr, "tlbtick: bad CPU '%s'\n", argv[2]);
		return 2;
	}
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) != 0) {
		fprintf(stderr, "tlbtick: pinning to CPU %ld: %s\n", cpu, strerror(errno));
		return 1;
	}
	ts.tv_sec = period_us / 1000000;
	ts.tv_nsec = (period_us % 1000000) * 1000;
	for (;;)
		nanosleep(&ts, NULL);
}
