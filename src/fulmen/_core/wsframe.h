/*
 * wsframe.h - WebSocket (RFC 6455) frame codec: header parsing and building,
 * in-place unmasking, incremental UTF-8 validation, close-frame checks and
 * the opening-handshake accept key.
 *
 * Pure C: no Python.h, no allocation, no I/O.  Every function reads only the
 * bytes it is given (never buf[len] or beyond), so it can be tested, fuzzed
 * and benchmarked from C alone.  ws.c drives it from the connection.
 */
#ifndef FULMEN_WSFRAME_H
#define FULMEN_WSFRAME_H

#include <stddef.h>
#include <stdint.h>

/* Opcodes (RFC 6455 5.2).  0x3-0x7 and 0xB-0xF are reserved. */
#define WS_OP_CONT 0x0
#define WS_OP_TEXT 0x1
#define WS_OP_BINARY 0x2
#define WS_OP_CLOSE 0x8
#define WS_OP_PING 0x9
#define WS_OP_PONG 0xA

/* Largest header: 2 + 8 (64-bit length) + 4 (mask key). */
#define WS_MAX_HEADER 14
/* Largest control-frame payload (RFC 6455 5.5). */
#define WS_MAX_CONTROL_PAYLOAD 125

/* Error codes, all negative.  ws_error_status() maps each to the close
 * status the endpoint should send before failing the connection. */
#define WS_ERR_RSV (-1)             /* RSV bit set that no extension allows */
#define WS_ERR_OPCODE (-2)          /* reserved opcode                     */
#define WS_ERR_CTRL_FRAGMENTED (-3) /* control frame with FIN = 0          */
#define WS_ERR_CTRL_TOO_LONG (-4)   /* control payload > 125 bytes         */
#define WS_ERR_LEN_MSB (-5)         /* 64-bit length with its MSB set      */
#define WS_ERR_UNMASKED (-6)        /* WS_HDR_REQUIRE_MASK, frame unmasked */
#define WS_ERR_MASKED (-7)          /* WS_HDR_FORBID_MASK, frame masked    */
#define WS_ERR_CLOSE_PAYLOAD (-8)   /* close payload of 1 byte (or > 125)  */
#define WS_ERR_CLOSE_CODE (-9)      /* close code not valid on the wire    */
#define WS_ERR_UTF8 (-10)           /* invalid UTF-8 (text or close reason) */

/* Flags for ws_parse_header(). */
#define WS_HDR_REQUIRE_MASK 0x1 /* server side: every client frame is masked */
#define WS_HDR_FORBID_MASK 0x2  /* client side: server frames never are      */
#define WS_HDR_ALLOW_RSV1 0x4   /* permessage-deflate negotiated (RFC 7692)  */

typedef struct {
    uint64_t payload_len; /* < 2^63                                   */
    uint8_t fin;          /* 0 or 1                                   */
    uint8_t rsv1;         /* 0 or 1 (only with WS_HDR_ALLOW_RSV1)     */
    uint8_t opcode;       /* WS_OP_*                                  */
    uint8_t masked;       /* 0 or 1                                   */
    uint8_t mask[4];      /* the masking key; zeros when not masked   */
} ws_header;

/* Parse one frame header from buf[0..len).
 * Returns the header size (2..14) and fills *h; 0 when more bytes are needed
 * (*h is then unspecified); or a WS_ERR_* code.  An error is reported as soon
 * as the bytes that prove it are present, even if the header is incomplete.
 * flags: WS_HDR_*.  RSV1 is accepted only with WS_HDR_ALLOW_RSV1 and only on
 * TEXT/BINARY frames (RFC 7692 6.1: not on control frames nor continuations);
 * RSV2/RSV3 are always errors.  Non-minimal length encodings are accepted
 * on data frames (RFC 6455 binds the sender only); on a control frame any
 * extended length is WS_ERR_CTRL_TOO_LONG, decided at byte 2.  The caller
 * enforces its own size limit on h->payload_len. */
int ws_parse_header(const uint8_t *buf, size_t len, unsigned flags,
                    ws_header *h);

