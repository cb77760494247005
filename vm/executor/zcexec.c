/*
 * zcexec: the zcfuzz executor. Reads programs in the line format of vm/PROGRAM.md ("Wire
 * format"), builds their fixtures, runs their operations under a per-operation timeout and
 * answers each request with one JSON line.
 *
 *   zcexec --stdio        serve stdin/stdout (the host target)
 *   zcexec --c-loop N     the plain C benchmark loop, then exit
 *   zcexec (as PID 1)     guest /init: set up the machine, serve the virtio-serial port "zcfuzz"
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/capability.h>
#include <linux/errqueue.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/sockios.h>
#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>

#define MAX_FIXTURES 64
#define MAX_OPS 4096
#define MAX_ARGS 6
#define MAX_OP_WORDS (MAX_ARGS + 4) /* op NAME ARG... fail_nth=N thread=T */
#define MAX_LINE (4 << 20)
#define PATTERN_BYTES (4 << 20)
#define READ_CHUNK 65536
#define CLOSED_FD_BASE 900
#define DUMMY_LOCAL "192.0.2.1"
#define DUMMY_REMOTE "192.0.2.2"
/* The NIC path (vm/PROGRAM.md, "The NIC path"): the MACs vm/qemu.py NIC_MACS gives the two
 * virtio-net NICs, whose frames QEMU hands to each other; link-local and ULA addresses only. */
#define NIC_LOCAL_MAC "52:54:00:5a:c0:01"
#define NIC_PEER_MAC "52:54:00:5a:c0:02"
#define NIC_LOCAL4 "169.254.90.1"
#define NIC_PEER4 "169.254.90.2"
#define NIC_MASK4 "255.255.0.0"
#define NIC_LOCAL6 "fd00:5a::1"
#define NIC_PEER6 "fd00:5a::2"
#define NIC_CHECK_MS 5000
/* How long the final read waits for what is in flight across the NIC at least: a datagram
 * waits for its peer's address to resolve, and after the peer was held back TCP resends only at
 * its backed-off retransmission timeout. It waits only while something is in flight. */
#define NIC_SETTLE_MS 5000
/* How long the final read waits for a datagram across the NIC whose outq stopped moving while
 * the peer's address is known: one in the device's queue completes in far less; one that stays
 * is corked and never moves. */
#define DATAGRAM_STALL_MS 250
#define LKDTM_DIRECT "/sys/kernel/debug/provoke-crash/DIRECT"
#define PORT_NAME "zcfuzz"
#define READY_LINE "zcfuzz-executor ready\n"

/* ---- small output buffer for the JSON reply ---------------------------------------------- */

struct out {
	char *buf;
	size_t len, cap;
};

static void out_reserve(struct out *o, size_t more)
{
	if (o->len + more + 1 <= o->cap)
		return;
	while (o->len + more + 1 > o->cap)
		o->cap = o->cap ? o->cap * 2 : 65536;
	o->buf = realloc(o->buf, o->cap);
	if (!o->buf)
		abort();
}

static void out_printf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_printf(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	out_reserve(o, n);
	va_start(ap, fmt);
	vsnprintf(o->buf + o->len, n + 1, fmt, ap);
	va_end(ap);
	o->len += n;
}

/* A JSON string of a message we composed (no quotes or control characters in it). */
static void out_error_reply(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_error_reply(struct out *o, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	for (char *c = msg; *c; c++)
		if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20)
			*c = '?';
	o->len = 0;
	out_printf(o, "{\"error\": \"%s\"}\n", msg);
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		buf += n;
		len -= n;
	}
	return 0;
}

/* Set a sysfs or debugfs knob; -1 where the kernel lacks it. */
static int write_small_file(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), ret;

	if (fd < 0)
		return -1;
	ret = write_all(fd, value, strlen(value));
	close(fd);
	return ret;
}

/* ---- the file pattern and the peer digest (vm/PROGRAM.md) -------------------------------- */

static unsigned char pattern_byte(uint64_t i, int seed)
{
	return (unsigned char)(((i ^ (i >> 8) ^ (i >> 16)) * 31 + seed) & 0xff);
}

/* CRC-32 (IEEE 802.3, reflected, as zlib's crc32): the host checks megabytes of expected
 * stream per program, and zlib does that at C speed where a Python FNV loop took seconds. */
static uint32_t crc32_table[256];

static void crc32_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = c & 1 ? 0xedb88320U ^ (c >> 1) : c >> 1;
		crc32_table[i] = c;
	}
}

static uint32_t crc32_update(uint32_t crc, const unsigned char *p, size_t n)
{
	crc = ~crc;
	for (size_t i = 0; i < n; i++)
		crc = crc32_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
	return ~crc;
}

/* ---- process-wide state ------------------------------------------------------------------ */

static unsigned char *pattern_buf;  /* PATTERN_BYTES of seed-0 pattern, then an unmapped page */
static unsigned char read_buf[READ_CHUNK];
static char *bad_ptr_unmapped, *bad_ptr_readonly, *bad_ptr_protnone;
static const char *workdir;
static __thread volatile sig_atomic_t alarm_fired;
static int listeners[2][2] = {{-1, -1}, {-1, -1}}; /* [nic][ipv6]: kept for the executor's life */
static int root_netns = -1, peer_netns = -1;      /* peer_netns: -1 without the NIC path */
static char nic_peer_name[IFNAMSIZ];               /* the peer's NIC, in peer_netns */
static int nic_held;                               /* peer_hold took the peer's addresses away */

static void on_alarm(int sig)
{
	(void)sig;
	alarm_fired = 1;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static __thread uint64_t timer_deadline_ns; /* when the armed timer fires, 0 while disarmed */
static __thread timer_t op_timer;
static __thread int op_timer_made;

/* Each thread that runs ops has a timer of its own whose SIGALRM goes to that thread: with two
 * threads, a process-wide ITIMER_REAL could interrupt the call of the wrong one. */
static void timer_make(void)
{
	struct sigevent sev = {.sigev_notify = SIGEV_THREAD_ID, .sigev_signo = SIGALRM};

	sev._sigev_un._tid = gettid();
	op_timer_made = timer_create(CLOCK_MONOTONIC, &sev, &op_timer) == 0;
}

static void timer_set(long timeout_ms, long interval_ms)
{
	struct itimerspec its = {
		.it_value = {timeout_ms / 1000, (timeout_ms % 1000) * 1000000},
		.it_interval = {0, interval_ms * 1000000},
	};

	if (!op_timer_made)
		timer_make();
	if (op_timer_made)
		timer_settime(op_timer, 0, &its, NULL);
}

/* Arm the per-op timer. It keeps firing every 10 ms after the deadline so a signal that lands
 * just before the call blocks does not leave it blocked forever. An op that starts with at least
 * 7/8 of the timeout still to run keeps the timer as it is (one syscall less per op: ops mostly
 * take microseconds), so it is disarmed once after the last op, not after each. */
static void timer_arm(long timeout_ms)
{
	uint64_t now = now_ns(), timeout_ns = (uint64_t)timeout_ms * 1000000ULL;

	if (!alarm_fired && timer_deadline_ns > now && timer_deadline_ns - now >= timeout_ns / 8 * 7)
		return;
	alarm_fired = 0;
	timer_deadline_ns = now + timeout_ns;
	timer_set(timeout_ms, 10);
}

static void timer_disarm(void)
{
	timer_deadline_ns = 0;
	timer_set(0, 0);
}

/* A thread that ends takes its timer with it: a timer left behind would signal a dead thread. */
static void timer_release(void)
{
	if (op_timer_made)
		timer_delete(op_timer);
	op_timer_made = 0;
}

/* ---- requests ---------------------------------------------------------------------------- */

enum arg_kind { ARG_INT, ARG_NULL, ARG_UNMAPPED, ARG_READONLY, ARG_PROTNONE, ARG_WORD };

struct arg {
	enum arg_kind kind;
	uint64_t value; /* ARG_INT: the 64 bits as given (negative numbers two's complement) */
	char word[48];  /* ARG_WORD */
};

enum fd_kind {
	K_FILE, K_FILE_RO, K_FILE_WO, K_FILE_APPEND, K_PIPE, K_TCP4, K_TCP6, K_UDP4, K_UDP6,
	K_TCP4_NIC, K_TCP6_NIC, K_UDP4_NIC, K_UDP6_NIC, K_UDP_DUMMY, K_UNIX_STREAM, K_UNIX_DGRAM, K_DIR, K_OPATH, K_EVENTFD, K_TIMERFD, K_MEMFD,
	K_PIDFD, K_EPOLL, K_DEVZERO, K_DEVNULL, K_CLOSED, K_INVALID, K_COUNT
};

/* Same names and order as vm.program.FD_KINDS. */
static const char *const kind_names[K_COUNT] = {
	"file", "file_ro", "file_wo", "file_append", "pipe", "tcp4", "tcp6", "udp4", "udp6",
	"tcp4_nic", "tcp6_nic", "udp4_nic", "udp6_nic", "udp_dummy", "unix_stream", "unix_dgram", "dir", "opath", "eventfd", "timerfd", "memfd",
	"pidfd", "epoll", "devzero", "devnull", "closed", "invalid",
};

static int kind_is_socket(enum fd_kind k)
{
	return k >= K_TCP4 && k <= K_UNIX_DGRAM;
}

static int kind_is_tcp(enum fd_kind k)
{
	return k == K_TCP4 || k == K_TCP6 || k == K_TCP4_NIC || k == K_TCP6_NIC;
}

/* The peer is across the NIC path, in the peer's network namespace. */
static int kind_is_nic(enum fd_kind k)
{
	return k >= K_TCP4_NIC && k <= K_UDP6_NIC;
}

struct fixture {
	char name[40];
	enum fd_kind kind;
	int nonblock, zerocopy, sndbuf, seed;
	uint64_t size;
	int fd[2];      /* what the program uses; pipe: read end, write end */
	int owned[2];   /* the executor must close fd[i] at teardown */
	int peer;       /* the receiving end the executor holds, -1 if none */
	int err;        /* errno that kept the fixture from being built, 0 if built */
	const char *err_step;
	uint64_t peer_bytes;
	uint32_t peer_crc;
	int reused;     /* the connection came from the pool */
	int spared;     /* the connection is a spare pair, made while the executor idled */
	int tainted;    /* an op may have left state a fresh connection lacks: never pool it */
	int drained;    /* the final drain saw nothing in flight, then read the peer dry */
	int final_outq; /* in the final read: its outq at the last pass, and when that changed */
	uint64_t final_moved_ns;
};

struct op;
typedef void (*op_fn)(struct op *op);

struct op_spec {
	const char *name;
	const char *args; /* one letter per field in vm.program.OPS order: f fd, o offset, i int, c crash */
	op_fn run;
	/* Whether its sockets may go back to the connection pool afterwards: only calls that cannot
	 * move the zerocopy counter or leave other state behind, with flags inside fresh_flags. */
	int keeps_fresh;
	int flags_arg; /* -1: no flags argument */
	uint64_t fresh_flags;
	int input_arg; /* the `in` field, the one place a kept file may appear; -1: none */
	int one_call;  /* one system call of the program's: it may carry fail_nth */
};

struct op {
	const struct op_spec *spec;
	struct arg arg[MAX_ARGS];
	unsigned int fail_nth; /* 0: no fault injected */
	int thread;
	size_t result_start, result_end; /* its result's text in its thread's buffer */
};

static struct program {
	long sendfile2_nr;
	long timeout_ms, settle_ms;
	uint64_t memlock;
	int cover; /* collect KCOV coverage (vm/PROGRAM.md, "Coverage") */
	uint64_t optmem_max; /* net.core.optmem_max while the program runs; 0: as booted */
	int nfix, nops;
	struct fixture fix[MAX_FIXTURES];
	struct op ops[MAX_OPS];
	struct out *out;
	uint64_t ops_epoch_ns; /* op start and end times are counted from here */
} prog;

/* Where the running thread writes its op results: ops of two threads finish in any order, and
 * the reply lists them in program order. */
static __thread struct out *op_out;

/* ---- the peers' namespaces --------------------------------------------------------------- */

static int bound_address(int fd, struct sockaddr_storage *ss, socklen_t *len)
{
	*len = sizeof(*ss);
	return getsockname(fd, (struct sockaddr *)ss, len);
}

/* Port 0 on the peer's address of `family`: loopback, or the peer's end of the NIC path;
 * returns the address length. */
static socklen_t peer_address(int family, int nic, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;

		in->sin_family = AF_INET;
		if (nic)
			inet_pton(AF_INET, NIC_PEER4, &in->sin_addr);
		else
			in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		return sizeof(*in);
	}
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

	in6->sin6_family = AF_INET6;
	if (nic)
		inet_pton(AF_INET6, NIC_PEER6, &in6->sin6_addr);
	else
		in6->sin6_addr = in6addr_loopback;
	return sizeof(*in6);
}

/* A socket in the peer's network namespace (nic), or in ours. Only this thread changes
 * namespace, and only for the call: a socket stays in the namespace it was made in. */
static int peer_socket(int nic, int family, int type)
{
	int fd, saved;

	if (!nic)
		return socket(family, type | SOCK_CLOEXEC, 0);
	if (peer_netns < 0) {
		errno = ENETUNREACH;
		return -1;
	}
	if (setns(peer_netns, CLONE_NEWNET) < 0)
		return -1;
	fd = socket(family, type | SOCK_CLOEXEC, 0);
	saved = errno;
	if (setns(root_netns, CLONE_NEWNET) < 0)
		abort(); /* sockets made from here on would be the peer's */
	errno = saved;
	return fd;
}

/* A listening socket on the peer's address, kept for the executor's lifetime: connecting to it
 * is what a tcp fixture costs, not socket+bind+listen every time. */
