/* lgr_conf.c: placeholder until the unit lands. */
