"""protocols: sans-I/O state machines, wire codec, simulator and aggregation backends."""
