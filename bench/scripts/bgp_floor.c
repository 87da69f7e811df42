// The least any speaker can take on this machine to get a route into BIRD: bench/hooks-to-bird.sh's
// open loop with shadownetd replaced by a relay that does nothing but turn each datagram into a BGP
// UPDATE. A sender sends create and delete datagrams on loopback at a given rate, in 1 ms ticks, the
// same sequence as the bench (creates until 1,000 are live, then a create and a delete of the oldest by
// turns); one relay process reads them in batches (recvmmsg) and writes one UPDATE per batch and kind
// to BIRD over its BGP session; BIRD (holding the bench's 100,000 routes, started by bench/bgp-floor.sh)
// passes them to a probe process that records when each /32 arrives. No allocation, store, MAC, reply
// or thread hand-off: what is left is the wake-ups, the TCP hops, BIRD's own work and the machine.
// Given a hook key, the same sender and probe drive a running shadownetd instead (signed hook
// datagrams, replies read by a third process for each create's address), so that the daemon and the
// floor are timed by the same small C programs, without the .NET bench runner beside them.
// Run: bench/bgp-floor.sh [rate per s] [seconds] [runs] [relay|shadownetd|both]
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { LiveInstances = 1000, Batch = 64, Slot = 64, RelayAs = 65003, ProbeAs = 65005, PoolSize = 1 << 18 };
static const uint32_t FirstAddress = 0x0A400000; // 10.64.0.0/14, as the bench's shadow pool
// The relay's own address, so that shadownetd (127.0.0.3) can stay peered with BIRD beside it.
static const char RelayAddress[] = "127.0.0.7";

// Shared between the processes (anonymous shared mappings made before fork).
struct shared {
    volatile int relay_up, probe_up, done;
    int64_t *sent;            // per create: ns, CLOCK_MONOTONIC
    volatile uint32_t *address; // per create: its address, from the relay's rule or shadownetd's reply
    int64_t *arrived;         // per address in the pool: when BIRD passed its route on
    int *instance_of;         // per event: the instance it creates or deletes (for the reply reader)
};

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void die(const char *what)
{
    perror(what);
    exit(2);
}

static struct sockaddr_in endpoint(const char *address, int port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    inet_pton(AF_INET, address, &a.sin_addr);
    return a;
}

static void write_all(int s, const uint8_t *data, size_t length)
{
    while (length > 0) {
        ssize_t n = write(s, data, length);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die("write to BIRD");
        data += n;
        length -= (size_t)n;
    }
}

// Points recvmmsg's headers at one slot each of buffers.
static void batch(uint8_t (*buffers)[Slot], struct iovec *iov, struct mmsghdr *messages)
{
    for (int i = 0; i < Batch; i++) {
        iov[i] = (struct iovec){ buffers[i], Slot };
        messages[i] = (struct mmsghdr){ .msg_hdr = { .msg_iov = &iov[i], .msg_iovlen = 1 } };
    }
}

// Reads one BGP message into buffer (at least 4096 bytes); returns its type, or -1 at end of stream.
static int read_message(int s, uint8_t *buffer, int *length)
{
    int have = 0, need = 19;
    while (have < need) {
        ssize_t n = read(s, buffer + have, (size_t)(need - have));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        have += (int)n;
        if (have == 19 && need == 19) {
            need = buffer[16] << 8 | buffer[17];
            if (need < 19 || need > 4096) {
                fprintf(stderr, "bad BGP length %d\n", need);
                exit(2);
            }
        }
    }
    *length = have;
    return buffer[18];
}

static size_t header(uint8_t *m, int type)
{
    memset(m, 0xff, 16);
    m[18] = (uint8_t)type;
    return 19;
}

static void set_length(uint8_t *m, size_t length)
{
    m[16] = (uint8_t)(length >> 8);
    m[17] = (uint8_t)length;
}

