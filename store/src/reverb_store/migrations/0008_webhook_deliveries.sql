-- Webhook deliveries (reverb_store.webhooks): every request a webhook source accepted, kept
-- as it arrived (the body byte for byte; its headers lower-cased, with the signature and
-- credential headers removed), with the event it became. A delivery the provider sends again
-- (the same source and delivery id) is not stored twice: the unique index below makes the
-- second request find the first one, and its event id is answered again.
--
-- `POST /webhooks/deliveries/{id}/replay` emits the event again from the stored request.
-- Listing is newest first by id (a UUIDv7: time-ordered), of one source or of all.
CREATE TABLE reverb.webhook_deliveries (
    id text PRIMARY KEY,
    source text NOT NULL,
    -- The provider's id of the delivery (X-GitHub-Delivery, webhook-id, …), or NULL.
    delivery_id text,
    -- The event the delivery became (its name, as the source was configured then).
    event_id text NOT NULL,
    event_name text NOT NULL,
    headers jsonb NOT NULL,
    body bytea NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX webhook_deliveries_delivery
    ON reverb.webhook_deliveries (source, delivery_id) WHERE delivery_id IS NOT NULL;
CREATE INDEX webhook_deliveries_source ON reverb.webhook_deliveries (source, id DESC);
