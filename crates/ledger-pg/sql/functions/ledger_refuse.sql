-- A refusal: `ok` false, nothing changed. A refusal that reports an amount names it (see
-- `ledger_result`): `ledger_refuse('insufficient_funds', available_sats => v_available)`.

CREATE FUNCTION ledger_refuse(p_code text, reserved_sats bigint DEFAULT NULL,
    estimated_sats bigint DEFAULT NULL, available_sats bigint DEFAULT NULL,
    actual_sats bigint DEFAULT NULL, paid_sats bigint DEFAULT NULL)
RETURNS ledger_result LANGUAGE sql IMMUTABLE AS $$
    -- In the order of the type's fields.
    SELECT ROW(false, p_code, false,
        NULL, NULL, NULL, NULL, reserved_sats, NULL, NULL, NULL, NULL, NULL,
        estimated_sats, available_sats, actual_sats, paid_sats)::ledger_result
$$;
