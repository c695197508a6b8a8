/*
 * lgr_bindings.h: which app drains where. A snapshot is built from the binding cache's JSON (config.md
 * drains.bindingsFile / drains.bindingsUrl):
 *
 *   [{"url": "syslog-tls://host:port", "credentials": [{"cert": "PEM", "key": "PEM", "ca": "PEM",
 *                                                       "apps": [{"app_id": "GUID", "hostname": "org.space.app"}]}]}]
 *
 * plus the operator's aggregate drains (URLs that get every source) and static bindings (apps bound to drains in
 * the configuration, drains.static: struct lgr_bindings_static), and answers "the drains of app X" with one hash
 * lookup. Per app, drains are sorted by URL and the first per_app kept (the rest are counted), as the reference
 * agent does, over the JSON's and the static bindings together; a URL bound to an app twice counts once, and when
 * both the JSON and a static binding bind it, the JSON's is kept (it may carry credentials). Each drain keeps the
 * hostname of its own apps entry (the reference keeps the last one it saw for the app, whichever drain it came
 * with).
 *
 * Invalid entries are refused one by one with a reason (a callback per affected app, for the notice into its
 * stream, and a counter per reason); the rest are kept. DNS resolution and the deny ranges are not checked here:
 * they need the network, and a writer checks the address it connects to (lgr_drain_deny_match).
 *
 * Threading: a snapshot is immutable and reference-counted, so readers on any thread use it while a reload builds
 * the next one; struct lgr_bindings_slot publishes the current snapshot (a short mutex around pointer and
 * reference count, never held while parsing).
 */
#ifndef LGR_BINDINGS_H
#define LGR_BINDINGS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "lgr.h"
#include "lgr_drain.h"

struct lgr_binding {
	const struct lgr_drain *drain; /* shared by every app bound to the same entry */
	const char *hostname;	       /* the apps entry's hostname; "" for aggregate drains */
	const char *cert;	       /* PEM, NULL when absent (a client certificate needs cert and key) */
	const char *key;
	const char *ca;
};

struct lgr_bindings_app {
	const char *app_id;
	size_t n;			  /* 1..per_app */
	const struct lgr_binding *drains; /* sorted by URL */
};

struct lgr_bindings_conf {
	size_t max_bytes;     /* JSON text; 0: 16 MiB */
	size_t max_entries;   /* URL entries; 0: 100000 */
	size_t max_apps;      /* apps references over all entries; 0: 1000000 */
	size_t max_pem;	      /* bytes of one cert, key or ca; 0: 64 KiB */
	size_t per_app;	      /* drains kept per app; 0: 5 */
	unsigned drain_flags; /* for lgr_drain_parse */
	bool check_pem;	      /* load cert + key and ca with OpenSSL, refusing what does not load */
};

struct lgr_bindings_stats {
	size_t entries;	   /* URL entries read */
	size_t statics;	   /* static bindings read */
	size_t apps;	   /* apps with at least one drain */
	size_t bindings;   /* (app, drain) pairs kept */
	size_t aggregate;  /* aggregate drains kept */
	size_t over_limit; /* (app, drain) pairs past per_app */
	size_t rejected;   /* refusals, all reasons */
	size_t rejected_by[LGR_DRAIN_REASON_COUNT];
};

/*
 * Called once per app a refusal concerns (app_id NULL when there is none to tell: an entry without apps, an
 * aggregate drain). scheme and anon_url may be NULL (a URL that does not parse is never shown). Runs on the
 * parsing thread, before lgr_bindings_parse returns.
 */
typedef void lgr_bindings_reject_fn(
	const char *app_id, enum lgr_drain_reason why, const char *scheme, const char *anon_url, void *ud);

struct lgr_bindings;

/* --- static bindings ------------------------------------------------------------------------------------------ */

