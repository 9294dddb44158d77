/*
 * tls.c - TLS in C: OpenSSL on the connection's own socket, instead of
 * uvloop's SSLProtocol and ssl.py's SSLObject (docs/tls.md says why).
 *
 * The SSL_CTX is the one inside the application's ssl.SSLContext (taken
 * out of the object, checked at run time, see tls_ctx_from): whatever the
 * user or _ssl_context() configured (certificates, password-protected keys,
 * ciphers, minimum version, ALPN) holds as it is, and what cannot work on
 * an SSL with no Python object behind it (SNI and message callbacks, a
 * key log) is refused by app.py, which keeps uvloop's path for it.
 *
 * One BIO of ours per connection: reads recv() from the descriptor (after
 * the bytes uvloop's transport read before the socket was taken over);
 * writes append the records to the server's tls_out buffer and never
 * block; connio.c
 * sends that buffer after every SSL call (tls_out_take), with send() when
 * the socket takes it and through the plain transport otherwise, so that
 * the transport's buffer and its pause_writing/resume_writing bound what a
 * slow reader holds, exactly as for plain TCP.  An SSL call therefore never
 * wants to write: the only retry state is SSL_ERROR_WANT_READ, which maps
 * onto the socket's epoll read interest.
 */
#include "common.h"

#include <errno.h>
#include <limits.h>
#include <sys/socket.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

/* ========================================================================
 * The BIO: reads recv() from the socket, writes append to a tls_out buffer
 */

/* A connection's BIO state.  pre: the bytes the transport read before the
 * socket was taken over (the start of the ClientHello), served first. */
typedef struct {
    int fd;
    tls_out *out;
    char *pre;
    size_t pre_len, pre_off;
    int drained; /* the last recv() emptied the socket (tls_drained) */
    int eof;     /* recv() returned 0: the client's FIN (BIO_CTRL_EOF) */
} tls_io;

static int tls_bio_read(BIO *b, char *buf, int n)
{
    tls_io *io = BIO_get_data(b);
    ssize_t r;
    BIO_clear_retry_flags(b);
    if (n <= 0)
        return 0;
    if (UNLIKELY(io->pre != NULL)) {
        size_t k = io->pre_len - io->pre_off;
        if (k > (size_t)n)
            k = (size_t)n;
        memcpy(buf, io->pre + io->pre_off, k);
        io->pre_off += k;
        if (io->pre_off == io->pre_len) {
            PyMem_RawFree(io->pre);
            io->pre = NULL;
        }
        return (int)k;
    }
    do
        r = recv(io->fd, buf, (size_t)n, MSG_DONTWAIT);
    while (r < 0 && errno == EINTR);
    io->drained = r < n;
    io->eof = r == 0;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        BIO_set_retry_read(b);
        return -1;
    }
    return (int)r; /* 0: the client's FIN; -1: an error (errno says) */
}

static int tls_bio_write(BIO *b, const char *p, int n)
{
    tls_io *io = BIO_get_data(b);
    tls_out *o = io->out;
    size_t need;
    BIO_clear_retry_flags(b);
    if (n <= 0)
        return 0;
    need = o->len + (size_t)n;
    if (UNLIKELY(need > o->cap)) {
        size_t cap = o->cap ? o->cap : 16384;
        char *q;
        while (cap < need)
            cap *= 2;
        q = PyMem_RawRealloc(o->p, cap);
        if (q == NULL)
            return -1; /* SSL_write fails: the connection is aborted */
        o->p = q;
        o->cap = cap;
    }
    memcpy(o->p + o->len, p, (size_t)n);
    o->len = need;
    return n;
}

static long tls_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    /* FLUSH: connio.c sends after each SSL call; EOF: libssl asks whether a
     * read of 0 was the end of the stream (a bare FIN, tls_new); the rest
     * is not asked of a source/sink BIO by libssl, or may fail */
    if (cmd == BIO_CTRL_EOF) {
        tls_io *io = BIO_get_data(b);
        return io != NULL && io->eof;
    }
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int tls_bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static int tls_bio_destroy(BIO *b)
{
    tls_io *io = BIO_get_data(b);
    if (io != NULL) {
        PyMem_RawFree(io->pre);
        PyMem_RawFree(io);
        BIO_set_data(b, NULL);
    }
    return 1;
}

/* The BIO_METHOD of the connections' BIOs, made once per server (it lives
 * in the ServerObject, not in a process-wide static).  NULL when out of
 * memory. */
