/* lgr_conf.h: placeholder. */
