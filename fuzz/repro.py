"""Standalone reproducers of a program: C (plain syscalls, `cc -static`) and Python (stdlib).

A reviewer reads and runs them without zcfuzz: fixtures are built with the same calls the
executor makes, each op prints its return value and errno, drains print the notification
ranges. The sendfile2 number is the one of the kernel the finding came from. As in the
executor, an op with `fail_nth` arms /proc/thread-self/fail-nth right before its call and says
whether the fault was injected, and thread 1's ops run in a second thread pinned to the second
CPU, both threads starting together (vm/PROGRAM.md). Programs with *_nic fixtures need the
NIC path: the peer's end in the network namespace zcfuzz-peer, which `NIC_NOTE` (written at
each such fixture) says how to make; peer_hold and peer_release take its addresses away and
give them back, as the executor does.
"""

from __future__ import annotations

import json

from zcfuzz.conformance.abi import MSG_ZEROCOPY
from zcfuzz.vm.program import NIC_KINDS, Op, Program

DUMMY_NOTE = ("needs dummy0: ip link add dummy0 type dummy; ip addr add 192.0.2.1/24 dev dummy0; "
              "ip link set dummy0 up")
# The NIC path of vm/PROGRAM.md, where a zcfuzz guest's executor builds it from two virtio-net
# NICs: here the peer's end is an interface in the network namespace zcfuzz-peer.
NIC_NOTE = ("needs the NIC path: the peer's end in network namespace zcfuzz-peer with 169.254.90.2/16 and "
            "fd00:5a::2/64, ours with 169.254.90.1/16 and fd00:5a::1/64, e.g. ip netns add zcfuzz-peer; "
            "ip link add zc0 type veth peer name zc1 netns zcfuzz-peer; ip addr add 169.254.90.1/16 dev zc0; "
            "ip addr add fd00:5a::1/64 dev zc0 nodad; ip link set zc0 up; ip -n zcfuzz-peer addr add "
            "169.254.90.2/16 dev zc1; ip -n zcfuzz-peer addr add fd00:5a::2/64 dev zc1 nodad; ip -n zcfuzz-peer "
            "link set zc1 up (a veth pair delivers locally, so COPIED is set as on loopback: a zcfuzz guest's "
            "two virtio-net NICs are what gives true zerocopy)")

