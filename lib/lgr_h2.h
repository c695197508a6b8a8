/*
 * lgr_h2.h: gRPC over HTTP/2, the project's one transport: a server (imloggregator ingress, omfirehose egress) and
 * a client (omdoppler, subscribe mode), on nghttp2 for HTTP/2, libevent bufferevents for I/O and OpenSSL for TLS.
 *
 * Framing of messages is lgr_grpc's; TLS contexts come from lgr_tls (the Loggregator profile with ALPN h2). With a
 * NULL SSL_CTX both sides speak cleartext HTTP/2 with prior knowledge (h2c), for loopback and tests.
 *
 * Threads: a server or client and everything it hands out (streams, calls) belong to the thread running its
 * event_base; no function here may be called from another thread. Other threads hand work over through an event
 * of that base (event_active() on an event created by the owner, with evthread_use_pthreads() in effect), whose
 * callback then calls these functions.
 *
 * Callbacks: handlers run on the loop thread and must not block. They may call any function of this header,
 * including lgr_h2_server_free / lgr_h2_client_free (the release is then deferred until the callback returns).
 *
 * Sending: every send queues one whole gRPC message (5-byte prefix + payload) on a per-stream queue bounded by
 * max_send_queue bytes. lgr_h2_*_send copies the payload; lgr_h2_*_send_buffer moves the contents of an evbuffer
 * without copying (build it with evbuffer_add_reference() to share encoded envelopes between subscribers). A full
 * queue refuses the message with LGR_EFULL and the stream's on_drain handler runs once the queue is back below
 * half of its bound, so a caller can keep its own drop-oldest ring in front. Queues drain as HTTP/2 flow control
 * allows; a queue that is empty always accepts one message of any size.
 *
 * Receiving: every message is handed over whole, however DATA frames split it; the payload is valid only during
 * the handler. No backpressure is applied to the sender: data is consumed as it arrives, flow-control windows are
 * replenished at once and kept large, so handlers must be fast (push into a ring and return).
 *
 * Confirmation: a server returns the flow-control window of a stream's request bytes (WINDOW_UPDATE) right after
 * the read in which their messages reached the handlers, so a client learns which of its bytes the server holds
 * (lgr_h2_call_acked, on_acked) within one round trip. The gRPC servers of Loggregator (grpc-go) return window as
 * their handlers read too, in larger steps.
 */
#ifndef LGR_H2_H
#define LGR_H2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "lgr.h"
#include "lgr_grpc.h"

struct event_base;
struct evbuffer;

/* Defaults applied to zero fields of the configurations below. */
#define LGR_H2_DEFAULT_STREAM_WINDOW	    (1u << 20) /* receive window per stream: 1 MiB */
#define LGR_H2_DEFAULT_CONN_WINDOW	    (8u << 20) /* receive window per connection: 8 MiB */
#define LGR_H2_DEFAULT_MAX_STREAMS	    1024u      /* concurrent streams per connection (server) */
#define LGR_H2_DEFAULT_MAX_CONNECTIONS	    10000u     /* connections per server */
#define LGR_H2_DEFAULT_SEND_QUEUE	    (4u << 20) /* queued outgoing bytes per stream: 4 MiB */
#define LGR_H2_DEFAULT_HANDSHAKE_MS	    10000u     /* server: TCP accept to HTTP/2 ready */
#define LGR_H2_DEFAULT_CONNECT_MS	    20000u     /* client: resolve + connect + TLS */
#define LGR_H2_DEFAULT_KEEPALIVE_MS	    15000u     /* client ping interval, as Loggregator's clients */
#define LGR_H2_DEFAULT_KEEPALIVE_TIMEOUT_MS 20000u
#define LGR_H2_DEFAULT_SERVER_KEEPALIVE_MS  7200000u /* server ping interval on an idle link (grpc-go: 2 h) */
#define LGR_H2_DEFAULT_BACKOFF_MIN_MS	    1000u
#define LGR_H2_DEFAULT_BACKOFF_MAX_MS	    30000u
#define LGR_H2_MAX_PATH			    256 /* longest :path a server routes */
#define LGR_H2_MAX_STATUS_MESSAGE	    512 /* longest grpc-message kept (encoded on send, decoded on receive) */
#define LGR_H2_NEVER			    ((unsigned)-1) /* a keepalive interval that disables pings */

/* ---- server ----------------------------------------------------------------------------------------------- */