static int peer_listener(int family, int nic)
{
	int *slot = &listeners[nic][family == AF_INET6];
	struct sockaddr_storage ss;
	socklen_t len;
	int one = 1;

	if (*slot >= 0)
		return *slot;
	*slot = peer_socket(nic, family, SOCK_STREAM);
	if (*slot < 0)
		return -1;
	setsockopt(*slot, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	len = peer_address(family, nic, &ss);
	if (bind(*slot, (struct sockaddr *)&ss, len) < 0 || listen(*slot, 64) < 0) {
		int saved = errno;

		close(*slot);
		*slot = -1;
		errno = saved;
		return -1;
	}
	return *slot;
}

static int interface_up(int sock, const char *name, const char *address, const char *netmask)
{
	struct ifreq ifr = {0};
	struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;

	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
	if (address) {
		sin->sin_family = AF_INET;
		inet_pton(AF_INET, address, &sin->sin_addr);
		if (ioctl(sock, SIOCSIFADDR, &ifr) < 0)
			return -1;
		inet_pton(AF_INET, netmask, &sin->sin_addr);
		if (ioctl(sock, SIOCSIFNETMASK, &ifr) < 0)
			return -1;
	}
	if (ioctl(sock, SIOCGIFFLAGS, &ifr) < 0)
		return -1;
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	return ioctl(sock, SIOCSIFFLAGS, &ifr);
}

/* Send one rtnetlink request on `sock` and read its acknowledgement: 0, or -1 with errno. */
static int netlink_request(int sock, const void *req, size_t len)
{
	struct {
		struct nlmsghdr nh;
		struct nlmsgerr err;
	} ack;

	if (send(sock, req, len, 0) != (ssize_t)len || recv(sock, &ack, sizeof(ack), 0) <= 0)
		return -1;
	if (ack.nh.nlmsg_type != NLMSG_ERROR) {
		errno = EPROTO;
		return -1;
	}
	errno = -ack.err.error;
	return ack.err.error ? -1 : 0;
}

/* Add or remove the IPv6 address `address`/64 on interface `name`, through the rtnetlink socket
 * `sock` of the interface's namespace. Added with IFA_F_NODAD (`ip addr add ... nodad`): an
 * address added any other way is tentative until the DAD work has run, even with accept_dad 0,
 * and binding to it fails with EADDRNOTAVAIL until then, which a loaded guest makes long. */
static int address6(int sock, const char *name, const char *address, int add)
{
	struct {
		struct nlmsghdr nh;
		struct ifaddrmsg ifa;
		struct rtattr rta;
		struct in6_addr addr;
	} req = {
		.nh = {.nlmsg_len = sizeof(req), .nlmsg_type = add ? RTM_NEWADDR : RTM_DELADDR,
		       .nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | (add ? NLM_F_CREATE | NLM_F_REPLACE : 0)},
		.ifa = {.ifa_family = AF_INET6, .ifa_prefixlen = 64, .ifa_flags = add ? IFA_F_NODAD : 0},
		.rta = {.rta_len = RTA_LENGTH(sizeof(struct in6_addr)), .rta_type = IFA_ADDRESS},
	};
	struct ifreq ifr = {0};

	/* the index in the socket's namespace (if_nametoindex would look in the caller's) */
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
	if (ioctl(sock, SIOCGIFINDEX, &ifr) < 0)
		return -1;
	req.ifa.ifa_index = ifr.ifr_ifindex;
	inet_pton(AF_INET6, address, &req.addr);
	return netlink_request(sock, &req, sizeof(req));
}

/* ---- operations -------------------------------------------------------------------------- */

/* What an op found while running, written into its result after the common fields. */
struct op_result {
	long ret;
	int err;
	int timed_out;
	uint64_t start, ns;
	const char *skipped;
	int fixture_error;
	int fault_armed, fault_injected;
	const char *skipped_fault;
};

static struct fixture *fix_of(const struct arg *a)
{
	return &prog.fix[a->value / 2];
}

static int fd_of(const struct arg *a, struct op_result *r)
{
	struct fixture *f = fix_of(a);

	if (f->err) {
		r->fixture_error = 1;
		return -1;
	}
	return f->fd[a->value % 2];
}

static void fd_name(const struct arg *a, char *buf, size_t len)
{
	struct fixture *f = fix_of(a);

	if (f->kind == K_PIPE)
		snprintf(buf, len, "%s.%c", f->name, a->value % 2 ? 'w' : 'r');
	else
		snprintf(buf, len, "%s", f->name);
}

/* Offset argument: the pointer to pass and the loff_t it points to. */
static loff_t *offset_ptr(const struct arg *a, loff_t *slot)
{
	switch (a->kind) {
	case ARG_INT:
		*slot = (loff_t)a->value;
		return slot;
	case ARG_UNMAPPED:
		return (loff_t *)bad_ptr_unmapped;
	case ARG_READONLY:
		return (loff_t *)bad_ptr_readonly;
	case ARG_PROTNONE:
		return (loff_t *)bad_ptr_protnone;
	default:
		return NULL;
	}
}

static void out_offset(const char *key, const struct arg *a, loff_t before, loff_t after)
{
	if (a->kind == ARG_INT)
		out_printf(op_out, ", \"%s_before\": %lld, \"%s_after\": %lld", key, (long long)before,
			   key, (long long)after);
	else
		out_printf(op_out, ", \"%s_before\": null, \"%s_after\": null", key, key);
}

static void out_pos(const char *key, long long pos)
{
	if (pos < 0)
		out_printf(op_out, ", \"%s\": null", key);
	else
		out_printf(op_out, ", \"%s\": %lld", key, pos);
}

/* Whether lseek and fstat can say anything of the fixture behind an fd argument. Sockets and
 * pipes have no position (ESPIPE) and are no regular file, closed and invalid fds are not open:
 * under TCG every syscall counts, so those are answered without one. */
static int may_seek(const struct arg *a)
{
	enum fd_kind k = fix_of(a)->kind;

	return !kind_is_socket(k) && k != K_PIPE && k != K_CLOSED && k != K_INVALID;
}

static long long position(const struct arg *a, int fd)
{
	return fd < 0 || !may_seek(a) ? -1 : (long long)lseek(fd, 0, SEEK_CUR);
}

/* A regular file's size: where a sendfile from it reads end of file. */
static long long file_size(const struct arg *a, int fd)
{
	struct stat st;

	return fd < 0 || !may_seek(a) || fstat(fd, &st) || !S_ISREG(st.st_mode) ? -1 : (long long)st.st_size;
}

/* ---- fault injection (vm/PROGRAM.md, "Fault injection") --------------------------------- */

/* The running thread's /proc/thread-self/fail-nth, -1 where the kernel has none. */
static __thread int fail_nth_fd = -1;

static void fail_nth_open(void)
{
	fail_nth_fd = open("/proc/thread-self/fail-nth", O_RDWR | O_CLOEXEC);
}

/* Right before the call: make the n-th fault site this thread passes fail. */
static void fault_arm(const struct op *op, struct op_result *r)
{
	char word[16];
	int n;

	if (!op->fail_nth)
		return;
	if (fail_nth_fd < 0) {
		r->skipped_fault = "no fail-nth";
		return;
	}
	n = snprintf(word, sizeof(word), "%u", op->fail_nth);
	r->fault_armed = write(fail_nth_fd, word, n) == n;
	if (!r->fault_armed)
		r->skipped_fault = "fail-nth not written";
}

/* Right after it: 0 read back means the fault was injected; otherwise the count left over is
 * cleared, so no later call of the executor's meets it. */
static void fault_check(struct op_result *r)
{
	char word[16];

	if (!r->fault_armed)
		return;
	r->fault_injected = pread(fail_nth_fd, word, sizeof(word), 0) > 0 && word[0] == '0';
	if (!r->fault_injected)
		write(fail_nth_fd, "0", 1);
}

/* Run one syscall-like call under the timer and the op's fault; fills ret/errno/timing. */
#define TIMED_CALL(r, op, expr)                                                                   \
	do {                                                                                       \
		timer_arm(prog.timeout_ms);                                                        \
		fault_arm(op, r);                                                                  \
		(r)->start = now_ns();                                                             \
		errno = 0;                                                                         \
		(r)->ret = (long)(expr);                                                           \
		(r)->err = (r)->ret < 0 ? errno : 0;                                               \
		fault_check(r);                                                                    \
		(r)->ns = now_ns() - (r)->start;                                                   \
		(r)->timed_out = alarm_fired;                                                      \
	} while (0)

static void out_common(const struct op *op, const struct op_result *r)
{
	uint64_t start = (r->start ? r->start : now_ns()) - prog.ops_epoch_ns;

	out_printf(op_out, "{\"op\": \"%s\", \"ret\": %ld, \"errno\": %d, \"timed_out\": %s, \"ns\": %" PRIu64
		   ", \"thread\": %d, \"start_ns\": %" PRIu64 ", \"end_ns\": %" PRIu64,
		   op->spec->name, r->ret, r->err, r->timed_out ? "true" : "false", r->ns, op->thread, start,
		   start + r->ns);
	if (r->skipped)
		out_printf(op_out, ", \"skipped\": \"%s\"", r->skipped);
	if (r->fixture_error)
		out_printf(op_out, ", \"fixture_error\": true");
	if (op->fail_nth)
		out_printf(op_out, ", \"fault_injected\": %s", r->fault_injected ? "true" : "false");
	if (r->skipped_fault)
		out_printf(op_out, ", \"skipped_fault\": \"%s\"", r->skipped_fault);
}

static int skip_fixture_error(struct op_result *r)
{
	if (!r->fixture_error)
		return 0;
	r->ret = -1;
	r->err = EBADF;
	r->skipped = "fixture error";
	return 1;
}

/* sendfile2 and sendfile64: out, in, offset, count[, flags] */
static void run_sendfile(struct op *op, int is_sendfile2)
{
	struct op_result r = {0};
	int out_fd = fd_of(&op->arg[0], &r), in_fd = fd_of(&op->arg[1], &r);
	loff_t slot = 0, before;
	loff_t *off = offset_ptr(&op->arg[2], &slot);
	long long in_before = position(&op->arg[1], in_fd), out_before = position(&op->arg[0], out_fd);

	before = slot;
	if (skip_fixture_error(&r)) {
	} else if (is_sendfile2 && prog.sendfile2_nr < 0) {
		r.ret = -1;
		r.err = ENOSYS;
		r.skipped = "no syscall number";
	} else if (is_sendfile2) {
		TIMED_CALL(&r, op, syscall(prog.sendfile2_nr, out_fd, in_fd, off, (size_t)op->arg[3].value,
				       (unsigned int)op->arg[4].value));
	} else {
		TIMED_CALL(&r, op, syscall(SYS_sendfile, out_fd, in_fd, off, (size_t)op->arg[3].value));
	}
	out_common(op, &r);
	out_offset("offset", &op->arg[2], before, slot);
	out_pos("in_pos_before", in_before);
	out_pos("in_pos_after", position(&op->arg[1], in_fd));
	out_pos("out_pos_before", out_before);
	out_pos("out_pos_after", position(&op->arg[0], out_fd));
	out_pos("in_size_after", file_size(&op->arg[1], in_fd));
	out_printf(op_out, "}");
}

static void op_sendfile2(struct op *op)
{
	run_sendfile(op, 1);
}

static void op_sendfile64(struct op *op)
{
	run_sendfile(op, 0);
}

static void op_splice(struct op *op)
{
	struct op_result r = {0};
	int in_fd = fd_of(&op->arg[0], &r), out_fd = fd_of(&op->arg[2], &r);
	loff_t in_slot = 0, out_slot = 0, in_before, out_before;
	loff_t *off_in = offset_ptr(&op->arg[1], &in_slot), *off_out = offset_ptr(&op->arg[3], &out_slot);
	long long in_pos = position(&op->arg[0], in_fd), out_pos_ = position(&op->arg[2], out_fd);

	in_before = in_slot;
	out_before = out_slot;
	if (!skip_fixture_error(&r))
		TIMED_CALL(&r, op, syscall(SYS_splice, in_fd, off_in, out_fd, off_out,
				       (size_t)op->arg[4].value, (unsigned int)op->arg[5].value));
	out_common(op, &r);
	out_offset("off_in", &op->arg[1], in_before, in_slot);
	out_offset("off_out", &op->arg[3], out_before, out_slot);
	out_pos("in_pos_before", in_pos);
	out_pos("in_pos_after", position(&op->arg[0], in_fd));
	out_pos("out_pos_before", out_pos_);
	out_pos("out_pos_after", position(&op->arg[2], out_fd));
	out_printf(op_out, "}");
}

static void op_tee(struct op *op)
{
	struct op_result r = {0};
	int in_fd = fd_of(&op->arg[0], &r), out_fd = fd_of(&op->arg[1], &r);

	if (!skip_fixture_error(&r))
		TIMED_CALL(&r, op, syscall(SYS_tee, in_fd, out_fd, (size_t)op->arg[2].value,
				       (unsigned int)op->arg[3].value));
	out_common(op, &r);
	out_printf(op_out, "}");
}

static void op_vmsplice(struct op *op)
{
	struct op_result r = {0};
	int fd = fd_of(&op->arg[0], &r);
	struct iovec iov = {pattern_buf, (size_t)op->arg[1].value};

	if (!skip_fixture_error(&r))
		TIMED_CALL(&r, op, syscall(SYS_vmsplice, fd, &iov, 1UL, (unsigned int)op->arg[2].value));
	out_common(op, &r);
	out_printf(op_out, "}");
}

static void op_sendmsg(struct op *op)
{
	struct op_result r = {0};
	int fd = fd_of(&op->arg[0], &r);
	struct iovec iov = {pattern_buf, (size_t)op->arg[1].value};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	unsigned int flags = (unsigned int)op->arg[2].value;

	if (!skip_fixture_error(&r))
		TIMED_CALL(&r, op, sendmsg(fd, &msg, flags));
	out_common(op, &r);
	out_printf(op_out, "}");
}

static void op_write(struct op *op)
{
	struct op_result r = {0};
	int fd = fd_of(&op->arg[0], &r);

	if (!skip_fixture_error(&r))
		TIMED_CALL(&r, op, write(fd, pattern_buf, (size_t)op->arg[1].value));
	out_common(op, &r);
	out_printf(op_out, "}");
}

/* The fd the executor reads for a fixture's peer: the held socket, or a pipe's read end. */
static int peer_fd(struct fixture *f)
{
	if (f->kind == K_PIPE)
		return f->owned[0] ? f->fd[0] : -1;
	return f->peer;
}

/* Read the peer without blocking, up to max bytes; returns the bytes read. With `until_empty`
 * 0, a short read of a stream ends it: the queue was empty then, and the final drain reads
 * what came after (it reads until the peer says there is nothing). */
static uint64_t read_peer(struct fixture *f, uint64_t max, int until_empty)
{
	int stream = f->kind == K_PIPE || kind_is_tcp(f->kind) || f->kind == K_UNIX_STREAM;
	int fd = peer_fd(f);
	uint64_t total = 0;

	if (fd < 0)
		return 0;
	while (total < max) {
		size_t want = max - total < READ_CHUNK ? max - total : READ_CHUNK;
		struct pollfd pfd = {fd, POLLIN, 0};
		ssize_t n;

		if (f->kind == K_PIPE) {
			if (poll(&pfd, 1, 0) != 1 || !(pfd.revents & POLLIN))
				break;
			n = read(fd, read_buf, want);
		} else {
			n = recv(fd, read_buf, want, MSG_DONTWAIT);
		}
		if (n <= 0)
			break;
		f->peer_crc = crc32_update(f->peer_crc, read_buf, n);
		f->peer_bytes += n;
		total += n;
		if (!until_empty && stream && (size_t)n < want)
			break;
	}
	return total;
}

/* Both threads may read the same peer: the reads, the buffer and the digest they update go one
 * at a time, so the digest is of the bytes in the order they were read. */
static pthread_mutex_t peer_lock = PTHREAD_MUTEX_INITIALIZER;

static uint64_t read_peer_locked(struct fixture *f, uint64_t max)
{
	uint64_t total;

	pthread_mutex_lock(&peer_lock);
	total = read_peer(f, max, 0);
	pthread_mutex_unlock(&peer_lock);
	return total;
}

static void op_peer_read(struct op *op)
{
	struct op_result r = {0};
	struct fixture *f = fix_of(&op->arg[0]);

	fd_of(&op->arg[0], &r);
	if (skip_fixture_error(&r)) {
	} else if (peer_fd(f) < 0) {
		r.ret = -1;
		r.err = ENOTCONN;
		r.skipped = "no peer";
	} else {
		TIMED_CALL(&r, op, read_peer_locked(f, op->arg[1].value));
	}
	out_common(op, &r);
	out_printf(op_out, "}");
}

static void op_peer_close(struct op *op)
{
	struct op_result r = {0};
	struct fixture *f = fix_of(&op->arg[0]);

	fd_of(&op->arg[0], &r);
	if (skip_fixture_error(&r)) {
	} else if (f->kind == K_PIPE || f->peer < 0) {
		r.ret = -1;
		r.err = ENOTCONN;
		r.skipped = "no peer";
	} else {
		TIMED_CALL(&r, op, close(f->peer));
		f->peer = -1;
	}
	out_common(op, &r);
	out_printf(op_out, "}");
}

/* Bytes the socket sent and its peer has not acknowledged: 0 for what is no socket, -1 where
 * the kernel does not say. */
static int socket_outq(const struct fixture *f)
{
	int queued = 0;

	if (!kind_is_socket(f->kind) || f->err || !f->owned[0])
		return 0;
	if (ioctl(f->fd[0], SIOCOUTQ, &queued) < 0)
		return -1;
	return queued;
}

/* Read fd's error queue until it is empty, appending records to `o`; returns how many or -1. */
static long drain_errqueue(int fd, struct out *o)
{
	long count = 0;

	out_printf(o, "[");
	for (;;) {
		char control[256];
		char data[1];
		struct iovec iov = {data, sizeof(data)};
		struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
				     .msg_controllen = sizeof(control)};
		struct cmsghdr *cm;
		long before = count;

		if (recvmsg(fd, &msg, MSG_ERRQUEUE | MSG_DONTWAIT) < 0) {
			if (errno == EAGAIN || count)
				break;
			out_printf(o, "]");
			return -1;
		}
		for (cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
			struct sock_extended_err ee;

			if (!((cm->cmsg_level == SOL_IP && cm->cmsg_type == IP_RECVERR) ||
			      (cm->cmsg_level == SOL_IPV6 && cm->cmsg_type == IPV6_RECVERR)))
				continue;
			memcpy(&ee, CMSG_DATA(cm), sizeof(ee));
			out_printf(o, "%s{\"errno\": %u, \"origin\": %u, \"type\": %u, \"code\": %u, \"lo\": %u, \"hi\": %u}",
				   count ? ", " : "", ee.ee_errno, ee.ee_origin, ee.ee_type, ee.ee_code,
				   ee.ee_info, ee.ee_data);
			count++;
		}
		/* No error-queue record: a socket without one (AF_UNIX at EOF) answers 0 forever. */
		if (count == before)
			break;
	}
	out_printf(o, "]");
	return count;
}

