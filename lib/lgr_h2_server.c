/*
 * lgr_h2_server.c: the gRPC server half of lgr_h2: listener and adopted sockets, connection limits, connections,
 * graceful shutdown. The calls it receives are lgr_h2_stream.c. See lgr_h2.h for the contract.
 */
#include "lgr_h2.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "lgr_h2_internal.h"

#define FLUSH_MS 1000

/* ---- connections ------------------------------------------------------------------------------------------- */

static void srv_enter(void *owner)
{
	((struct lgr_h2_server *)owner)->depth++;
}

static void destroy(struct lgr_h2_server *srv);

static void srv_leave(void *owner)
{
	struct lgr_h2_server *srv = owner;

	if (--srv->depth == 0 && srv->freeing)
		destroy(srv);
}

static int conn_up(struct lgr_h2__conn *c)
{
	struct lgr_h2__srv_conn *sc = (struct lgr_h2__srv_conn *)c;
	struct lgr_h2_server *srv = sc->srv;

	if (nghttp2_session_server_new2(&c->ng, srv->cbs, sc, srv->opt) != 0)
		return LGR_ENOMEM;
	lgr_h2__conn_keepalive(c, srv->cfg.keepalive_ms, srv->cfg.keepalive_timeout_ms);
	if (lgr_h2__conn_settings(c, srv->cfg.max_streams, srv->cfg.stream_window, srv->cfg.conn_window, false) != 0)
		return LGR_ENOMEM;
	/* A connection that came up during the grace period is told at once that it may not start streams. */
	if (srv->phase != LGR_H2__RUNNING)
		nghttp2_submit_goaway(c->ng, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, NULL, 0);
	return LGR_OK;
}

static void maybe_done(struct lgr_h2_server *srv)
{
	static const struct timeval now = {0, 0};

	if (srv->phase == LGR_H2__RUNNING || srv->phase == LGR_H2__CLOSED || srv->nconns > 0)
		return;
	srv->phase = LGR_H2__CLOSED;
	event_del(srv->phase_ev);
	event_add(srv->phase_ev, &now);
}

static void conn_down(struct lgr_h2__conn *c)
{
	struct lgr_h2__srv_conn *sc = (struct lgr_h2__srv_conn *)c;
	struct lgr_h2_server *srv = sc->srv;

	if (srv->cfg.on_refused != NULL && c->level <= LGR_LOG_WARNING)
		srv->cfg.on_refused(c->peer, NULL, -1, c->why, srv->cfg.ud);
	else
		lgr_log(c->level, "%s: %s: %s", srv->name, c->peer, c->why);
	for (struct lgr_h2_stream *s = sc->streams; s != NULL; s = s->next)
		lgr_h2__stream_notify_close(s);
	while (sc->streams != NULL)
		lgr_h2__stream_release(sc->streams);
	if (sc->prev != NULL)
		sc->prev->next = sc->next;
	else
		srv->conns = sc->next;
	if (sc->next != NULL)
		sc->next->prev = sc->prev;
	srv->nconns--;
	lgr_h2__conn_cleanup(c);
	free(sc);
	maybe_done(srv);
}

static bool conn_idle(struct lgr_h2__conn *c)
{
	return ((struct lgr_h2__srv_conn *)c)->streams == NULL;
}

static const struct lgr_h2__conn_ops conn_ops = {
	.enter = srv_enter,
	.leave = srv_leave,
	.up = conn_up,
	.received = lgr_h2__streams_received,
	.flushed = lgr_h2__streams_flushed,
	.down = conn_down,
	.idle = conn_idle,
};

void lgr_h2__peer_name(const struct sockaddr *sa, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "[%s]:%u", host, ntohs(in6->sin6_port));
	} else if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(buf, len, "%s:%u", host, ntohs(in->sin_port));
	} else {
		snprintf(buf, len, "?");
	}
}

/*
 * A socket the listener accepted or lgr_h2_server_adopt() was given becomes a connection (TLS or h2c as
 * configured, within max_connections, under the handshake deadline). fd is taken in every case: closed on failure.
 */