C_PRELUDE = r"""#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/errqueue.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef SO_ZEROCOPY
#define SO_ZEROCOPY 60
#endif
#ifndef MSG_ZEROCOPY
#define MSG_ZEROCOPY 0x4000000
#endif

static __attribute__((unused)) unsigned char pattern_byte(uint64_t i, int seed)
{
	return (unsigned char)(((i ^ (i >> 8) ^ (i >> 16)) * 31 + seed) & 0xff);
}

static __attribute__((unused)) unsigned char *pattern(uint64_t len)
{
	unsigned char *buf = malloc(len ? len : 1);
	for (uint64_t i = 0; i < len; i++)
		buf[i] = pattern_byte(i, 0);
	return buf;
}

static __attribute__((unused)) int file_fixture(const char *name, int flags, uint64_t size, int seed)
{
	unsigned char *buf = malloc(size ? size : 1);
	int fd = open(name, O_RDWR | O_CREAT | O_TRUNC, 0600);
	for (uint64_t i = 0; i < size; i++)
		buf[i] = pattern_byte(i, seed);
	if (fd < 0 || write(fd, buf, size) != (ssize_t)size)
		perror(name);
	close(fd);
	free(buf);
	return open(name, flags);
}

static __attribute__((unused)) int memfd_fixture(uint64_t size, int seed)
{
	int fd = memfd_create("zcfuzz", 0);
	for (uint64_t i = 0; i < size; i++) {
		unsigned char b = pattern_byte(i, seed);
		if (write(fd, &b, 1) != 1)
			perror("memfd");
	}
	lseek(fd, 0, SEEK_SET);
	return fd;
}

/* The NIC path (see the note at the fixture): a socket made in the peer's namespace. */
static __attribute__((unused)) int peer_ns_socket(int family, int type)
{
	int ours = open("/proc/self/ns/net", O_RDONLY), theirs = open("/run/netns/zcfuzz-peer", O_RDONLY), fd;

	if (theirs < 0 || setns(theirs, CLONE_NEWNET))
		perror("enter /run/netns/zcfuzz-peer");
	fd = socket(family, type, 0);
	if (setns(ours, CLONE_NEWNET))
		perror("back to our namespace");
	close(ours);
	close(theirs);
	return fd;
}

/* The peer's address: loopback, or the peer's end of the NIC path. */
static __attribute__((unused)) socklen_t peer_address(int family, int nic, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;
		in->sin_family = AF_INET;
		in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (nic)
			inet_pton(AF_INET, "169.254.90.2", &in->sin_addr);
		return sizeof(*in);
	}
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	in6->sin6_family = AF_INET6;
	in6->sin6_addr = in6addr_loopback;
	if (nic)
		inet_pton(AF_INET6, "fd00:5a::2", &in6->sin6_addr);
	return sizeof(*in6);
}

/* A connected socket of `type`, its peer on loopback or across the NIC path; *peer is the
 * accepted end or the bound receiver. */
static __attribute__((unused)) int inet_fixture(int family, int type, int nic, int *peer)
{
	struct sockaddr_storage ss;
	socklen_t len = peer_address(family, nic, &ss);
	int server = nic ? peer_ns_socket(family, type) : socket(family, type, 0), fd = socket(family, type, 0);

	if (bind(server, (struct sockaddr *)&ss, len) || getsockname(server, (struct sockaddr *)&ss, &len))
		perror("bind");
	if (type == SOCK_STREAM && listen(server, 1))
		perror("listen");
	if (connect(fd, (struct sockaddr *)&ss, len))
		perror("connect");
	*peer = type == SOCK_STREAM ? accept(server, NULL, NULL) : server;
	if (type == SOCK_STREAM)
		close(server);
	return fd;
}

/* peer_hold (present 0) and peer_release (1): the peer's interface loses or gets back its
 * addresses, so nothing reaches its stack and nothing is acknowledged meanwhile. */
static __attribute__((unused)) long peer_addresses(int present)
{
	struct ifreq ifr = {0};
	struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
	struct {
		struct in6_addr addr;
		uint32_t prefixlen;
		int ifindex;
	} req = {.prefixlen = 64};
	int sock = peer_ns_socket(AF_INET, SOCK_DGRAM), sock6 = peer_ns_socket(AF_INET6, SOCK_DGRAM), ret = 0;

	/* the peer's interface: the one that is not lo in its namespace, asked through its socket */
	for (int index = 1; index < 64 && !ifr.ifr_name[0]; index++) {
		ifr.ifr_ifindex = index;
		if (ioctl(sock, SIOCGIFNAME, &ifr) == 0 && strcmp(ifr.ifr_name, "lo"))
			req.ifindex = index;
		else
			ifr.ifr_name[0] = 0;
	}
	sin->sin_family = AF_INET;
	inet_pton(AF_INET, present ? "169.254.90.2" : "0.0.0.0", &sin->sin_addr);
	ret |= ioctl(sock, SIOCSIFADDR, &ifr);
	if (present) {
		inet_pton(AF_INET, "255.255.0.0", &sin->sin_addr);
		ret |= ioctl(sock, SIOCSIFNETMASK, &ifr);
	}
	inet_pton(AF_INET6, "fd00:5a::2", &req.addr);
	ret |= ioctl(sock6, present ? SIOCSIFADDR : SIOCDIFADDR, &req);
	close(sock);
	close(sock6);
	return ret;
}

/* pwrite(2) of bytes [offset, offset + len) of the pattern with `seed`, at offset. */
static __attribute__((unused)) long pwrite_pattern(int fd, uint64_t offset, uint64_t len, int seed)
{
	unsigned char *buf = malloc(len ? len : 1);
	long ret;

	for (uint64_t i = 0; i < len; i++)
		buf[i] = pattern_byte(offset + i, seed);
	ret = pwrite(fd, buf, len, offset);
	free(buf);
	return ret;
}

/* The same bytes stored through a shared mapping, cut at the end of the file. */
static __attribute__((unused)) long mmap_store(int fd, uint64_t offset, uint64_t len, int seed)
{
	off_t size = lseek(fd, 0, SEEK_END);
	uint64_t start = offset & ~4095ULL, end;
	unsigned char *map;

	if (size < 0 || offset >= (uint64_t)size)
		return size < 0 ? -1 : 0;
	end = len > (uint64_t)size - offset ? (uint64_t)size : offset + len;
	map = mmap(NULL, end - start, PROT_READ | PROT_WRITE, MAP_SHARED, fd, start);
	if (map == MAP_FAILED)
		return -1;
	for (uint64_t i = offset; i < end; i++)
		map[i - start] = pattern_byte(i, seed);
	munmap(map, end - start);
	return end - offset;
}

static __attribute__((unused)) int dummy_fixture(void)
{
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(9)};
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	inet_pton(AF_INET, "192.0.2.2", &to.sin_addr);
	if (setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, "dummy0", sizeof("dummy0")) ||
	    connect(fd, (struct sockaddr *)&to, sizeof(to)))
		perror("dummy0");
	return fd;
}

static __attribute__((unused)) void socket_options(int fd, int zerocopy, int sndbuf)
{
	int one = 1;
	if (zerocopy && setsockopt(fd, SOL_SOCKET, SO_ZEROCOPY, &one, sizeof(one)))
		perror("SO_ZEROCOPY");
	if (sndbuf && setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)))
		perror("SO_SNDBUF");
}

static __attribute__((unused)) void nonblock(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static __attribute__((unused)) loff_t *bad_pointer(const char *what)
{
	char *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (!strcmp(what, "unmapped"))
		munmap(page, 4096);
	else
		mprotect(page, 4096, strcmp(what, "readonly") ? PROT_NONE : PROT_READ);
	return (loff_t *)page;
}

/* One whole line per call: the second thread prints too. */
static __attribute__((unused)) void report(int index, const char *what, long ret)
{
	int saved = errno;

	flockfile(stdout);
	printf("ops[%d] %s = %ld", index, what, ret);
	if (ret < 0)
		printf(" (%s)", strerror(saved));
	printf("\n");
	funlockfile(stdout);
}

/* Make the n-th fault site the calling thread passes fail (fail-nth, as the executor does);
 * -1 where the kernel has no /proc/thread-self/fail-nth. */
static __attribute__((unused)) int fault_arm(int nth)
{
	int fd = open("/proc/thread-self/fail-nth", O_RDWR);
	char word[16];

	if (fd < 0)
		return -1;
	snprintf(word, sizeof(word), "%d", nth);
	if (write(fd, word, strlen(word)) < 0)
		perror("fail-nth");
	return fd;
}

/* Called with the call's return value, so after the call: report it and whether its fault was
 * injected (0 read back), then clear what is left of the count. */
static __attribute__((unused)) void report_faulted(int index, const char *what, long ret, int fault)
{
	int saved = errno, injected = 0;
	char word[16] = "";

	if (fault >= 0) {
		injected = pread(fault, word, sizeof(word) - 1, 0) > 0 && word[0] == '0';
		if (write(fault, "0", 1) < 0)
			perror("fail-nth");
		close(fault);
	}
	errno = saved;
	report(index, what, ret);
	printf("ops[%d] fault %s\n", index, fault < 0 ? "not armed: no /proc/thread-self/fail-nth" :
	       injected ? "injected" : "not injected");
}

/* Both threads spin until the other is there, so that their first calls start together (the
 * executor does the same). */
static int threads_at_start;

static __attribute__((unused)) void start_together(void)
{
	__atomic_add_fetch(&threads_at_start, 1, __ATOMIC_ACQ_REL);
	while (__atomic_load_n(&threads_at_start, __ATOMIC_ACQUIRE) < 2)
		sched_yield();
}

/* Thread 0 on the first CPU the process may use, thread 1 on the second, if there are two. */
static __attribute__((unused)) void pin_to(int thread)
{
	cpu_set_t allowed, one;
	int seen = 0;

	if (sched_getaffinity(0, sizeof(allowed), &allowed) || CPU_COUNT(&allowed) < 2)
		return;
	for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
		if (CPU_ISSET(cpu, &allowed) && seen++ == thread) {
			CPU_ZERO(&one);
			CPU_SET(cpu, &one);
			sched_setaffinity(0, sizeof(one), &one);
			return;
		}
	}
}

static __attribute__((unused)) void peer_read(int index, int peer, size_t max)
{
	char *buf = malloc(max ? max : 1);
	report(index, "peer_read", recv(peer, buf, max, MSG_DONTWAIT));
	free(buf);
}

static __attribute__((unused)) void drain(int index, int fd, int wait_ms)
{
	struct pollfd pfd = {.fd = fd, .events = 0};
	char control[128];

	if (wait_ms)
		poll(&pfd, 1, wait_ms);
	for (;;) {
		struct msghdr msg = {.msg_control = control, .msg_controllen = sizeof(control)};
		if (recvmsg(fd, &msg, MSG_ERRQUEUE | MSG_DONTWAIT) < 0)
			break;
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
			struct sock_extended_err *ee = (struct sock_extended_err *)CMSG_DATA(cm);
			printf("ops[%d] notification origin %u errno %u code %u ids %u-%u\n", index,
			       ee->ee_origin, ee->ee_errno, ee->ee_code, ee->ee_info, ee->ee_data);
		}
	}
}
"""


