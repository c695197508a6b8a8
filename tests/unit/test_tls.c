/*
 * test_tls.c: the TLS profile, shown by in-memory handshakes between contexts built by lgr_tls: what the real
 * Loggregator accepts is accepted (mutual TLS with ALPN h2, TLS 1.2 ECDHE-RSA-GCM and TLS 1.3) and what it refuses
 * is refused (no client certificate, another CA, a wrong or CN-only server name, no ALPN, TLS 1.1).
 */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>

#include "lgr_tls.h"

static char pki[256];

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	cr_assert_eq(system(cmd), 0, "command failed: %s", cmd);
}

/* A CA with metron/doppler/client certificates (gen-pki.sh), another CA with its own client, a CN-only server. */
static void make_pki(void)
{
	char tmpl[] = "/tmp/lgr-tls-XXXXXX";

	cr_assert_not_null(mkdtemp(tmpl));
	snprintf(pki, sizeof(pki), "%s", tmpl);
	sh("'" TOP_SRCDIR "/contrib/gen-pki.sh' %s >/dev/null", pki);
	sh("cd %s && openssl req -x509 -newkey rsa:2048 -nodes -keyout other.key -out other.crt -days 2 "
	   "-subj /CN=client -addext subjectAltName=DNS:client 2>/dev/null",
		pki);
	sh("cd %s && openssl req -newkey rsa:2048 -nodes -keyout cnonly.key -out cnonly.csr -subj /CN=doppler "
	   "2>/dev/null"
	   " && openssl x509 -req -in cnonly.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out cnonly.crt -days 2 "
	   "2>/dev/null",
		pki);
}

static void remove_pki(void)
{
	sh("rm -rf '%s'", pki);
}

TestSuite(tls, .init = make_pki, .fini = remove_pki);

static const char *h2[] = {"h2", NULL};

static char *path(const char *name)
{
	static char buf[8][512];
	static int next;
	char *p = buf[next++ % 8];

	snprintf(p, 512, "%s/%s", pki, name);
	return p;
}

static SSL_CTX *server(const char *name, const char *const *alpn)
{
	char crt[64], key[64], err[512];
	struct lgr_tls_config cfg = {0};
	SSL_CTX *ctx;

	snprintf(crt, sizeof(crt), "%s.crt", name);
	snprintf(key, sizeof(key), "%s.key", name);
	cfg.ca_file = path("ca.crt");
	cfg.cert_file = path(crt);
	cfg.key_file = path(key);
	cfg.require_client_cert = true;
	cfg.alpn = alpn;
	cr_assert_eq(lgr_tls_server_ctx(&cfg, &ctx, err, sizeof(err)), LGR_OK, "%s", err);
	return ctx;
}

static SSL_CTX *client(const char *name, const char *const *alpn)
{
	char crt[64], key[64], err[512];
	struct lgr_tls_config cfg = {0};
	SSL_CTX *ctx;

	snprintf(crt, sizeof(crt), "%s.crt", name);
	snprintf(key, sizeof(key), "%s.key", name);
	cfg.ca_file = path("ca.crt");
	cfg.cert_file = path(crt);
	cfg.key_file = path(key);
	cfg.alpn = alpn;
	cr_assert_eq(lgr_tls_client_ctx(&cfg, &ctx, err, sizeof(err)), LGR_OK, "%s", err);
	return ctx;
}

struct outcome {
	bool ok;
	char alpn[16];
	int version;
	char cipher[64];
};

/* Runs a handshake between the two over a BIO pair; the client checks server_name. */
static struct outcome handshake(SSL_CTX *sctx, SSL *c)
{
	SSL *s = SSL_new(sctx);
	BIO *sb, *cb;
	struct outcome o = {0};
	int cr = 0, sr = 0;