struct lgr_h2_server;
struct lgr_h2_stream; /* one call received by a server */

/*
 * What a route does with its calls; every member may be NULL. ud is the route's.
 * on_open: the request headers are valid. Return LGR_GRPC_OK to accept the call; any other status refuses it with
 *   that status (or call lgr_h2_stream_finish() here to refuse with a message). Only accepted calls see the other
 *   handlers.
 * on_message: one whole request message.
 * on_half_close: the client sent its last message (a client-streaming call answers now).
 * on_drain: the send queue went below half its bound after a send was refused with LGR_EFULL, or it is empty
 *   after lgr_h2_stream_notify_empty().
 * on_close: the stream is gone; the handle is invalid after the handler returns. reset is false when the status
 *   given to lgr_h2_stream_finish() reached the wire, true when the stream ended otherwise (the client reset it,
 *   the connection was lost, the server was freed).
 */
struct lgr_h2_handlers {
	int (*on_open)(struct lgr_h2_stream *s, void *ud);
	void (*on_message)(struct lgr_h2_stream *s, const uint8_t *msg, size_t len, void *ud);
	void (*on_half_close)(struct lgr_h2_stream *s, void *ud);
	void (*on_drain)(struct lgr_h2_stream *s, void *ud);
	void (*on_close)(struct lgr_h2_stream *s, bool reset, void *ud);
};

struct lgr_h2_route {
	const char *path; /* the gRPC method, e.g. "/loggregator.v2.Ingress/BatchSender" */
	const struct lgr_h2_handlers *handlers;
	void *ud;
};

/* Zero fields take the defaults above. The routes array and ssl_ctx are borrowed: they must outlive the server. */
struct lgr_h2_server_config {
	const char *address; /* numeric IPv4 or IPv6 address to listen on; NULL: 0.0.0.0 */
	uint16_t port;	     /* 0: an ephemeral port, see lgr_h2_server_port() */
	SSL_CTX *ssl_ctx;    /* from lgr_tls_server_ctx() with ALPN {"h2"}; NULL: cleartext h2c */
	const struct lgr_h2_route *routes;
	size_t nroutes;
	size_t max_message;	  /* largest request message; 0: LGR_LIMITS_DEFAULT_MESSAGE */
	uint32_t stream_window;	  /* bytes */
	uint32_t conn_window;	  /* bytes */
	uint32_t max_streams;	  /* per connection (SETTINGS_MAX_CONCURRENT_STREAMS) */
	unsigned max_connections; /* further connections are closed at once */
	size_t max_send_queue;	  /* bytes per stream */
	unsigned handshake_ms;
	unsigned keepalive_ms; /* ping interval (LGR_H2_NEVER: none); unanswered for keepalive_timeout_ms: closed */
	unsigned keepalive_timeout_ms;
	const char *name; /* prefix of log lines, e.g. "imloggregator"; NULL: "h2 server" */
	/*
	 * Optional: told of each call the server ends on its own with an error status (a method other than POST, a
	 * content-type other than gRPC, an unknown path, a message over max_message, compressed, or cut off by the end
	 * of the request: path, status and message as sent) and of each connection lost to an error (a refused TLS
	 * handshake, a protocol error, a timeout: path NULL, status -1, the reason). Such connections are then left
	 * to the hook to log. Runs on the loop thread; must not call back into the server.
	 */
	void (*on_refused)(const char *peer, const char *path, int status, const char *why, void *ud);
	void *ud; /* for on_refused */
};

/*
 * Binds and listens. Returns LGR_OK; LGR_EINVAL (bad address or configuration), LGR_EIO (bind or listen failed,
 * reported through lgr_log), LGR_ENOMEM.
 */
int lgr_h2_server_new(struct event_base *base, const struct lgr_h2_server_config *cfg, struct lgr_h2_server **out);

/*
 * Serves fd, a connected stream socket obtained elsewhere (a socketpair, a connection accepted by another
 * listener), exactly as an accepted connection: TLS or h2c as configured, counted against max_connections, under
 * the handshake deadline. The server takes fd in every case, made non-blocking, and closes it on failure or when
 * the connection ends. peer names the client in log lines and lgr_h2_stream_peer() (NULL: "?"; truncated).
 * Returns LGR_OK; LGR_EFULL (max_connections open: refused as the listener refuses); LGR_EINVAL (fd negative, or
 * the server is shutting down or being freed); LGR_EIO (fd cannot be made non-blocking); LGR_ENOMEM.
 */