/* The socket's memory counters (SO_MEMINFO), which say what of its sending is still under way. */
static int socket_meminfo(int fd, uint32_t mem[SK_MEMINFO_VARS])
{
	socklen_t len = SK_MEMINFO_VARS * sizeof(mem[0]);

	return getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mem, &len);
}

/* Nothing the socket sent can still complete: no bytes of it queued or unacknowledged
 * (SO_MEMINFO's WMEM_QUEUED), no buffer of it charged in a device's queue (WMEM_ALLOC) and no
 * completion pending (OPTMEM: a MSG_ZEROCOPY-style notification is an skb charged to option
 * memory from the call until it is read; a driver that orphans the skbs it holds gives back
 * WMEM_ALLOC before the pages). Not a socket: no record can ever come. */
static int sending_at_rest(int fd)
{
	uint32_t mem[SK_MEMINFO_VARS];

	if (socket_meminfo(fd, mem) < 0)
		return errno == ENOTSOCK;
	return mem[SK_MEMINFO_WMEM_ALLOC] == 0 && mem[SK_MEMINFO_WMEM_QUEUED] == 0 &&
	       mem[SK_MEMINFO_OPTMEM] == 0;
}

/* A notification may still be queued: option memory is charged (a pending completion, see
 * sending_at_rest) and no record is on the error queue yet. */
static int notification_pending(const struct fixture *f)
{
	uint32_t mem[SK_MEMINFO_VARS];
	struct pollfd pfd = {f->fd[0], 0, 0};

	if (!kind_is_socket(f->kind) || f->err || !f->owned[0] || socket_meminfo(f->fd[0], mem) < 0 ||
	    !mem[SK_MEMINFO_OPTMEM])
		return 0;
	return poll(&pfd, 1, 0) == 0;
}

#define DRAIN_SLICE_MS 2

static int has_second_thread(void)
{
	for (int i = 0; i < prog.nops; i++)
		if (prog.ops[i].thread)
			return 1;
	return 0;
}

/* A drain's wait: poll fd for POLLERR (a record on its error queue) up to wait_ms, in slices,
 * and no longer than something of the socket can still complete: at rest at two slices in a
 * row (the record is queued just after the memory is given back), it stops. A record still
 * late is read by the next drain or the final one, which the oracles count alike. While the
 * second thread may be sending it waits the whole time. */
static void wait_for_record(int fd, uint64_t wait_ms)
{
	uint64_t deadline = now_ns() + wait_ms * 1000000ULL;
	int at_rest = 0, threaded = has_second_thread();

	while (!alarm_fired) {
		uint64_t now = now_ns();
		struct pollfd pfd = {fd, 0, 0};
		uint64_t left_ms = now < deadline ? (deadline - now + 999999) / 1000000 : 0;

		if (!left_ms || poll(&pfd, 1, threaded || left_ms < DRAIN_SLICE_MS ? (int)left_ms : DRAIN_SLICE_MS))
			break;
		at_rest = !threaded && sending_at_rest(fd) ? at_rest + 1 : 0;
		if (at_rest == 2)
			break;
	}
}

static void op_drain(struct op *op)
{
	struct op_result r = {0};
	struct out records = {0};
	int fd = fd_of(&op->arg[0], &r);
	char name[48];

	fd_name(&op->arg[0], name, sizeof(name));
	if (skip_fixture_error(&r)) {
		out_printf(&records, "[]");
	} else {
		timer_arm(prog.timeout_ms);
		r.start = now_ns();
		if (op->arg[1].value)
			wait_for_record(fd, op->arg[1].value > INT32_MAX ? INT32_MAX : op->arg[1].value);
		r.timed_out = alarm_fired;
		errno = 0;
		r.ret = drain_errqueue(fd, &records);
		r.err = r.ret < 0 ? errno : 0;
		r.ns = now_ns() - r.start;
	}
	out_common(op, &r);
	/* After the records: bytes of the stream still unacknowledged, so a record that covers a
	 * call whose last byte is among them came early, and how many segments TCP resent (a resent
	 * skb completes as copied) (vm/PROGRAM.md, "drain"). */
	if (!r.fixture_error && kind_is_tcp(fix_of(&op->arg[0])->kind)) {
		struct tcp_info info = {0};
		socklen_t len = sizeof(info);

		out_printf(op_out, ", \"outq\": %d", socket_outq(fix_of(&op->arg[0])));
		if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) == 0)
			out_printf(op_out, ", \"retrans\": %u", info.tcpi_total_retrans);
	}
	out_printf(op_out, ", \"fd\": \"%s\", \"notifications\": %.*s}", name, (int)records.len,
		   records.buf);
	free(records.buf);
}

static void op_setsockopt_zerocopy(struct op *op)
{
	struct op_result r = {0};
	int fd = fd_of(&op->arg[0], &r);
	int value = (int)op->arg[1].value;

	if (!skip_fixture_error(&r))
		TIMED_CALL(&r, op, setsockopt(fd, SOL_SOCKET, SO_ZEROCOPY, &value, sizeof(value)));
	out_common(op, &r);
	out_printf(op_out, "}");
}

static void op_close(struct op *op)
{
	struct op_result r = {0};
	int fd = fd_of(&op->arg[0], &r);
	struct fixture *f = fix_of(&op->arg[0]);

	if (!skip_fixture_error(&r)) {
		TIMED_CALL(&r, op, close(fd));
		if (r.ret == 0 || r.err != EBADF)
			f->owned[op->arg[0].value % 2] = 0;
	}
	out_common(op, &r);
	out_printf(op_out, "}");
}

/* One datagram from our end to the peer's (in its namespace) within NIC_CHECK_MS: the path
 * carries frames both ways (ARP or neighbour discovery answers first). */
static int nic_frame_crosses(int family)
{
	struct sockaddr_storage ss;
	socklen_t len = peer_address(family, 1, &ss);
	int rx = peer_socket(1, family, SOCK_DGRAM), tx = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int ret = -1;

	if (rx >= 0 && tx >= 0 && bind(rx, (struct sockaddr *)&ss, len) == 0 &&
	    bound_address(rx, &ss, &len) == 0 && connect(tx, (struct sockaddr *)&ss, len) == 0) {
		for (int waited = 0; waited < NIC_CHECK_MS && ret < 0; waited += 100) {
			struct pollfd pfd = {rx, POLLIN, 0};

			send(tx, "zcfuzz", 6, 0);
			if (poll(&pfd, 1, 100) == 1 && recv(rx, read_buf, sizeof(read_buf), 0) == 6)
				ret = 0;
		}
	}
	if (rx >= 0)
		close(rx);
	if (tx >= 0)
		close(tx);
	return ret;
}

/* Hold the peer back, or let it go, by taking its addresses away or giving them back: frames
 * for it still arrive and are dropped, so nothing is delivered or acknowledged. Its link stays
 * up (taking a virtio-net link down trips lockdep in 6.12's virtnet_close, a WARNING of the
 * driver's own). */
static int nic_addresses(int present)
{
	struct ifreq ifr = {0};
	struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
	/* an rtnetlink socket: NETLINK_ROUTE is protocol 0 */
	int sock = peer_socket(1, AF_INET, SOCK_DGRAM), rtnl = peer_socket(1, AF_NETLINK, SOCK_RAW);
	int ret = sock < 0 || rtnl < 0 ? -1 : 0;

	if (!present)
		nic_held = 1; /* whatever a failing hold took away, the final read gives back */
	if (ret == 0 && present) {
		ret = interface_up(sock, nic_peer_name, NIC_PEER4, NIC_MASK4);
	} else if (ret == 0) {
		/* address 0.0.0.0 removes the interface's IPv4 address (inet_set_ifa) */
		snprintf(ifr.ifr_name, IFNAMSIZ, "%s", nic_peer_name);
		sin->sin_family = AF_INET;
		ret = ioctl(sock, SIOCSIFADDR, &ifr);
	}
	if (ret == 0)
		ret = address6(rtnl, nic_peer_name, NIC_PEER6, present);
	if (ret == 0 && present)
		nic_held = 0;
	if (sock >= 0)
		close(sock);
	if (rtnl >= 0)
		close(rtnl);
	return ret;
}

/* Let a held peer go: its addresses come back, datagrams cross each way again (so the
 * neighbour entries the hold left failed are fresh: a send queued behind a failed one would be
 * resent, which completes as copied) and a TCP peer acknowledges what it has at once
 * (TCP_QUICKACK), so the sender's retransmission is all that is waited for. */
static int nic_release(struct fixture *f)
{
	if (nic_addresses(1) < 0 || nic_frame_crosses(AF_INET) < 0 || nic_frame_crosses(AF_INET6) < 0)
		return -1;
	if (f && kind_is_tcp(f->kind) && f->peer >= 0)
		setsockopt(f->peer, IPPROTO_TCP, TCP_QUICKACK, &(int){1}, sizeof(int));
	return 0;
}

/* peer_hold and peer_release: only a peer across the NIC can be held back. */
static void run_peer_hold(struct op *op, int up)
{
	struct op_result r = {0};
	struct fixture *f = fix_of(&op->arg[0]);

	fd_of(&op->arg[0], &r);
	if (skip_fixture_error(&r)) {
	} else if (!kind_is_nic(f->kind)) {
		r.ret = -1;
		r.err = EOPNOTSUPP;
		r.skipped = "peer not across the NIC";
	} else {
		TIMED_CALL(&r, op, up ? nic_release(f) : nic_addresses(0));
	}
	out_common(op, &r);
	out_printf(op_out, "}");
}

static void op_peer_hold(struct op *op)
{
	run_peer_hold(op, 0);
}

static void op_peer_release(struct op *op)
{
	run_peer_hold(op, 1);
}

/* Bytes [offset, offset + len) of the pattern with `seed`, into buf (the file positions). */
static void fill_range(unsigned char *buf, uint64_t offset, size_t len, int seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = pattern_byte(offset + i, seed);
}

/* pwrite(2) of the pattern with `seed` over [offset, offset + len), in chunks; bytes written. */
static long pwrite_pattern(int fd, uint64_t offset, uint64_t len, int seed)
{
	unsigned char chunk[READ_CHUNK];
	uint64_t done = 0;

	while (done < len) {
		size_t n = len - done < sizeof(chunk) ? len - done : sizeof(chunk);
		ssize_t w;

		fill_range(chunk, offset + done, n, seed);
		w = pwrite(fd, chunk, n, offset + done);
		if (w < 0)
			return done ? (long)done : -1;
		done += w;
		if ((size_t)w < n)
			break;
	}
	return done;
}

/* pwrite and mmap_write: fd, offset, len, seed */
static void run_rewrite(struct op *op, long (*store)(int fd, uint64_t offset, uint64_t len, int seed))
{
	struct op_result r = {0};
	int fd = fd_of(&op->arg[0], &r);

	if (!skip_fixture_error(&r))
		TIMED_CALL(&r, op, store(fd, op->arg[1].value, op->arg[2].value, op->arg[3].value & 0xff));
	out_common(op, &r);
	out_printf(op_out, "}");
}

static void op_pwrite(struct op *op)
{
	run_rewrite(op, pwrite_pattern);
}

static void op_truncate(struct op *op)
{
	struct op_result r = {0};
	int fd = fd_of(&op->arg[0], &r);

	if (!skip_fixture_error(&r))
		TIMED_CALL(&r, op, ftruncate(fd, (off_t)op->arg[1].value));
	out_common(op, &r);
	out_printf(op_out, "}");
}

/* A store through a mapping meets SIGBUS where the file now ends below it: a truncate on the
 * second thread between mmap_store's size check and its store. The handler takes that thread
 * back to mmap_store; a SIGBUS anywhere else still ends the process, as a report of its own. */
static __thread sigjmp_buf *volatile store_jump; /* volatile: no code the compiler sees reads it */
static __thread volatile uintptr_t store_fault;

/* End the process by `sig` as if no handler were installed. Inside the handler the signal is
 * blocked: it is delivered, and fatal, once the handler returns. */
static void die_of(int sig)
{
	signal(sig, SIG_DFL);
	raise(sig);
}

static void on_bus_error(int sig, siginfo_t *info, void *context)
{
	(void)context;
	if (store_jump) {
		store_fault = (uintptr_t)info->si_addr;
		siglongjmp(*store_jump, 1);
	}
	die_of(sig);
}

/* fill_range through a mapping; 0, or -1 with the faulting address in store_fault. */
static int store_through(unsigned char *to, uint64_t offset, uint64_t len, int seed)
{
	sigjmp_buf jump;

	if (sigsetjmp(jump, 1)) {
		store_jump = NULL;
		return -1;
	}
	store_jump = &jump;
	fill_range(to, offset, len, seed);
	store_jump = NULL;
	return 0;
}

