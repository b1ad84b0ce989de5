/*
 * bpfcheck: proves the bpf(2) syscall works in the test VM, without libbpf or bpftool.
 * Creates an array map, writes and reads back one value, and loads a two-instruction
 * socket filter ("r0 = 0; exit") through the verifier. Prints what it did; exit 0 ok,
 * 1 on the first failing step (with errno).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/bpf.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static long sys_bpf(int cmd, union bpf_attr *attr)
{
	return syscall(SYS_bpf, cmd, attr, sizeof(*attr));
}

static int die(const char *what)
{
	fprintf(stderr, "bpfcheck: %s: %s\n", what, strerror(errno));
	return 1;
}

int main(void)
{
	struct bpf_insn prog[] = {
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 0 },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	char log[4096] = "";
	uint32_t key = 0;
	uint64_t in = 0x7469657264, out = 0;
	union bpf_attr attr;
	int map_fd, prog_fd;

	memset(&attr, 0, sizeof(attr));
	attr.map_type = BPF_MAP_TYPE_ARRAY;
	attr.key_size = sizeof(key);
	attr.value_size = sizeof(in);
	attr.max_entries = 1;
	map_fd = sys_bpf(BPF_MAP_CREATE, &attr);
	if (map_fd < 0)
		return die("BPF_MAP_CREATE");

	memset(&attr, 0, sizeof(attr));
	attr.map_fd = map_fd;
	attr.key = (uintptr_t)&key;
	attr.value = (uintptr_t)&in;
	if (sys_bpf(BPF_MAP_UPDATE_ELEM, &attr) < 0)
		return die("BPF_MAP_UPDATE_ELEM");
	attr.value = (uintptr_t)&out;
	if (sys_bpf(BPF_MAP_LOOKUP_ELEM, &attr) < 0)
		return die("BPF_MAP_LOOKUP_ELEM");
	if (out != in) {
		fprintf(stderr, "bpfcheck: map read back %#llx, wrote %#llx\n",
			(unsigned long long)out, (unsigned long long)in);
		return 1;
	}
	printf("array map fd=%d: write/read back ok\n", map_fd);

	memset(&attr, 0, sizeof(attr));
	attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
	attr.insns = (uintptr_t)prog;
	attr.insn_cnt = sizeof(prog) / sizeof(prog[0]);
	attr.license = (uintptr_t)"GPL";
	attr.log_buf = (uintptr_t)log;
	attr.log_size = sizeof(log);
	attr.log_level = 1;
	prog_fd = sys_bpf(BPF_PROG_LOAD, &attr);
	if (prog_fd < 0) {
		fprintf(stderr, "%s", log);
		return die("BPF_PROG_LOAD");
	}
	printf("socket filter loaded through the verifier: prog fd=%d\n", prog_fd);
	return 0;
}
