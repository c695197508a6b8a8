/*
 * iml_net.c: the network side of one imloggregator instance (see iml.h): gRPC routes or a UDP socket, checking,
 * and the push into the instance's ring.
 *
 * Every call and datagram is handled to the end on the loop thread: check (v2) or decode and convert (v1), push.
 * Nothing here waits; a full ring drops its oldest item (counted by the ring), so a sender is never slowed by
 * rsyslog. v2 envelopes are only checked here (lgr_pb, no allocation per envelope) and copied once per message;
 * the submitter decodes them, so that the allocations of a decoded envelope and their release stay on one thread.
 *
 * Malformed input ends only the call that carried it (INVALID_ARGUMENT), after the envelopes of its earlier
 * messages were accepted; it is counted in `invalid` and logged, at most LOG_BURST lines per LOG_WINDOW seconds.
 */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <event2/event.h>

#include "iml.h"
#include "lgr.h"
#include "lgr_grpc.h"
#include "lgr_h2.h"
#include "lgr_pb.h"
#include "lgr_tls.h"

#define LOG_WINDOW_MS 10000u /* refusal lines: at most LOG_BURST per window */
#define LOG_BURST     5
#define UDP_READS     64 /* datagrams per readiness callback, so one busy socket cannot starve the loop */
#define UDP_BUF	      65536

enum call_kind {
	CALL_SENDER, /* stream of Envelope */
	CALL_BATCH,  /* stream of EnvelopeBatch */
	CALL_SEND,   /* unary EnvelopeBatch */
	CALL_PUSHER, /* stream of EnvelopeData (v1) */
};

struct iml_net {
	struct iml_net_conf conf;
	char *name;
	struct lgr_limits lim;
	struct lgr_h2_server *srv;
	struct lgr_h2_route routes[4];
	/* UDP */
	int fd;
	struct event *udp_ev;
	uint8_t *udp_buf;
	struct lgr_logger lg;	     /* refusal lines: the net's name, through lgr_log */
	struct lgr_ratelimit log_rl; /* refusal lines (loop thread) */
	size_t next_ring;	     /* the ring the next call is given */
};

/* One accepted gRPC call. */
struct call {
	struct iml_net *net;
	enum call_kind kind;
	bool ended;	       /* finished with an error */
	struct lgr_ring *ring; /* every envelope of the call goes here, in order */
	char ip[IML_IP_MAX];
};

static const char *const paths[] = {
	[CALL_SENDER] = "/loggregator.v2.Ingress/Sender",
	[CALL_BATCH] = "/loggregator.v2.Ingress/BatchSender",
	[CALL_SEND] = "/loggregator.v2.Ingress/Send",
	[CALL_PUSHER] = "/plumbing.DopplerIngestor/Pusher",
};

static void count_invalid(struct iml_net *net)
{
	__atomic_add_fetch(net->conf.invalid, 1, __ATOMIC_RELAXED);
}

struct iml_batch {
	int refs; /* atomic: items not yet freed */
	char ip[IML_IP_MAX];
	struct iml_item items[]; /* then the message bytes */
};

void iml_item_free(void *item, void *ud)
{
	struct iml_item *it = item;
	struct iml_batch *b;

	(void)ud;
	if (it == NULL)
		return;
	b = it->batch;
	lgr_env_unref(it->env);
	it->env = NULL;
	if (__atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) == 0)
		free(b);
}

const char *iml_item_ip(const struct iml_item *it)
{
	return it->batch->ip;
}

/* A batch of n items with room for len message bytes (at batch_bytes()). */
static struct iml_batch *batch_new(size_t n, size_t len, const char ip[IML_IP_MAX])
{
	struct iml_batch *b;

	if (n > (SIZE_MAX - sizeof(*b) - len) / sizeof(b->items[0]))
		return NULL;
	b = malloc(sizeof(*b) + n * sizeof(b->items[0]) + len);
	if (b == NULL)
		return NULL;
	b->refs = (int)n;
	memcpy(b->ip, ip, sizeof(b->ip));
	return b;
}

static uint8_t *batch_bytes(struct iml_batch *b, size_t n)
{
	return (uint8_t *)&b->items[n];
}

