/*
 * lgr_tls.c: OpenSSL context construction with the Loggregator TLS profile (see lgr_tls.h).
 */
#include "lgr_tls.h"

#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#define TLS12_CIPHERS "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384"

const char *lgr_tls_error(char *buf, size_t buflen)
{
	unsigned long e = ERR_get_error();

	if (e == 0)
		snprintf(buf, buflen, "no OpenSSL error recorded");
	else
		ERR_error_string_n(e, buf, buflen);
	ERR_clear_error();
	return buf;
}

/* The ALPN list in wire form (length-prefixed names); returns its length, 0 when it does not fit. */
static size_t alpn_wire(const char *const *alpn, unsigned char *out, size_t cap)
{
	size_t n = 0;

	for (; alpn != NULL && *alpn != NULL; alpn++) {
		size_t len = strlen(*alpn);

		if (len == 0 || len > 255 || n + 1 + len > cap)
			return 0;
		out[n++] = (unsigned char)len;
		memcpy(out + n, *alpn, len);
		n += len;
	}
	return n;
}

/* Our most preferred protocol that the client offers, from the configured list ours. */
static int alpn_pick(const char *const *ours, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
	unsigned int inlen)
{
	for (; ours != NULL && *ours != NULL; ours++) {
		size_t len = strlen(*ours);
		unsigned int i = 0;

		while (i < inlen) {
			unsigned int plen = in[i];

			if (i + 1 + plen > inlen)
				break;
			if (plen == len && memcmp(in + i + 1, *ours, len) == 0) {
				*out = in + i + 1;
				*outlen = (unsigned char)plen;
				return SSL_TLSEXT_ERR_OK;
			}
			i += 1 + plen;
		}
	}
	return SSL_TLSEXT_ERR_NOACK;
}

/* Server side: none in common is fatal, as it is for grpc-go. The configured list is the callback argument. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
	unsigned int inlen, void *arg)
{
	int rc = alpn_pick(arg, out, outlen, in, inlen);

	return rc == SSL_TLSEXT_ERR_OK ? rc : SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* With alpn_optional: none in common goes on without a protocol. */
static int alpn_select_optional(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
	unsigned int inlen, void *arg)
{
	return alpn_pick(arg, out, outlen, in, inlen);
}

/* A client that offers no ALPN at all never reaches alpn_select: refuse it in the ClientHello. */
static int client_hello(SSL *ssl, int *alert, void *arg)
{
	const unsigned char *ext;
	size_t len;

	if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &ext, &len) == 1)
		return SSL_CLIENT_HELLO_SUCCESS;
	*alert = SSL_AD_NO_APPLICATION_PROTOCOL;
	return SSL_CLIENT_HELLO_ERROR;
}

/* The settings both sides share: versions, ciphers, own certificate and key, the CA to verify the peer. */
/* need_ca: the CA is required (clients, and servers that verify client certificates); otherwise optional. */
static int common(SSL_CTX *ctx, const struct lgr_tls_config *cfg, bool need_ca, char *err, size_t errlen)
{
	char why[256];

	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* HTTP/2 frames its own data, so a peer closing without close_notify (grpc-js, Go) is a normal close, not a
	 * truncation to report. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
					 SSL_OP_IGNORE_UNEXPECTED_EOF);
	if (SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1) {
		snprintf(err, errlen, "TLS 1.2 cipher list: %s", lgr_tls_error(why, sizeof(why)));
		return LGR_EIO;
	}
	if (cfg->cert_file == NULL || cfg->key_file == NULL || (need_ca && cfg->ca_file == NULL)) {
		snprintf(err, errlen,
			need_ca ? "a CA, a certificate and a private key are required"
				: "a certificate and a private key are required");
		return LGR_EINVAL;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, cfg->cert_file) != 1) {
		snprintf(err, errlen, "certificate %s: %s", cfg->cert_file, lgr_tls_error(why, sizeof(why)));
		return LGR_EIO;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, cfg->key_file, SSL_FILETYPE_PEM) != 1) {
		snprintf(err, errlen, "private key %s: %s", cfg->key_file, lgr_tls_error(why, sizeof(why)));
		return LGR_EIO;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(err, errlen, "private key %s does not match certificate %s", cfg->key_file, cfg->cert_file);
		ERR_clear_error();
		return LGR_EIO;
	}
	if (cfg->ca_file != NULL && SSL_CTX_load_verify_locations(ctx, cfg->ca_file, NULL) != 1) {
		snprintf(err, errlen, "CA %s: %s", cfg->ca_file, lgr_tls_error(why, sizeof(why)));
		return LGR_EIO;
	}
	return LGR_OK;
}

