-- Prefetch on manifest (issue 15): whether a manifest GET starts fetching the image's blobs that
-- are not stored. A streamed remote keeps nothing, so a prefetch would only download and discard.
ALTER TABLE remote ADD COLUMN prefetch BOOLEAN NOT NULL DEFAULT TRUE;
UPDATE remote SET prefetch = FALSE WHERE policy = 'streamed';
