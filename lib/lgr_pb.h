/* lgr_pb.h: placeholder. */
