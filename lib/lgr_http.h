/*
 * lgr_http.h: a plain HTTP server (the RLP gateway's transport): HTTP/1.1 and HTTP/2 on one listener, whole
 * responses and long-lived streaming responses (server-sent events), libevent for I/O, OpenSSL for TLS.
 *
 * Protocols: with TLS, the protocol agreed by ALPN decides after the handshake: "h2" is HTTP/2 (nghttp2, on the
 * connection machinery of lgr_h2), "http/1.1" or no ALPN at all is HTTP/1.1 (libhttp-parser). Build the context
 * with lgr_tls_server_ctx() from lgr_http_alpn and alpn_optional set. Without TLS (ssl_ctx NULL) a connection that
 * opens with the HTTP/2 connection preface is HTTP/2 with prior knowledge, any other is HTTP/1.1; an HTTP/1.1
 * "Upgrade: h2c" is ignored (the request is answered in HTTP/1.1).
 *
 * Threads: as lgr_h2.h: the server and every exchange belong to the thread running its event_base; no function
 * here may be called from another thread (hand work over with event_active() on an event of that base).
 *
 * Callbacks: handlers run on the loop thread and must not block. They may call any function of this header,
 * lgr_http_server_free() included (the release is then deferred until the callback returns). on_close never runs
 * from inside a call to an lgr_http_exchange_* function: a response that ends there is completed at the next loop
 * turn.
 *
 * Exchanges: each request becomes one exchange, handed to on_request once the request is complete (headers and
 * body). The handler answers at once or later, with either a whole response (lgr_http_exchange_respond) or a
 * streaming response (lgr_http_exchange_start, then _write, then _end). Every exchange that reached on_request gets
 * exactly one on_close; the handle is valid until on_close returns. Requests the server refuses itself (malformed,
 * over a limit) never reach on_request: they are answered and reported through on_refused. HTTP/1.1 requests on
 * one connection are answered in order: the next one is read once the current response is complete (keep-alive).
 *
 * Sending: the bytes of a streaming response wait in a queue per exchange bounded by max_send_queue bytes (in
 * HTTP/1.1 the connection's output buffer, in HTTP/2 the stream's queue that feeds DATA frames as flow control
 * allows). A full queue refuses a write with LGR_EFULL and on_drain runs once the queue is back below half of its
 * bound; an empty queue always accepts one write of any size. A whole response is never refused for its size.
 *
 * Framing is the server's: HTTP/1.1 gets Content-Length (whole) or chunked transfer coding (streaming; an HTTP/1.0
 * client gets the raw body and the connection closes after it); HTTP/2 gets DATA frames. The handler's headers
 * named Content-Length, Transfer-Encoding, Keep-Alive, Upgrade, TE and Proxy-Connection are dropped; Connection is
 * passed on in HTTP/1.1 unless the server closes the connection (then "Connection: close") and dropped in HTTP/2.
 * A Date header is added unless the handler gives one.
 */
#ifndef LGR_HTTP_H
#define LGR_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "lgr.h"

struct event_base;
struct evbuffer;

/* Defaults applied to zero fields of the configuration. */
#define LGR_HTTP_DEFAULT_MAX_HEADER	 (16u * 1024) /* request line (or pseudo-headers) and header fields */
#define LGR_HTTP_DEFAULT_MAX_BODY	 1024u	      /* request body */
#define LGR_HTTP_DEFAULT_SEND_QUEUE	 (1u << 20)   /* queued response bytes per exchange */
#define LGR_HTTP_DEFAULT_MAX_CONNECTIONS 10000u
#define LGR_HTTP_DEFAULT_MAX_STREAMS	 100u	    /* concurrent HTTP/2 streams per connection */
#define LGR_HTTP_DEFAULT_HANDSHAKE_MS	 10000u	    /* accept to protocol chosen (TLS done, preface read) */
#define LGR_HTTP_DEFAULT_IDLE_MS	 120000u    /* no exchange open; HTTP/1.1: also the time to send headers */
#define LGR_HTTP_MAX_HEADERS		 64	    /* header fields of one request (more: 431) or one response */
#define LGR_HTTP_MAX_HEADER_LIMIT	 (1u << 20) /* largest max_header accepted */
#define LGR_HTTP_MAX_BODY_LIMIT		 (1u << 20) /* largest max_body accepted */

