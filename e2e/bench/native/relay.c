/* The native floor for relayfloor.py: an epoll relay, one thread, no parsing.
 * relay PORT UPSTREAM_PORT; stdin: "mark" -> prints user and system CPU seconds so far; EOF -> exit. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FD 65536
static int peer[MAX_FD];

static int listen_on(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 1024)) { perror("listen"); exit(1); }
    return fd;
}

static int connect_to(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) { perror("connect"); exit(1); }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void watch(int ep, int fd) {
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

static void mark(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("%.6f %.6f\n", ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
           ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
    fflush(stdout);
}

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    int lfd = listen_on(atoi(argv[1])), upstream = atoi(argv[2]), ep = epoll_create1(0), one = 1;
    static char buf[65536];
    watch(ep, lfd);
    watch(ep, 0);
    printf("ready\n");
    fflush(stdout);
    struct epoll_event events[256];
    for (;;) {
        int n = epoll_wait(ep, events, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == lfd) {
                int down = accept(lfd, NULL, NULL), up = connect_to(upstream);
                setsockopt(down, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                peer[down] = up, peer[up] = down;
                watch(ep, down), watch(ep, up);
            } else if (fd == 0) {
                ssize_t got = read(0, buf, sizeof buf);
                if (got <= 0) return 0;
                if (strstr(buf, "mark")) mark();
                memset(buf, 0, (size_t)got);
            } else {
                ssize_t got = read(fd, buf, sizeof buf);
                if (got <= 0) { close(fd); close(peer[fd]); continue; }
                for (ssize_t off = 0; off < got;) {
                    ssize_t put = write(peer[fd], buf + off, (size_t)(got - off));
                    if (put <= 0) break;
                    off += put;
                }
            }
        }
    }
}
