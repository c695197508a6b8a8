/* lgr_select.c: placeholder until the unit lands. */
