-- An outcome: `ok` true, `fresh` when this call made the change. The outcome's fields are
-- named (see `ledger_result`): `ledger_ok('released', true, returned_sats => v_amount)`.

CREATE FUNCTION ledger_ok(p_code text, p_fresh boolean, offer_sats bigint DEFAULT NULL,
    charge_sats bigint DEFAULT NULL, gate_reason text DEFAULT NULL,
    previous_tier text DEFAULT NULL, reserved_sats bigint DEFAULT NULL,
    returned_sats bigint DEFAULT NULL, absorbed_sats bigint DEFAULT NULL,
    overrun_sats bigint DEFAULT NULL, pubkey text DEFAULT NULL, credited_sats bigint DEFAULT NULL)
RETURNS ledger_result LANGUAGE sql IMMUTABLE AS $$
    -- In the order of the type's fields.
    SELECT ROW(true, p_code, p_fresh,
        offer_sats, charge_sats, gate_reason, previous_tier, reserved_sats, returned_sats,
        absorbed_sats, overrun_sats, pubkey, credited_sats,
        NULL, NULL, NULL, NULL)::ledger_result
$$;
