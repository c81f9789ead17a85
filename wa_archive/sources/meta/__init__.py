"""WhatsApp Cloud API (Meta): webhook payloads, the Graph client, templates, and a local fake Graph."""
