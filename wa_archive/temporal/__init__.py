"""The archive's use of Temporal: the connection, the payload codec, the namespace, the schedules."""