// OPEN (IPv4 unicast and four-octet AS capabilities), then the peer's OPEN and KEEPALIVE, answered with
// a KEEPALIVE: 0 once the session is established, -1 if BIRD closed it.
static int establish(int s, int as, const char *id)
{
    uint8_t m[4096];
    size_t n = header(m, 1);
    m[n++] = 4;
    m[n++] = (uint8_t)(as >> 8);
    m[n++] = (uint8_t)as;
    m[n++] = 0;
    m[n++] = 90; // hold time
    struct in_addr router;
    inet_pton(AF_INET, id, &router);
    memcpy(m + n, &router, 4);
    n += 4;
    const uint8_t parameters[] = { 14, 2, 12, 1, 4, 0, 1, 0, 1, 65, 4, 0, 0, (uint8_t)(as >> 8), (uint8_t)as };
    memcpy(m + n, parameters, sizeof parameters);
    n += sizeof parameters;
    set_length(m, n);
    write_all(s, m, n);

    int length, type, keepalive_sent = 0;
    while ((type = read_message(s, m, &length)) != 4 || !keepalive_sent) {
        if (type == 1 && !keepalive_sent) {
            uint8_t k[19];
            header(k, 4);
            set_length(k, 19);
            write_all(s, k, 19);
            keepalive_sent = 1;
        } else if (type == 3 || type < 0) {
            return -1;
        }
    }
    return 0;
}

// Relay: datagrams of 5 bytes (1 = create, 2 = delete; then the instance number, big-endian) become
// one UPDATE of withdrawals and one of announcements per batch, written together.
static void relay(struct shared *shared, int udp_port, int bird_port)
{
    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    int size = 8 << 20;
    setsockopt(udp, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    struct sockaddr_in local = endpoint(RelayAddress, udp_port);
    if (bind(udp, (struct sockaddr *)&local, sizeof local) != 0)
        die("bind the relay's UDP port");

    // BIRD may still be closing the previous run's session: try again for up to 30 s.
    int bgp = -1, one = 1;
    for (int attempt = 0; bgp < 0 && attempt < 300 && !shared->done; attempt++) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        setsockopt(s, IPPROTO_TCP, 1 /* TCP_NODELAY */, &one, sizeof one);
        struct sockaddr_in from = endpoint(RelayAddress, 0), bird = endpoint("127.0.0.2", bird_port);
        if (bind(s, (struct sockaddr *)&from, sizeof from) == 0 && connect(s, (struct sockaddr *)&bird, sizeof bird) == 0
            && establish(s, RelayAs, RelayAddress) == 0) {
            bgp = s;
        } else {
            close(s);
            usleep(100000);
        }
    }
    if (bgp < 0)
        return;
    shared->relay_up = 1;

    uint8_t datagrams[Batch][Slot];
    struct iovec iov[Batch];
    struct mmsghdr messages[Batch];
    batch(datagrams, iov, messages);
    static const uint8_t attributes[] = {
        0x40, 1, 1, 0,                                  // ORIGIN IGP
        0x40, 2, 6, 2, 1, 0, 0, RelayAs >> 8, RelayAs & 0xff, // AS_PATH: 65003
        0x40, 3, 4, 192, 0, 2, 1,                        // NEXT_HOP 192.0.2.1
    };
    // The announcement's header, empty withdrawn routes and attributes are the same in every batch:
    // written once, the batch's NLRI go after them.
    uint8_t out[4096], announce[4096];
    const size_t nlri_at = 23 + sizeof attributes;
    header(announce, 2);
    announce[19] = announce[20] = announce[21] = 0;
    announce[22] = sizeof attributes;
    memcpy(announce + 23, attributes, sizeof attributes);
    struct pollfd readable = { .fd = udp, .events = POLLIN };
    while (!shared->done) {
        // recvmmsg's own timeout is only checked between datagrams: poll, so that the relay can stop.
        if (poll(&readable, 1, 200) <= 0)
            continue;
        int n = recvmmsg(udp, messages, Batch, MSG_WAITFORONE, NULL);
        if (n <= 0)
            continue;
        size_t w = header(out, 2) + 2, a = nlri_at;
        for (int i = 0; i < n; i++) {
            uint32_t address = FirstAddress + ((uint32_t)datagrams[i][1] << 24 | datagrams[i][2] << 16 | datagrams[i][3] << 8 | datagrams[i][4]);
            uint8_t *to = datagrams[i][0] == 1 ? announce + a : out + w;
            to[0] = 32;
            to[1] = (uint8_t)(address >> 24);
            to[2] = (uint8_t)(address >> 16);
            to[3] = (uint8_t)(address >> 8);
            to[4] = (uint8_t)address;
            if (datagrams[i][0] == 1)
                a += 5;
            else
                w += 5;
        }
        // Withdrawals (if any) first, then the announcement (if any) after them, in one write.
        size_t total = 0;
        if (w > 21) {
            out[19] = (uint8_t)((w - 21) >> 8);
            out[20] = (uint8_t)(w - 21);
            out[w] = out[w + 1] = 0; // no attributes
            total = w + 2;
            set_length(out, total);
        }
        if (a > nlri_at) {
            set_length(announce, a);
            memcpy(out + total, announce, a);
            total += a;
        }
        write_all(bgp, out, total);
    }
    close(bgp);
}