	cr_assert(BIO_new_bio_pair(&sb, 0, &cb, 0) == 1);
	SSL_set_bio(s, sb, sb);
	SSL_set_bio(c, cb, cb);
	SSL_set_accept_state(s);
	SSL_set_connect_state(c);
	for (int i = 0; i < 20 && (cr != 1 || sr != 1); i++) {
		if (cr != 1) {
			cr = SSL_do_handshake(c);
			if (cr != 1 && SSL_get_error(c, cr) != SSL_ERROR_WANT_READ)
				break;
		}
		if (sr != 1) {
			sr = SSL_do_handshake(s);
			if (sr != 1 && SSL_get_error(s, sr) != SSL_ERROR_WANT_READ)
				break;
		}
	}
	/* In TLS 1.3 the client finishes before the server has checked its certificate: let the server speak. */
	if (cr == 1 && sr == 1) {
		char byte = 'x';

		o.ok = SSL_write(s, &byte, 1) == 1 && SSL_read(c, &byte, 1) == 1;
	}
	lgr_tls_alpn(s, o.alpn, sizeof(o.alpn));
	o.version = SSL_version(s);
	snprintf(o.cipher, sizeof(o.cipher), "%s", SSL_get_cipher_name(s));
	ERR_clear_error();
	SSL_free(s);
	SSL_free(c);
	return o;
}

Test(tls, mutual_tls_with_alpn_h2_succeeds_and_the_server_sees_the_client_certificate)
{
	SSL_CTX *s = server("doppler", h2), *c = client("client", h2);
	struct outcome o = handshake(s, lgr_tls_client_ssl(c, "doppler"));

	cr_assert(o.ok);
	cr_assert_str_eq(o.alpn, "h2");
	cr_assert_eq(o.version, TLS1_3_VERSION);
	SSL_CTX_free(s);
	SSL_CTX_free(c);
}

Test(tls, a_tls12_client_gets_an_ecdhe_rsa_gcm_cipher)
{
	SSL_CTX *s = server("doppler", h2), *c = client("client", h2);
	struct outcome o;

	SSL_CTX_set_max_proto_version(c, TLS1_2_VERSION);
	o = handshake(s, lgr_tls_client_ssl(c, "doppler"));
	cr_assert(o.ok);
	cr_assert_eq(o.version, TLS1_2_VERSION);
	cr_assert(strcmp(o.cipher, "ECDHE-RSA-AES128-GCM-SHA256") == 0 ||
			  strcmp(o.cipher, "ECDHE-RSA-AES256-GCM-SHA384") == 0,
		"cipher %s", o.cipher);
	SSL_CTX_free(s);
	SSL_CTX_free(c);
}

Test(tls, a_client_without_a_certificate_is_refused)
{
	SSL_CTX *s = server("doppler", h2), *c = client("client", h2);
	SSL *ssl;

	/* A context of the same profile but without a certificate of its own. */
	SSL_CTX_free(c);
	c = SSL_CTX_new(TLS_client_method());
	SSL_CTX_load_verify_locations(c, path("ca.crt"), NULL);
	SSL_CTX_set_alpn_protos(c, (const unsigned char *)"\x02h2", 3);
	ssl = lgr_tls_client_ssl(c, "doppler");
	cr_assert_not(handshake(s, ssl).ok);
	SSL_CTX_free(s);
	SSL_CTX_free(c);
}

Test(tls, a_client_certificate_from_another_ca_is_refused)
{
	SSL_CTX *s = server("doppler", h2), *c = client("other", h2);

	cr_assert_not(handshake(s, lgr_tls_client_ssl(c, "doppler")).ok);
	SSL_CTX_free(s);
	SSL_CTX_free(c);
}

Test(tls, the_client_refuses_a_server_whose_sans_lack_the_expected_name)
{
	SSL_CTX *s = server("metron", h2), *c = client("client", h2);

	cr_assert_not(handshake(s, lgr_tls_client_ssl(c, "doppler")).ok);
	SSL_CTX_free(s);
	SSL_CTX_free(c);
}

Test(tls, the_client_ignores_the_cn_as_go_does)
{
	SSL_CTX *s = server("cnonly", h2), *c = client("client", h2);

	cr_assert_not(handshake(s, lgr_tls_client_ssl(c, "doppler")).ok);
	SSL_CTX_free(s);
	SSL_CTX_free(c);
}

