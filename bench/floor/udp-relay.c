// udp-relay.c LISTEN_PORT UAS_PORT: the wake-up floor of a UDP SIP forwarder
// for bench/proxy.sh (target "relay"). It relays every datagram from the caller
// (SIPp's uac) to 127.0.0.1:UAS_PORT and every datagram from there back to the
// caller, with no SIP work at all: no parsing, no state, no 100 Trying, no
// failover. One thread, edge-triggered epoll, each socket read until it would
// block: the loop an event-driven proxy runs, so its CPU per call is what the
// kernel charges any forwarder here for this call flow (wake-ups, context
// switches, loopback delivery), the part no proxy code can remove. SIPp's uas
// answers the address a request came from, so the relay needs no Via.
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>

static int sock(int port) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  a.sin_addr.s_addr = htonl(0x7f000001);
  if (s < 0 || bind(s, (void *)&a, sizeof a)) {
    perror("udp-relay: bind");
    exit(1);
  }
  return s;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: udp-relay LISTEN_PORT UAS_PORT\n");
    return 2;
  }
  int front = sock(atoi(argv[1])), back = sock(0), ep = epoll_create1(0);
  struct sockaddr_in uas = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))}, caller = {0};
  uas.sin_addr.s_addr = htonl(0x7f000001);
  struct epoll_event e = {.events = EPOLLIN | EPOLLET};
  e.data.fd = front;
  epoll_ctl(ep, EPOLL_CTL_ADD, front, &e);
  e.data.fd = back;
  epoll_ctl(ep, EPOLL_CTL_ADD, back, &e);
  static char buf[65536];
  struct epoll_event ev[2];
  for (;;) {
    int n = epoll_wait(ep, ev, 2, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      perror("udp-relay: epoll_wait");
      return 1;
    }
    for (int i = 0; i < n; i++) {
      int fd = ev[i].data.fd;
      for (;;) {
        struct sockaddr_in from;
        socklen_t fl = sizeof from;
        ssize_t m = recvfrom(fd, buf, sizeof buf, 0, (void *)&from, &fl);
        if (m < 0) break;
        if (fd == front) {
          caller = from;
          sendto(back, buf, m, 0, (void *)&uas, sizeof uas);
        } else if (caller.sin_port) {
          sendto(front, buf, m, 0, (void *)&caller, sizeof caller);
        }
      }
    }
  }
}