/* The ALPN list a gateway's TLS context offers, most preferred first. */
extern const char *const lgr_http_alpn[];

enum lgr_http_version {
	LGR_HTTP_1_0 = 10,
	LGR_HTTP_1_1 = 11,
	LGR_HTTP_2 = 20,
};

struct lgr_http_header {
	const char *name;
	const char *value;
};

/* A request as on_request sees it; every pointer stays valid until the exchange's on_close returns. */
struct lgr_http_request {
	const char *method;		       /* as sent, e.g. "GET" */
	const char *path;		       /* the target's path as sent (not percent-decoded), e.g. "/v2/read" */
	const char *query;		       /* the raw query without '?'; "" when none */
	const char *authority;		       /* Host (HTTP/1.1) or :authority, else host (HTTP/2); "" when absent */
	const struct lgr_http_header *headers; /* every field but pseudo-headers, in order; names in lower case */
	size_t nheaders;
	const uint8_t *body; /* at most max_body bytes; NULL when empty */
	size_t body_len;
	const char *peer; /* "addr:port" of the client */
	enum lgr_http_version version;
	SSL *ssl; /* the connection's TLS state (peer certificate, verify result); NULL without TLS */
};

/* The value of the first header field called name (any case); NULL when there is none. */
const char *lgr_http_request_header(const struct lgr_http_request *req, const char *name);

struct lgr_http_server;
struct lgr_http_exchange; /* one request and its response */

/*
 * What the server does with requests; ud is the configuration's.
 * on_request (required): a complete request; answer now or later.
 * on_drain (may be NULL): the send queue went below half its bound after a write was refused with LGR_EFULL.
 * on_close (may be NULL): the exchange is over; the handle is invalid after the handler returns. complete is true
 *   when the whole response was handed to the connection (HTTP/1.1: queued in its output; HTTP/2: END_STREAM sent),
 *   false when the client went away, the connection died or the server was freed first.
 */
struct lgr_http_handlers {
	void (*on_request)(struct lgr_http_exchange *x, const struct lgr_http_request *req, void *ud);
	void (*on_drain)(struct lgr_http_exchange *x, void *ud);
	void (*on_close)(struct lgr_http_exchange *x, bool complete, void *ud);
};

/* Zero fields take the defaults above. handlers and ssl_ctx are borrowed: they must outlive the server. */
struct lgr_http_server_config {
	const char *address; /* numeric IPv4 or IPv6 address to listen on; NULL: 0.0.0.0 */
	uint16_t port;	     /* 0: an ephemeral port, see lgr_http_server_port() */
	SSL_CTX *ssl_ctx;    /* lgr_tls_server_ctx() with alpn lgr_http_alpn and alpn_optional; NULL: cleartext */
	const struct lgr_http_handlers *handlers;
	size_t max_header;	  /* bytes of request line and fields: more is 431 */
	size_t max_body;	  /* bytes of request body: more is 413 */
	size_t max_send_queue;	  /* bytes per exchange */
	unsigned max_connections; /* further connections are closed at once */
	uint32_t max_streams;	  /* per HTTP/2 connection (SETTINGS_MAX_CONCURRENT_STREAMS) */
	unsigned handshake_ms;
	unsigned idle_ms;
	const char *name; /* prefix of log lines, e.g. "omfirehose gateway"; NULL: "http server" */
	/*
	 * Optional: told of each request the server answers itself with an error (400 malformed, 413 body too large,
	 * 431 headers too large, 505 version; path NULL when unknown) and of each connection lost to an error (a
	 * refused TLS handshake, a protocol error, a handshake or header timeout, a connection over max_connections:
	 * path NULL, status -1, the reason). Those are then left to the hook to log. Runs on the loop thread; must not
	 * call back into the server.
	 */
	void (*on_refused)(const char *peer, const char *path, int status, const char *why, void *ud);
	void *ud; /* for the handlers and on_refused */
};