BIO_METHOD *tls_bio_method(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
                                 "fulmen tls_io");
    if (m == NULL)
        return NULL;
    if (!BIO_meth_set_write(m, tls_bio_write) || !BIO_meth_set_read(m, tls_bio_read) ||
        !BIO_meth_set_ctrl(m, tls_bio_ctrl) || !BIO_meth_set_create(m, tls_bio_create) ||
        !BIO_meth_set_destroy(m, tls_bio_destroy)) {
        BIO_meth_free(m);
        return NULL;
    }
    return m;
}

void tls_bio_method_free(BIO_METHOD *m)
{
    if (m != NULL)
        BIO_meth_free(m);
}

/* ========================================================================
 * The context
 */

#if PY_VERSION_HEX >= 0x03070000 && PY_VERSION_HEX < 0x030e0000
/* CPython's PySSLContext (Modules/_ssl.c) as 3.13 lays it out.  Fields up
 * to `protocol` are where they are from 3.7 on; the rest is 3.13's (3.10
 * added `state`, 3.13 the PSK callbacks, when OpenSSL has PSK). */
typedef struct {
    PyObject_HEAD
    SSL_CTX *ctx;
    unsigned char *alpn_protocols;
    unsigned int alpn_protocols_len;
    PyObject *set_sni_cb;
    int check_hostname;
    unsigned int hostflags;
    int protocol;
    int post_handshake_auth;
    PyObject *msg_cb;
    PyObject *keylog_filename;
    BIO *keylog_bio;
    void *state;
    PyObject *psk_client_callback;
    PyObject *psk_server_callback;
} tls_pyctx;

