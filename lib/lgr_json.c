/* lgr_json.c: placeholder until the unit lands. */
