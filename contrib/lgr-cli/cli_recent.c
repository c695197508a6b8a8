/*
 * cli_recent.c: `lgr logs --recent SOURCE_ID`: the recent envelopes of one source from the gateway's Log Cache
 * read endpoint (GET /api/v1/read/{source_id}, answer {"envelopes":{"batch":[...]}}), printed oldest first.
 *
 * As `cf logs --recent` asks Log Cache: the newest 1000 (descending=true, limit=1000) of type LOG (ANY with
 * --all-types), then printed in reverse. The bearer token goes in "Authorization: bearer TOKEN". The gateway
 * answers every authorization failure with 404, so a 404 names both causes.
 */
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "cli.h"
#include "lgr_json.h"

#define MAX_BODY (64u << 20)

struct body {
	char *data;
	size_t len;
	bool too_big;
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct body *b = ud;
	size_t n = size * nmemb;
	char *grown;

	if (b->len + n > MAX_BODY) {
		b->too_big = true;
		return 0;
	}
	grown = realloc(b->data, b->len + n + 1);
	if (grown == NULL)
		return 0;
	b->data = grown;
	memcpy(b->data + b->len, ptr, n);
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

struct collected {
	struct lgr_env **envs;
	size_t n, cap;
};

static int collect(struct lgr_env *env, void *ud)
{
	struct collected *c = ud;

	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 64;
		struct lgr_env **grown = realloc(c->envs, cap * sizeof(*grown));

		if (grown == NULL) {
			lgr_env_unref(env);
			return LGR_ENOMEM;
		}
		c->envs = grown;
		c->cap = cap;
	}
	c->envs[c->n++] = env;
	return LGR_OK;
}

/*
 * The request URL. With --server-name the URL names that host and CURLOPT_CONNECT_TO sends the connection to the
 * gateway's real address, so that the certificate is checked against the name.
 */
static int build_url(CURL *curl, const struct cli_opts *o, char **url, struct curl_slist **connect_to)
{
	CURLU *u = curl_url();
	char *escaped = curl_easy_escape(curl, o->source_id, 0);
	char *host = NULL, *port = NULL, *path = NULL;
	int rc = -1;

	*url = NULL;
	*connect_to = NULL;
	if (u == NULL || escaped == NULL || curl_url_set(u, CURLUPART_URL, o->gateway, 0) != CURLUE_OK) {
		cli_error("--gateway: not a URL: %s", o->gateway);
		goto out;
	}
	if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK) {
		cli_error("--gateway: no host in %s", o->gateway);
		goto out;
	}
	path = malloc(strlen(escaped) + 32);
	if (path == NULL)
		goto out;
	sprintf(path, "/api/v1/read/%s", escaped);
	curl_url_set(u, CURLUPART_PATH, path, 0);
	curl_url_set(u, CURLUPART_QUERY, o->all_types ? "envelope_types=ANY" : "envelope_types=LOG", 0);
	curl_url_set(u, CURLUPART_QUERY, "limit=1000", CURLU_APPENDQUERY);
	curl_url_set(u, CURLUPART_QUERY, "descending=true", CURLU_APPENDQUERY);
	if (o->server_name != NULL && strcmp(o->server_name, host) != 0) {
		char entry[600];

		snprintf(entry, sizeof(entry), "%s:%s:%s:%s", o->server_name, port, host, port);
		*connect_to = curl_slist_append(NULL, entry);
		if (*connect_to == NULL || curl_url_set(u, CURLUPART_HOST, o->server_name, 0) != CURLUE_OK)
			goto out;
	}
	if (curl_url_get(u, CURLUPART_URL, url, 0) != CURLUE_OK)
		goto out;
	rc = 0;
out:
	curl_free(host);
	curl_free(port);
	curl_free(escaped);
	free(path);
	curl_url_cleanup(u);
	return rc;
}

