/*
 * UDP flood for bench/lb_throughput.ts (--sender=flood and --sender=newflows).
 *
 * Default mode (--sender=flood): STREAMS connected UDP sockets (distinct
 * source ports, i.e. distinct 5-tuples) each send LENGTH-byte datagrams to
 * DST:DPORT with sendmmsg() in batches of 64, round robin, for SECONDS
 * seconds. Far cheaper per datagram than iperf3's one send() per datagram, so
 * it can offer more than the LB handles.
 *
 * Mode `newflows` (--sender=newflows, 7th argument): every datagram is a new
 * 5-tuple. One raw socket (IPPROTO_RAW, i.e. IP_HDRINCL) sends LENGTH-byte
 * UDP datagrams from SRC to DST that it builds itself, 64 per sendmmsg() with
 * a per-message destination; the source port advances with every datagram
 * over 1024..65535, and after each full cycle of source ports the destination
 * port advances over DPORT..DPORT+1023. A 5-tuple therefore recurs only after
 * 64512 * 1024 (66 million) datagrams, far longer than a fast-path element
 * lives at these rates; the sequence starts at a random point so runs do not
 * repeat each other's tuples. STREAMS is ignored. UDP checksum 0 (none); the
 * kernel fills in the IP checksum, total length and id.
 *
 * Prints the number of datagrams the kernel accepted and the number of failed
 * sendmmsg() calls.
 *
 * Usage: udp_flood SRC DST DPORT STREAMS LENGTH SECONDS [newflows]
 * Build: cc -O2 -o udp_flood udp_flood.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define MAX_STREAMS 128
#define SPORT_FIRST 1024
#define SPORTS (65536 - SPORT_FIRST)
#define DPORTS 1024

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* --sender=newflows: a new 5-tuple per datagram, from one raw socket. */
static int new_flows(struct sockaddr_in *src, struct sockaddr_in *dst, int length,
                     double seconds) {
  unsigned dport_first = ntohs(dst->sin_port);
  if (dport_first + DPORTS > 65536) {
    fprintf(stderr, "udp_flood: newflows needs DPORT <= %d\n", 65536 - DPORTS);
    return 2;
  }
  int fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
  if (fd < 0) {
    perror("udp_flood: raw socket");
    return 1;
  }
  size_t size = sizeof(struct iphdr) + sizeof(struct udphdr) + (size_t)length;
  static unsigned char bufs[BATCH][sizeof(struct iphdr) + sizeof(struct udphdr) + 1472];
  struct iovec iovs[BATCH];
  struct mmsghdr msgs[BATCH];
  memset(msgs, 0, sizeof msgs);
  struct sockaddr_in to = *dst;
  to.sin_port = 0;
  for (int k = 0; k < BATCH; k++) {
    unsigned char *b = bufs[k];
    memset(b, 0x5a, size);
    struct iphdr *ip = (struct iphdr *)b;
    ip->version = 4;
    ip->ihl = 5;
    ip->tos = 0;
    ip->tot_len = htons((uint16_t)size);
    ip->id = 0;
    ip->frag_off = 0;
    ip->ttl = 64;
    ip->protocol = IPPROTO_UDP;
    ip->check = 0;
    ip->saddr = src->sin_addr.s_addr;
    ip->daddr = dst->sin_addr.s_addr;
    struct udphdr *udp = (struct udphdr *)(b + sizeof(struct iphdr));
    udp->len = htons((uint16_t)(sizeof(struct udphdr) + (size_t)length));
    udp->check = 0;
    iovs[k].iov_base = b;
    iovs[k].iov_len = size;
    msgs[k].msg_hdr.msg_iov = &iovs[k];
    msgs[k].msg_hdr.msg_iovlen = 1;
    msgs[k].msg_hdr.msg_name = &to;
    msgs[k].msg_hdr.msg_namelen = sizeof to;
  }
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  srandom((unsigned)ts.tv_nsec ^ (unsigned)getpid());
  const uint64_t cycle = (uint64_t)SPORTS * DPORTS;
  uint64_t n = ((uint64_t)random() * 65536u + (uint64_t)(random() & 0xffff)) % cycle;
  unsigned long long sent = 0, errors = 0;
  double end = now() + seconds;
  for (unsigned long long round = 0;; round++) {
    if ((round & 15) == 0 && now() >= end) break;
    for (int k = 0; k < BATCH; k++) {
      uint64_t t = (n + (uint64_t)k) % cycle;
      struct udphdr *udp = (struct udphdr *)(bufs[k] + sizeof(struct iphdr));
      udp->source = htons((uint16_t)(SPORT_FIRST + t % SPORTS));
      udp->dest = htons((uint16_t)(dport_first + t / SPORTS));
    }
    int r = sendmmsg(fd, msgs, BATCH, 0);
    if (r > 0) {
      sent += (unsigned)r;
      n = (n + (unsigned)r) % cycle;
    } else {
      errors++;
    }
  }
  printf("%llu %llu\n", sent, errors);
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 7 && !(argc == 8 && strcmp(argv[7], "newflows") == 0)) {
    fprintf(stderr, "usage: udp_flood SRC DST DPORT STREAMS LENGTH SECONDS [newflows]\n");
    return 2;
  }
  struct sockaddr_in src = {.sin_family = AF_INET}, dst = {.sin_family = AF_INET};
  if (inet_pton(AF_INET, argv[1], &src.sin_addr) != 1 ||
      inet_pton(AF_INET, argv[2], &dst.sin_addr) != 1) {
    fprintf(stderr, "udp_flood: bad IPv4 address\n");
    return 2;
  }
  dst.sin_port = htons((unsigned short)atoi(argv[3]));
  int streams = atoi(argv[4]), length = atoi(argv[5]);
  double seconds = atof(argv[6]);
  if (streams < 1 || streams > MAX_STREAMS || length < 1 || length > 1472 || seconds <= 0) {
    fprintf(stderr, "udp_flood: STREAMS 1..%d, LENGTH 1..1472, SECONDS > 0\n", MAX_STREAMS);
    return 2;
  }
  if (argc == 8) return new_flows(&src, &dst, length, seconds);
  int fds[MAX_STREAMS];
  for (int i = 0; i < streams; i++) {
    fds[i] = socket(AF_INET, SOCK_DGRAM, 0);
    if (fds[i] < 0 || bind(fds[i], (struct sockaddr *)&src, sizeof src) < 0 ||
        connect(fds[i], (struct sockaddr *)&dst, sizeof dst) < 0) {
      perror("udp_flood: socket");
      return 1;
    }
  }
  static char payload[1472];
  memset(payload, 0x5a, sizeof payload);
  struct iovec iov = {.iov_base = payload, .iov_len = (size_t)length};
  struct mmsghdr msgs[BATCH];
  memset(msgs, 0, sizeof msgs);
  for (int k = 0; k < BATCH; k++) {
    msgs[k].msg_hdr.msg_iov = &iov;
    msgs[k].msg_hdr.msg_iovlen = 1;
  }
  unsigned long long sent = 0, errors = 0;
  double end = now() + seconds;
  for (unsigned long long round = 0;; round++) {
    if ((round & 15) == 0 && now() >= end) break;
    int r = sendmmsg(fds[round % (unsigned)streams], msgs, BATCH, 0);
    if (r > 0) sent += (unsigned)r;
    else errors++;
  }
  printf("%llu %llu\n", sent, errors);
  return 0;
}
