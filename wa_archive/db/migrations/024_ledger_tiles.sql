-- Ledger tiles: the hash of every complete, aligned block of 256 leaves, so that a root or a proof reads
-- about size/256 + 256 hashes instead of every leaf of the log (integrity/tree.py). In RFC 9162's tree
-- every aligned block [256k, 256(k+1)) lying wholly within the log is a node of the tree, whatever its
-- size, so a tile once written never changes.
--
-- A tile is derived data that the archive signs through: a wrong one would make a checkpoint sign a wrong
-- root. So no one writes a tile of their choosing: only ledger_write_tiles() below, owned by the schema
-- owner, writes them, computing each from ledger_leaves itself; the application may only read them and
-- call that function (db/roles.py), and `verify` checks every stored tile against the leaves.
CREATE TABLE ledger_tiles (
    tile  bigint PRIMARY KEY CHECK (tile >= 0),   -- k: the tile of leaves 256k .. 256k + 255
    hash  bytea NOT NULL CHECK (length(hash) = 32)
);
CREATE TRIGGER ledger_tiles_append_only BEFORE UPDATE OR DELETE ON ledger_tiles
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();

-- Writes the tiles of up to p_max complete blocks of integrated leaves not yet stored, oldest first, and
-- returns how many it wrote. Each tile is the root of its 256 leaf hashes, paired level by level (eight
-- levels, node = sha256(0x01 || left || right), as merkle.node_hash()); a pair is formed only when both
-- halves are there, so a block missing a leaf gets no tile (readers then hash it from its leaves, and
-- `verify` names the missing leaf). One writer at a time (its own advisory lock): a second caller waits
-- and then finds the work done.
CREATE FUNCTION ledger_write_tiles(p_max integer) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    first_tile bigint;
    end_tile bigint;
    written integer;
BEGIN
    IF p_max IS NULL OR p_max < 1 THEN
        RAISE EXCEPTION 'ledger_write_tiles: the batch size must be at least 1';
    END IF;
    PERFORM pg_advisory_xact_lock(2003266420);  -- "whlt": the ledger's tile writer
    SELECT coalesce(max(t.tile) + 1, 0) INTO first_tile FROM ledger_tiles t;
    SELECT least(h.size / 256, first_tile + p_max) INTO end_tile FROM ledger_head h WHERE h.id = 1;
    IF end_tile <= first_tile THEN
        RETURN 0;
    END IF;
    -- Each level pairs nodes 2i and 2i + 1 into node i by grouping on p / 2, left before right (a sort
    -- per level; a self-join on p + 1 was planned as a nested loop and took minutes for 1,000 tiles).
    WITH l0 AS MATERIALIZED (
        SELECT l.seq AS p, l.leaf_hash AS h FROM ledger_leaves l
         WHERE l.seq >= first_tile * 256 AND l.seq < end_tile * 256
    ), l1 AS MATERIALIZED (
        SELECT x.p / 2 AS p, sha256(decode('01', 'hex') || string_agg(x.h, ''::bytea ORDER BY x.p)) AS h
          FROM l0 x GROUP BY x.p / 2 HAVING count(*) = 2
    ), l2 AS MATERIALIZED (
        SELECT x.p / 2 AS p, sha256(decode('01', 'hex') || string_agg(x.h, ''::bytea ORDER BY x.p)) AS h
          FROM l1 x GROUP BY x.p / 2 HAVING count(*) = 2
    ), l3 AS MATERIALIZED (
        SELECT x.p / 2 AS p, sha256(decode('01', 'hex') || string_agg(x.h, ''::bytea ORDER BY x.p)) AS h
          FROM l2 x GROUP BY x.p / 2 HAVING count(*) = 2
    ), l4 AS MATERIALIZED (
        SELECT x.p / 2 AS p, sha256(decode('01', 'hex') || string_agg(x.h, ''::bytea ORDER BY x.p)) AS h
          FROM l3 x GROUP BY x.p / 2 HAVING count(*) = 2
    ), l5 AS MATERIALIZED (
        SELECT x.p / 2 AS p, sha256(decode('01', 'hex') || string_agg(x.h, ''::bytea ORDER BY x.p)) AS h
          FROM l4 x GROUP BY x.p / 2 HAVING count(*) = 2
    ), l6 AS MATERIALIZED (
        SELECT x.p / 2 AS p, sha256(decode('01', 'hex') || string_agg(x.h, ''::bytea ORDER BY x.p)) AS h
          FROM l5 x GROUP BY x.p / 2 HAVING count(*) = 2
    ), l7 AS MATERIALIZED (
        SELECT x.p / 2 AS p, sha256(decode('01', 'hex') || string_agg(x.h, ''::bytea ORDER BY x.p)) AS h
          FROM l6 x GROUP BY x.p / 2 HAVING count(*) = 2
    )
    INSERT INTO ledger_tiles (tile, hash)
    SELECT x.p / 2, sha256(decode('01', 'hex') || string_agg(x.h, ''::bytea ORDER BY x.p))
      FROM l7 x GROUP BY x.p / 2 HAVING count(*) = 2
    ON CONFLICT (tile) DO NOTHING;
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END $$;
REVOKE ALL ON FUNCTION ledger_write_tiles(integer) FROM PUBLIC;

-- An existing log gets its tiles now, a thousand at a time (each statement's working set stays small).
DO $$
BEGIN
    LOOP
        EXIT WHEN ledger_write_tiles(1000) < 1000;
    END LOOP;
END $$;
