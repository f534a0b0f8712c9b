"""Trainer adapters: one module per trainer family (see base.Trainer)."""