/* Store the pattern with `seed` through a shared writable mapping of the file: the page cache
 * pages themselves change, with no write(2). The range is cut at the end of the file (a store
 * past it would be SIGBUS), or where a truncate on the other thread moved that end meanwhile;
 * returns the bytes stored. */
static long mmap_store(int fd, uint64_t offset, uint64_t len, int seed)
{
	long page = sysconf(_SC_PAGESIZE);
	uint64_t start, end, mapped, fault_at;
	struct stat st;
	unsigned char *map;

	if (fstat(fd, &st) < 0)
		return -1;
	if (offset >= (uint64_t)st.st_size)
		return 0;
	end = len > (uint64_t)st.st_size - offset ? (uint64_t)st.st_size : offset + len;
	start = offset & ~(uint64_t)(page - 1);
	mapped = end - start;
	map = mmap(NULL, mapped, PROT_READ | PROT_WRITE, MAP_SHARED, fd, start);
	if (map == MAP_FAILED)
		return -1;
	if (store_through(map + (offset - start), offset, end - offset, seed) < 0) {
		fault_at = start + (store_fault - (uintptr_t)map);
		if (fstat(fd, &st) < 0 || fault_at < (uint64_t)st.st_size)
			die_of(SIGBUS); /* the page is inside the file: not the race */
		end = fault_at > offset ? fault_at : offset;
	}
	munmap(map, mapped);
	return end - offset;
}

static void op_mmap_write(struct op *op)
{
	run_rewrite(op, mmap_store);
}

static long lkdtm_write(const char *crash)
{
	int fd = open(LKDTM_DIRECT, O_WRONLY);
	long ret;

	if (fd < 0)
		return -1;
	ret = write(fd, crash, strlen(crash));
	if (ret < 0) {
		int saved = errno;

		close(fd);
		errno = saved;
		return -1;
	}
	close(fd);
	return ret;
}

static void op_lkdtm(struct op *op)
{
	struct op_result r = {0};

	TIMED_CALL(&r, op, lkdtm_write(op->arg[0].word));
	out_common(op, &r);
	out_printf(op_out, "}");
}

/* Same names and field order as vm.program.OPS. */
#define SPLICE_F_ALL_6_12 0xf
static const struct op_spec op_specs[] = {
	{"sendfile2", "ffoii", op_sendfile2, 0, -1, 0, 1, 1},
	{"sendfile64", "ffoi", op_sendfile64, 1, -1, 0, 1, 1},
	{"splice", "fofoii", op_splice, 1, 5, SPLICE_F_ALL_6_12, 0, 1},
	{"tee", "ffii", op_tee, 1, 3, SPLICE_F_ALL_6_12, 0, 1},
	{"vmsplice", "fii", op_vmsplice, 0, -1, 0, -1, 1},
	{"sendmsg", "fii", op_sendmsg, 1, 2, MSG_DONTWAIT | MSG_MORE | MSG_NOSIGNAL, -1, 1},
	{"write", "fi", op_write, 1, -1, 0, -1, 1},
	{"peer_read", "fi", op_peer_read, 1, -1, 0, -1, 0},
	{"peer_close", "f", op_peer_close, 0, -1, 0, -1, 1},
	{"drain", "fi", op_drain, 1, -1, 0, -1, 0},
	{"setsockopt_zerocopy", "fi", op_setsockopt_zerocopy, 0, -1, 0, -1, 1},
	{"close", "f", op_close, 0, -1, 0, -1, 1},
	{"lkdtm", "c", op_lkdtm, 1, -1, 0, -1, 0},
	{"peer_hold", "f", op_peer_hold, 0, -1, 0, -1, 0},
	{"peer_release", "f", op_peer_release, 0, -1, 0, -1, 0},
	{"pwrite", "fiii", op_pwrite, 0, -1, 0, -1, 0},
	{"truncate", "fi", op_truncate, 0, -1, 0, -1, 1},
	{"mmap_write", "fiii", op_mmap_write, 0, -1, 0, -1, 0},
};

static int op_keeps_fresh(const struct op *op)
{
	const struct op_spec *spec = op->spec;

	return spec->keeps_fresh && (spec->flags_arg < 0 || !(op->arg[spec->flags_arg].value & ~spec->fresh_flags));
}

/* ---- fixtures ---------------------------------------------------------------------------- */

static int fill_pattern(int fd, uint64_t size, int seed)
{
	unsigned char chunk[READ_CHUNK];
	uint64_t done = 0;

	while (done < size) {
		size_t n = size - done < sizeof(chunk) ? size - done : sizeof(chunk);

		for (size_t i = 0; i < n; i++)
			chunk[i] = pattern_byte(done + i, seed);
		if (pwrite(fd, chunk, n, done) != (ssize_t)n)
			return -1;
		done += n;
	}
	return 0;
}

#define STEP(f, what, expr)                                                                       \
	do {                                                                                       \
		if ((expr) < 0) {                                                                  \
			(f)->err = errno ? errno : EINVAL;                                         \
			(f)->err_step = (what);                                                    \
			return;                                                                    \
		}                                                                                  \
	} while (0)

static void socket_options(struct fixture *f, int fd)
{
	int one = 1;

	if (f->sndbuf)
		STEP(f, "SO_SNDBUF", setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &f->sndbuf, sizeof(f->sndbuf)));
	if (f->zerocopy) {
		STEP(f, "SO_ZEROCOPY", setsockopt(fd, SOL_SOCKET, SO_ZEROCOPY, &one, sizeof(one)));
	}
}

/* Fixtures kept from earlier programs: connected TCP pairs and pattern files. Connecting and
 * closing cost about four times the packets of a small send, and in a TCG guest packets are
 * what a program costs; creating and filling a file costs more than a small sendfile from it.
 * A fixture is kept only if no op could have changed it (see taint_fixtures), SO_ZEROCOPY was
 * never on (its id counter cannot be reset) and it is checked clean at teardown, so a program
 * cannot tell a kept fixture from a new one. A full pool gives up the fixture kept longest ago,
 * so the odd file sizes of a long campaign cannot crowd out the pairs every program wants. */
#define POOL_SIZE 16
static struct pooled {
	int used;
	enum fd_kind kind;
	int nonblock, sndbuf, seed;
	uint64_t size;
	int fd, peer;
	uint64_t kept_at;
} pool[POOL_SIZE];
static uint64_t pool_clock;

static int is_poolable_file(const struct fixture *f)
{
	return f->kind == K_FILE || f->kind == K_FILE_RO;
}

static int pool_matches(const struct pooled *p, const struct fixture *f)
{
	if (!p->used || p->kind != f->kind || p->nonblock != f->nonblock)
		return 0;
	return is_poolable_file(f) ? p->size == f->size && p->seed == f->seed : p->sndbuf == f->sndbuf;
}

static int pool_take(struct fixture *f)
{
	for (int i = 0; i < POOL_SIZE; i++) {
		struct pooled *p = &pool[i];

		if (pool_matches(p, f)) {
			p->used = 0;
			f->fd[0] = p->fd;
			f->owned[0] = 1;
			f->peer = p->peer;
			f->reused = 1;
			return 1;
		}
	}
	return 0;
}

/* As good as new: the final drain found nothing in flight and read the peer dry (no op makes
 * the peer send, so nothing waits on our side), no error is pending and it is still connected. */
static int pair_is_clean(const struct fixture *f)
{
	struct tcp_info info;
	socklen_t len = sizeof(info);
	int err = 0;
	socklen_t errlen = sizeof(err);

	if (!f->drained)
		return 0;
	if (getsockopt(f->fd[0], SOL_SOCKET, SO_ERROR, &err, &errlen) < 0 || err)
		return 0;
	return getsockopt(f->fd[0], IPPROTO_TCP, TCP_INFO, &info, &len) == 0 && info.tcpi_state == TCP_ESTABLISHED;
}

/* Keep the fixture for a later program if it is as good as new; 1 if kept. */
static int pool_give(struct fixture *f)
{
	struct pooled *slot = &pool[0];
	int keep;

	if (f->err || f->tainted || !f->owned[0])
		return 0;
	if (is_poolable_file(f))
		keep = lseek(f->fd[0], 0, SEEK_SET) == 0;
	else
		keep = kind_is_tcp(f->kind) && !f->zerocopy && f->peer >= 0 && pair_is_clean(f);
	if (!keep)
		return 0;
	for (int i = 0; i < POOL_SIZE && slot->used; i++)
		if (!pool[i].used || pool[i].kept_at < slot->kept_at)
			slot = &pool[i];
	if (slot->used) {
		close(slot->fd);
		if (slot->peer >= 0)
			close(slot->peer);
	}
	*slot = (struct pooled){1, f->kind, f->nonblock, f->sndbuf, f->seed, f->size, f->fd[0], f->peer,
				++pool_clock};
	return 1;
}

/* Spare pairs (vm/PROGRAM.md, "Spare pairs"): TCP pairs connected while the executor waits for
 * the next request, so a program that wants a new connection finds one made. A zerocopy socket
 * cannot be pooled (its id counter cannot be reset), so every zerocopy program, and its twin,
 * connects anew; a spare moves that connect out of the program's time when the guest would
 * otherwise idle. A spare is a new pair no program has touched: socket, SO_ZEROCOPY (when asked
 * for), connect, accept, as build_tcp does, nothing after. Spares are made only of the loopback
 * kinds programs asked for (one kind, zerocopy or not, per slot): a loopback connect completes
 * within the call, where one across the NIC could wait on a frame while a request waits on it.
 * None is made while a NIC peer is held, and spares are dropped when the accounting user
 * changes (they were made by the previous one). */
#define SPARE_KINDS 8
#define SPARES_IN_GUEST 2
static int spares_per_kind; /* the `spares N` request sets it; 0: none (on the host), SPARES_IN_GUEST as /init */
static int spare_user;          /* bumped when the accounting user changes */
static struct spare_kind {
	int used;
	enum fd_kind kind;
	int zerocopy;
	int count;
	int fd[4], peer[4], user[4];
} spare_kinds[SPARE_KINDS];

static struct spare_kind *spare_kind_of(enum fd_kind kind, int zerocopy, int create)
{
	for (int i = 0; i < SPARE_KINDS; i++)
		if (spare_kinds[i].used && spare_kinds[i].kind == kind && spare_kinds[i].zerocopy == zerocopy)
			return &spare_kinds[i];
	if (!create)
		return NULL;
	for (int i = 0; i < SPARE_KINDS; i++)
		if (!spare_kinds[i].used) {
			spare_kinds[i] = (struct spare_kind){.used = 1, .kind = kind, .zerocopy = zerocopy};
			return &spare_kinds[i];
		}
	return NULL;
}

static void spares_drop(struct spare_kind *k, int keep)
{
	while (k->count > keep) {
		k->count--;
		close(k->fd[k->count]);
		close(k->peer[k->count]);
	}
}

/* A spare for a fixture that wants a new TCP pair; 1 if it got one. Asking is what makes the
 * executor keep spares of the kind. */
static int spare_take(struct fixture *f)
{
	struct spare_kind *k;

	if (f->sndbuf || spares_per_kind <= 0 || (f->kind != K_TCP4 && f->kind != K_TCP6))
		return 0;
	k = spare_kind_of(f->kind, f->zerocopy, 1);
	while (k && k->count > 0) {
		k->count--;
		if (k->user[k->count] != spare_user) {
			close(k->fd[k->count]);
			close(k->peer[k->count]);
			continue;
		}
		f->fd[0] = k->fd[k->count];
		f->owned[0] = 1;
		f->peer = k->peer[k->count];
		f->spared = 1;
		return 1;
	}
	return 0;
}

static void connect_pair(struct fixture *f, int family, int nic);

/* Make one missing spare; 0 when none is missing (or one could not be made). */
static int spare_make(void)
{
	if (nic_held || spares_per_kind <= 0)
		return 0;
	for (int i = 0; i < SPARE_KINDS; i++) {
		struct spare_kind *k = &spare_kinds[i];
		struct fixture f = {.kind = k->kind, .zerocopy = k->zerocopy, .fd = {-1, -1}, .peer = -1};

		if (!k->used || k->count >= spares_per_kind || k->count >= 4)
			continue;
		connect_pair(&f, k->kind == K_TCP6 ? AF_INET6 : AF_INET, 0);
		if (f.err) {
			if (f.fd[0] >= 0)
				close(f.fd[0]);
			if (f.peer >= 0)
				close(f.peer);
			k->used = 0; /* not now, nor again until a program asks */
			spares_drop(k, 0);
			return 0;
		}
		k->fd[k->count] = f.fd[0];
		k->peer[k->count] = f.peer;
		k->user[k->count] = spare_user;
		k->count++;
		return 1;
	}
	return 0;
}

static void build_tcp(struct fixture *f, int family, int nic)
{
	if (!f->zerocopy && pool_take(f))
		return;
	if (spare_take(f))
		return;
	connect_pair(f, family, nic);
}

/* A new pair: socket, its options, connect to the peer's listener, accept. */
static void connect_pair(struct fixture *f, int family, int nic)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int listener = peer_listener(family, nic);

	STEP(f, nic ? "listen across the NIC" : "listen on loopback", listener);
	STEP(f, "socket", f->fd[0] = socket(family, SOCK_STREAM, 0));
	f->owned[0] = 1;
	socket_options(f, f->fd[0]);
	if (f->err)
		return;
	STEP(f, "getsockname", bound_address(listener, &ss, &len));
	STEP(f, "connect", connect(f->fd[0], (struct sockaddr *)&ss, len));
	STEP(f, "accept", f->peer = accept4(listener, NULL, NULL, SOCK_CLOEXEC));
}

static void build_udp(struct fixture *f, int family, int nic)
{
	struct sockaddr_storage ss;
	socklen_t len;

	len = peer_address(family, nic, &ss);
	STEP(f, "receiver socket", f->peer = peer_socket(nic, family, SOCK_DGRAM));
	STEP(f, "bind receiver", bind(f->peer, (struct sockaddr *)&ss, len));
	STEP(f, "getsockname", bound_address(f->peer, &ss, &len));
	STEP(f, "socket", f->fd[0] = socket(family, SOCK_DGRAM, 0));
	f->owned[0] = 1;
	socket_options(f, f->fd[0]);
	if (f->err)
		return;
	STEP(f, "connect", connect(f->fd[0], (struct sockaddr *)&ss, len));
}

static void build_udp_dummy(struct fixture *f)
{
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(9)};

	inet_pton(AF_INET, DUMMY_REMOTE, &to.sin_addr);
	STEP(f, "socket", f->fd[0] = socket(AF_INET, SOCK_DGRAM, 0));
	f->owned[0] = 1;
	STEP(f, "SO_BINDTODEVICE dummy0",
	     setsockopt(f->fd[0], SOL_SOCKET, SO_BINDTODEVICE, "dummy0", sizeof("dummy0")));
	socket_options(f, f->fd[0]);
	if (f->err)
		return;
	STEP(f, "connect through dummy0", connect(f->fd[0], (struct sockaddr *)&to, sizeof(to)));
}

