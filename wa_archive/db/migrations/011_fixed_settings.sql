-- The owner's functions compute what the application role cannot do itself, so nothing of the
-- caller's session may change what they compute. A string literal such as '\x00' is read under the
-- caller's standard_conforming_strings, which any role may switch off for itself (even as its
-- default, with ALTER ROLE CURRENT_USER SET): every append would then fail. The leaf hash no longer
-- writes a literal that depends on it, and every such function fixes the setting for its own run.
CREATE OR REPLACE FUNCTION ledger_leaf_hash(p_kind text, p_record_id text, p_digest text) RETURNS bytea
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT sha256(decode('00', 'hex') || convert_to(
        '{"digest":' || to_json(p_digest)::text || ',"id":' || to_json(p_record_id)::text
        || ',"kind":' || to_json(p_kind)::text || '}', 'UTF8'))
$$;
ALTER FUNCTION ledger_leaf_hash(text, text, text) SET standard_conforming_strings = on;
ALTER FUNCTION ledger_append(text, text, text) SET standard_conforming_strings = on;
ALTER FUNCTION record_disposition(text, text, bigint, jsonb, text) SET standard_conforming_strings = on;
ALTER FUNCTION dispose_message_rows(text) SET standard_conforming_strings = on;

-- Stored JSON is limited in depth by the database itself. Every reader (verify, pages, exports)
-- decodes jsonb with a recursive parser; a row nested thousands deep, which PostgreSQL accepts,
-- would make each of them fail on it instead of naming it. Input from outside is already refused
-- past 64 levels (wa_archive/json_input.py); 100 leaves room for what the archive wraps around it.
-- Walked level by level, without recursion, so the check itself cannot run out of stack.
CREATE FUNCTION jsonb_depth_within(j jsonb, max_depth integer) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    level jsonb[] := ARRAY[j];
    below jsonb[];
    item jsonb;
    depth integer := 0;
BEGIN
    IF j IS NULL OR jsonb_typeof(j) NOT IN ('object', 'array') THEN
        RETURN true;
    END IF;
    WHILE cardinality(level) > 0 LOOP
        depth := depth + 1;
        IF depth > max_depth THEN
            RETURN false;
        END IF;
        below := '{}';
        FOREACH item IN ARRAY level LOOP
            IF jsonb_typeof(item) = 'object' THEN
                below := below || ARRAY(SELECT value FROM jsonb_each(item)
                                        WHERE jsonb_typeof(value) IN ('object', 'array'));
            ELSE
                below := below || ARRAY(SELECT value FROM jsonb_array_elements(item)
                                        WHERE jsonb_typeof(value) IN ('object', 'array'));
            END IF;
        END LOOP;
        level := below;
    END LOOP;
    RETURN true;
END $$;

-- Adds the depth check to every jsonb column that lacks it; `migrate` runs it after every run
-- (wa_archive/db_roles.py), so columns added later are covered too. NOT VALID: rows already
-- stored were written by the archive's own decoder, and checking them would scan every table.
CREATE FUNCTION guard_jsonb_columns() RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    col record;
    name text;
BEGIN
    FOR col IN SELECT c.table_name, c.column_name FROM information_schema.columns c
               JOIN information_schema.tables t USING (table_schema, table_name)
               WHERE c.table_schema = 'public' AND c.data_type = 'jsonb' AND t.table_type = 'BASE TABLE' LOOP
        name := left(col.table_name || '_' || col.column_name, 50) || '_depth';
        IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = name
                       AND conrelid = format('%I', col.table_name)::regclass) THEN
            EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (jsonb_depth_within(%I, 100)) NOT VALID',
                           col.table_name, name, col.column_name);
        END IF;
    END LOOP;
END $$;
REVOKE ALL ON FUNCTION guard_jsonb_columns() FROM PUBLIC;
SELECT guard_jsonb_columns();