/* Pushes the batch's n items; the ring owns them from here (a full ring frees its oldest). */
static void batch_push(struct lgr_ring *ring, struct iml_batch *b, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		lgr_ring_push(ring, &b->items[i]);
}

/* A datagram's ring: always the same one for a sender's address, so that its datagrams keep their order. */
static struct lgr_ring *ring_of_ip(const struct iml_net *net, const char *ip)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	if (net->conf.nrings == 1)
		return net->conf.rings[0];
	for (; *ip != '\0'; ip++)
		h = (h ^ (uint8_t)*ip) * 16777619u;
	return net->conf.rings[h % net->conf.nrings];
}

/* Logs and counts an envelope lost to memory exhaustion. */
static void lost_to_memory(struct iml_net *net, size_t n)
{
	__atomic_add_fetch(net->conf.invalid, n, __ATOMIC_RELAXED);
	lgr_logger_say(&net->lg, &net->log_rl, LGR_LOG_WARNING, "out of memory; %zu envelope(s) dropped", n);
}

/* Takes ownership of a decoded envelope (a v1 conversion) and pushes it. */
static void accept_env(struct iml_net *net, struct lgr_ring *ring, struct lgr_env *env, const char ip[IML_IP_MAX])
{
	struct iml_batch *b = batch_new(1, 0, ip);

	if (b == NULL) {
		lgr_env_unref(env);
		lost_to_memory(net, 1);
		return;
	}
	b->items[0] = (struct iml_item){.batch = b, .env = env};
	batch_push(ring, b, 1);
}

/* A v2 Envelope message (Sender): checked, copied, pushed. */
static int accept_envelope(struct iml_net *net, struct call *c, const uint8_t *msg, size_t len)
{
	struct iml_batch *b;
	uint8_t *bytes;
	int rc;

	rc = lgr_pb_check_envelope(msg, len, &net->lim);
	if (rc != LGR_OK)
		return rc;
	b = batch_new(1, len, c->ip);
	if (b == NULL)
		return LGR_ENOMEM;
	bytes = batch_bytes(b, 1);
	memcpy(bytes, msg, len);
	b->items[0] = (struct iml_item){.batch = b, .data = bytes, .len = len};
	batch_push(c->ring, b, 1);
	return LGR_OK;
}

int iml_push_batch(
	struct lgr_ring *ring, const struct lgr_limits *lim, const uint8_t *msg, size_t len, const char ip[IML_IP_MAX])
{
	struct lgr_pb_field f;
	struct iml_batch *b;
	uint8_t *bytes;
	size_t count = 0, n = 0, pos = 0;
	int rc;

	rc = lgr_pb_check_batch(msg, len, lim, &count);
	if (rc != LGR_OK || count == 0)
		return rc;
	b = batch_new(count, len, ip);
	if (b == NULL)
		return LGR_ENOMEM;
	bytes = batch_bytes(b, count);
	memcpy(bytes, msg, len);
	while (pos < len && n < count) {
		if (lgr_pb_field_next(bytes, len, &pos, &f) != LGR_OK)
			break; /* cannot happen: checked above */
		if (f.number == 1 && f.wire == LGR_PB_LEN)
			b->items[n++] = (struct iml_item){.batch = b, .data = f.data, .len = f.len};
	}
	b->refs = (int)n;
	if (n == 0) {
		free(b);
		return LGR_OK;
	}
	batch_push(ring, b, n);
	return LGR_OK;
}

/* A v2 EnvelopeBatch (BatchSender, Send). */
static int accept_batch(struct iml_net *net, struct call *c, const uint8_t *msg, size_t len)
{
	return iml_push_batch(c->ring, &net->lim, msg, len, c->ip);
}

/* ---- v1 ------------------------------------------------------------------------------------------------------ */

/* One marshalled v1 Envelope (a datagram or an EnvelopeData payload) into the ring. */
static int accept_v1(
	struct iml_net *net, struct lgr_ring *ring, const uint8_t *buf, size_t len, const char ip[IML_IP_MAX], bool udp)
{
	Events__Envelope *v1 = NULL;
	struct lgr_env *env = NULL;
	int rc;

