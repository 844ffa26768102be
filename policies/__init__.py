"""Payer drug policies as data (one YAML file each), shipped as package data."""
