/* lgr_pb.c: placeholder until the unit lands. */