Test(tls, a_client_offering_no_alpn_is_refused)
{
	SSL_CTX *s = server("doppler", h2), *c = client("client", NULL);

	cr_assert_not(handshake(s, lgr_tls_client_ssl(c, "doppler")).ok);
	SSL_CTX_free(s);
	SSL_CTX_free(c);
}

Test(tls, a_client_offering_only_http11_to_an_h2_server_is_refused)
{
	static const char *h1[] = {"http/1.1", NULL};
	SSL_CTX *s = server("doppler", h2), *c = client("client", h1);

	cr_assert_not(handshake(s, lgr_tls_client_ssl(c, "doppler")).ok);
	SSL_CTX_free(s);
	SSL_CTX_free(c);
}

Test(tls, a_server_offering_h2_and_http11_agrees_http11_with_a_client_that_wants_it)
{
	static const char *both[] = {"h2", "http/1.1", NULL};
	static const char *h1[] = {"http/1.1", NULL};
	SSL_CTX *s = server("reverselogproxy", both), *c = client("client", h1);
	struct outcome o = handshake(s, lgr_tls_client_ssl(c, "reverselogproxy"));

	cr_assert(o.ok);
	cr_assert_str_eq(o.alpn, "http/1.1");
	SSL_CTX_free(s);
	SSL_CTX_free(c);
}

Test(tls, a_tls11_client_is_refused)
{
	SSL_CTX *s = server("doppler", h2), *c = client("client", h2);

	SSL_CTX_set_min_proto_version(c, TLS1_VERSION);
	SSL_CTX_set_max_proto_version(c, TLS1_1_VERSION);
	SSL_CTX_set_security_level(c, 0);
	cr_assert_not(handshake(s, lgr_tls_client_ssl(c, "doppler")).ok);
	SSL_CTX_free(s);
	SSL_CTX_free(c);
}

Test(tls, unreadable_files_and_mismatched_keys_are_reported_by_name)
{
	struct lgr_tls_config cfg = {0};
	char err[512];
	SSL_CTX *ctx;

	cfg.ca_file = path("ca.crt");
	cfg.cert_file = path("nope.crt");
	cfg.key_file = path("doppler.key");
	cr_assert_eq(lgr_tls_server_ctx(&cfg, &ctx, err, sizeof(err)), LGR_EIO);
	cr_assert_not_null(strstr(err, "nope.crt"), "%s", err);
	cr_assert_null(ctx);

	cfg.cert_file = path("doppler.crt");
	cfg.key_file = path("metron.key");
	cr_assert_eq(lgr_tls_server_ctx(&cfg, &ctx, err, sizeof(err)), LGR_EIO);
	cr_assert_not_null(strstr(err, "metron.key"), "%s", err);

	cfg.ca_file = NULL;
	cr_assert_eq(lgr_tls_client_ctx(&cfg, &ctx, err, sizeof(err)), LGR_EINVAL);
}

Test(tls, permitted_peers_match_the_client_sans)
{
	SSL_CTX *sctx = server("doppler", h2), *cctx = client("client", h2);
	SSL *s = SSL_new(sctx), *c = lgr_tls_client_ssl(cctx, "doppler");
	BIO *sb, *cb;
	static const char *good[] = {"metron", "client", NULL};
	static const char *bad[] = {"metron", NULL};
	int cr = 0, sr = 0;

	BIO_new_bio_pair(&sb, 0, &cb, 0);
	SSL_set_bio(s, sb, sb);
	SSL_set_bio(c, cb, cb);
	SSL_set_accept_state(s);
	SSL_set_connect_state(c);
	for (int i = 0; i < 20 && (cr != 1 || sr != 1); i++) {
		if (cr != 1)
			cr = SSL_do_handshake(c);
		if (sr != 1)
			sr = SSL_do_handshake(s);
	}
	cr_assert_eq(sr, 1);
	cr_assert(lgr_tls_peer_permitted(s, good));
	cr_assert_not(lgr_tls_peer_permitted(s, bad));
	cr_assert(lgr_tls_peer_permitted(s, NULL));
	SSL_free(s);
	SSL_free(c);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
}
