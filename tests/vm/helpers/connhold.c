/*
 * connhold: idle connections and a latency loop for the reliability scenarios.
 *
 *   connhold hold stream|seqpacket PATH N
 *       opens N connections to the Unix socket PATH and sends nothing. Once the count
 *       has been stable for 6 s (tierd answers a refused connection within its 1 s
 *       linger of accepting it) prints one line "held=H refused=R failed=F": H still
 *       open and unanswered, R answered or closed by tierd, F whose connect failed.
 *       Then sleeps until killed, holding them.
 *
 *   connhold ask PATH N LINE
 *       N times: connects to the stream socket PATH, sends LINE and a newline, reads
 *       the reply line; prints "runs=N failures=F p50_ms=.. p99_ms=.. max_ms=.." of
 *       connect-to-reply times. A run fails unless the reply starts with {"ok":true.
 *       This is tierd's own latency, without a process start (hundreds of ms of
 *       tierctl's under TCG).
 *
 *   connhold time N CMD [ARG...]
 *       runs CMD N times one after the other (stdout to /dev/null) and prints
 *       "runs=N failures=F p50_ms=.. p99_ms=.. max_ms=.." of the wall time of each run
 *       (fork to exit, CLOCK_MONOTONIC). A run fails when it exits non-zero.
 *
 * A static C binary rather than socat: 2,000 held connections are 20 processes here,
 * not 2,000, which the 2 GiB TCG guest could not start in reasonable time.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int usage(void)
{
	fprintf(stderr, "usage: connhold hold stream|seqpacket PATH N\n"
			"       connhold ask PATH N LINE\n"
			"       connhold time N CMD [ARG...]\n");
	return 2;
}

static long count_arg(const char *s)
{
	char *end;
	long n = strtol(s, &end, 10);

	return (*end || n < 1 || n > 100000) ? -1 : n;
}

static int hold(const char *kind, const char *path, long n)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int type, *fds, held = 0, refused = 0, failed = 0;
	char b;

	if (!strcmp(kind, "stream"))
		type = SOCK_STREAM;
	else if (!strcmp(kind, "seqpacket"))
		type = SOCK_SEQPACKET;
	else
		return usage();
	if (strlen(path) >= sizeof(a.sun_path)) {
		fprintf(stderr, "connhold: path too long: %s\n", path);
		return 2;
	}
	strcpy(a.sun_path, path);
	fds = calloc(n, sizeof(*fds));
	if (!fds)
		return 1;
	for (long i = 0; i < n; i++) {
		fds[i] = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
		if (fds[i] < 0 || connect(fds[i], (struct sockaddr *)&a, sizeof(a))) {
			if (fds[i] >= 0)
				close(fds[i]);
			fds[i] = -1;
			failed++;
		}
	}
	/* Refused connections are answered within tierd's 1 s linger of being accepted,
	 * and accepting 2,000 connections takes a while under TCG: report once the count
	 * has not changed for 6 s (at most after 120 s). Connections still in the listen
	 * backlog look held from here; on a loaded host 3 s of no change was seen while
	 * tierd had not yet refused them all. */
	for (int stable = 0, last = -1, waited = 0; stable < 12 && waited < 240; waited++) {
		usleep(500 * 1000);
		held = refused = 0;
		for (long i = 0; i < n; i++) {
			if (fds[i] < 0)
				continue;
			if (recv(fds[i], &b, 1, MSG_DONTWAIT | MSG_PEEK) < 0 &&
			    (errno == EAGAIN || errno == EWOULDBLOCK))
				held++;
			else
				refused++;
		}
		stable = held == last ? stable + 1 : 0;
		last = held;
	}
	printf("held=%d refused=%d failed=%d\n", held, refused, failed);
	fflush(stdout);
	for (;;)
		pause();
}

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static void report(double *ms, long n, int failures)
{
	qsort(ms, n, sizeof(*ms), cmp);
	/* Nearest rank: the smallest value with at least p of the runs at or below it. */
	long p50 = (n * 50 + 99) / 100 - 1, p99 = (n * 99 + 99) / 100 - 1;
	printf("runs=%ld failures=%d p50_ms=%.1f p99_ms=%.1f max_ms=%.1f\n", n, failures,
	       ms[p50], ms[p99], ms[n - 1]);
}

/* One request on a fresh connection: 0 when the reply line starts with {"ok":true. */
static int ask_once(const struct sockaddr_un *a, const char *line)
{
	char buf[65536];
	size_t got = 0;
	int ok = -1, fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	if (connect(fd, (const struct sockaddr *)a, sizeof(*a)) ||
	    send(fd, line, strlen(line), MSG_NOSIGNAL) < 0 || send(fd, "\n", 1, MSG_NOSIGNAL) < 0)
		goto out;
	while (got < sizeof(buf)) {
		ssize_t r = recv(fd, buf + got, sizeof(buf) - got, 0);

		if (r <= 0)
			break;
		got += r;
		if (memchr(buf, '\n', got))
			break;
	}
	ok = (got >= 10 && !memcmp(buf, "{\"ok\":true", 10)) ? 0 : -1;
out:
	close(fd);
	return ok;
}

static int ask(const char *path, long n, const char *line)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	double *ms = calloc(n, sizeof(*ms));
	int failures = 0;

	if (!ms || strlen(path) >= sizeof(a.sun_path))
		return 2;
	strcpy(a.sun_path, path);
	for (long i = 0; i < n; i++) {
		double t0 = now_ms();

		if (ask_once(&a, line))
			failures++;
		ms[i] = now_ms() - t0;
	}
	report(ms, n, failures);
	return 0;
}

static int timed(long n, char **cmd)
{
	double *ms = calloc(n, sizeof(*ms));
	int failures = 0;

	if (!ms)
		return 1;
	for (long i = 0; i < n; i++) {
		double t0 = now_ms();
		int st;
		pid_t pid = fork();

		if (pid < 0) {
			perror("connhold: fork");
			return 1;
		}
		if (pid == 0) {
			int null = open("/dev/null", O_WRONLY);

			if (null >= 0)
				dup2(null, 1);
			execvp(cmd[0], cmd);
			_exit(127);
		}
		if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))
			failures++;
		ms[i] = now_ms() - t0;
	}
	report(ms, n, failures);
	return 0;
}

int main(int argc, char **argv)
{
	long n;

	if (argc == 5 && !strcmp(argv[1], "hold")) {
		n = count_arg(argv[4]);
		return n < 0 ? usage() : hold(argv[2], argv[3], n);
	}
	if (argc == 5 && !strcmp(argv[1], "ask")) {
		n = count_arg(argv[3]);
		return n < 0 ? usage() : ask(argv[2], n, argv[4]);
	}
	if (argc >= 4 && !strcmp(argv[1], "time")) {
		n = count_arg(argv[2]);
		return n < 0 ? usage() : timed(n, argv + 3);
	}
	return usage();
}