static void build_unix(struct fixture *f, int type)
{
	int sv[2];

	STEP(f, "socketpair", socketpair(AF_UNIX, type, 0, sv));
	f->fd[0] = sv[0];
	f->owned[0] = 1;
	f->peer = sv[1];
	socket_options(f, f->fd[0]);
}

/* A new tmpfs file with the pattern, opened with open_flags and unlinked at once (the fd keeps
 * it), so teardown has no names to remove. */
static void build_file(struct fixture *f, int open_flags)
{
	static unsigned long files_made;
	char path[192];
	int fd;

	if ((f->kind == K_FILE || f->kind == K_FILE_RO) && pool_take(f))
		return;
	snprintf(path, sizeof(path), "%s/f%lu", workdir, files_made++);
	STEP(f, "create file", fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
	if (fill_pattern(fd, f->size, f->seed) < 0) {
		f->err = errno ? errno : EIO;
		f->err_step = "fill file";
	} else if (open_flags == O_RDWR) {
		f->fd[0] = fd;
		f->owned[0] = 1;
		fd = -1;
	} else if ((f->fd[0] = open(path, open_flags)) < 0) {
		f->err = errno;
		f->err_step = "open file";
	} else {
		f->owned[0] = 1;
	}
	if (fd >= 0)
		close(fd);
	unlink(path);
}

static void build_fixture(struct fixture *f, int index)
{
	int sv[2];

	f->fd[0] = f->fd[1] = -1;
	f->peer = -1;
	f->peer_crc = 0;
	switch (f->kind) {
	case K_FILE:
		build_file(f, O_RDWR);
		break;
	case K_FILE_RO:
		build_file(f, O_RDONLY);
		break;
	case K_FILE_WO:
		build_file(f, O_WRONLY);
		break;
	case K_FILE_APPEND:
		build_file(f, O_WRONLY | O_APPEND);
		break;
	case K_OPATH:
		build_file(f, O_PATH);
		break;
	case K_PIPE:
		STEP(f, "pipe", pipe(sv));
		f->fd[0] = sv[0];
		f->fd[1] = sv[1];
		f->owned[0] = f->owned[1] = 1;
		break;
	case K_TCP4:
	case K_TCP4_NIC:
		build_tcp(f, AF_INET, kind_is_nic(f->kind));
		break;
	case K_TCP6:
	case K_TCP6_NIC:
		build_tcp(f, AF_INET6, kind_is_nic(f->kind));
		break;
	case K_UDP4:
	case K_UDP4_NIC:
		build_udp(f, AF_INET, kind_is_nic(f->kind));
		break;
	case K_UDP6:
	case K_UDP6_NIC:
		build_udp(f, AF_INET6, kind_is_nic(f->kind));
		break;
	case K_UDP_DUMMY:
		build_udp_dummy(f);
		break;
	case K_UNIX_STREAM:
		build_unix(f, SOCK_STREAM);
		break;
	case K_UNIX_DGRAM:
		build_unix(f, SOCK_DGRAM);
		break;
	case K_DIR:
		STEP(f, "open dir", f->fd[0] = open(workdir, O_RDONLY | O_DIRECTORY));
		f->owned[0] = 1;
		break;
	case K_EVENTFD:
		STEP(f, "eventfd", f->fd[0] = eventfd(0, 0));
		f->owned[0] = 1;
		break;
	case K_TIMERFD:
		STEP(f, "timerfd_create", f->fd[0] = timerfd_create(CLOCK_MONOTONIC, 0));
		f->owned[0] = 1;
		break;
	case K_MEMFD:
		STEP(f, "memfd_create", f->fd[0] = memfd_create("zcfuzz", 0));
		f->owned[0] = 1;
		STEP(f, "fill memfd", fill_pattern(f->fd[0], f->size, f->seed));
		break;
	case K_PIDFD:
		STEP(f, "pidfd_open", f->fd[0] = syscall(SYS_pidfd_open, getpid(), 0));
		f->owned[0] = 1;
		break;
	case K_EPOLL:
		STEP(f, "epoll_create1", f->fd[0] = epoll_create1(0));
		f->owned[0] = 1;
		break;
	case K_DEVZERO:
		STEP(f, "open /dev/zero", f->fd[0] = open("/dev/zero", O_RDWR));
		f->owned[0] = 1;
		break;
	case K_DEVNULL:
		STEP(f, "open /dev/null", f->fd[0] = open("/dev/null", O_RDWR));
		f->owned[0] = 1;
		break;
	case K_CLOSED: {
		/* Far above the fds in use so nothing built later reuses the number. */
		int tmp;

		STEP(f, "open /dev/null", tmp = open("/dev/null", O_RDONLY));
		f->fd[0] = fcntl(tmp, F_DUPFD, CLOSED_FD_BASE + index);
		close(tmp);
		STEP(f, "F_DUPFD", f->fd[0]);
		close(f->fd[0]);
		break;
	}
	case K_INVALID:
	case K_COUNT:
		break;
	}
	if (!f->err && f->nonblock) {
		for (int end = 0; end < 2; end++)
			if (f->owned[end] && f->kind != K_OPATH)
				STEP(f, "O_NONBLOCK", fcntl(f->fd[end], F_SETFL,
							    fcntl(f->fd[end], F_GETFL) | O_NONBLOCK));
	}
}

static void teardown(void)
{
	for (int i = 0; i < prog.nfix; i++) {
		struct fixture *f = &prog.fix[i];

		if (pool_give(f))
			f->owned[0] = 0, f->peer = -1;
		for (int end = 0; end < 2; end++)
			if (f->owned[end])
				close(f->fd[end]);
		if (f->peer >= 0)
			close(f->peer);
	}
}

/* ---- running a program ------------------------------------------------------------------- */

/* Our side is resolving the NIC peer's address (a neighbour entry INCOMPLETE, either family):
 * a datagram to it waits in the entry's queue, then leaves or is dropped, and completes either
 * way. When it cannot tell, it says yes, so the final read waits as long as it may. */
static int nic_peer_resolving(void)
{
	struct {
		struct nlmsghdr nh;
		struct ndmsg nd;
	} req = {
		.nh = {.nlmsg_len = sizeof(req), .nlmsg_type = RTM_GETNEIGH, .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP},
		.nd = {.ndm_family = AF_UNSPEC},
	};
	unsigned char peer4[4], peer6[16];
	int sock = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE), resolving = 0, done = 0;

	inet_pton(AF_INET, NIC_PEER4, peer4);
	inet_pton(AF_INET6, NIC_PEER6, peer6);
	if (sock < 0 || send(sock, &req, sizeof(req), 0) != sizeof(req))
		done = resolving = 1;
	while (!done) {
		static char buf[16384] __attribute__((aligned(NLMSG_ALIGNTO)));
		int n = (int)recv(sock, buf, sizeof(buf), 0);
		struct nlmsghdr *nh = (struct nlmsghdr *)buf;

		if (n <= 0)
			done = resolving = 1;
		for (; !done && NLMSG_OK(nh, (unsigned int)n); nh = NLMSG_NEXT(nh, n)) {
			struct ndmsg *nd = NLMSG_DATA(nh);
			struct rtattr *rta = (struct rtattr *)((char *)nd + NLMSG_ALIGN(sizeof(*nd)));
			int len = (int)nh->nlmsg_len - NLMSG_LENGTH(sizeof(*nd));

			if (nh->nlmsg_type == NLMSG_ERROR)
				resolving = 1;
			if (nh->nlmsg_type != RTM_NEWNEIGH) {
				done = 1;
				break;
			}
			for (; RTA_OK(rta, len); rta = RTA_NEXT(rta, len)) {
				size_t size = RTA_PAYLOAD(rta);

				if (rta->rta_type == NDA_DST && (nd->ndm_state & NUD_INCOMPLETE) &&
				    ((size == 4 && !memcmp(RTA_DATA(rta), peer4, 4)) ||
				     (size == 16 && !memcmp(RTA_DATA(rta), peer6, 16))))
					resolving = 1;
			}
		}
	}
	if (sock >= 0)
		close(sock);
	return resolving;
}

/* The socket's unsent or unacknowledged bytes can still move on their own, so the final read
 * waits for them. A TCP connection that was reset never sends again (its outq stays). A
 * datagram across the NIC is waited for while the peer's address resolves and while its outq
 * moves; one that stays past that is corked (kept for more that never comes). `resolving` is
 * the pass's answer of nic_peer_resolving, -1 until a socket of the pass needed it. */
static int can_still_move(const struct fixture *f, uint64_t now, int *resolving)
{
	if (kind_is_tcp(f->kind)) {
		struct tcp_info info = {0};
		socklen_t len = sizeof(info);

		return getsockopt(f->fd[0], IPPROTO_TCP, TCP_INFO, &info, &len) < 0 || info.tcpi_state != TCP_CLOSE;
	}
	if (f->kind == K_UDP4_NIC || f->kind == K_UDP6_NIC) {
		if (now - f->final_moved_ns < DATAGRAM_STALL_MS * 1000000ULL)
			return 1;
		if (*resolving < 0)
			*resolving = nic_peer_resolving();
		return *resolving;
	}
	return 1;
}

/* Read every peer dry, waiting for sockets to have nothing in flight that can still move (so
 * the peers got everything) and no notification pending, up to settle_ms (at least
 * NIC_SETTLE_MS for a socket across the NIC), then drain error queues. */
static void run_final(void)
{
	uint64_t start = now_ns();
	int first;

	if (nic_held)
		nic_release(NULL); /* a peer still held gets everything in the final read */

	for (int pass = 0;; pass++) {
		uint64_t now = now_ns();
		int busy = 0, resolving = -1;

		/* Nothing in flight before the read means the read gets everything that was sent. */
		for (int i = 0; i < prog.nfix; i++) {
			struct fixture *f = &prog.fix[i];
			int queued = socket_outq(f);
			long settle_ms = prog.settle_ms;

			if (kind_is_nic(f->kind) && settle_ms < NIC_SETTLE_MS)
				settle_ms = NIC_SETTLE_MS;
			if (!pass || queued != f->final_outq)
				f->final_outq = queued, f->final_moved_ns = now;
			f->drained = queued == 0;
			busy |= queued > 0 && now - start < (uint64_t)settle_ms * 1000000ULL &&
				can_still_move(f, now, &resolving);
			/* A notification still to come once nothing is in flight (a device freeing
			 * the last skb late) gets the program's own settle: a kernel that leaks its
			 * completion (D7) would otherwise cost every program the NIC's. */
			busy |= now - start < (uint64_t)prog.settle_ms * 1000000ULL && notification_pending(f);
			read_peer(f, UINT64_MAX, 1);
			/* A TCP peer that read everything may still hold its ACK back (delayed ACK);
			 * TCP_QUICKACK sends it now, so the sender frees its data (and completes
			 * zerocopy sends) without the wait. */
			if (queued > 0 && kind_is_tcp(f->kind) && f->peer >= 0)
				setsockopt(f->peer, IPPROTO_TCP, TCP_QUICKACK, &(int){1}, sizeof(int));
		}
		if (!busy)
			break;
		if (pass)
			usleep(1000);
	}
	out_printf(prog.out, "], \"final\": {\"peers\": {");
	first = 1;
	for (int i = 0; i < prog.nfix; i++) {
		struct fixture *f = &prog.fix[i];

		if (f->err || !(f->kind == K_PIPE || (kind_is_socket(f->kind) && f->kind != K_UDP_DUMMY)))
			continue;
		out_printf(prog.out, "%s\"%s\": {\"bytes\": %" PRIu64 ", \"digest\": \"%08" PRIx32 "\"}",
			   first ? "" : ", ", f->name, f->peer_bytes, f->peer_crc);
		first = 0;
	}
	out_printf(prog.out, "}, \"notifications\": {");
	first = 1;
	for (int i = 0; i < prog.nfix; i++) {
		struct fixture *f = &prog.fix[i];

		if (!kind_is_socket(f->kind) || f->err || !f->owned[0])
			continue;
		out_printf(prog.out, "%s\"%s\": ", first ? "" : ", ", f->name);
		drain_errqueue(f->fd[0], prog.out); /* a list either way, empty where recvmsg failed */
		first = 0;
	}
	out_printf(prog.out, "}}");
}

/* Only the soft limit counts for locked-page accounting. The hard limit is never lowered, so
 * a later program can ask for more; it is raised when needed and possible (CAP_SYS_RESOURCE),
 * otherwise the program gets the hard limit. */
/* Mark the fixtures an op may change: sockets under an op that does not keep them fresh, files
 * anywhere but as the input of a call that only reads them. */
static void taint_fixtures(void)
{
	for (int i = 0; i < prog.nops; i++) {
		const struct op *op = &prog.ops[i];

		for (int a = 0; op->spec->args[a]; a++) {
			struct fixture *f;

			if (op->spec->args[a] != 'f')
				continue;
			f = fix_of(&op->arg[a]);
			if (is_poolable_file(f) ? a != op->spec->input_arg : !op_keeps_fresh(op))
				f->tainted = 1;
		}
	}
}

static void set_memlock(uint64_t bytes)
{
	static uint64_t current = UINT64_MAX - 1; /* no program asked for this yet */
	struct rlimit rl;

	if (bytes == current || getrlimit(RLIMIT_MEMLOCK, &rl) < 0)
		return;
	current = bytes;
	if (bytes > rl.rlim_max) {
		struct rlimit raised = {bytes, bytes};

		if (setrlimit(RLIMIT_MEMLOCK, &raised) == 0)
			return;
		bytes = rl.rlim_max;
	}
	rl.rlim_cur = bytes;
	setrlimit(RLIMIT_MEMLOCK, &rl);
}

/* Option memory bounds what a socket may hold in ancillary allocations, zerocopy notifications
 * among them (sock_omalloc): a small net.core.optmem_max lets a program exhaust it with a few
 * pending notifications, to reach ENOBUFS. Restored to the booted value when the program ends. */
