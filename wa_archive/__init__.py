"""Core of the WhatsApp compliance archive: what the webhook, workflows, activities and CLI share."""