int lgr_tls_server_ctx(const struct lgr_tls_config *cfg, SSL_CTX **out, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	int rc;

	*out = NULL;
	if (ctx == NULL) {
		snprintf(err, errlen, "out of memory");
		return LGR_ENOMEM;
	}
	rc = common(ctx, cfg, cfg->require_client_cert || cfg->request_client_cert, err, errlen);
	if (rc != LGR_OK)
		goto out;
	if (cfg->require_client_cert || cfg->request_client_cert) {
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->ca_file);

		if (names != NULL)
			SSL_CTX_set_client_CA_list(ctx, names);
		SSL_CTX_set_verify(
			ctx, SSL_VERIFY_PEER | (cfg->require_client_cert ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0), NULL);
	} else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	}
	if (cfg->alpn != NULL && cfg->alpn[0] != NULL && cfg->alpn_optional) {
		SSL_CTX_set_alpn_select_cb(ctx, alpn_select_optional, (void *)cfg->alpn);
	} else if (cfg->alpn != NULL && cfg->alpn[0] != NULL) {
		SSL_CTX_set_alpn_select_cb(ctx, alpn_select, (void *)cfg->alpn);
		SSL_CTX_set_client_hello_cb(ctx, client_hello, NULL);
	}
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ctx, 0);
out:
	if (rc != LGR_OK)
		SSL_CTX_free(ctx);
	else
		*out = ctx;
	return rc;
}

int lgr_tls_client_ctx(const struct lgr_tls_config *cfg, SSL_CTX **out, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	unsigned char wire[256];
	size_t wire_len;
	int rc;

	*out = NULL;
	if (ctx == NULL) {
		snprintf(err, errlen, "out of memory");
		return LGR_ENOMEM;
	}
	rc = common(ctx, cfg, true, err, errlen);
	if (rc != LGR_OK)
		goto out;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	wire_len = alpn_wire(cfg->alpn, wire, sizeof(wire));
	/* Note: SSL_CTX_set_alpn_protos returns 0 on success. */
	if (wire_len > 0 && SSL_CTX_set_alpn_protos(ctx, wire, (unsigned int)wire_len) != 0) {
		snprintf(err, errlen, "ALPN list rejected");
		rc = LGR_EINVAL;
		goto out;
	}
out:
	if (rc != LGR_OK)
		SSL_CTX_free(ctx);
	else
		*out = ctx;
	return rc;
}

SSL *lgr_tls_client_ssl(SSL_CTX *ctx, const char *server_name)
{
	SSL *ssl = SSL_new(ctx);

	if (ssl == NULL)
		return NULL;
	if (server_name != NULL && server_name[0] != '\0') {
		/* The name is checked against DNS SANs only: Go ignores the CN, so a CN-only certificate fails here
		 * too. */
		SSL_set_hostflags(ssl, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT | X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		if (SSL_set1_host(ssl, server_name) != 1 || SSL_set_tlsext_host_name(ssl, server_name) != 1) {
			SSL_free(ssl);
			return NULL;
		}
	}
	return ssl;
}

const char *lgr_tls_alpn(SSL *ssl, char *buf, size_t buflen)
{
	const unsigned char *p = NULL;
	unsigned int len = 0;

	SSL_get0_alpn_selected(ssl, &p, &len);
	if (buflen == 0)
		return buf;
	if (len >= buflen)
		len = (unsigned int)buflen - 1;
	if (len > 0)
		memcpy(buf, p, len);
	buf[len] = '\0';
	return buf;
}

bool lgr_tls_peer_permitted(SSL *ssl, const char *const *names)
{
	X509 *peer;
	bool ok = false;

	if (names == NULL || names[0] == NULL)
		return true;
	peer = SSL_get1_peer_certificate(ssl);
	if (peer == NULL)
		return false;
	for (; *names != NULL && !ok; names++) {
		/* Without DNS SANs, OpenSSL falls back to the CN, which is what permittedpeers documents. */
		ok = X509_check_host(peer, *names, 0, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL) == 1;
	}
	X509_free(peer);
	return ok;
}
