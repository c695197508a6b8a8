/* lgr_env.c: placeholder until the unit lands. */
