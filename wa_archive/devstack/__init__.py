"""Running it: the embedded dev stack, the HTTP server process, and process setup."""
