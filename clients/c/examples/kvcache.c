/*
 * kvcache.c: the C API end to end, as an engine would use it, and the C client's test.
 *
 *   kvcache [SOCKET]     (default: $TIERD_CLIENT_SOCKET or /run/tierd/client.sock)
 *
 * Allocates a 64-block "KV cache", asks tierd where a pinned allocation should go,
 * registers the cache, sends ACCESS / COLD / PREFETCH hints, waits for the prefetched
 * blocks' placement to be read back, opens a shared pool twice and checks both fds
 * show the same memory, and checks that hints on a bad region are refused. Prints
 * "kvcache: ok" and exits 0, or names the failed step and exits 1.
 */
#define _GNU_SOURCE
#include "tierd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define BLOCK (64 * 1024)
#define NBLOCKS 64

static int failed(const char *step, int rc) {
    fprintf(stderr, "kvcache: %s failed: %d (%s)\n", step, rc, strerror(rc < 0 ? -rc : rc));
    return 1;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
    tierd_client *c = tierd_connect(argc > 1 ? argv[1] : NULL);
    if (!c)
        return failed("tierd_connect", -errno);

    int node = -1;
    int rc = tierd_advise_node(c, NBLOCKS * BLOCK, TIERD_TIER_FAST, &node);
    if (rc < 0)
        return failed("tierd_advise_node", rc);
    printf("advise: allocate on node %d\n", node);

    char *kv = mmap(NULL, NBLOCKS * BLOCK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                    -1, 0);
    if (kv == MAP_FAILED)
        return failed("mmap", -errno);
    memset(kv, 1, NBLOCKS * BLOCK);

    uint32_t region = 0;
    rc = tierd_register(c, kv, NBLOCKS * BLOCK, BLOCK, &region);
    if (rc < 0)
        return failed("tierd_register", rc);

    uint64_t hot[] = {0, 1, 2, 3};
    uint64_t cold[] = {40, 41, 42};
    uint64_t soon[] = {10, 11};
    if ((rc = tierd_hint(c, region, TIERD_HINT_ACCESS, hot, 4)) != 4)
        return failed("tierd_hint ACCESS", rc);
    if ((rc = tierd_hint(c, region, TIERD_HINT_COLD, cold, 3)) != 3)
        return failed("tierd_hint COLD", rc);
    if ((rc = tierd_hint_range(c, region, TIERD_HINT_PIN_FAST, 20, 2, 0)) != 2)
        return failed("tierd_hint_range PIN_FAST", rc);
    double t0 = now_ms();
    if ((rc = tierd_hint_prefetch(c, region, soon, 2, 10)) != 2)
        return failed("tierd_hint_prefetch", rc);
    /* Placement read-back: the fast node once the promotion is done. */
    int p = -EAGAIN;
    while ((p = tierd_placement(c, region, 11)) == -EAGAIN && now_ms() - t0 < 5000)
        usleep(200);
    if (p < 0)
        return failed("tierd_placement", p);
    printf("placement: block 11 on node %d after %.1f ms\n", p, now_ms() - t0);

    if ((rc = tierd_placement(c, region, NBLOCKS)) != -ERANGE)
        return failed("tierd_placement out of range", rc);
    if ((rc = tierd_hint(c, region + 1000, TIERD_HINT_ACCESS, hot, 4)) != -EINVAL)
        return failed("tierd_hint on an unknown region", rc);
    if ((rc = tierd_hint(c, region, 99, hot, 4)) != -EINVAL)
        return failed("tierd_hint with an unknown kind", rc);

    tierd_region_stats st;
    double t1 = now_ms();
    do {
        if ((rc = tierd_stats(c, region, &st)) < 0)
            return failed("tierd_stats", rc);
    } while (st.applied_entries < 4 && now_ms() - t1 < 5000);
    printf("stats: published %llu applied %llu rejected %llu dropped %llu promoted %llu\n",
           (unsigned long long)st.published_entries, (unsigned long long)st.applied_entries,
           (unsigned long long)st.rejected_entries, (unsigned long long)st.dropped_blocks,
           (unsigned long long)st.promoted_blocks);
    if (st.applied_entries < 4)
        return failed("hints applied", (int)st.applied_entries);

    int fd1 = -1, fd2 = -1;
    if ((rc = tierd_pool_open(c, "kvcache-example", 1 << 20, &fd1)) < 0)
        return failed("tierd_pool_open", rc);
    if ((rc = tierd_pool_open(c, "kvcache-example", 1 << 20, &fd2)) < 0)
        return failed("tierd_pool_open (again)", rc);
    char *a = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd1, 0);
    char *b = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd2, 0);
    if (a == MAP_FAILED || b == MAP_FAILED)
        return failed("mmap pool", -errno);
    strcpy(a, "system prompt");
    if (strcmp(b, "system prompt") != 0)
        return failed("pool fds share memory", -EIO);

    if ((rc = tierd_unregister(c, region)) < 0)
        return failed("tierd_unregister", rc);
    tierd_close(c);
    puts("kvcache: ok");
    return 0;
}
