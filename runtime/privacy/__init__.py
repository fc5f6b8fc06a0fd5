"""Privacy: redaction of personal data, erasure of a contact (tombstones that keep the
audit chain verifiable) and retention."""
