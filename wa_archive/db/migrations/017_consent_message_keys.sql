-- A message's sighting and send-time consent exist only for a message that does. Both are written
-- in the message's own transaction and kept with ON CONFLICT DO NOTHING (the first one stands), so
-- a row written before its message (the wamid is known as soon as Meta answers the send, before the
-- `sent` status archives it) would stand in for the real one: a judgement of `opted_in` made up in
-- advance, or the message put on someone else's profile. Disposal removes both before the message.
ALTER TABLE message_consent
    ADD CONSTRAINT message_consent_message FOREIGN KEY (message_id) REFERENCES messages (id);
ALTER TABLE contact_sightings
    ADD CONSTRAINT contact_sightings_message FOREIGN KEY (message_id) REFERENCES messages (id);