static void set_optmem_max(uint64_t bytes)
{
	static char booted[32];
	static uint64_t current;
	char value[32];
	int fd;

	if (bytes == current)
		return;
	fd = open("/proc/sys/net/core/optmem_max", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return;
	if (!booted[0] && read(fd, booted, sizeof(booted) - 1) <= 0)
		booted[0] = 0;
	if (bytes)
		snprintf(value, sizeof(value), "%llu\n", (unsigned long long)bytes);
	else
		snprintf(value, sizeof(value), "%s", booted);
	if (value[0] && pwrite(fd, value, strlen(value), 0) > 0)
		current = bytes;
	close(fd);
}

/* Pinned pages are charged to the calling user's locked_vm, one count per uid. A kernel that
 * leaks the charge (the RFC's lost zerocopy completions, which WARN) would make every later
 * program see a fuller RLIMIT_MEMLOCK than a fresh boot does; so, where the executor may, the
 * program after one that WARNed runs with a real uid never used before (the effective uid stays
 * root and keeps every capability but IPC_LOCK). Changing credentials costs, so only then. */
static int accounting_dirty;

static void fresh_accounting_user(void)
{
	static uid_t next = 100000;

	if (!accounting_dirty || geteuid() != 0)
		return;
	accounting_dirty = 0;
	spare_user++;
	if (setresuid(next, 0, 0) == 0)
		next = next < 1000000000 ? next + 1 : 100000;
}

/* ---- coverage (vm/PROGRAM.md, "Coverage") ------------------------------------------------ */

#define KCOV_INIT_TRACE_ _IOR('c', 1, unsigned long)
#define KCOV_ENABLE_ _IO('c', 100)
#define KCOV_DISABLE_ _IO('c', 101)
#define KCOV_TRACE_PC_ 0
#define KCOV_PATH "/sys/kernel/debug/kcov"
#define KCOV_WORDS (1 << 16)  /* PCs one op may record; area[0] is the count */
#define COVER_SLOTS (1 << 16) /* the program's distinct PCs, open addressing */

/* One KCOV instance per program thread, opened on the first program that asks for coverage and
 * kept: a kcov fd is enabled by one task at a time, so thread 1 (a new thread per program) can
 * enable the one it used last time once that thread disabled it. */
static struct kcov {
	int fd; /* -1: not opened yet; -2: the kernel has no KCOV */
	unsigned long *area;
	const char *why; /* why there is no coverage */
} kcovs[2] = {{-1, NULL, NULL}, {-1, NULL, NULL}};
static uint64_t cover_set[COVER_SLOTS];
static int cover_count, cover_overflow;
static pthread_mutex_t cover_lock = PTHREAD_MUTEX_INITIALIZER;

static struct kcov *kcov_get(int thread)
{
	struct kcov *k = &kcovs[thread];

	if (k->fd == -1) {
		k->fd = open(KCOV_PATH, O_RDWR | O_CLOEXEC);
		if (k->fd < 0) {
			k->fd = -2;
			k->why = "no " KCOV_PATH;
			return k;
		}
		if (ioctl(k->fd, KCOV_INIT_TRACE_, KCOV_WORDS) < 0 ||
		    (k->area = mmap(NULL, KCOV_WORDS * sizeof(unsigned long), PROT_READ | PROT_WRITE, MAP_SHARED,
				    k->fd, 0)) == MAP_FAILED) {
			close(k->fd);
			k->fd = -2;
			k->area = NULL;
			k->why = "KCOV_INIT_TRACE or mmap failed";
		}
	}
	return k;
}

static void cover_add(uint64_t pc)
{
	uint64_t h = (pc * 0x9E3779B97F4A7C15ULL) >> 48;

	for (int probe = 0; probe < COVER_SLOTS; probe++, h = (h + 1) & (COVER_SLOTS - 1)) {
		if (cover_set[h] == pc)
			return;
		if (!cover_set[h]) {
			if (cover_count >= COVER_SLOTS / 2) {
				cover_overflow = 1;
				return;
			}
			cover_set[h] = pc;
			cover_count++;
			return;
		}
	}
}

/* KCOV on for the calling thread (a program with `cover` only); what it returns goes to
 * cover_stop. */
static struct kcov *cover_start(int thread)
{
	struct kcov *k;

	if (!prog.cover)
		return NULL;
	k = kcov_get(thread);
	if (k->fd < 0 || ioctl(k->fd, KCOV_ENABLE_, KCOV_TRACE_PC_) < 0)
		return NULL;
	__atomic_store_n(&k->area[0], 0, __ATOMIC_RELAXED);
	return k;
}

/* KCOV off; the PCs it recorded join the program's set. */
static void cover_stop(struct kcov *k)
{
	unsigned long n;

	if (!k)
		return;
	n = __atomic_load_n(&k->area[0], __ATOMIC_RELAXED);
	ioctl(k->fd, KCOV_DISABLE_, 0);
	if (n >= KCOV_WORDS - 1) {
		n = KCOV_WORDS - 1;
		cover_overflow = 1;
	}
	pthread_mutex_lock(&cover_lock);
	for (unsigned long i = 0; i < n; i++)
		cover_add(k->area[i + 1]);
	pthread_mutex_unlock(&cover_lock);
}

static void cover_reset(void)
{
	if (cover_count)
		memset(cover_set, 0, sizeof(cover_set));
	cover_count = cover_overflow = 0;
}

/* "cover": the distinct PCs as hex strings, in no particular order. */
static void out_cover(struct out *o)
{
	int first = 1;

	if (!prog.cover)
		return;
	if (kcovs[0].fd == -2) {
		out_printf(o, ", \"cover\": [], \"cover_error\": \"%s\"", kcovs[0].why);
		return;
	}
	out_printf(o, ", \"cover\": [");
	for (int i = 0; i < COVER_SLOTS; i++) {
		if (!cover_set[i])
			continue;
		out_printf(o, "%s\"0x%" PRIx64 "\"", first ? "" : ", ", cover_set[i]);
		first = 0;
	}
	out_printf(o, "]");
	if (cover_overflow)
		out_printf(o, ", \"cover_overflow\": true");
}

/* ---- concurrent calls (vm/PROGRAM.md, "Concurrent calls") ------------------------------- */

static int thread_cpu[2] = {-1, -1}; /* the CPU each thread runs its ops on; -1: not pinned */
static cpu_set_t executor_cpus;       /* where thread 0 runs outside the ops of a threaded program */
static int threads_at_start;
static struct out thread_results[2];  /* each thread's op results, kept from program to program */

/* The first two CPUs the executor may use: one per thread, so their calls truly overlap. */
static void find_thread_cpus(void)
{
	int found = 0;

	if (sched_getaffinity(0, sizeof(executor_cpus), &executor_cpus) < 0)
		return;
	for (int cpu = 0; cpu < CPU_SETSIZE && found < 2; cpu++)
		if (CPU_ISSET(cpu, &executor_cpus))
			thread_cpu[found++] = cpu;
	if (found < 2)
		thread_cpu[0] = -1;
}

static void pin_thread(int thread)
{
	cpu_set_t one;

	if (thread_cpu[thread] < 0)
		return;
	CPU_ZERO(&one);
	CPU_SET(thread_cpu[thread], &one);
	sched_setaffinity(0, sizeof(one), &one);
}

/* Run the thread's own ops in program order, each result into the thread's buffer. */
static void run_thread_ops(int thread)
{
	op_out = &thread_results[thread];
	op_out->len = 0;
	for (int i = 0; i < prog.nops; i++) {
		struct op *op = &prog.ops[i];

		if (op->thread != thread)
			continue;
		struct kcov *k;

		op->result_start = op_out->len;
		k = cover_start(thread);
		op->spec->run(op);
		cover_stop(k);
		op->result_end = op_out->len;
	}
	timer_disarm();
}

/* Both threads spin until the other is there, so their first calls start within nanoseconds of
 * each other: a thread put to sleep and woken on an idle vCPU starts milliseconds late under TCG.
 * Sharing one CPU, each yields to the other. */
static void start_together(void)
{
	__atomic_add_fetch(&threads_at_start, 1, __ATOMIC_ACQ_REL);
	while (__atomic_load_n(&threads_at_start, __ATOMIC_ACQUIRE) < 2)
		if (thread_cpu[0] < 0)
			sched_yield();
}

/* What the thread needs (its CPU, fail-nth, timer) is set up before the start, not after. */
static void *second_thread(void *unused)
{
	(void)unused;
	pin_thread(1);
	fail_nth_open();
	timer_make();
	start_together();
	run_thread_ops(1);
	timer_release();
	if (fail_nth_fd >= 0)
		close(fail_nth_fd);
	return NULL;
}

/* Thread 1's ops run in a second thread started for the program; both threads start their ops
 * together. -1 with errno set when the thread could not start. */
static int run_ops(void)
{
	pthread_t second;
	int err;

	prog.ops_epoch_ns = now_ns();
	if (!has_second_thread()) {
		run_thread_ops(0);
		return 0;
	}
	threads_at_start = 0;
	err = pthread_create(&second, NULL, second_thread, NULL);
	if (err) {
		errno = err;
		return -1;
	}
	pin_thread(0);
	if (!op_timer_made)
		timer_make();
	start_together();
	run_thread_ops(0);
	pthread_join(second, NULL);
	if (thread_cpu[0] >= 0)
		sched_setaffinity(0, sizeof(executor_cpus), &executor_cpus);
	return 0;
}

/* The results of both threads in program order. */
static void out_op_results(struct out *o)
{
	for (int i = 0; i < prog.nops; i++) {
		const struct op *op = &prog.ops[i];

		out_printf(o, "%s%.*s", i ? ", " : "", (int)(op->result_end - op->result_start),
			   thread_results[op->thread].buf + op->result_start);
	}
}

/* The names of the fixtures whose int flag at `flag` (an offsetof) is set, as JSON strings. */
static void out_fixture_names(struct out *o, size_t flag)
{
	int first = 1;

	for (int i = 0; i < prog.nfix; i++) {
		if (*(const int *)((const char *)&prog.fix[i] + flag)) {
			out_printf(o, "%s\"%s\"", first ? "" : ", ", prog.fix[i].name);
			first = 0;
		}
	}
}

/* Where a program's time in the executor went, so that `zcfuzz bench` can say what costs
 * besides the calls: building fixtures, the ops, the final drain, teardown. */
static void run_program(struct out *o)
{
	uint64_t t_start = now_ns(), t_built, t_ran, t_final;
	int first = 1;

	struct kcov *k;

	prog.out = o;
	o->len = 0;
	cover_reset();
	fresh_accounting_user();
	set_memlock(prog.memlock);
	set_optmem_max(prog.optmem_max);
	for (int i = 0; i < prog.nfix; i++)
		build_fixture(&prog.fix[i], i);
	t_built = now_ns();
	out_printf(o, "{\"fixture_errors\": [");
	for (int i = 0; i < prog.nfix; i++) {
		struct fixture *f = &prog.fix[i];

		if (!f->err)
			continue;
		out_printf(o, "%s{\"name\": \"%s\", \"errno\": %d, \"reason\": \"%s: %s\"}", first ? "" : ", ",
			   f->name, f->err, f->err_step, strerror(f->err));
		first = 0;
	}
	out_printf(o, "], \"reused\": [");
	out_fixture_names(o, offsetof(struct fixture, reused));
	out_printf(o, "], \"spared\": [");
	out_fixture_names(o, offsetof(struct fixture, spared));
	taint_fixtures();
	if (run_ops() < 0) {
		int err = errno;

		teardown();
		set_optmem_max(0);
		out_error_reply(o, "cannot start the second thread: %s", strerror(err));
		return;
	}
	out_printf(o, "], \"ops\": [");
	out_op_results(o);
	t_ran = now_ns();
	k = cover_start(0); /* completions that run as the final read, drain and close free the skbs */
	run_final();
	t_final = now_ns();
	teardown();
	set_optmem_max(0); /* nothing between programs runs with a program's option memory */
	cover_stop(k);
	out_cover(o);
	if (has_second_thread())
		out_printf(o, ", \"thread_cpus\": [%d, %d]", thread_cpu[0], thread_cpu[1]);
	out_printf(o, ", \"phases_ns\": {\"build\": %" PRIu64 ", \"ops\": %" PRIu64 ", \"final\": %" PRIu64
		   ", \"teardown\": %" PRIu64 "}}\n", t_built - t_start, t_ran - t_built, t_final - t_ran,
		   now_ns() - t_final);
}

/* ---- parsing a request ------------------------------------------------------------------- */

static int parse_int(const char *word, uint64_t *value)
{
	char *end;

	errno = 0;
	if (word[0] == '-')
		*value = (uint64_t)strtoll(word, &end, 10);
	else
		*value = strtoull(word, &end, 10);
	return (errno || end == word || *end) ? -1 : 0;
}

static int valid_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n >= sizeof(((struct fixture *)0)->name))
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!(s[i] == '_' || s[i] == '-' || (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9')))
			return 0;
	return 1;
}

/* Split `s` into at most `max` words in place; returns the count, or max+1 if there were more. */
static int split_words(char *s, char **words, int max)
{
	int n = 0;

	for (char *tok = strtok(s, " \t"); tok; tok = strtok(NULL, " \t")) {
		if (n == max)
			return max + 1;
		words[n++] = tok;
	}
	return n;
}

#define BAD(...)                                                                                  \
	do {                                                                                       \
		out_error_reply(o, __VA_ARGS__);                                                   \
		return -1;                                                                         \
	} while (0)

static int parse_fixture(char **w, int n, struct out *o)
{
	struct fixture *f;
	uint64_t v[5];
	int k;

	if (n != 8)
		BAD("fixture record needs 7 fields, got %d", n - 1);
	if (prog.nfix == MAX_FIXTURES)
		BAD("more than %d fixtures", MAX_FIXTURES);
	f = &prog.fix[prog.nfix];
	memset(f, 0, sizeof(*f));
	if (!valid_name(w[1]))
		BAD("bad fixture name %.40s", w[1]);
	for (k = 0; k < K_COUNT && strcmp(kind_names[k], w[2]); k++)
		;
	if (k == K_COUNT)
		BAD("unknown fixture kind %.40s", w[2]);
	for (int i = 0; i < 5; i++)
		if (parse_int(w[3 + i], &v[i]) < 0)
			BAD("fixture %s: bad number %.40s", w[1], w[3 + i]);
	if (v[0] > 1 || v[1] > 1 || v[2] > INT32_MAX || v[3] > (64 << 20) || v[4] > 255)
		BAD("fixture %s: option out of range", w[1]);
	snprintf(f->name, sizeof(f->name), "%s", w[1]);
	f->kind = k;
	f->nonblock = v[0];
	f->zerocopy = v[1];
	f->sndbuf = v[2];
	f->size = v[3];
	f->seed = v[4];
	prog.nfix++;
	return 0;
}

/* `fail_nth=N` and `thread=T` after an op's arguments (vm/PROGRAM.md, "Wire format"). */
static int parse_op_option(struct op *op, const char *word)
{
	uint64_t v;

	if (!strncmp(word, "fail_nth=", 9) && parse_int(word + 9, &v) == 0 && v >= 1 && v <= INT32_MAX &&
	    op->spec->one_call)
		op->fail_nth = v;
	else if (!strncmp(word, "thread=", 7) && parse_int(word + 7, &v) == 0 && v <= 1)
		op->thread = v;
	else
		return -1;
	return 0;
}

static int parse_op(char **w, int n, struct out *o)
{
	const struct op_spec *spec = NULL;
	struct op *op;
	int nargs;

	if (prog.nops == MAX_OPS)
		BAD("more than %d ops", MAX_OPS);
	for (size_t i = 0; i < sizeof(op_specs) / sizeof(op_specs[0]); i++)
		if (!strcmp(op_specs[i].name, w[1]))
			spec = &op_specs[i];
	if (!spec)
		BAD("unknown op %.40s", w[1]);
	op = &prog.ops[prog.nops];
	memset(op, 0, sizeof(*op));
	op->spec = spec;
	for (; n > 2 && strchr(w[n - 1], '='); n--)
		if (parse_op_option(op, w[n - 1]) < 0)
			BAD("op %d %s: bad option %.40s (fail_nth=N on a one-call op, thread=0 or 1)", prog.nops,
			    spec->name, w[n - 1]);
	nargs = strlen(spec->args);
	if (n - 2 != nargs)
		BAD("op %s needs %d arguments, got %d", spec->name, nargs, n - 2);
	for (int i = 0; i < nargs; i++) {
		struct arg *a = &op->arg[i];
		const char *word = w[2 + i];

		a->kind = ARG_INT;
		switch (spec->args[i]) {
		case 'f':
			if (parse_int(word, &a->value) < 0 || a->value >= 2 * (uint64_t)prog.nfix ||
			    (a->value % 2 && prog.fix[a->value / 2].kind != K_PIPE))
				BAD("op %d %s: bad fd reference %.40s", prog.nops, spec->name, word);
			break;
		case 'o':
			if (!strcmp(word, "null"))
				a->kind = ARG_NULL;
			else if (!strcmp(word, "unmapped"))
				a->kind = ARG_UNMAPPED;
			else if (!strcmp(word, "readonly"))
				a->kind = ARG_READONLY;
			else if (!strcmp(word, "protnone"))
				a->kind = ARG_PROTNONE;
			else if (parse_int(word, &a->value) < 0)
				BAD("op %d %s: bad offset %.40s", prog.nops, spec->name, word);
			break;
		case 'i':
			if (parse_int(word, &a->value) < 0)
				BAD("op %d %s: bad integer %.40s", prog.nops, spec->name, word);
			break;
		case 'c':
			if (strlen(word) >= sizeof(a->word))
				BAD("op %d %s: crash type too long", prog.nops, spec->name);
			a->kind = ARG_WORD;
			strcpy(a->word, word);
			break;
		}
	}
	prog.nops++;
	return 0;
}

static int parse_program(char *line, struct out *o)
{
	char *records[MAX_FIXTURES + MAX_OPS + 1];
	char *w[MAX_OP_WORDS + 1];
	int nrec = 0, n;
	uint64_t v[4];

	for (char *save = NULL, *rec = strtok_r(line, ";", &save); rec; rec = strtok_r(NULL, ";", &save)) {
		if (nrec == (int)(sizeof(records) / sizeof(records[0])))
			BAD("too many records");
		records[nrec++] = rec;
	}
	n = split_words(records[0], w, 7);
	if (n < 5 || n > 7)
		BAD("program record needs 4 fields and optional cover=1, optmem_max=N");
	prog.cover = 0;
	prog.optmem_max = 0;
	for (int i = 5; i < n; i++) {
		if (!strcmp(w[i], "cover=1"))
			prog.cover = 1;
		else if (strncmp(w[i], "optmem_max=", 11) || parse_int(w[i] + 11, &prog.optmem_max) < 0)
			BAD("program: unknown option %.40s", w[i]);
	}
	for (int i = 0; i < 4; i++)
		if (parse_int(w[1 + i], &v[i]) < 0)
			BAD("program: bad number %.40s", w[1 + i]);
	prog.sendfile2_nr = (long)(int64_t)v[0];
	prog.timeout_ms = v[1] < 1 ? 1 : v[1] > 600000 ? 600000 : (long)v[1];
	prog.settle_ms = v[2] > 60000 ? 60000 : (long)v[2];
	prog.memlock = v[3];
	prog.nfix = prog.nops = 0;
	for (int r = 1; r < nrec; r++) {
		n = split_words(records[r], w, MAX_OP_WORDS);
		if (n == 0)
			BAD("empty record %d", r);
		if (!strcmp(w[0], "fd") && prog.nops == 0) {
			if (parse_fixture(w, n, o) < 0)
				return -1;
		} else if (!strcmp(w[0], "op") && n >= 2 && n <= MAX_OP_WORDS) {
			if (parse_op(w, n, o) < 0)
				return -1;
		} else {
			BAD("record %d: expected 'fd ...' before 'op ...', got %.40s", r, w[0]);
		}
	}
	return 0;
}

/* ---- the C benchmark loops --------------------------------------------------------------- */

/* Each workload does what one representative program of `zcfuzz bench` does, as plain C on one
 * connection set up once: the rate a program could reach if the executor cost nothing. */
#define C_LOOP_BYTES 512

struct c_loop_env {
	int file, client, peer, pipe[2];
	long sendfile2_nr;
	unsigned int sendfile2_flags;
	struct out scratch; /* drained notifications, formatted as a drain op formats them */
};

static int peer_read_exact(int peer, size_t want)
{
	char buf[4 * C_LOOP_BYTES];

	while (want) {
		ssize_t n = read(peer, buf, want < sizeof(buf) ? want : sizeof(buf));

		if (n <= 0)
			return -1;
		want -= n;
	}
	return 0;
}

static int drain_scratch(struct c_loop_env *e)
{
	e->scratch.len = 0;
	return drain_errqueue(e->client, &e->scratch) < 0 ? -1 : 0;
}

static int sendfile_step(struct c_loop_env *e)
{
	off_t off = 0;

	if (sendfile(e->client, e->file, &off, C_LOOP_BYTES) != C_LOOP_BYTES)
		return -1;
	return peer_read_exact(e->peer, C_LOOP_BYTES);
}

static int sendfile2_zc_step(struct c_loop_env *e)
{
	loff_t off = 0;

	if (syscall(e->sendfile2_nr, e->client, e->file, &off, (size_t)C_LOOP_BYTES, e->sendfile2_flags) !=
	    C_LOOP_BYTES)
		return -1;
	return peer_read_exact(e->peer, C_LOOP_BYTES) < 0 ? -1 : drain_scratch(e);
}

static int splice_step(struct c_loop_env *e)
{
	if (write(e->pipe[1], pattern_buf, C_LOOP_BYTES) != C_LOOP_BYTES ||
	    splice(e->pipe[0], NULL, e->client, NULL, C_LOOP_BYTES, 0) != C_LOOP_BYTES)
		return -1;
	return peer_read_exact(e->peer, C_LOOP_BYTES);
}

/* sendfile64, write to a pipe, splice it to the socket, sendmsg, one peer read, drain. */
static int mixed_step(struct c_loop_env *e)
{
	off_t off = 0;

	if (sendfile(e->client, e->file, &off, C_LOOP_BYTES) != C_LOOP_BYTES ||
	    write(e->pipe[1], pattern_buf, C_LOOP_BYTES) != C_LOOP_BYTES ||
	    splice(e->pipe[0], NULL, e->client, NULL, C_LOOP_BYTES, 0) != C_LOOP_BYTES ||
	    send(e->client, pattern_buf, C_LOOP_BYTES, 0) != C_LOOP_BYTES)
		return -1;
	return peer_read_exact(e->peer, 3 * C_LOOP_BYTES) < 0 ? -1 : drain_scratch(e);
}

static const struct c_workload {
	const char *name;
	int (*step)(struct c_loop_env *e);
	int zerocopy; /* SO_ZEROCOPY on the client; the request names sendfile2's number and flags */
} c_workloads[] = {
	{"sendfile", sendfile_step, 0},
	{"sendfile2-zc", sendfile2_zc_step, 1},
	{"splice", splice_step, 0},
	{"mixed", mixed_step, 0},
};

static int c_loop_setup(struct c_loop_env *e, const struct c_workload *w)
{
	char path[160];
	struct sockaddr_storage ss;
	socklen_t len;
	int one = 1, listener = peer_listener(AF_INET, 0);

	snprintf(path, sizeof(path), "%s/c-loop", workdir);
	e->file = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (e->file >= 0)
		unlink(path);
	if (e->file < 0 || fill_pattern(e->file, C_LOOP_BYTES, 0) < 0 || listener < 0 ||
	    pipe2(e->pipe, O_CLOEXEC) < 0)
		return -1;
	e->client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (e->client < 0 || (w->zerocopy && setsockopt(e->client, SOL_SOCKET, SO_ZEROCOPY, &one, sizeof(one)) < 0) ||
	    bound_address(listener, &ss, &len) < 0 || connect(e->client, (struct sockaddr *)&ss, len) < 0)
		return -1;
	e->peer = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
	return e->peer < 0 ? -1 : 0;
}

static void c_loop_teardown(struct c_loop_env *e)
{
	int fds[] = {e->file, e->client, e->peer, e->pipe[0], e->pipe[1]};

	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		if (fds[i] >= 0)
			close(fds[i]);
	free(e->scratch.buf);
}

static void c_loop(long iterations, const struct c_workload *w, long sendfile2_nr, unsigned int flags,
		   struct out *o)
{
	struct c_loop_env e = {.file = -1, .client = -1, .peer = -1, .pipe = {-1, -1},
			       .sendfile2_nr = sendfile2_nr, .sendfile2_flags = flags};
	uint64_t t0, ns;
	long done = 0;

	if (c_loop_setup(&e, w) < 0) {
		out_error_reply(o, "c-loop %s setup: %s", w->name, strerror(errno));
		c_loop_teardown(&e);
		return;
	}
	t0 = now_ns();
	while (done < iterations && w->step(&e) == 0)
		done++;
	ns = now_ns() - t0;
	if (done < iterations)
		out_error_reply(o, "c-loop %s: iteration %ld failed: %s", w->name, done, strerror(errno));
	c_loop_teardown(&e);
	if (done < iterations)
		return;
	o->len = 0;
	out_printf(o, "{\"c_loop\": {\"workload\": \"%s\", \"iterations\": %ld, \"seconds\": %.6f, \"per_sec\": %.1f}}\n",
		   w->name, iterations, ns / 1e9, ns ? iterations / (ns / 1e9) : 0.0);
}

/* `c-loop N [WORKLOAD [SENDFILE2_NR FLAGS]]`: N iterations of a workload (default sendfile). */
static void c_loop_request(char **w, int n, struct out *o)
{
	const struct c_workload *workload = &c_workloads[0];
	uint64_t iterations, nr = 0, flags = 0;

	if (parse_int(w[1], &iterations) < 0 || iterations == 0 || iterations > 100000000) {
		out_error_reply(o, "c-loop: N must be 1 to 100000000");
		return;
	}
	if (n > 2) {
		workload = NULL;
		for (size_t i = 0; i < sizeof(c_workloads) / sizeof(c_workloads[0]); i++)
			if (!strcmp(c_workloads[i].name, w[2]))
				workload = &c_workloads[i];
	}
	if (!workload) {
		out_error_reply(o, "c-loop: unknown workload %.40s (sendfile, sendfile2-zc, splice, mixed)", w[2]);
		return;
	}
	if (workload->step == sendfile2_zc_step &&
	    (n != 5 || parse_int(w[3], &nr) < 0 || nr > 4095 || parse_int(w[4], &flags) < 0 || flags > UINT32_MAX)) {
		out_error_reply(o, "c-loop sendfile2-zc needs SENDFILE2_NR FLAGS");
		return;
	}
	if (workload->step != sendfile2_zc_step && n > 3) {
		out_error_reply(o, "c-loop %s takes no arguments", workload->name);
		return;
	}
	c_loop((long)iterations, workload, (long)nr, (unsigned int)flags, o);
}

/* ---- serving ----------------------------------------------------------------------------- */

struct line_reader {
	int fd;
	char *buf;
	size_t len, cap;
	int oversized; /* the line being read went past MAX_LINE: reply with an error, skip it */
};

/* Next line without its newline, NUL-terminated; NULL at end of input. */
static char *read_line(struct line_reader *lr, size_t *consumed, int retry_eof)
{
	for (;;) {
		char *nl = memchr(lr->buf, '\n', lr->len);
		ssize_t n;

		if (nl) {
			*nl = '\0';
			*consumed = nl - lr->buf + 1;
			return lr->buf;
		}
		if (lr->len + 1 >= MAX_LINE) {
			lr->oversized = 1;
			lr->len = 0;
		}
		if (lr->cap - lr->len < 65536) {
			lr->cap = lr->cap ? lr->cap * 2 : 1 << 20;
			lr->buf = realloc(lr->buf, lr->cap);
			if (!lr->buf)
				abort();
		}
		n = read(lr->fd, lr->buf + lr->len, lr->cap - lr->len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0 && retry_eof) {
			/* A virtio-serial port reads EOF while the host end is not connected. */
			usleep(50000);
			continue;
		}
		if (n <= 0)
			return NULL;
		lr->len += n;
	}
}

static volatile int *in_flight; /* shared with the supervisor: 1 while a request runs */

static void handle_request(char *line, struct out *o)
{
	char *w[6];
	int n;

	if (!strncmp(line, "program ", 8)) {
		if (parse_program(line, o) == 0)
			run_program(o);
		return;
	}
	n = split_words(line, w, 5);
	if (n >= 2 && n <= 5 && !strcmp(w[0], "c-loop")) {
		c_loop_request(w, n, o);
		return;
	}
	if (!strcmp(line, "ping")) {
		o->len = 0;
		out_printf(o, "{\"pong\": true}\n");
		return;
	}
	if (n == 2 && !strcmp(w[0], "spares")) {
		uint64_t count;

		if (parse_int(w[1], &count) < 0 || count > 4) {
			out_error_reply(o, "spares N: N from 0 to 4");
			return;
		}
		spares_per_kind = (int)count;
		for (int i = 0; i < SPARE_KINDS; i++)
			spares_drop(&spare_kinds[i], spares_per_kind);
		o->len = 0;
		out_printf(o, "{\"spares\": %d}\n", spares_per_kind);
		return;
	}
	out_error_reply(o, "unknown request: expected 'program ...', 'c-loop N [WORKLOAD]', 'spares N' or 'ping'");
}

/* The kernel's count of WARNINGs printed since boot, or -1 where sysfs does not say. The file
 * stays open: one pread per look, since every syscall counts under TCG. */
static long warn_count(void)
{
	static int fd = -2;
	char buf[32];
	ssize_t n;

	if (fd == -2)
		fd = open("/sys/kernel/warn_count", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	return strtol(buf, NULL, 10);
}

/* A guest survives WARNINGs (panic_on_warn=0) so that a known one does not cost a reboot per
 * program: say in the reply how many the request printed, and re-arm every WARN_ONCE so the
 * next program that hits the same one prints it again. */
static void note_warnings(long before, struct out *o)
{
	long after = warn_count();

	if (before < 0 || after <= before || o->len < 2 || o->buf[o->len - 2] != '}')
		return;
	accounting_dirty = 1;
	o->len -= 2;
	out_printf(o, ", \"warnings\": %ld}\n", after - before);
	write_small_file("/sys/kernel/debug/clear_warn_once", "1");
}

/* Whether the host has sent more than the reader holds: a request is waiting. */
static int input_waiting(int fd)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};

	return poll(&pfd, 1, 0) != 0;
}