static int add_conn(struct lgr_h2_server *srv, evutil_socket_t fd, const char *peer)
{
	struct lgr_h2__srv_conn *sc = NULL;
	struct bufferevent *bev = NULL;
	SSL *ssl = NULL;
	int opts = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;
	int rc = LGR_EFULL;

	if (srv->nconns >= srv->cfg.max_connections) {
		time_t now = time(NULL);

		/* A flood of refused connections is reported once a second, not once each. */
		srv->refused++;
		if (now != srv->refused_at)
			lgr_log(LGR_LOG_WARNING, "%s: %s: refused, %zu connections open (%lu refused in all)",
				srv->name, peer, srv->nconns, srv->refused);
		srv->refused_at = now;
		goto out;
	}
	rc = LGR_ENOMEM;
	sc = calloc(1, sizeof(*sc));
	if (sc == NULL)
		goto out;
	if (srv->cfg.ssl_ctx != NULL) {
		ssl = SSL_new(srv->cfg.ssl_ctx);
		if (ssl == NULL)
			goto out;
		bev = bufferevent_openssl_socket_new(srv->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, opts);
	} else {
		bev = bufferevent_socket_new(srv->base, fd, opts);
	}
	if (bev == NULL)
		goto out;
	ssl = NULL; /* ownership transferred to bev */
	fd = -1;    /* likewise */
	sc->srv = srv;
	snprintf(sc->c.peer, sizeof(sc->c.peer), "%s", peer);
	if (lgr_h2__conn_init(&sc->c, srv->base, bev, bufferevent_openssl_get_ssl(bev), &conn_ops, srv,
		    srv->cfg.handshake_ms) != LGR_OK)
		goto out;
	bev = NULL;
	sc->next = srv->conns;
	if (srv->conns != NULL)
		srv->conns->prev = sc;
	srv->conns = sc;
	srv->nconns++;
	if (srv->cfg.ssl_ctx == NULL)
		lgr_h2__conn_start(&sc->c);
	sc = NULL;
	rc = LGR_OK;
out:
	if (sc != NULL)
		lgr_log(LGR_LOG_ERR, "%s: %s: cannot set up the connection", srv->name, peer);
	if (bev != NULL)
		bufferevent_free(bev);
	if (ssl != NULL)
		SSL_free(ssl);
	if (fd >= 0)
		evutil_closesocket(fd);
	free(sc);
	return rc;
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	struct lgr_h2_server *srv = arg;
	char peer[64];

	srv->depth++;
	lgr_h2__peer_name(sa, peer, sizeof(peer));
	add_conn(srv, fd, peer);
	srv_leave(srv);
}

int lgr_h2_server_adopt(struct lgr_h2_server *srv, int fd, const char *peer)
{
	if (fd < 0)
		return LGR_EINVAL;
	/* Past this point the listener would not accept either. */
	if (srv->phase != LGR_H2__RUNNING || srv->freeing) {
		evutil_closesocket(fd);
		return LGR_EINVAL;
	}
	if (evutil_make_socket_nonblocking(fd) != 0) {
		lgr_log(LGR_LOG_ERR, "%s: %s: cannot make the socket non-blocking", srv->name,
			peer != NULL ? peer : "?");
		evutil_closesocket(fd);
		return LGR_EIO;
	}
	return add_conn(srv, fd, peer != NULL ? peer : "?");
}

/* ---- lifecycle ------------------------------------------------------------------------------------------------- */

static void goaway(struct lgr_h2__srv_conn *sc)
{
	nghttp2_session *ng = sc->c.ng;

	if (ng == NULL) {
		lgr_h2__conn_kill(&sc->c, LGR_LOG_DEBUG, "server shutting down");
		return;
	}
	nghttp2_submit_goaway(
		ng, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(ng), NGHTTP2_NO_ERROR, NULL, 0);
	lgr_h2__conn_kick(&sc->c);
}

