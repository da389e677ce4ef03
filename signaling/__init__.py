"""HTTP signaling: SDP in, SDP out; auth, CORS, limits; errors as JSON."""
