-- A refusal: `ok` false, nothing changed, with the refusal's amount where it has one.

CREATE FUNCTION ledger_refuse(p_code text, p_a bigint DEFAULT NULL) RETURNS ledger_result
LANGUAGE sql IMMUTABLE AS $$
    SELECT ROW(false, p_code, false, p_a, NULL, NULL, NULL)::ledger_result
$$;
