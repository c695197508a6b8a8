/* lgr_ring.h: placeholder. */