class CWriter:
    """Turns one program into C: fixtures at file scope (both threads use them), each thread's
    ops in program order, thread 1's in a function of its own that starts together with main."""

    def __init__(self, program: Program, nr_sendfile2: int | None):
        self.program = program
        self.nr = nr_sendfile2
        self.globals: list[str] = []
        self.lines: list[str] = []  # where emit writes: main's body, or a thread's
        self.vars: dict[str, str] = {}  # fd name -> C variable
        self.peers: dict[str, str] = {}

    def emit(self, line: str) -> None:
        self.lines.append("\t" + line)

    def declare(self, names: str) -> None:
        self.globals.append(f"static int {names};")

    def var(self, name: str) -> str:
        return self.vars[name]

    def fixtures(self) -> None:
        for n, f in enumerate(self.program.fds):
            v = f"fd{n}"
            kind = f.kind
            if kind in ("file", "file_ro", "file_wo", "file_append", "opath"):
                flags = {"file": "O_RDWR", "file_ro": "O_RDONLY", "file_wo": "O_WRONLY",
                         "file_append": "O_WRONLY | O_APPEND", "opath": "O_PATH"}[kind]
                self.declare(v)
                self.emit(f"{v} = file_fixture(\"{f.name}\", {flags}, {f.size}, {f.seed});")
            elif kind == "memfd":
                self.declare(v)
                self.emit(f"{v} = memfd_fixture({f.size}, {f.seed});")
            elif kind == "pipe":
                self.declare(f"{v}[2]")
                self.emit(f"if (pipe({v})) perror(\"pipe\");")
                self.vars[f"{f.name}.r"], self.vars[f"{f.name}.w"] = f"{v}[0]", f"{v}[1]"
                for end in ("r", "w"):
                    if f.nonblock:
                        self.emit(f"nonblock({self.vars[f'{f.name}.{end}']});")
                continue
            elif kind in ("tcp4", "tcp6", "udp4", "udp6"):
                family = "AF_INET" if kind.endswith("4") else "AF_INET6"
                sock_type = "SOCK_STREAM" if kind.startswith("tcp") else "SOCK_DGRAM"
                self.declare(f"{v}, {v}_peer")
                self.emit(f"{v} = inet_fixture({family}, {sock_type}, 0, &{v}_peer);")
                self.peers[f.name] = f"{v}_peer"
            elif kind in NIC_KINDS:
                family = "AF_INET" if "4" in kind else "AF_INET6"
                sock_type = "SOCK_STREAM" if kind.startswith("tcp") else "SOCK_DGRAM"
                self.declare(f"{v}, {v}_peer")
                self.emit(f"{v} = inet_fixture({family}, {sock_type}, 1, &{v}_peer); /* {NIC_NOTE} */")
                self.peers[f.name] = f"{v}_peer"
            elif kind == "udp_dummy":
                self.declare(v)
                self.emit(f"{v} = dummy_fixture(); /* {DUMMY_NOTE} */")
            elif kind in ("unix_stream", "unix_dgram"):
                sock_type = "SOCK_STREAM" if kind == "unix_stream" else "SOCK_DGRAM"
                self.declare(f"{v}_pair[2], {v}, {v}_peer")
                self.emit(f"socketpair(AF_UNIX, {sock_type}, 0, {v}_pair);")
                self.emit(f"{v} = {v}_pair[0], {v}_peer = {v}_pair[1];")
                self.peers[f.name] = f"{v}_peer"
            else:
                make = {"dir": "open(\".\", O_RDONLY | O_DIRECTORY)", "eventfd": "eventfd(0, 0)",
                        "timerfd": "timerfd_create(CLOCK_MONOTONIC, 0)",
                        "pidfd": "syscall(SYS_pidfd_open, getpid(), 0)", "epoll": "epoll_create1(0)",
                        "devzero": "open(\"/dev/zero\", O_RDWR)", "devnull": "open(\"/dev/null\", O_RDWR)",
                        "closed": "dup(0)", "invalid": "-1"}[kind]
                self.declare(v)
                self.emit(f"{v} = {make};")
                if kind == "closed":
                    self.emit(f"close({v});")
            self.vars[f.name] = v
            if f.spec.socket and (f.zerocopy or f.sndbuf):
                self.emit(f"socket_options({v}, {int(f.zerocopy)}, {f.sndbuf});")
            if f.nonblock:
                self.emit(f"nonblock({v});")

    def offset(self, i: int, field: str, value) -> str:
        if value is None:
            return "NULL"
        slot = f"off{i}_{field}"
        if isinstance(value, str):
            self.emit(f"loff_t *{slot} = bad_pointer(\"{value}\");")
            return slot
        self.emit(f"loff_t {slot} = {value}LL;")
        return f"&{slot}"

    def call(self, i: int, op: Op) -> tuple[str, str] | None:
        """What an op that is one call reports and its C expression; what the call needs is
        emitted first, so that nothing but the call runs while its fault is armed."""
        a = dict(op.args)
        u = lambda value: f"{value & 0xFFFFFFFFFFFFFFFF}ULL"  # noqa: E731 - size_t as C sees it
        flags = lambda value: f"{value & 0xFFFFFFFF}U"  # noqa: E731
        if op.op == "sendfile2":
            off = self.offset(i, "offset", a["offset"])
            nr = -1 if self.nr is None else self.nr
            return "sendfile2", (f"syscall({nr}, {self.var(a['out'])}, {self.var(a['in'])}, {off}, "
                                 f"{u(a['count'])}, {flags(a['flags'])})")
        if op.op == "sendfile64":
            off = self.offset(i, "offset", a["offset"])
            return "sendfile", f"sendfile({self.var(a['out'])}, {self.var(a['in'])}, {off}, {u(a['count'])})"
        if op.op == "splice":
            off_in, off_out = self.offset(i, "in", a["off_in"]), self.offset(i, "out", a["off_out"])
            return "splice", (f"splice({self.var(a['in'])}, {off_in}, {self.var(a['out'])}, {off_out}, "
                              f"{u(a['len'])}, {flags(a['flags'])})")
        if op.op == "tee":
            return "tee", f"tee({self.var(a['in'])}, {self.var(a['out'])}, {u(a['len'])}, {flags(a['flags'])})"
        if op.op in ("vmsplice", "sendmsg", "write"):
            self.emit(f"unsigned char *buf{i} = pattern({a['len']});")
        if op.op == "vmsplice":
            self.emit(f"struct iovec iov{i} = {{buf{i}, {a['len']}}};")
            return "vmsplice", f"vmsplice({self.var(a['fd'])}, &iov{i}, 1, {flags(a['flags'])})"
        if op.op == "sendmsg":
            self.emit(f"struct iovec iov{i} = {{buf{i}, {a['len']}}};")
            self.emit(f"struct msghdr msg{i} = {{.msg_iov = &iov{i}, .msg_iovlen = 1}};")
            return "sendmsg", f"sendmsg({self.var(a['fd'])}, &msg{i}, {flags(a['flags'])})"
        if op.op == "write":
            return "write", f"write({self.var(a['fd'])}, buf{i}, {a['len']})"
        if op.op == "peer_close":
            return "peer close", f"close({self.peers.get(a['fd'], '-1')})"
        if op.op == "setsockopt_zerocopy":
            self.emit(f"int value{i} = {a['value']};")
            return ("setsockopt SO_ZEROCOPY",
                    f"setsockopt({self.var(a['fd'])}, SOL_SOCKET, SO_ZEROCOPY, &value{i}, sizeof(value{i}))")
        if op.op == "close":
            return "close", f"close({self.var(a['fd'])})"
        if op.op == "truncate":
            return "ftruncate", f"ftruncate({self.var(a['fd'])}, {a['length']}LL)"
        if op.op in ("pwrite", "mmap_write"):
            store = "pwrite_pattern" if op.op == "pwrite" else "mmap_store"
            return op.op, f"{store}({self.var(a['fd'])}, {u(a['offset'])}, {u(a['len'])}, {a['seed'] & 0xFF})"
        if op.op in ("peer_hold", "peer_release"):
            return op.op, f"peer_addresses({int(op.op == 'peer_release')})"
        return None

    def op(self, i: int, op: Op) -> None:
        a = dict(op.args)
        call = self.call(i, op)
        if call and op.fail_nth:
            self.emit(f"int fault{i} = fault_arm({op.fail_nth});")
            self.emit(f"report_faulted({i}, \"{call[0]}\", {call[1]}, fault{i});")
        elif call:
            self.emit(f"report({i}, \"{call[0]}\", {call[1]});")
        elif op.op == "peer_read":
            self.emit(f"peer_read({i}, {self.peers.get(a['fd'], '-1')}, {a['max']});")
        elif op.op == "drain":
            self.emit(f"drain({i}, {self.var(a['fd'])}, {a['wait_ms']});")
        elif op.op == "lkdtm":
            self.emit(f"system(\"echo {a['crash']} > /sys/kernel/debug/provoke-crash/DIRECT\");")

    def thread_ops(self, thread: int) -> None:
        for i, op in enumerate(self.program.ops):
            if op.thread == thread:
                self.op(i, op)

    def second_thread(self) -> list[str]:
        """Thread 1: pinned to the second CPU, starts together with main, runs its ops."""
        main, self.lines = self.lines, []
        self.emit("pin_to(1);")
        self.emit("start_together();")
        self.thread_ops(1)
        body, self.lines = self.lines, main
        return ["static void *second_thread(void *unused)", "{", "\t(void)unused;", *body, "\treturn NULL;", "}"]

    def final_drains(self) -> None:
        for f in self.program.fds:
            if f.spec.socket:
                self.emit(f"usleep(200000); drain({len(self.program.ops)}, {self.vars[f.name]}, 0);")