/* The int attribute name of obj equals v (an error is a mismatch). */
static int tls_attr_is(PyObject *obj, const char *name, long v)
{
    PyObject *a = PyObject_GetAttrString(obj, name);
    long got = a != NULL ? PyLong_AsLong(a) : -1;
    Py_XDECREF(a);
    if (PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return got == v;
}

#if PY_VERSION_HEX >= 0x030d0000
/* _ssl._SSLContext, the type of obj or its base (ssl.SSLContext, any
 * subclass of it, may have a size of its own). */
static PyTypeObject *tls_pyctx_type(PyObject *obj)
{
    PyTypeObject *t = Py_TYPE(obj);
    while (t->tp_base != NULL && strcmp(t->tp_name, "_ssl._SSLContext") != 0)
        t = t->tp_base;
    return t;
}
#endif
#endif

/* ALPN (RFC 7301): HTTP/1.1 is all this server speaks, so "http/1.1" when
 * the client offers it, else no protocol, whatever the application's
 * context lists (one that listed "h2" had h2 chosen, then HTTP/1.1
 * spoken). */
static int tls_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                           const unsigned char *in, unsigned int inlen, void *arg)
{
    unsigned int i = 0;
    (void)ssl, (void)arg;
    while (i < inlen && in[i] <= inlen - i - 1) {
        if (in[i] == 8 && memcmp(in + i + 1, "http/1.1", 8) == 0) {
            *out = in + i + 1;
            *outlen = 8;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1u + in[i];
    }
    return SSL_TLSEXT_ERR_NOACK;
}

/* The SSL_CTX inside an ssl.SSLContext, with a reference of our own, or
 * NULL (no exception) when it cannot be taken safely.  The fields of
 * CPython's PySSLContext (tls_pyctx) are checked against what the object
 * says of itself from Python: the options it reports (options) must be the
 * SSL_CTX's, its check_hostname and protocol must be where the layout puts
 * them, and the callbacks app.py found unset (sni_callback) must be NULL;
 * the OpenSSL this module runs with must be the one _ssl was built for
 * (openssl_version: ssl.OPENSSL_VERSION_NUMBER; both link libssl.so.3, so
 * one copy is loaded).  On 3.13, whose layout is known to its end (the
 * object's size must be sizeof(tls_pyctx)), a PSK callback (which would
 * expect an SSLSocket behind the SSL) also sends the context back to
 * uvloop's path; other versions do not have them.  is_ssl_context: the
 * caller checked that obj is an instance of _ssl._SSLContext (a subclass
 * of it cannot move the fields).  Python 3.14 and later: NULL, until
 * their layout is checked.  A context taken chooses its ALPN protocol with
 * tls_alpn_select from then on. */
SSL_CTX *tls_ctx_from(PyObject *obj, unsigned long long options,
                      unsigned long long openssl_version)
{
#if PY_VERSION_HEX < 0x03070000 || PY_VERSION_HEX >= 0x030e0000
    (void)obj, (void)options, (void)openssl_version;
    return NULL; /* a layout not checked: uvloop's path */
#else
    tls_pyctx *py = (tls_pyctx *)obj;
    SSL_CTX *ctx = py->ctx;
    if ((unsigned long long)OpenSSL_version_num() != openssl_version)
        return NULL;
    if (ctx == NULL || (unsigned long long)SSL_CTX_get_options(ctx) != options)
        return NULL;
    if (py->set_sni_cb != NULL || !tls_attr_is(obj, "check_hostname", py->check_hostname) ||
        !tls_attr_is(obj, "protocol", py->protocol))
        return NULL;
#if PY_VERSION_HEX >= 0x030d0000
    if (tls_pyctx_type(obj)->tp_basicsize != (Py_ssize_t)sizeof(tls_pyctx) ||
        py->msg_cb != NULL || py->keylog_filename != NULL ||
        py->psk_client_callback != NULL || py->psk_server_callback != NULL)
        return NULL;
#endif
    if (!SSL_CTX_up_ref(ctx))
        return NULL;
    SSL_CTX_set_alpn_select_cb(ctx, tls_alpn_select, NULL);
    return ctx;
#endif
}

void tls_ctx_free(SSL_CTX *ctx)
{
    if (ctx != NULL)
        SSL_CTX_free(ctx);
}

/* ========================================================================
 * Connections
 */

/* A server-side SSL on socket fd, its records written to out; pre (n
 * bytes, copied) is what was read from the socket before.  NULL when out
 * of memory (no exception). */
SSL *tls_new(SSL_CTX *ctx, BIO_METHOD *meth, tls_out *out, int fd, const char *pre,
             size_t n)
{
    SSL *ssl = SSL_new(ctx);
    BIO *b = NULL;
    tls_io *io = NULL;
    if (ssl == NULL)
        goto error;
    io = PyMem_RawCalloc(1, sizeof(*io));
    if (io == NULL || (n > 0 && (io->pre = PyMem_RawMalloc(n)) == NULL))
        goto error;
    io->fd = fd; /* the transport closes it */
    io->out = out;
    if (n > 0)
        memcpy(io->pre, pre, n);
    io->pre_len = n;
    b = BIO_new(meth);
    if (b == NULL)
        goto error;
    BIO_set_data(b, io);
    io = NULL; /* the BIO's now */
    SSL_set_bio(ssl, b, b); /* ssl owns it */
    /* A client-initiated renegotiation (TLS 1.2) is refused; read-ahead
     * lets one recv() take every record that has arrived.  A bare FIN (no
     * close_notify) ends the client's side as close_notify would, as
     * HTTP/1.1 over TLS allows (RFC 9112 9.8; requests are self-delimited):
     * by default OpenSSL 3 makes it fatal, and the answers to requests
     * read before it could no longer be written. */
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
    SSL_set_options(ssl, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
#else
    SSL_set_options(ssl, SSL_OP_NO_RENEGOTIATION);
#endif
    SSL_set_read_ahead(ssl, 1);
    SSL_set_accept_state(ssl);
    return ssl;
error:
    if (io != NULL) {
        PyMem_RawFree(io->pre);
        PyMem_RawFree(io);
    }
    BIO_free(b);
    SSL_free(ssl);
    ERR_clear_error();
    return NULL;
}

void tls_free(SSL *ssl)
{
    if (ssl != NULL)
        SSL_free(ssl);
}

/* Read plaintext into buf (the handshake runs first, inside the call).
 * Returns the bytes read (> 0); TLS_AGAIN when the socket has no more for
 * now (read interest is all it needs); TLS_EOF when the client closed,
 * with a close_notify or with a bare FIN (taken as the end of the stream,
 * as HTTP/1.1 over TLS may: RFC 9112 9.8); TLS_PLAIN_HTTP when the client
 * began with a request in plain HTTP (OpenSSL knows the methods' first
 * bytes); TLS_ERROR on another protocol error or a broken connection (the
 * alert, if any, is in the out buffer). */
int tls_read(SSL *ssl, char *buf, int n)
{
    int r, e;
    /* SSL_get_error reads the thread's error queue: an error that other
     * code left there (_ssl in a view, say) would turn a WANT_READ into a
     * failure of this connection */
    ERR_clear_error();
    r = SSL_read(ssl, buf, n);
    if (LIKELY(r > 0))
        return r;
    e = SSL_get_error(ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        return TLS_AGAIN;
    if (e == SSL_ERROR_ZERO_RETURN) /* close_notify, or a bare FIN (tls_new) */
        return TLS_EOF;
    if (e == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EINTR)) {
        ERR_clear_error();
        return TLS_AGAIN;
    }
    e = ERR_GET_LIB(ERR_peek_error()) == ERR_LIB_SSL &&
        ERR_GET_REASON(ERR_peek_error()) == SSL_R_HTTP_REQUEST;
    ERR_clear_error();
    return e ? TLS_PLAIN_HTTP : TLS_ERROR;
}

/* Encrypt n bytes into the out buffer.  Returns 0, or -1 when they cannot
 * go (the handshake is not done, or an error: the caller aborts). */
int tls_write(SSL *ssl, const char *p, size_t n)
{
    if (n == 0)
        return 0;
    if (UNLIKELY(!SSL_is_init_finished(ssl)) || n > INT_MAX)
        return -1;
    if (UNLIKELY(SSL_write(ssl, p, (int)n) != (int)n)) {
        ERR_clear_error();
        return -1;
    }
    return 0;
}

/* Our close_notify into the out buffer (once; not after an error, nor
 * before the handshake is done).  We do not wait for the client's. */
void tls_shutdown(SSL *ssl)
{
    if (SSL_is_init_finished(ssl) && !(SSL_get_shutdown(ssl) & SSL_SENT_SHUTDOWN)) {
        if (SSL_shutdown(ssl) < 0)
            ERR_clear_error();
    }
}

/* Decrypted bytes (or whole records read ahead) that SSL holds: a read
 * would return them without the socket being readable again. */
int tls_pending(SSL *ssl)
{
    return SSL_has_pending(ssl);
}

/* The last read from the socket took less than it asked for (so the
 * socket had no more then), and SSL holds no input: an SSL_read now would
 * only find EAGAIN.  (With edge-triggered epoll, bytes that come later are
 * reported.)  Saves that recv() per request. */
int tls_drained(SSL *ssl)
{
    tls_io *io = BIO_get_data(SSL_get_rbio(ssl));
    return io != NULL && io->drained && !SSL_has_pending(ssl);
}

/* The object the SSL belongs to (conn.c's connection), kept as its app
 * data: nothing else on this SSL uses it (app.py refuses contexts whose
 * callbacks would). */
void tls_set_owner(SSL *ssl, void *owner)
{
    SSL_set_app_data(ssl, owner);
}

void *tls_owner(SSL *ssl)
{
    return SSL_get_app_data(ssl);
}

/* The handshake is done. */
int tls_ready(SSL *ssl)
{
    return SSL_is_init_finished(ssl);
}

/* What a view may read of the connection's TLS, once the handshake is
 * done (else None): (version, (cipher, protocol, secret bits), the ALPN
 * protocol or None, the client's certificate as DER or None, whether the
 * context verified it).  fulmen/_tls.py answers get_extra_info() from it
 * as ssl.SSLObject would. */
PyObject *tls_info(SSL *ssl)
{
    const SSL_CIPHER *ci = SSL_get_current_cipher(ssl);
    const unsigned char *alpn = NULL;
    unsigned int alpn_len = 0;
    unsigned char *der = NULL;
    int der_len = -1;
    PyObject *cipher = NULL, *proto = NULL, *cert = NULL, *res = NULL;
    X509 *x;
    if (!SSL_is_init_finished(ssl) || ci == NULL)
        Py_RETURN_NONE;
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    x = SSL_get1_peer_certificate(ssl);
#else
    x = SSL_get_peer_certificate(ssl);
#endif
    if (x != NULL) {
        der_len = i2d_X509(x, &der);
        X509_free(x);
    }
    SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
    cipher = Py_BuildValue("(ssi)", SSL_CIPHER_get_name(ci), SSL_CIPHER_get_version(ci),
                           SSL_CIPHER_get_bits(ci, NULL));
    if (cipher == NULL)
        goto done;
    proto = alpn != NULL ? PyUnicode_DecodeLatin1((const char *)alpn, alpn_len, NULL)
                         : Py_NewRef(Py_None);
    if (proto == NULL)
        goto done;
    cert = der_len >= 0 ? PyBytes_FromStringAndSize((const char *)der, der_len)
                        : Py_NewRef(Py_None);
    if (cert == NULL)
        goto done;
    res = Py_BuildValue("(sOOOO)", SSL_get_version(ssl), cipher, proto, cert,
                        (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) ? Py_True : Py_False);
done:
    OPENSSL_free(der);
    Py_XDECREF(cipher);
    Py_XDECREF(proto);
    Py_XDECREF(cert);
    return res;
}
