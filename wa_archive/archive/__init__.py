"""The write-once path: recording a message with its media and ledger leaf, fanning a delivery out,
starting workflows, object keys, hashes and the media types the archive serves."""