def c_reproducer(program: Program, nr_sendfile2: int | None, title: str = "") -> str:
    """A C file that builds with `cc -static -pthread` and replays `program` with plain syscalls."""
    writer = CWriter(program, nr_sendfile2)
    writer.emit("char dir[] = \"/tmp/zcfuzz-repro-XXXXXX\";")
    writer.emit("if (!mkdtemp(dir) || chdir(dir)) perror(\"workdir\");")
    writer.fixtures()
    threaded = any(op.thread for op in program.ops)
    second = writer.second_thread() if threaded else []
    if threaded:
        for line in ("pthread_t second;",
                     "if (pthread_create(&second, NULL, second_thread, NULL)) perror(\"pthread_create\");",
                     "pin_to(0);", "start_together();"):
            writer.emit(line)
    writer.thread_ops(0)
    if threaded:
        writer.emit("pthread_join(second, NULL);")
    writer.final_drains()
    header = (f"/* zcfuzz reproducer{': ' + title if title else ''}\n * build: cc -static -pthread -o repro repro.c\n"
              f" * program: {json.dumps(program.to_json())}\n */\n")
    file_scope = "\n".join(writer.globals + ([""] + second if second else [])) + "\n"
    return (header + C_PRELUDE + "\n" + file_scope + "\nint main(void)\n{\n" + "\n".join(writer.lines)
            + "\n\treturn 0;\n}\n")


