/*
 * rsconfig.h: rsyslog's "config.h", which every module must include before anything else, so that the module
 * sees rsyslogd's own build settings (struct layouts depend on them; see build-aux/rsyslog-sdk-check). The
 * project's own configure results go to lgr_config.h, never to the command line, so nothing here clashes with
 * rsyslog's PACKAGE and VERSION.
 */
#ifndef LGR_MODULES_RSCONFIG_H
#define LGR_MODULES_RSCONFIG_H

#include "config.h"

#endif
