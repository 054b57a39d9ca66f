-- API key scopes (reverb_store.control.api_keys). A key may make the calls whose scope it
-- holds: ingest, read, operate, admin; or it is a host key (scope host alone) bound to the
-- apps it may register, and nothing else.
--
-- Keys made before this migration keep every scope but host (ingest, read, operate, admin),
-- so clients keep working; a host now needs a host key bound to its app. The defaults are
-- constants (no table rewrite) and are dropped afterwards: a new key names its scopes.
ALTER TABLE reverb.api_keys
    ADD COLUMN scopes text[] NOT NULL DEFAULT '{ingest,read,operate,admin}',
    ADD COLUMN apps text[] NOT NULL DEFAULT '{}';
ALTER TABLE reverb.api_keys ALTER COLUMN scopes DROP DEFAULT, ALTER COLUMN apps DROP DEFAULT;
ALTER TABLE reverb.api_keys
    ADD CONSTRAINT api_keys_known_scopes CHECK (
        cardinality(scopes) > 0
        AND scopes <@ '{ingest,read,operate,admin,host}'::text[]
    ),
    ADD CONSTRAINT api_keys_host_apps CHECK (
        CASE WHEN 'host' = ANY (scopes)
            THEN scopes = '{host}' AND cardinality(apps) > 0
            ELSE cardinality(apps) = 0
        END
    );

-- Every gateway LISTENs on reverb_api_keys and drops its cache of verified and unknown keys
-- when a key is created, changed (revoked) or deleted, so a revocation takes effect at once.
CREATE FUNCTION reverb.notify_api_keys() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('reverb_api_keys', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER api_keys_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON reverb.api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION reverb.notify_api_keys();
