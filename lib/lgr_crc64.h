/* lgr_crc64.h: placeholder. */