/*
 * Apps bound to drains in the configuration rather than by the binding cache: each entry is "APP_ID URL" or
 * "APP_ID HOSTNAME URL", fields separated by blanks (space, tab, newline). HOSTNAME is the binding's hostname
 * (org.space.app, as in the JSON's apps entries), used when an envelope carries no organization, space and app
 * name tags; without it the lines say "-", as for a JSON binding without one. Static bindings carry no client
 * certificate or CA. Immutable once parsed; any thread may read it.
 */
struct lgr_bindings_static;

/*
 * Parses n entries, checking each as a binding is checked (the URL with lgr_drain_parse and drain_flags, an app id
 * of at most 256 bytes, a hostname of at most 1024 bytes, both printable ASCII, and a hostname that is no URL).
 * Returns LGR_OK and *out (never NULL, also for n 0; free with lgr_bindings_static_free), or, with nothing built
 * (*out NULL): LGR_EDECODE for the first entry that does not parse, *bad (may be NULL) its index and err a message
 * naming it (counted from 1) with its fields anonymised (lgr_drain_anonymize: no userinfo, query or fragment) and
 * saying why, e.g.
 *   entry 2 "app-1 ftp://host/x": the drain URL is refused: Invalid Scheme ftp for syslog drain url ftp://host/x
 * or LGR_ENOMEM. err may be NULL when errlen is 0.
 */
int lgr_bindings_static_parse(const char *const *entries, size_t n, unsigned drain_flags,
	struct lgr_bindings_static **out, size_t *bad, char *err, size_t errlen);
void lgr_bindings_static_free(struct lgr_bindings_static *s); /* NULL is a no-op */

/* --- snapshots ------------------------------------------------------------------------------------------------ */

/*
 * Builds a snapshot from len bytes of JSON, n_aggregate aggregate URLs and the static bindings statics (borrowed;
 * NULL: none); any of them may be empty. conf NULL means the defaults. Static bindings count against max_apps with
 * the JSON's; one whose URL no longer parses (drain_flags differ from its parse's) is refused like a JSON binding.
 * Returns LGR_OK and *out (refcount 1), or, with nothing built: LGR_ETOOBIG (over max_bytes), LGR_EDECODE (not
 * JSON, or not an array at the top), LGR_ELIMIT (more entries or apps than the limits), LGR_ENOMEM.
 */
int lgr_bindings_parse(const char *json, size_t len, const char *const *aggregate, size_t n_aggregate,
	const struct lgr_bindings_static *statics, const struct lgr_bindings_conf *conf, lgr_bindings_reject_fn *reject,
	void *ud, struct lgr_bindings **out);

struct lgr_bindings *lgr_bindings_ref(struct lgr_bindings *b);
void lgr_bindings_unref(struct lgr_bindings *b); /* NULL is a no-op; frees with the last reference */

/* The drains of app_id (NULL when it has none). Valid as long as the caller's reference. */
const struct lgr_bindings_app *lgr_bindings_lookup(const struct lgr_bindings *b, const char *app_id);

/* The aggregate drains; *n receives their count. */
const struct lgr_binding *lgr_bindings_aggregate(const struct lgr_bindings *b, size_t *n);

/* The apps in app id order, for walking every binding (tests, a status page). */
const struct lgr_bindings_app *lgr_bindings_apps(const struct lgr_bindings *b, size_t *n);

const struct lgr_bindings_stats *lgr_bindings_stats(const struct lgr_bindings *b);

/* --- publishing ------------------------------------------------------------------------------------------------- */

struct lgr_bindings_slot {
	pthread_mutex_t mu;
	struct lgr_bindings *cur; /* owned reference, NULL until the first set */
};

int lgr_bindings_slot_init(struct lgr_bindings_slot *s); /* LGR_OK or LGR_ENOMEM */
void lgr_bindings_slot_cleanup(struct lgr_bindings_slot *s);
/* A new reference to the current snapshot (NULL when none): the caller unrefs it. */
struct lgr_bindings *lgr_bindings_slot_get(struct lgr_bindings_slot *s);
/* Publishes b, taking the caller's reference; the previous snapshot goes when its last reader lets it go. */
void lgr_bindings_slot_set(struct lgr_bindings_slot *s, struct lgr_bindings *b);

#endif
