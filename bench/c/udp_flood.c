/*
 * UDP flood for bench/lb_throughput.ts (--sender=flood): STREAMS connected
 * UDP sockets (distinct source ports, i.e. distinct 5-tuples) each send
 * LENGTH-byte datagrams to DST:DPORT with sendmmsg() in batches of 64, round
 * robin, for SECONDS seconds. Far cheaper per datagram than iperf3's one
 * send() per datagram, so it can offer more than the LB handles. Prints the
 * number of datagrams the kernel accepted.
 *
 * Usage: udp_flood SRC DST DPORT STREAMS LENGTH SECONDS
 * Build: cc -O2 -o udp_flood udp_flood.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define MAX_STREAMS 128

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: udp_flood SRC DST DPORT STREAMS LENGTH SECONDS\n");
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
