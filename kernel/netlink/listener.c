/*
 * weft-listener: weftd's kernel listener, the child that holds the
 * notification sockets (kernel/netlink/monitor.ts starts it, and says why
 * it is a program of its own). It only reads: no kernel state is changed.
 *
 * argv: the receive buffer size to ask for, the rtnetlink groups to join
 * (comma-separated), how much to queue for a stalled weftd, the port ids of
 * weft's request sockets (whose echoes are dropped here), and the groups
 * joined only where the kernel has them.
 * stdin: one character per command: R/r join/leave the rtnetlink groups,
 * N/n join/leave nf_tables. End of file: weftd is done (or gone): exit 0.
 * stdout: each datagram as a u32 length in host order and the bytes, the
 * framing DatagramStream (notify.ts) cuts back into datagrams, and markers
 * built like notify.ts's markerDatagram: NLMSG_NOOP naming what it listens
 * to once a socket is subscribed, NLMSG_OVERRUN (NFT_OVERRUN) when the
 * kernel dropped notifications, NFT_CHANGED once per burst of nf_tables
 * notifications, NFT_UNWATCHED with the reason when nf_tables cannot be
 * listened to.
 *
 * A receive buffer overrun (ENOBUFS) is reported and reading goes on: the
 * socket stays subscribed, so nothing needs restarting. While weftd does not
 * read, datagrams are queued here up to the limit; past it the sockets are
 * left unread, the kernel drops what does not fit, and that too becomes an
 * overrun report once weftd catches up.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The markers of notify.ts: nf_tables message types that no notification has (NFT_CHANGED stands for a burst of them). */
#define NFT_TYPE(msg) ((NFNL_SUBSYS_NFTABLES << 8) | (msg))
#define NFT_CHANGED NFT_TYPE(NFT_MSG_NEWGEN)
#define NFT_UNWATCHED NFT_TYPE(NFT_MSG_GETGEN)
#define NFT_OVERRUN NFT_TYPE(NFT_MSG_TRACE)
#define LISTENING_ROUTE "route"
#define LISTENING_NFT "nftables"

#define JOIN_ROUTE 'R'
#define LEAVE_ROUTE 'r'
#define JOIN_NFT 'N'
#define LEAVE_NFT 'n'

/* Datagrams read from one socket before the others, stdin and stdout get their turn. */
#define READS_PER_TURN 256
#define MAX_LIST 64

static int rcvbuf;
static size_t queue_limit;
static unsigned groups[MAX_LIST], optional_groups[MAX_LIST];
static size_t n_groups, n_optional;
static uint32_t own_ports[MAX_LIST];
static size_t n_own;

static int route_fd = -1;
static int nft_fd = -1;

/* Bytes written to stdout's queue but not yet to the pipe: [head, tail) of buf. */
static struct {
  char *buf;
  size_t head, tail, cap;
} out;

/* One notification; grown when the kernel sends a larger one (reported as a loss). */
static char *rx;
static size_t rx_cap = 1 << 16;

static void die(const char *what) {
  fprintf(stderr, "weft-listener: %s: %s\n", what, strerror(errno));
  exit(1);
}

static size_t parse_list(const char *arg, unsigned *into) {
  size_t n = 0;
  for (const char *p = arg; *p && n < MAX_LIST;) {
    char *end;
    unsigned long v = strtoul(p, &end, 10);
    if (end == p) break;
    into[n++] = (unsigned)v;
    p = *end == ',' ? end + 1 : end;
  }
  return n;
}

static size_t queued(void) {
  return out.tail - out.head;
}

static void reserve(size_t more) {
  if (out.tail + more <= out.cap) return;
  size_t used = queued();
  if (out.head > 0) {
    memmove(out.buf, out.buf + out.head, used);
    out.head = 0;
    out.tail = used;
  }
  if (used + more <= out.cap) return;
  size_t cap = out.cap ? out.cap : 1 << 16;
  while (cap < used + more) cap *= 2;
  char *buf = realloc(out.buf, cap);
  if (!buf) die("queue");
  out.buf = buf;
  out.cap = cap;
}

static void append(const void *datagram, uint32_t len) {
  reserve(4 + (size_t)len);
  memcpy(out.buf + out.tail, &len, 4);
  memcpy(out.buf + out.tail + 4, datagram, len);
  out.tail += 4 + len;
}

/* What notify.ts's markerDatagram builds: a bare header of `type`, `text` as payload, padded to 4 bytes. */
static void marker(uint16_t type, const char *text) {
  size_t text_len = strlen(text);
  char datagram[NLMSG_HDRLEN + NLMSG_ALIGN(256)] = {0};
  if (text_len > 256) text_len = 256;
  struct nlmsghdr hdr = {.nlmsg_len = (uint32_t)(NLMSG_HDRLEN + text_len), .nlmsg_type = type};
  memcpy(datagram, &hdr, sizeof hdr);
  memcpy(datagram + NLMSG_HDRLEN, text, text_len);
  append(datagram, (uint32_t)(NLMSG_HDRLEN + NLMSG_ALIGN(text_len)));
}

static void forward(const char *datagram, size_t len) {
  if (len >= NLMSG_HDRLEN) {
    uint32_t pid;
    memcpy(&pid, datagram + offsetof(struct nlmsghdr, nlmsg_pid), sizeof pid);
    for (size_t i = 0; i < n_own; i++)
      if (own_ports[i] == pid) return;
  }
  append(datagram, (uint32_t)len);
}