static int print_batch(const struct cli_opts *o, const struct body *b)
{
	struct json_tokener *tok = json_tokener_new_ex(64);
	struct json_object *root = NULL, *envelopes = NULL;
	struct collected c = {0};
	int rc = CLI_EXIT_FAIL, prc;

	if (tok == NULL)
		goto out;
	root = json_tokener_parse_ex(tok, b->data != NULL ? b->data : "", (int)b->len);
	if (root == NULL || !json_object_object_get_ex(root, "envelopes", &envelopes)) {
		cli_error("the gateway's answer is not {\"envelopes\":{\"batch\":[...]}}");
		goto out;
	}
	prc = lgr_json_batch_from_object(envelopes, NULL, LGR_JSON_DISCARD_UNKNOWN, collect, &c);
	if (prc != LGR_OK) {
		cli_error("the gateway's envelopes do not decode: %s", lgr_strerror(prc));
		goto out;
	}
	rc = CLI_EXIT_OK;
	/* The answer is newest first. */
	for (size_t i = c.n; i-- > 0;) {
		if ((o->json ? cli_fmt_json(stdout, c.envs[i]) : cli_fmt_text(stdout, c.envs[i])) != 0)
			rc = CLI_EXIT_FAIL;
	}
out:
	for (size_t i = 0; i < c.n; i++)
		lgr_env_unref(c.envs[i]);
	free(c.envs);
	json_object_put(root);
	if (tok != NULL)
		json_tokener_free(tok);
	return rc;
}

int cli_recent_run(const struct cli_opts *o)
{
	char errbuf[CURL_ERROR_SIZE] = "", *url = NULL, *auth = NULL;
	struct curl_slist *headers = NULL, *connect_to = NULL;
	struct body b = {0};
	long status = 0;
	CURL *curl = NULL;
	CURLcode cc;
	int rc = CLI_EXIT_FAIL;

	if (o->token == NULL || *o->token == '\0') {
		cli_error("--recent needs a bearer token: --token TOKEN or LGR_TOKEN");
		return CLI_EXIT_USAGE;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0 || (curl = curl_easy_init()) == NULL)
		goto out;
	if (build_url(curl, o, &url, &connect_to) != 0)
		goto out;
	auth = malloc(strlen(o->token) + 32);
	if (auth == NULL)
		goto out;
	/* A token from `cf oauth-token` already starts with "bearer ". */
	if (strncasecmp(o->token, "bearer ", 7) == 0)
		sprintf(auth, "Authorization: %s", o->token);
	else
		sprintf(auth, "Authorization: bearer %s", o->token);
	headers = curl_slist_append(headers, auth);
	headers = headers != NULL ? curl_slist_append(headers, "Accept: application/json") : NULL;
	if (headers == NULL)
		goto out;
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT, 60L);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
	if (connect_to != NULL)
		curl_easy_setopt(curl, CURLOPT_CONNECT_TO, connect_to);
	if (o->ca != NULL)
		curl_easy_setopt(curl, CURLOPT_CAINFO, o->ca);
	if (o->cert != NULL) {
		curl_easy_setopt(curl, CURLOPT_SSLCERT, o->cert);
		curl_easy_setopt(curl, CURLOPT_SSLKEY, o->key);
	}
	cc = curl_easy_perform(curl);
	if (cc != CURLE_OK) {
		const char *detail = errbuf[0] ? errbuf : curl_easy_strerror(cc);

		if (cc == CURLE_PEER_FAILED_VERIFICATION)
			cli_error("%s: the gateway's certificate was refused: %s (see --ca, --server-name)", o->gateway,
				detail);
		else if (b.too_big)
			cli_error("%s: the answer is larger than %u bytes", o->gateway, MAX_BODY);
		else
			cli_error("%s: %s", o->gateway, detail);
		goto out;
	}
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	if (status == 404 || status == 401 || status == 403) {
		cli_error("%s: %ld: the token may not read %s, or the gateway does not know it (check --token)",
			o->gateway, status, o->source_id);
		goto out;
	}
	if (status != 200) {
		size_t n = b.len;

		while (n > 0 && (b.data[n - 1] == '\n' || b.data[n - 1] == '\r'))
			n--;
		cli_error("%s: HTTP %ld: %.*s", o->gateway, status, (int)(n > 400 ? 400 : n), b.data ? b.data : "");
		goto out;
	}
	rc = print_batch(o, &b);
out:
	if (curl != NULL)
		curl_easy_cleanup(curl);
	curl_slist_free_all(headers);
	curl_slist_free_all(connect_to);
	curl_free(url);
	free(auth);
	free(b.data);
	curl_global_cleanup();
	return rc;
}
