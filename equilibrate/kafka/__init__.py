"""Kafka access: the transport interface, its two clients, topics, the DLQ and the embedded broker."""
