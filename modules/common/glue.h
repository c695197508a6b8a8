/*
 * glue.h: the rsyslog glue the three modules share: the core's reporting hook forwarded to rsyslog's log, a
 * configuration table (lgr_conf) turned into rsyslog's parameter block and fed from rsyslog's parsed values, and
 * the impstats object each module registers.
 *
 * Header-only on purpose: every module is one shared object that must export only modInit, and including these
 * few static functions keeps each module self-contained without another source file per module. Include it
 * after rsyslog's headers (rsyslog's "config.h" first, then "rsyslog.h", "errmsg.h", "debug.h", "statsobj.h",
 * "rainerscript.h"). Also the impstats object each module registers.
 */
#ifndef LGR_MODULES_GLUE_H
#define LGR_MODULES_GLUE_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lgr.h"
#include "lgr_conf.h"

/* A counter of a module's impstats object. */
struct glue_counter {
	const char *name;
	intctr_t *ctr;
};

#ifndef HAVE_ATOMIC_BUILTINS64
#error "the counters are updated with 64-bit atomics: rsyslog without them keeps a mutex per counter"
#endif

/*
 * Makes the impstats object name (origin origin) with the resettable counters ctrs[0..n), each set to 0, and the
 * read notifier fn (NULL: none). so is the module's statsobj interface.
 */
static rsRetVal __attribute__((unused)) glue_stats_new(statsobj_if_t *so, statsobj_t **out, const char *name,
	const char *origin, const struct glue_counter *ctrs, size_t n, statsobj_read_notifier_t fn, void *ud)
{
	size_t i;
	DEFiRet;

	CHKiRet(so->Construct(out));
	CHKiRet(so->SetName(*out, (uchar *)name));
	CHKiRet(so->SetOrigin(*out, (uchar *)origin));
	for (i = 0; i < n; i++) {
		*ctrs[i].ctr = 0;
		CHKiRet(so->AddCounter(*out, (uchar *)ctrs[i].name, ctrType_IntCtr, CTR_FLAG_RESETTABLE, ctrs[i].ctr));
	}
	if (fn != NULL)
		CHKiRet(so->SetReadNotifier(*out, fn, ud));
	CHKiRet(so->ConstructFinalize(*out));
finalize_it:
	RETiRet;
}

/* Room for one configuration message (lgr_conf messages quote at most 64 bytes of a value). */
#define GLUE_ERR_MAX 640

/*
 * Writes the bound port to path (listenPortFileName; NULL: nothing to do) through a temporary file and a rename,
 * so that whoever waits for the file never reads it half-written. A failure is logged with the module's name.
 */
static void __attribute__((unused)) glue_write_port_file(const char *mod, const char *path, uint16_t port)
{
	char tmp[4096];
	FILE *f;
	bool ok;

	if (path == NULL)
		return;
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp)) {
		LogError(0, RS_RET_IO_ERROR, "%s: listenPortFileName '%s' is too long", mod, path);
		return;
	}
	f = fopen(tmp, "w");
	ok = f != NULL && fprintf(f, "%u\n", (unsigned)port) > 0;
	if (f != NULL && fclose(f) != 0)
		ok = false;
	if (!ok || rename(tmp, path) != 0) {
		LogError(errno, RS_RET_IO_ERROR, "%s: cannot write listenPortFileName '%s'", mod, path);
		unlink(tmp);
	}
}

/*
 * The core's log hook: ud is the module name. Debug lines go to rsyslog's debug output only; the others become
 * rsyslog internal messages of the same severity (errors mark the config unclean, so `rsyslogd -N1` fails).
 */
static void __attribute__((unused)) glue_log(enum lgr_log_level level, const char *msg, void *ud)
{
	const char *mod = ud;

	if (level >= LGR_LOG_DEBUG) {
		DBGPRINTF("%s: %s\n", mod, msg);
		return;
	}
	LogMsg(0, level <= LGR_LOG_ERR ? RS_RET_ERR : NO_ERRCODE, (int)level, "%s: %s", mod, msg);
}

/*
 * Fills descr (t->nparams entries) and blk from a table: arrays as eCmdHdlrArray, strings as eCmdHdlrString (they
 * may hold blanks), every other type as eCmdHdlrGetWord; lgr_conf parses and checks them all, and reports
 * missing required parameters itself, so no rsyslog flag is set.
 */
static void __attribute__((unused))
glue_paramblk_init(const struct lgr_conf_table *t, struct cnfparamdescr *descr, struct cnfparamblk *blk)
{
	size_t i;

	for (i = 0; i < t->nparams; i++) {
		descr[i].name = t->params[i].name;
		descr[i].flags = 0;
		if (t->params[i].type == LGR_CONF_ARRAY)
			descr[i].type = eCmdHdlrArray;
		else if (t->params[i].type == LGR_CONF_STRING)
			descr[i].type = eCmdHdlrString;
		else
			descr[i].type = eCmdHdlrGetWord;
	}
	blk->version = CNFPARAMBLK_VERSION;
	blk->nParams = (unsigned short)t->nparams;
	blk->descr = descr;
}

