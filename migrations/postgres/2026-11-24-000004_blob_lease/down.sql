DROP TABLE blob_lease;
