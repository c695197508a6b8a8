/* lgr_select.h: placeholder. */
