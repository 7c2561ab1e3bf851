"""Accounting: prices, the neuron ledger with its journal and checkpoints, and cost reports."""
