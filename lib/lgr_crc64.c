/* lgr_crc64.c: placeholder until the unit lands. */