/* The shutdown clock: grace over -> finish the streams; flush time over -> close; all closed -> done. */
static void on_phase(evutil_socket_t fd, short what, void *arg)
{
	struct lgr_h2_server *srv = arg;
	struct timeval flush = {FLUSH_MS / 1000, (FLUSH_MS % 1000) * 1000};

	srv->depth++;
	if (srv->phase == LGR_H2__GRACE) {
		srv->phase = LGR_H2__FLUSHING;
		for (struct lgr_h2__srv_conn *sc = srv->conns; sc != NULL; sc = sc->next) {
			for (struct lgr_h2_stream *s = sc->streams; s != NULL; s = s->next) {
				if (!s->finished && !s->closed && sc->c.ng != NULL)
					lgr_h2__stream_status(s, "200", LGR_GRPC_UNAVAILABLE, "server shutting down");
			}
		}
		event_add(srv->phase_ev, &flush);
	} else if (srv->phase == LGR_H2__FLUSHING) {
		while (srv->conns != NULL) {
			srv->conns->c.dead = true;
			srv->conns->c.level = LGR_LOG_INFO;
			snprintf(srv->conns->c.why, sizeof(srv->conns->c.why), "closed at the end of the shutdown");
			conn_down(&srv->conns->c);
		}
	} else if (srv->phase == LGR_H2__CLOSED && srv->done != NULL) {
		void (*done)(void *) = srv->done;

		srv->done = NULL;
		if (!srv->freeing)
			done(srv->done_ud);
	}
	srv_leave(srv);
}

void lgr_h2_server_shutdown(struct lgr_h2_server *srv, unsigned grace_ms, void (*done)(void *ud), void *ud)
{
	struct timeval grace = {grace_ms / 1000, (grace_ms % 1000) * 1000};

	if (srv->phase != LGR_H2__RUNNING || srv->freeing)
		return;
	srv->phase = LGR_H2__GRACE;
	srv->done = done;
	srv->done_ud = ud;
	if (srv->listener != NULL)
		evconnlistener_free(srv->listener);
	srv->listener = NULL;
	for (struct lgr_h2__srv_conn *sc = srv->conns; sc != NULL; sc = sc->next)
		goaway(sc);
	if (srv->nconns == 0)
		maybe_done(srv);
	else
		event_add(srv->phase_ev, &grace);
}

static void destroy(struct lgr_h2_server *srv)
{
	srv->depth++; /* handlers running below may call lgr_h2_server_free again: it must not recurse */
	if (srv->listener != NULL)
		evconnlistener_free(srv->listener);
	while (srv->conns != NULL) {
		struct lgr_h2__srv_conn *sc = srv->conns;

		sc->c.dead = true;
		sc->c.level = LGR_LOG_DEBUG;
		snprintf(sc->c.why, sizeof(sc->c.why), "server closed");
		conn_down(&sc->c);
	}
	if (srv->phase_ev != NULL)
		event_free(srv->phase_ev);
	if (srv->cbs != NULL)
		nghttp2_session_callbacks_del(srv->cbs);
	if (srv->opt != NULL)
		nghttp2_option_del(srv->opt);
	free(srv);
}

void lgr_h2_server_free(struct lgr_h2_server *srv)
{
	if (srv == NULL || srv->freeing)
		return;
	/* Every accepted stream hears of its end now, even when the memory goes later. */
	for (struct lgr_h2__srv_conn *sc = srv->conns; sc != NULL; sc = sc->next) {
		for (struct lgr_h2_stream *s = sc->streams; s != NULL; s = s->next)
			lgr_h2__stream_notify_close(s);
	}
	srv->freeing = true;
	if (srv->depth == 0)
		destroy(srv);
}

uint16_t lgr_h2_server_port(const struct lgr_h2_server *srv)
{
	return srv->port;
}

size_t lgr_h2_server_connections(const struct lgr_h2_server *srv)
{
	return srv->nconns;
}

static void resolve_defaults(struct lgr_h2_server_config *cfg)
{
	if (cfg->max_message == 0)
		cfg->max_message = LGR_LIMITS_DEFAULT_MESSAGE;
	if (cfg->stream_window == 0)
		cfg->stream_window = LGR_H2_DEFAULT_STREAM_WINDOW;
	if (cfg->conn_window == 0)
		cfg->conn_window = LGR_H2_DEFAULT_CONN_WINDOW;
	if (cfg->max_streams == 0)
		cfg->max_streams = LGR_H2_DEFAULT_MAX_STREAMS;
	if (cfg->max_connections == 0)
		cfg->max_connections = LGR_H2_DEFAULT_MAX_CONNECTIONS;
	if (cfg->max_send_queue == 0)
		cfg->max_send_queue = LGR_H2_DEFAULT_SEND_QUEUE;
	if (cfg->handshake_ms == 0)
		cfg->handshake_ms = LGR_H2_DEFAULT_HANDSHAKE_MS;
	if (cfg->keepalive_ms == 0)
		cfg->keepalive_ms = LGR_H2_DEFAULT_SERVER_KEEPALIVE_MS;
	if (cfg->keepalive_timeout_ms == 0)
		cfg->keepalive_timeout_ms = LGR_H2_DEFAULT_KEEPALIVE_TIMEOUT_MS;
}

