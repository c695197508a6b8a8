/* lgr_ring.c: placeholder until the unit lands. */