// Probe: the passive peer BIRD exports to; records the first arrival of every announced /32.
static void probe(struct shared *shared, int port)
{
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in local = endpoint("127.0.0.5", port);
    if (bind(listener, (struct sockaddr *)&local, sizeof local) != 0 || listen(listener, 1) != 0)
        die("listen for BIRD");
    int s = accept(listener, NULL, NULL);
    if (s < 0)
        die("accept BIRD");
    if (establish(s, ProbeAs, "127.0.0.5") != 0) {
        fprintf(stderr, "BIRD closed the probe's session\n");
        return;
    }
    shared->probe_up = 1;

    uint8_t m[4096];
    int length, type;
    struct pollfd readable = { .fd = s, .events = POLLIN };
    while (!shared->done) {
        if (poll(&readable, 1, 200) <= 0)
            continue;
        if ((type = read_message(s, m, &length)) < 0)
            break;
        if (type != 2)
            continue;
        int64_t at = now_ns();
        int withdrawn = m[19] << 8 | m[20];
        int at_attributes = 21 + withdrawn;
        int attributes = m[at_attributes] << 8 | m[at_attributes + 1];
        for (int i = at_attributes + 2 + attributes; i + 4 < length; i += 5) {
            if (m[i] != 32)
                break; // only /32s are sent
            uint32_t address = (uint32_t)m[i + 1] << 24 | m[i + 2] << 16 | m[i + 3] << 8 | m[i + 4];
            uint32_t offset = address - FirstAddress;
            if (offset < PoolSize && shared->arrived[offset] == 0)
                shared->arrived[offset] = at;
        }
    }
}

