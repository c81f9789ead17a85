-- Media types are parsed once, when archived: mime_type holds the normalised type the archive
-- serves (lowercase type/subtype, or application/octet-stream), and declared_mime_type keeps the
-- sender's or provider's declaration verbatim, as evidence. Rows written before this migration
-- keep their mime_type as it was and have no declaration recorded; every reader normalises again.
ALTER TABLE media ADD COLUMN declared_mime_type text;
COMMENT ON COLUMN media.mime_type IS 'normalised media type, as served (rows before migration 008: as declared)';
COMMENT ON COLUMN media.declared_mime_type IS 'the declared media type, verbatim; never used to serve';
