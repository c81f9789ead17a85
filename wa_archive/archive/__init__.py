"""The write-once path: streaming media into the store, snapshotting the template a message was sent
with, recording a message with its media and ledger leaf, fanning a delivery out, starting
workflows, object keys, hashes and the media types the archive serves."""
