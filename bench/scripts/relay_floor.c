// A calibration of this machine for latency tails: a sender sends timestamped UDP datagrams on loopback
// at a given rate (in 1 ms ticks, as bench/hooks-to-bird.sh's open loop does), two relay processes
// each block in recv and pass every datagram on (as a create crosses shadownetd and then BIRD), and a
// receiver records how long each took. The relays do no work, so the tail is the machine's: wake-ups,
// scheduling among more runnable processes than CPUs, pauses of the virtual CPUs. Run it beside the
// latency benches: on this 2-vCPU machine its p99 moved between 0.3 and 3.6 ms within one hour.
// Build and run: bench/relay-floor.sh [rate per s] [seconds] [relays]
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { BasePort = 31710, MaxRelays = 8 };

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int bound(int port)
{
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    int size = 8 << 20;
    setsockopt(s, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (port && bind(s, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("bind");
        exit(2);
    }
    return s;
}

static struct sockaddr_in to(int port)
{
    return (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
}

static int compare(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int rate = argc > 1 ? atoi(argv[1]) : 10000;
    double seconds = argc > 2 ? atof(argv[2]) : 5;
    int relays = argc > 3 ? atoi(argv[3]) : 2;
    if (rate < 1 || rate > 1000000 || seconds <= 0 || seconds > 600 || relays < 0 || relays > MaxRelays) {
        fprintf(stderr, "usage: relay_floor [rate 1-1000000] [seconds up to 600] [relays 0-%d]\n", MaxRelays);
        return 2;
    }
    long count = (long)(rate * seconds);

    // Sockets: the sender sends to BasePort + 1; relay i listens on BasePort + 1 + i and sends on; the
    // receiver listens on BasePort + 1 + relays.
    int receiver = bound(BasePort + 1 + relays);
    pid_t children[MaxRelays];
    for (int i = 0; i < relays; i++) {
        int in = bound(BasePort + 1 + i);
        if ((children[i] = fork()) == 0) {
            int out = bound(0);
            struct sockaddr_in next = to(BasePort + 2 + i);
            char buffer[64];
            for (;;) {
                ssize_t n = recv(in, buffer, sizeof buffer, 0);
                if (n > 0)
                    sendto(out, buffer, n, 0, (struct sockaddr *)&next, sizeof next);
            }
        }
    }

    pid_t collector = fork();
    if (collector == 0) {
        double *latencies = malloc(sizeof(double) * count);
        struct timeval wait = { .tv_sec = 1 }; // so that lost datagrams end the run
        setsockopt(receiver, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
        long received = 0;
        double last = now();
        while (received < count && now() - last < 2) {
            double sent;
            if (recv(receiver, &sent, sizeof sent, 0) == sizeof sent) {
                last = now();
                latencies[received++] = (last - sent) * 1e3;
            }
        }
        qsort(latencies, received, sizeof(double), compare);
        if (received == 0) {
            printf("nothing arrived\n");
            fflush(stdout);
            _exit(1);
        }
        printf("%d relays, %d/s for %.0f s: %ld of %ld arrived; ms p50 %.3f p90 %.3f p99 %.3f p99.9 %.3f max %.2f\n",
               relays, rate, seconds, received, count, latencies[received / 2], latencies[(long)(received * 0.9)],
               latencies[(long)(received * 0.99)], latencies[(long)(received * 0.999)], latencies[received - 1]);
        fflush(stdout); // _exit does not flush stdio
        _exit(0);
    }

    usleep(200000); // the relays and the collector are waiting in recv
    int out = bound(0);
    struct sockaddr_in first = to(BasePort + 1);
    double start = now();
    for (long i = 0; i < count; i++) {
        double due = start + (double)i / rate;
        if (due - now() > 0.001)
            usleep(1000);
        double sent = now();
        sendto(out, &sent, sizeof sent, 0, (struct sockaddr *)&first, sizeof first);
    }

    int status = 1;
    waitpid(collector, &status, 0);
    for (int i = 0; i < relays; i++) {
        kill(children[i], SIGKILL);
        waitpid(children[i], NULL, 0);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
