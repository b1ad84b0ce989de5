/*
 * mayaccess: the kernel's own answer to "may I touch process PID's memory?", the
 * oracle of tests/vm/scenarios/reliability/30-permissions.sh.
 *
 *   mayaccess PID    calls move_pages(PID, 1, [0], NULL, status, 0): with no target
 *                    nodes the kernel only queries, after find_mm_struct() ran
 *                    ptrace_may_access(PTRACE_MODE_READ_REALCREDS) for the caller.
 *
 * Prints "yes" (exit 0) or "no" (EPERM/EACCES, exit 1); any other error exits 2.
 * Run it under the caller's credentials (setpriv). Built statically by tests/vm/run.sh.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: mayaccess PID\n");
		return 2;
	}
	void *page[1] = {0};
	int status[1] = {0};
	long rc = syscall(SYS_move_pages, atoi(argv[1]), 1, page, NULL, status, 0);
	if (rc == 0) {
		puts("yes");
		return 0;
	}
	if (errno == EPERM || errno == EACCES) {
		puts("no");
		return 1;
	}
	fprintf(stderr, "mayaccess: move_pages(%s): %s\n", argv[1], strerror(errno));
	return 2;
}