	rc = lgr_v1_decode(buf, len, &net->lim, &v1);
	if (rc == LGR_OK && udp && net->conf.v1_defaults != NULL)
		rc = lgr_v1_apply_defaults(v1, net->conf.v1_defaults);
	if (rc == LGR_OK)
		rc = lgr_v1_to_v2(v1, &env);
	lgr_v1_free(v1);
	if (rc == LGR_OK)
		accept_env(net, ring, env, ip);
	return rc;
}

/* EnvelopeData {payload = 1 bytes}: the last payload field wins, as protobuf merges singular fields. */
static int accept_envelope_data(struct iml_net *net, struct call *c, const uint8_t *msg, size_t len)
{
	struct lgr_pb_field f;
	const uint8_t *payload = NULL;
	size_t pos = 0, plen = 0;
	int rc;

	while (pos < len) {
		rc = lgr_pb_field_next(msg, len, &pos, &f);
		if (rc != LGR_OK)
			return rc;
		if (f.number == 1) {
			if (f.wire != LGR_PB_LEN)
				return LGR_EDECODE;
			payload = f.data;
			plen = f.len;
		}
	}
	if (payload == NULL)
		return LGR_EMISSING;
	return accept_v1(net, c->ring, payload, plen, c->ip, false);
}

/* ---- gRPC ---------------------------------------------------------------------------------------------------- */

static void ip_of_peer(const char *peer, char *ip, size_t len)
{
	const char *end;
	size_t n;

	if (peer[0] == '[') { /* "[v6]:port" */
		peer++;
		end = strchr(peer, ']');
	} else {
		end = strrchr(peer, ':');
	}
	n = end != NULL ? (size_t)(end - peer) : strlen(peer);
	if (n >= len)
		n = len - 1;
	memcpy(ip, peer, n);
	ip[n] = '\0';
}

static int on_open(struct lgr_h2_stream *s, void *ud)
{
	struct iml_net *net = ud;
	const char *path = lgr_h2_stream_path(s);
	struct call *c;
	SSL *ssl;
	size_t i;

	ssl = lgr_h2_stream_ssl(s);
	if (ssl != NULL && net->conf.permitted_peers != NULL &&
		!lgr_tls_peer_permitted(ssl, net->conf.permitted_peers)) {
		count_invalid(net);
		lgr_logger_say(&net->lg, &net->log_rl, LGR_LOG_WARNING,
			"%s: client certificate names no permitted peer", lgr_h2_stream_peer(s));
		lgr_h2_stream_finish(s, LGR_GRPC_PERMISSION_DENIED, "client not permitted");
		return LGR_GRPC_PERMISSION_DENIED;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return LGR_GRPC_RESOURCE_EXHAUSTED;
	c->net = net;
	c->ring = net->conf.rings[net->next_ring];
	net->next_ring = (net->next_ring + 1) % net->conf.nrings;
	for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		if (strcmp(path, paths[i]) == 0)
			c->kind = (enum call_kind)i;
	}
	ip_of_peer(lgr_h2_stream_peer(s), c->ip, sizeof(c->ip));
	lgr_h2_stream_set_data(s, c);
	return LGR_GRPC_OK;
}

static void on_message(struct lgr_h2_stream *s, const uint8_t *msg, size_t len, void *ud)
{
	struct iml_net *net = ud;
	struct call *c = lgr_h2_stream_data(s);
	int rc;

	if (c->ended)
		return;
	switch (c->kind) {
	case CALL_SENDER: rc = accept_envelope(net, c, msg, len); break;
	case CALL_BATCH:
	case CALL_SEND: rc = accept_batch(net, c, msg, len); break;
	case CALL_PUSHER: rc = accept_envelope_data(net, c, msg, len); break;
	default: rc = LGR_EINVAL; break;
	}
	if (rc == LGR_OK)
		return;
	count_invalid(net);
	lgr_logger_say(&net->lg, &net->log_rl, LGR_LOG_WARNING, "%s: %s: %zu-byte message refused: %s",
		lgr_h2_stream_peer(s), paths[c->kind], len, lgr_strerror(rc));
	c->ended = true;
	lgr_h2_stream_finish(s, rc == LGR_ENOMEM ? LGR_GRPC_RESOURCE_EXHAUSTED : LGR_GRPC_INVALID_ARGUMENT,
		rc == LGR_ENOMEM ? "out of memory" : lgr_strerror(rc));
}

