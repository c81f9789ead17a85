-- Reports of the retrieval test: can the archive still hand back what it holds, quickly and intact?
CREATE TABLE retrieval_reports (
    id            bigserial PRIMARY KEY,
    workflow_id   text NOT NULL,
    run_id        text NOT NULL UNIQUE,
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz NOT NULL,
    sample_size   integer NOT NULL,
    passed        integer NOT NULL,
    failed        integer NOT NULL,
    slowest_ms    double precision,
    items         jsonb NOT NULL
);
