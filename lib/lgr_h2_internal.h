/*
 * lgr_h2_internal.h: what the files of lgr_h2 share, not part of the public API: one HTTP/2 connection driven by a
 * bufferevent (lgr_h2__conn, lgr_h2_conn.c), the bounded per-stream send queue that feeds nghttp2 DATA frames
 * (lgr_h2__outq, lgr_h2_conn.c), and the server's (lgr_h2_server.c, lgr_h2_stream.c) and the client's
 * (lgr_h2_client.c, lgr_h2_call.c) objects. lgr_http.c drives its HTTP/2 connections with lgr_h2__conn and
 * lgr_h2__outq too.
 *
 * Lifetime: a connection dies in two steps. lgr_h2__conn_kill() only marks it (with a reason) and wakes it; the
 * owner's down() runs when the current event of that connection ends, so no code ever runs on a freed connection
 * or session. Every event of a connection is bracketed by the owner's enter()/leave(), which lets the owner defer
 * its own release while any of its callbacks is running.
 */
#ifndef LGR_H2_INTERNAL_H
#define LGR_H2_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>

#include "lgr.h"
#include "lgr_grpc.h"
#include "lgr_h2.h"

struct bufferevent;
struct event;
struct event_base;
struct evbuffer;
struct evconnlistener;
struct evdns_base;
struct evdns_getaddrinfo_request;

struct lgr_h2__conn;

struct lgr_h2__conn_ops {
	void (*enter)(void *owner); /* an event of the connection starts */
	void (*leave)(void *owner); /* ... and ends: the owner may release itself now */
	/* Transport ready (TLS agreed on h2): create c->ng, submit SETTINGS. A non-zero result kills c. */
	int (*up)(struct lgr_h2__conn *c);
	/* After the input of a read event went through nghttp2, before the send pass it triggers. May be NULL. */
	void (*received)(struct lgr_h2__conn *c);
	/* After every send pass: deliver drain notices. May be NULL. */
	void (*flushed)(struct lgr_h2__conn *c);
	/* c is dead (c->why, c->level): end its streams, lgr_h2__conn_cleanup() and free it. */
	void (*down)(struct lgr_h2__conn *c);
	/* Servers: no request is open, so a peer closing now (clients often do without GOAWAY) is a normal end, not
	 * worth an info line. May be NULL. */
	bool (*idle)(struct lgr_h2__conn *c);
};

struct lgr_h2__conn {
	struct event_base *base;
	struct bufferevent *bev;
	SSL *ssl; /* owned by bev; NULL in h2c */
	nghttp2_session *ng;
	struct event *kick;  /* a send pass (and pending up, pending death) at the next loop turn */
	struct event *timer; /* handshake deadline, then the keepalive cycle */
	const struct lgr_h2__conn_ops *ops;
	void *owner;
	size_t out_high; /* output bytes above which nghttp2 is paused */
	unsigned handshake_ms;
	unsigned ka_ms;
	unsigned ka_timeout_ms;
	bool need_up; /* h2c server: the session is made at the next event */
	bool is_up;
	bool ka_waiting; /* a keepalive ping is unanswered */
	bool dead;
	bool down_done;
	bool sending;		  /* inside nghttp2_session_send */
	bool draining;		  /* the session is done: close when the output is empty */
	enum lgr_log_level level; /* of the death, for the owner's log line */
	char peer[272];		  /* host:port */
	char why[192];
};

/*
 * Takes bev (which must have been created with BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS) and arms the
 * handshake deadline. ssl is bev's SSL or NULL. LGR_OK or LGR_ENOMEM (bev is then still the caller's).
 */
int lgr_h2__conn_init(struct lgr_h2__conn *c, struct event_base *base, struct bufferevent *bev, SSL *ssl,
	const struct lgr_h2__conn_ops *ops, void *owner, unsigned handshake_ms);

/*
 * For a connection that is ready without a handshake (h2c server), or handed over after its TLS handshake or with
 * its first bytes already read (lgr_http): up() runs at the next event, which then reads any buffered input.
 */
void lgr_h2__conn_start(struct lgr_h2__conn *c);

/* Keepalive after up (ms, LGR_H2_NEVER for none); call from up(). */
void lgr_h2__conn_keepalive(struct lgr_h2__conn *c, unsigned interval_ms, unsigned timeout_ms);

/* Frees the session, the bufferevent (closing the socket) and the events. */
void lgr_h2__conn_cleanup(struct lgr_h2__conn *c);