static void serve(int in_fd, int out_fd, int retry_eof)
{
	struct line_reader lr = {.fd = in_fd};
	struct out o = {0};
	size_t consumed;
	char *line;
	long counted = -1; /* the WARNING count taken before the spares made since the last request */

	fail_nth_open(); /* here, in the thread that serves: the file is the opener's */
	while ((line = read_line(&lr, &consumed, retry_eof))) {
		if (lr.oversized) {
			out_error_reply(&o, "request longer than %d bytes", MAX_LINE);
			lr.oversized = 0;
		} else {
			/* A WARNING printed while spares were made counts for the next program, as it
			 * would have if the program had connected them itself. */
			long warnings = in_flight && !strncmp(line, "program ", 8) ? counted >= 0 ? counted : warn_count() : -1;

			if (in_flight)
				*in_flight = 1;
			handle_request(line, &o);
			if (in_flight)
				*in_flight = 0;
			note_warnings(warnings, &o);
		}
		memmove(lr.buf, lr.buf + consumed, lr.len - consumed);
		lr.len -= consumed;
		if (write_all(out_fd, o.buf, o.len) < 0)
			break;
		/* Idle until the next request: make the spares programs will want meanwhile. */
		counted = -1;
		if (lr.len == 0 && spares_per_kind > 0 && !input_waiting(in_fd)) {
			counted = in_flight ? warn_count() : -1;
			while (spare_make() && !input_waiting(in_fd))
				;
		}
	}
}

