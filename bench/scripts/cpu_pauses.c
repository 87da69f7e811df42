// How long this machine's CPUs stop running a thread that wants to run: one thread per CPU, pinned to
// it, at the lowest real-time priority when allowed (so no ordinary thread of the guest can take its
// CPU), reads the clock in a loop; a gap between two reads longer than the threshold is a pause (the
// hypervisor running another guest, an interrupt, a real-time task). A latency tail shorter than these
// pauses cannot be measured on the machine. Each thread spins 0.8 s and sleeps 0.2 s in turn, so
// Linux' real-time throttling (950 ms per second) never stops it.
// Build and run: bench/cpu-pauses.sh [seconds] [threshold ms]
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

enum { MaxCpus = 64 };

typedef struct {
    int cpu;
    int realtime;
    long count;
    double total_ms, longest_ms, spun_s;
} Probe;

static double seconds, threshold_ms;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void *watch(void *argument)
{
    Probe *probe = argument;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(probe->cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    struct sched_param priority = { .sched_priority = 1 };
    probe->realtime = pthread_setschedparam(pthread_self(), SCHED_FIFO, &priority) == 0;

    double start = now();
    while (now() - start < seconds) {
        double burst = now(), last = burst;
        while (last - burst < 0.8 && last - start < seconds) {
            double t = now();
            double gap_ms = (t - last) * 1e3;
            if (gap_ms > threshold_ms) {
                probe->count++;
                probe->total_ms += gap_ms;
                if (gap_ms > probe->longest_ms)
                    probe->longest_ms = gap_ms;
            }
            last = t;
        }
        probe->spun_s += last - burst;
        usleep(200000);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    seconds = argc > 1 ? atof(argv[1]) : 10;
    threshold_ms = argc > 2 ? atof(argv[2]) : 1;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus > MaxCpus)
        cpus = MaxCpus;
    Probe probes[MaxCpus] = { 0 };
    pthread_t threads[MaxCpus];
    for (int i = 0; i < cpus; i++) {
        probes[i].cpu = i;
        pthread_create(&threads[i], NULL, watch, &probes[i]);
    }
    for (int i = 0; i < cpus; i++)
        pthread_join(threads[i], NULL);

    for (int i = 0; i < cpus; i++) {
        Probe *p = &probes[i];
        printf("cpu %d (%s): %ld pauses over %.1f ms in %.1f s spun (%.2f per s), %.3f%% of the time, longest %.2f ms\n",
               p->cpu, p->realtime ? "real-time priority" : "ordinary priority: run as root to exclude the guest's own threads",
               p->count, threshold_ms, p->spun_s, p->count / p->spun_s, p->total_ms / 10 / p->spun_s, p->longest_ms);
    }
    return 0;
}
