/* lgr_v1.h: placeholder. */
