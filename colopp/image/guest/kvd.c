/*
 * kvd: the colopp guest's HTTP key-value server.
 *
 * One process, one thread, one poll() loop: the same request sequence always
 * produces the same responses and the same disk writes, which keeps a COLO
 * primary and secondary in step.  Built statically on the host:
 *     gcc -static -O2 -o kvd kvd.c
 *
 * HTTP contract (port 80 by default):
 *   GET|HEAD /health          200 "ok\n"
 *   GET|HEAD /kv/{key}        200 stored bytes, or 404
 *   PUT|POST /kv/{key}        200 once the value is durable (temp file, fsync,
 *                             rename, fsync dir); Content-Length required (411),
 *                             values up to 64 KiB (413)
 *   GET|HEAD /counter         current value of an in-RAM counter
 *   POST /counter             increments it, returns the new value
 *   GET|HEAD /random          16 random bytes in hex + time of day (differs on
 *                             purpose between primary and secondary)
 * Keys match [A-Za-z0-9_-]{1,64}.  Bad request line or key: 400; unknown path:
 * 404; wrong method: 405 (with Allow).  HTTP/1.1 keep-alive and pipelining;
 * "Connection: close" and HTTP/1.0 semantics honoured.  No Date header.
 *
 * Usage: kvd [-p PORT] [-d DATADIR]
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#define MAX_CONNS 1000
#define MAX_HEAD 8192
#define MAX_VALUE 65536
#define MAX_KEY 64
#define MAX_DRAIN (256 * 1024)

enum conn_state { READING, DRAINING };

struct conn {
    int fd;
    enum conn_state state;
    char *in;
    size_t in_len, in_cap;
    char *out;
    size_t out_len, out_off, out_cap;
    int close_after; /* close once out is flushed */
    int sent_continue; /* "100 Continue" already sent for the pending request */
    int peer_eof;      /* the client half-closed: answer what is buffered, then close */
    int keep_alive_10; /* an HTTP/1.0 client asked for keep-alive: say so */
    size_t drained;
};

struct request {
    char method[16];
    char target[256];
    int http10;
    int keep_alive;
    long long content_length; /* -1: absent */
    int chunked;
    int expect_continue;
    size_t head_len;
};

static struct conn conns[MAX_CONNS];
static int nconns;
static int listen_fd = -1;
static int data_dir_fd = -1;
static uint64_t counter;
static int urandom_fd = -1;

