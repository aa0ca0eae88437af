-- One on-demand download per blob across replicas: the replica that holds a blob's lease
-- fetches it from the remote, and the others stream it from the owner's internal address.
-- The owner renews expires_at while it downloads; a lease past its expiry (its owner died) may
-- be taken over by the next replica that needs the blob.
CREATE TABLE blob_lease (
    digest TEXT PRIMARY KEY NOT NULL,
    owner TEXT NOT NULL,
    address TEXT NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
