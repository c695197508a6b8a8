/* lgr_v1.c: placeholder until the unit lands. */