static void die(const char *what)
{
    fprintf(stderr, "kvd: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* ---- buffers ------------------------------------------------------------ */

static int reserve(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : 1024;
    while (ncap < need)
        ncap *= 2;
    char *n = realloc(*buf, ncap);
    if (!n)
        return -1;
    *buf = n;
    *cap = ncap;
    return 0;
}

static int out_append(struct conn *c, const char *data, size_t len)
{
    if (reserve(&c->out, &c->out_cap, c->out_len + len) < 0)
        return -1;
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
    return 0;
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
    }
}

/* Queue one complete response.  body may be NULL when len is 0 or for HEAD. */
static void respond(struct conn *c, int status, const char *ctype, const char *body,
                    size_t len, int head_only, const char *extra_header)
{
    char hdr[512];
    int n = snprintf(hdr, sizeof hdr,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%s\r\n",
                     status, reason_phrase(status), ctype, len, extra_header ? extra_header : "",
                     c->close_after     ? "Connection: close\r\n"
                     : c->keep_alive_10 ? "Connection: keep-alive\r\n"
                                        : "");
    if (out_append(c, hdr, (size_t)n) < 0 || (!head_only && len && out_append(c, body, len) < 0))
        c->close_after = 1, c->out_len = 0; /* out of memory: drop the connection */
}

static void respond_text(struct conn *c, int status, const char *text, int head_only,
                         const char *extra_header)
{
    respond(c, status, "text/plain", text, strlen(text), head_only, extra_header);
}

/* ---- request parsing ---------------------------------------------------- */

/* Find the end of the header block; returns its length or 0 if incomplete. */
static size_t find_head_end(const char *buf, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++) {
        if (buf[i] != '\n')
            continue;
        if (buf[i + 1] == '\n')
            return i + 2;
        if (buf[i + 1] == '\r' && i + 2 < len && buf[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

static int header_has_token(const char *value, const char *token)
{
    size_t tl = strlen(token);
    const char *p = value;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *start = p;
        while (*p && *p != ',')
            p++;
        const char *end = p;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if ((size_t)(end - start) == tl && strncasecmp(start, token, tl) == 0)
            return 1;
    }
    return 0;
}

/* Parse the head in place (NUL-terminates lines).  Returns 0 or an HTTP status. */
static int parse_head(char *head, size_t head_len, struct request *r)
{
    memset(r, 0, sizeof *r);
    r->content_length = -1;
    r->head_len = head_len;
    head[head_len - 1] = '\0';

    char *line = head;
    char *next = strchr(line, '\n');
    if (!next)
        return 400;
    *next++ = '\0';
    size_t ll = strlen(line);
    if (ll && line[ll - 1] == '\r')
        line[--ll] = '\0';

    /* request line: METHOD SP target SP HTTP/1.x */
    char *sp1 = strchr(line, ' ');
    if (!sp1 || sp1 == line || (size_t)(sp1 - line) >= sizeof r->method)
        return 400;
    char *sp2 = strchr(sp1 + 1, ' ');
    if (!sp2 || sp2 == sp1 + 1)
        return 400;
    if (strchr(sp2 + 1, ' '))
        return 400;
    memcpy(r->method, line, (size_t)(sp1 - line));
    for (char *m = r->method; *m; m++)
        if (!isupper((unsigned char)*m))
            return 400;
    size_t tlen = (size_t)(sp2 - sp1 - 1);
    if (tlen >= sizeof r->target)
        return 414;
    memcpy(r->target, sp1 + 1, tlen);
    r->target[tlen] = '\0';
    if (r->target[0] != '/')
        return 400;
    const char *version = sp2 + 1;
    if (strcmp(version, "HTTP/1.1") == 0)
        r->http10 = 0;
    else if (strcmp(version, "HTTP/1.0") == 0)
        r->http10 = 1;
    else if (strncmp(version, "HTTP/", 5) == 0)
        return 505;
    else
        return 400;
    r->keep_alive = !r->http10;

    int seen_length = 0;
    for (line = next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        ll = strlen(line);
        if (ll && line[ll - 1] == '\r')
            line[--ll] = '\0';
        if (ll == 0)
            break;
        if (line[0] == ' ' || line[0] == '\t')
            return 400; /* obsolete line folding */
        char *colon = strchr(line, ':');
        if (!colon || colon == line)
            return 400;
        *colon = '\0';
        for (char *h = line; *h; h++)
            if (*h == ' ' || *h == '\t')
                return 400;
        char *value = colon + 1;
        while (*value == ' ' || *value == '\t')
            value++;
        char *vend = value + strlen(value);
        while (vend > value && (vend[-1] == ' ' || vend[-1] == '\t'))
            *--vend = '\0';

        if (strcasecmp(line, "Content-Length") == 0) {
            if (!*value)
                return 400;
            long long v = 0;
            for (const char *d = value; *d; d++) {
                if (!isdigit((unsigned char)*d))
                    return 400;
                if (v > 1000000000000LL)
                    return 413;
                v = v * 10 + (*d - '0');
            }
            if (seen_length && v != r->content_length)
                return 400;
            seen_length = 1;
            r->content_length = v;
        } else if (strcasecmp(line, "Connection") == 0) {
            if (header_has_token(value, "close"))
                r->keep_alive = 0;
            else if (header_has_token(value, "keep-alive"))
                r->keep_alive = 1;
        } else if (strcasecmp(line, "Transfer-Encoding") == 0) {
            r->chunked = 1;
        } else if (strcasecmp(line, "Expect") == 0) {
            if (strcasecmp(value, "100-continue") == 0)
                r->expect_continue = 1;
        }
    }
    return 0;
}

static int valid_key(const char *key)
{
    size_t n = 0;
    for (; key[n]; n++) {
        char ch = key[n];
        if (!(isalnum((unsigned char)ch) || ch == '_' || ch == '-'))
            return 0;
        if (n >= MAX_KEY)
            return 0;
    }
    return n >= 1;
}

/* ---- storage ------------------------------------------------------------ */

static int write_all(int fd, const char *buf, size_t len)
{
    while (len) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Durable write: temp file, fsync, rename over the key, fsync the directory. */
static int store_value(const char *key, const char *value, size_t len)
{
    char tmp[sizeof ((struct request *)0)->target + 8];
    snprintf(tmp, sizeof tmp, ".tmp-%s", key);
    int fd = openat(data_dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    if (write_all(fd, value, len) < 0 || fsync(fd) < 0) {
        int saved = errno;
        close(fd);
        unlinkat(data_dir_fd, tmp, 0);
        errno = saved;
        return -1;
    }
    if (close(fd) < 0 || renameat(data_dir_fd, tmp, data_dir_fd, key) < 0)
        return -1;
    return fsync(data_dir_fd);
}

/* Returns the value length, -1 if absent, -2 on error; *out is malloc'ed. */
static ssize_t load_value(const char *key, char **out)
{
    *out = NULL;
    int fd = openat(data_dir_fd, key, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? -1 : -2;
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > MAX_VALUE) {
        close(fd);
        return -2;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        close(fd);
        return -2;
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    *out = buf;
    return (ssize_t)got;
}

/* ---- routes ------------------------------------------------------------- */

static int is_read_method(const char *m) { return !strcmp(m, "GET") || !strcmp(m, "HEAD"); }

static void route_kv(struct conn *c, const struct request *r, const char *key, const char *body)
{
    int head_only = !strcmp(r->method, "HEAD");
    if (is_read_method(r->method)) {
        char *value;
        ssize_t n = load_value(key, &value);
        if (n == -1)
            respond_text(c, 404, "no such key\n", head_only, NULL);
        else if (n < 0)
            respond_text(c, 500, "read failed\n", head_only, NULL);
        else
            respond(c, 200, "application/octet-stream", value, (size_t)n, head_only, NULL);
        free(value);
    } else if (!strcmp(r->method, "PUT") || !strcmp(r->method, "POST")) {
        if (store_value(key, body, (size_t)r->content_length) < 0)
            respond_text(c, 500, "write failed\n", 0, NULL);
        else
            respond_text(c, 200, "stored\n", 0, NULL);
    } else {
        respond_text(c, 405, "method not allowed\n", 0, "Allow: GET, HEAD, PUT, POST\r\n");
    }
}

static void route_random(struct conn *c, int head_only)
{
    unsigned char raw[16] = {0};
    ssize_t got = read(urandom_fd, raw, sizeof raw);
    (void)got; /* a short read still yields an answer; divergence is the point */
    struct timeval tv;
    gettimeofday(&tv, NULL);
    char text[96];
    int n = 0;
    for (size_t i = 0; i < sizeof raw; i++)
        n += snprintf(text + n, sizeof text - (size_t)n, "%02x", raw[i]);
    snprintf(text + n, sizeof text - (size_t)n, " %lld.%06ld\n", (long long)tv.tv_sec,
             (long)tv.tv_usec);
    respond_text(c, 200, text, head_only, NULL);
}

static void dispatch(struct conn *c, const struct request *r, const char *body)
{
    char path[sizeof r->target];
    strcpy(path, r->target);
    char *query = strchr(path, '?');
    if (query)
        *query = '\0';
    int head_only = !strcmp(r->method, "HEAD");
    char text[64];

    if (!strncmp(path, "/kv/", 4) || !strcmp(path, "/kv")) {
        const char *key = path[3] ? path + 4 : "";
        if (!valid_key(key))
            respond_text(c, 400, "bad key: want [A-Za-z0-9_-]{1,64}\n", head_only, NULL);
        else
            route_kv(c, r, key, body);
    } else if (!strcmp(path, "/health")) {
        if (is_read_method(r->method))
            respond_text(c, 200, "ok\n", head_only, NULL);
        else
            respond_text(c, 405, "method not allowed\n", 0, "Allow: GET, HEAD\r\n");
    } else if (!strcmp(path, "/counter")) {
        if (!strcmp(r->method, "POST"))
            counter++;
        if (is_read_method(r->method) || !strcmp(r->method, "POST")) {
            snprintf(text, sizeof text, "%" PRIu64 "\n", counter);
            respond_text(c, 200, text, head_only, NULL);
        } else {
            respond_text(c, 405, "method not allowed\n", 0, "Allow: GET, HEAD, POST\r\n");
        }
    } else if (!strcmp(path, "/random")) {
        if (is_read_method(r->method))
            route_random(c, head_only);
        else
            respond_text(c, 405, "method not allowed\n", 0, "Allow: GET, HEAD\r\n");
    } else {
        respond_text(c, 404, "not found\n", head_only, NULL);
    }
}

/* Does this request need a body before dispatch, and is a length mandatory? */
static int needs_length(const struct request *r, const char *target)
{
    int write = !strcmp(r->method, "PUT") || !strcmp(r->method, "POST");
    return write && (!strncmp(target, "/kv/", 4) || !strcmp(target, "/kv"));
}

/* ---- connections -------------------------------------------------------- */

static void conn_close(int i)
{
    struct conn *c = &conns[i];
    close(c->fd);
    free(c->in);
    free(c->out);
    conns[i] = conns[--nconns];
    memset(&conns[nconns], 0, sizeof conns[nconns]);
}

static void fail_request(struct conn *c, int status)
{
    /* After a framing error the rest of the stream cannot be trusted. */
    c->close_after = 1;
    c->in_len = 0;
    respond_text(c, status, status == 413   ? "value too large (max 65536 bytes)\n"
                            : status == 411 ? "Content-Length required\n"
                                            : "bad request\n",
                 0, NULL);
}

/* Handle as many complete requests as are buffered, one at a time: the next
 * request is parsed only after the previous response has been flushed, which
 * bounds the output buffer. */
static void process_input(struct conn *c)
{
    while (!c->close_after && c->out_len == 0 && c->in_len > 0) {
        size_t head_len = find_head_end(c->in, c->in_len);
        if (!head_len) {
            if (c->in_len >= MAX_HEAD)
                fail_request(c, 431);
            return;
        }
        if (head_len > MAX_HEAD) {
            fail_request(c, 431);
            return;
        }
        char head[MAX_HEAD + 1];
        memcpy(head, c->in, head_len);
        head[head_len] = '\0';
        struct request r;
        int status = parse_head(head, head_len, &r);
        if (status) {
            fail_request(c, status);
            return;
        }
        if (r.chunked) {
            fail_request(c, 411); /* Content-Length is the only framing we accept */
            return;
        }
        if (needs_length(&r, r.target) && r.content_length < 0) {
            fail_request(c, 411);
            return;
        }
        long long body_len = r.content_length < 0 ? 0 : r.content_length;
        if (body_len > MAX_VALUE) {
            fail_request(c, 413);
            return;
        }
        size_t total = head_len + (size_t)body_len;
        if (c->in_len < total) {
            if (reserve(&c->in, &c->in_cap, total) < 0) {
                fail_request(c, 413);
                return;
            }
            if (r.expect_continue && !r.http10 && !c->sent_continue) {
                out_append(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
                c->sent_continue = 1;
            }
            return;
        }
        c->sent_continue = 0;
        if (!r.keep_alive)
            c->close_after = 1;
        c->keep_alive_10 = r.http10 && r.keep_alive;
        char *body = c->in + head_len;
        dispatch(c, &r, body);
        memmove(c->in, c->in + total, c->in_len - total);
        c->in_len -= total;
        if (c->in_cap > 2 * MAX_HEAD && c->in_len < MAX_HEAD) {
            char *n = realloc(c->in, MAX_HEAD);
            if (n)
                c->in = n, c->in_cap = MAX_HEAD;
        }
    }
}

/* Returns -1 when the connection must be closed now. */
static int flush_output(struct conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return -1;
        }
        c->out_off += (size_t)n;
    }
    c->out_off = c->out_len = 0;
    if (c->out_cap > 2 * MAX_VALUE) {
        free(c->out);
        c->out = NULL;
        c->out_cap = 0;
    }
    if (c->close_after && c->state == READING) {
        /* Half-close and drain so the client reads the whole response
         * instead of a reset. */
        shutdown(c->fd, SHUT_WR);
        c->state = DRAINING;
    }
    return 0;
}

/* Returns -1 when the connection must be closed now. */
static int read_input(struct conn *c)
{
    for (;;) {
        if (c->state == DRAINING) {
            char sink[4096];
            ssize_t n = recv(c->fd, sink, sizeof sink, 0);
            if (n > 0) {
                c->drained += (size_t)n;
                if (c->drained > MAX_DRAIN)
                    return -1;
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                return 0;
            if (n < 0 && errno == EINTR)
                continue;
            return -1;
        }
        /* The buffer grows only when process_input reserved room for a body. */
        if (reserve(&c->in, &c->in_cap, MAX_HEAD) < 0)
            return -1;
        size_t room = c->in_cap - c->in_len;
        if (room == 0)
            return 0;
        ssize_t n = recv(c->fd, c->in + c->in_len, room, 0);
        if (n > 0) {
            /* Acknowledge the request now, not piggybacked on the response: a COLO
             * secondary's early ACK is what lets colopp pre-release the primary's
             * answer to a read (README: pre-release). */
            int quick = 1;
            setsockopt(c->fd, IPPROTO_TCP, TCP_QUICKACK, &quick, sizeof quick);
            c->in_len += (size_t)n;
            if ((size_t)n < room)
                return 0;
            continue;
        }
        if (n == 0) {
            c->peer_eof = 1;
            return 0;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        if (errno == EINTR)
            continue;
        return -1;
    }
}

/* Answer buffered requests and flush; returns 1 when the connection is done. */
static int pump(struct conn *c)
{
    for (;;) {
        if (c->state == READING)
            process_input(c);
        if (!c->out_len)
            break;
        if (flush_output(c) < 0)
            return 1;
        if (c->out_len)
            return 0; /* socket full: wait for POLLOUT */
    }
    return c->peer_eof;
}

static void accept_clients(void)
{
    while (nconns < MAX_CONNS) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return; /* EAGAIN, or a transient error: poll again */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = &conns[nconns++];
        memset(c, 0, sizeof *c);
        c->fd = fd;
        c->state = READING;
    }
}

/* Dual-stack: one IPv6 socket that also takes IPv4 clients (as ::ffff:a.b.c.d); plain
 * IPv4 when the kernel has no IPv6. */
static void open_listener(int port)
{
    int one = 1, zero = 0;
    listen_fd = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listen_fd >= 0) {
        setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        setsockopt(listen_fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
        struct sockaddr_in6 addr6 = {0};
        addr6.sin6_family = AF_INET6;
        addr6.sin6_port = htons((uint16_t)port);
        addr6.sin6_addr = in6addr_any;
        if (bind(listen_fd, (struct sockaddr *)&addr6, sizeof addr6) < 0)
            die("bind");
    } else {
        listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (listen_fd < 0)
            die("socket");
        setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        struct sockaddr_in addr = {0};
        addr.sin_family = AF_INET;
        addr.sin_port = htons((uint16_t)port);
        addr.sin_addr.s_addr = htonl(INADDR_ANY);
        if (bind(listen_fd, (struct sockaddr *)&addr, sizeof addr) < 0)
            die("bind");
    }
    if (listen(listen_fd, 256) < 0)
        die("listen");
}

static void open_data_dir(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s", dir);
    for (char *p = path + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(path, 0755);
            *p = '/';
        }
    }
    mkdir(path, 0755);
    data_dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (data_dir_fd < 0)
        die(dir);
}

static void serve(void)
{
    static struct pollfd fds[MAX_CONNS + 1];
    for (;;) {
        int n = 0;
        fds[n].fd = nconns < MAX_CONNS ? listen_fd : -1;
        fds[n++].events = POLLIN;
        for (int i = 0; i < nconns; i++) {
            struct conn *c = &conns[i];
            fds[n].fd = c->fd;
            /* Read only while no output is pending: bounded buffers. */
            fds[n].events = c->out_len ? POLLOUT : (c->peer_eof ? 0 : POLLIN);
            fds[n++].revents = 0;
        }
        if (poll(fds, (nfds_t)n, -1) < 0) {
            if (errno == EINTR)
                continue;
            die("poll");
        }
        /* Walk backwards: conn_close moves the last connection into slot i. */
        for (int i = nconns - 1; i >= 0; i--) {
            struct conn *c = &conns[i];
            short ev = fds[i + 1].revents;
            if (!ev || fds[i + 1].fd != c->fd)
                continue;
            int dead = 0;
            if (ev & (POLLIN | POLLHUP | POLLERR))
                dead = read_input(c) < 0;
            if (!dead)
                dead = pump(c);
            if (dead)
                conn_close(i);
        }
        if (fds[0].revents & POLLIN)
            accept_clients();
    }
}

int main(int argc, char **argv)
{
    int port = 80;
    const char *dir = "/data/kv";
    int opt;
    while ((opt = getopt(argc, argv, "p:d:")) != -1) {
        if (opt == 'p')
            port = atoi(optarg);
        else if (opt == 'd')
            dir = optarg;
        else {
            fprintf(stderr, "usage: kvd [-p PORT] [-d DATADIR]\n");
            return 2;
        }
    }
    if (port <= 0 || port > 65535) {
        fprintf(stderr, "kvd: bad port\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl = {MAX_CONNS + 64, MAX_CONNS + 64};
    setrlimit(RLIMIT_NOFILE, &rl);
    urandom_fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (urandom_fd < 0)
        die("/dev/urandom");
    open_data_dir(dir);
    open_listener(port);
    serve();
    return 0;
}
