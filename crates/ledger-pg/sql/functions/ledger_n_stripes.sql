-- The number of pool stripes. `N_STRIPES` in `src/batch.rs` is the same number
-- (`tests/schema.rs` checks it): the batcher's lanes must divide it.

CREATE FUNCTION ledger_n_stripes() RETURNS integer LANGUAGE sql IMMUTABLE AS 'SELECT 16';
