/*
 * connio.c - the connection's socket: output (a send() of our own, else
 * the transport's write), direct I/O, TLS in C, staged closes and the
 * deadlines that cut a client that stops reading or sending.  Part of the
 * connection with conn.c (conn.h).
 *
 * Direct I/O.  After its first read, a plain (not TLS) socket leaves the
 * transport's data path: the transport stops reading, the server's own
 * epoll set watches the socket, and the loop watches that one epoll fd.
 * One loop callback then reads every ready socket with recv() and writes
 * the answers with send(): no transport method call, bytes object or GIL
 * hand-off per read or write.  The transport still owns the socket: it
 * accepted it, closes it, and reports connection_lost; output that the
 * socket cannot take at once goes to the transport, and send() is used
 * again once the transport's buffer is empty.
 *
 * TLS in C (tls.c, docs/tls.md).  When the server has an SSL_CTX
 * (Server._use_tls), uvloop serves plain TCP and every connection takes
 * its socket over at its first read, whose bytes start the handshake
 * (conn_tls_attach): OpenSSL reads the socket, and the records it writes
 * are sent the way plain output is (conn_tls_push).  Such a connection is
 * a direct one in every other respect; conn_ssl(c) is its SSL.
 */
#include "conn.h"

#include <errno.h>
#include <linux/sockios.h> /* SIOCOUTQ */
#include <linux/tcp.h> /* struct tcp_info with tcpi_bytes_acked (glibc's lacks it) */
#include <netinet/in.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

/* Direct I/O: bytes read per recv(), and events taken per epoll_wait(). */
#define CONN_RBUF 65536
#define CONN_EVENTS 128
#define CONN_IO_ROUNDS 8

static int conn_linger(ConnObject *c);

/* ========================================================================
 * Output
 */

/* Direct I/O may send(): nothing of ours waits in the transport.  Asks the
 * transport only after output went through it. */
static int conn_io_writable(ConnObject *c)
{
    PyObject *r;
    long n;
    if (LIKELY(!c->tpending))
        return 1;
    r = PyObject_CallMethodNoArgs(c->transport, c->st->s_get_write_buffer_size);
    if (r == NULL) {
        PyErr_Clear();
        return 0;
    }
    n = PyLong_AsLong(r);
    Py_DECREF(r);
    if (n != 0) {
        PyErr_Clear();
        return 0;
    }
    c->tpending = 0;
    return 1;
}

/* conn_abort, keeping the exception that is set. */
static NOINLINE void conn_abort_kept(ConnObject *c)
{
    PyObject *et, *ev, *etb;
    PyErr_Fetch(&et, &ev, &etb);
    conn_abort(c);
    PyErr_Restore(et, ev, etb);
}

/* Send the records the last SSL call wrote (the server's tls_out): with
 * send() when nothing of ours waits in the transport, the rest through
 * the transport, whose buffer then pauses us as for plain output.
 * Returns 0, or -1 with an exception set. */
static int conn_tls_push(ConnObject *c)
{
    tls_out *o = &c->server->tls_out;
    PyObject *b = NULL, *res = NULL;
    size_t off = 0;
    int rc = -1;
    if (o->len == 0)
        return 0;
    if (c->closed || c->aborted || c->transport == NULL || c->fd < 0)
        goto dropped;
    if (conn_io_writable(c)) {
        ssize_t n = send(c->fd, o->p, o->len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (LIKELY(n == (ssize_t)o->len))
            goto dropped; /* all sent */
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            o->len = 0;
            conn_io_end(c);
            c->aborted = 1;
            res = PyObject_CallMethodNoArgs(c->transport, c->st->s_abort);
            if (res == NULL)
                goto error;
            goto ok;
        }
        off = n > 0 ? (size_t)n : 0;
    }
    b = PyBytes_FromStringAndSize(o->p + off, (Py_ssize_t)(o->len - off));
    o->len = 0;
    if (b == NULL)
        goto error;
    c->tpending = 1;
    res = PyObject_CallMethodOneArg(c->transport, c->st->s_write, b);
    if (res == NULL)
        goto error;
    goto ok;
dropped:
    o->len = 0;
ok:
    rc = 0;
error:
    if (UNLIKELY(o->cap > (1u << 20))) {
        /* a large answer grew it: not kept for the server's life */
        PyMem_RawFree(o->p);
        o->p = NULL;
        o->cap = 0;
    }
    Py_XDECREF(b);
    Py_XDECREF(res);
    return rc;
}

/* An SSL_write failed (out of memory, or a broken SSL state): what it
 * would have carried is lost, so the connection is aborted; before the
 * handshake is done (a 408 for a client that never finished it), the
 * output is only dropped and the close goes on. */
static NOINLINE void conn_tls_failed(ConnObject *c)
{
    c->server->tls_out.len = 0;
    if (!tls_ready(conn_ssl(c)) || c->closed || c->aborted || c->transport == NULL)
        return;
    conn_abort(c);
}

/* Encrypt and send n bytes at p over TLS, CONN_TLS_SLICE at a time: the
 * records of a large body go out (or to the transport) as they are made,
 * instead of all of them piling up in tls_out first.  Returns 0 (also when
 * the connection had to be aborted), or -1 with an exception set. */
#define CONN_TLS_SLICE (256 * 1024)
static int conn_tls_send(ConnObject *c, const char *p, size_t n)
{
    while (n > 0) {
        size_t k = n < CONN_TLS_SLICE ? n : CONN_TLS_SLICE;
        if (conn_ssl(c) == NULL || c->aborted || c->closed)
            return 0;
        if (UNLIKELY(tls_write(conn_ssl(c), p, k) < 0)) {
            conn_tls_failed(c);
            return 0;
        }
        if (conn_tls_push(c) < 0)
            return -1;
        p += k;
        n -= k;
    }
    return 0;
}

/* conn_flush's out_chunks (bytes-like items, large bodies) over TLS, in
 * turn.  Returns 0, or -1 with an exception set. */
