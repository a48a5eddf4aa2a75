/*
 * fake_upstream.c - a fast fake OpenAI-compatible upstream for oneplan's benchmark.
 *
 * Why C: the benchmark must show the gateway, never the upstream, is the bottleneck, on a
 * 2-core machine where the upstream, the gateway and the load generator share the CPU. A
 * single epoll loop answering from pre-rendered buffers costs a few microseconds of CPU per
 * request, so nearly all CPU stays with the gateway under test. It needs only libc and gcc
 * (Debian registry), no crates or modules from the network.
 *
 * What it speaks (HTTP/1.1, keep-alive, pipelining, Content-Length or chunked request bodies):
 *   POST /v1/chat/completions   JSON completion with usage; when the body has "stream": true,
 *                               an SSE stream (chunked) of 11 chunks, a usage chunk when
 *                               stream_options.include_usage is true, then `data: [DONE]`.
 *   GET  /v1/models             one model, "bench-model".
 *   GET  /health                "ok".
 *   GET  /stats                 {"chat": N, "stream": M} across all worker processes, so the
 *                               harness can check a gateway really forwarded each request.
 * Body inspection is a byte search for the keys (`"stream"`, `"include_usage"`) followed by
 * `true`; JSON strings escape quotes, so only a key can match. A nested key named "stream"
 * (e.g. in a tool schema) would also match: the harness's payloads never contain one.
 *
 * Usage: fake_upstream PORT [WORKERS]   (WORKERS processes share the port via SO_REUSEPORT)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    char *data;
    size_t len;
} buf_t;

typedef struct {
    int fd;
    char *in;
    size_t in_len, in_cap;
    char *out;
    size_t out_len, out_off;
    int close_after;
} conn_t;

typedef struct {
    volatile long chat;
    volatile long stream;
} stats_t;

static stats_t *stats;
static buf_t resp_json, resp_stream_usage, resp_stream_plain, resp_models, resp_health,
    resp_404, resp_continue;

static const char *MODEL = "bench-model";
static const char *WORDS[] = {"Hello", "!", " This", " is", " a", " fast", " fake", " upstream", "."};

static void buf_append(buf_t *b, const char *s, size_t n) {
    b->data = realloc(b->data, b->len + n + 1);
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
}

static void buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(buf_t *b, const char *fmt, ...) {
    char tmp[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    buf_append(b, tmp, (size_t)n);
}

static buf_t simple_response(const char *status, const char *ctype, const char *body) {
    buf_t b = {0};
    buf_printf(&b, "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n\r\n%s", status,
               ctype, strlen(body), body);
    return b;
}

/* One SSE event as one HTTP chunk, the way real upstreams flush them. */
static void sse_chunk(buf_t *b, const char *json) {
    size_t n = strlen(json) + 8; /* "data: " + json + "\n\n" */
    buf_printf(b, "%zx\r\ndata: %s\n\n\r\n", n, json);
}

static buf_t stream_response(int with_usage) {
    buf_t b = {0};
    char ev[1024];
    const char *head = "{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\","
                       "\"created\":1700000000,\"model\":\"%s\",";
    buf_printf(&b, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                   "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n");
    char prefix[256];
    snprintf(prefix, sizeof prefix, head, MODEL);
    snprintf(ev, sizeof ev,
             "%s\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
             "\"finish_reason\":null}]}", prefix);
    sse_chunk(&b, ev);
    for (size_t i = 0; i < sizeof WORDS / sizeof WORDS[0]; i++) {
        snprintf(ev, sizeof ev,
                 "%s\"choices\":[{\"index\":0,\"delta\":{\"content\":\"%s\"},"
                 "\"finish_reason\":null}]}", prefix, WORDS[i]);
        sse_chunk(&b, ev);
    }
    snprintf(ev, sizeof ev,
             "%s\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}", prefix);
    sse_chunk(&b, ev);
    if (with_usage) {
        snprintf(ev, sizeof ev,
                 "%s\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":9,"
                 "\"total_tokens\":21}}", prefix);
        sse_chunk(&b, ev);
    }
    const char *done = "data: [DONE]\n\n";
    buf_printf(&b, "%zx\r\n%s\r\n0\r\n\r\n", strlen(done), done);
    return b;
}

