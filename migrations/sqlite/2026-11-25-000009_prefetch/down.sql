ALTER TABLE remote DROP COLUMN prefetch;