/* The client sent everything: one empty response message (IngressResponse, BatchSenderResponse, SendResponse,
 * PushResponse are all empty) and status OK. */
static void on_half_close(struct lgr_h2_stream *s, void *ud)
{
	struct call *c = lgr_h2_stream_data(s);

	(void)ud;
	if (c->ended)
		return;
	c->ended = true;
	lgr_h2_stream_send(s, NULL, 0);
	lgr_h2_stream_finish(s, LGR_GRPC_OK, NULL);
}

static void on_close(struct lgr_h2_stream *s, bool reset, void *ud)
{
	(void)reset;
	(void)ud;
	free(lgr_h2_stream_data(s));
	lgr_h2_stream_set_data(s, NULL);
}

/* The transport refused a call or lost a connection to an error (see lgr_h2_server_config.on_refused). */
static void on_refused(const char *peer, const char *path, int status, const char *why, void *ud)
{
	struct iml_net *net = ud;

	count_invalid(net);
	if (path == NULL)
		lgr_logger_say(&net->lg, &net->log_rl, LGR_LOG_WARNING, "%s: connection refused: %s", peer, why);
	else
		lgr_logger_say(&net->lg, &net->log_rl, LGR_LOG_WARNING, "%s: %s: call refused with status %d (%s): %s",
			peer, path, status, lgr_grpc_status_name(status), why);
}

static const struct lgr_h2_handlers handlers = {
	.on_open = on_open,
	.on_message = on_message,
	.on_half_close = on_half_close,
	.on_close = on_close,
};

static int grpc_new(struct iml_net *net, struct event_base *base)
{
	struct lgr_h2_server_config cfg = {0};
	size_t i;

	for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		net->routes[i].path = paths[i];
		net->routes[i].handlers = &handlers;
		net->routes[i].ud = net;
	}
	cfg.address = net->conf.address;
	cfg.port = (uint16_t)net->conf.port;
	cfg.ssl_ctx = net->conf.ssl_ctx;
	cfg.routes = net->routes;
	cfg.nroutes = sizeof(paths) / sizeof(paths[0]);
	cfg.max_message = net->conf.max_message;
	cfg.name = net->name;
	cfg.on_refused = on_refused;
	cfg.ud = net;
	return lgr_h2_server_new(base, &cfg, &net->srv);
}

/* ---- UDP ----------------------------------------------------------------------------------------------------- */

static void udp_read(evutil_socket_t fd, short what, void *ud)
{
	struct iml_net *net = ud;
	struct sockaddr_storage from;
	char ip[IML_IP_MAX] = {0};
	struct iovec iov;
	struct msghdr mh;
	ssize_t n;
	int i, rc;

	(void)what;
	for (i = 0; i < UDP_READS; i++) {
		memset(&mh, 0, sizeof(mh));
		iov.iov_base = net->udp_buf;
		iov.iov_len = UDP_BUF;
		mh.msg_name = &from;
		mh.msg_namelen = sizeof(from);
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_TRUNC);
		if (n < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				lgr_logger_say(&net->lg, &net->log_rl, LGR_LOG_WARNING, "reading a datagram: %s",
					strerror(errno));
			break;
		}
		ip[0] = '\0';
		if (from.ss_family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *)&from)->sin_addr, ip, sizeof(ip));
		else if (from.ss_family == AF_INET6)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&from)->sin6_addr, ip, sizeof(ip));
		if ((size_t)n > net->conf.max_message || (mh.msg_flags & MSG_TRUNC) != 0) {
			count_invalid(net);
			lgr_logger_say(&net->lg, &net->log_rl, LGR_LOG_WARNING,
				"%s: %zd-byte datagram refused: larger than maxMessageSize (%zu)", ip, n,
				net->conf.max_message);
			continue;
		}
		rc = accept_v1(net, ring_of_ip(net, ip), net->udp_buf, (size_t)n, ip, true);
		if (rc != LGR_OK) {
			count_invalid(net);
			lgr_logger_say(&net->lg, &net->log_rl, LGR_LOG_WARNING, "%s: %zd-byte datagram refused: %s", ip,
				n, lgr_strerror(rc));
		}
	}
}