static int compare(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

// shadownetd's hook request (src/ShadowNet.Hooks/Udp/HookDatagram.cs): a create or delete of instance
// "r<run>-<n>" of application "bench", key id 1, no host address, signed with HMAC-SHA-256 (16 octets).
static size_t hook_request(uint8_t *d, int create, uint64_t sequence, const uint8_t *key, int key_length, int run, int instance)
{
    memset(d, 0, 32);
    d[0] = 'S';
    d[1] = 'N';
    d[2] = 1;
    d[3] = (uint8_t)(create ? 1 : 2);
    for (int i = 0; i < 8; i++)
        d[4 + i] = (uint8_t)(sequence >> (56 - 8 * i));
    d[13] = 1; // key id 1
    d[15] = 4; // IPv4
    size_t n = 32;
    int length = sprintf((char *)d + n + 1, "r%d-%d", run, instance);
    d[n] = (uint8_t)length;
    n += 1 + (size_t)length;
    d[n++] = 5;
    memcpy(d + n, "bench", 5);
    n += 5;
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned int mac_length;
    HMAC(EVP_sha256(), key, key_length, d, n, mac, &mac_length);
    memcpy(d + n, mac, 16);
    return n + 16;
}

// Reads shadownetd's replies (48 octets) on the sender's socket: each create's address, by sequence.
static void reply_reader(struct shared *shared, int udp, uint64_t first_sequence, int events)
{
    uint8_t replies[Batch][Slot];
    struct iovec iov[Batch];
    struct mmsghdr messages[Batch];
    batch(replies, iov, messages);
    struct pollfd readable = { .fd = udp, .events = POLLIN };
    while (!shared->done) {
        if (poll(&readable, 1, 200) <= 0)
            continue;
        int n = recvmmsg(udp, messages, Batch, MSG_DONTWAIT, NULL);
        for (int i = 0; i < n; i++) {
            const uint8_t *r = replies[i];
            if (messages[i].msg_len != 48 || r[3] != 0x81 || r[14] > 1) // a create's reply, hit or miss
                continue;
            uint64_t sequence = 0;
            for (int k = 0; k < 8; k++)
                sequence = sequence << 8 | r[4 + k];
            uint64_t event = sequence - first_sequence;
            if (event < (uint64_t)events)
                shared->address[shared->instance_of[event]] = (uint32_t)r[28] << 24 | r[29] << 16 | r[30] << 8 | r[31];
        }
    }
}

static void *shared_array(size_t count, size_t size)
{
    void *p = mmap(NULL, count * size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        die("mmap");
    return p;
}

int main(int argc, char **argv)
{
    if (argc != 6 && argc != 8) {
        fprintf(stderr, "usage: bgp_floor rate seconds bird-port probe-port udp-port [hook-key-hex run]\n"
                        "  without a key: the relay, on 127.0.0.7:udp-port; with one: shadownetd's hooks on 127.0.0.1:udp-port\n"
                        "  (bench/bgp-floor.sh starts BIRD, and shadownetd)\n");
        return 2;
    }
    int rate = atoi(argv[1]), bird_port = atoi(argv[3]), probe_port = atoi(argv[4]), udp_port = atoi(argv[5]);
    double seconds = atof(argv[2]);
    int daemon = argc == 8, run = daemon ? atoi(argv[7]) : 0, key_length = 0;
    uint8_t key[64];
    for (const char *hex = daemon ? argv[6] : ""; hex[0] && hex[1] && key_length < 64; hex += 2)
        sscanf(hex, "%2hhx", &key[key_length++]);
    if (rate < 1 || rate > 1000000 || seconds <= 0 || seconds > 600 || (daemon && key_length == 0)) {
        fprintf(stderr, "rate 1-1000000, seconds up to 600, a key of hex digits\n");
        return 2;
    }
    // One unmeasured second first, as in the bench.
    int warm = rate, events = warm + (int)(rate * seconds);
    struct shared *shared = shared_array(1, sizeof *shared);
    shared->sent = shared_array((size_t)events, sizeof *shared->sent);
    shared->address = shared_array((size_t)events, sizeof *shared->address);
    shared->arrived = shared_array(PoolSize, sizeof *shared->arrived);
    shared->instance_of = shared_array((size_t)events, sizeof *shared->instance_of);

    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    int size = 8 << 20;
    setsockopt(udp, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    struct sockaddr_in speaker = endpoint(daemon ? "127.0.0.1" : RelayAddress, udp_port);
    if (connect(udp, (struct sockaddr *)&speaker, sizeof speaker) != 0)
        die("connect to the speaker's UDP port");
    // Sequence numbers keep rising across runs against one daemon (its replay window is per key).
    uint64_t first_sequence = (uint64_t)now_ns();

    pid_t children[2];
    if ((children[0] = fork()) == 0) {
        probe(shared, probe_port);
        _exit(0);
    }
    if ((children[1] = fork()) == 0) {
        if (daemon)
            reply_reader(shared, udp, first_sequence, events);
        else
            relay(shared, udp_port, bird_port);
        _exit(0);
    }
    shared->relay_up |= daemon; // bench/bgp-floor.sh waits for shadownetd's session itself
    for (int i = 0; i < 600 && !(shared->relay_up && shared->probe_up); i++)
        usleep(50000);
    if (!(shared->relay_up && shared->probe_up)) {
        fprintf(stderr, "sessions with BIRD not up after 30 s (speaker %d, probe %d)\n", shared->relay_up, shared->probe_up);
        shared->done = 1;
        return 2;
    }
    usleep(500000);

    int created = 0, deleted = 0, measured_from = -1;
    uint8_t datagram[512];
    int64_t started = now_ns();
    for (int i = 0; i < events; i++) {
        if (i == warm)
            started = now_ns(), measured_from = created;
        int64_t due = started + (int64_t)((i - (i >= warm ? warm : 0)) * 1e9 / rate);
        if (due - now_ns() > 1000000) {
            struct timespec tick = { 0, 1000000 };
            nanosleep(&tick, NULL);
        }
        int create = created - deleted < LiveInstances || i % 2 == 0;
        int instance = create ? created++ : deleted++;
        shared->instance_of[i] = instance;
        size_t length;
        if (daemon) {
            length = hook_request(datagram, create, first_sequence + (uint64_t)i, key, key_length, run, instance);
        } else {
            uint8_t relayed[5] = { (uint8_t)(create ? 1 : 2), (uint8_t)(instance >> 24), (uint8_t)(instance >> 16), (uint8_t)(instance >> 8), (uint8_t)instance };
            memcpy(datagram, relayed, sizeof relayed);
            length = sizeof relayed;
            shared->address[instance] = FirstAddress + (uint32_t)instance;
        }
        if (create)
            shared->sent[instance] = now_ns();
        if (send(udp, datagram, length, 0) != (ssize_t)length)
            die("send");
    }
    double sending = (now_ns() - started) / 1e9;

    // Until every measured create has arrived, or 10 s.
    int missing = 0;
    for (int64_t until = now_ns() + 10000000000LL; now_ns() < until; usleep(10000)) {
        missing = 0;
        for (int i = measured_from; i < created; i++)
            missing += shared->address[i] == 0 || shared->arrived[(shared->address[i] - FirstAddress) % PoolSize] == 0;
        if (missing == 0)
            break;
    }
    double waited = (now_ns() - started) / 1e9;
    shared->done = 1;
    for (int i = 0; i < 2; i++)
        waitpid(children[i], NULL, 0);
    // CPU of this tool's processes from the start to the end, warm-up and set-up included: an upper
    // bound, to set beside the bench's daemon CPU figure.
    struct rusage self, children_usage;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &children_usage);
    double cpu = self.ru_utime.tv_sec + self.ru_stime.tv_sec + children_usage.ru_utime.tv_sec + children_usage.ru_stime.tv_sec
        + (self.ru_utime.tv_usec + self.ru_stime.tv_usec + children_usage.ru_utime.tv_usec + children_usage.ru_stime.tv_usec) / 1e6;

    int count = 0;
    int64_t *latencies = malloc((size_t)(created - measured_from) * 8);
    for (int i = measured_from; i < created; i++) {
        uint32_t offset = shared->address[i] - FirstAddress;
        if (shared->address[i] != 0 && offset < PoolSize && shared->arrived[offset] != 0)
            latencies[count++] = shared->arrived[offset] - shared->sent[i];
    }
    qsort(latencies, (size_t)count, 8, compare);
    if (count == 0) {
        fprintf(stderr, "no route arrived\n");
        return 1;
    }
#define AT(q) (latencies[(int)((count - 1) * (q))] / 1e6)
    printf("%-10s %.0f events/s for %.1f s (%d creates): create -> BIRD ms p50 %.3f p90 %.3f p99 %.3f p99.9 %.3f max %.3f;"
           " missing %d; this tool's CPU at most %.0f ms per s\n",
           daemon ? "shadownetd" : "relay", (events - warm) / sending, sending, created - measured_from, AT(0.5), AT(0.9), AT(0.99),
           AT(0.999), AT(1.0), missing, cpu * 1000 / waited);
    return missing == 0 ? 0 : 1;
}