/* ---- process setup ----------------------------------------------------------------------- */

/* Zerocopy sends charge pinned pages to RLIMIT_MEMLOCK unless the caller has CAP_IPC_LOCK:
 * drop it everywhere so the calls see the limit as an ordinary user does. */
static void drop_ipc_lock(void)
{
	struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct data[2];
	unsigned int bit = CAP_TO_MASK(CAP_IPC_LOCK);
	int word = CAP_TO_INDEX(CAP_IPC_LOCK);

	prctl(PR_CAPBSET_DROP, CAP_IPC_LOCK, 0, 0, 0);
	prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_LOWER, CAP_IPC_LOCK, 0, 0);
	if (syscall(SYS_capget, &hdr, data) < 0)
		return;
	data[word].effective &= ~bit;
	data[word].permitted &= ~bit;
	data[word].inheritable &= ~bit;
	syscall(SYS_capset, &hdr, data);
}

/* The pattern buffer with an unmapped page after it, and the pages bad offsets point into. */
static int map_buffers(void)
{
	long page = sysconf(_SC_PAGESIZE);
	char *p = mmap(NULL, PATTERN_BYTES + 4 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return -1;
	pattern_buf = (unsigned char *)p;
	for (size_t i = 0; i < PATTERN_BYTES; i++)
		pattern_buf[i] = pattern_byte(i, 0);
	/* Below mmap_min_addr nothing can ever be mapped: a hole left by munmap would be
	 * refilled by the next one-page mapping. */
	bad_ptr_unmapped = (char *)page;
	bad_ptr_readonly = p + PATTERN_BYTES + page;
	bad_ptr_protnone = p + PATTERN_BYTES + 2 * page;
	munmap(p + PATTERN_BYTES, page);
	mprotect(bad_ptr_readonly, page, PROT_READ);
	mprotect(bad_ptr_protnone, page, PROT_NONE);
	return 0;
}

static void install_signals(void)
{
	struct sigaction sa = {0};

	sa.sa_handler = on_alarm; /* no SA_RESTART: a blocked call returns EINTR */
	sigaction(SIGALRM, &sa, NULL);
	sa.sa_sigaction = on_bus_error;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGBUS, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

static int setup_process(void)
{
	drop_ipc_lock();
	install_signals();
	crc32_init();
	find_thread_cpus();
	return map_buffers();
}

/* ---- guest /init ------------------------------------------------------------------------- */

static int console_fd = 2;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg) - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(msg) - 2)
		n = sizeof(msg) - 2;
	msg[n++] = '\n';
	write_all(console_fd, msg, n);
}

/* PID 1 must never exit (the kernel would panic with "Attempted to kill init", which would
 * look like a crash of the kernel under test): say why and power off. */
static void __attribute__((noreturn)) die_as_init(const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	say("zcfuzz-executor fatal: %s", msg);
	sync();
	reboot(RB_POWER_OFF);
	for (;;)
		pause();
}

static void mount_one(const char *source, const char *target, const char *type)
{
	mkdir(target, 0755);
	if (mount(source, target, type, 0, NULL) < 0 && errno != EBUSY)
		say("zcfuzz-executor: mount %s on %s: %s", type, target, strerror(errno));
}

/* The name of the interface with this MAC, into name; -1 if there is none. */
static int interface_by_mac(int sock, const char *mac, char *name)
{
	struct if_nameindex *all = if_nameindex(), *i;
	int found = -1;

	for (i = all; i && i->if_index; i++) {
		struct ifreq ifr = {0};
		unsigned char *a = (unsigned char *)ifr.ifr_hwaddr.sa_data;
		char text[18];

		snprintf(ifr.ifr_name, IFNAMSIZ, "%s", i->if_name);
		if (ioctl(sock, SIOCGIFHWADDR, &ifr) < 0)
			continue;
		snprintf(text, sizeof(text), "%02x:%02x:%02x:%02x:%02x:%02x", a[0], a[1], a[2], a[3], a[4], a[5]);
		if (!strcmp(text, mac)) {
			snprintf(name, IFNAMSIZ, "%s", i->if_name);
			found = 0;
			break;
		}
	}
	if (all)
		if_freenameindex(all);
	return found;
}

/* Move interface `name` into the network namespace of `netns_fd` (RTM_NEWLINK, IFLA_NET_NS_FD). */
static int move_to_netns(const char *name, int netns_fd)
{
	struct {
		struct nlmsghdr nh;
		struct ifinfomsg ifi;
		struct rtattr rta;
		uint32_t fd;
	} req = {
		.nh = {.nlmsg_len = sizeof(req), .nlmsg_type = RTM_NEWLINK,
		       .nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK},
		.ifi = {.ifi_family = AF_UNSPEC, .ifi_index = (int)if_nametoindex(name)},
		.rta = {.rta_len = RTA_LENGTH(sizeof(uint32_t)), .rta_type = IFLA_NET_NS_FD},
		.fd = (uint32_t)netns_fd,
	};
	int sock = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE), ret, saved;

	if (sock < 0)
		return -1;
	ret = netlink_request(sock, &req, sizeof(req));
	saved = errno;
	close(sock);
	errno = saved;
	return ret;
}

/* One end of the NIC path, in the calling thread's namespace: sysctls, addresses, link up. */
static int nic_end_up(const char *name, const char *address4, const char *address6_)
{
	char path[128];
	int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int rtnl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	int ret = sock < 0 || rtnl < 0 ? -1 : 0;

	snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/accept_dad", name);
	write_small_file(path, "0");
	if (ret == 0)
		ret = interface_up(sock, "lo", NULL, NULL);
	if (ret == 0)
		ret = interface_up(sock, name, address4, NIC_MASK4);
	if (ret == 0)
		ret = address6(rtnl, name, address6_, 1);
	if (sock >= 0)
		close(sock);
	if (rtnl >= 0)
		close(rtnl);
	return ret;
}

/* The NIC path: the second NIC moves into a namespace of its own, where the peers of the *_nic
 * fixtures live; both ends get addresses and come up, and a frame must cross each way. Without
 * it, *_nic fixtures fail with ENETUNREACH. */
static void nic_path_up(void)
{
	char local[IFNAMSIZ];
	int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), netns;
	const char *failed = NULL;

	root_netns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (sock < 0 || root_netns < 0 || interface_by_mac(sock, NIC_LOCAL_MAC, local) < 0 ||
	    interface_by_mac(sock, NIC_PEER_MAC, nic_peer_name) < 0)
		failed = "no NICs with the MACs of vm/qemu.py";
	else if (unshare(CLONE_NEWNET) < 0 ||
		 (netns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC)) < 0 ||
		 setns(root_netns, CLONE_NEWNET) < 0)
		failed = "cannot make the peer's network namespace";
	else if (move_to_netns(nic_peer_name, netns) < 0)
		failed = "cannot move the peer's NIC";
	else if (nic_end_up(local, NIC_LOCAL4, NIC_LOCAL6) < 0)
		failed = "cannot set our NIC up";
	else if (setns(netns, CLONE_NEWNET) < 0 || nic_end_up(nic_peer_name, NIC_PEER4, NIC_PEER6) < 0 ||
		 setns(root_netns, CLONE_NEWNET) < 0)
		failed = "cannot set the peer's NIC up";
	else if ((peer_netns = netns, nic_frame_crosses(AF_INET) < 0))
		failed = "no IPv4 frame crossed";
	else if (nic_frame_crosses(AF_INET6) < 0)
		failed = "no IPv6 frame crossed";
	if (sock >= 0)
		close(sock);
	if (failed) {
		peer_netns = -1;
		say("zcfuzz-executor: no NIC path (%s: %s): *_nic fixtures will fail", failed, strerror(errno));
		return;
	}
	say("zcfuzz-executor: NIC path up: %s %s/%s <-> %s %s/%s", local, NIC_LOCAL4, NIC_LOCAL6,
	    nic_peer_name, NIC_PEER4, NIC_PEER6);
}

static void network_up(void)
{
	int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (sock < 0)
		die_as_init("socket: %s", strerror(errno));
	if (interface_up(sock, "lo", NULL, NULL) < 0)
		die_as_init("bring up lo: %s", strerror(errno));
	if (interface_up(sock, "dummy0", DUMMY_LOCAL, "255.255.255.0") < 0)
		say("zcfuzz-executor: dummy0 not set up (%s): udp_dummy fixtures will fail", strerror(errno));
	close(sock);
}

static int read_small_file(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	if (n && buf[n - 1] == '\n')
		buf[n - 1] = '\0';
	return 0;
}

/* Open the virtio-serial port named PORT_NAME, creating its /dev node if devtmpfs lacks it. */
static int open_port(void)
{
	for (int attempt = 0; attempt < 100; attempt++) {
		DIR *d = opendir("/sys/class/virtio-ports");
		struct dirent *e;

		while (d && (e = readdir(d))) {
			char path[300], value[64], dev[300];
			unsigned int major, minor;
			int fd;

			if (e->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "/sys/class/virtio-ports/%s/name", e->d_name);
			if (read_small_file(path, value, sizeof(value)) < 0 || strcmp(value, PORT_NAME))
				continue;
			snprintf(dev, sizeof(dev), "/dev/%s", e->d_name);
			snprintf(path, sizeof(path), "/sys/class/virtio-ports/%s/dev", e->d_name);
			if (access(dev, F_OK) < 0 && read_small_file(path, value, sizeof(value)) == 0 &&
			    sscanf(value, "%u:%u", &major, &minor) == 2)
				mknod(dev, S_IFCHR | 0600, makedev(major, minor));
			fd = open(dev, O_RDWR | O_CLOEXEC);
			closedir(d);
			if (fd < 0)
				die_as_init("open %s: %s", dev, strerror(errno));
			return fd;
		}
		if (d)
			closedir(d);
		usleep(50000);
	}
	die_as_init("no virtio-serial port named %s (is -device virtserialport,name=%s attached?)", PORT_NAME,
		    PORT_NAME);
}

/* fail-nth counts only the fault sites debugfs lets through; let through, as syzkaller does,
 * allocations that may sleep and highmem pages, and order-0 pages too (pipe buffers and skb
 * fragments are). A kernel without these files gets no faults: ops then say "no fail-nth". */
static void fault_injection_setup(void)
{
	static const char *const knobs[][2] = {
		{"/sys/kernel/debug/failslab/ignore-gfp-wait", "N"},
		{"/sys/kernel/debug/fail_page_alloc/ignore-gfp-wait", "N"},
		{"/sys/kernel/debug/fail_page_alloc/ignore-gfp-highmem", "N"},
		{"/sys/kernel/debug/fail_page_alloc/min-order", "0"},
	};

	for (size_t i = 0; i < sizeof(knobs) / sizeof(knobs[0]); i++)
		write_small_file(knobs[i][0], knobs[i][1]);
}

/* Serve from a child so that a child killed by an oops is reported and replaced, not PID 1. */
static void __attribute__((noreturn)) supervise(int port)
{
	in_flight = mmap(NULL, sizeof(*in_flight), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (in_flight == MAP_FAILED)
		die_as_init("mmap: %s", strerror(errno));
	for (;;) {
		int status;
		pid_t child;

		*in_flight = 0;
		child = fork();
		if (child < 0)
			die_as_init("fork: %s", strerror(errno));
		if (child == 0) {
			serve(port, port, 1);
			_exit(0);
		}
		while (waitpid(-1, &status, 0) != child)
			;
		say("zcfuzz-executor: serving child ended (%s %d)", WIFSIGNALED(status) ? "signal" : "exit",
		    WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
		if (*in_flight) {
			char reply[160];

			snprintf(reply, sizeof(reply),
				 "{\"error\": \"executor child killed by signal %d\", \"executor_died\": true}\n",
				 WIFSIGNALED(status) ? WTERMSIG(status) : 0);
			write_all(port, reply, strlen(reply));
		}
	}
}

static void __attribute__((noreturn)) run_as_init(void)
{
	uint64_t started = now_ns(); /* CLOCK_MONOTONIC: the kernel's clock since boot, nearly */
	int port;

	mount_one("proc", "/proc", "proc");
	mount_one("sysfs", "/sys", "sysfs");
	mount_one("devtmpfs", "/dev", "devtmpfs");
	mount_one("debugfs", "/sys/kernel/debug", "debugfs");
	mount_one("tmpfs", "/tmp", "tmpfs");
	console_fd = open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);
	if (console_fd < 0)
		console_fd = 2;
	workdir = "/tmp";
	if (setup_process() < 0)
		die_as_init("mmap: %s", strerror(errno));
	network_up();
	nic_path_up();
	fault_injection_setup();
	spares_per_kind = SPARES_IN_GUEST;
	port = open_port();
	say("zcfuzz-executor: /init at %.3f s, ready at %.3f s", started / 1e9, now_ns() / 1e9);
	write_all(port, READY_LINE, strlen(READY_LINE));
	write_all(console_fd, READY_LINE, strlen(READY_LINE));
	supervise(port);
}

/* ---- host entry -------------------------------------------------------------------------- */

static int usage(void)
{
	fprintf(stderr, "usage: zcexec --stdio [--workdir DIR] | zcexec --c-loop N [--workdir DIR]\n");
	return 2;
}

int main(int argc, char **argv)
{
	static char default_workdir[128];
	const char *mode = NULL;
	long iterations = 0;

	if (getpid() == 1)
		run_as_init();
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--stdio"))
			mode = "stdio";
		else if (!strcmp(argv[i], "--c-loop") && i + 1 < argc)
			mode = "c-loop", iterations = atol(argv[++i]);
		else if (!strcmp(argv[i], "--workdir") && i + 1 < argc)
			workdir = argv[++i];
		else
			return usage();
	}
	if (!mode || (!strcmp(mode, "c-loop") && iterations <= 0))
		return usage();
	if (!workdir) {
		const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";

		snprintf(default_workdir, sizeof(default_workdir), "%s/zcexec.XXXXXX", base);
		if (!mkdtemp(default_workdir)) {
			fprintf(stderr, "zcexec: cannot create a work directory in %s: %s\n", base, strerror(errno));
			return 1;
		}
		workdir = default_workdir;
	}
	if (setup_process() < 0) {
		fprintf(stderr, "zcexec: mmap: %s\n", strerror(errno));
		return 1;
	}
	if (!strcmp(mode, "c-loop")) {
		struct out o = {0};

		c_loop(iterations, &c_workloads[0], 0, 0, &o);
		fwrite(o.buf, 1, o.len, stdout);
	} else {
		write_all(1, READY_LINE, strlen(READY_LINE));
		serve(0, 1, 0);
	}
	if (workdir == default_workdir)
		rmdir(workdir);
	return 0;
}
