/*
 * lgr_tls.h: OpenSSL contexts with the real Loggregator's TLS profile, for every listener and client.
 *
 * The profile: TLS 1.2 with only ECDHE-RSA-AES128-GCM-SHA256 and ECDHE-RSA-AES256-GCM-SHA384, or TLS 1.3; ALPN
 * mandatory (a server refuses a client that offers no protocol it serves, with the no_application_protocol alert,
 * as grpc-go does) unless alpn_optional (the HTTPS gateway); servers require a client certificate chaining to the
 * configured CA unless told otherwise (none, or an optional one) and do not check its name; clients verify the
 * server's chain and its DNS SANs against the expected name, never the CN (as Go does).
 *
 * Contexts are built once at configuration time and shared read-only by the connections of one listener or client
 * (OpenSSL makes that thread-safe).
 */
#ifndef LGR_TLS_H
#define LGR_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

#include "lgr.h"

struct lgr_tls_config {
	const char *ca_file;   /* PEM CA bundle peers must chain to (clients: servers; servers: clients); a server that
				* neither requires nor requests client certificates may have none */
	const char *cert_file; /* PEM certificate (chain) of this side */
	const char *key_file;  /* PEM private key of this side */
	/* Clients: the DNS SAN the server must present. */
	const char *server_name;
	/* Servers: require and verify a client certificate (gRPC listeners); false: request none (HTTPS gateway). */
	bool require_client_cert;
	/*
	 * Servers without require_client_cert: ask for a client certificate and verify it against ca_file when one is
	 * sent (a bad one fails the handshake), but serve clients that send none.
	 */
	bool request_client_cert;
	/* ALPN protocols, most preferred first, e.g. {"h2", NULL} or {"h2", "http/1.1", NULL}. Borrowed by a server
	 * context: the list must outlive it. */
	const char *const *alpn;
	/*
	 * Servers: a client offering no ALPN, or none of ours, is served without an agreed protocol instead of being
	 * refused (HTTP/1.1 clients need not use ALPN).
	 */
	bool alpn_optional;
};

/*
 * Builds a server or client context from cfg. On failure returns LGR_EINVAL (missing file argument) or LGR_EIO
 * (a file cannot be read or the key does not match the certificate) with a message naming the file in err.
 */
int lgr_tls_server_ctx(const struct lgr_tls_config *cfg, SSL_CTX **out, char *err, size_t errlen);
int lgr_tls_client_ctx(const struct lgr_tls_config *cfg, SSL_CTX **out, char *err, size_t errlen);

/*
 * A client connection object for ctx that sends server_name as SNI and checks it against the certificate's DNS
 * SANs during the handshake. NULL when out of memory.
 */
SSL *lgr_tls_client_ssl(SSL_CTX *ctx, const char *server_name);

/* The ALPN protocol agreed on ssl after the handshake, as a NUL-terminated string in buf; "" when none. */
const char *lgr_tls_alpn(SSL *ssl, char *buf, size_t buflen);

/*
 * True when the peer's certificate carries one of names as a DNS SAN, or, failing any DNS SAN, as its CN
 * (tls.permittedpeers). An empty list (names NULL or names[0] NULL) permits every verified peer.
 */
bool lgr_tls_peer_permitted(SSL *ssl, const char *const *names);

/* Describes the last OpenSSL error of this thread (and clears the queue) into buf; returns buf. */
const char *lgr_tls_error(char *buf, size_t buflen);

#endif
