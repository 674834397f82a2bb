/* One zlib against another on permessage-deflate's calls: raw deflate with a sync flush,
 * message after message, and the inflation of what came out, on JSON records like those
 * `surge-loadgen --json-text` sends. Linked against each library in turn by zlib-forks.sh;
 * prints one line per setting: microseconds per message to compress and to inflate, and the
 * compression ratio.
 *
 * Usage: zlib-forks RECORDS_FILE ROUNDS_OF_MESSAGES */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* `takeover`: one stream for all messages (a connection's own, context takeover); else a
 * reset before each message (the shared compressor, no context takeover). */
static int run(const unsigned char *text, size_t len, const char *name, int window_bits,
               int mem_level, size_t size, int takeover, int messages) {
    size_t count = len / size;
    unsigned char *out = malloc(size * 2 + 64), *back = malloc(size + 64);
    z_stream d = {0}, i = {0};
    if (deflateInit2(&d, 6, Z_DEFLATED, -window_bits, mem_level, Z_DEFAULT_STRATEGY) != Z_OK ||
        inflateInit2(&i, -window_bits) != Z_OK)
        return 1;
    double compress = 0, inflate_time = 0;
    size_t compressed = 0, timed = 0;
    for (int k = 0; k < messages; k++) {
        /* Consecutive messages, whole messages apart, as the load generator draws them. */
        const unsigned char *m = text + (size_t)(k % count) * size;
        if (!takeover) {
            deflateReset(&d);
            inflateReset(&i);
        }
        double t0 = now();
        d.next_in = (unsigned char *)m;
        d.avail_in = size;
        d.next_out = out;
        d.avail_out = size * 2 + 64;
        deflate(&d, Z_SYNC_FLUSH);
        size_t n = size * 2 + 64 - d.avail_out;
        double t1 = now();
        i.next_in = out;
        i.avail_in = n;
        i.next_out = back;
        i.avail_out = size + 64;
        inflate(&i, Z_SYNC_FLUSH);
        double t2 = now();
        if (size + 64 - i.avail_out != size || memcmp(back, m, size) != 0) {
            fprintf(stderr, "%s: message %d did not come back\n", name, k);
            return 1;
        }
        if (k >= messages / 10) { /* the first tenth warms up */
            compress += t1 - t0;
            inflate_time += t2 - t1;
            compressed += n;
            timed++;
        }
    }
    printf("%-28s compress %8.2f us  inflate %7.2f us  ratio %.3f\n", name, compress / timed * 1e6,
           inflate_time / timed * 1e6, (double)size * timed / compressed);
    deflateEnd(&d);
    inflateEnd(&i);
    free(out);
    free(back);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s RECORDS_FILE MESSAGES\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    static unsigned char text[4 << 20];
    size_t len = f ? fread(text, 1, sizeof text, f) : 0;
    int messages = atoi(argv[2]);
    if (len < (1 << 20) || messages < 10) {
        fprintf(stderr, "need 1 MiB of records and 10 messages\n");
        return 2;
    }
    return run(text, len, "16k-stream-w12-m4", 12, 4, 16384, 1, messages) ||
           run(text, len, "16k-shared-w15-m8", 15, 8, 16384, 0, messages) ||
           run(text, len, "1k-stream-w12-m4", 12, 4, 1024, 1, messages * 8) ||
           run(text, len, "1k-shared-w15-m8", 15, 8, 1024, 0, messages * 8);
}
