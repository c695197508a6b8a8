/* lgr_json.h: placeholder. */