static void build_responses(void) {
    char body[1024];
    snprintf(body, sizeof body,
             "{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion\",\"created\":1700000000,"
             "\"model\":\"%s\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
             "\"content\":\"Hello! This is a fast fake upstream.\"},\"logprobs\":null,"
             "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":12,"
             "\"completion_tokens\":9,\"total_tokens\":21}}", MODEL);
    resp_json = simple_response("200 OK", "application/json", body);
    resp_stream_usage = stream_response(1);
    resp_stream_plain = stream_response(0);
    snprintf(body, sizeof body,
             "{\"object\":\"list\",\"data\":[{\"id\":\"%s\",\"object\":\"model\","
             "\"created\":1700000000,\"owned_by\":\"bench\"}]}", MODEL);
    resp_models = simple_response("200 OK", "application/json", body);
    resp_health = simple_response("200 OK", "text/plain", "ok");
    resp_404 = simple_response("404 Not Found", "application/json",
                               "{\"error\":{\"message\":\"not found\",\"type\":\"not_found\"}}");
    buf_append(&resp_continue, "HTTP/1.1 100 Continue\r\n\r\n", 25);
}

/* Case-insensitive search for a header's value within the header block; NULL when absent. */
static const char *header_value(const char *hdrs, size_t hlen, const char *name) {
    size_t nlen = strlen(name);
    const char *p = hdrs, *end = hdrs + hlen;
    while (p < end) {
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (!eol) eol = end;
        if ((size_t)(eol - p) > nlen && strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
            const char *v = p + nlen + 1;
            while (v < eol && (*v == ' ' || *v == '\t')) v++;
            return v;
        }
        p = eol + 2;
    }
    return NULL;
}

/* True when `"key"` appears followed by optional blanks, ':', blanks and `true`. */
static int key_is_true(const char *body, size_t len, const char *quoted_key) {
    size_t klen = strlen(quoted_key);
    const char *p = body, *end = body + len;
    while ((p = memmem(p, (size_t)(end - p), quoted_key, klen)) != NULL) {
        const char *q = p + klen;
        while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')) q++;
        if (q < end && *q == ':') {
            q++;
            while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')) q++;
            if ((size_t)(end - q) >= 4 && memcmp(q, "true", 4) == 0) return 1;
        }
        p += klen;
    }
    return 0;
}

/* Length of a complete chunked body at `p`, or -1 when more bytes are needed. */
static long chunked_length(const char *p, size_t avail) {
    size_t off = 0;
    for (;;) {
        const char *eol = memmem(p + off, avail - off, "\r\n", 2);
        if (!eol) return -1;
        unsigned long size = strtoul(p + off, NULL, 16);
        off = (size_t)(eol - p) + 2;
        if (size == 0) {
            /* skip trailers up to the empty line */
            for (;;) {
                const char *e = memmem(p + off, avail - off, "\r\n", 2);
                if (!e) return -1;
                size_t l = (size_t)(e - (p + off));
                off += l + 2;
                if (l == 0) return (long)off;
            }
        }
        if (off + size + 2 > avail) return -1;
        off += size + 2;
    }
}

static void queue(conn_t *c, const buf_t *b) {
    if (c->out_len + b->len > 0) {
        c->out = realloc(c->out, c->out_len + b->len);
        memcpy(c->out + c->out_len, b->data, b->len);
        c->out_len += b->len;
    }
}

static const buf_t *route(const char *req, size_t hlen, const char *body, size_t blen) {
    if (strncmp(req, "POST /v1/chat/completions", 25) == 0 && (req[25] == ' ' || req[25] == '?')) {
        if (key_is_true(body, blen, "\"stream\"")) {
            __sync_fetch_and_add(&stats->stream, 1);
            return key_is_true(body, blen, "\"include_usage\"") ? &resp_stream_usage
                                                                 : &resp_stream_plain;
        }
        __sync_fetch_and_add(&stats->chat, 1);
        return &resp_json;
    }
    (void)hlen;
    if (strncmp(req, "GET /v1/models ", 15) == 0) return &resp_models;
    if (strncmp(req, "GET /health ", 12) == 0) return &resp_health;
    return &resp_404;
}

