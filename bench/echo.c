/* The benchmark's floor: a bare UDP "DNS server" that answers each datagram with itself, QR set.
 * One thread, recvmmsg/sendmmsg in batches of 64; no parsing, no upstream, no cache.
 * Usage: echo ADDR PORT   (ADDR is an IPv6 literal; run it inside the bench's server namespace) */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define BATCH 64
#define SIZE 4096

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s ADDR PORT\n", argv[0]);
        return 2;
    }
    struct sockaddr_in6 local = {.sin6_family = AF_INET6, .sin6_port = htons(atoi(argv[2]))};
    if (inet_pton(AF_INET6, argv[1], &local.sin6_addr) != 1) {
        fprintf(stderr, "bad address %s\n", argv[1]);
        return 2;
    }
    int fd = socket(AF_INET6, SOCK_DGRAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&local, sizeof local) < 0) {
        perror("socket/bind");
        return 1;
    }
    static char bufs[BATCH][SIZE];
    static struct sockaddr_in6 peers[BATCH];
    static struct iovec iov[BATCH];
    static struct mmsghdr msgs[BATCH];
    for (;;) {
        for (int i = 0; i < BATCH; i++) {
            iov[i] = (struct iovec){.iov_base = bufs[i], .iov_len = SIZE};
            msgs[i].msg_hdr = (struct msghdr){.msg_name = &peers[i], .msg_namelen = sizeof peers[i],
                                              .msg_iov = &iov[i], .msg_iovlen = 1};
        }
        /* Block for the first datagram, then take whatever else is already queued. */
        int n = recvmmsg(fd, msgs, BATCH, MSG_WAITFORONE, NULL);
        if (n < 0) {
            perror("recvmmsg");
            continue;
        }
        for (int i = 0; i < n; i++) {
            iov[i].iov_len = msgs[i].msg_len;
            if (msgs[i].msg_len > 2)
                bufs[i][2] |= (char)0x80; /* QR: this is a response */
        }
        for (int sent = 0; sent < n;) {
            int m = sendmmsg(fd, msgs + sent, n - sent, 0);
            if (m < 0) {
                perror("sendmmsg");
                break;
            }
            sent += m;
        }
    }
}