int lgr_h2_server_adopt(struct lgr_h2_server *srv, int fd, const char *peer);

/* The bound port (useful with port 0). */
uint16_t lgr_h2_server_port(const struct lgr_h2_server *srv);

/* Open connections, handshaking ones included. */
size_t lgr_h2_server_connections(const struct lgr_h2_server *srv);

/*
 * Graceful shutdown: stops accepting, sends GOAWAY on every connection so clients open no more streams, lets open
 * streams run for grace_ms, then finishes those still open with UNAVAILABLE and closes every connection (at most
 * one more second for the last frames to leave). done (may be NULL) runs once, from the event loop, when the last
 * connection is gone. Calling it again has no effect.
 */
void lgr_h2_server_shutdown(struct lgr_h2_server *srv, unsigned grace_ms, void (*done)(void *ud), void *ud);

/* Closes every connection at once (accepted streams see on_close with reset true) and frees the server. NULL ok. */
void lgr_h2_server_free(struct lgr_h2_server *srv);

/* Queues one message (copied). LGR_OK; LGR_EFULL (queue full); LGR_EINVAL (finished or closed, or too large). */
int lgr_h2_stream_send(struct lgr_h2_stream *s, const uint8_t *msg, size_t len);

/* Queues the whole contents of msg as one message, moving them (msg is left empty). Results as for send. */
int lgr_h2_stream_send_buffer(struct lgr_h2_stream *s, struct evbuffer *msg);

/*
 * Ends the call with a gRPC status and message (NULL or "" for none; percent-encoded on the wire, truncated at
 * LGR_H2_MAX_STATUS_MESSAGE) after the queued messages; a trailers-only response when nothing was sent. If the
 * client has not half-closed, its stream is then reset with NO_ERROR, as HTTP/2 allows after a complete response.
 * LGR_OK; LGR_EINVAL when already finished or closed; LGR_ENOMEM.
 */
int lgr_h2_stream_finish(struct lgr_h2_stream *s, int status, const char *message);

size_t lgr_h2_stream_queued(const struct lgr_h2_stream *s); /* bytes waiting in the send queue */
/*
 * Bytes the connection has taken from the send queue so far, into DATA frames (gRPC framing included). With
 * lgr_h2_stream_queued() it places a message: the one queued when taken + queued was E has left once taken >= E.
 */
uint64_t lgr_h2_stream_taken(const struct lgr_h2_stream *s);
/*
 * Asks for one on_drain once the send queue is empty (everything queued handed to the connection), so that a
 * sender that batches while a message is on its way learns when it is not any more. No-op on a finished stream.
 */
void lgr_h2_stream_notify_empty(struct lgr_h2_stream *s);
const char *lgr_h2_stream_path(const struct lgr_h2_stream *s);
const char *lgr_h2_stream_peer(const struct lgr_h2_stream *s);	  /* "addr:port" of the client */
SSL *lgr_h2_stream_ssl(const struct lgr_h2_stream *s);		  /* for lgr_tls_peer_permitted(); NULL in h2c */
void lgr_h2_stream_set_data(struct lgr_h2_stream *s, void *data); /* one pointer for the caller, NULL at first */
void *lgr_h2_stream_data(const struct lgr_h2_stream *s);

/* ---- client ----------------------------------------------------------------------------------------------- */

struct lgr_h2_client;
struct lgr_h2_call; /* one call made by a client */

/* Connectivity, named as gRPC's. */
enum lgr_h2_state {
	LGR_H2_CONNECTING,	  /* resolving, connecting or handshaking */
	LGR_H2_READY,		  /* HTTP/2 is up: calls flow */
	LGR_H2_TRANSIENT_FAILURE, /* the attempt failed or the connection was lost; retrying after a backoff */
};

/*
 * on_state runs on every change (never from inside lgr_h2_client_new); why is a short reason for failures, "" else.
 * A client with on_state is told of every failed attempt and lost connection there and reports it as it sees fit:
 * the transport's own line about it then goes to the debug log (without on_state, it is a warning).
 * Zero fields take the defaults above; ssl_ctx is borrowed and must outlive the client.
 */