static buf_t stats_response(void) {
    char body[128];
    snprintf(body, sizeof body, "{\"chat\":%ld,\"stream\":%ld}", stats->chat, stats->stream);
    return simple_response("200 OK", "application/json", body);
}

/* Consume every complete request in the input buffer; returns -1 on a malformed request. */
static int process_input(conn_t *c) {
    size_t off = 0;
    while (off < c->in_len) {
        char *start = c->in + off;
        size_t avail = c->in_len - off;
        char *hend = memmem(start, avail, "\r\n\r\n", 4);
        if (!hend) break;
        size_t hlen = (size_t)(hend - start) + 4;
        const char *cl = header_value(start, hlen, "Content-Length");
        const char *te = header_value(start, hlen, "Transfer-Encoding");
        long blen = 0;
        if (te && strncasecmp(te, "chunked", 7) == 0) {
            blen = chunked_length(start + hlen, avail - hlen);
        } else if (cl) {
            blen = strtol(cl, NULL, 10);
            if (blen < 0) return -1;
            if ((size_t)blen > avail - hlen) blen = -1;
        }
        if (blen < 0) {
            const char *ex = header_value(start, hlen, "Expect");
            if (ex && strncasecmp(ex, "100-continue", 12) == 0 && avail == hlen)
                queue(c, &resp_continue);
            break;
        }
        const char *conn = header_value(start, hlen, "Connection");
        if (conn && strncasecmp(conn, "close", 5) == 0) c->close_after = 1;
        if (strncmp(start, "GET /stats ", 11) == 0) {
            buf_t s = stats_response();
            queue(c, &s);
            free(s.data);
        } else {
            queue(c, route(start, hlen, start + hlen, (size_t)blen));
        }
        off += hlen + (size_t)blen;
        if (c->close_after) break;
    }
    if (off > 0) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
    return 0;
}

/* Write pending output; returns 1 when all was written, 0 when the socket is full, -1 on error. */
static int flush_output(conn_t *c) {
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
        c->out_off += (size_t)n;
    }
    c->out_off = c->out_len = 0;
    return 1;
}

static void close_conn(int ep, conn_t *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->in);
    free(c->out);
    free(c);
}

static int listen_on(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 4096) < 0) {
        perror("fake_upstream: bind/listen");
        exit(1);
    }
    return fd;
}

static void serve(int port) {
    int lfd = listen_on(port);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event events[256];
    for (;;) {
        int n = epoll_wait(ep, events, 256, -1);
        for (int i = 0; i < n; i++) {
            conn_t *c = events[i].data.ptr;
            if (c == NULL) {
                int cfd;
                while ((cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    int one = 1;
                    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conn_t *nc = calloc(1, sizeof *nc);
                    nc->fd = cfd;
                    struct epoll_event cev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = nc};
                    epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &cev);
                }
                continue;
            }
            int dead = 0;
            if (events[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
                for (;;) {
                    if (c->in_cap - c->in_len < 65536) {
                        c->in_cap = c->in_cap ? c->in_cap * 2 : 131072;
                        c->in = realloc(c->in, c->in_cap);
                    }
                    ssize_t r = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
                    if (r > 0) {
                        c->in_len += (size_t)r;
                        continue;
                    }
                    if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) dead = 1;
                    break;
                }
                if (process_input(c) < 0) dead = 1;
            }
            int w = flush_output(c);
            if (w < 0 || (w == 1 && (dead || c->close_after))) {
                close_conn(ep, c);
                continue;
            }
            struct epoll_event mev = {.events = EPOLLIN | EPOLLRDHUP | (w == 0 ? EPOLLOUT : 0),
                                      .data.ptr = c};
            epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &mev);
        }
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s PORT [WORKERS]\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    int workers = argc > 2 ? atoi(argv[2]) : 1;
    stats = mmap(NULL, sizeof *stats, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    build_responses();
    signal(SIGPIPE, SIG_IGN);
    for (int i = 1; i < workers; i++) {
        if (fork() == 0) {
            prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the harness's process */
            serve(port);
        }
    }
    serve(port);
    return 0;
}
