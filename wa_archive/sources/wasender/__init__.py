"""WASenderApi: WhatsApp-Web message objects, WhatsApp's encrypted media, the decrypt-media client."""