/*
 * Binds and listens. Returns LGR_OK; LGR_EINVAL (bad address, no on_request, a limit above its maximum),
 * LGR_EIO (bind or listen failed, reported through lgr_log), LGR_ENOMEM.
 */
int lgr_http_server_new(
	struct event_base *base, const struct lgr_http_server_config *cfg, struct lgr_http_server **out);

/*
 * Serves fd, a connected stream socket obtained elsewhere, exactly as an accepted connection. The server takes fd
 * in every case (made non-blocking; closed on failure or when the connection ends). peer names the client (NULL:
 * "?"). LGR_OK; LGR_EFULL (max_connections open); LGR_EINVAL (fd negative, or the server is shutting down or being
 * freed); LGR_EIO (fd cannot be made non-blocking); LGR_ENOMEM.
 */
int lgr_http_server_adopt(struct lgr_http_server *srv, int fd, const char *peer);

uint16_t lgr_http_server_port(const struct lgr_http_server *srv);      /* the bound port (useful with port 0) */
size_t lgr_http_server_connections(const struct lgr_http_server *srv); /* open, handshaking ones included */

/*
 * Graceful shutdown: stops accepting; HTTP/2 connections get GOAWAY (open streams go on), idle HTTP/1.1
 * connections close and busy ones close after their current response. After grace_ms, streaming responses still
 * open are ended (HTTP/1.1: the final chunk; HTTP/2: END_STREAM) and unanswered requests get 503; every connection
 * closes at most one second later. done (may be NULL) runs once, from the event loop, when the last connection is
 * gone. Calling it again has no effect.
 */
void lgr_http_server_shutdown(struct lgr_http_server *srv, unsigned grace_ms, void (*done)(void *ud), void *ud);

/* Closes every connection at once (open exchanges see on_close, complete false) and frees the server. NULL ok. */
void lgr_http_server_free(struct lgr_http_server *srv);

/*
 * A whole response: status (200-999), content_type (NULL: none), nheaders extra headers (at most
 * LGR_HTTP_MAX_HEADERS; names are tokens, values free of CR, LF and NUL), and len bytes of body (copied; omitted
 * on the wire for HEAD, 204 and 304). LGR_OK; LGR_EINVAL (already answered, the connection is gone, a bad status
 * or header); LGR_ENOMEM.
 */
int lgr_http_exchange_respond(struct lgr_http_exchange *x, int status, const char *content_type,
	const struct lgr_http_header *headers, size_t nheaders, const void *body, size_t len);

/*
 * Opens a streaming response: status (200-999 but 204 and 304) and headers go out at once. A HEAD request gets the
 * headers only: the response is then complete and on_close follows. Results as for respond.
 */
int lgr_http_exchange_start(struct lgr_http_exchange *x, int status, const char *content_type,
	const struct lgr_http_header *headers, size_t nheaders);

/*
 * Queues len bytes (copied) of a streaming response; zero bytes are a no-op. LGR_OK; LGR_EFULL (queue full:
 * on_drain follows); LGR_EINVAL (no streaming response open, or the connection is gone); LGR_ENOMEM.
 */
int lgr_http_exchange_write(struct lgr_http_exchange *x, const void *data, size_t len);

/* Queues the whole contents of data, moving them without a copy (data is left empty). Results as for write. */
int lgr_http_exchange_write_buffer(struct lgr_http_exchange *x, struct evbuffer *data);

/* Ends a streaming response after the queued bytes. LGR_OK; LGR_EINVAL (none open, or the connection is gone). */
int lgr_http_exchange_end(struct lgr_http_exchange *x);

size_t lgr_http_exchange_queued(const struct lgr_http_exchange *x); /* bytes waiting to be sent */
const struct lgr_http_request *lgr_http_exchange_request(const struct lgr_http_exchange *x);
void lgr_http_exchange_set_data(struct lgr_http_exchange *x, void *data); /* one pointer, NULL at first */
void *lgr_http_exchange_data(const struct lgr_http_exchange *x);

#endif
