"""Kafka at the edges: the embedded broker, clients, alert decoding, the simulator and dead-lettering."""
