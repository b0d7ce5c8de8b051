/*
 * A C reader with the data-path architecture of nfqlb 1.2.0 (SPEC 5.5 step 6),
 * used only as a comparison point by bench/lb_throughput.ts: libnetfilter_queue
 * in its documented way, one recv() per netlink datagram, nfq_handle_packet()
 * calling back per packet, and one nfq_set_verdict2() (one sendto) per packet.
 * The per-packet work is a djb2 hash of the IPv4 addresses and ports (bytes
 * 12..23, no header-length or protocol checks) and a lookup in a 997-entry
 * table holding marks FIRST_MARK .. FIRST_MARK+TARGETS-1 in turn, i.e. cheaper
 * than nfqlb's real parse + hash, so the comparison favours this baseline.
 *
 * Usage: nfq_baseline QUEUE FIRST_MARK TARGETS [QLENGTH]   (stops on SIGTERM/SIGINT)
 * Build: cc -O2 -o nfq_baseline nfq_baseline.c -lnetfilter_queue
 */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <libnetfilter_queue/libnetfilter_queue.h>

#define NF_ACCEPT 1

#ifndef NETLINK_NO_ENOBUFS
#define NETLINK_NO_ENOBUFS 5
#endif
#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

#define MTU 1500
#define TABLE_SIZE 997

static volatile sig_atomic_t stopping;
static int table[TABLE_SIZE];
static unsigned long long handled;

static void on_signal(int sig) { (void)sig; stopping = 1; }

static int on_packet(struct nfq_q_handle *qh, struct nfgenmsg *msg, struct nfq_data *nfa,
                     void *data) {
  (void)msg;
  (void)data;
  struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
  if (ph == NULL) return 0;
  uint32_t id = ntohl(ph->packet_id);
  unsigned char *payload;
  int len = nfq_get_payload(nfa, &payload);
  uint32_t h = 5381;
  for (int i = 12; i < len && i < 24; i++) h = h * 33 + payload[i];
  handled++;
  return nfq_set_verdict2(qh, id, NF_ACCEPT, (uint32_t)table[h % TABLE_SIZE], 0, NULL);
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: nfq_baseline QUEUE FIRST_MARK TARGETS [QLENGTH]\n");
    return 2;
  }
  int queue = atoi(argv[1]);
  int mark = atoi(argv[2]);
  int targets = atoi(argv[3]);
  unsigned qlength = argc > 4 ? (unsigned)atoi(argv[4]) : 1024;
  if (targets < 1) targets = 1;
  for (int i = 0; i < TABLE_SIZE; i++) table[i] = mark + i % targets;

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal; /* no SA_RESTART: recv() returns EINTR */
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);

  struct nfq_handle *h = nfq_open();
  if (h == NULL) { perror("nfq_open"); return 1; }
  nfq_unbind_pf(h, AF_INET);
  nfq_bind_pf(h, AF_INET);
  struct nfq_q_handle *qh = nfq_create_queue(h, queue, on_packet, NULL);
  if (qh == NULL) { perror("nfq_create_queue"); return 1; }
  if (nfq_set_mode(qh, NFQNL_COPY_PACKET, MTU) < 0) { perror("nfq_set_mode"); return 1; }
  if (nfq_set_queue_flags(qh, NFQA_CFG_F_GSO, NFQA_CFG_F_GSO) < 0) {
    perror("nfq_set_queue_flags");
    return 1;
  }
  if (nfq_set_queue_maxlen(qh, qlength) < 0) { perror("nfq_set_queue_maxlen"); return 1; }
  int fd = nfq_fd(h);
  int one = 1;
  setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof one);
  unsigned requested = (unsigned)(((unsigned long long)qlength * MTU) / 2) & ~4095u;
  int cur = 0;
  socklen_t sl = sizeof cur;
  getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &cur, &sl);
  if (requested > (unsigned)cur) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &requested, sizeof requested);
  getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &cur, &sl);
  printf("queue_length=%u, mtu=%u, SO_RCVBUF=%u (%u)\n", qlength, MTU, cur, requested);
  fflush(stdout);

  static char buf[MTU + 2048] __attribute__((aligned));
  while (!stopping) {
    int rv = recv(fd, buf, sizeof buf, 0);
    if (rv < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOBUFS) continue;
      perror("recv");
      return 1;
    }
    nfq_handle_packet(h, buf, rv);
  }
  nfq_destroy_queue(qh);
  nfq_close(h);
  fprintf(stderr, "nfq_baseline: %llu packets\n", handled);
  return 0;
}
