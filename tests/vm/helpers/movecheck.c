/*
 * movecheck: proves page migration works in the test VM, without libnuma.
 *
 *   movecheck [MB]         map MB MiB (default 64) of anonymous memory, touch it, move
 *                          it to node 1 with move_pages(2), then back to node 0, checking
 *                          each step with move_pages' status query and /proc/self/numa_maps.
 *   movecheck --hold [MB]  map and touch MB MiB, print "ready pid=P start=0x...", then
 *                          sleep until killed: a target for migratepages(8) in scenarios.
 *
 * Built statically on the host by tests/vm/run.sh; prints RESULT lines for the harness.
 * Exit status: 0 ok, 1 a check failed, 2 usage or setup error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MPOL_MF_MOVE (1 << 1)

static long page_size;

static long move_pages(size_t count, void **pages, const int *nodes, int *status)
{
	return syscall(SYS_move_pages, 0, count, pages, nodes, status, MPOL_MF_MOVE);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Pages of the mapping starting at start on node, per /proc/self/numa_maps; -1 if absent. */
static long numa_maps_pages(uintptr_t start, int node)
{
	char line[4096], key[16];
	FILE *f = fopen("/proc/self/numa_maps", "r");
	long pages = -1;

	if (!f)
		return -1;
	snprintf(key, sizeof(key), " N%d=", node);
	while (fgets(line, sizeof(line), f)) {
		char *p;

		if (strtoull(line, NULL, 16) != start)
			continue;
		p = strstr(line, key);
		pages = p ? strtol(p + strlen(key), NULL, 10) : 0;
		break;
	}
	fclose(f);
	return pages;
}

/* Queries where all pages are (nodes == NULL) or moves them; returns how many report
 * node want in status. */
static size_t move_all(void **pages, size_t n, const int *nodes, int *status, int want)
{
	size_t i, on = 0;

	if (move_pages(n, pages, nodes, status) < 0) {
		perror("move_pages");
		exit(1);
	}
	for (i = 0; i < n; i++)
		on += status[i] == want;
	return on;
}

/* Prints how many pages got each negative status (an errno) from the last call. */
static void print_errors(const int *status, size_t n)
{
	size_t i, count;
	int e, any = 0;

	for (e = 1; e < 256; e++) {
		for (i = 0, count = 0; i < n; i++)
			count += status[i] == -e;
		if (count) {
			printf("%s%zu x %s", any ? ", " : "  move_pages status: ", count, strerror(e));
			any = 1;
		}
	}
	if (any)
		printf("\n");
}

/* Moves all pages to node to (unless to < 0: only check where they are), then checks
 * with a status query and numa_maps that every page is on node at. */
static int step(const char *what, uintptr_t start, void **pages, size_t n, int *nodes,
		int *status, int to, int at)
{
	size_t i, on;
	long mapped;
	double dt = 0;

	if (to >= 0) {
		double t0 = now_s();

		for (i = 0; i < n; i++)
			nodes[i] = to;
		on = move_all(pages, n, nodes, status, to);
		dt = now_s() - t0;
		printf("%s: move_pages returned node %d for %zu/%zu pages in %.3f s\n", what, to,
		       on, n, dt);
		print_errors(status, n);
		printf("RESULT movecheck_to_node%d_mbps=%.0f\n", to,
		       n * (double)page_size / (1 << 20) / dt);
	}
	on = move_all(pages, n, NULL, status, at);
	/* numa_maps counts base pages, also inside THPs. */
	mapped = numa_maps_pages(start, at);
	printf("%s: %zu/%zu pages on node %d per move_pages query, %ld per numa_maps\n", what,
	       on, n, at, mapped);
	if (on != n || mapped != (long)n) {
		print_errors(status, n);
		fprintf(stderr, "movecheck: %s: expected all %zu pages on node %d\n", what, n, at);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	int hold = argc > 1 && strcmp(argv[1], "--hold") == 0;
	long mb = argc > 1 + hold ? strtol(argv[1 + hold], NULL, 10) : 64;
	size_t i, n, len;
	void **pages;
	int *nodes, *status, rc = 0;
	char *buf;

	page_size = sysconf(_SC_PAGESIZE);
	if (mb <= 0) {
		fprintf(stderr, "usage: movecheck [--hold] [MB]\n");
		return 2;
	}
	len = (size_t)mb << 20;
	n = len / page_size;
	/* PROT_NONE guard pages on both sides keep the kernel from merging this VMA with
	 * a neighbour, so its numa_maps line covers exactly our buffer. */
	buf = mmap(NULL, len + 2 * page_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf != MAP_FAILED)
		buf = mmap(buf + page_size, len, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	pages = calloc(n, sizeof(*pages));
	nodes = calloc(n, sizeof(*nodes));
	status = calloc(n, sizeof(*status));
	if (buf == MAP_FAILED || !pages || !nodes || !status) {
		perror("movecheck: allocating");
		return 2;
	}
	for (i = 0; i < n; i++) {
		buf[i * page_size] = (char)i;
		pages[i] = buf + i * page_size;
	}
	if (hold) {
		printf("ready pid=%d start=%p bytes=%zu\n", getpid(), (void *)buf, len);
		fflush(stdout);
		for (;;)
			pause();
	}
	rc |= step("touched", (uintptr_t)buf, pages, n, nodes, status, -1, 0);
	rc |= step("to node 1", (uintptr_t)buf, pages, n, nodes, status, 1, 1);
	rc |= step("back to node 0", (uintptr_t)buf, pages, n, nodes, status, 0, 0);
	for (i = 0; i < n; i++) {
		if (buf[i * page_size] != (char)i) {
			fprintf(stderr, "movecheck: page %zu lost its contents\n", i);
			return 1;
		}
	}
	printf("contents intact after two migrations\n");
	return rc;
}