static int udp_new(struct iml_net *net, struct event_base *base)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	int rc = LGR_EIO, rcvbuf = 4 << 20;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, net->conf.address, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		ss.ss_family = AF_INET;
		((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)net->conf.port);
		sslen = sizeof(struct sockaddr_in);
	} else if (inet_pton(AF_INET6, net->conf.address, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
		ss.ss_family = AF_INET6;
		((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)net->conf.port);
		sslen = sizeof(struct sockaddr_in6);
	} else {
		lgr_log(LGR_LOG_ERR, "%s: bad listen address %s (a numeric IPv4 or IPv6 address is needed)", net->name,
			net->conf.address);
		rc = LGR_EINVAL;
		goto out;
	}
	net->fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (net->fd < 0 || bind(net->fd, (struct sockaddr *)&ss, sslen) != 0) {
		lgr_log(LGR_LOG_ERR, "%s: cannot bind UDP %s port %d: %s", net->name, net->conf.address, net->conf.port,
			strerror(errno));
		goto out;
	}
	/* A larger kernel buffer absorbs bursts while the loop is busy; the kernel caps it at rmem_max. */
	setsockopt(net->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	net->udp_buf = malloc(UDP_BUF);
	net->udp_ev = event_new(base, net->fd, EV_READ | EV_PERSIST, udp_read, net);
	if (net->udp_buf == NULL || net->udp_ev == NULL || event_add(net->udp_ev, NULL) != 0) {
		rc = LGR_ENOMEM;
		goto out;
	}
	rc = LGR_OK;
out:
	return rc;
}

/* ---- lifecycle ----------------------------------------------------------------------------------------------- */

int iml_net_new(struct event_base *base, const struct iml_net_conf *conf, struct iml_net **out)
{
	struct iml_net *net;
	int rc = LGR_ENOMEM;

	*out = NULL;
	if (conf->rings == NULL || conf->nrings == 0)
		return LGR_EINVAL;
	net = calloc(1, sizeof(*net));
	if (net == NULL)
		goto out;
	net->conf = *conf;
	net->fd = -1;
	net->log_rl = (struct lgr_ratelimit)LGR_RATELIMIT_INIT(LOG_WINDOW_MS, LOG_BURST);
	net->name = strdup(conf->name != NULL ? conf->name : "imloggregator");
	net->lg = (struct lgr_logger){net->name, NULL, NULL};
	if (net->name == NULL)
		goto out;
	net->lim.max_message = conf->max_message;
	lgr_limits_resolve(&net->lim);
	net->conf.max_message = net->lim.max_message;
	rc = conf->kind == IML_NET_UDP ? udp_new(net, base) : grpc_new(net, base);
out:
	if (rc != LGR_OK)
		iml_net_free(net);
	else
		*out = net;
	return rc;
}

uint16_t iml_net_port(const struct iml_net *net)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (net->srv != NULL)
		return lgr_h2_server_port(net->srv);
	if (net->fd < 0 || getsockname(net->fd, (struct sockaddr *)&ss, &len) != 0)
		return 0;
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

void iml_net_shutdown(struct iml_net *net, unsigned grace_ms, void (*done)(void *ud), void *ud)
{
	if (net->srv != NULL) {
		lgr_h2_server_shutdown(net->srv, grace_ms, done, ud);
		return;
	}
	/* UDP: what the kernel holds now was accepted by the network; take it, then stop. */
	if (net->udp_ev != NULL) {
		udp_read(net->fd, EV_READ, net);
		event_del(net->udp_ev);
	}
	if (done != NULL)
		done(ud);
}

void iml_net_free(struct iml_net *net)
{
	if (net == NULL)
		return;
	lgr_h2_server_free(net->srv);
	if (net->udp_ev != NULL)
		event_free(net->udp_ev);
	if (net->fd >= 0)
		close(net->fd);
	free(net->udp_buf);
	free(net->name);
	free(net);
}