static NOINLINE int conn_tls_write_chunks(ConnObject *c, PyObject *chunks)
{
    Py_ssize_t i;
    for (i = 0; i < PyList_GET_SIZE(chunks); i++) {
        Py_buffer v;
        int rc;
        if (PyObject_GetBuffer(PyList_GET_ITEM(chunks, i), &v, PyBUF_SIMPLE) < 0)
            return -1;
        rc = conn_tls_send(c, v.buf, (size_t)v.len);
        PyBuffer_Release(&v);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* Our close_notify, sent before the transport closes (or half-closes) the
 * socket; once, and not after an abort. */
static void conn_tls_bye(ConnObject *c)
{
    if (conn_ssl(c) == NULL || c->aborted || c->closed || c->transport == NULL)
        return;
    tls_shutdown(conn_ssl(c));
    if (conn_tls_push(c) < 0)
        PyErr_WriteUnraisable((PyObject *)c);
}

/* Write st->out (and any large bodies in st->out_chunks) in one call: a
 * send() of our own under direct I/O, else the transport's write.
 * Returns 0 or -1 with an exception set; then the answers that did not
 * go out are lost, and the connection is aborted rather than left to a
 * client that would wait for them. */
int conn_flush(ConnObject *c)
{
    fulmen_state *st = c->st;
    PyObject *b = NULL, *res = NULL;
    int rc = -1;
    if (st->out_len == 0 && st->out_chunks == NULL)
        goto done_ok;
    if (UNLIKELY(st->out_busy) && st->out_conn == c)
        return 0; /* c's head is half written (the app's code runs in a header
                   * value's str()): whoever writes it flushes it whole */
    st->out_big = 0;
    if (c->closed || c->aborted || c->transport == NULL) {
        st->out_len = 0;
        Py_CLEAR(st->out_chunks);
        goto done_ok;
    }
    c->server->n_writes++;
    if (st->out_chunks != NULL) {
        PyObject *chunks = st->out_chunks;
        st->out_chunks = NULL;
        if (st->out_len) {
            b = PyBytes_FromStringAndSize(st->out, (Py_ssize_t)st->out_len);
            st->out_len = 0;
            if (b == NULL || PyList_Append(chunks, b) < 0) {
                Py_DECREF(chunks);
                goto error;
            }
        }
        if (conn_ssl(c) != NULL) {
            rc = conn_tls_write_chunks(c, chunks);
            Py_DECREF(chunks);
            if (rc < 0)
                goto error;
            rc = -1;
            goto done_ok;
        }
        c->tpending = 1;
        res = PyObject_CallMethodOneArg(c->transport, st->s_writelines, chunks);
        Py_DECREF(chunks);
    } else {
        size_t off = 0;
        if (conn_ssl(c) != NULL) {
            int w;
            if (LIKELY(st->out_len <= CONN_TLS_SLICE)) {
                w = tls_write(conn_ssl(c), st->out, st->out_len);
                if (UNLIKELY(w < 0)) {
                    conn_tls_failed(c); /* (no exception: aborted) */
                    w = 0;
                } else {
                    w = conn_tls_push(c);
                }
            } else {
                w = conn_tls_send(c, st->out, st->out_len);
            }
            st->out_len = 0;
            if (w < 0)
                goto error;
            goto done_ok;
        }
        if (c->fd >= 0 && conn_io_writable(c)) {
            ssize_t n = send(c->fd, st->out, st->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (LIKELY(n == (ssize_t)st->out_len)) {
                st->out_len = 0;
                goto done_ok;
            }
            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                /* the peer is gone: what it would have got is dropped */
                st->out_len = 0;
                conn_io_end(c);
                c->aborted = 1;
                res = PyObject_CallMethodNoArgs(c->transport, st->s_abort);
                if (res == NULL)
                    goto error;
                goto done_ok;
            }
            off = n > 0 ? (size_t)n : 0; /* the rest waits in the transport */
        }
        b = PyBytes_FromStringAndSize(st->out + off, (Py_ssize_t)(st->out_len - off));
        st->out_len = 0;
        if (b == NULL)
            goto error;
        c->tpending = 1;
        res = PyObject_CallMethodOneArg(c->transport, st->s_write, b);
    }
    if (res == NULL)
        goto error;
done_ok:
    rc = 0;
    if (c->close_after_flush && !c->closed && c->transport != NULL) {
        c->close_after_flush = 0;
        Py_XDECREF(res);
        res = NULL;
        if (!conn_linger(c)) {
            conn_io_end(c);
            conn_tls_bye(c);
            res = PyObject_CallMethodNoArgs(c->transport, st->s_close);
            if (res == NULL)
                rc = -1;
            else
                conn_closing(c);
        }
    }
error:
    Py_XDECREF(b);
    Py_XDECREF(res);
    if (UNLIKELY(st->out_cap > MOD_OUT_KEEP))
        mod_out_trim(st);
    if (UNLIKELY(rc < 0) && !c->closed && !c->aborted && c->transport != NULL)
        conn_abort_kept(c);
    return rc;
}

/* ========================================================================
 * Deadlines: what the client has taken, and the timer each state arms
 */

/* Bytes the transport holds, not yet taken by the client (0 when it
 * cannot say). */
Py_ssize_t conn_unsent(ConnObject *c)
{
    PyObject *r;
    Py_ssize_t n;
    if (c->transport == NULL)
        return 0;
    r = PyObject_CallMethodNoArgs(c->transport, c->st->s_get_write_buffer_size);
    n = r != NULL ? PyLong_AsSsize_t(r) : 0;
    Py_XDECREF(r);
    if (n < 0) {
        PyErr_Clear();
        n = 0;
    }
    return n;
}

/* The transport is a TLS one (those never use direct I/O). */
NOINLINE int conn_tls(ConnObject *c)
{
    PyObject *r;
    if (c->fd >= 0)
        return 0;
    if (!c->tls_known) {
        r = PyObject_CallMethodOneArg(c->transport, c->st->s_get_extra_info,
                                      c->st->s_sslcontext);
        if (r == NULL) {
            PyErr_Clear();
            return 0; /* asked again next time */
        }
        c->is_tls = r != Py_None;
        c->tls_known = 1;
        Py_DECREF(r);
    }
    return c->is_tls;
}

/* The descriptor of the transport's socket, or -1 (none, or an error). */
static int conn_socket_fd(ConnObject *c)
{
    PyObject *sock = PyObject_CallMethodOneArg(c->transport, c->st->s_get_extra_info,
                                               c->st->s_socket);
    PyObject *r = sock != NULL && sock != Py_None
        ? PyObject_CallMethodNoArgs(sock, c->st->s_fileno) : NULL;
    long fd = r != NULL ? PyLong_AsLong(r) : -1;
    Py_XDECREF(r);
    Py_XDECREF(sock);
    PyErr_Clear();
    return fd >= 0 && fd <= INT_MAX ? (int)fd : -1;
}

/* The streamed answer being sent is cut, and its body ends with the
 * connection (HTTP/1.0, no length): the close must be a reset (RST), else
 * the client takes the cut body for a whole one.  (A reset drops what the
 * socket has not sent yet: other bodies show a cut themselves, no last
 * chunk or short of their length, and close normally.) */
NOINLINE void conn_reset_cut_close_delimited(ConnObject *c)
{
    static const struct linger rst = {1, 0};
    int fd = c->fd >= 0 ? c->fd : conn_socket_fd(c);
    if (fd >= 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &rst, sizeof(rst));
}

/* How far the client has got taking what we send, a number that only
 * grows: the bytes it has acknowledged on its TCP connection, or where the
 * kernel cannot say (a unix socket), less the bytes the transport still
 * holds.  A write deadline uses it to tell a client that reads slowly from
 * one that stopped.  (The transport's buffer alone cannot tell: a closing
 * TLS transport hands everything to the socket's transport at once.) */
static NOINLINE uint64_t conn_progress(ConnObject *c)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    int fd = c->fd >= 0 ? c->fd : conn_socket_fd(c);
    memset(&ti, 0, sizeof(ti));
    if (fd >= 0 && getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 &&
        len >= offsetof(struct tcp_info, tcpi_bytes_acked) + sizeof(ti.tcpi_bytes_acked))
        return ti.tcpi_bytes_acked;
    return UINT64_MAX - (uint64_t)conn_unsent(c);
}

/* Bytes written to the socket that the client has not acknowledged yet
 * (the kernel's send queue); 1 when the kernel cannot say. */
static NOINLINE int conn_unacked(ConnObject *c)
{
    int fd = c->fd >= 0 ? c->fd : conn_socket_fd(c);
    int n = 0;
    if (fd < 0 || ioctl(fd, SIOCOUTQ, &n) < 0)
        return 1;
    return n;
}

/* A TLS connection whose client has not yet taken all we sent (the
 * socket's transport, which only the kernel's queue shows, still writes
 * for it); 0 over plain TCP, whose transport says when it is empty. */
int conn_tls_owes(ConnObject *c)
{
    return conn_tls(c) && conn_unacked(c) > 0;
}

/* Arm a deadline by which the client must take some of what we send
 * (timer: CONN_T_WRITE, CONN_T_CLOSING or CONN_T_WSCLOSE), and note how
 * far it has got (conn_took).  Without the memory for that, the deadline
 * cuts it whatever it took. */
NOINLINE void conn_arm_write(ConnObject *c, uint8_t timer, int64_t deadline)
{
    conn_ext *x = conn_ext_get(c);
    c->timer = timer;
    c->deadline = deadline;
    if (x != NULL)
        x->wmark = conn_progress(c);
    else
        PyErr_Clear();
}

/* At such a deadline: has the client taken more since the mark?  (It
 * reads, slowly: the deadline is for a client that stopped reading, not for
 * the time a large answer takes.)  After our WebSocket close frame, only
 * while output is still queued before it: the client then has its time to
 * answer.  After our close, only while output is still on its way: once
 * the client has acknowledged all of it, a TLS connection waits for
 * nothing but the client's close_notify, and the acknowledgement of our
 * last bytes (our close_notify among them) does not say one will come.
 * Moves the mark. */
static int conn_took(ConnObject *c)
{
    uint64_t p;
    int took;
    if (c->ext == NULL)
        return 0;
    p = conn_progress(c);
    took = p > c->ext->wmark && (c->timer != CONN_T_WSCLOSE || conn_unsent(c) > 0) &&
           (c->timer != CONN_T_CLOSING || conn_unsent(c) > 0 || conn_unacked(c) > 0);
    c->ext->wmark = p;
    return took;
}

/* CONN_T_OWED's look at the client's progress: every second, or sooner
 * when a timeout is shorter. */
#define CONN_OWED_LOOK_MS 1000
static int64_t conn_owed_look(ServerObject *srv)
{
    int64_t t = CONN_OWED_LOOK_MS;
    if (srv->body_timeout_ms < t)
        t = srv->body_timeout_ms;
    if (srv->keep_alive_ms < t)
        t = srv->keep_alive_ms;
    return t;
}

/* Re-arm the connection's deadline from its state; now is mod_now_ms(). */
void conn_rearm(ConnObject *c, int64_t now)
{
    ServerObject *srv = c->server;
    if (c->closed) {
        c->timer = CONN_T_NONE;
        c->deadline = 0;
    } else if (c->timer == CONN_T_CLOSING) {
        /* closed by us: only its deadline is left */
    } else if (conn_ws(c) != NULL) {
        if (c->timer != CONN_T_WSCLOSE && !(c->pause & CONN_PAUSE_WRITE)) {
            int64_t d = ws_deadline(c->ext->ws);
            c->timer = d ? CONN_T_WSPING : CONN_T_NONE; /* else the handler decides */
            c->deadline = d;
        } else if (c->timer != CONN_T_WSCLOSE && c->timer != CONN_T_WRITE) {
            conn_arm_write(c, CONN_T_WRITE, now + srv->body_timeout_ms);
        }
    } else if (c->pause & CONN_PAUSE_WRITE) {
        if (c->timer != CONN_T_WRITE)
            conn_arm_write(c, CONN_T_WRITE, now + srv->body_timeout_ms);
    } else if (UNLIKELY(c->server->tls_ctx != NULL) &&
               (conn_ssl(c) == NULL || !tls_ready(conn_ssl(c)))) {
        /* the handshake gets header_timeout from the connection's start,
         * as uvloop's ssl_handshake_timeout did (conn_expire cuts it) */
        if (c->head_start == 0)
            c->head_start = now;
        c->timer = CONN_T_HEAD;
        c->deadline = c->head_start + srv->header_timeout_ms;
    } else if (UNLIKELY(c->timer == CONN_T_WRITE) && !c->lingering && conn_tls(c)) {
        /* resumed over TLS with output still on its way (conn_resume_writing):
         * the deadline stays until the client has it all (conn_expire) */
    } else if (UNLIKELY(c->lingering)) {
        if (c->timer != CONN_T_LINGER && c->timer != CONN_T_WRITE) {
            c->timer = CONN_T_LINGER;
            c->deadline = now + CONN_LINGER_MS;
        }
    } else if (conn_bstream(c) != NULL && !(c->pause & CONN_PAUSE_BODY)) {
        c->timer = CONN_T_BODY; /* a streamed body: bytes must keep coming */
        c->deadline = now + srv->body_timeout_ms;
    } else if (conn_q_len(c) > 0 || c->streaming) {
        /* the app is working on answers: no timer may cut them (a partial
         * request behind them is timed from its first byte once they are
         * out) */
        if (c->head_start == 0 && (c->pending != NULL || c->buf_len > 0))
            c->head_start = now;
        c->timer = CONN_T_NONE;
        c->deadline = 0;
    } else if (c->pending != NULL || c->buf_len > 0) {
        if (c->pending == NULL || c->stage == STAGE_HEAD) {
            if (c->head_start == 0)
                c->head_start = now;
            c->timer = CONN_T_HEAD;
            c->deadline = c->head_start + srv->header_timeout_ms;
            if (srv->stopping && c->deadline > now + 1000)
                c->deadline = now + 1000; /* stopping: a head gets a short drain */
        } else {
            c->timer = CONN_T_BODY;
            c->deadline = now + srv->body_timeout_ms;
        }
    } else if (srv->stopping) {
        /* idle while stopping: a short drain, then the sweep closes it */
        if (c->timer != CONN_T_IDLE || c->deadline == 0 || c->deadline > now + 1000) {
            c->timer = CONN_T_IDLE;
            c->deadline = now + 1000;
        }
    } else if (UNLIKELY(conn_ssl(c) != NULL) || (UNLIKELY(c->fd < 0) && conn_tls(c))) {
        /* (TLS in C too: a client that takes a large answer slowly is
         * idle from when it has it, not from when the kernel has it) */
        if (c->timer != CONN_T_OWED) {
            c->timer = CONN_T_OWED;
            c->deadline = now + conn_owed_look(srv);
            c->owed_looked = 0;
        }
    } else {
        c->timer = CONN_T_IDLE;
        c->deadline = now + srv->keep_alive_ms;
    }
}

/* ========================================================================
 * Direct I/O (see the top of the file)
 */

/* Put c's socket in the server's epoll set, or take it out.  Out rather
 * than muted: a muted socket would still report EPOLLHUP on every wait.
 * Edge-triggered: the kernel does not poll a socket again after reporting
 * it, so conn_io_read() reads until the socket is drained, or re-arms it
 * (adding a socket reports it at once if it is readable).  EPOLLRDHUP says
 * the peer's FIN is in, so that a short read is not taken for drained. */
static void conn_tls_kick(ConnObject *c);

void conn_io_watch(ConnObject *c, int on)
{
    struct epoll_event ev;
    if (c->fd < 0 || (on && c->io_done) || on == c->io_watched)
        return;
    ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
    ev.data.ptr = c;
    if (epoll_ctl(c->server->epfd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, c->fd, &ev) == 0 ||
        !on)
        c->io_watched = (uint8_t)on;
    if (on && c->io_watched && conn_ssl(c) != NULL && tls_pending(conn_ssl(c)))
        conn_tls_kick(c); /* SSL holds input the socket will not report */
}

/* No more reads on c (EOF, an error, or the transport is being closed). */
void conn_io_end(ConnObject *c)
{
    if (c->fd < 0)
        return;
    c->io_done = 1;
    conn_io_watch(c, 0);
}

/* transport.abort(): the connection is gone, or what it carries must not
 * go on; nothing more is read from it or written to it. */
void conn_abort(ConnObject *c)
{
    PyObject *r;
    c->aborted = 1;
    conn_io_end(c);
    r = PyObject_CallMethodNoArgs(c->transport, c->st->s_abort);
    if (r == NULL)
        PyErr_WriteUnraisable((PyObject *)c);
    Py_XDECREF(r);
}

/* The server's epoll set, watched by the loop; made on first use.  Returns
 * 0, -1 with an exception, or -2 when no descriptor was left for it. */
static int conn_io_setup(ServerObject *srv)
{
    PyObject *cb, *r;
    if (srv->epfd >= 0)
        return 0;
    srv->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (srv->epfd < 0)
        return -2; /* no descriptor to spare (EMFILE): not now, no exception */
    cb = PyObject_GetAttrString((PyObject *)srv, "_io_ready");
    r = cb ? PyObject_CallMethod(srv->loop, "add_reader", "iO", srv->epfd, cb) : NULL;
    Py_XDECREF(cb);
    if (r == NULL) {
        close(srv->epfd);
        srv->epfd = -1;
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* After the first read from the transport: take the socket's data path
 * over if it is a plain socket.  Any failure leaves the transport to it. */
void conn_io_attach(ConnObject *c)
{
    ServerObject *srv = c->server;
    int fd, rc;
    c->io_checked = 1;
    if (!srv->direct_io || c->closed || c->closing || c->transport == NULL)
        return;
    if (conn_tls(c) || (fd = conn_socket_fd(c)) < 0)
        return;
    if ((rc = conn_io_setup(srv)) < 0) {
        /* out of descriptors (a flood of connections before the first
         * request): this one stays with the transport and the next one
         * tries again; any other failure turns direct I/O off */
        if (rc == -1) {
            PyErr_WriteUnraisable((PyObject *)c);
            srv->direct_io = 0;
        }
        goto out;
    }
    if (!c->reading_paused) {
        /* the transport stops reading; our epoll set reads instead */
        PyObject *p = PyObject_CallMethodNoArgs(c->transport, c->st->s_pause_reading);
        if (p == NULL)
            goto out;
        Py_DECREF(p);
    }
    c->fd = fd;
    Py_INCREF(c); /* held while c->fd is set: epoll events point at c */
    conn_io_watch(c, !c->reading_paused);
    if (!c->reading_paused && !c->io_watched) {
        /* not watchable after all: give reading back to the transport */
        PyObject *p = PyObject_CallMethodNoArgs(c->transport, c->st->s_resume_reading);
        Py_XDECREF(p);
        c->fd = -1;
        Py_DECREF(c);
    } else {
        srv->n_direct++;
    }
out:
    PyErr_Clear();
}

/* The end of the client's stream (n == 0 from recv, a close_notify or a
 * FIN over TLS): eof_received decides, as the transport would ask it. */
static void conn_io_eof(ConnObject *c)
{
    PyObject *r = conn_eof_received(c, NULL);
    if (r == NULL)
        PyErr_WriteUnraisable((PyObject *)c);
    if (r != Py_True)
        conn_close_transport(c, 0);
    Py_XDECREF(r);
}

/* No more reads on c: the client's end of stream (eof), else an error
 * (a reset, a broken TLS stream), after which the connection is gone. */
static void conn_io_stop(ConnObject *c, int eof)
{
    conn_io_end(c);
    if (eof)
        conn_io_eof(c);
    else if (!c->closed && c->transport != NULL)
        conn_abort(c);
}

/* After a read loop's last round, with maybe more waiting: re-arm c's
 * socket (edge-triggered, it would not be reported again) so that other
 * sockets go first.  Returns whether it did. */
static int conn_io_rearm(ConnObject *c)
{
    struct epoll_event ev;
    if (c->fd < 0 || !c->io_watched || c->io_done || c->closed)
        return 0;
    ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
    ev.data.ptr = c;
    (void)epoll_ctl(c->server->epfd, EPOLL_CTL_MOD, c->fd, &ev);
    return 1;
}

/* The read buffer, at its full size, or NULL (reported) when out of
 * memory.  One bytes object takes every read while nothing keeps it: its
 * size is set to what arrived.  Nobody else holds it then, and no Python
 * code ever sees it (requests copy what they hand out), so no hash of it
 * can be cached. */
static PyObject *conn_rbuf(ConnObject *c)
{
    fulmen_state *st = c->st;
    PyObject *b = st->rbytes;
    if (b == NULL && (b = st->rbytes = PyBytes_FromStringAndSize(NULL, CONN_RBUF)) == NULL) {
        PyErr_WriteUnraisable((PyObject *)c);
        return NULL;
    }
    Py_SET_SIZE(b, CONN_RBUF);
    return b;
}

/* The n bytes read into b (conn_rbuf's) go to conn_data_received. */
static void conn_io_deliver(ConnObject *c, PyObject *b, Py_ssize_t n)
{
    PyObject *r;
    Py_SET_SIZE(b, n);
    PyBytes_AS_STRING(b)[n] = '\0';
    Py_INCREF(b);
    r = conn_data_received(c, b);
    if (Py_REFCNT(b) > 2)
        Py_CLEAR(c->st->rbytes); /* kept (a request that waits): theirs now */
    Py_DECREF(b);
    if (r == NULL)
        PyErr_WriteUnraisable((PyObject *)c);
    Py_XDECREF(r);
}

/* Bytes of a sink's body (STAGE_SINK, conn.c) that a read may put straight
 * into request.body, or 0: at least CONN_SINK_DIRECT still to come, less
 * one, so that the body's last byte comes the usual way and runs the
 * request.  That saves a copy of each large body out of the read buffer. */
#define CONN_SINK_DIRECT (16 * 1024)

static size_t conn_sink_room(ConnObject *c)
{
    RequestObject *req = c->pending;
    size_t want;
    if (c->stage != STAGE_SINK || req == NULL || c->buf_len > 0 || c->closing || c->pause)
        return 0;
    want = (size_t)req->h.content_length - req->body.len;
    return want > CONN_SINK_DIRECT ? want - 1 : 0;
}

/* n bytes of the body were read straight into it: progress, for the
 * body's deadline. */
static void conn_sink_took(ConnObject *c, size_t n)
{
    c->pending->body.len += (uint32_t)n;
    conn_rearm(c, mod_now_ms());
}

/* A TLS connection's socket is readable: SSL_read until it wants more
 * from the socket (it has then drained it: edge-triggered epoll reports
 * the next bytes), the handshake first.  The records SSL writes on the way
 * (the handshake's, session tickets, an alert) are sent at once.  After
 * CONN_TLS_ROUNDS reads, other sockets go first: the socket is re-armed,
 * and input SSL already holds is read from a loop callback. */
#define CONN_TLS_ROUNDS 8
/* A request in plain HTTP on the TLS port (a http:// link to an https
 * server): a 400 in plain HTTP that says so, as nginx gives, then the end
 * of the connection.  What the client sent is read first (up to 64 KiB),
 * so that the close is a FIN, not a reset that could destroy the answer
 * before the client reads it. */
static NOINLINE void conn_tls_plain_http(ConnObject *c)
{
    static const char answer[] =
        "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Length: 48\r\n\r\n"
        "This port speaks HTTPS: use an https:// address\n";
    char sink[4096];
    int i;
    for (i = 0; i < 16 && recv(c->fd, sink, sizeof(sink), MSG_DONTWAIT) > 0; i++)
        ;
    (void)send(c->fd, answer, sizeof(answer) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)shutdown(c->fd, SHUT_WR);
    conn_io_stop(c, 0);
}

static void conn_tls_read(ConnObject *c, uint32_t events)
{
    int rounds, n, was_ready;
    for (rounds = 0; rounds < CONN_TLS_ROUNDS; rounds++) {
        PyObject *b = NULL;
        size_t room;
        if (c->fd < 0 || c->io_done || !c->io_watched || c->closed || conn_ssl(c) == NULL)
            return;
        was_ready = tls_ready(conn_ssl(c));
        if (UNLIKELY((room = conn_sink_room(c)) > 0)) {
            /* straight into request.body, as for plain sockets */
            RequestObject *req = c->pending;
            n = tls_read(conn_ssl(c), PyBytes_AS_STRING(req->py_body) + req->body.len,
                         room > INT_MAX ? INT_MAX : (int)room);
            if (n > 0)
                conn_sink_took(c, (size_t)n);
        } else {
            if ((b = conn_rbuf(c)) == NULL)
                return;
            n = tls_read(conn_ssl(c), PyBytes_AS_STRING(b), CONN_RBUF);
        }
        if (UNLIKELY(c->server->tls_out.len > 0) && conn_tls_push(c) < 0)
            PyErr_WriteUnraisable((PyObject *)c);
        if (UNLIKELY(!was_ready) && tls_ready(conn_ssl(c))) {
            c->head_start = 0; /* the first head is timed from its first byte */
            conn_rearm(c, mod_now_ms());
        }
        if (n > 0) {
            if (b != NULL)
                conn_io_deliver(c, b, n);
            if (c->fd >= 0 && conn_ssl(c) != NULL && tls_drained(conn_ssl(c)) &&
                !(events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
                return; /* drained: more data is a new edge */
            continue;   /* (after a FIN, read on to the end of the stream) */
        }
        if (n == TLS_AGAIN)
            return;
        if (n == TLS_PLAIN_HTTP) {
            conn_tls_plain_http(c);
            return;
        }
        conn_io_stop(c, n == TLS_EOF); /* else not TLS, or broken */
        return;
    }
    if (conn_io_rearm(c) && conn_ssl(c) != NULL && tls_pending(conn_ssl(c)))
        conn_tls_kick(c);
}

/* Connection._tls_kick(): read what SSL holds (a loop callback). */
PyObject *conn_tls_kick_cb(ConnObject *c, PyObject *unused)
{
    c->server->io_turn++;
    if (conn_ssl(c) != NULL)
        conn_tls_read(c, 0);
    Py_RETURN_NONE;
}

/* Have the loop call conn_tls_read soon. */
static NOINLINE void conn_tls_kick(ConnObject *c)
{
    PyObject *cb = PyObject_GetAttrString((PyObject *)c, "_tls_kick");
    PyObject *r = cb != NULL ? PyObject_CallMethod(c->server->loop, "call_soon", "O", cb)
                             : NULL;
    if (r == NULL)
        PyErr_WriteUnraisable((PyObject *)c);
    Py_XDECREF(r);
    Py_XDECREF(cb);
}

/* Free c's SSL and its place in the server's tls_tab (the socket is
 * closed, or about to be). */
void conn_tls_drop(ConnObject *c)
{
    ServerObject *srv = c->server;
    if (!c->tls_c)
        return;
    c->tls_c = 0;
    if (c->fd >= 0 && c->fd < srv->tls_tab_len && srv->tls_tab[c->fd] != NULL &&
        tls_owner(srv->tls_tab[c->fd]) == c) {
        tls_free(srv->tls_tab[c->fd]);
        srv->tls_tab[c->fd] = NULL;
    }
}

/* Free the SSL in the server's tls_tab[fd] now, before its connection's
 * connection_lost.  Nothing of that connection may reach the descriptor
 * afterwards, not even as plain bytes: it is marked aborted, so its output
 * is dropped, and reads nothing more. */
static void conn_tls_evict(ServerObject *srv, int fd)
{
    ConnObject *old;
    if (srv->tls_tab[fd] == NULL)
        return; /* (gone meanwhile: conn_tls_tab_close's abort) */
    old = tls_owner(srv->tls_tab[fd]);
    if (old != NULL && old->tls_c && old->fd == fd) {
        old->aborted = 1;
        old->io_done = 1;
        conn_tls_drop(old);
    }
    if (srv->tls_tab[fd] != NULL)
        tls_free(srv->tls_tab[fd]);
    srv->tls_tab[fd] = NULL;
}

/* The server is closed (close_io): every SSL still in its tls_tab goes,
 * and its connection is cut (its transport aborted, which closes the
 * socket; its connection_lost comes later, or never if the loop does not
 * run again). */
static void conn_tls_tab_close(ServerObject *srv)
{
    int fd;
    for (fd = 0; fd < srv->tls_tab_len; fd++) {
        ConnObject *owner;
        if (srv->tls_tab[fd] == NULL)
            continue;
        owner = tls_owner(srv->tls_tab[fd]);
        if (owner != NULL && owner->tls_c && owner->fd == fd && !owner->aborted &&
            owner->transport != NULL) {
            conn_abort(owner);
        }
        conn_tls_evict(srv, fd);
    }
}

/* Make room for descriptor fd in the server's tls_tab.  0, or -1 when
 * out of memory (no exception). */
static NOINLINE int conn_tls_tab_fit(ServerObject *srv, int fd)
{
    int n = srv->tls_tab_len ? srv->tls_tab_len : 1024;
    struct ssl_st **t;
    if (fd < srv->tls_tab_len)
        return 0;
    while (n <= fd)
        n *= 2;
    t = PyMem_RawRealloc(srv->tls_tab, (size_t)n * sizeof(*t));
    if (t == NULL)
        return -1;
    memset(t + srv->tls_tab_len, 0, (size_t)(n - srv->tls_tab_len) * sizeof(*t));
    srv->tls_tab = t;
    srv->tls_tab_len = n;
    return 0;
}

/* The first read on a TLS server's connection (data: its bytes): the
 * transport stops reading, the socket is ours with an SSL on it, and the
 * handshake starts with data.  (uvloop starts reading after
 * connection_made returns, so it cannot be stopped before this first
 * read.)  A connection that cannot have that (no descriptor to spare for
 * the epoll set, no memory) is aborted: the transport cannot speak TLS. */
void conn_tls_attach(ConnObject *c, PyObject *data)
{
    ServerObject *srv = c->server;
    PyObject *p;
    Py_buffer v;
    struct ssl_st *ssl;
    int fd, rc;
    c->io_checked = 1;
    if (c->transport == NULL)
        return;
    if (!srv->direct_io || (fd = conn_socket_fd(c)) < 0)
        goto fail; /* (no direct I/O: the server is closed, close_io) */
    if ((rc = conn_io_setup(srv)) < 0) {
        if (rc == -1)
            PyErr_WriteUnraisable((PyObject *)c);
        goto fail;
    }
    p = PyObject_CallMethodNoArgs(c->transport, c->st->s_pause_reading);
    if (p == NULL)
        goto fail;
    Py_DECREF(p);
    if (PyObject_GetBuffer(data, &v, PyBUF_SIMPLE) < 0)
        goto fail;
    ssl = tls_new(srv->tls_ctx, srv->tls_meth, &srv->tls_out, fd, v.buf, (size_t)v.len);
    PyBuffer_Release(&v);
    if (ssl == NULL || conn_tls_tab_fit(srv, fd) < 0) {
        tls_free(ssl);
        goto fail;
    }
    if (srv->tls_tab[fd] != NULL) {
        /* the descriptor of a connection whose socket is closed but whose
         * connection_lost has not run yet: that SSL goes now */
        conn_tls_evict(srv, fd);
    }
    tls_set_owner(ssl, c);
    srv->tls_tab[fd] = ssl;
    c->tls_c = 1;
    c->fd = fd;
    Py_INCREF(c); /* held while c->fd is set: epoll events point at c */
    srv->n_direct++;
    conn_io_watch(c, 1);
    if (!c->io_watched) {
        conn_abort(c);
        return;
    }
    conn_tls_read(c, 0); /* what data brought */
    return;
fail:
    PyErr_Clear();
    conn_abort(c);
}

int conn_is_tls(ConnObject *c)
{
    /* every connection of a server with TLS in C speaks it, closed or not */
    return c->server->tls_ctx != NULL || (c->transport != NULL && conn_tls(c));
}

PyObject *conn_get_tls(ConnObject *c, void *unused)
{
    return PyBool_FromLong(conn_is_tls(c));
}

/* Connection._tls_info(): tls.c's tls_info of the connection's SSL, or
 * None (no TLS in C, or the connection is gone). */
PyObject *conn_tls_info(ConnObject *c, PyObject *unused)
{
    if (conn_ssl(c) == NULL || c->closed)
        Py_RETURN_NONE;
    return tls_info(conn_ssl(c));
}

/* request.transport: the transport, which under TLS in C is uvloop's
 * plain one; a view then gets fulmen._tls.TLSTransport around it, whose
 * get_extra_info() answers "peercert", "cipher", "ssl_object" and
 * "sslcontext" as uvloop's TLS transport does.  The answers to the
 * requests before the view's, still in the burst's buffer, go out first:
 * what the view writes to the transport then follows them, and its
 * close() sends them before it closes.  Not while a head is being written
 * (a header value's str() asking for it): the buffer ends mid-answer. */
PyObject *conn_view_transport(ConnObject *c)
{
    fulmen_state *st = c->st;
    PyObject *mod, *t;
    if (st->out_conn == c && st->out_len + st->out_big > 0 && !st->out_busy && !c->closed &&
        c->transport != NULL && conn_flush(c) < 0)
        PyErr_WriteUnraisable((PyObject *)c);
    if (LIKELY(c->server->tls_ctx == NULL) || c->transport == NULL)
        return conn_get_transport(c);
    mod = PyImport_ImportModule("fulmen._tls");
    if (mod == NULL)
        return NULL;
    t = PyObject_CallMethod(mod, "TLSTransport", "OOO", c->transport, (PyObject *)c,
                            c->server->tls_pyctx);
    Py_DECREF(mod);
    return t;
}

/* c's socket is readable (events: what epoll reported): what the
 * transport would do, done here. */
static void conn_io_read(ConnObject *c, uint32_t events)
{
    int rounds;
    if (conn_ssl(c) != NULL) {
        conn_tls_read(c, events);
        return;
    }
    for (rounds = 0; rounds < 4; rounds++) {
        ssize_t n;
        size_t room;
        PyObject *b;
        if (c->fd < 0 || c->io_done || !c->io_watched || c->closed)
            return;
        if (UNLIKELY((room = conn_sink_room(c)) > 0)) {
            RequestObject *req = c->pending;
            n = recv(c->fd, PyBytes_AS_STRING(req->py_body) + req->body.len, room,
                     MSG_DONTWAIT);
            if (n > 0) {
                conn_sink_took(c, (size_t)n);
                if ((size_t)n < room && !(events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
                    return;
                continue;
            }
        } else {
            if ((b = conn_rbuf(c)) == NULL)
                return;
            n = recv(c->fd, PyBytes_AS_STRING(b), CONN_RBUF, MSG_DONTWAIT);
            if (n > 0) {
                conn_io_deliver(c, b, n);
                if (n < CONN_RBUF && !(events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
                    return; /* drained: more data is a new edge */
                continue;   /* (after a FIN, read on to the end of the stream) */
            }
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        conn_io_stop(c, n == 0); /* else a reset or other error */
        return;
    }
    /* four full reads and maybe more waiting: let other sockets go first */
    conn_io_rearm(c);
}

/* Server._io_ready(): the loop saw the epoll set readable. */
PyObject *conn_server_io_ready(ServerObject *srv, PyObject *unused)
{
    struct epoll_event ev[CONN_EVENTS];
    int n, i, rounds = 0;
    srv->io_turn++;
    /* sockets that became ready while we worked are taken in the same
     * call, a few rounds at most: cheaper than a turn of the loop each */
    while (srv->epfd >= 0 && rounds++ < CONN_IO_ROUNDS &&
           (n = epoll_wait(srv->epfd, ev, CONN_EVENTS, 0)) > 0) {
        for (i = 0; i < n; i++) {
            ConnObject *c = ev[i].data.ptr;
            Py_INCREF(c);
            conn_io_read(c, ev[i].events);
            Py_DECREF(c);
        }
    }
    Py_RETURN_NONE;
}

/* Server.close_io(): stop watching the epoll set (at shutdown). */
PyObject *conn_server_close_io(ServerObject *srv, PyObject *unused)
{
    if (srv->epfd >= 0) {
        PyObject *r = PyObject_CallMethod(srv->loop, "remove_reader", "i", srv->epfd);
        if (r == NULL)
            PyErr_WriteUnraisable((PyObject *)srv);
        Py_XDECREF(r);
        close(srv->epfd);
        srv->epfd = -1;
    }
    srv->direct_io = 0;
    conn_tls_tab_close(srv);
    Py_RETURN_NONE;
}

/* Close in stages (RFC 9112 9.6) instead of at once: closing a socket that
 * holds unread bytes from the client makes the kernel send RST, which
 * discards what the client has not read yet, our last answers included
 * (a pipelining client keeps sending after the request that closes).  So
 * the sending side is shut once the output is out (write_eof), and what
 * the client still sends is read and dropped until it closes its side (EOF
 * closes, as on any connection) or for CONN_LINGER_MS, counted once the
 * transport holds nothing more to send (body_timeout bounds that wait, as
 * for any answer the client does not read).
 * Returns 1 when lingering has started, 0 when the caller closes now: the
 * client has closed already (EOF: nothing can follow); or it ended the
 * connection with its first request, every byte it sent was read and the
 * answer is all in the kernel's hands (it sends no more, RFC 9112 9.6:
 * nothing is there to reset on; a client that pipelined other requests
 * before that one may not have seen the close coming, so it gets the
 * staged close, as nginx does); a WebSocket; or a transport that cannot
 * half-close (TLS). */
static NOINLINE int conn_linger(ConnObject *c)
{
    PyObject *r;
    int ok;
    if (c->eof || c->aborted || c->lingering || conn_ws(c) != NULL)
        return 0;
    if (c->client_close && !c->unread_input && c->pending == NULL && conn_bstream(c) == NULL &&
        conn_io_writable(c))
        return 0;
    conn_tls_bye(c); /* close_notify, then our FIN */
    r = PyObject_CallMethod(c->transport, "can_write_eof", NULL);
    ok = r != NULL && PyObject_IsTrue(r) == 1;
    Py_XDECREF(r);
    if (ok) {
        r = PyObject_CallMethod(c->transport, "write_eof", NULL);
        ok = r != NULL;
        Py_XDECREF(r);
    }
    if (!ok) {
        PyErr_Clear();
        return 0;
    }
    c->closing = 1;
    c->lingering = 1;
    if (c->linger_kb == 0)
        c->linger_kb = CONN_LINGER_KB;
    conn_set_pause(c, 0, 0); /* reading resumes whatever paused it */
    c->timer = CONN_T_NONE;
    conn_rearm(c, mod_now_ms());
    return 1;
}

/* data arrived while lingering: dropped, and counted against
 * c->linger_kb; past that, the socket closes now. */
NOINLINE void conn_linger_drop(ConnObject *c, PyObject *data)
{
    Py_ssize_t n = PyObject_Size(data);
    if (n < 0) {
        PyErr_Clear();
        n = (Py_ssize_t)CONN_LINGER_MAX_KB * 1024;
    }
    n = (n + 1023) / 1024;
    if (n <= c->linger_kb) {
        c->linger_kb -= (uint16_t)n;
        return;
    }
    conn_close_now(c);
}


/* Called after transport.close(): the client must keep taking the output
 * the transport still holds, with no pause of body_timeout, else the
 * connection is aborted.  (The transport keeps a closing socket open until
 * its buffer drains, so a client that never reads would hold the socket,
 * and its connection slot, for ever.)  A TLS transport gets the deadline
 * even when it seems to hold nothing: it has handed what is left to the
 * socket's own transport, and then waits for the client's close_notify,
 * which a client may never send.  A write deadline already set stays, as
 * the close's: it is earlier. */
void conn_closing(ConnObject *c)
{
    if (c->closed || c->aborted || c->transport == NULL || c->timer == CONN_T_CLOSING)
        return;
    if (c->timer == CONN_T_WRITE) {
        c->timer = CONN_T_CLOSING; /* its deadline and mark stay */
        return;
    }
    if (conn_unsent(c) > 0 || conn_tls(c)) {
        int64_t wait = c->server->body_timeout_ms;
        /* stopping: a TLS connection with nothing left to write waits only
         * for the socket to send its last bytes and for the client's
         * close_notify, which the server need not have (RFC 8446 6.1) and
         * which a client may never send: the short drain of a closing idle
         * connection, as over TCP the socket closes at once (a client still
         * taking output gets more, conn_took) */
        if (c->server->stopping && wait > 1000 && conn_unsent(c) == 0)
            wait = 1000;
        conn_arm_write(c, CONN_T_CLOSING, mod_now_ms() + wait);
    }
}

/* transport.close() now: what it holds is still written, within
 * body_timeout (conn_closing). */
void conn_close_now(ConnObject *c)
{
    PyObject *r;
    conn_io_end(c);
    conn_tls_bye(c);
    r = PyObject_CallMethodNoArgs(c->transport, c->st->s_close);
    if (r == NULL)
        PyErr_WriteUnraisable((PyObject *)c);
    else
        conn_closing(c);
    Py_XDECREF(r);
}

void conn_close_transport(ConnObject *c, int abort)
{
    PyObject *r;
    c->closing = 1;
    if (c->closed || c->transport == NULL)
        return;
    if (conn_flush(c) < 0)
        PyErr_WriteUnraisable((PyObject *)c);
    if (c->closed || c->transport == NULL)
        return;
    conn_io_end(c);
    if (abort)
        c->aborted = 1;
    else
        conn_tls_bye(c);
    r = PyObject_CallMethodNoArgs(c->transport, abort ? c->st->s_abort : c->st->s_close);
    if (r == NULL)
        PyErr_WriteUnraisable((PyObject *)c);
    else
        conn_closing(c);
    Py_XDECREF(r);
}

/* The sweep found c past its deadline. */
void conn_expire(ConnObject *c)
{
    fulmen_state *st = c->st;
    PyObject *r;
    int cut = 0;
    if (UNLIKELY(c->server->tls_ctx != NULL) && c->timer == CONN_T_HEAD &&
        (conn_ssl(c) == NULL || !tls_ready(conn_ssl(c))) && !c->closed) {
        /* a handshake not done within header_timeout: cut, as uvloop's
         * ssl_handshake_timeout did */
        c->timer = CONN_T_NONE;
        c->deadline = 0;
        c->closing = 1;
        conn_abort(c);
        return;
    }
    if ((c->timer == CONN_T_WRITE || c->timer == CONN_T_CLOSING ||
         c->timer == CONN_T_WSCLOSE) && conn_took(c)) {
        /* the client takes its answers, slowly: more time */
        c->deadline = mod_now_ms() + (c->timer == CONN_T_WSCLOSE ? CONN_WSCLOSE_MS
                                                                 : c->server->body_timeout_ms);
        return;
    }
    if (c->timer == CONN_T_OWED && !c->owed_looked) {
        /* the first look, CONN_OWED_LOOK_MS after the answer */
        ServerObject *srv = c->server;
        int64_t now = mod_now_ms();
        if (conn_unacked(c) == 0) {
            /* the client has it all: idle since the answer */
            c->timer = CONN_T_IDLE;
            c->deadline += srv->keep_alive_ms - conn_owed_look(srv);
            if (c->deadline > now)
                return;
            /* keep-alive is over (it is no longer than a look): closes */
        } else {
            /* follow its progress from now (so never cut early) */
            conn_arm_write(c, CONN_T_OWED, now + conn_owed_look(srv));
            c->owed_looked = 1;
            if (c->ext != NULL)
                c->ext->taken_at = now;
            return;
        }
    }
    if (c->timer == CONN_T_OWED) {
        ServerObject *srv = c->server;
        int64_t now = mod_now_ms();
        /* without the memory to follow it, as if it took nothing */
        int64_t last = c->ext != NULL ? c->ext->taken_at : now - srv->body_timeout_ms;
        if (conn_took(c)) {
            last = now;
            if (c->ext != NULL)
                c->ext->taken_at = now;
        }
        if (conn_unacked(c) == 0) {
            /* the client has it all, since the last look at most: idle
             * from now (up to CONN_OWED_LOOK_MS late, never early) */
            c->timer = CONN_T_IDLE;
            c->deadline = now + srv->keep_alive_ms;
            return;
        }
        if (now - last < srv->body_timeout_ms && now - last < srv->keep_alive_ms) {
            c->deadline = now + conn_owed_look(srv);
            return;
        }
        if (now - last < srv->body_timeout_ms)
            c->timer = CONN_T_IDLE; /* keep-alive is over: closes (conn_closing) */
        /* else stalled for body_timeout: aborted below */
    }
    if (c->timer == CONN_T_WRITE && !(c->pause & CONN_PAUSE_WRITE) && !c->lingering &&
        conn_tls(c) && conn_unacked(c) == 0) {
        /* resumed over TLS, and the client has had all of it since */
        c->timer = CONN_T_NONE;
        c->deadline = 0;
        conn_rearm(c, mod_now_ms());
        return;
    }
    if (c->timer == CONN_T_CLOSING) {
        /* closed by us, and the client has not taken the rest since */
        c->timer = CONN_T_NONE;
        c->deadline = 0;
        conn_abort(c);
        return;
    }
    if (c->timer == CONN_T_LINGER && conn_unsent(c) > 0) {
        /* the answers have not all left: the client is not reading them */
        conn_arm_write(c, CONN_T_WRITE, mod_now_ms() + c->server->body_timeout_ms);
        return;
    }
    if (c->timer == CONN_T_WSPING && conn_ws(c) != NULL) {
        ws_timer(c->ext->ws, mod_now_ms());
        if (conn_flush(c) < 0)
            PyErr_WriteUnraisable((PyObject *)c);
        c->timer = CONN_T_NONE;
        conn_rearm(c, mod_now_ms());
        return;
    }
    if (conn_q_len(c) == 0 && !c->streaming &&
        ((c->timer == CONN_T_HEAD && !c->answered) ||
         (c->timer == CONN_T_BODY && c->pending != NULL && conn_bstream(c) == NULL))) {
        /* slow or stalled head (on a connection not yet answered), or the
         * body of a request nobody is reading yet: 408, then close */
        int head_only = c->pending != NULL && c->pending->h.method_id == H1_M_HEAD;
        c->closing = 1;
        if (resp_serialize_status(st, 408, "Request Timeout", head_only, 1, NULL) < 0)
            PyErr_WriteUnraisable((PyObject *)c);
        c->close_after_flush = 1;
        c->timer = CONN_T_NONE;
        c->deadline = 0;
        if (conn_flush(c) < 0) /* arms the linger timer (conn_linger) */
            PyErr_WriteUnraisable((PyObject *)c);
        return;
    } else {
        if (conn_bstream(c) != NULL)
            conn_fail_body_stream(c, st->RequestTimeout, "the request body stopped arriving");
        c->closing = 1;
        conn_io_end(c);
        if (c->timer == CONN_T_WRITE || c->timer == CONN_T_WSCLOSE || c->timer == CONN_T_OWED)
            c->aborted = 1;
        if (c->streaming && c->ext->stream_frame == RESP_FRAME_CLOSE) {
            /* a stream cut by the deadline: over TLS too, no close_notify,
             * which would tell the client the body was whole */
            conn_reset_cut_close_delimited(c);
            cut = 1;
        }
        c->timer = CONN_T_NONE;
        c->deadline = 0;
        if (!c->aborted && !cut)
            conn_tls_bye(c);
        r = PyObject_CallMethodNoArgs(c->transport, c->aborted ? c->st->s_abort : c->st->s_close);
        if (r == NULL)
            PyErr_WriteUnraisable((PyObject *)c);
        else
            conn_closing(c);
        Py_XDECREF(r);
        return;
    }
}