/* Marks c dead (the first reason wins) and wakes it; down() follows from the event loop. */
void lgr_h2__conn_kill(struct lgr_h2__conn *c, enum lgr_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Schedules a send pass at the next loop turn: sends issued in one turn share it. */
void lgr_h2__conn_kick(struct lgr_h2__conn *c);

/* Installs the callbacks every session shares (send, send_data). */
void lgr_h2__conn_callbacks(nghttp2_session_callbacks *cbs);

/* The owner's on_frame_recv_callback calls this first (keepalive acknowledgements). */
void lgr_h2__conn_on_frame(struct lgr_h2__conn *c, const nghttp2_frame *frame);

/* SETTINGS and connection window every session announces; push 0 for a server. LGR_OK or LGR_ENOMEM. */
int lgr_h2__conn_settings(
	struct lgr_h2__conn *c, uint32_t max_streams, uint32_t stream_window, uint32_t conn_window, bool client);

/* ---- the send queue of one stream -------------------------------------------------------------------------- */

struct lgr_h2__outq {
	struct evbuffer *buf;	    /* framed messages not yet in DATA frames */
	size_t limit;		    /* bytes: pushes beyond it are refused */
	size_t taken;		    /* bytes handed to DATA frames so far */
	bool eof;		    /* nothing more will be pushed */
	uint64_t acked;		    /* bytes the peer returned window for (client calls) */
	bool deferred;		    /* nghttp2 parked the stream's data source: resume on the next push */
	bool want_drain;	    /* a push was refused: on_drain owed when below limit / 2 */
	bool want_empty;	    /* lgr_h2_stream_notify_empty: on_drain owed when nothing is left */
	const nghttp2_nv *trailers; /* at eof: sent as trailers instead of END_STREAM on DATA (server) */
	size_t ntrailers;
};

int lgr_h2__outq_init(struct lgr_h2__outq *q, size_t limit);
void lgr_h2__outq_cleanup(struct lgr_h2__outq *q);

/* Appends one framed message. LGR_OK; LGR_EFULL (want_drain set); LGR_EINVAL (eof, or over 4 GiB); LGR_ENOMEM. */
int lgr_h2__outq_push(struct lgr_h2__outq *q, const uint8_t *msg, size_t len);
int lgr_h2__outq_push_buffer(struct lgr_h2__outq *q, struct evbuffer *msg);
/* The same for bytes without gRPC framing (lgr_http's response bodies); push_raw_buffer moves data's contents. */
int lgr_h2__outq_push_raw(struct lgr_h2__outq *q, const uint8_t *data, size_t len);
int lgr_h2__outq_push_raw_buffer(struct lgr_h2__outq *q, struct evbuffer *data);

/* True (once) when a refused push is owed its drain notice, or an empty queue its notice (want_empty). */
bool lgr_h2__outq_drained(struct lgr_h2__outq *q);

/* Hands new data to nghttp2 if it parked the stream. */
void lgr_h2__outq_resume(struct lgr_h2__outq *q, nghttp2_session *ng, int32_t id);

nghttp2_data_provider lgr_h2__outq_provider(struct lgr_h2__outq *q);

size_t lgr_h2__outq_len(const struct lgr_h2__outq *q);

/* ---- small shared helpers ------------------------------------------------------------------------------------ */

/* An nghttp2_nv of two string literals or NUL-terminated strings (nghttp2 copies them at submit). */
nghttp2_nv lgr_h2__nv(const char *name, const char *value);

/* True when value (not NUL-terminated) is application/grpc, optionally followed by +subtype or ;parameters. */
bool lgr_h2__grpc_content_type(const uint8_t *value, size_t len);

/* ---- server ------------------------------------------------------------------------------------------------ */

struct sockaddr;
struct sockaddr_storage;

/* "addr:port" ("[addr]:port" for IPv6) of a peer, for log lines (lgr_h2_server.c, also lgr_http). */
void lgr_h2__peer_name(const struct sockaddr *sa, char *buf, size_t len);

/* A numeric address and a port (0 included, which evutil_parse_sockaddr_port refuses) as a sockaddr. */
int lgr_h2__parse_address(const char *addr, uint16_t port, struct sockaddr_storage *ss, int *sslen);

enum lgr_h2__phase { LGR_H2__RUNNING, LGR_H2__GRACE, LGR_H2__FLUSHING, LGR_H2__CLOSED };

struct lgr_h2__srv_conn {
	struct lgr_h2__conn c; /* first: nghttp2's user data is &c */
	struct lgr_h2_server *srv;
	struct lgr_h2_stream *streams;
	struct lgr_h2__srv_conn *prev, *next;
	bool drain_owed; /* some stream waits for its drain notice */
	bool acks_owed;	 /* some stream received DATA whose window is not returned yet */
};

struct lgr_h2_stream {
	struct lgr_h2__srv_conn *conn;
	int32_t id;
	const struct lgr_h2_route *route;
	void *data;
	struct lgr_grpc_reader reader;
	struct lgr_h2__outq q;
	struct lgr_h2_stream *prev, *next;
	bool post;	/* :method POST */
	bool grpc;	/* content-type application/grpc... */
	bool path_ok;	/* :path fits */
	bool accepted;	/* on_open said OK: the handlers, on_close included, are owed */
	bool responded; /* response HEADERS submitted */
	bool finished;	/* the status is queued */
	bool end_sent;	/* our END_STREAM reached the wire */
	bool ack_owed;	/* DATA received since the window was last returned */
	bool closed;	/* gone for the user: on_close done or never owed */
	char path[LGR_H2_MAX_PATH];
	char status[12];
	char message[LGR_H2_MAX_STATUS_MESSAGE];
	nghttp2_nv trailers[2];
};

struct lgr_h2_server {
	struct event_base *base;
	struct lgr_h2_server_config cfg;
	char name[64];
	struct evconnlistener *listener;
	uint16_t port;
	struct lgr_h2__srv_conn *conns;
	size_t nconns;
	nghttp2_session_callbacks *cbs;
	nghttp2_option *opt;
	struct event *phase_ev;
	enum lgr_h2__phase phase;
	void (*done)(void *ud);
	void *done_ud;
	unsigned long refused; /* connections refused over max_connections */
	time_t refused_at;     /* when the last refusal was logged */
	int depth;	       /* events of the server and its connections in progress */
	bool freeing;	       /* lgr_h2_server_free was called: no handler runs any more */
};

/* lgr_h2_stream.c, for lgr_h2_server.c */
void lgr_h2__stream_callbacks(nghttp2_session_callbacks *cbs);
/* The user's view of s ends: on_close once for an accepted stream. */
void lgr_h2__stream_notify_close(struct lgr_h2_stream *s);
void lgr_h2__stream_release(struct lgr_h2_stream *s);
/* Queues the status (trailers, or a trailers-only response with http_status). LGR_OK, LGR_ENOMEM, LGR_EINVAL. */
int lgr_h2__stream_status(struct lgr_h2_stream *s, const char *http_status, int status, const char *message);
void lgr_h2__streams_flushed(struct lgr_h2__conn *c);
/* Returns the window of what the streams of c received in this read: their senders learn it was read. */
void lgr_h2__streams_received(struct lgr_h2__conn *c);

/* ---- client ------------------------------------------------------------------------------------------------ */

#define LGR_H2__MAX_HOST    256
#define LGR_H2__MAX_RETRIES 3 /* restarts of a call the server refused before seeing any of it */

struct lgr_h2__cli_conn {
	struct lgr_h2__conn c; /* first: nghttp2's user data is &c */
	struct lgr_h2_client *cli;
	struct lgr_h2_call *calls;	      /* started on this connection */
	struct lgr_h2__cli_conn *prev, *next; /* in the client's draining list */
	bool drain_owed;
	bool ready;  /* the server's SETTINGS arrived: the connection works */
	bool goaway; /* the server will take no new streams */
};

struct lgr_h2_call {
	struct lgr_h2_client *cli;
	struct lgr_h2__cli_conn *conn; /* NULL while waiting for a connection */
	int32_t id;		       /* 0 until started */
	const struct lgr_h2_call_handlers *h;
	void *ud;
	struct lgr_grpc_reader reader;
	struct lgr_h2__outq q;
	struct lgr_h2_call *prev, *next;
	int http_status;
	int grpc_status;   /* -1 until a grpc-status arrives */
	bool headers_seen; /* the response HEADERS (not the trailers) arrived */
	int retries;	   /* transparent restarts after REFUSED_STREAM */
	bool ended;	   /* on_close done, or cancelled: no handler runs any more */
	char path[LGR_H2_MAX_PATH];
	char message[LGR_H2_MAX_STATUS_MESSAGE];
};

struct lgr_h2_client {
	struct event_base *base;
	struct lgr_h2_client_config cfg;
	char name[64];
	char host[LGR_H2__MAX_HOST];
	char server_name[LGR_H2__MAX_HOST];
	char authority[LGR_H2__MAX_HOST + 8];
	char port[8];
	enum lgr_h2_state state;
	struct lgr_h2__cli_conn *conn;	   /* the connection new calls go to */
	struct lgr_h2__cli_conn *draining; /* connections after a GOAWAY, finishing their streams */
	struct lgr_h2_call *waiting;	   /* calls for the next connection */
	struct evdns_base *dns;
	struct evdns_getaddrinfo_request *dns_req;
	struct event *retry; /* next connection attempt */
	unsigned backoff_ms;
	nghttp2_session_callbacks *cbs;
	nghttp2_option *opt;
	int depth;
	bool freeing;
};

/* lgr_h2_call.c, for lgr_h2_client.c */
void lgr_h2__call_callbacks(nghttp2_session_callbacks *cbs);
void lgr_h2__call_link(struct lgr_h2_call **head, struct lgr_h2_call *call);
void lgr_h2__call_unlink(struct lgr_h2_call **head, struct lgr_h2_call *call);
/* Submits the request HEADERS of call on cc. LGR_OK, LGR_ENOMEM, LGR_EIO. */
int lgr_h2__call_start(struct lgr_h2__cli_conn *cc, struct lgr_h2_call *call);
/* The single on_close of a call; afterwards it only waits for nghttp2 to let go of it. */
void lgr_h2__call_end(struct lgr_h2_call *call, int status, const char *message);
void lgr_h2__call_free(struct lgr_h2_call *call);
void lgr_h2__calls_flushed(struct lgr_h2__conn *c);

/* lgr_h2_client.c, for lgr_h2_call.c */
void lgr_h2__client_goaway(struct lgr_h2__cli_conn *cc, const nghttp2_goaway *ga);
void lgr_h2__client_ready(struct lgr_h2__cli_conn *cc);
void lgr_h2__client_retry(struct lgr_h2_client *cli, unsigned ms);

#endif
