-- Called before a command takes every pool stripe. In a batch that holds the batch lock shared
-- (see `ledger_apply_batch`) that would wait on the other lanes' stripes, so it raises `LDB01`
-- instead, and the client runs the batch again holding the batch lock exclusively.

CREATE FUNCTION ledger_before_lock_all() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('ledger.batch', true) = 'shared' THEN
        RAISE EXCEPTION 'this batch needs every pool stripe: run it again holding the batch lock exclusively'
            USING ERRCODE = 'LDB01';
    END IF;
END $$;