/* Writes what the pipe takes now; the rest waits for POLLOUT. */
static void flush(void) {
  while (queued() > 0) {
    ssize_t n = write(STDOUT_FILENO, out.buf + out.head, queued());
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return;
      /* EPIPE: weftd closed its end, it is done with us. */
      exit(0);
    }
    out.head += (size_t)n;
  }
  out.head = out.tail = 0;
  /* A burst's queue is handed back, so that a quiet listener stays small. */
  if (out.cap > 1 << 20) {
    free(out.buf);
    out.buf = NULL;
    out.cap = 0;
  }
}

static int open_socket(int protocol) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, protocol);
  if (fd < 0) return -1;
  /* SO_RCVBUFFORCE passes net.core.rmem_max where weft has CAP_NET_ADMIN; SO_RCVBUF is capped by it. */
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  struct sockaddr_nl addr = {.nl_family = AF_NETLINK};
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
  }
  return fd;
}

static int join(int fd, unsigned group) {
  return setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof group);
}

static void join_route(void) {
  if (route_fd >= 0) return;
  route_fd = open_socket(NETLINK_ROUTE);
  if (route_fd < 0) die("rtnetlink socket");
  for (size_t i = 0; i < n_groups; i++)
    if (join(route_fd, groups[i]) < 0) die("joining an rtnetlink group");
  /* An older kernel without one of these groups has nothing of its kind to report. */
  for (size_t i = 0; i < n_optional; i++) join(route_fd, optional_groups[i]);
  marker(NLMSG_NOOP, LISTENING_ROUTE);
}

static void join_nft(void) {
  if (nft_fd >= 0) return;
  int fd = open_socket(NETLINK_NETFILTER);
  if (fd >= 0 && join(fd, NFNLGRP_NFTABLES) == 0) {
    nft_fd = fd;
    marker(NLMSG_NOOP, LISTENING_NFT);
    return;
  }
  /* No nf_tables here, or no right to listen: weftd is told, and checks iptables on its own period. */
  int saved = errno;
  if (fd >= 0) close(fd);
  marker(NFT_UNWATCHED, strerror(saved));
}

static void leave(int *fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

/*
 * Reads what `fd` holds, up to READS_PER_TURN datagrams (poll comes back for
 * the rest). `nft`: only whether anything came matters (one NFT_CHANGED per turn).
 */
static void drain(int fd, int nft, int *changed) {
  for (int i = 0; i < READS_PER_TURN; i++) {
    if (queued() >= queue_limit) return;
    ssize_t n = recv(fd, rx, rx_cap, MSG_DONTWAIT | MSG_TRUNC);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return;
      if (errno != ENOBUFS) die("receiving");
      /* The kernel dropped notifications that did not fit; the socket stays subscribed. */
      marker(nft ? NFT_OVERRUN : NLMSG_OVERRUN, "");
      continue;
    }
    if ((size_t)n > rx_cap) {
      /* Cut off: lost like an overrun, and the next one of this size fits. */
      marker(nft ? NFT_OVERRUN : NLMSG_OVERRUN, "");
      char *bigger = realloc(rx, (size_t)n);
      if (!bigger) die("receive buffer");
      rx = bigger;
      rx_cap = (size_t)n;
      continue;
    }
    if (nft)
      *changed = 1;
    else
      forward(rx, (size_t)n);
  }
}

static void commands(void) {
  char buf[64];
  ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
  if (n == 0) exit(0);
  if (n < 0) {
    if (errno == EINTR || errno == EAGAIN) return;
    die("reading commands");
  }
  for (ssize_t i = 0; i < n; i++) {
    if (buf[i] == JOIN_ROUTE) join_route();
    else if (buf[i] == LEAVE_ROUTE) leave(&route_fd);
    else if (buf[i] == JOIN_NFT) join_nft();
    else if (buf[i] == LEAVE_NFT) leave(&nft_fd);
  }
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: weft-listener BUFFER_BYTES GROUPS QUEUE_LIMIT OWN_PORTS [OPTIONAL_GROUPS]\n");
    return 2;
  }
  rcvbuf = atoi(argv[1]);
  n_groups = parse_list(argv[2], groups);
  queue_limit = strtoull(argv[3], NULL, 10);
  n_own = parse_list(argv[4], own_ports);
  n_optional = argc > 5 ? parse_list(argv[5], optional_groups) : 0;
  signal(SIGPIPE, SIG_IGN);
  /* A busy weftd must not stop the reading: what the pipe does not take now is queued. */
  fcntl(STDOUT_FILENO, F_SETFL, fcntl(STDOUT_FILENO, F_GETFL) | O_NONBLOCK);
  rx = malloc(rx_cap);
  if (!rx) die("receive buffer");

  for (;;) {
    int room = queued() < queue_limit;
    struct pollfd fds[4] = {
      {.fd = STDIN_FILENO, .events = POLLIN},
      {.fd = queued() > 0 ? STDOUT_FILENO : -1, .events = POLLOUT},
      {.fd = room ? route_fd : -1, .events = POLLIN},
      {.fd = room ? nft_fd : -1, .events = POLLIN},
    };
    if (poll(fds, 4, -1) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    if (fds[1].revents & (POLLERR | POLLHUP)) exit(0);
    if (fds[2].revents) drain(route_fd, 0, NULL);
    if (fds[3].revents) {
      int changed = 0;
      drain(nft_fd, 1, &changed);
      if (changed) marker(NFT_CHANGED, "");
    }
    flush();
    /* Commands last: a socket closed by one is not read in the same turn. */
    if (fds[0].revents) commands();
    flush();
  }
}