/* Write an unmasked (server) frame header to out; returns its size: 2, 4 or
 * 10.  fin and rsv1 are treated as booleans; opcode is masked to 4 bits and
 * len to 63 bits. */
size_t ws_build_header(uint8_t out[10], int fin, int rsv1, int opcode,
                       uint64_t len);

/* XOR data[0..len) in place with the masking key, where data[0] is byte
 * `offset` of the frame payload; so a payload can be unmasked in pieces,
 * each call passing how many payload bytes came before it.  Masking and
 * unmasking are the same operation. */
void ws_unmask(uint8_t *data, size_t len, const uint8_t key[4], size_t offset);

/* Select the vector paths used by ws_unmask() and the UTF-8 ASCII scan:
 * 0 = scalar, 1 = SSE2, 2 = AVX2, -1 = the best the CPU has.  A level above
 * what the CPU supports is lowered.  Returns the level in effect.
 * Process-wide; for tests and benchmarks. */
#define WS_SIMD_SCALAR 0
#define WS_SIMD_SSE2 1
#define WS_SIMD_AVX2 2
int ws_set_simd_level(int level);

/* Incremental UTF-8 validator (RFC 3629): rejects overlong forms, surrogates
 * (U+D800..U+DFFF), code points above U+10FFFF, stray continuation bytes and
 * C0, C1, F5..FF.  A code point may be split across calls.  Zero-initialise
 * the state (or call ws_utf8_init) once per message. */
typedef struct {
    uint32_t state; /* private: 0 = at a code-point boundary */
} ws_utf8_state;

void ws_utf8_init(ws_utf8_state *s);

/* Feed p[0..n).  Returns 0 while the text so far is a valid UTF-8 prefix,
 * -1 as soon as it is not: the byte that makes it invalid is in this chunk
 * (fail-fast, so a frame can be rejected before the message is complete).
 * After -1 the state stays invalid and every later call returns -1. */
int ws_utf8_validate(ws_utf8_state *s, const uint8_t *p, size_t n);

/* End of message: 0 if everything fed ended at a code-point boundary, -1 if
 * it ended inside a sequence (or was invalid). */
int ws_utf8_finish(const ws_utf8_state *s);

/* 1 if `code` may be sent in a close frame (RFC 6455 7.4): 1000-1003,
 * 1007-1011 and 3000-4999; else 0 (1004-1006, 1015, 1012-2999, ...). */
int ws_close_code_valid(unsigned code);

/* Check an (unmasked) close payload p[0..n).  Returns 0 and sets *code to the
 * status (1005, "no status received", when n == 0) and *reason, *reason_len
 * to the UTF-8 reason (a span of p); or WS_ERR_CLOSE_PAYLOAD (n == 1 or
 * n > 125), WS_ERR_CLOSE_CODE or WS_ERR_UTF8.  The outputs are written only
 * on success.  `sent` (0: none) is the code of the close this side sent: the
 * peer's echo of it is valid too (a server's 1012-1014, which a peer's own
 * close may not use). */
int ws_parse_close(const uint8_t *p, size_t n, unsigned sent, unsigned *code,
                   const uint8_t **reason, size_t *reason_len);

/* The close status to send when failing the connection on error `err`:
 * 1007 for WS_ERR_UTF8, 1002 (protocol error) for the other WS_ERR_*. */
unsigned ws_error_status(int err);

/* Sec-WebSocket-Accept for the client's Sec-WebSocket-Key key[0..len) (the
 * header value with surrounding whitespace already stripped):
 * base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")).
 * Writes exactly 28 characters to out (no NUL) and returns 0; returns -1 and
 * leaves out untouched when the key is not 24 base64 characters that decode
 * to 16 bytes (22 alphabet characters, then "=="). */
int ws_accept_key(const char *key, size_t len, char out[28]);

/* SHA-1 (FIPS 180-4) of data[0..len) into out.  Exposed for the tests;
 * SHA-1 is only fit for the handshake, never for security. */
void ws_sha1(const void *data, size_t len, uint8_t out[20]);

#endif