def python_reproducer(program: Program, nr_sendfile2: int | None, title: str = "") -> str:
    """A Python script (stdlib only) that replays `program` through the same calls."""
    return PY_TEMPLATE.format(
        title=title.replace('"""', "'''"),
        program=json.dumps(program.to_json(), indent=1),
        nr=nr_sendfile2 if nr_sendfile2 is not None else -1,
        msg_zerocopy=MSG_ZEROCOPY,
        dummy_note=DUMMY_NOTE,
        nic_note=NIC_NOTE,
    )


PY_TEMPLATE = '''#!/usr/bin/env python3
"""zcfuzz reproducer: {title}

Replays the program below with plain system calls (stdlib only) and prints each call's result.
udp_dummy {dummy_note}.
The *_nic kinds {nic_note}.
"""
import ctypes
import errno
import fcntl
import json
import mmap
import os
import struct
import socket
import sys
import tempfile
import threading
import time

NR_SENDFILE2 = {nr}
MSG_ZEROCOPY = {msg_zerocopy}
SO_ZEROCOPY = 60
MSG_ERRQUEUE = 0x2000
PROGRAM = json.loads("""{program}""")

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.splice.restype = ctypes.c_ssize_t
libc.tee.restype = ctypes.c_ssize_t
libc.vmsplice.restype = ctypes.c_ssize_t
libc.sendfile.restype = ctypes.c_ssize_t
libc.mmap.restype = ctypes.c_void_p
u64, u32 = ctypes.c_uint64, ctypes.c_uint32


def pattern(seed, start, length):
    return bytes(((i ^ (i >> 8) ^ (i >> 16)) * 31 + seed) & 0xFF for i in range(start, start + length))


def bad_pointer(what):
    page = libc.mmap(None, 4096, 3, 0x22, -1, 0)
    if what == "unmapped":
        libc.munmap(ctypes.c_void_p(page), 4096)
    else:
        libc.mprotect(ctypes.c_void_p(page), 4096, 1 if what == "readonly" else 0)
    return ctypes.c_void_p(page)


def offset(value, keep):
    if value is None:
        return None
    if isinstance(value, str):
        return bad_pointer(value)
    slot = ctypes.c_longlong(value)
    keep.append(slot)
    return ctypes.byref(slot)


def inet(family, kind):
    server, fd = socket.socket(family, kind), socket.socket(family, kind)
    server.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
    if kind == socket.SOCK_STREAM:
        server.listen(1)
    fd.connect(server.getsockname())
    return fd, (server.accept()[0] if kind == socket.SOCK_STREAM else server)


def peer_ns_socket(family, kind):
    """A socket made in the peer's network namespace (the NIC path)."""
    ours, theirs = os.open("/proc/self/ns/net", os.O_RDONLY), os.open("/run/netns/zcfuzz-peer", os.O_RDONLY)
    libc.setns(theirs, 0x40000000)  # CLONE_NEWNET
    try:
        return socket.socket(family, kind)
    finally:
        libc.setns(ours, 0x40000000)
        os.close(ours)
        os.close(theirs)


def nic(family, kind):
    server, fd = peer_ns_socket(family, kind), socket.socket(family, kind)
    server.bind(("fd00:5a::2" if family == socket.AF_INET6 else "169.254.90.2", 0))
    if kind == socket.SOCK_STREAM:
        server.listen(1)
    fd.connect(server.getsockname())
    return fd, (server.accept()[0] if kind == socket.SOCK_STREAM else server)


def peer_addresses(present):
    """peer_hold (False) and peer_release (True): the peer's interface loses or gets back its
    addresses (SIOCSIFADDR 0.0.0.0 removes the IPv4 one; SIOCDIFADDR the IPv6 one)."""
    sock, sock6 = peer_ns_socket(socket.AF_INET, socket.SOCK_DGRAM), peer_ns_socket(socket.AF_INET6, socket.SOCK_DGRAM)
    index, name = next((i, n) for i in range(1, 64) for n in [peer_name(sock, i)] if n not in ("", "lo"))
    address = socket.inet_aton("169.254.90.2" if present else "0.0.0.0")
    fcntl.ioctl(sock, 0x8916, struct.pack("16sH2s4s8x", name.encode(), socket.AF_INET, b"", address))
    if present:
        fcntl.ioctl(sock, 0x891C, struct.pack("16sH2s4s8x", name.encode(), socket.AF_INET, b"",
                                               socket.inet_aton("255.255.0.0")))
    fcntl.ioctl(sock6, 0x8916 if present else 0x8936,
                struct.pack("16sIi", socket.inet_pton(socket.AF_INET6, "fd00:5a::2"), 64, index))
    sock.close()
    sock6.close()
    return 0


def peer_name(sock, index):
    """The name of interface `index` in the socket's namespace (SIOCGIFNAME), "" if none."""
    try:
        return fcntl.ioctl(sock, 0x8910, struct.pack("16si20x", b"", index))[:16].rstrip(b"\\0").decode()
    except OSError:
        return ""


def rewrite(fd, offset, length, seed, through_mapping):
    """pwrite or mmap_write: bytes [offset, offset+length) of the seed's pattern at offset; a
    mapping cannot grow the file, so its store is cut at the end."""
    data = pattern(seed, offset, length)
    if not through_mapping:
        return os.pwrite(fd, data, offset)
    end = min(os.fstat(fd).st_size, offset + length)
    if offset >= end:
        return 0
    start = offset - offset % mmap.PAGESIZE
    with mmap.mmap(fd, end - start, mmap.MAP_SHARED, offset=start) as view:
        view[offset - start:end - start] = data[:end - offset]
    return end - offset


def build(f):
    kind, size, seed = f["kind"], f.get("size", 4096), f.get("seed", 0)
    if kind in ("file", "file_ro", "file_wo", "file_append", "opath"):
        with open(f["name"], "wb") as out:
            out.write(pattern(seed, 0, size))
        flags = dict(file=os.O_RDWR, file_ro=os.O_RDONLY, file_wo=os.O_WRONLY,
                     file_append=os.O_WRONLY | os.O_APPEND, opath=os.O_PATH)[kind]
        return os.open(f["name"], flags), None
    if kind == "memfd":
        fd = os.memfd_create("zcfuzz")
        os.write(fd, pattern(seed, 0, size))
        os.lseek(fd, 0, os.SEEK_SET)
        return fd, None
    if kind in ("tcp4", "tcp6", "udp4", "udp6"):
        family = socket.AF_INET if kind.endswith("4") else socket.AF_INET6
        sock, peer = inet(family, socket.SOCK_STREAM if kind.startswith("tcp") else socket.SOCK_DGRAM)
        return sock, peer
    if kind.endswith("_nic"):
        family = socket.AF_INET if "4" in kind else socket.AF_INET6
        return nic(family, socket.SOCK_STREAM if kind.startswith("tcp") else socket.SOCK_DGRAM)
    if kind == "udp_dummy":
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"dummy0")
        sock.connect(("192.0.2.2", 9))
        return sock, None
    if kind in ("unix_stream", "unix_dgram"):
        return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM if kind == "unix_stream" else socket.SOCK_DGRAM)
    if kind == "closed":
        fd = os.dup(0)
        os.close(fd)
        return fd, None
    makers = dict(dir=lambda: os.open(".", os.O_RDONLY | os.O_DIRECTORY), eventfd=lambda: os.eventfd(0),
                  timerfd=lambda: libc.timerfd_create(1, 0), pidfd=lambda: os.pidfd_open(os.getpid()),
                  epoll=lambda: os.epoll_create1(0) if hasattr(os, "epoll_create1") else __import__("select").epoll().detach(),
                  devzero=lambda: os.open("/dev/zero", os.O_RDWR), devnull=lambda: os.open("/dev/null", os.O_RDWR),
                  invalid=lambda: -1)
    return makers[kind](), None


def number(x):
    return x if isinstance(x, int) else x.fileno()


PRINTING = threading.Lock()


def say(line):
    """One whole line: print() writes the text and its newline apart, and two threads print."""
    with PRINTING:
        sys.stdout.write(line + "\\n")


def drain(sock, label):
    while True:
        try:
            _, ancdata, _, _ = sock.recvmsg(1, 512, MSG_ERRQUEUE | socket.MSG_DONTWAIT)
        except OSError:
            return
        for _, _, data in ancdata:
            ee_errno, origin, _type, code, _pad, lo, hi = __import__("struct").unpack("IBBBBII", data[:16])
            say(f"{{label}} notification origin {{origin}} errno {{ee_errno}} code {{code}} ids {{lo}}-{{hi}}")


def libc_call(function, *args):
    """A libc call with its arguments built: run it later for (return value, errno)."""
    def call():
        ctypes.set_errno(0)
        ret = function(*args)
        return ret, ctypes.get_errno() if ret < 0 else 0
    return call


def os_call(function):
    def call():
        try:
            return function(), 0
        except OSError as err:
            return -1, err.errno
    return call


def prepare(op, fds, objects, peers, keep):
    """The call an op makes, every argument built first, so that nothing but the call runs
    while its fault is armed; None for ops that are no single call (drain, lkdtm)."""
    name = op["op"]
    if name == "sendfile2":
        return libc_call(libc.syscall, NR_SENDFILE2, fds[op["out"]], fds[op["in"]], offset(op["offset"], keep),
                         u64(op["count"] % 2**64), u32(op["flags"] % 2**32))
    if name == "sendfile64":
        return libc_call(libc.sendfile, fds[op["out"]], fds[op["in"]], offset(op["offset"], keep),
                         u64(op["count"] % 2**64))
    if name == "splice":
        return libc_call(libc.splice, fds[op["in"]], offset(op["off_in"], keep), fds[op["out"]],
                         offset(op["off_out"], keep), u64(op["len"] % 2**64), u32(op["flags"] % 2**32))
    if name == "tee":
        return libc_call(libc.tee, fds[op["in"]], fds[op["out"]], u64(op["len"] % 2**64), u32(op["flags"] % 2**32))
    if name == "vmsplice":
        buf = ctypes.create_string_buffer(pattern(0, 0, op["len"]), op["len"])
        iov = (ctypes.c_void_p * 2)(ctypes.cast(buf, ctypes.c_void_p), op["len"])
        keep.append((buf, iov))
        return libc_call(libc.vmsplice, fds[op["fd"]], iov, 1, u32(op["flags"] % 2**32))
    if name in ("sendmsg", "write"):
        data, fd, obj = pattern(0, 0, op["len"]), fds[op["fd"]], objects.get(op["fd"])
        if name == "sendmsg":
            return os_call(lambda: obj.sendmsg([data], [], op["flags"]))
        return os_call(lambda: os.write(fd, data))
    if name == "peer_read":
        peer = peers[op["fd"]]
        return os_call(lambda: len(peer.recv(op["max"], socket.MSG_DONTWAIT)))
    if name == "peer_close":
        peer = peers[op["fd"]]
        return os_call(lambda: peer.close() or 0)
    if name == "setsockopt_zerocopy":
        value = ctypes.c_int(op["value"])
        keep.append(value)
        return libc_call(libc.setsockopt, fds[op["fd"]], socket.SOL_SOCKET, SO_ZEROCOPY, ctypes.byref(value), 4)
    if name == "close":
        return libc_call(libc.close, fds[op["fd"]])
    if name == "truncate":
        return os_call(lambda: os.ftruncate(fds[op["fd"]], op["length"]) or 0)
    if name in ("pwrite", "mmap_write"):
        return os_call(lambda: rewrite(fds[op["fd"]], op["offset"], op["len"], op["seed"] & 0xFF,
                                       name == "mmap_write"))
    if name in ("peer_hold", "peer_release"):
        return os_call(lambda: peer_addresses(name == "peer_release"))
    return None


def faulted(nth, call):
    """Make the call with the nth fault site of this thread armed to fail (fail-nth): (return
    value, errno, whether the fault was injected, or None where the kernel has no fail-nth).
    Close to the executor, not exact: the interpreter runs between arming and the call; the C
    reproducer runs nothing there."""
    try:
        fault = os.open("/proc/thread-self/fail-nth", os.O_RDWR)
    except FileNotFoundError:
        return (*call(), None)
    word = str(nth).encode()
    os.write(fault, word)
    ret, err = call()
    injected = os.pread(fault, 16, 0).startswith(b"0")
    os.write(fault, b"0")
    os.close(fault)
    return ret, err, injected


def run_op(i, op, state):
    label = f"ops[{{i}}] {{op['op']}}"
    if op["op"] == "drain":
        time.sleep(op.get("wait_ms", 0) / 1000)
        drain(state[1][op["fd"]], label)
        return
    call = prepare(op, *state)
    if call is None:
        return
    if "fail_nth" in op:
        ret, err, injected = faulted(op["fail_nth"], call)
    else:
        (ret, err), injected = call(), None
    say(f"{{label}} = {{ret}}" + (f" ({{errno.errorcode.get(err, err)}})" if ret < 0 else ""))
    if "fail_nth" in op:
        say(f"{{label}} fault " + {{None: "not armed: no /proc/thread-self/fail-nth", True: "injected",
                                     False: "not injected"}}[injected])


def run_thread(thread, cpus, start, state):
    """One thread's ops in program order, pinned to its own CPU when there are two; both threads
    start on the barrier. In a ctypes call the interpreter lets the other thread run."""
    if len(cpus) == 2:
        os.sched_setaffinity(0, {{cpus[thread]}})
    start.wait()
    for i, op in enumerate(PROGRAM["ops"]):
        if op.get("thread", 0) == thread:
            run_op(i, op, state)


def main():
    os.chdir(tempfile.mkdtemp(prefix="zcfuzz-repro-"))
    fds, peers, objects, keep = {{}}, {{}}, {{}}, []
    for f in PROGRAM["fds"]:
        if f["kind"] == "pipe":
            continue
        obj, peer = build(f)
        objects[f["name"]], peers[f["name"]] = obj, peer
        fds[f["name"]] = number(obj)
        if isinstance(obj, socket.socket):
            if f.get("zerocopy"):
                obj.setsockopt(socket.SOL_SOCKET, SO_ZEROCOPY, 1)
            if f.get("sndbuf"):
                obj.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, f["sndbuf"])
        if f.get("nonblock") and fds[f["name"]] >= 0:
            os.set_blocking(fds[f["name"]], False)
    for f in PROGRAM["fds"]:
        if f["kind"] == "pipe":
            fds[f["name"] + ".r"], fds[f["name"] + ".w"] = os.pipe()
            if f.get("nonblock"):
                os.set_blocking(fds[f["name"] + ".r"], False)
                os.set_blocking(fds[f["name"] + ".w"], False)
    state = (fds, objects, peers, keep)
    threaded = any(op.get("thread") for op in PROGRAM["ops"])
    cpus = sorted(os.sched_getaffinity(0))[:2] if threaded else []
    start = threading.Barrier(2 if threaded else 1)
    second = threading.Thread(target=run_thread, args=(1, cpus, start, state)) if threaded else None
    if second:
        second.start()
    run_thread(0, cpus, start, state)
    if second:
        second.join()
    time.sleep(0.2)
    for name, obj in objects.items():
        if isinstance(obj, socket.socket) and obj.fileno() >= 0:
            drain(obj, f"final {{name}}")


if __name__ == "__main__":
    main()
'''