/* Sets one parameter from rsyslog's parsed value (a string, or an array of strings). */
static int __attribute__((unused)) glue_set_one(const struct lgr_conf_table *t, void *obj,
	const struct lgr_conf_param *p, const struct svar *val, char *err, size_t errlen)
{
	const char **items = NULL;
	char *text = NULL;
	int n = 0, i, rc;

	if (val->datatype == 'A') {
		n = val->d.ar->nmemb;
		items = calloc(n > 0 ? (size_t)n : 1, sizeof(*items));
		if (items == NULL) {
			rc = lgr_conf_error(t, err, errlen, LGR_ENOMEM, "parameter '%s': out of memory", p->name);
			goto out;
		}
		for (i = 0; i < n; i++) {
			items[i] = es_str2cstr(val->d.ar->arr[i], NULL);
			if (items[i] == NULL) {
				rc = lgr_conf_error(
					t, err, errlen, LGR_ENOMEM, "parameter '%s': out of memory", p->name);
				goto out;
			}
		}
		rc = lgr_conf_set_array(t, obj, p->name, items, (size_t)n, err, errlen);
	} else if (val->datatype == 'S') {
		text = es_str2cstr(val->d.estr, NULL);
		if (text == NULL) {
			rc = lgr_conf_error(t, err, errlen, LGR_ENOMEM, "parameter '%s': out of memory", p->name);
			goto out;
		}
		rc = lgr_conf_set(t, obj, p->name, text, err, errlen);
	} else {
		rc = lgr_conf_error(t, err, errlen, LGR_EINVAL, "parameter '%s': unexpected value type", p->name);
	}
out:
	if (items != NULL) {
		for (i = 0; i < n; i++)
			free((char *)items[i]);
		free(items);
	}
	free(text);
	return rc;
}

/*
 * Configures obj (zeroed) from rsyslog's values for a block built by glue_paramblk_init(): defaults, each value
 * given, then the required and cross-field checks. On error err holds the message naming the parameter; obj
 * must be released with lgr_conf_free() in every case.
 */
static int __attribute__((unused)) glue_conf_load(const struct lgr_conf_table *t, const struct cnfparamblk *blk,
	const struct cnfparamvals *pvals, void *obj, char *err, size_t errlen)
{
	int i, rc;

	rc = lgr_conf_defaults(t, obj, err, errlen);
	if (rc != LGR_OK)
		goto out;
	for (i = 0; i < blk->nParams; i++) {
		if (!pvals[i].bUsed)
			continue;
		rc = glue_set_one(t, obj, &t->params[i], &pvals[i].val, err, errlen);
		if (rc != LGR_OK)
			goto out;
	}
	rc = lgr_conf_finish(t, obj, err, errlen);
out:
	return rc;
}

/*
 * Writes the configuration to rsyslog's debug output, one parameter per line (strings and arrays shown, the
 * credentials of URLs masked).
 */
static void __attribute__((unused)) glue_conf_debug(const struct lgr_conf_table *t, const void *obj)
{
	char shown[1024];
	size_t i, j;

	if (!Debug)
		return;
	for (i = 0; i < t->nparams; i++) {
		const struct lgr_conf_param *p = &t->params[i];
		const void *f = (const char *)obj + p->offset;

		switch (p->type) {
		case LGR_CONF_STRING:
			lgr_conf_shown(*(char *const *)f ? *(char *const *)f : "(unset)", shown, sizeof(shown));
			dbgprintf("%s: %s='%s'\n", t->name, p->name, shown);
			break;
		case LGR_CONF_BOOL: dbgprintf("%s: %s=%s\n", t->name, p->name, *(const bool *)f ? "on" : "off"); break;
		case LGR_CONF_INT:
		case LGR_CONF_DURATION: dbgprintf("%s: %s=%lld\n", t->name, p->name, *(const long long *)f); break;
		case LGR_CONF_SIZE: dbgprintf("%s: %s=%zu\n", t->name, p->name, *(const size_t *)f); break;
		case LGR_CONF_PORT: dbgprintf("%s: %s=%d\n", t->name, p->name, *(const int *)f); break;
		case LGR_CONF_ENUM: dbgprintf("%s: %s=%s\n", t->name, p->name, p->words[*(const int *)f]); break;
		case LGR_CONF_ARRAY:
			for (j = 0; j < ((const struct lgr_conf_strv *)f)->n; j++) {
				lgr_conf_shown(((const struct lgr_conf_strv *)f)->v[j], shown, sizeof(shown));
				dbgprintf("%s: %s[%zu]='%s'\n", t->name, p->name, j, shown);
			}
			break;
		}
	}
}

#endif