struct lgr_h2_client_config {
	const char *host; /* name or numeric address; names are resolved without blocking (evdns, /etc/hosts) */
	uint16_t port;
	SSL_CTX *ssl_ctx;	 /* from lgr_tls_client_ctx() with ALPN {"h2"}; NULL: cleartext h2c */
	const char *server_name; /* DNS SAN the server must present, also the SNI; NULL: host (set it for IPs) */
	const char *authority;	 /* :authority; NULL: server_name if set, else host:port (as grpc-go) */
	size_t max_message;	 /* largest response message; 0: LGR_LIMITS_DEFAULT_MESSAGE */
	uint32_t stream_window;
	uint32_t conn_window;
	size_t max_send_queue;
	unsigned connect_ms;
	unsigned keepalive_ms; /* ping interval; LGR_H2_NEVER disables */
	unsigned keepalive_timeout_ms;
	unsigned backoff_min_ms; /* first retry delay, then x1.6 with 20 % jitter up to backoff_max_ms */
	unsigned backoff_max_ms;
	void (*on_state)(struct lgr_h2_client *cli, enum lgr_h2_state state, const char *why, void *ud);
	void *ud;
	const char *name; /* prefix of log lines; NULL: "h2 client" */
};

/*
 * What a call does with its response; every member may be NULL.
 * on_message: one whole response message.
 * on_drain: as for the server's streams.
 * on_close: the final status and message (from trailers or a trailers-only response; UNAVAILABLE when the
 *   connection failed or was lost or the server refused the stream; CANCELLED when the client is freed). Runs
 *   exactly once, unless the call is cancelled first; the handle is invalid after the handler returns.
 * on_acked: the server returned flow-control window for more of the request: it has read its first acked bytes
 *   (see lgr_h2_call_acked).
 */
struct lgr_h2_call_handlers {
	void (*on_message)(struct lgr_h2_call *call, const uint8_t *msg, size_t len, void *ud);
	void (*on_drain)(struct lgr_h2_call *call, void *ud);
	void (*on_close)(struct lgr_h2_call *call, int status, const char *message, void *ud);
	void (*on_acked)(struct lgr_h2_call *call, uint64_t acked, void *ud);
};

/*
 * Creates a client and starts connecting (from the event loop, after this returns). On a lost connection it
 * reconnects after a backoff, resetting the backoff once a connection became ready. LGR_OK; LGR_EINVAL; LGR_ENOMEM.
 */
int lgr_h2_client_new(struct event_base *base, const struct lgr_h2_client_config *cfg, struct lgr_h2_client **out);

/* Ends every call (on_close with CANCELLED), closes the connection and frees the client. NULL ok. */
void lgr_h2_client_free(struct lgr_h2_client *cli);

enum lgr_h2_state lgr_h2_client_state(const struct lgr_h2_client *cli);

/*
 * Starts a call of path (a gRPC method). A call made while the client is not READY waits for the next connection;
 * if that attempt fails, the call ends with UNAVAILABLE. handlers is borrowed and must outlive the call.
 * LGR_OK; LGR_EINVAL (path too long or not absolute); LGR_ENOMEM.
 */
int lgr_h2_client_call(struct lgr_h2_client *cli, const char *path, const struct lgr_h2_call_handlers *handlers,
	void *ud, struct lgr_h2_call **out);

/* Queues one request message (copied). LGR_OK; LGR_EFULL; LGR_EINVAL (after close_send, or ended). */
int lgr_h2_call_send(struct lgr_h2_call *call, const uint8_t *msg, size_t len);

/* Queues the contents of msg as one request message, moving them. Results as for send. */
int lgr_h2_call_send_buffer(struct lgr_h2_call *call, struct evbuffer *msg);

/* No more request messages: END_STREAM follows the queued ones. LGR_OK; LGR_EINVAL when already done. */
int lgr_h2_call_close_send(struct lgr_h2_call *call);

/* Ends the call at once (RST_STREAM CANCEL); no handler runs any more and the handle is invalid on return. */
void lgr_h2_call_cancel(struct lgr_h2_call *call);

size_t lgr_h2_call_queued(const struct lgr_h2_call *call);

/*
 * Request bytes (gRPC prefixes included, counted from the first message) the server confirmed it read: the sum of
 * the stream's WINDOW_UPDATE increments, never more than what was sent. A server that grants window before reading
 * (none of Loggregator's does) would make this an overestimate. Valid in on_close too.
 */
uint64_t lgr_h2_call_acked(const struct lgr_h2_call *call);
struct lgr_h2_client *lgr_h2_call_client(const struct lgr_h2_call *call);

#endif