static int make_callbacks(struct lgr_h2_server *srv)
{
	if (nghttp2_session_callbacks_new(&srv->cbs) != 0 || nghttp2_option_new(&srv->opt) != 0)
		return LGR_ENOMEM;
	lgr_h2__conn_callbacks(srv->cbs);
	lgr_h2__stream_callbacks(srv->cbs);
	/* Closed streams are not kept for priority bookkeeping: gRPC does not use priorities. */
	nghttp2_option_set_no_closed_streams(srv->opt, 1);
	return LGR_OK;
}

int lgr_h2__parse_address(const char *addr, uint16_t port, struct sockaddr_storage *ss, int *sslen)
{
	struct sockaddr_in *in = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (evutil_inet_pton(AF_INET, addr, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		*sslen = sizeof(*in);
		return LGR_OK;
	}
	if (evutil_inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		*sslen = sizeof(*in6);
		return LGR_OK;
	}
	return LGR_EINVAL;
}

static int listen_on(struct lgr_h2_server *srv)
{
	struct sockaddr_storage ss;
	int sslen;
	char spec[128];
	const char *addr = srv->cfg.address != NULL ? srv->cfg.address : "0.0.0.0";
	unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE;

	snprintf(spec, sizeof(spec), strchr(addr, ':') != NULL ? "[%s]:%u" : "%s:%u", addr, srv->cfg.port);
	if (lgr_h2__parse_address(addr, srv->cfg.port, &ss, &sslen) != LGR_OK) {
		lgr_log(LGR_LOG_ERR, "%s: bad listen address %s (a numeric IPv4 or IPv6 address is needed)", srv->name,
			addr);
		return LGR_EINVAL;
	}
	srv->listener = evconnlistener_new_bind(srv->base, on_accept, srv, flags, 511, (struct sockaddr *)&ss, sslen);
	if (srv->listener == NULL) {
		lgr_log(LGR_LOG_ERR, "%s: cannot listen on %s: %s", srv->name, spec,
			evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		return LGR_EIO;
	}
	sslen = sizeof(ss);
	if (getsockname(evconnlistener_get_fd(srv->listener), (struct sockaddr *)&ss, (socklen_t *)&sslen) == 0)
		srv->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
							   : ((struct sockaddr_in *)&ss)->sin_port);
	return LGR_OK;
}

int lgr_h2_server_new(struct event_base *base, const struct lgr_h2_server_config *cfg, struct lgr_h2_server **out)
{
	struct lgr_h2_server *srv = NULL;
	int rc = LGR_EINVAL;

	*out = NULL;
	if (base == NULL || cfg == NULL || (cfg->nroutes > 0 && cfg->routes == NULL) ||
		cfg->stream_window > INT32_MAX || cfg->conn_window > INT32_MAX)
		goto out;
	rc = LGR_ENOMEM;
	srv = calloc(1, sizeof(*srv));
	if (srv == NULL)
		goto out;
	srv->base = base;
	srv->cfg = *cfg;
	resolve_defaults(&srv->cfg);
	snprintf(srv->name, sizeof(srv->name), "%s", cfg->name != NULL ? cfg->name : "h2 server");
	srv->cfg.name = srv->name;
	srv->phase_ev = evtimer_new(base, on_phase, srv);
	if (srv->phase_ev == NULL || make_callbacks(srv) != LGR_OK)
		goto out;
	rc = listen_on(srv);
	if (rc != LGR_OK)
		goto out;
	*out = srv;
	srv = NULL;
out:
	if (srv != NULL)
		destroy(srv);
	return rc;
}
