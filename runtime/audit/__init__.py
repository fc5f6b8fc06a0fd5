"""Governance over the audit trail: signed checkpoints, verification, replay for auditors."""
